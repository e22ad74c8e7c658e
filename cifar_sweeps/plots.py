"""Matplotlib figures shared by the W&B logger and the sweep report.

Built with the object-oriented API (`matplotlib.figure.Figure`, no pyplot), so nothing here
touches the global backend or leaks figures in a long sweep; `save()` writes a PNG with Agg.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

# one colour per compared group (tab10), in a fixed order so BN/GN/LN keep their colours across figures
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]


def save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight", facecolor="white")
    return path


def confusion_figure(confusion: Sequence[Sequence[int]], classes: Sequence[str], title: str = "") -> Figure:
    """Row-normalised confusion matrix (rows = true class), cells labelled with the percentage."""
    counts = np.asarray(confusion, dtype=float)
    rates = 100 * counts / np.clip(counts.sum(1, keepdims=True), 1, None)
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.subplots()
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=100)
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, f"{rates[i, j]:.0f}", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 50 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "Test confusion matrix (% of each true class)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


def per_class_figure(per_class: dict[str, float], title: str = "") -> Figure:
    names, values = list(per_class), [100 * v for v in per_class.values()]
    fig = Figure(figsize=(6.4, 3.2))
    ax = fig.subplots()
    bars = ax.bar(names, values, color=PALETTE[0])
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("test accuracy (%)")
    ax.tick_params(axis="x", rotation=45)
    ax.set_title(title or "Per-class test accuracy")
    return fig


def misclassified_figure(images: np.ndarray, true: Sequence[int], pred: Sequence[int], classes: Sequence[str],
                         cols: int = 8) -> Figure:
    """A grid of uint8 HWC images, each captioned 'true -> predicted'."""
    n = len(images)
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(1.45 * cols, 1.65 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, img, t, p in zip(axes, images, true, pred):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(f"{classes[t]}\n→ {classes[p]}", fontsize=7, color="#b00020")
    fig.suptitle("Misclassified test images (true → predicted)", fontsize=10)
    return fig


def curves_figure(history: list[dict]) -> Figure:
    """Loss and accuracy per epoch, train and validation, side by side."""
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(9, 3.2))
    ax_loss, ax_acc = fig.subplots(1, 2)
    for key, label, ax, scale in (("train_loss", "train", ax_loss, 1), ("val_loss", "validation", ax_loss, 1),
                                  ("train_acc", "train", ax_acc, 100), ("val_acc", "validation", ax_acc, 100)):
        values = [r.get(key) for r in history]
        if any(v is not None for v in values):
            ax.plot(epochs, [scale * v if v is not None else np.nan for v in values], marker="o", ms=3,
                    label=label)
    ax_loss.set_title("loss")
    ax_acc.set_title("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig
