"""Sweeps on real distributed engines, started by the tests themselves (tests/servers.py): two workers on
one PostgreSQL study, and a sweep whose every trial is a job of a single-node SLURM cluster, one of them
cancelled with scancel and retried from its checkpoint, another preempted and requeued. Tiny real-data
trials."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from conftest import ROOT
from test_report import md_rows
from test_recovery import TRIAL, configurations
from wandb_sweep import wandb_run_contents


def sweep_cmd(sweep_dir: Path, storage: str, npz: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "cifar_sweeps.train", "--multirun", "hparams_search=budget_50k", *TRIAL,
            f"data.npz={npz}", f"hydra.sweep.dir={sweep_dir}", f"hydra.sweeper.storage={storage}", *overrides]


def report(*args: str, env: dict | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "cifar_sweeps.report", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_two_workers_on_one_postgresql_study(tmp_path, cifar_npz, postgres, monkeypatch):
    """Two workers ("machines": each its own sweep folder) started at once on one fresh PostgreSQL study,
    password only in PGPASSWORD, the median pruner on: 6 distinct trials, each reported per epoch, and one
    report over both workers' folders."""
    workers = []
    # one worker with psycopg2, the other with the plain URL (psycopg 3): both drivers on one study
    for name, url in (("worker1", postgres.url("psycopg2")), ("worker2", postgres.url(""))):
        cmd = sweep_cmd(tmp_path / name / "runs", url, cifar_npz, "hydra.sweeper.n_trials=6", "epochs=2",
                        "pruner=median", "pruner.n_startup_trials=2", "pruner.n_warmup_steps=0")
        workers.append(subprocess.Popen(cmd, cwd=ROOT, env=postgres.env(), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True))
    outputs = [w.communicate(timeout=900)[0] for w in workers]
    for w, out in zip(workers, outputs):
        assert w.returncode == 0, out[-4000:]
        assert postgres.password not in out  # the URL never carries it, nor do the logs

    monkeypatch.setenv("PGPASSWORD", postgres.password)
    study = optuna.load_study(study_name="budget_50k", storage=postgres.url())
    trials = study.trials
    assert len(trials) == 6 and {t.state for t in trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
    assert len(set(configurations(trials))) == 6  # no point handed out twice
    assert all(t.intermediate_values for t in trials)  # every job reached its own trial through PostgreSQL
    for t in trials:  # each trial's folder is on the worker that ran it
        run_dir = Path(t.user_attrs["run_dir"])
        assert run_dir.name == f"trial_{t.number:04d}" and (run_dir / "summary.json").is_file()
    assert all("trial_00" in out for out in outputs)  # both workers ran trials

    # one report over both workers' folders and the shared study: every trial once
    out = report(str(tmp_path / "worker1" / "runs"), str(tmp_path / "worker2" / "runs"), "--out",
                 str(tmp_path / "report"), "--storage", postgres.url(), "--study", "budget_50k", env=postgres.env())
    assert out.startswith("6 trials:")
    rows = md_rows(tmp_path / "report")
    assert sorted(k.rsplit("/", 1)[-1] for k in rows) == [f"trial_{n:04d}" for n in range(6)]
    assert "Optuna study budget_50k" in out
    # and the winner's overrides from the study alone
    best = subprocess.run([sys.executable, "-m", "cifar_sweeps.best", "budget_50k", "--storage", postgres.url()],
                          cwd=ROOT, env=postgres.env(), capture_output=True, text=True, timeout=120)
    assert best.returncode == 0, best.stderr[-2000:]
    assert best.stderr.startswith(f"trial {study.best_trial.number}: ") and "norm=" in best.stdout


def test_slurm_sweep_survives_a_cancelled_and_a_preempted_job(tmp_path, cifar_npz, slurm):
    """Every trial a SLURM job (hydra/launcher=slurm_cpu, 2 at a time, one job array) logging to W&B offline.
    After their first epoch, trial 0's job is cancelled with scancel and trial 1's job gets SIGUSR2, the signal
    SLURM sends before a time limit or preemption: trial 0 fails and is retried, resuming in its folder from
    the checkpoint; trial 1's job is checkpointed and requeued by submitit and resumes on its own, without a
    retry, although a batch-mate failed and the grace period (4 s) is far shorter than its time in the queue."""
    runs = tmp_path / "runs"
    cmd = sweep_cmd(runs, f"sqlite:///{tmp_path / 'study.db'}", cifar_npz, "hydra.sweeper.n_trials=3",
                    "hydra.sweeper.n_jobs=2", "data.train_subset=8000", "epochs=4", "hydra/launcher=slurm_cpu",
                    "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
                    "hydra.launcher.timeout_min=10", "logger=wandb", "logger.mode=offline", "pruner=median")
    sweeper = subprocess.Popen(cmd, cwd=ROOT, env=slurm.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    cancelled, preempted = runs / "trial_0000", runs / "trial_0001"
    # each job is hit the moment its trial has a checkpoint. The cancelled job's process outlived its SIGTERM
    # (submitit ignores it) by ~3.5 s on a fast 2-core machine, so an epoch must take more than that: with 3000
    # training images (1.1 s an epoch there) trial 0 finished before the kill and nothing was tested
    scancel_args = {cancelled: (), preempted: ("--signal=USR2",)}
    tasks = {}
    deadline = time.time() + 300
    while len(tasks) < 2:
        assert sweeper.poll() is None and time.time() < deadline, "trials 0 and 1 never finished an epoch"
        for trial_dir, args in scancel_args.items():
            if trial_dir.name[-1] not in tasks and (trial_dir / "checkpoint.pt").is_file():
                job = slurm.jobs_by_name()[trial_dir.name]  # each trial's job is named after its folder
                slurm.run("scancel", *args, job)
                tasks[trial_dir.name[-1]] = job
        time.sleep(0.05)
    out = sweeper.communicate(timeout=600)[0]
    assert sweeper.returncode == 0, out[-5000:]

    study = optuna.load_study(study_name="budget_50k", storage=f"sqlite:///{tmp_path / 'study.db'}")
    trials = study.trials
    states = [t.state for t in trials]
    assert states[0] == TrialState.FAIL and TrialState.RUNNING not in states and TrialState.WAITING not in states
    (retry,) = [t for t in trials if "failed_trial" in t.system_attrs]  # trial 0's, and only trial 0's
    assert retry.system_attrs["failed_trial"] == 0
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["run_dir"] == str(cancelled)
    assert states[1] == TrialState.COMPLETE  # the preempted trial finished in its own job, requeued
    assert len([t for t in trials if t.state == TrialState.COMPLETE]) == 3
    for run_dir in (cancelled, preempted):  # both continued from their checkpoints
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["state"] == "completed" and summary["resumed_at"] and summary["resumed_at"][0] >= 1
    assert all(sorted(t.intermediate_values) == [1, 2, 3, 4] for t in trials if t.state == TrialState.COMPLETE)
    # SLURM knew: sacct has the cancelled task and the requeued one; submitit's logs are in the sweep folder
    assert "CANCELLED" in slurm.run("sacct", "-n", "-X", "-o", "JobID,State", "-j", tasks["0"])
    assert "REQUEUED" in slurm.run("sacct", "-n", "-X", "-D", "-o", "JobID,State", "-j", tasks["1"])
    assert list((runs / ".submitit").glob("*/*_log.out"))
    # one W&B group for the whole sweep, every trial a run in it; a resumed job's run has the whole curve
    groups = {json.loads((d / "wandb.json").read_text())["group"] for d in runs.glob("trial_*")}
    assert len(groups) == 1 and None not in groups
    for run_dir in (cancelled, preempted):
        history = wandb_run_contents(run_dir, newest=True)["history"]
        assert [row["epoch"] for row in history if "val/acc" in row] == [1, 2, 3, 4]
    assert "retries dead trial 0" in out and "retries dead trial 1" not in out


def test_submitit_local_launcher_runs_trials_as_processes(tmp_path, cifar_npz):
    """hydra/launcher=submitit_local: the same jobs, local processes started by submitit (no SLURM)."""
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    proc = subprocess.run(sweep_cmd(tmp_path / "runs", storage, cifar_npz, "hydra.sweeper.n_trials=2",
                                    "hydra.sweeper.n_jobs=2", "epochs=2", "hydra/launcher=submitit_local",
                                    "hydra.launcher.timeout_min=10"),
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = optuna.load_study(study_name="budget_50k", storage=storage).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    assert list((tmp_path / "runs" / ".submitit").glob("*/*_log.out"))


def test_slurm_slots_start_the_next_trial_when_a_job_ends(tmp_path, cifar_npz, slurm):
    """Start-on-free with every trial a SLURM job: trials of 1 and 4 epochs, 2 slots; a slot freed by a
    short job gets the next trial while a long job of the same sweep still runs."""
    from test_sweeps import slot_reused

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = sweep_cmd(tmp_path / "runs", storage, cifar_npz, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=2",
                    "epochs=choice(1,4)", "model=skip_s8", "data.train_subset=3000", "hydra/launcher=slurm_cpu",
                    "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1",
                    "hydra.launcher.timeout_min=10")
    cmd = [c for c in cmd if c != "epochs=3"]  # searched here, not fixed
    proc = subprocess.run(cmd, cwd=ROOT, env=slurm.env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = optuna.load_study(study_name="budget_50k", storage=storage).trials
    assert len(trials) == 4 and {t.state for t in trials} == {TrialState.COMPLETE}
    assert {t.params["epochs"] for t in trials} == {1, 4}
    assert slot_reused(trials)
    # every trial its own SLURM job (submitit keeps a folder per job)
    assert len([d for d in (tmp_path / "runs" / ".submitit").iterdir() if d.is_dir()]) == 4
