"""A finished run's folder is never overwritten or contradicted, and one process at a time uses a run
folder: real CLI processes, real SIGKILL, a real full disk and a real read-only folder (tmpfs mounts)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY

TRAIN = [sys.executable, "-m", "cifar_sweeps.train"]


def cli(run_dir: Path, npz: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TRAIN, *TINY, f"data.npz={npz}", f"hydra.run.dir={run_dir}", "threads=1", *overrides],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def record(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != ".run.lock"}


@pytest.fixture
def completed(tmp_path, cifar_npz) -> Path:
    run_dir = tmp_path / "run"
    proc = cli(run_dir, cifar_npz, "keep_checkpoint=true", "save_model=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_a_damaged_checkpoint_never_replaces_a_completed_record(completed, cifar_npz):
    before = json.loads((completed / "summary.json").read_text())
    checkpoint = completed / "checkpoint.pt"
    checkpoint.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    proc = cli(completed, cifar_npz, "keep_checkpoint=true", "save_model=true", "resume=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "already completed" in proc.stdout + proc.stderr
    assert json.loads((completed / "summary.json").read_text()) == before  # still the completed record


def test_a_fresh_run_in_a_finished_runs_folder_is_refused(completed, cifar_npz):
    before = record(completed)
    assert {"summary.json", "metrics.jsonl", "model.pt"} <= set(before)
    line = one_line_error(cli(completed, cifar_npz, "keep_checkpoint=true", "save_model=true"))
    assert f"{completed} holds a completed run" in line and "resume=true" in line
    assert record(completed) == before


def test_resume_of_a_completed_run_with_other_overrides_is_refused(completed, cifar_npz):
    before = record(completed)
    line = one_line_error(cli(completed, cifar_npz, "keep_checkpoint=true", "save_model=true", "resume=true",
                              "model=skip_s8", "optimizer.lr=0.3"))
    assert "another configuration" in line and "optimizer.lr: 0.05 -> 0.3" in line and "model._target_" in line
    assert record(completed) == before


def test_a_torch_file_that_is_not_a_checkpoint_is_named(tmp_path, cifar_npz):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"weights": torch.zeros(3)}, run_dir / "checkpoint.pt")
    line = one_line_error(cli(run_dir, cifar_npz, "resume=true"))
    assert "checkpoint.pt is a torch file but not a cifar_sweeps checkpoint" in line


def test_one_process_at_a_time_in_a_run_folder_and_no_stale_lock_after_kill(tmp_path, cifar_npz):
    run_dir = tmp_path / "run"
    longer = ["epochs=3", "data.train_subset=3000"]
    first = subprocess.Popen([*TRAIN, *TINY, f"data.npz={cifar_npz}", f"hydra.run.dir={run_dir}", "threads=1",
                              *longer], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = run_dir / ".run.lock"
    deadline = time.time() + 120
    while not (lock.is_file() and lock.read_text()):
        assert first.poll() is None and time.time() < deadline, "the first run never took its folder"
        time.sleep(0.05)
    line = one_line_error(cli(run_dir, cifar_npz, *longer, "resume=true"))
    assert f"is in use by pid {first.pid} on " in line
    # killed with SIGKILL once it has a checkpoint: the kernel drops its lock, and a resume proceeds
    while not (run_dir / "checkpoint.pt").is_file():
        assert first.poll() is None and time.time() < deadline + 120, "the first run never checkpointed"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    proc = cli(run_dir, cifar_npz, *longer, "resume=true")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["state"] == "completed" and summary["resumed_at"]


@contextlib.contextmanager
def tmpfs(path: Path, size: str, *options: str):
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_leaves_no_temporary_file(tmp_path, cifar_npz,
                                                                                            completed):
    # room for one checkpoint and the small files, not for a second checkpoint beside it
    size = (completed / "checkpoint.pt").stat().st_size
    with tmpfs(tmp_path / "disk", f"{(size * 3 // 2) // 4096 * 4096 + 8192}") as disk:
        run_dir = disk / "run"
        line = one_line_error(cli(run_dir, cifar_npz, "epochs=3"))
        assert f"cannot write {run_dir / 'checkpoint.pt'}: No space left on device" in line
        assert [p.name for p in run_dir.glob(".*tmp*")] == []
        kept = torch.load(run_dir / "checkpoint.pt", weights_only=True)
        assert kept["progress"]["epoch"] == 1  # the last good checkpoint
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        proc = cli(run_dir, cifar_npz, "epochs=3", "resume=true")  # space freed: the run goes on from epoch 1
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["state"] == "completed" and summary["resumed_at"] == [1]


def test_a_read_only_run_folder_is_one_line(tmp_path, cifar_npz):
    with tmpfs(tmp_path / "ro", "1m") as disk:
        (disk / "run").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        line = one_line_error(cli(disk / "run", cifar_npz))
        assert f"cannot write {disk / 'run'}: Read-only file system" in line
    assert os.path.exists(tmp_path)
