"""The report's matplotlib figures: accuracy vs parameters, the best trials' validation curves, and one
compared key side by side. Object-oriented matplotlib (no pyplot), saved with `plots.save`."""

from __future__ import annotations

import statistics

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from .. import plots
from .load import METRIC_NAMES, Sweep, Trial
from .stats import pareto_front, value_order
from .text import pct, short_params


def epoch_axis(ax, epochs: int) -> None:
    """Whole epochs only; a one-epoch run gets a sensible range instead of 0.95-1.05."""
    epochs = max(epochs, 1)
    if epochs <= 20:
        ax.set_xticks(range(1, epochs + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5 if epochs < 3 else 0.8, epochs + (0.5 if epochs < 3 else 0.2))


def group_colors(values: list[str]) -> dict[str, str]:
    """One colour per group value, in value order, so a group keeps its colour in every figure."""
    return {v: plots.PALETTE[i % len(plots.PALETTE)] for i, v in enumerate(sorted(set(values), key=value_order))}


def val_points(t: Trial) -> tuple[list[int], list[float]]:
    """(epochs, validation accuracy in %) of a trial's metrics rows; shorter for a pruned run."""
    rows = [r for r in t.history if r.get("val_acc") is not None and r.get("epoch") is not None]
    return [r["epoch"] for r in rows], [100 * r["val_acc"] for r in rows]


def accuracy_vs_params_figure(sweep: Sweep, key: str, metric: str, budgets: list[int]) -> Figure:
    done = [t for t in sweep.completed() if t.params and t.metric(metric) is not None]
    colors = group_colors([t.key(key) for t in sweep.trials])
    fig = Figure(figsize=(10, 5.2))
    ax = fig.subplots()
    for value, color in colors.items():
        pts = [t for t in done if t.key(key) == value]
        if pts:
            ax.scatter([t.params for t in pts], [100 * t.metric(metric) for t in pts], s=46, color=color,
                       edgecolor="white", linewidth=0.6, label=f"{key}={value}", zorder=3)
    front = pareto_front(done, metric)
    if front:
        xs = [t.params for t in front]
        ys = [100 * t.metric(metric) for t in front]
        ax.step(xs, ys, where="post", color="black", linestyle="--", linewidth=1.2, label="Pareto front", zorder=2)
        ax.scatter(xs, ys, s=120, facecolor="none", edgecolor="black", linewidth=1.2, zorder=4)
        for t in front[-6:]:  # the largest few: labels for every point would overlap
            ax.annotate(t.label if len(t.label) < 40 else f"trial {t.num}", (t.params, 100 * t.metric(metric)),
                        xytext=(6, -12), textcoords="offset points", fontsize=7.5, color="#333333")
    ymin = min([100 * t.metric(metric) for t in done], default=0)
    rejected = [t for t in sweep.trials if t.state == "rejected" and t.params]
    if rejected:
        y = ymin - 2
        ax.scatter([t.params for t in rejected], [y] * len(rejected), marker="x", color="#999999", s=30,
                   label=f"rejected: over budget ({len(rejected)})", zorder=3)
    xs_all = [t.params for t in done + rejected]
    for b in budgets:
        ax.axvline(b, color="#c62828", linestyle=":", linewidth=1.4, zorder=1)
        ax.text(b, 1.01, f"budget {short_params(b)}", transform=ax.get_xaxis_transform(), color="#c62828",
                ha="center", va="bottom", fontsize=8)
    if xs_all:
        lo, hi = min(xs_all + budgets), max(xs_all + budgets)
        if hi / max(lo, 1) > 2.5:
            # log scale, labelled at 1-2-5 steps (a bare log axis over 10k-50k shows no labels at all)
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
            ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(FuncFormatter(short_params))
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(f"{METRIC_NAMES[metric]} (%)")
    ax.set_title(f"{METRIC_NAMES[metric]} vs parameters ({len(done)} completed trials)", pad=16)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)  # outside: never hides points
    return fig


