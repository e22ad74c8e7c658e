"""Reject bad input before any data is loaded or any model trained. Every error names the key and
says what would be accepted; all of them are `ConfigError`s.

Values arrive from YAML and from Hydra overrides, so any key may hold any type: `epochs=abc` is the
string 'abc', `lr=1e9` a float, `key=null` None, `key=true` a bool (and a bool is an int in Python,
so every integer check here excludes bools explicitly), `key=nan` / `key=inf` non-finite floats,
`key=[1,2]` a list. Each check below accepts exactly what the code that later reads the key can
use; anything else would surface after the data is loaded as a raw TypeError / ValueError from torch
or numpy that names no key. tests/test_validation.py throws random values at these keys to keep it so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real

import torch
from omegaconf import DictConfig

from .augment import check_augment
from .budget import MAX_WIDTH
from .data import check_batch_size, check_sizes
from .engine import resolve_device
from .errors import ConfigError
from .record import OBJECTIVES
from .targets import check_targets
from .time_budget import MIN_TIME_BUDGET_S

# torch.set_num_threads takes a C int (threads=2**31 is a ValueError inside torch) and starts that many
# OpenMP workers: far more than any machine's cores only thrash. 1024 is above any node here
MAX_THREADS = 1024
_ABSENT = object()


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    # an int is always finite (and math.isfinite(10**400) would itself raise OverflowError)
    return isinstance(value, Real) and not isinstance(value, bool) and (_is_int(value) or math.isfinite(value))


# torch, numpy and the C code under them take 64-bit integers: a Python int beyond them (an override
# such as weight_decay=10**30) is an OverflowError deep inside torch, so it is named here
INT64_MAX = 2**63 - 1


def _too_large(key: str, value) -> None:
    if _is_int(value) and abs(value) > INT64_MAX:
        raise ConfigError(f"{key}={value!r} is too large: torch and numpy take 64-bit integers (|value| < 2**63); "
                          "use a smaller value, or write it as a float (1e30) where a number is expected")


def _select(cfg: DictConfig, key: str, default=_ABSENT):
    """cfg's value at a dotted key, or `default` when the key (or a group on its path) is not there."""
    node = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def _is_sequence(value) -> bool:
    """A list or ListConfig (not a string, not a mapping)."""
    return not isinstance(value, (str, bytes, Mapping)) and hasattr(value, "__iter__") and hasattr(value, "__len__")


def _bounds(low, high, low_open: bool, high_open: bool) -> str:
    low, high = (f"{b:g}" if isinstance(b, float) else b for b in (low, high))  # (0, 1), not (0.0, 1.0)
    if high is None:
        return f"> {low}" if low_open else f">= {low}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def check_int(cfg: DictConfig, key: str, low: int, high: int | None = None, null: str | None = None,
              example=None, optional: bool = False) -> None:
    """An integer in [low, high]; `null` says what null means where null is allowed; an `optional` key may be
    absent (e.g. model.width of a model without a width knob)."""
    value = _select(cfg, key, None if not optional else _ABSENT)
    if value is _ABSENT or (value is None and null is not None):
        return
    if high is None:  # a bounded key names its range instead
        _too_large(key, value)
    if not (_is_int(value) and value >= low and (high is None or value <= high)):
        example = low if example is None else example
        raise ConfigError(f"{key}={value!r} must be an integer {_bounds(low, high, False, False)}"
                          + (f" or null ({null})" if null else "") + f"; e.g. {key}={example}")


def check_number(cfg: DictConfig, key: str, low: float, high: float | None = None, low_open: bool = False,
                 high_open: bool = False, null: str | None = None, example=None, optional: bool = False) -> None:
    """A finite number (an int is fine, a bool is not) in the given range."""
    value = _select(cfg, key, None if not optional else _ABSENT)
    if value is _ABSENT or (value is None and null is not None):
        return
    if high is None:
        _too_large(key, value)
    ok = _is_number(value) and (value > low if low_open else value >= low)
    ok = ok and (high is None or (value < high if high_open else value <= high))
    if not ok:
        what = "a positive number" if (low, high, low_open) == (0.0, None, True) else \
            f"a number {_bounds(low, high, low_open, high_open)}"
        raise ConfigError(f"{key}={value!r} must be {what}" + (f" or null ({null})" if null else "")
                          + f"; e.g. {key}={example}")


