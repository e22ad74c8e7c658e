"""Checkpoints and resume with real processes and real signals: a run killed with SIGKILL resumes from
its last finished epoch and ends exactly where the uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cifar_sweeps.checkpoint import CHECKPOINT_FILE, config_differences
from cifar_sweeps.errors import ConfigError
from cifar_sweeps.train import train
from conftest import ROOT

# 4 epochs of 3,000 real images: ~2 s an epoch here, enough time to kill between epochs 2 and 4
RUN = ["model=airnet", "data.train_subset=3000", "data.val_size=500", "data.test_subset=500", "epochs=4",
       "batch_size=128", "logger=csv", "threads=1", "augment=flip_translate_cutout"]
# what differs between two processes running the same configuration
TIMING_KEYS = {"wall_s", "resumed_at"}


def start(run_dir: Path, npz: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "cifar_sweeps.train", *RUN, f"data.npz={npz}", f"hydra.run.dir={run_dir}", *extra]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-4000:]
    return out


def epochs_written(run_dir: Path) -> int:
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def comparable(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {k: v for k, v in summary.items() if k not in TIMING_KEYS}


def learning_curve(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("epoch_s", "img_s")} for r in rows]


def test_sigkilled_run_resumes_to_the_same_result(tmp_path, cifar_npz):
    whole = tmp_path / "whole"
    finish(start(whole, cifar_npz))

    killed = tmp_path / "killed"
    proc = start(killed, cifar_npz)
    deadline = time.time() + 240
    # kill once epoch 2's checkpoint is on disk: metrics for 2 epochs, and the checkpoint written after them
    while not (epochs_written(killed) >= 2 and (killed / CHECKPOINT_FILE).is_file()
               and (killed / CHECKPOINT_FILE).stat().st_mtime >= (killed / "metrics.jsonl").stat().st_mtime):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no checkpoint after 2 epochs"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "summary.json").exists()
    stopped_at = epochs_written(killed)
    assert 2 <= stopped_at < 4

    out = finish(start(killed, cifar_npz, "resume=true"))
    assert f"resumed {killed} after epoch" in out
    resumed = json.loads((killed / "summary.json").read_text())
    assert resumed["state"] == "completed" and resumed["resumed_at"] and resumed["resumed_at"][0] >= 2
    # exactly the uninterrupted run's numbers: every epoch's losses and accuracies, and the test result
    assert comparable(killed) == comparable(whole)
    assert learning_curve(killed) == learning_curve(whole)
    assert not (killed / CHECKPOINT_FILE).exists()  # removed once the run completed (keep_checkpoint=false)
    assert (killed / "metrics.csv").read_text().count("\n") == 5  # header + 4 epochs, no duplicate rows


def test_resume_refuses_a_checkpoint_of_another_configuration(tiny_cfg, tmp_path):
    train(tiny_cfg("epochs=2", "keep_checkpoint=true", "model=airnet"))
    assert (tmp_path / "run" / CHECKPOINT_FILE).is_file()
    with pytest.raises(ConfigError) as err:
        train(tiny_cfg("epochs=2", "resume=true", "model=airnet", "optimizer.lr=0.3"))
    assert "optimizer.lr: 0.05 -> 0.3" in str(err.value)
    assert "resume=true needs the same overrides" in str(err.value)


def test_a_key_added_later_with_a_null_default_does_not_block_resume():
    """A run checkpointed before `time_budget_s` existed resumes under a version whose config has it (null);
    a real value where the run had none is still a difference."""
    saved = {"epochs": 80, "model": {"width": 64}}
    assert config_differences(saved, {**saved, "time_budget_s": None}) == []
    assert config_differences(saved, {**saved, "time_budget_s": 600}) == ["time_budget_s: '<absent>' -> 600"]
    assert config_differences(saved, {**saved, "model": {"width": 32}}) == ["model.width: 64 -> 32"]


def test_resume_of_a_completed_run_returns_its_result(tiny_cfg, tmp_path):
    first = train(tiny_cfg("model=airnet"))
    summary = (tmp_path / "run" / "summary.json").read_text()
    assert train(tiny_cfg("model=airnet", "resume=true")) == first
    assert (tmp_path / "run" / "summary.json").read_text() == summary  # not trained again
