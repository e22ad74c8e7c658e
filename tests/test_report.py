"""The sweep report, built from a real (tiny) sweep's run directories."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from cifar_sweeps.names import sweep_group_name, trial_dir_name
from cifar_sweeps.record import EpochRow, RunSummary, write_summary
from cifar_sweeps.report import Trial, load_sweep, main, pareto_front
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
        return Trial(path=Path(num), num=num, summary=RunSummary("completed", params=params, best_val_acc=acc))

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


# -- hand-made run records: states and studies the tiny sweep does not produce ------------------------

def make_run(run_dir: Path, state: str, epochs_done: int, epochs: int = 3, overrides: tuple[str, ...] = (),
             **summary) -> Path:
    """A run folder as train() leaves it: .hydra/overrides.yaml, metrics.jsonl and summary.json."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    rows = [EpochRow(epoch=e, train_loss=2.0 / e, train_acc=0.2 + 0.1 * e, lr=0.1, val_loss=2.1 / e,
                     val_acc=0.15 + 0.1 * e) for e in range(1, epochs_done + 1)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r.as_dict()) + "\n" for r in rows))
    accs = {"best_val_acc": rows[-1].val_acc, "final_val_acc": rows[-1].val_acc} if rows else {}
    write_summary(run_dir, RunSummary(state=state, params=12_000, max_params=30_000, epochs=epochs,
                                      epochs_done=epochs_done, **{**accs, **summary}))
    return run_dir


def md_rows(report_dir: Path) -> dict[str, list[str]]:
    """The trials table of report.md: cells by the trial's '#'."""
    md = (report_dir / "report.md").read_text()
    table = md.split("## Trials", 1)[1].split("##", 1)[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table.splitlines() if line.startswith("| ")]
    return {r[0].split()[0]: r for r in rows[1:]}


def test_pruned_and_failed_trials_are_counted_apart(tmp_path):
    sweep = tmp_path / "sweep"
    make_run(sweep / "trial_0000", "completed", 3, overrides=("norm=bn",), test_acc=0.4)
    make_run(sweep / "trial_0001", "pruned", 1, overrides=("norm=gn",))
    # failed while loading its data: a record, but no metrics
    make_run(sweep / "trial_0002", "failed", 0, overrides=("norm=ln",), error="FileNotFoundError: no cifar10.npz")
    make_run(sweep / "trial_0010", "completed", 3, overrides=("norm=gn",), test_acc=0.45)
    assert [t.num for t in load_sweep(sweep).trials] == ["trial_0000", "trial_0001", "trial_0002", "trial_0010"]
    assert main([str(sweep), "--out", str(tmp_path / "report")]) == 0

    rows = md_rows(tmp_path / "report")
    assert rows["trial_0001"][3] == "pruned" and rows["trial_0001"][8] == "1/3"
    assert rows["trial_0001"][10] == "pruned at epoch 1 of 3"
    assert rows["trial_0002"][3] == "failed" and "no cifar10.npz" in rows["trial_0002"][10]
    md = (tmp_path / "report" / "report.md").read_text()
    assert "4 trials (2 completed, 1 pruned, 1 failed)" in md
    page = (tmp_path / "report" / "report.html").read_text()
    assert '<span class="state pruned">pruned</span>' in page and ".pruned" in page
    assert '<div class="v">1</div><div class="k">pruned</div>' in page  # its own card
    for png in PNGS:
        assert (tmp_path / "report" / png).stat().st_size > 10_000


def test_job_folders_sort_naturally_old_and_new_names(tmp_path):
    for name in ("10", "trial_0010", "9", trial_dir_name(2)):
        make_run(tmp_path / name, "completed", 1)
    assert [t.num for t in load_sweep(tmp_path).trials] == ["9", "10", "trial_0002", "trial_0010"]