def check_bool(cfg: DictConfig, key: str, auto: bool = False, optional: bool = False) -> None:
    value = _select(cfg, key, None if not optional else _ABSENT)
    if value is _ABSENT or (auto and isinstance(value, str) and value == "auto"):
        return
    if not isinstance(value, bool):
        raise ConfigError(f"{key}={value!r} must be true or false" + (" or auto" if auto else "")
                          + f"; e.g. {key}={'auto' if auto else 'true'}")


def check_optimizer(cfg: DictConfig) -> None:
    check_number(cfg, "optimizer.lr", 0.0, low_open=True, example=0.05)
    # present in the optimizer's group = passed to torch, which compares it with 0 (None is a TypeError there);
    # absent (e.g. Adam has no momentum) is fine
    check_number(cfg, "optimizer.weight_decay", 0.0, example=5e-4, optional=True)
    check_number(cfg, "optimizer.momentum", 0.0, 1.0, high_open=True, example=0.9, optional=True)
    check_bool(cfg, "optimizer.nesterov", optional=True)
    momentum = _select(cfg, "optimizer.momentum", None)
    if _select(cfg, "optimizer.nesterov", False) is True and momentum == 0:
        # torch.optim.SGD raises "Nesterov momentum requires a momentum" only once the data is loaded
        raise ConfigError(f"optimizer.momentum={momentum!r} must be > 0 with optimizer.nesterov=true; "
                          "set optimizer.momentum=0.9, or optimizer.nesterov=false for plain SGD")


def check_scheduler(cfg: DictConfig) -> None:
    interval = _select(cfg, "scheduler.interval", "epoch")
    if interval not in ("step", "epoch") or not isinstance(interval, str):
        raise ConfigError(f"scheduler.interval={interval!r} must be step or epoch; e.g. scheduler.interval=step")
    # OneCycleLR's warm-up fraction: 0 or 1 leaves one of its two phases empty (a division by zero in torch)
    check_number(cfg, "scheduler.pct_start", 0.0, 1.0, low_open=True, high_open=True, example=0.25, optional=True)
    check_number(cfg, "scheduler.max_lr", 0.0, low_open=True, example="${optimizer.lr}", optional=True)


def check_objective(cfg: DictConfig) -> None:
    # one name (single-objective sweeps) or a list, e.g. [best_val_acc, params] for a Pareto search
    objective = cfg.get("objective")
    names = [objective] if isinstance(objective, str) else list(objective) if _is_sequence(objective) else None
    known = list(OBJECTIVES) + ["params"]
    if not names:
        raise ConfigError(f"objective={objective!r} must be one of {known} or a non-empty list of them; "
                          "e.g. objective=best_val_acc, or objective=[best_val_acc,params] for a Pareto search")
    for name in names:
        if not (isinstance(name, str) and name in known):
            raise ConfigError(f"objective={objective!r}: {name!r} must be one of {list(OBJECTIVES)} or 'params' "
                              "(a list such as [best_val_acc, params] makes train() return one value per name)")
    if any(n in ("best_val_acc", "final_val_acc") for n in names) and cfg.data.val_size == 0:
        raise ConfigError(f"objective={objective} needs validation data but data.val_size=0; "
                          "set data.val_size>0, or objective=test_acc for a final run on all 50k images")


def check_model(cfg: DictConfig) -> None:
    check_number(cfg, "model.dropout", 0.0, 1.0, high_open=True, example=0.05, optional=True)
    # every model here takes an integer width; the same ceiling fit_width's search stops at
    check_int(cfg, "model.width", 1, MAX_WIDTH, example=16, optional=True)


def check_data(cfg: DictConfig) -> None:
    npz = _select(cfg, "data.npz", None)
    if npz is not None and not (isinstance(npz, str) and npz):
        raise ConfigError(f"data.npz={npz!r} must be the path of a CIFAR-10 .npz file or null (torchvision's copy "
                          "under data.root); e.g. data.npz=/path/cifar10.npz")
    root = _select(cfg, "data.root", "data")
    if not (isinstance(root, str) and root):
        raise ConfigError(f"data.root={root!r} must be a folder path; e.g. data.root=data")
    check_bool(cfg, "data.download", optional=True)
    for key in ("data.mean", "data.std"):
        value = _select(cfg, key, None)
        if not (_is_sequence(value) and len(value) == 3 and all(_is_number(v) for v in value)
                and (key == "data.mean" or all(v > 0 for v in value))):
            raise ConfigError(f"{key}={value!r} must be 3 {'positive ' if key == 'data.std' else ''}numbers "
                              f"(R, G, B, as fractions of 255); e.g. {key}=[0.49,0.48,0.45]")
    check_sizes(cfg.data)


