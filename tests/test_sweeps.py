"""Real Optuna sweeps through the CLI: tiny real-data trials, a real SQLite study in tmp_path."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import ROOT

# a few hundred real images, one epoch: each trial trains in a couple of seconds on CPU
TINY_TRIAL = ["data.train_subset=300", "data.val_size=100", "data.test_subset=100", "epochs=1", "batch_size=100",
              "logger=none", "save_model=false", "threads=1"]


def sweep(tmp_path: Path, *overrides: str, search: str = "budget_50k", npz: Path | str | None = None,
          check: bool = True, ignore_sigint: bool = False) -> subprocess.CompletedProcess:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    given = {o.split("=", 1)[0] for o in overrides}
    base = [o for o in TINY_TRIAL if o.split("=", 1)[0] not in given]  # e.g. epochs searched instead of fixed
    cmd = [sys.executable, "-m", "cifar_sweeps.train", "--multirun", f"hparams_search={search}", *base,
           f"data.npz={npz if npz is not None else tmp_path / 'missing.npz'}",
           f"hydra.sweep.dir={tmp_path / 'runs'}", f"hydra.sweeper.storage={storage}", *overrides]
    # ignore_sigint: started the way `nohup ... &` in a script starts it, with Ctrl-C (SIGINT) ignored
    preexec = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, preexec_fn=preexec)
    if check and proc.returncode != 0:
        pytest.fail(f"sweep failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def load(tmp_path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'study.db'}")


def test_budget_sweep_trains_within_budget_and_resumes(tmp_path, cifar_npz):
    # two fast model families; the search's other knobs (norm, optimizer, lr, augmentation, ...) as configured
    sweep(tmp_path, "model=choice(skip_s8,airnet)", "hydra.sweeper.n_trials=3", npz=cifar_npz)
    study = load(tmp_path, "budget_50k")
    trials = study.trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for t in trials:
        # fit-to-budget (the default): every trial is within budget and uses most of it
        assert t.user_attrs["state"] == "completed"
        assert 0.8 * 50_000 < t.user_attrs["params"] <= 50_000
        assert t.user_attrs["model_width"] >= 1
        assert 0.0 <= t.value <= 1.0 and t.value == t.user_attrs["best_val_acc"]
        assert t.constraints["budget"] <= 0
        assert "model.width" not in t.params  # solved, not searched
        assert {"model", "norm", "optimizer", "optimizer.lr", "optimizer.weight_decay"} <= t.params.keys()
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["params"] == t.user_attrs["params"]
    results = yaml.safe_load((tmp_path / "runs" / "optimization_results.yaml").read_text())
    assert results["best_value"] == max(t.value for t in trials)

    # the same command continues the same study: n_trials is the study's total, so 4 adds one trial
    sweep(tmp_path, "model=choice(skip_s8,airnet)", "hydra.sweeper.n_trials=4", npz=cifar_npz)
    resumed = load(tmp_path, "budget_50k").trials
    assert len(resumed) == 4
    assert [t.value for t in resumed[:3]] == [t.value for t in trials]
    assert resumed[3].state == optuna.trial.TrialState.COMPLETE


def test_over_budget_trials_are_rejected_before_data_and_the_sweep_finishes(tmp_path):
    # reject mode (width searched, not solved); width 32 is 739k parameters. The data file does not
    # exist, so these trials can only finish if they never load data.
    proc = sweep(tmp_path, "budget.fit_width=false", "model=skip_s8", "model.width=32", "hydra.sweeper.n_trials=2")
    trials = load(tmp_path, "budget_50k").trials
    assert len(trials) == 2
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE  # told to the sampler, with a penalty value
        assert t.value == pytest.approx(-t.user_attrs["params"] / 50_000) and t.value < 0
        assert t.user_attrs["state"] == "rejected"
        assert t.user_attrs["params"] == 739_104
        assert "budget.max_params=50,000" in t.user_attrs["reason"]
        assert t.constraints["budget"] > 0  # infeasible for the sampler
    assert "No completed trial within budget" in proc.stdout + proc.stderr


def test_failed_trials_are_recorded_and_max_failure_rate_stops_the_sweep(tmp_path):
    # model.dropout=1.5 fails validation in every trial; 0.5 x 3 trials allows one failure
    proc = sweep(tmp_path, "model=skip_s8", "model.dropout=1.5", "hydra.sweeper.n_trials=3",
                 "hydra.sweeper.max_failure_rate=0.5", check=False)
    assert proc.returncode != 0
    assert "TooManyFailedTrials" in proc.stderr
    trials = load(tmp_path, "budget_50k").trials
    # the sweep went on after the first failure and stopped at the second
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2
    for t in trials:
        assert t.user_attrs["state"] == "failed"
        assert "ConfigError" in t.user_attrs["error"] and "model.dropout" in t.user_attrs["error"]


def test_parallel_trials_with_joblib(tmp_path):
    # two trials at once in joblib worker processes; rejected ones, so nothing trains
    sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
          "hydra.sweeper.n_trials=2", "budget.fit_width=false", "model=skip_s8", "model.width=32")
    trials = load(tmp_path, "budget_50k").trials
    assert len(trials) == 2
    assert {t.user_attrs["state"] for t in trials} == {"rejected"}
    assert len({t.user_attrs["run_dir"] for t in trials}) == 2


def test_pareto_search_returns_accuracy_and_params(tmp_path, cifar_npz):
    sweep(tmp_path, "model=airnet", "hydra.sweeper.n_trials=2", search="pareto", npz=cifar_npz)
    trials = load(tmp_path, "pareto").trials
    assert len(trials) == 2
    for t in trials:
        acc, params = t.values
        assert 0.0 <= acc <= 1.0 and params == t.user_attrs["params"]
        assert "model.width" in t.params  # size is an objective: the width is searched
    results = yaml.safe_load((tmp_path / "runs" / "optimization_results.yaml").read_text())
    assert 1 <= len(results["solutions"]) <= 2


def test_nan_loss_trial_is_marked_failed_and_the_sweep_finishes(tmp_path, cifar_npz):
    # lr 1e6 with heavy momentum diverges in the first epoch: TrainingDiverged; max_failure_rate=1 tolerates it
    proc = sweep(tmp_path, "model=dilated_c4", "budget.fit_width=false", "model.width=8", "optimizer=sgd",
                 "optimizer.lr=1e6", "optimizer.momentum=0.99", "data.train_subset=600",
                 "hydra.sweeper.n_trials=1", "hydra.sweeper.max_failure_rate=1.0", npz=cifar_npz)
    (trial,) = load(tmp_path, "budget_50k").trials
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs["state"] == "failed" and "TrainingDiverged" in trial.user_attrs["error"]
    summary = json.loads((Path(trial.user_attrs["run_dir"]) / "summary.json").read_text())
    assert summary["state"] == "failed"
    assert "No completed trial within budget" in proc.stdout + proc.stderr


def test_full_fidelity_search_then_best_trains_the_winner(tmp_path, cifar_npz):
    # the workflow behind +experiment=best_*: search (two trials side by side), read the winner back from
    # the study, train it on all training images with test accuracy as the objective
    sweep(tmp_path, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.launcher.n_jobs=2", "epochs=1",
          search="airnet_full_50k", npz=cifar_npz)
    study = load(tmp_path, "airnet_full_50k")
    winner = max(study.trials, key=lambda t: t.value)
    assert {"model.depth", "model.stage_multipliers.1", "optimizer.lr", "loss.label_smoothing"} <= winner.params.keys()

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    best = subprocess.run([sys.executable, "-m", "cifar_sweeps.best", "airnet_full_50k", "--storage", storage],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    overrides = best.stdout.split()
    assert dict(o.split("=", 1) for o in overrides) == {k: str(v) for k, v in winner.params.items()}
    assert f"trial {winner.number}" in best.stderr

    out = tmp_path / "final"
    subprocess.run([sys.executable, "-m", "cifar_sweeps.train", "hparams_search=airnet_full_50k", *overrides,
                    *TINY_TRIAL, "data.val_size=0", "objective=test_acc", f"data.npz={cifar_npz}",
                    f"output_dir={out}"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["optimizer"]["lr"] == winner.params["optimizer.lr"]
    assert config["model"]["stage_multipliers"][1] == winner.params["model.stage_multipliers.1"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "completed" and summary["params"] <= 50_000 and summary["best_val_acc"] is None


def test_enqueued_trials_run_first_and_once(tmp_path, cifar_npz):
    # hydra.sweeper.enqueue: the study's first trials are the given points (a model's current recipe as the
    # baseline a search must beat); searched keys left out are sampled, keys fixed on the command line win, and
    # re-running the command continues the study without queueing them again
    start = "hydra.sweeper.enqueue=[{optimizer:sgd,optimizer.lr:0.3,model.dropout:0.0,batch_size:32}]"
    sweep(tmp_path, "model=airnet", "hydra.sweeper.n_trials=2", start, search="recipe", npz=cifar_npz)
    first = load(tmp_path, "recipe_airnet_bn").trials[0]
    assert (first.params["optimizer"], first.params["optimizer.lr"], first.params["model.dropout"]) == ("sgd", 0.3, 0.0)
    assert "optimizer.weight_decay" in first.params and "batch_size" not in first.params  # sampled; fixed (100)
    config = yaml.safe_load((Path(first.user_attrs["run_dir"]) / "config.yaml").read_text())
    assert (config["optimizer"]["lr"], config["model"]["dropout"], config["batch_size"]) == (0.3, 0.0, 100)
    assert config["optimizer"]["weight_decay"] == first.params["optimizer.weight_decay"]

    sweep(tmp_path, "model=airnet", "hydra.sweeper.n_trials=3", start, search="recipe", npz=cifar_npz)
    trials = load(tmp_path, "recipe_airnet_bn").trials
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert [t.params.get("optimizer.lr") == 0.3 for t in trials] == [True, False, False]

    # the queued baseline read back as overrides (to train it at full length beside the winner); a trial that
    # did not complete is named with the ones that did
    storage = ["--storage", f"sqlite:///{tmp_path / 'study.db'}"]
    baseline = subprocess.run([sys.executable, "-m", "cifar_sweeps.best", "recipe_airnet_bn", "--trial", "0", *storage],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, check=True)
    assert dict(o.split("=", 1) for o in baseline.stdout.split()) == {k: str(v) for k, v in trials[0].params.items()}
    assert "trial 0: value" in baseline.stderr
    missing = subprocess.run([sys.executable, "-m", "cifar_sweeps.best", "recipe_airnet_bn", "--trial", "7", *storage],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "no completed trial 7; completed: 0, 1, 2" in missing.stderr


def test_best_names_the_studies_there_when_the_study_is_missing(tmp_path, cifar_npz):
    sweep(tmp_path, "model=airnet", "hydra.sweeper.n_trials=1", npz=cifar_npz)
    proc = subprocess.run([sys.executable, "-m", "cifar_sweeps.best", "nope", "--storage",
                           f"sqlite:///{tmp_path / 'study.db'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "no study 'nope'" in proc.stderr and "budget_50k" in proc.stderr


def one_line(proc: subprocess.CompletedProcess) -> str:
    """The sweep's error, said in one line (Optuna's experimental-feature warnings aside)."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if "ExperimentalWarning" not in line
             and line.strip() != "optuna_warn("]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize("override, message", [
    ("hydra.sweeper.n_trials=0", "hydra.sweeper.n_trials=0 must be an integer >= 1"),
    ("hydra.sweeper.n_trials=-3", "hydra.sweeper.n_trials=-3 must be an integer >= 1"),
    ("hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs=0 must be an integer >= 1"),
    ("hydra.sweeper.heartbeat_interval=0", "hydra.sweeper.heartbeat_interval=0 must be an integer >= 1"),
    ("hydra.sweeper.grace_period=5", "hydra.sweeper.grace_period=5 must be an integer larger than"),
    ("hydra.sweeper.max_failure_rate=2", "hydra.sweeper.max_failure_rate=2.0 must be a number in [0, 1]"),
    ("hydra.sweeper.time_budget_s=0", "hydra.sweeper.time_budget_s=0.0 must be a positive number of seconds"),
    ("hydra.sweeper.enqueue=[{optimzer.lr:0.1}]", "hydra.sweeper.enqueue[0].optimzer.lr=0.1: 'optimzer.lr' is not "
                                                 "searched, so it cannot be queued; searched keys: augment.ops.crop.pad"),
    ("hydra.sweeper.enqueue=[{norm:bn},{norm:xn}]", "hydra.sweeper.enqueue[1].norm='xn' lies outside the searched "
                                                    "space of 'norm'"),
    ("hydra.sweeper.enqueue=[{optimizer:adamw,optimizer.lr:0.5}]", "hydra.sweeper.enqueue[0].optimizer.lr=0.5 lies "
                                                                   "outside the searched space of 'optimizer.lr'"),
])
def test_bad_sweeper_settings_are_one_line_before_any_trial(override, message, tmp_path):
    line = one_line(sweep(tmp_path, override, check=False))
    assert line.startswith(message), line
    assert not (tmp_path / "study.db").exists() and not list((tmp_path / "runs").glob("trial_*"))