def test_several_directories_are_merged_each_run_once(tmp_path):
    w1, w2 = tmp_path / "worker1" / "sweep", tmp_path / "worker2" / "sweep"
    make_run(w1 / "trial_0000", "completed", 2, overrides=("norm=bn",))
    make_run(w2 / "trial_0001", "pruned", 1, overrides=("norm=gn",))
    make_run(w1 / "trial_0002", "completed", 2, overrides=("norm=ln",))
    # the same run again: inside a directory already given, and the directory itself twice
    dirs = [w1, w2, w1 / "trial_0002", w1]
    sweep = load_sweep(dirs)
    assert [t.num for t in sweep.trials] == ["worker1/sweep/trial_0000", "worker2/sweep/trial_0001",
                                             "worker1/sweep/trial_0002"]
    assert main([*map(str, dirs), "--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "3 trials (2 completed, 1 pruned)" in md
    assert list(md_rows(tmp_path / "report")) == [t.num for t in sweep.trials]  # each once, in study order


def retried_study(url: str, runs: Path) -> None:
    """Trial 0's worker dies; the sweeper fails it and queues a retry (trial 1) in the same folder, which
    completes; trial 2 completes. As cifar_sweeps.sweeper does it, with Optuna's retry callback."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the retry callback is "experimental"
    study = optuna.create_study(study_name="budget_30k", storage=url, direction="maximize")
    dead = study.ask()
    dead.suggest_float("lr", 0.01, 0.1)
    dead.set_user_attr("run_dir", str(runs / "trial_0000"))
    study.tell(dead, state=optuna.trial.TrialState.FAIL)
    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, study.trials[0])
    retry = study.ask()  # the queued copy: same params and run_dir
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(study.trials[1]) == 0
    study.tell(retry, 0.55)
    other = study.ask()
    other.suggest_float("lr", 0.01, 0.1)
    other.set_user_attr("run_dir", str(runs / "trial_0002"))
    study.tell(other, 0.45)


def test_study_from_a_storage_url_tells_the_retry_story(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs / "trial_0000", "completed", 3, resumed_at=[1])
    make_run(runs / "trial_0002", "completed", 3)
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'study.db'}"
    (tmp_path / "elsewhere").mkdir()
    retried_study(url, runs)
    out = tmp_path / "report"
    assert main([str(runs), "--out", str(out)]) == 0  # no sweeper config, no *.db here: no study
    assert "Optuna study" not in (out / "report.md").read_text()

    assert main([str(runs), "--out", str(out), "--storage", url, "--study", "budget_30k"]) == 0
    rows = md_rows(out)
    assert rows["trial_0000"][11] == "0 FAIL → 1 COMPLETE" and rows["trial_0002"][11] == "2 COMPLETE"
    assert rows["trial_0000"][10] == "trial 0 failed (worker died), retried as trial 1"
    md = (out / "report.md").read_text()
    assert "study `budget_30k`, 3 trials, maximize (2 COMPLETE, 1 FAIL), best values [0.55]" in md
    study_rows = md.split("### Trials of study `budget_30k`", 1)[1]
    assert "| 0 | FAIL | – | trial_0000 | failed (worker died), retried as trial 1 |" in study_rows
    assert "| 1 | COMPLETE | 0.55 | trial_0000 | retry of trial 0 |" in study_rows
    page = (out / "report.html").read_text()
    assert "retried as trial 1" in page and '<span class="state FAIL">FAIL</span>' in page


def test_study_found_from_the_sweepers_relative_sqlite_storage(tmp_path):
    runs = tmp_path / "multirun" / "budget_30k"
    make_run(runs / "trial_0000", "completed", 3)
    make_run(runs / "trial_0002", "completed", 3)
    (tmp_path / "multirun" / "optuna.db").parent.mkdir(exist_ok=True)
    retried_study(f"sqlite:///{tmp_path / 'multirun' / 'optuna.db'}", runs)
    # as Hydra saves it: the storage relative to the directory the sweep ran in
    hydra_cfg = {"hydra": {"sweeper": {"storage": "sqlite:///multirun/optuna.db", "study_name": "budget_30k"},
                           "runtime": {"cwd": str(tmp_path), "choices": {}}}}
    for trial in runs.iterdir():
        (trial / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra_cfg))
    sweep = load_sweep(runs)
    (study,) = sweep.studies
    assert study.error is None and study.name == "budget_30k" and study.counts == {"COMPLETE": 2, "FAIL": 1}
    assert [a.number for a in sweep.trials[0].attempts] == [0, 1]
    assert load_sweep(runs, study_name="other").studies[0].error.startswith("KeyError")


def test_an_unreadable_storage_does_not_stop_the_report_nor_show_its_password(tmp_path):
    make_run(tmp_path / "runs" / "trial_0000", "completed", 2)
    out = tmp_path / "report"
    # nothing listens on port 9: the connection fails at once
    assert main([str(tmp_path / "runs"), "--out", str(out), "--storage",
                 "postgresql+psycopg2://me:s3cret@127.0.0.1:9/optuna"]) == 0
    md, page = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "## Optuna study" in md and "OperationalError" in md and "127.0.0.1:9" in md
    assert "s3cret" not in md + page