def check_budget(cfg: DictConfig) -> None:
    check_int(cfg, "budget.max_params", 1, null="no parameter limit", example=50000, optional=True)
    check_bool(cfg, "budget.fit_width", optional=True)
    check_int(cfg, "budget.min_width", 1, null="the same as 1", example=1, optional=True)


def check_device(cfg: DictConfig) -> None:
    device = cfg.get("device")
    if not isinstance(device, str):
        raise ConfigError(f"device={device!r} must be auto, cpu or cuda[:N]; e.g. device=auto")
    if device != "auto":
        try:
            parsed = torch.device(device)
        except (RuntimeError, ValueError) as e:
            raise ConfigError(f"device={device!r} is not a torch device; use auto, cpu or cuda[:N]") from e
        # torch knows meta, mps, xpu, ...; the training code handles the CPU and CUDA
        if parsed.type not in ("cpu", "cuda"):
            raise ConfigError(f"device={device!r} must be auto, cpu or cuda[:N]; e.g. device=auto")
        if parsed.type == "cuda" and parsed.index is not None and torch.cuda.is_available() \
                and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                              "use device=cuda:0 or device=auto")
    resolve_device(device)


def check_run_settings(cfg: DictConfig) -> None:
    check_int(cfg, "epochs", 1, example=20)
    # a run's wall-clock budget; with it, epochs is the most the plan may take (cifar_sweeps.time_budget)
    check_number(cfg, "time_budget_s", MIN_TIME_BUDGET_S, null="no time budget: epochs decides", example=600,
                 optional=True)
    # the training loader drops a 1-image batch (BatchNorm cannot train on one image), so a batch of 1
    # would leave an epoch without a single step
    check_int(cfg, "batch_size", 2, example=256)
    check_int(cfg, "eval_batch_size", 1, example=1024)
    check_int(cfg, "seed", 0, 2**32 - 1, example=1)  # numpy seeds are 32-bit
    threads = cfg.get("threads")
    if not (isinstance(threads, str) and threads == "auto") and not (_is_int(threads) and 1 <= threads <= MAX_THREADS):
        raise ConfigError(f"threads={threads!r} must be auto (all cores, divided among parallel trials) or an "
                          f"integer in [1, {MAX_THREADS}]; e.g. threads=1")
    check_bool(cfg, "channels_last", auto=True)
    check_bool(cfg, "amp", auto=True)
    check_bool(cfg, "fast_modules", optional=True)
    for key in ("compile", "tta_flip", "tta_translate", "save_model", "resume", "keep_checkpoint"):
        check_bool(cfg, key)
    check_number(cfg, "grad_clip_value", 0.0, low_open=True, null="no clipping", example=0.1)
    check_number(cfg, "ema_decay", 0.0, 1.0, low_open=True, high_open=True, null="no weight EMA", example=0.99)
    check_number(cfg, "loss.label_smoothing", 0.0, 1.0, high_open=True, example=0.1)


def check_groups(cfg: DictConfig) -> None:
    """Each group's `_target_`s name only what that group builds (cifar_sweeps.targets)."""
    for group in ("model", "norm", "optimizer", "scheduler", "logger", "pruner"):
        node = _select(cfg, group, None)
        if node is not None:
            check_targets(group, node)


def validate(cfg: DictConfig) -> None:
    """Check every key a run uses; raise ConfigError naming the first bad one."""
    check_groups(cfg)
    # each key's own type and range first; then the checks that combine keys (objective vs
    # data.val_size, nesterov vs momentum), so a bad value is named as itself
    check_run_settings(cfg)
    check_optimizer(cfg)
    check_scheduler(cfg)
    check_model(cfg)
    check_data(cfg)
    check_batch_size(cfg.batch_size, cfg.data)
    check_objective(cfg)
    check_budget(cfg)
    check_augment(cfg.augment)
    check_device(cfg)
