"""The run record: what one run leaves in its directory, defined once.

Every run directory holds

- `config.yaml`: the resolved config;
- `metrics.jsonl`: one `EpochRow` per finished epoch;
- `summary.json`: one `RunSummary`, written by `write_summary` (the only writer) when the run ends,
  whatever the ending: completed, rejected (over budget, never trained), failed (with its error) or
  pruned (stopped early by a pruner, with the epoch it reached);
- `checkpoint.pt` while it runs (see `cifar_sweeps.checkpoint`), `model.pt` when it completed.

The sweeper, the loggers and the report read these through `read_summary` / `read_history`, so a
key is named here and nowhere else. This module imports nothing heavy (the sweeper loads it during
Hydra's plugin scan).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import unwritable

State = Literal["completed", "rejected", "failed", "pruned"]
STATES: tuple[str, ...] = ("completed", "rejected", "failed", "pruned")
# what train() may return and sweepers optimise
OBJECTIVES = ("best_val_acc", "final_val_acc", "test_acc")

SUMMARY_FILE, METRICS_FILE, CONFIG_FILE, MODEL_FILE = "summary.json", "metrics.jsonl", "config.yaml", "model.pt"


@dataclass
class EpochRow:
    """One line of metrics.jsonl."""

    epoch: int
    train_loss: float
    train_acc: float
    lr: float
    val_loss: float | None = None
    val_acc: float | None = None
    epoch_s: float = 0.0
    img_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass
class RunSummary:
    """summary.json. Accuracies are fractions; None where a run has no such value (e.g. no validation
    split, or a run that ended before its test)."""

    state: State
    params: int | None = None
    max_params: int | None = None
    model_width: int | None = None
    # why: `reason` for a rejected run, `error` for a failed one
    reason: str | None = None
    error: str | None = None
    receptive_field: int | None = None
    receptive_field_with_pool: int | None = None
    best_val_acc: float | None = None
    best_epoch: int | None = None
    final_val_acc: float | None = None
    test_acc: float | None = None
    test_loss: float | None = None
    test_acc_per_class: dict[str, float] | None = None
    test_confusion: list[list[int]] | None = None
    epochs: int | None = None  # epochs asked for
    epochs_done: int = 0  # epochs finished (< epochs for a failed or pruned run)
    train_images: int | None = None
    wall_s: float | None = None
    device: str | None = None
    seed: int | None = None
    # epochs at which the run was resumed from its checkpoint (after a kill, or a retried sweep trial)
    resumed_at: list[int] = field(default_factory=list)
    # what the training steps ran with: threads, precision, memory_format, compile, fast_modules (engine.Run.speed)
    speed: dict[str, Any] | None = None
    # time-budgeted runs (cifar_sweeps.time_budget): the budget in seconds, the epochs planned (the last may
    # be partial; `epochs` is then their upper bound), and the plan: measured step time and img/s, estimated
    # validation and test time, start-up spent, steps planned, and each re-plan
    time_budget_s: float | None = None
    epochs_planned: int | None = None
    time_plan: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def objective(self, name: str | list[str]) -> float | list[float]:
        """The value of one objective name, or of each name in a list (multi-objective sweeps)."""
        if isinstance(name, str):
            return getattr(self, name)
        return [getattr(self, n) for n in name]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSummary":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def rejection_value(params: int, max_params: int, objective: str | list[str]):
    """What an over-budget (rejected) trial returns: below any accuracy and growing with the excess, so a
    sampler learns where the budget edge is; `params` stays itself for a Pareto search."""
    values = dict.fromkeys(OBJECTIVES, -params / max_params) | {"params": params}
    return values[objective] if isinstance(objective, str) else [values[n] for n in objective]


FINISHED: tuple[str, ...] = ("completed", "rejected", "pruned")  # states no later failure may overwrite


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """`write(tmp)`, then rename tmp to `path`: a reader (or a kill) never sees half a file, and a write that
    fails (a full disk, a read-only folder) leaves the previous file as it was, no temporary file behind,
    and a one-line RunFolderError naming the file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except Exception as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise unwritable(path, e) from None
        # torch.save reports a full disk as a RuntimeError of its zip writer ("unexpected pos ...")
        if shutil.disk_usage(path.parent).free < 1 << 20:
            raise unwritable(path, OSError(errno.ENOSPC, None)) from None
        raise


def atomic_write_text(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text))


def write_summary(run_dir: Path, summary: RunSummary) -> Path:
    path = Path(run_dir) / SUMMARY_FILE
    atomic_write_text(path, json.dumps(summary.as_dict(), indent=2))
    return path


def read_summary(run_dir: Path) -> RunSummary | None:
    """The run's summary, or None when it has none yet (still running, or killed)."""
    path = Path(run_dir) / SUMMARY_FILE
    try:
        return RunSummary.from_dict(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError, TypeError):
        return None


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl as dicts; a half-written last line (a killed run) is skipped."""
    path = Path(run_dir) / METRICS_FILE
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return rows