def val_curves_figure(sweep: Sweep, key: str, metric: str, top: int) -> Figure:
    """The best trials' validation curves; a pruned trial among them ends early, with a cross."""
    candidates = [t for t in sweep.trials if t.state in ("completed", "pruned") and t.metric(metric) is not None
                  and val_points(t)[0]]
    ranked = sorted(candidates, key=lambda t: -t.metric(metric))[:top]
    colors = group_colors([t.key(key) for t in sweep.trials])  # the same colour per group as the other figures
    styles, seen = ["-", "--", ":", "-."], {}
    fig = Figure(figsize=(10, 4.4))
    ax = fig.subplots()
    for t in ranked:
        k = seen[t.key(key)] = seen.get(t.key(key), -1) + 1
        epochs, accs = val_points(t)
        pruned = f", pruned at epoch {t.last_epoch()}" if t.state == "pruned" else ""
        ax.plot(epochs, accs, marker="os^D"[k % 4], ms=3.5, color=colors[t.key(key)], linestyle=styles[k % 4],
                label=f"#{t.num} {t.label[:50]} ({pct(t.metric(metric))}{pruned})")
        if t.state == "pruned":
            ax.plot(epochs[-1], accs[-1], marker="x", ms=9, mew=2, color=colors[t.key(key)])
    epoch_axis(ax, max((t.last_epoch() for t in ranked), default=1))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"Validation accuracy per epoch: the {len(ranked)} best trials by {METRIC_NAMES[metric]} "
                 f"(colour = {key})")
    ax.grid(alpha=0.3)
    if ranked:
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0)
    else:
        ax.text(0.5, 0.5, "no completed trial with validation curves", ha="center", transform=ax.transAxes)
    return fig


def compare_figure(sweep: Sweep, key: str, metric: str) -> Figure:
    """Left: each group's completed trials' accuracies. Right: each group's mean validation curve with a
    min-max band over its completed trials, and its pruned trials' curves, which stop where they were
    pruned (left out of the mean: it would otherwise jump where they stop)."""
    values = sorted({t.key(key) for t in sweep.trials}, key=value_order)
    colors = group_colors(values)
    fig = Figure(figsize=(11, 4.4))
    ax_pts, ax_curve = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.4]})
    rng = np.random.default_rng(0)
    n_pruned = 0
    for i, v in enumerate(values):
        done = [t for t in sweep.completed() if t.key(key) == v]
        for offset, name, marker in ((-0.15, metric, "o"), (0.15, "test_acc", "D")):
            ys = [100 * t.metric(name) for t in done if t.metric(name) is not None]
            if ys:
                xs = i + offset + rng.uniform(-0.05, 0.05, len(ys))
                ax_pts.scatter(xs, ys, color=colors[v], marker=marker, s=34, alpha=0.85, edgecolor="white",
                               linewidth=0.5, zorder=3)
                ax_pts.hlines(statistics.fmean(ys), i + offset - 0.1, i + offset + 0.1, color="black", linewidth=2,
                              zorder=4)
        curves = [val_points(t) for t in done if val_points(t)[0]]
        if curves:
            n = max(max(epochs) for epochs, _ in curves)
            table = np.full((len(curves), n), np.nan)
            for j, (epochs, accs) in enumerate(curves):
                for epoch, acc in zip(epochs, accs):
                    if 1 <= epoch <= n:
                        table[j, epoch - 1] = acc
            epochs = np.arange(1, n + 1)
            with np.errstate(all="ignore"):
                mean = np.nanmean(table, 0)
            ax_curve.plot(epochs, mean, color=colors[v], marker="o", ms=3, label=f"{key}={v} (n={len(curves)})")
            if len(curves) > 1:
                ax_curve.fill_between(epochs, np.nanmin(table, 0), np.nanmax(table, 0), color=colors[v], alpha=0.15)
        for t in sweep.trials:
            if t.state == "pruned" and t.key(key) == v and val_points(t)[0]:
                epochs, accs = val_points(t)
                ax_curve.plot(epochs, accs, color=colors[v], linewidth=0.9, alpha=0.6)
                ax_curve.plot(epochs[-1], accs[-1], marker="x", ms=7, color=colors[v], alpha=0.8)
                n_pruned += 1
    if n_pruned:
        ax_curve.plot([], [], color="#777777", linewidth=0.9, marker="x", label=f"pruned trials ({n_pruned})")
    ax_pts.set_xticks(range(len(values)), [f"{key}={v}" for v in values])
    ax_pts.set_xlim(-0.6, len(values) - 0.4)
    ax_pts.set_ylabel("accuracy (%)")
    ax_pts.set_title(f"● {METRIC_NAMES[metric]}   ◆ test acc   (black bar = mean)", fontsize=10)
    ax_pts.grid(alpha=0.3, axis="y")
    ax_curve.set_xlabel("epoch")
    epoch_axis(ax_curve, max((t.last_epoch() for t in sweep.trials if t.state in ("completed", "pruned")),
                             default=1))
    ax_curve.set_ylabel("validation accuracy (%)")
    ax_curve.set_title("mean validation curve (band = min–max over completed trials)", fontsize=10)
    ax_curve.grid(alpha=0.3)
    if ax_curve.lines:
        ax_curve.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{key}: side by side", fontsize=12)
    return fig
