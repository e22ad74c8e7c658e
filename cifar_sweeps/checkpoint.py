"""Per-epoch checkpoints: a killed run resumes from its last finished epoch and ends exactly where the
uninterrupted run would have (on CPU: the same metrics and test accuracy).

A checkpoint holds everything the next epoch depends on: model, optimizer, scheduler and EMA state,
every random number generator involved (torch's, numpy's, and the generator that draws the batch
order and augmentations), the history so far and the best validation epoch. It is written to a
temporary file and renamed, so a kill leaves either the previous checkpoint or the new one, never
half of one; it is loaded with `torch.load(weights_only=True)` (no pickled code).

Exact resume holds for the tensor augmentation backend. The albumentations backend's DataLoader
workers keep their own random state, which a checkpoint cannot reach: such a run resumes with fresh
augmentation draws.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError
from .engine import Run
from .record import write_atomically

CHECKPOINT_FILE = "checkpoint.pt"
# what save_checkpoint writes; a file without these is not a checkpoint of ours
CHECKPOINT_KEYS = ("config", "progress", "model", "optimizer", "scheduler", "ema", "torch_rng", "numpy_rng")
# config keys that say where files go or how the process runs, not what is trained: a run may resume
# with other values for these
RESUMABLE_CHANGES = ("resume", "keep_checkpoint", "trial", "output_dir", "logger", "device", "threads",
                     "save_model", "eval_batch_size", "data.npz", "data.root", "data.download", "augment.workers",
                     "pruner")


@dataclass
class Progress:
    """Where a run stands after its last finished epoch."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = -1.0
    best_epoch: int = 0
    train_s: float = 0.0  # wall seconds spent in earlier processes (a resumed run adds its own)
    resumed_at: list[int] = field(default_factory=list)
    # a time-budgeted run's plan (time_budget.Plan.as_dict): a resumed run keeps it, never measures again
    plan: dict[str, Any] | None = None


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}, lists kept as values."""
    flat = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def config_differences(saved: dict, current: dict) -> list[str]:
    """'key: saved -> current' for each training-relevant key that differs. A key absent on one side and null
    on the other is no difference: a run saved before the key existed (e.g. time_budget_s, null by default)
    resumes under a version that has it."""
    a, b = flatten(saved), flatten(current)
    diffs = []
    for key in sorted(a.keys() | b.keys()):
        if any(key == k or key.startswith(k + ".") for k in RESUMABLE_CHANGES):
            continue
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return diffs


def check_same_config(saved: dict, current: dict, written: str, source: str) -> None:
    """Refuse to continue (or re-read) a run under another configuration than the one it was made with."""
    diffs = config_differences(saved, current)
    if diffs:
        raise ConfigError(f"{written} another configuration; resume=true needs the same overrides. "
                          f"Differences ({source} -> now): " + "; ".join(diffs[:12])
                          + (f"; and {len(diffs) - 12} more" if len(diffs) > 12 else ""))


def _numpy_rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached": float(cached)}


def _set_numpy_rng_state(state: dict[str, Any]) -> None:
    np.random.set_state((state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
                         state["cached"]))


def save_checkpoint(run: Run, progress: Progress, config: dict, run_dir: Path) -> Path:
    """Write run_dir/checkpoint.pt atomically (temporary file, then rename)."""
    batches = run.train_batches
    state = {
        "config": config,
        "progress": vars(progress),
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict() if run.scheduler is not None else None,
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if run.device.type == "cuda" else None,
        "numpy_rng": _numpy_rng_state(),
        # the batch order and the tensor augmentations draw from this one generator
        "batches_rng": batches.gen.get_state() if hasattr(batches, "gen") else None,
    }
    path = Path(run_dir) / CHECKPOINT_FILE
    write_atomically(path, lambda tmp: torch.save(state, tmp))  # a full disk keeps the previous checkpoint
    return path


def load_checkpoint(run: Run, config: dict, run_dir: Path) -> Progress:
    """Restore `run` from run_dir/checkpoint.pt; refuses a checkpoint of another configuration."""
    path = Path(run_dir) / CHECKPOINT_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated by a full disk, another torch's format, ...
        raise ConfigError(f"{path}: cannot read the checkpoint ({type(e).__name__}: {e}); delete it to start "
                          "the run over") from None
    missing = [key for key in CHECKPOINT_KEYS if not isinstance(state, dict) or key not in state]
    if missing:
        raise ConfigError(f"{path} is a torch file but not a cifar_sweeps checkpoint (no {', '.join(missing)}); "
                          "delete it (or move it away) to start the run over")
    check_same_config(state["config"], config, f"{path} was written by", "checkpoint")
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(state["scheduler"])
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] is not None and run.device.type == "cuda":
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    _set_numpy_rng_state(state["numpy_rng"])
    if state["batches_rng"] is not None and hasattr(run.train_batches, "gen"):
        run.train_batches.gen.set_state(state["batches_rng"])
    return Progress(**state["progress"])


def has_checkpoint(run_dir: Path) -> bool:
    return (Path(run_dir) / CHECKPOINT_FILE).is_file()


def remove_checkpoint(run_dir: Path) -> None:
    (Path(run_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)
