"""Turn config groups into objects: model, optimizer, scheduler. Shared by train, inspect and bench."""

from __future__ import annotations

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .errors import ConfigError
from .targets import check_targets, whitelist


def instantiate_group(group: str, config, *args, **kwargs):
    """hydra.utils.instantiate of one config group's node, which may build only its group's kind of object
    (cifar_sweeps.targets: a model config a model, a logger config a logger)."""
    check_targets(group, config)
    try:
        return instantiate(config, *args, _execution_whitelist_=whitelist(group), **kwargs)
    except InstantiationException as e:  # e.g. a keyword the class does not take
        raise ConfigError(f"{group}._target_={config.get('_target_')}: cannot build it from the {group} config: "
                          f"{e.__cause__ or e}") from None


def call_partial(group: str, config, *args, **kwargs):
    """Build a `_partial_` group (optimizer, scheduler) and call it; its keywords are only checked by the call."""
    factory = instantiate_group(group, config)
    try:
        return factory(*args, **kwargs)
    except TypeError as e:  # e.g. optimizer._target_=torch.optim.Adam with SGD's momentum
        raise ConfigError(f"{group}._target_={config.get('_target_')}: cannot build it from the {group} config: "
                          f"{e}") from None


def build_model(cfg: DictConfig) -> nn.Module:
    """The model of `cfg.model` with the norm layer of `cfg.norm`."""
    check_targets("model", cfg.model)
    norm = instantiate_group("norm", cfg.norm)
    try:
        return instantiate(cfg.model, norm=norm, _execution_whitelist_=whitelist("model"))
    except (InstantiationException, TypeError) as e:  # TypeError: the norm factory called with the wrong keys
        raise ConfigError(f"model._target_={cfg.model.get('_target_')} with norm._target_={cfg.norm.get('_target_')}: "
                          f"cannot build the model from the model/norm config: {e.__cause__ or e}") from None


def count_params(cfg: DictConfig) -> int:
    """All parameters of the configured model (frozen ones too: they count against a budget),
    counted on the meta device: no memory, no data."""
    with torch.device("meta"):
        model = build_model(cfg)
    return sum(p.numel() for p in model.parameters())


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    return call_partial("optimizer", cfg.optimizer, params=model.parameters())


def scale_epoch_settings(sched_cfg: dict, target: str, ratio: float) -> None:
    """Settings counted in epochs (StepLR's step_size, MultiStepLR's milestones) and ExponentialLR's
    per-epoch gamma, written for one run length, stretched by `ratio` to another: the same shape, and the
    same final learning rate, over a time budget's planned epochs (cifar_sweeps.time_budget)."""
    if target.endswith(".StepLR") and "step_size" in sched_cfg:
        sched_cfg["step_size"] = max(1, round(sched_cfg["step_size"] * ratio))
    elif target.endswith("MultiStepLR") and "milestones" in sched_cfg:
        sched_cfg["milestones"] = sorted({max(1, round(m * ratio)) for m in sched_cfg["milestones"]})
    elif target.endswith("ExponentialLR") and "gamma" in sched_cfg:
        sched_cfg["gamma"] = sched_cfg["gamma"] ** (1 / ratio)


def build_scheduler(cfg: DictConfig, optimizer, steps_per_epoch: int, epochs: int, total_steps: int | None = None,
                    written_for: int | None = None):
    """Returns (scheduler or None, interval) where interval is 'step' or 'epoch'.

    Schedules that span the run get their length from the data, never from the user:
    OneCycleLR's total_steps and CosineAnnealingLR's T_max. A time-budgeted run passes its planned
    `total_steps` (its last epoch may be partial) and `written_for`, the `epochs` its epoch settings were
    written for (scaled to `epochs`).
    """
    sched_cfg = OmegaConf.to_container(cfg.scheduler, resolve=True)
    interval = sched_cfg.pop("interval", "epoch")
    if interval not in ("step", "epoch"):
        raise ConfigError(f"scheduler.interval must be 'step' or 'epoch', got {interval!r}")
    target = sched_cfg.get("_target_")
    if not target:
        return None, interval
    if written_for and written_for != epochs:
        scale_epoch_settings(sched_cfg, target, epochs / written_for)
    if interval == "step":
        units = total_steps if total_steps is not None else steps_per_epoch * epochs
    else:
        units = epochs
    if target.endswith("OneCycleLR"):
        sched_cfg["total_steps"] = units
        # OneCycleLR divides by zero when its warm-up is exactly one step (e.g. 4 steps, pct 0.25): a
        # smoke run with few steps gets a warm-up of 1.5 steps instead (half a step, for a 1-step run)
        if abs(sched_cfg.get("pct_start", 0.3) * units - 1.0) < 1e-9:
            sched_cfg["pct_start"] = 1.5 / units if units >= 2 else 0.5
    elif target.endswith("CosineAnnealingLR"):
        sched_cfg["T_max"] = units
    return call_partial("scheduler", OmegaConf.create(sched_cfg), optimizer), interval