def test_a_damaged_or_unreachable_storage_is_one_line(tmp_path):
    from servers import free_port

    (tmp_path / "study.db").write_text("not a database\n" * 100)
    line = one_line(sweep(tmp_path, "hydra.sweeper.n_trials=1", check=False))
    assert line.startswith(f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}: cannot open")
    assert "the SQLite file is not a database or is damaged" in line
    nobody = f"postgresql+psycopg2://optuna:not-said@127.0.0.1:{free_port()}/optuna"  # nothing listens there
    line = one_line(sweep(tmp_path, "hydra.sweeper.n_trials=1", f"hydra.sweeper.storage={nobody}", check=False))
    assert "the server cannot be reached" in line and "not-said" not in line


def slot_reused(trials) -> bool:
    """Some trial started after another trial ended while a third, started before that end, still ran: a
    freed slot was filled at once. Under the batch policy a new trial waits for its whole batch to end."""
    spans = [(t.datetime_start, t.datetime_complete) for t in trials if t.datetime_start and t.datetime_complete]
    return any(start_y < end_w <= start_x < end_y
               for start_w, end_w in spans for start_x, _ in spans for start_y, end_y in spans
               if start_w != start_x != start_y != start_w)


# trials of clearly different length: 1 or 4 epochs, drawn per trial (the sampler is seeded per trial)
MIXED_LENGTHS = ["epochs=choice(1,4)", "hydra.sweeper.n_trials=5", "hydra/launcher=joblib",
                 "hydra.sweeper.n_jobs=2", "model=skip_s8", "data.train_subset=600"]


