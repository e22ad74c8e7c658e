"""Experiment loggers. metrics.jsonl and summary.json are always written by train(); a logger adds
a destination (CSV file, W&B run, ...). Pick one with `logger=<name>`."""

from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError
from .names import model_option, norm_option, run_name, sweep_group_name
from .record import RunSummary

log = logging.getLogger("cifar_sweeps")


class NullLogger:
    """Logs nothing beyond the run directory's metrics.jsonl and summary.json."""

    def start(self, config: dict, run_dir: Path, info: dict[str, Any]) -> None:
        self.run_dir = run_dir

    def log_epoch(self, row: dict[str, Any]) -> None:
        pass

    def log_resumed(self, rows: list[dict[str, Any]]) -> None:
        """The run resumed from a checkpoint after these epochs (rows logged by an earlier process)."""

    def log_summary(self, summary: RunSummary, artifacts: dict[str, Any]) -> None:
        pass

    def finish(self, ok: bool = True) -> None:
        pass


class CSVLogger(NullLogger):
    """Also writes metrics.csv, one row per epoch, for spreadsheets and pandas."""

    def __init__(self, filename: str = "metrics.csv"):
        self.filename = filename
        self._file = None
        self._writer = None

    def log_resumed(self, rows: list[dict[str, Any]]) -> None:
        # rewritten from the checkpoint's history: rows written after the last checkpoint are dropped
        (self.run_dir / self.filename).unlink(missing_ok=True)
        for row in rows:
            self.log_epoch(row)

    def log_epoch(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            self._file = open(self.run_dir / self.filename, "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=list(row))
            self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()

    def finish(self, ok: bool = True) -> None:
        if self._file is not None:
            self._file.close()


# train()'s epoch row keys -> W&B metric names; the slash groups them into W&B workspace sections
WANDB_EPOCH_KEYS = {"epoch": "epoch", "train_loss": "train/loss", "train_acc": "train/acc", "val_loss": "val/loss",
                    "val_acc": "val/acc", "lr": "lr", "epoch_s": "time/epoch_s", "img_s": "time/img_s"}
# RunSummary fields that become charts and tables instead of run-summary values
WANDB_MEDIA_KEYS = ("test_acc_per_class", "test_confusion")
WANDB_MODES = ("auto", "online", "offline", "disabled")
def resolve_wandb_mode(mode: str) -> str:
    """auto -> $WANDB_MODE if set, else online when $WANDB_API_KEY is set, else offline (no account needed)."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env:
        return env
    return "online" if os.environ.get("WANDB_API_KEY") else "offline"


def hydra_context() -> dict[str, Any]:
    """What Hydra knows about this job (choices, overrides, sweep); {} when train() is called without Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return {}
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return {
            "choices": {k: v for k, v in hc.runtime.choices.items() if not k.startswith("hydra") and v is not None},
            "overrides": list(hc.overrides.task),
            "multirun": multirun,
            "job_name": hc.job.name,
            "job_num": hc.job.get("num") if multirun else None,
            "sweep_dir": hc.sweep.dir if multirun else None,
            "fixed": _fixed_overrides() if multirun else [],
        }
    except Exception as e:  # never let bookkeeping stop a run
        log.debug("no Hydra context: %s", e)
        return {}


def _fixed_overrides() -> list[str]:
    """Command-line overrides every trial of the sweep shares (no sweep syntax such as a,b or choice()).
    A trial's other overrides are what the sweeper chose for it: a grid value or an Optuna sample."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        args = [a for a in sys.argv[1:] if "=" in a and not a.startswith("-")]
        return [a for a, o in zip(args, OverridesParser.create().parse_overrides(args)) if not o.is_sweep_override()]
    except Exception:  # argv of a launcher worker process is not ours to parse
        return []


def run_tags(config: dict, ctx: dict[str, Any]) -> list[str]:
    """'model=<name>' and 'norm=<name>', from the Hydra choices when known, else from the config itself."""
    from .config import conf_dir

    choices = ctx.get("choices", {})
    model = choices.get("model") or model_option(str(config.get("model", {}).get("_target_", "?")), conf_dir())
    norm = choices.get("norm") or norm_option(config.get("norm", {}))
    return [f"model={model}", f"norm={norm}"]


class WandbLogger(NullLogger):
    """One W&B run per training run (per sweep trial): resolved config, per-epoch metrics, a summary with
    parameter count, receptive field and accuracies, and at the end a confusion matrix, per-class
    accuracy, misclassified test images and the curves.

    With no account (no $WANDB_API_KEY) or $WANDB_MODE=offline the run is written offline under
    `<run dir>/wandb/offline-run-*` (upload later with `wandb sync`). If W&B cannot start, training goes
    on with the local logs (metrics.jsonl, summary.json) and a warning.
    """

    def __init__(self, project: str = "cifar_sweeps", entity: str | None = None, mode: str = "auto",
                 group: str | None = None, name: str | None = None, tags: list[str] | None = None,
                 job_type: str = "train", log_media: bool = True, misclassified: int = 32,
                 settings: dict[str, Any] | None = None):
        if mode not in WANDB_MODES:
            raise ConfigError(f"logger.mode={mode!r} must be one of {list(WANDB_MODES)} "
                              "(auto = offline unless WANDB_API_KEY is set)")
        if not (isinstance(misclassified, int) and misclassified >= 0):
            raise ConfigError(f"logger.misclassified={misclassified!r} must be a count >= 0 (0 = no image grid)")
        self.project, self.entity, self.mode, self.group, self.name = project, entity, mode, group, name
        self.tags, self.job_type, self.log_media = list(tags or []), job_type, log_media
        self.misclassified = misclassified
        # Hydra hands nested config as DictConfig; wandb.Settings wants plain values
        self.settings = dict(settings or {})
        self.run = None
        self._config: dict = {}

    # -- life cycle -------------------------------------------------------------------------------

    def start(self, config: dict, run_dir: Path, info: dict[str, Any]) -> None:
        super().start(config, run_dir, info)
        self._config = config
        ctx = hydra_context()
        mode = resolve_wandb_mode(self.mode)
        group = self.group
        if group is None and ctx.get("multirun"):
            group = sweep_group_name(ctx["sweep_dir"], ctx.get("job_name") or "train")
        name = self.name or run_name(ctx.get("overrides", []), ctx.get("fixed", []))
        tags = run_tags(config, ctx) + self.tags
        wb_config = dict(config, choices=ctx.get("choices", {}), trial=ctx.get("job_num"),
                         overrides=ctx.get("overrides", []), run_dir=str(run_dir), params=info.get("params"))
        t0 = time.perf_counter()
        try:
            import wandb

            self.run = wandb.init(project=self.project, entity=self.entity, group=group, name=name, tags=tags,
                                  job_type=self.job_type, config=wb_config, dir=str(run_dir), mode=mode,
                                  reinit="finish_previous", settings=wandb.Settings(**self.settings))
            # epochs, not optimizer steps, on the x-axis of every per-epoch chart
            self.run.define_metric("epoch")
            self.run.define_metric("*", step_metric="epoch")
            self.run.define_metric("val/acc", step_metric="epoch", summary="max")
        except Exception as e:
            self.run = None
            log.warning("W&B could not start (%s: %s); training goes on with the local logs in %s",
                        type(e).__name__, str(e).splitlines()[0] if str(e) else "", run_dir)
            return
        record = {"id": self.run.id, "name": self.run.name, "group": group, "project": self.project,
                  "entity": self.entity, "mode": mode, "tags": tags, "dir": str(Path(self.run.dir).parent),
                  "init_s": round(time.perf_counter() - t0, 3)}
        (run_dir / "wandb.json").write_text(json.dumps(record, indent=2))
        if mode == "offline":
            log.info("W&B run %s written offline in %s; upload it with: wandb sync %s", self.run.id,
                     record["dir"], record["dir"])

    def log_epoch(self, row: dict[str, Any]) -> None:
        if self.run is None:
            return
        self._safely("log_epoch", lambda: self.run.log({WANDB_EPOCH_KEYS.get(k, k): v for k, v in row.items()}))

    def log_resumed(self, rows: list[dict[str, Any]]) -> None:
        # each process is a W&B run of its own (the killed one's stops where it was killed): the resumed run
        # logs the epochs before its checkpoint again, so the trial's finished run has the whole curve
        for row in rows:
            self.log_epoch(row)

    def log_summary(self, summary: RunSummary, artifacts: dict[str, Any]) -> None:
        if self.run is None:
            return
        self._safely("log_summary", lambda: self._log_summary(summary, artifacts))

    def finish(self, ok: bool = True) -> None:
        if self.run is None:
            return
        self._safely("finish", lambda: self.run.finish(exit_code=0 if ok else 1))
        self.run = None

    # -- internals --------------------------------------------------------------------------------

    def _safely(self, what: str, fn) -> None:
        """A W&B failure mid-run costs the W&B record, never the training run."""
        try:
            fn()
        except Exception as e:
            log.warning("W&B %s failed (%s: %s); W&B logging stops, local logs go on", what, type(e).__name__, e)
            try:
                self.run.finish(exit_code=1)
            except Exception:
                pass
            self.run = None

    def _log_summary(self, summary: RunSummary, artifacts: dict[str, Any]) -> None:
        import wandb

        from . import plots
        from .data import CLASSES

        self.run.summary.update({k: v for k, v in summary.as_dict().items()
                                 if v is not None and k not in WANDB_MEDIA_KEYS})
        per_class = summary.test_acc_per_class or {}
        self.run.summary.update({f"test_class_acc/{c}": v for c, v in per_class.items()})
        if summary.state != "completed" or not self.log_media:
            return
        figures = self.run_dir / "figures"
        media: dict[str, Any] = {}
        if per_class:
            table = wandb.Table(columns=["class", "accuracy"], data=[[c, v] for c, v in per_class.items()])
            media["test/per_class_acc"] = wandb.plot.bar(table, "class", "accuracy", title="Per-class test accuracy")
            media["test/per_class_acc_png"] = wandb.Image(str(plots.save(plots.per_class_figure(per_class),
                                                                         figures / "per_class.png")))
        if summary.test_confusion:
            media["test/confusion_png"] = wandb.Image(str(plots.save(
                plots.confusion_figure(summary.test_confusion, CLASSES), figures / "confusion.png")))
        if artifacts.get("model") is not None and artifacts.get("test_batches") is not None:
            y_true, y_pred = self._predict(artifacts["model"], artifacts["test_batches"])
            media["test/confusion"] = wandb.plot.confusion_matrix(y_true=y_true.tolist(), preds=y_pred.tolist(),
                                                                  class_names=list(CLASSES),
                                                                  title="Test confusion matrix")
            wrong = np.flatnonzero(y_true != y_pred)[:self.misclassified]
            if len(wrong):
                images = artifacts["test_batches"].x[wrong].cpu().numpy()
                fig = plots.misclassified_figure(images, y_true[wrong], y_pred[wrong], CLASSES)
                media["test/misclassified"] = wandb.Image(str(plots.save(fig, figures / "misclassified.png")))
        if artifacts.get("history"):
            media["curves"] = wandb.Image(str(plots.save(plots.curves_figure(artifacts["history"]),
                                                         figures / "curves.png")))
        self.run.log(media)

    def _predict(self, model, test_batches):
        """Labels and predictions on the test set, in order, with the same TTA as train()'s evaluation."""
        from .engine import predict

        labels, logits = predict(model, test_batches, bool(self._config.get("tta_flip")),
                                 bool(self._config.get("tta_translate")))
        return labels.cpu().numpy(), logits.argmax(1).cpu().numpy()
