"""Reject bad input before any data is loaded or any model trained. Every error names the key and
says what would be accepted; all of them are `ConfigError`s."""

from __future__ import annotations

import math
from numbers import Real

from omegaconf import DictConfig

from .augment import check_augment
from .data import check_sizes
from .engine import resolve_device
from .errors import ConfigError
from .record import OBJECTIVES


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def positive_int(cfg: DictConfig, key: str, minimum: int = 1) -> None:
    value = cfg.get(key) if "." not in key else _select(cfg, key)
    if not (_is_int(value) and value >= minimum):
        raise ConfigError(f"{key}={value!r} must be an integer >= {minimum}")


def _select(cfg: DictConfig, key: str):
    node = cfg
    for part in key.split("."):
        node = node.get(part) if node is not None else None
    return node


def check_optimizer(cfg: DictConfig) -> None:
    lr = cfg.optimizer.get("lr")
    if not (_is_number(lr) and lr > 0):
        raise ConfigError(f"optimizer.lr={lr!r} must be a positive number, e.g. optimizer.lr=0.05")
    for key in ("weight_decay", "momentum"):
        value = cfg.optimizer.get(key)
        if value is not None and not (_is_number(value) and value >= 0):
            raise ConfigError(f"optimizer.{key}={value!r} must be a number >= 0")
    momentum = cfg.optimizer.get("momentum")
    if momentum is not None and momentum >= 1:
        raise ConfigError(f"optimizer.momentum={momentum!r} must be below 1")


def check_objective(cfg: DictConfig) -> None:
    # one name (single-objective sweeps) or a list, e.g. [best_val_acc, params] for a Pareto search
    names = [cfg.objective] if isinstance(cfg.objective, str) else list(cfg.objective)
    for name in names:
        if name not in OBJECTIVES + ("params",):
            raise ConfigError(f"objective={cfg.objective!r}: {name!r} must be one of {list(OBJECTIVES)} or 'params' "
                              "(a list such as [best_val_acc, params] makes train() return one value per name)")
    if any(n in ("best_val_acc", "final_val_acc") for n in names) and cfg.data.val_size == 0:
        raise ConfigError(f"objective={cfg.objective} needs validation data but data.val_size=0; "
                          "set data.val_size>0, or objective=test_acc for a final run on all 50k images")


def check_model(cfg: DictConfig) -> None:
    dropout = cfg.model.get("dropout", 0.0)
    if not (_is_number(dropout) and 0.0 <= dropout < 1.0):
        raise ConfigError(f"model.dropout={dropout!r} must be a number in [0, 1)")
    width = cfg.model.get("width")
    if width is not None and not (_is_int(width) and width >= 1):
        raise ConfigError(f"model.width={width!r} must be an integer >= 1")


def check_run_settings(cfg: DictConfig) -> None:
    positive_int(cfg, "epochs")
    positive_int(cfg, "batch_size")
    positive_int(cfg, "eval_batch_size")
    if not (_is_int(cfg.seed) and 0 <= cfg.seed < 2**32):
        raise ConfigError(f"seed={cfg.seed!r} must be an integer in [0, 2**32)")
    threads = cfg.threads
    if threads != "auto" and not (_is_int(threads) and threads >= 1):
        raise ConfigError(f"threads={threads!r} must be auto (all cores, divided among parallel trials) or an "
                          "integer >= 1")
    for key in ("channels_last", "amp", "compile", "tta_flip", "tta_translate", "save_model", "resume",
                "keep_checkpoint"):
        value = cfg.get(key)
        if key == "channels_last" and value == "auto":
            continue
        if not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} must be true or false" + (" or auto" if key == "channels_last" else ""))
    if cfg.grad_clip_value is not None and not (_is_number(cfg.grad_clip_value) and cfg.grad_clip_value > 0):
        raise ConfigError(f"grad_clip_value={cfg.grad_clip_value!r} must be a positive number or null")
    ema_decay = cfg.get("ema_decay")
    if ema_decay is not None and not (_is_number(ema_decay) and 0.0 < ema_decay < 1.0):
        raise ConfigError(f"ema_decay={ema_decay!r} must be a number in (0, 1), e.g. 0.99, or null for no weight EMA")
    smoothing = cfg.loss.label_smoothing
    if not (_is_number(smoothing) and 0.0 <= smoothing < 1.0):
        raise ConfigError(f"loss.label_smoothing={smoothing!r} must be a number in [0, 1)")


def validate(cfg: DictConfig) -> None:
    """Check every key a run uses; raise ConfigError naming the first bad one."""
    check_run_settings(cfg)
    check_optimizer(cfg)
    check_objective(cfg)
    check_model(cfg)
    check_sizes(cfg.data)
    check_augment(cfg.augment)
    resolve_device(cfg.device)
