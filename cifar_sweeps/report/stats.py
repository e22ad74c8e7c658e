"""The numbers of a sweep: its Pareto front, per-group statistics and parameter budgets."""

from __future__ import annotations

import math
import statistics
from typing import Any

from .load import Sweep, Trial


def value_order(v: str):
    """Sort key of group values: numbers numerically (4 < 8 < 16), then text (bn < gn < ln)."""
    try:
        return (0, float(v), "")
    except ValueError:
        return (1, 0.0, v)


def pareto_front(trials: list[Trial], metric: str) -> list[Trial]:
    """Trials no other trial beats with fewer or equal parameters: the accuracy-per-parameter frontier."""
    points = sorted((t for t in trials if t.params and t.metric(metric) is not None),
                    key=lambda t: (t.params, -t.metric(metric)))
    front, best = [], -math.inf
    for t in points:
        if t.metric(metric) > best:
            front.append(t)
            best = t.metric(metric)
    return front


def best_trial(sweep: Sweep, metric: str) -> Trial | None:
    return max(sweep.completed(), key=lambda t: t.metric(metric) or -1, default=None)


def group_stats(sweep: Sweep, key: str, metric: str) -> list[dict[str, Any]]:
    """One row per value of `key` (e.g. per norm): trial counts and accuracies of its completed trials."""
    rows = []
    groups: dict[str, list[Trial]] = {}
    for t in sweep.trials:
        groups.setdefault(t.key(key), []).append(t)
    for value, members in sorted(groups.items(), key=lambda kv: value_order(kv[0])):
        done = [t for t in members if t.state == "completed"]
        vals = [t.metric(metric) for t in done if t.metric(metric) is not None]
        tests = [t.metric("test_acc") for t in done if t.metric("test_acc") is not None]
        params = [t.params for t in done if t.params]
        rows.append({"value": value, "trials": len(members), "completed": len(done),
                     "best": max(vals) if vals else None, "mean": statistics.fmean(vals) if vals else None,
                     "sd": statistics.stdev(vals) if len(vals) > 1 else None,
                     "best_test": max(tests) if tests else None,
                     "mean_test": statistics.fmean(tests) if tests else None,
                     "median_params": int(statistics.median(params)) if params else None})
    return rows


def budgets_of(sweep: Sweep, extra: list[int]) -> list[int]:
    """The trials' budget.max_params, and any budgets asked for on the command line."""
    found = {t.config["budget"].get("max_params") for t in sweep.trials if isinstance(t.config.get("budget"), dict)}
    found |= {t.summary.max_params for t in sweep.trials if t.summary is not None}
    return sorted({int(b) for b in list(found) + list(extra) if b})