@pytest.mark.parametrize("schedule", ["free", "batch"])
def test_a_freed_slot_starts_the_next_trial_at_once(schedule, tmp_path, cifar_npz):
    proc = sweep(tmp_path, *MIXED_LENGTHS, f"hydra.sweeper.schedule={schedule}", npz=cifar_npz)
    trials = load(tmp_path, "budget_50k").trials
    assert len(trials) == 5 and {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    assert {t.params["epochs"] for t in trials} == {1, 4}  # the lengths differ
    assert slot_reused(trials) == (schedule == "free")
    # a progress line after each trial, the last one with the whole study
    assert "sweep: 5/5 trials done, 0 running, 0 pruned, 0 failed | best " in proc.stdout + proc.stderr


def test_ctrl_c_stops_local_jobs_and_a_rerun_retries_them_from_their_checkpoints(tmp_path, cifar_npz):
    import os
    import signal
    import time

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    longer = ["epochs=4", "data.train_subset=2000"]
    cmd = [sys.executable, "-m", "cifar_sweeps.train", "--multirun", "hparams_search=budget_50k",
           *[o for o in TINY_TRIAL if not o.startswith(("epochs=", "data.train_subset="))], *longer,
           f"data.npz={cifar_npz}", f"hydra.sweep.dir={tmp_path / 'runs'}", f"hydra.sweeper.storage={storage}",
           "hydra/launcher=joblib", "hydra.sweeper.n_jobs=2", "hydra.sweeper.n_trials=2", "model=skip_s8"]
    # as from a terminal: SIGINT raises KeyboardInterrupt (a background parent may have set it to be ignored)
    sweeper = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while len(list((tmp_path / "runs").glob("trial_000*/checkpoint.pt"))) < 2:
        assert sweeper.poll() is None and time.time() < deadline, "the trials never checkpointed"
        time.sleep(0.05)
    os.kill(sweeper.pid, signal.SIGINT)  # the sweeper alone: its joblib workers get no signal of their own
    out = sweeper.communicate(timeout=120)[0]
    assert sweeper.returncode == 130, out[-3000:]
    assert "interrupted: 2 running trial(s) stopped and queued for a retry" in out
    trials = load(tmp_path, "budget_50k").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2 + [optuna.trial.TrialState.WAITING] * 2
    assert all(t.user_attrs["error"].startswith("interrupted (Ctrl-C)") for t in trials[:2])
    # the workers were stopped: no epoch is added after the interrupt
    epochs = {d: (d / "metrics.jsonl").read_text() for d in (tmp_path / "runs").glob("trial_000*")}
    time.sleep(3)
    assert {d: (d / "metrics.jsonl").read_text() for d in epochs} == epochs

    subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    trials = load(tmp_path, "budget_50k").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2 + [optuna.trial.TrialState.COMPLETE] * 2
    for retry in trials[2:]:
        summary = json.loads((Path(retry.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["state"] == "completed" and summary["resumed_at"] and summary["resumed_at"][0] >= 1
