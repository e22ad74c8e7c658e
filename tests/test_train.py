"""The training function on real CIFAR-10 subsets: return value, artefacts, learning, determinism, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cifar_sweeps.errors import ConfigError
from cifar_sweeps.train import train
from conftest import ROOT

# AirNet trains at ~1,500 img/s on this CPU; a constant LR and no augmentation learn fastest
FAST = ["model=airnet", "scheduler=none", "optimizer.lr=0.02", "augment=none", "batch_size=64"]


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_short_real_run_learns_and_writes_artefacts(tiny_cfg, tmp_path):
    cfg = tiny_cfg(*FAST, "epochs=2", "data.train_subset=3000", "save_model=true", "logger=csv")
    result = train(cfg)
    run_dir = tmp_path / "run"

    assert isinstance(result, float) and 0.0 <= result <= 1.0
    assert result > 0.25, f"validation accuracy {result:.3f} is not clearly above chance (0.10)"

    rows = read_metrics(run_dir)
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "epoch_s", "img_s"):
        assert key in rows[0], key
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("params", "best_val_acc", "best_epoch", "test_acc", "test_acc_per_class", "epochs", "wall_s"):
        assert key in summary, key
    assert summary["state"] == "completed"
    assert summary["best_val_acc"] == result == max(r["val_acc"] for r in rows)
    assert summary["params"] == 48_660
    assert 0.0 <= summary["test_acc"] <= 1.0 and len(summary["test_acc_per_class"]) == 10
    assert np.array(summary["test_confusion"]).sum() == 500  # data.test_subset
    assert (run_dir / "model.pt").is_file() and (run_dir / "config.yaml").is_file()
    assert (run_dir / "metrics.csv").read_text().count("\n") == 3  # header + 2 epochs


def test_same_seed_same_numbers(tiny_cfg, tmp_path):
    results = []
    for name in ("a", "b"):
        cfg = tiny_cfg(*FAST, "data.train_subset=600", f"output_dir={tmp_path / name}")
        results.append((train(cfg), read_metrics(tmp_path / name)[0]))
    (acc_a, row_a), (acc_b, row_b) = results
    assert acc_a == acc_b
    assert row_a["train_loss"] == row_b["train_loss"] and row_a["val_loss"] == row_b["val_loss"]


def test_weight_ema_changes_what_is_scored_not_how_it_trains(tiny_cfg, tmp_path):
    runs = {}
    for name, decay in (("raw", "null"), ("ema", "0.9")):
        train(tiny_cfg(*FAST, "data.train_subset=600", f"ema_decay={decay}", "save_model=true",
                       f"output_dir={tmp_path / name}"))
        runs[name] = (read_metrics(tmp_path / name)[0], torch.load(tmp_path / name / "model.pt", weights_only=True))
    (raw_row, raw_weights), (ema_row, ema_weights) = runs["raw"], runs["ema"]
    # the optimiser's trajectory is untouched: the same training loss, step for step
    assert raw_row["train_loss"] == ema_row["train_loss"]
    # what is evaluated and saved is the average, so it differs from the raw weights
    assert raw_row["val_loss"] != ema_row["val_loss"]
    assert raw_weights.keys() == ema_weights.keys()  # loadable by build_model like any run's weights
    changed = [k for k in raw_weights if raw_weights[k].is_floating_point()
               and not torch.equal(raw_weights[k], ema_weights[k])]
    assert any("running_mean" in k for k in changed) and any(k.endswith("weight") for k in changed)


def test_objective_selects_the_returned_metric(tiny_cfg, tmp_path):
    cfg = tiny_cfg(*FAST, "data.train_subset=600", "data.val_size=0", "objective=test_acc")
    result = train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert result == summary["test_acc"]
    assert summary["best_val_acc"] is None and summary["train_images"] == 600


@pytest.mark.parametrize("override, key", [
    ("optimizer.lr=-0.1", "optimizer.lr"),
    ("epochs=0", "epochs"),
    ("data.val_size=50000", "data.val_size"),
    ("data.train_subset=49600", "data.train_subset"),
    ("data.test_subset=20000", "data.test_subset"),
    ("model.dropout=1.5", "model.dropout"),
    ("augment.backend=opencv", "augment.backend"),
    ("objective=loss", "objective"),
    ("device=tpu", "device"),
    ("ema_decay=1.0", "ema_decay"),
])
def test_bad_values_are_named(tiny_cfg, tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        train(tiny_cfg(*FAST, override))
    assert not (tmp_path / "run" / "metrics.jsonl").exists()  # rejected before any training


def test_missing_npz_is_named(tiny_cfg, tmp_path):
    missing = tmp_path / "nowhere.npz"
    with pytest.raises(ConfigError, match=r"data\.npz.*nowhere\.npz"):
        train(tiny_cfg(*FAST, f"data.npz={missing}"))


def test_npz_with_wrong_shapes_is_named(tiny_cfg, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((100, 28, 28, 3), np.uint8), y_train=np.zeros(100, np.int64),
             x_test=np.zeros((10, 32, 32, 3), np.uint8), y_test=np.zeros(10, np.int64))
    with pytest.raises(ConfigError, match=r"bad\.npz.*x_train.*\(100, 28, 28, 3\)"):
        train(tiny_cfg(*FAST, f"data.npz={bad}", "data.val_size=10", "data.train_subset=null",
                       "data.test_subset=null"))


def test_diverging_run_fails_with_reason(tiny_cfg, tmp_path):
    from cifar_sweeps.engine import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="lr"):
        train(tiny_cfg(*FAST, "data.train_subset=600", "optimizer.lr=1e6", "optimizer.momentum=0.99",
                       "model.width=8"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["state"] == "failed" and "TrainingDiverged" in summary["error"]


def test_translate_tta_averages_flips_and_one_pixel_shifts():
    from cifar_sweeps.engine import tta_logits

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10))
    x = torch.randn(2, 3, 8, 8)
    model(x)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    views = [x, padded[:, :, :-2, :-2], padded[:, :, 2:, 2:]]
    flip_avg = [0.5 * (model(v) + model(v.flip(3))) for v in views]
    expected = 0.5 * flip_avg[0] + 0.25 * (flip_avg[1] + flip_avg[2])
    torch.testing.assert_close(tta_logits(model, x, flip=True, translate=True), expected)
    torch.testing.assert_close(tta_logits(model, x, flip=True), flip_avg[0])
    assert not torch.allclose(tta_logits(model, x, flip=True, translate=True), flip_avg[0])


@pytest.mark.parametrize("model", ["model=resnet18 model.width=4", "model=advanced_c4 model.width=2"])
def test_channels_last_stays_off_on_cpu_where_torch_would_hang(tmp_path, cifar_npz, model):
    """torch's CPU channels_last backward through a 1x1 stride-2 conv with < 8 input channels never
    returns; such nets train in NCHW even when channels_last=true is asked for. In a subprocess with a
    time limit, so a regression fails instead of hanging the suite."""
    cmd = [sys.executable, "-m", "cifar_sweeps.train", *model.split(), "norm=bn", "channels_last=true",
           "device=cpu", "epochs=1", "data.val_size=200", "data.train_subset=256", "data.test_subset=200",
           "batch_size=64", "logger=none", "save_model=false", f"data.npz={cifar_npz}", f"hydra.run.dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "channels_last=true ignored" in proc.stdout + proc.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["state"] == "completed"
