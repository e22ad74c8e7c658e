"""Sweeps that survive kills and share a study: real processes, real SIGKILL, a real SQLite study,
tiny real-data trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from conftest import ROOT

# AirNet with its width fitted to 50k parameters, 3 epochs of 1,500 real images: ~1 s an epoch here.
# Heartbeats every second and a 4 s grace period, so a dead trial is noticed within seconds.
TRIAL = ["model=airnet", "data.train_subset=1500", "data.val_size=200", "data.test_subset=200", "epochs=3",
         "batch_size=100", "logger=none", "save_model=false", "threads=1", "hydra.sweeper.heartbeat_interval=1",
         "hydra.sweeper.grace_period=4"]


def sweep_cmd(tmp_path: Path, npz: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "cifar_sweeps.train", "--multirun", "hparams_search=budget_50k", *TRIAL,
            f"data.npz={npz}", f"hydra.sweep.dir={tmp_path / 'runs'}",
            f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}", *overrides]


def run(cmd: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def study(tmp_path: Path) -> optuna.Study:
    return optuna.load_study(study_name="budget_50k", storage=f"sqlite:///{tmp_path / 'study.db'}")


def configurations(trials) -> list[tuple]:
    return [tuple(sorted(t.params.items())) for t in trials]


def test_killed_sweep_restarts_without_replaying_and_retries_the_dead_trial(tmp_path, cifar_npz):
    cmd = sweep_cmd(tmp_path, cifar_npz, "hydra.sweeper.n_trials=4")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    third = tmp_path / "runs" / "trial_0002"
    deadline = time.time() + 300
    while not (third / "checkpoint.pt").is_file():  # trial 2 has finished an epoch
        assert proc.poll() is None and time.time() < deadline, "the sweep never reached trial 2"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole process group: sweeper and job
    proc.wait()
    earlier = {d: (d / "summary.json").read_text() for d in sorted((tmp_path / "runs").glob("trial_000[01]"))}
    assert len(earlier) == 2
    dead = study(tmp_path).trials[2]
    assert dead.state == TrialState.RUNNING  # nobody could tell the study

    out = run(cmd)  # the same command again
    trials = study(tmp_path).trials
    states = [t.state for t in trials]
    assert TrialState.RUNNING not in states and TrialState.WAITING not in states
    # the dead trial was failed and retried once, in its own folder, from its checkpoint
    assert trials[2].state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == 2]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == trials[2].params and retries[0].user_attrs["run_dir"] == str(third)
    resumed = json.loads((third / "summary.json").read_text())
    assert resumed["state"] == "completed" and resumed["resumed_at"] and resumed["resumed_at"][0] >= 1
    # n_trials is the study's total: 4 configurations, the retry standing in for the dead one
    finished = [t for t in trials if t.state != TrialState.FAIL]
    assert len(finished) == 4
    # no configuration replayed, earlier folders untouched
    assert len(set(configurations(finished))) == 4
    assert {d: (d / "summary.json").read_text() for d in earlier} == earlier
    assert "retries dead trial 2" in out.stdout + out.stderr


def test_two_workers_on_one_fresh_study_run_distinct_trials(tmp_path, cifar_npz):
    cmd = sweep_cmd(tmp_path, cifar_npz, "hydra.sweeper.n_trials=6", "epochs=1")
    workers = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for _ in range(2)]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out[-4000:]
    trials = study(tmp_path).trials
    assert len(trials) == 6 and {t.state for t in trials} == {TrialState.COMPLETE}
    assert len(set(configurations(trials))) == 6
    assert len({t.user_attrs["run_dir"] for t in trials}) == 6
    # both workers ran trials (each logs the trial folders it launched)
    assert all("trial_00" in out for out in outputs)


def test_a_mistyped_search_key_fails_loudly_before_any_trial(tmp_path):
    proc = subprocess.run(sweep_cmd(tmp_path, tmp_path / "missing.npz", "hydra.sweeper.n_trials=1",
                                    "augment.ops.2.p=interval(0.0,0.5)"),
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "'augment.ops.2.p' is not a key of the config" in proc.stderr
    assert not (tmp_path / "runs" / "trial_0000").exists()


def start_sweep(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_when(proc: subprocess.Popen, path: Path, what: str, timeout: float = 300) -> None:
    """SIGKILL the sweep's whole process group the moment `path` appears."""
    deadline = time.time() + timeout
    while not path.is_file():
        assert proc.poll() is None and time.time() < deadline, f"the sweep never reached {what}"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_run_that_completed_while_no_sweeper_was_there_counts_with_its_result(tmp_path, cifar_npz):
    """The issue's sequence: trial 0 killed after its first epoch; the restarted sweep retries it (trial 1,
    the last retry max_retry=1 allows) and is killed the moment the retry's run record is written, before it
    could tell the study; a third start finds trial 1 without heartbeat. Its run record says completed, so
    the study says so too, with the record's value, and `best` sees it."""
    cmd = sweep_cmd(tmp_path, cifar_npz, "hydra.sweeper.n_trials=2")
    first = tmp_path / "runs" / "trial_0000"
    kill_when(start_sweep(cmd), first / "checkpoint.pt", "trial 0's first checkpoint")
    time.sleep(5)  # > grace_period: trial 0 is stale for the next start
    kill_when(start_sweep(cmd), first / "summary.json", "the retry's run record")
    record = json.loads((first / "summary.json").read_text())
    assert record["state"] == "completed"
    time.sleep(5)
    out = run(cmd)

    trials = study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE], \
        [(t.number, t.state, t.user_attrs) for t in trials]
    retry = trials[1]
    assert retry.system_attrs["failed_trial"] == 0 and retry.user_attrs["run_dir"] == str(first)
    assert retry.value == record["best_val_acc"]
    # its attributes are its own record's, not its dead parent's
    assert retry.user_attrs["state"] == "completed" and retry.user_attrs.get("error") is None
    assert trials[0].user_attrs["error"].startswith("the job died before finishing (no heartbeat for 4 s")
    assert json.loads((first / "summary.json").read_text()) == record  # told from the record, not re-run
    assert "trial 1: its job died" not in out.stdout + out.stderr
    best = subprocess.run([sys.executable, "-m", "cifar_sweeps.best", "budget_50k", "--storage",
                           f"sqlite:///{tmp_path / 'study.db'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert best.returncode == 0, best.stderr[-2000:]
    winner = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert best.stderr.startswith(f"trial {winner.number}: ")


def test_a_failed_trial_whose_record_says_completed_is_recorded_again(tmp_path, cifar_npz):
    """A study where a trial was failed for good although its run went on to complete (a study written before
    this check, or a job that lost its heartbeats while it trained on): the next start of the sweep records
    the run's result in a stand-in trial, as a retry would, and counts it once."""
    run(sweep_cmd(tmp_path, cifar_npz, "hydra.sweeper.n_trials=1", "epochs=1"))
    done = study(tmp_path).trials[0]
    run_dir = Path(done.user_attrs["run_dir"])
    # the same run, as a study would hold it had the heartbeat check failed it for good
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    lost = optuna.create_study(study_name="lost", storage=storage, direction="maximize")
    lost.add_trial(optuna.create_trial(state=TrialState.FAIL, params=done.params, distributions=done.distributions,
                                       user_attrs={**done.user_attrs, "state": "failed", "error": "declared dead"}))
    out = run(sweep_cmd(tmp_path, cifar_npz, "hydra.sweeper.n_trials=1", "epochs=1", "hydra.sweeper.study_name=lost"))
    trials = optuna.load_study(study_name="lost", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]  # no new trial was run
    assert trials[1].value == done.value and trials[1].params == done.params
    assert trials[1].user_attrs["recovered_from"] == 0 and trials[1].user_attrs["error"] is None
    assert trials[1].system_attrs["retry_history"] == [0]
    assert f"its run record in {run_dir} says completed" in out.stdout + out.stderr
