"""Re-evaluating a saved run under each test-time augmentation (cifar_sweeps.evaluate)."""

from __future__ import annotations

import json

import pytest

from cifar_sweeps.errors import ConfigError
from cifar_sweeps.evaluate import evaluate_run
from cifar_sweeps.train import train


def test_saved_run_reevaluates_to_its_own_validation_accuracy(tiny_cfg, tmp_path):
    cfg = tiny_cfg("model=airnet", "tta_flip=true", "save_model=true")
    train(cfg)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    accs = evaluate_run(tmp_path / "run", "val", "cpu")
    assert set(accs) == {"none", "flip", "flip_translate"}
    # same weights, same validation images, same TTA as the run used: the same accuracy
    assert accs["flip"] == pytest.approx(summary["final_val_acc"])
    assert all(0.0 <= a <= 1.0 for a in accs.values())


def test_a_run_without_weights_is_a_clear_error(tiny_cfg, tmp_path):
    train(tiny_cfg("model=airnet", "save_model=false"))
    with pytest.raises(ConfigError, match="model.pt not found"):
        evaluate_run(tmp_path / "run", "val", "cpu")
