"""The benchmark runs end to end (tiny settings) and its last line is the JSON scripts read."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cifar_sweeps.bench import parse_args

KEYS = ("compute_img_s", "fast_img_s", "seed_loop_img_s", "fast_vs_compute", "fast_vs_seed_loop", "startup_s")


def run_bench(args: list[str], npz) -> subprocess.CompletedProcess:
    env = {**os.environ, "CIFAR10_NPZ": str(npz)}
    return subprocess.run([sys.executable, "-m", "cifar_sweeps.bench", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def test_bench_runs_end_to_end_and_ends_with_json(cifar_npz):
    tiny = ["model=skip_s8", "data.train_subset=512", "data.val_size=128", "data.test_subset=128", "batch_size=32",
            "scheduler=none", "--seconds", "0.3", "--rounds", "1", "--warmup", "1", "--startup-runs", "1",
            "--seed-workers", "1", "--seed-threads", "1"]
    proc = run_bench(tiny, cifar_npz)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    for key in KEYS:
        assert isinstance(result[key], (int, float)) and result[key] > 0, (key, result[key])
    assert result["fast_vs_compute"] == pytest.approx(result["fast_img_s"] / result["compute_img_s"], rel=1e-2)
    assert result["fast_vs_seed_loop"] == pytest.approx(result["fast_img_s"] / result["seed_loop_img_s"], rel=1e-2)
    assert result["model"] == "SkipS8" and result["params"] == 47_304 and result["batch_size"] == 32
    assert 0 < result["startup_cpu_s"] and len(result["startup_runs_s"]) == 1
    assert any(line.startswith("round 1:") and "load average" in line for line in lines)
    assert any(line.startswith("(4) startup") for line in lines)


def test_bench_refuses_a_config_without_a_fast_path(cifar_npz):
    proc = run_bench(["augment=s6_album", "--rounds", "1"], cifar_npz)
    assert proc.returncode != 0
    assert "augment.backend=albumentations" in proc.stderr and "backend: tensor" in proc.stderr


def test_bench_options_and_overrides_are_separated():
    args, overrides = parse_args(["model=skip_s8", "--seconds", "2", "batch_size=64", "--startup-runs", "0"])
    assert overrides == ["model=skip_s8", "batch_size=64"]
    assert args.seconds == 2.0 and args.startup_runs == 0 and args.rounds == 4
    with pytest.raises(SystemExit):
        parse_args(["--secs", "2"])


def test_bench_choices_mode_times_threads_layouts_and_augment_libraries(cifar_npz, monkeypatch):
    import torch

    from cifar_sweeps.bench import bench

    monkeypatch.setenv("CIFAR10_NPZ", str(cifar_npz))
    threads = torch.get_num_threads()
    try:
        result = bench(["model=skip_s8", "data.train_subset=256", "data.val_size=128", "data.test_subset=128",
                        "batch_size=16", "--choices", "--seconds", "0.05", "--rounds", "1"])
    finally:
        torch.set_num_threads(threads)
    assert result["compute threads=1 channels_last=True"] > 0 and result["compute threads=1 channels_last=False"] > 0
    assert result["augment: hand-written torch (this repo)"] > 0
    import importlib.util

    if importlib.util.find_spec("kornia") is not None:  # optional: compared, not used
        assert result["augment: kornia (per-sample, float)"] > 0


def test_startup_breakdown_lists_every_stage(cifar_npz):
    proc = run_bench(["model=skip_s8", "data.train_subset=512", "batch_size=32", "--startup-breakdown"], cifar_npz)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for stage in ("import torch", "compose the config", "load CIFAR-10", "build model, receptive field, batches, optimizer",
                  "first training step", "total"):
        assert stage in proc.stdout, stage


def test_zoo_bench_prints_a_row_per_model_and_norm_and_the_peaks():
    """Tiny settings (batch 8, one step per window): the table, its columns and the JSON line, no timing goal."""
    import torch

    from cifar_sweeps.bench import bench

    threads = torch.get_num_threads()
    try:
        result = bench(["--zoo", "--models", "skip_s8,dilated_c4", "--norms", "gn", "--batch-size", "8",
                        "--seconds", "0.01", "--rounds", "1", "--min-steps", "1", "--peak-seconds", "0.05", "--candidates",
                        "threads=1"])
    finally:
        torch.set_num_threads(threads)
    assert [(r["model"], r["norm"]) for r in result["rows"]] == [("skip_s8", "gn"), ("dilated_c4", "gn")]
    skip, dilated = result["rows"]
    assert skip["params"] == 47_304 and dilated["params"] == 98_779
    assert 10 < skip["forward_mflop"] < 12 and 20 < dilated["forward_mflop"] < 21  # 11.0 and 20.6 MFLOP/img
    for row in result["rows"]:
        assert row["before_img_s"] > 0 and row["auto_img_s"] > 0 and row["auto_fp32_peak_share"] > 0
        assert row["before_settings"]["precision"] == "fp32" and not row["before_settings"]["fast_modules"]
        assert row["auto_settings"]["fast_modules"] and row["auto_settings"]["threads"] == 1
        assert set(row["candidates"]) == {"fp32 NCHW", "fp32 channels_last", "bf16 NCHW", "bf16 channels_last"}
    assert result["peak_gflop_s"]["fp32"] > 0 and result["peak_gflop_s"]["bf16"] > 0


def test_zoo_before_override_changes_the_before_set_up_only():
    """`--before-override model.dropout=0.05`: dilated_c4's before step trains the dropout it had before its
    recipe (which has none); auto and the candidates keep the recipe's config."""
    import torch
    from torch import nn

    from cifar_sweeps.bench import bench

    threads = torch.get_num_threads()
    try:
        result = bench(["--zoo", "--models", "dilated_c4", "--norms", "gn", "--batch-size", "8", "--seconds", "0.01",
                        "--rounds", "1", "--min-steps", "1", "--peak-seconds", "0.05", "threads=1",
                        "--before-override", "model.dropout=0.05"])
    finally:
        torch.set_num_threads(threads)
    assert result["rows"][0]["before_overrides"] == ["model.dropout=0.05"]

    from cifar_sweeps.config import compose_train_config
    from cifar_sweeps.zoo_bench import zoo_setups

    cfg = compose_train_config(["model=dilated_c4", "norm=gn", "batch_size=8"])
    before_cfg = compose_train_config(["model=dilated_c4", "norm=gn", "batch_size=8", "model.dropout=0.05"])
    before, auto = zoo_setups(cfg, torch.device("cpu"), 1, candidates=False, before_cfg=before_cfg)
    dropouts = [m.p for m in before.model.modules() if isinstance(m, nn.Dropout)]
    assert len(dropouts) == 10 and set(dropouts) == {0.05}  # one after each of the ten norms
    assert not any(isinstance(m, nn.Dropout) for m in auto.model.modules())
