"""Time-budgeted runs and searches (cifar_sweeps.time_budget, hydra.sweeper.time_budget_s): the plan's
consistency (the schedule ends at the last planned step, the plan is recorded and survives a kill), the
errors, and budgets in sweeps. No assertion here depends on how fast this machine is."""

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
import torch

import cifar_sweeps.train as train_module
from cifar_sweeps.checkpoint import CHECKPOINT_FILE
from cifar_sweeps.errors import ConfigError
from cifar_sweeps.time_budget import steps_that_fit
from cifar_sweeps.train import train
from conftest import ROOT, compose_cfg
from test_sweeps import load, sweep

# the plan may use up to 100 epochs: the budget decides
BUDGETED = ["time_budget_s=14", "epochs=100", "keep_checkpoint=true", "threads=1"]


def test_the_plan_fills_whole_epochs_then_a_partial_last_one():
    # 10 steps of 1 s + 2 s validation = 12 s an epoch
    assert steps_that_fit(36.0, 1.0, 2.0, 10, 1000) == 30
    assert steps_that_fit(41.5, 1.0, 2.0, 10, 1000) == 33  # 5.5 s left: 2 s validation, 3 steps
    assert steps_that_fit(41.5, 1.0, 2.0, 10, 25) == 25  # epochs caps it
    assert steps_that_fit(11.0, 1.0, 2.0, 10, 1000) == 9  # less than an epoch: the caller refuses it


@pytest.mark.parametrize("value", ["5", "0", "-3", "abc", "true", "nan"])
def test_a_bad_or_too_small_budget_is_an_error_before_data_loading(value, tmp_path):
    cfg = compose_cfg([f"time_budget_s={value}", f"data.npz={tmp_path / 'missing.npz'}"], out=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"^time_budget_s=.* must be a number >= 10"):
        train(cfg)


def test_a_budget_spent_before_data_loading_is_an_error_before_data_loading(tmp_path):
    cfg = compose_cfg(["time_budget_s=60", f"data.npz={tmp_path / 'missing.npz'}"], out=tmp_path / "run")
    with pytest.raises(ConfigError, match=r"time_budget_s=60 leaves no time to train: 9\d\.\d s of it went"):
        train(cfg, started=time.perf_counter() - 95)


def test_a_budget_too_small_for_one_epoch_says_the_smallest_that_fits(tiny_cfg):
    # all 45k training images: an epoch takes far longer than 12 s on any CPU
    cfg = tiny_cfg("time_budget_s=12", "data.train_subset=null", "threads=1", "model=airnet")
    with pytest.raises(ConfigError, match=r"^time_budget_s=12 is too small for one epoch: .* one epoch takes about "
                                          r"[\d.]+ s .* the smallest budget that fits one epoch is about \d+ s"):
        train(cfg)


