"""Parameter budgets: fit a model's width to the budget.

Parameters are counted on the meta device (`build.count_params`: no memory, no data, ~25 ms a
model on CPU), so solving the width by bisection costs well under a second, before any data is
loaded. Every model has an integer `model.width` whose parameter count never decreases as it grows.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from .build import count_params
from .errors import ConfigError

log = logging.getLogger("cifar_sweeps")

# no model in this project is anywhere near this wide; stops the upward search on a broken knob
MAX_WIDTH = 1 << 14


def params_at_width(cfg: DictConfig, width: int) -> int:
    """Parameters of cfg's model with model.width set to `width` (cfg itself is left unchanged)."""
    old = cfg.model.width
    cfg.model.width = width
    try:
        return count_params(cfg)
    finally:
        cfg.model.width = old


def solve_width(cfg: DictConfig, max_params: int, min_width: int = 1) -> tuple[int, int]:
    """The largest model.width >= min_width whose model has <= max_params parameters, and its count.

    Gallops up from the configured width (doubling) until over budget, then bisects. Raises
    ConfigError when model.width is missing or even min_width does not fit.
    """
    if "width" not in cfg.model:
        raise ConfigError(f"budget.fit_width=true but model {cfg.model.get('_target_')} has no model.width knob; "
                          "set budget.fit_width=false")
    if not (isinstance(min_width, int) and min_width >= 1):
        raise ConfigError(f"budget.min_width={min_width} must be a positive integer")
    low_params = params_at_width(cfg, min_width)
    if low_params > max_params:
        raise ConfigError(f"budget.fit_width: even model.width={min_width} has {low_params:,} parameters > "
                          f"budget.max_params={max_params:,}; raise budget.max_params or shrink the other model "
                          "knobs (depth, expansion, ...)")
    good, good_params = min_width, low_params  # largest width known to fit
    bad = None  # smallest width known not to fit
    probe = max(min_width + 1, int(cfg.model.width))
    while bad is None:
        if probe > MAX_WIDTH:
            log.warning("budget.fit_width: model.width=%d still fits %s parameters; stopping there",
                        good, f"{max_params:,}")
            return good, good_params
        n = params_at_width(cfg, probe)
        if n <= max_params:
            good, good_params, probe = probe, n, probe * 2
        else:
            bad = probe
    while bad - good > 1:
        mid = (good + bad) // 2
        n = params_at_width(cfg, mid)
        if n <= max_params:
            good, good_params = mid, n
        else:
            bad = mid
    return good, good_params


def fit_width_to_budget(cfg: DictConfig) -> int:
    """Set cfg.model.width to the largest width within budget.max_params; returns it."""
    max_params = cfg.budget.get("max_params")
    if max_params is None:
        raise ConfigError("budget.fit_width=true needs budget.max_params (the budget to fill), e.g. "
                          "budget.max_params=50000")
    width, params = solve_width(cfg, int(max_params), int(cfg.budget.get("min_width") or 1))
    log.info("budget.fit_width: model.width=%d -> %s parameters (budget %s)", width, f"{params:,}",
             f"{max_params:,}")
    cfg.model.width = width
    return width

