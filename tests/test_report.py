"""The sweep report, built from a real (tiny) sweep's run directories."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_sweeps.loggers import sweep_group_name
from cifar_sweeps.report import Trial, load_sweep, pareto_front
from cifar_sweeps.report.wandb import build_wandb_report
from wandb_sweep import offline_env, tiny_wandb_sweep

PNGS = ("accuracy_vs_params.png", "val_curves.png", "compare_norm.png")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, cifar_npz):
    return tiny_wandb_sweep(tmp_path_factory, cifar_npz)


@pytest.fixture(scope="module")
def report(sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    proc = subprocess.run([sys.executable, "-m", "cifar_sweeps.report", str(sweep), "--out", str(out),
                           "--budget", "50000"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "6 trials: 3 completed, 3 rejected" in proc.stdout
    return out


def labels(sweep: Path) -> list[str]:
    out = []
    for trial in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        o = (trial / ".hydra" / "overrides.yaml").read_text().split()
        norm = next(x for x in o if x.startswith("norm="))
        out.append(f"{norm}, {next(x for x in o if x.startswith('model.width='))}")
    return out


def test_markdown_table_has_every_trial(sweep, report):
    md = (report / "report.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "overrides" not in line]
    trial_rows = [r for r in rows if r.split("|")[4].strip() in ("completed", "rejected")]
    assert len(trial_rows) == 6
    for label in labels(sweep):
        row = next(r for r in trial_rows if f"| {label} |" in r)
        cells = [c.strip() for c in row.split("|")[1:-1]]
        summary = json.loads((sweep / cells[0].split()[0] / "summary.json").read_text())
        assert cells[3] == summary["state"] and cells[4] == f"{summary['params']:,}"
        if summary["state"] == "completed":
            assert cells[5] == str(summary["receptive_field"])
            assert cells[6] == f"{100 * summary['best_val_acc']:.2f}%"
            assert cells[7] == f"{100 * summary['test_acc']:.2f}%"
        else:
            assert "budget.max_params=30,000" in cells[10]
    # the side-by-side table has one row per norm
    for norm in ("bn", "gn", "ln"):
        assert any(line.startswith(f"| {norm} | 2 | 1 |") for line in md.splitlines())
    assert "Shared overrides" in md and "model=skip_s8" in md  # said once, not in every label


def test_html_is_self_contained_with_every_figure(sweep, report):
    page = (report / "report.html").read_text()
    for label in labels(sweep):
        assert label in page
    assert page.count('src="data:image/png;base64,') == 3
    assert "src=\"http" not in page and "<link" not in page and "<script" not in page
    for name in PNGS:
        data = (report / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert "Pareto" in page and "budget 50k" not in page  # the budget is drawn in the PNG, named in a card
    assert "30k / 50k" in page


def test_default_output_dir_and_single_run(sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("wandb"))
    from cifar_sweeps.report.__main__ import main

    assert main([str(copy / "0")]) == 0  # one run directory is a report of one trial
    assert (copy / "0" / "report" / "report.html").is_file()
    assert main([str(copy), "--compare-key", "model.width", "--metric", "test_acc"]) == 0
    assert (copy / "report" / "compare_model.width.png").is_file()
    md = (copy / "report" / "report.md").read_text()
    assert "| 4 | 3 | 3 |" in md and "| 8 | 3 | 0 |" in md


def test_unfinished_trials_and_optuna_study_are_reported(sweep, tmp_path):
    import optuna

    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("wandb"))
    (copy / "2" / "summary.json").unlink()  # as if trial 2 were still running
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="tiny", storage=f"sqlite:///{copy / 'optuna.db'}", direction="maximize")
    study.optimize(lambda trial: trial.suggest_float("lr", 0.01, 0.1), n_trials=3)
    from cifar_sweeps.report.__main__ import main

    assert main([str(copy)]) == 0
    md = (copy / "report" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| 2 |"))
    assert "| unfinished |" in row and "still running or killed" in row
    assert "study `tiny`, 3 trials, maximize" in md
    page = (copy / "report" / "report.html").read_text()
    assert "Optuna study" in page and f"{study.best_value:.4g}" in page


def test_bad_directory_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cifar_sweeps.report", str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "holds no runs" in proc.stderr


def test_pareto_front_keeps_only_undominated_trials():
    def trial(num, params, acc):
        return Trial(path=Path(num), num=num, summary={"state": "completed", "params": params, "best_val_acc": acc})

    trials = [trial("a", 10, 0.5), trial("b", 20, 0.4), trial("c", 30, 0.7), trial("d", 30, 0.6),
              trial("e", 40, 0.7)]
    assert [t.num for t in pareto_front(trials, "best_val_acc")] == ["a", "c"]


def test_wandb_report_is_built_offline_for_the_sweep_group(sweep):
    import wandb_workspaces.reports.v2 as wr

    report = build_wandb_report(load_sweep(sweep), entity="test-entity", project="cifar_sweeps")
    group = sweep_group_name(sweep)
    assert report.entity == "test-entity" and group in report.title
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    assert grids and all(rs.filters == f"Group = '{group}'" and rs.project == "cifar_sweeps"
                         for g in grids for rs in g.runsets)
    panels = [p for g in grids for p in g.panels]
    kinds = {type(p).__name__ for p in panels}
    assert kinds >= {"LinePlot", "ScatterPlot", "ParallelCoordinatesPlot", "RunComparer"}
    assert any(isinstance(p, wr.LinePlot) and p.y == ["val/acc"] and p.x == "epoch" for p in panels)
    assert any(isinstance(p, wr.LinePlot) and p.groupby == wr.Config("choices.norm") for p in panels)
    scatter = next(p for p in panels if isinstance(p, wr.ScatterPlot))
    assert scatter.x == wr.SummaryMetric("params") and scatter.y == wr.SummaryMetric("best_val_acc")
    parallel = next(p for p in panels if isinstance(p, wr.ParallelCoordinatesPlot))
    assert {c.metric for c in parallel.columns} >= {wr.Config("choices.norm"), wr.Config("model.width"),
                                                    wr.SummaryMetric("test_acc")}
    for p in panels:  # each panel serialises to the report spec without network
        p._to_model()


def test_wandb_flag_without_network_fails_clearly(sweep, tmp_path):
    env = offline_env()
    env["WANDB_BASE_URL"] = "http://127.0.0.1:9"  # nothing listens there: no account, no network
    proc = subprocess.run([sys.executable, "-m", "cifar_sweeps.report", str(sweep), "--out", str(tmp_path),
                           "--wandb", "--entity", "someone"], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1
    assert "could not save the W&B Report" in proc.stderr and "wandb sync" in proc.stderr
    assert (tmp_path / "report.html").is_file()  # the local report is written first


@pytest.mark.skipif(shutil.which("chromium") is None and shutil.which("chromium-browser") is None,
                    reason="no headless Chromium")
def test_report_renders_in_headless_chromium(report, tmp_path):
    import matplotlib.image

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1300,2400",
                    (report / "report.html").as_uri()], capture_output=True, timeout=120)
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[:2] == (2400, 1300)
    # not a blank page: the figures and tables put plenty of non-white pixels on it
    assert (pixels[..., :3].mean(-1) < 0.9).mean() > 0.02
