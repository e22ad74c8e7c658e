"""The sweep comparison as a W&B Report (wandb-workspaces), for `python -m cifar_sweeps.report DIR --wandb`.

`build_wandb_report()` only constructs the Report object: no network, so tests can check its blocks,
runset filters and panels offline. `save_wandb_report()` saves it, which needs network and a W&B
account, and the trials' offline runs uploaded first (`wandb sync DIR/*/wandb/offline-run-*`).
"""

from __future__ import annotations

import os
import sys

from ..names import is_meaningful, override_key
from .load import Sweep
from .stats import group_stats
from .text import markdown_table, pct

# the metric names WandbLogger logs (cifar_sweeps.loggers.WANDB_EPOCH_KEYS / WANDB_SUMMARY_KEYS)
VAL_ACC, TRAIN_LOSS, VAL_LOSS = "val/acc", "train/loss", "val/loss"


def config_path(sweep: Sweep, key: str) -> str:
    """Where the W&B run config holds `key`: Hydra group choices are logged under `choices.<group>`."""
    if any(key in t.choices for t in sweep.trials):
        return f"choices.{key}"
    return key


def swept_keys(sweep: Sweep) -> list[str]:
    """Config keys that differ between trials (from their overrides), in first-seen order."""
    shared = set(sweep.shared_overrides)
    keys = [override_key(o) for t in sweep.trials for o in t.overrides if is_meaningful(o) and o not in shared]
    return list(dict.fromkeys(keys))


def build_wandb_report(sweep: Sweep, entity: str, project: str, compare_key: str = "norm",
                       metric: str = "best_val_acc", title: str | None = None):
    """A `wandb_workspaces.reports.v2.Report` comparing the sweep's runs (the W&B group of the sweep)."""
    import wandb_workspaces.reports.v2 as wr

    group = sweep.wandb_group()
    runset = wr.Runset(entity=entity, project=project, name=f"sweep {group}", filters=f"Group = '{group}'")
    key_path = config_path(sweep, compare_key)
    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(config_path(sweep, k)))
               for k in dict.fromkeys(swept_keys(sweep) + [compare_key])]
    columns += [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("params"), log=True),
                wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(metric)),
                wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric("test_acc"))]
    stats = group_stats(sweep, compare_key, metric)
    table = markdown_table([compare_key, "trials", f"best {metric}", f"mean {metric}", "best test"],
                           [[g["value"], f"{g['completed']}/{g['trials']}", pct(g["best"]), pct(g["mean"]),
                             pct(g["best_test"])] for g in stats])
    counts = ", ".join(f"{n} {s}" for s, n in sweep.counts().items())
    blocks = [
        wr.P(f"Sweep directory {sweep.root} (W&B group {group}): {len(sweep.trials)} trials, {counts}."),
        wr.H2("Validation accuracy"),
        wr.PanelGrid(runsets=[runset], panels=[
            wr.LinePlot(title="Validation accuracy per epoch", x="epoch", y=[VAL_ACC],
                        layout=wr.Layout(x=0, y=0, w=12, h=8)),
            wr.LinePlot(title="Loss per epoch", x="epoch", y=[TRAIN_LOSS, VAL_LOSS],
                        layout=wr.Layout(x=12, y=0, w=12, h=8)),
        ]),
        wr.H2("Accuracy vs parameters"),
        wr.PanelGrid(runsets=[runset], panels=[
            wr.ScatterPlot(title=f"{metric} vs parameters", x=wr.SummaryMetric("params"),
                           y=wr.SummaryMetric(metric), log_x=True, layout=wr.Layout(x=0, y=0, w=12, h=9)),
            wr.ScatterPlot(title="test_acc vs parameters", x=wr.SummaryMetric("params"),
                           y=wr.SummaryMetric("test_acc"), log_x=True, layout=wr.Layout(x=12, y=0, w=12, h=9)),
        ]),
        wr.H2(f"{compare_key} side by side"),
        wr.MarkdownBlock(text=table),
        wr.PanelGrid(runsets=[runset], panels=[
            wr.LinePlot(title=f"Validation accuracy by {compare_key} (mean, min-max band)", x="epoch", y=[VAL_ACC],
                        groupby=wr.Config(key_path), groupby_aggfunc="mean", groupby_rangefunc="minmax",
                        layout=wr.Layout(x=0, y=0, w=24, h=8)),
        ]),
        wr.H2("Hyperparameters"),
        wr.PanelGrid(runsets=[runset], panels=[
            wr.ParallelCoordinatesPlot(title="Swept settings -> accuracy", columns=columns,
                                       layout=wr.Layout(x=0, y=0, w=24, h=9)),
            wr.RunComparer(diff_only="split", layout=wr.Layout(x=0, y=9, w=24, h=12)),
        ]),
    ]
    return wr.Report(entity=entity, project=project, title=(title or f"Sweep {group}")[:128],
                     description=f"cifar_sweeps comparison of {sweep.root}", blocks=blocks)


def save_wandb_report(sweep: Sweep, entity: str | None, project: str | None, compare_key: str = "norm",
                      metric: str = "best_val_acc", title: str | None = None) -> int:
    """Build and save; returns a process exit code and says clearly what went wrong when it cannot save."""
    project = project or sweep.wandb_project() or "cifar_sweeps"
    entity = entity or os.environ.get("WANDB_ENTITY")
    try:
        if entity is None:
            import wandb

            entity = wandb.Api().default_entity  # needs network and a logged-in account
        report = build_wandb_report(sweep, entity, project, compare_key, metric, title).save()
    except Exception as e:
        first_line = str(e).splitlines()[0] if str(e) else ""
        print(f"error: could not save the W&B Report ({type(e).__name__}: {first_line}).\n"
              "Saving needs network access and a W&B account: set WANDB_API_KEY (or run `wandb login`), pass "
              "--entity, and upload the offline runs first with `wandb sync <run dir>/wandb/offline-run-*`. "
              "The HTML report above does not need any of this.", file=sys.stderr)
        return 1
    print(f"W&B Report: {report.url}")
    return 0
