"""logger=wandb with the real wandb package in offline mode: one run per trial, with the logged keys."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cifar_sweeps.errors import ConfigError
from cifar_sweeps.loggers import WandbLogger, resolve_wandb_mode, sweep_group_name
from cifar_sweeps.engine import TrainingDiverged
from cifar_sweeps.train import train
from conftest import compose_cfg
from wandb_sweep import offline_env, tiny_wandb_sweep, wandb_run_contents

EPOCH_KEYS = {"epoch", "train/loss", "train/acc", "val/loss", "val/acc", "lr", "time/epoch_s", "time/img_s"}
SUMMARY_KEYS = {"state", "params", "receptive_field", "best_val_acc", "best_epoch", "final_val_acc", "test_acc",
                "test_loss", "wall_s"}
MEDIA_KEYS = {"test/confusion_table", "test/per_class_acc_table", "test/misclassified", "curves"}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, cifar_npz):
    return tiny_wandb_sweep(tmp_path_factory, cifar_npz)


def trial_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def test_every_trial_has_an_offline_run_with_the_logged_keys(sweep):
    trials = trial_dirs(sweep)
    assert len(trials) == 6  # norm (3) x model.width (2)
    group = sweep_group_name(sweep)
    states = {}
    for trial in trials:
        summary = json.loads((trial / "summary.json").read_text())
        overrides = (trial / ".hydra" / "overrides.yaml").read_text()
        norm = next(o.split("=")[1] for o in overrides.split() if o.startswith("norm="))
        width = next(o.split("=")[1] for o in overrides.split() if o.startswith("model.width="))
        states[trial.name] = summary["state"]
        run = wandb_run_contents(trial)
        # grouped by the sweep, named after the swept overrides, tagged with model and norm
        assert run["run"].run_group == group
        assert run["run"].display_name == f"norm={norm},model.width={width}"
        assert set(run["run"].tags) >= {"model=skip_s8", f"norm={norm}"}
        assert {"model", "norm", "optimizer", "choices", "params"} <= run["config"]
        assert run["exit_code"] == 0
        record = json.loads((trial / "wandb.json").read_text())
        assert record["mode"] == "offline" and record["group"] == group and record["id"] in run["path"].name
        if summary["state"] == "completed":
            epochs = [h for h in run["history"] if "val/acc" in h]
            assert [h["epoch"] for h in epochs] == [1, 2]
            assert all(EPOCH_KEYS <= h.keys() for h in epochs)
            assert epochs[-1]["val/acc"] == pytest.approx(summary["final_val_acc"])
            assert SUMMARY_KEYS | {"test_class_acc/cat"} <= run["summary"]
            media = set().union(*(h.keys() for h in run["history"]))
            assert {k for k in MEDIA_KEYS if any(m.startswith(k) for m in media)} == MEDIA_KEYS
            for png in ("confusion", "per_class", "misclassified", "curves"):
                assert (trial / "figures" / f"{png}.png").stat().st_size > 1000
        else:  # over budget: a W&B run that says why, and no curves
            assert summary["state"] == "rejected" and width == "8"
            assert {"state", "params", "reason", "max_params"} <= run["summary"]
            assert not [h for h in run["history"] if "val/acc" in h]
    assert sorted(states.values()) == ["completed"] * 3 + ["rejected"] * 3


def tiny_wandb_cfg(npz, out, *extra):
    return compose_cfg(["model=skip_s8", "model.width=4", "data.val_size=100", "data.train_subset=300",
                        "data.test_subset=100", "epochs=1", "batch_size=100", "save_model=false", "logger=wandb",
                        "threads=1", *extra], npz=npz, out=out)


def test_direct_train_call_logs_offline_without_hydra(cifar_npz, tmp_path, monkeypatch):
    for key, value in offline_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    out = tmp_path / "run"
    train(tiny_wandb_cfg(cifar_npz, out, "logger.misclassified=4", "logger.tags=[smoke]"))
    run = wandb_run_contents(out)
    assert run["run"].run_group == ""  # no sweep, no group
    assert set(run["run"].tags) == {"model=skip_s8", "norm=bn", "smoke"}
    assert EPOCH_KEYS <= run["history"][0].keys()
    assert run["exit_code"] == 0


def test_diverged_run_is_a_failed_wandb_run(cifar_npz, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged):
        train(tiny_wandb_cfg(cifar_npz, out, "optimizer.lr=1e12", "scheduler=none"))
    run = wandb_run_contents(out)
    assert run["exit_code"] == 1
    assert {"state", "error", "epochs_done"} <= run["summary"]


@pytest.mark.parametrize("cause", ["invalid_setting", "wandb_dir_is_a_file"])
def test_training_goes_on_when_wandb_cannot_start(cause, cifar_npz, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "run"
    if cause == "invalid_setting":
        cfg = tiny_wandb_cfg(cifar_npz, out, "+logger.settings.not_a_wandb_setting=1")
    else:  # W&B cannot create <run dir>/wandb/
        out.mkdir()
        (out / "wandb").write_text("in the way")
        cfg = tiny_wandb_cfg(cifar_npz, out)
    with caplog.at_level(logging.WARNING, logger="cifar_sweeps"):
        value = train(cfg)
    assert any("W&B could not start" in r.getMessage() for r in caplog.records)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["state"] == "completed" and value == summary["best_val_acc"]
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (out / "wandb.json").exists()


def test_mode_follows_api_key_and_wandb_mode(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_wandb_mode("auto") == "offline"
    assert resolve_wandb_mode("disabled") == "disabled"


def test_bad_logger_settings_are_config_errors():
    with pytest.raises(ConfigError, match="logger.mode"):
        WandbLogger(mode="cloud")
    with pytest.raises(ConfigError, match="logger.misclassified"):
        WandbLogger(misclassified=-1)
