"""The real command line: a Hydra --multirun grid, and errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT, TINY


def run_cli(*args: str, npz, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "CIFAR10_NPZ": str(npz), "WANDB_MODE": "offline"}
    return subprocess.run([sys.executable, "-m", "cifar_sweeps.train", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_multirun_grid_over_norms(cifar_npz, tmp_path):
    sweep_dir = tmp_path / "sweep"
    proc = run_cli("--multirun", "norm=bn,gn,ln", "model=airnet", "model.width=8", *TINY,
                   "data.train_subset=300", "data.val_size=100", "data.test_subset=100",
                   f"hydra.sweep.dir={sweep_dir}", npz=cifar_npz)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1", "2"]
    norms = []
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["state"] == "completed" and 0.0 <= summary["best_val_acc"] <= 1.0
        assert (job / "metrics.jsonl").is_file()
        norms.append((job / ".hydra" / "overrides.yaml").read_text())
    assert any("norm=gn" in n for n in norms) and any("norm=ln" in n for n in norms)


def test_unknown_option_names_the_group(cifar_npz):
    proc = run_cli("model=no_such_net", npz=cifar_npz, timeout=120)
    assert proc.returncode != 0
    assert "model/no_such_net" in proc.stderr and "Available options" in proc.stderr


def test_bad_value_is_reported_on_the_command_line(cifar_npz):
    proc = run_cli("optimizer.lr=-1", "model=airnet", npz=cifar_npz, timeout=120)
    assert proc.returncode != 0
    assert "optimizer.lr=-1" in proc.stderr and "must be a positive number" in proc.stderr
