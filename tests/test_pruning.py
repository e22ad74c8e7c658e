"""Pruning across Hydra jobs: each job reports its validation accuracy per epoch to its own Optuna
trial and stops when the pruner says so. Real sweeps, tiny real-data trials, a real SQLite study."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import ROOT
from wandb_sweep import offline_env, wandb_run_contents

# an aggressive median pruner: after one finished trial, any trial below the median at an epoch stops
AGGRESSIVE = ["pruner=median", "pruner.n_startup_trials=1", "pruner.n_warmup_steps=0"]
TRIAL = ["model=airnet", "data.train_subset=1000", "data.val_size=200", "data.test_subset=200", "epochs=3",
         "batch_size=100", "save_model=false", "threads=1"]


def sweep(tmp_path: Path, npz: Path, *overrides: str, logger: str = "none") -> optuna.Study:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = [sys.executable, "-m", "cifar_sweeps.train", "--multirun", "hparams_search=budget_50k", *TRIAL,
           f"logger={logger}", f"data.npz={npz}", f"hydra.sweep.dir={tmp_path / 'runs'}",
           f"hydra.sweeper.storage={storage}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=offline_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return optuna.load_study(study_name="budget_50k", storage=storage)


def check_pruned(study: optuna.Study, epochs: int = 3) -> list[optuna.trial.FrozenTrial]:
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, [(t.number, t.state, t.intermediate_values) for t in study.trials]
    for t in pruned:
        last = max(t.intermediate_values)
        assert last < epochs and t.intermediate_values  # stopped early, its curve so far kept in the study
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["state"] == "pruned" and summary["epochs_done"] == last
        assert t.user_attrs["state"] == "pruned"
        assert not (Path(t.user_attrs["run_dir"]) / "checkpoint.pt").exists()  # not needed any more
    for t in study.trials:
        if t.state == TrialState.COMPLETE:
            assert sorted(t.intermediate_values) == list(range(1, epochs + 1))
    return pruned


def test_median_pruner_stops_trials_and_the_report_lists_them(tmp_path, cifar_npz):
    study = sweep(tmp_path, cifar_npz, "hydra.sweeper.n_trials=5", *AGGRESSIVE, logger="wandb")
    pruned = check_pruned(study)
    for t in study.trials:  # W&B (offline) knows how each trial ended, and its curve ends where it stopped
        run = wandb_run_contents(Path(t.user_attrs["run_dir"]))
        assert run["summary_values"]["state"] == t.user_attrs["state"]
        assert len([h for h in run["history"] if "val/acc" in h]) == len(t.intermediate_values)

    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "cifar_sweeps.report", str(tmp_path / "runs"), "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"{len(pruned)} pruned" in proc.stdout
    table = (out / "report.md").read_text()
    assert table.count("| pruned |") == len(pruned)


def test_joblib_workers_prune_too(tmp_path, cifar_npz):
    study = sweep(tmp_path, cifar_npz, "hydra.sweeper.n_trials=5", *AGGRESSIVE, "hydra/launcher=joblib",
                  "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2")
    check_pruned(study)


def test_a_run_outside_a_sweep_is_not_pruned(tiny_cfg, tmp_path):
    from cifar_sweeps.train import train

    train(tiny_cfg("epochs=2", *AGGRESSIVE))
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["state"] == "completed"


def test_a_job_whose_trial_was_retried_meanwhile_leaves_the_folder_alone(tmp_path, tiny_cfg):
    """A requeued SLURM job may start after the sweeper declared it dead and retried its trial: it must
    stop before writing anything into the folder the retry now owns."""
    from cifar_sweeps.train import train
    from cifar_sweeps.trial import TrialTakenOver

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="taken", storage=storage, direction="maximize")
    study.tell(study.ask(), state=TrialState.FAIL)
    cfg = tiny_cfg(f"trial={{storage:'{storage}',study:taken,number:0}}", "resume=true")
    with pytest.raises(TrialTakenOver, match="trial 0 of study taken is already FAIL"):
        train(cfg)
    # no config, no record, no checkpoint: only the run-folder lock's file, empty once released
    assert [p.name for p in (tmp_path / "run").iterdir()] == [".run.lock"]
    assert (tmp_path / "run" / ".run.lock").read_text() == ""


@pytest.mark.parametrize("epochs, state", [(3, TrialState.PRUNED), (2, TrialState.COMPLETE)])
def test_a_trial_is_never_pruned_at_its_last_epoch(epochs, state, tmp_path, cifar_npz):
    """A pruner that stops every trial once its 2-epoch warm-up is over: a 3-epoch trial is stopped at epoch 2;
    for a 2-epoch trial, epoch 2 is its last, where it is fully trained: stopping it would only discard the
    result, so it completes and is tested (docs/pruning.md)."""
    study = sweep(tmp_path, cifar_npz, "hydra.sweeper.n_trials=1", f"epochs={epochs}", "pruner=none",
                  "pruner._target_=optuna.pruners.ThresholdPruner", "+pruner.lower=1.1", "+pruner.n_warmup_steps=2")
    (trial,) = study.trials
    assert trial.state == state and sorted(trial.intermediate_values) == list(range(1, 3))
    summary = json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())
    assert summary["state"] == ("pruned" if state == TrialState.PRUNED else "completed")
    assert (summary["test_acc"] is not None) == (state == TrialState.COMPLETE)