def final_state(run_dir: Path) -> tuple[dict, dict]:
    summary = json.loads((run_dir / "summary.json").read_text())
    checkpoint = torch.load(run_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    return summary, checkpoint


def check_schedule_ends_with_the_plan(summary: dict, checkpoint: dict, scheduler: str, budget: int = 14) -> None:
    plan = summary["time_plan"]
    history = checkpoint["progress"]["history"]
    assert summary["time_budget_s"] == budget and summary["epochs"] == 100
    assert summary["epochs_planned"] == plan["epochs"] == summary["epochs_done"] == len(history) >= 1
    assert plan["epochs"] == -(-plan["total_steps"] // plan["steps_per_epoch"])
    assert {"step_s", "img_s", "val_s", "test_s", "startup_s", "first_total_steps", "replans"} <= plan.keys()
    state = checkpoint["scheduler"]
    if scheduler == "onecycle":  # stepped every batch: its length is the planned steps, and it is at its end
        assert state["total_steps"] == plan["total_steps"] == state["last_epoch"]
    elif scheduler == "cosine":
        assert state["T_max"] == plan["total_steps"] == state["last_epoch"]
        assert state["_last_lr"] == [0.0]  # eta_min, reached on the last step
    else:  # step: stepped every epoch, its step_size scaled from epochs=100 to the planned epochs
        assert state["last_epoch"] == plan["epochs"]
        assert state["step_size"] == max(1, round(6 * plan["epochs"] / 100))


@pytest.mark.parametrize("scheduler", ["onecycle", "cosine", "step"])
def test_the_schedule_ends_exactly_at_the_last_planned_step(scheduler, tiny_cfg, tmp_path):
    train(tiny_cfg(*BUDGETED, f"scheduler={scheduler}"))
    summary, checkpoint = final_state(tmp_path / "run")
    check_schedule_ends_with_the_plan(summary, checkpoint, scheduler)


def machine_slower_in(epochs, monkeypatch):
    """train_epoch as if the machine ran at half speed in `epochs` (each takes twice its time)."""
    real_train_epoch = train_module.train_epoch

    def train_epoch(run, epoch, steps=None):
        started = time.perf_counter()
        row = real_train_epoch(run, epoch, steps)
        if epoch in epochs:
            time.sleep(time.perf_counter() - started)
        return row

    monkeypatch.setattr(train_module, "train_epoch", train_epoch)


def test_a_slower_machine_cuts_the_plan_and_the_schedule_still_ends_at_its_last_step(tiny_cfg, tmp_path,
                                                                                      monkeypatch):
    machine_slower_in(range(2, 100), monkeypatch)  # ~2x slower after the first epoch
    train(tiny_cfg(*BUDGETED, "scheduler=cosine", "time_budget_s=25"))
    summary, checkpoint = final_state(tmp_path / "run")
    plan = summary["time_plan"]
    assert plan["replans"] and max(r["slowdown"] for r in plan["replans"]) > 1.3
    assert plan["total_steps"] < plan["first_total_steps"] and len(plan["slowdowns"]) == plan["epochs"]
    check_schedule_ends_with_the_plan(summary, checkpoint, "cosine", budget=25)


def test_a_machine_that_gets_faster_again_lengthens_the_plan(tiny_cfg, tmp_path, monkeypatch):
    machine_slower_in({1, 2}, monkeypatch)  # half speed for two epochs, then full speed again
    train(tiny_cfg(*BUDGETED, "scheduler=onecycle", "time_budget_s=25"))
    summary, checkpoint = final_state(tmp_path / "run")
    replans = summary["time_plan"]["replans"]
    assert replans[0]["total_steps"] < replans[0]["total_steps_before"]  # cut while slow
    assert any(r["total_steps"] > r["total_steps_before"] for r in replans[1:])  # and lengthened after
    check_schedule_ends_with_the_plan(summary, checkpoint, "onecycle", budget=25)


# 3,000 real images, at most 5 epochs (~2 s each here) in a budget that fits them all
RUN = ["model=airnet", "data.train_subset=3000", "data.val_size=500", "data.test_subset=500", "epochs=5",
       "batch_size=128", "logger=none", "threads=1", "time_budget_s=300", "save_model=false"]


def test_a_killed_budgeted_run_resumes_with_its_saved_plan(tmp_path, cifar_npz):
    run_dir = tmp_path / "killed"
    cmd = [sys.executable, "-m", "cifar_sweeps.train", *RUN, f"data.npz={cifar_npz}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    metrics, checkpoint = run_dir / "metrics.jsonl", run_dir / CHECKPOINT_FILE
    while not (metrics.is_file() and len(metrics.read_text().splitlines()) >= 2 and checkpoint.is_file()
               and checkpoint.stat().st_mtime >= metrics.stat().st_mtime):
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    saved_plan = torch.load(checkpoint, weights_only=True)["progress"]["plan"]
    assert saved_plan is not None and saved_plan["epochs"] == 5  # the cap: 5 epochs fit in 300 s

    out = subprocess.run([*cmd, "resume=true"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "keeping the saved plan" in out.stdout + out.stderr
    assert "spent on start-up and measuring" not in out.stdout + out.stderr  # never measured again
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["time_plan"] == saved_plan and summary["resumed_at"] and summary["epochs_done"] == 5


def test_per_trial_budgets_and_a_search_budget(tmp_path, cifar_npz):
    # every trial plans itself in 15 s; the search stops starting trials once 15 s no longer fit in its 40
    started = time.monotonic()
    proc = sweep(tmp_path, "model=airnet", "hydra.sweeper.n_trials=20", "time_budget_s=15", "epochs=50",
                 "hydra.sweeper.time_budget_s=40", npz=cifar_npz)
    took = time.monotonic() - started
    trials = load(tmp_path, "budget_50k").trials
    assert 1 <= len(trials) < 20 and took < 40 + 60  # generous: the point is that it stopped
    for t in trials:
        assert t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                           optuna.trial.TrialState.WAITING)
        if t.state == optuna.trial.TrialState.COMPLETE:
            summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
            assert summary["time_budget_s"] == 15 and summary["time_plan"]["total_steps"] >= 1
        elif t.state == optuna.trial.TrialState.FAIL:
            assert "time budget" in t.user_attrs["error"]
    assert "no new trial starts" in proc.stdout + proc.stderr or any(
        t.state == optuna.trial.TrialState.FAIL for t in trials)


def test_the_search_deadline_stops_running_trials_and_a_rerun_continues_them(tmp_path, cifar_npz):
    # no per-trial budget: the first trial starts, and the deadline stops it (recorded, queued for a retry),
    # also in a sweep started with Ctrl-C ignored (`nohup ... &`), where the stop cannot come as SIGINT as such
    long_trial = ["model=skip_s8", "epochs=40", "data.train_subset=1500"]
    proc = sweep(tmp_path, *long_trial, "hydra.sweeper.n_trials=1", "hydra.sweeper.time_budget_s=25", npz=cifar_npz,
                 ignore_sigint=True)
    assert "the search's time budget ended: 1 running trial(s) stopped" in proc.stdout + proc.stderr
    trials = load(tmp_path, "budget_50k").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]
    assert trials[0].user_attrs["error"].startswith("the search's time budget")
    # the same search without the budget continues the study: the retry runs in the stopped trial's folder
    sweep(tmp_path, *long_trial, "hydra.sweeper.n_trials=1", npz=cifar_npz)
    trials = load(tmp_path, "budget_50k").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]
    assert trials[1].user_attrs["run_dir"] == trials[0].user_attrs["run_dir"]
