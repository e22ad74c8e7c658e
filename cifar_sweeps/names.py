"""Names, defined once: override keys, short override text, sweep groups, a model's option name.

Used by the loggers (W&B run names, groups, tags), the report (trial labels, compare keys) and the
benchmark. Plain string work: no torch, no Hydra state.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

# overrides that only say where things are or how they run, not what was trained: left out of run
# names and trial labels
NAME_SKIP_PREFIXES = ("data.npz", "data.root", "logger", "hydra.", "output_dir", "device", "threads", "save_model",
                      "resume", "trial", "keep_checkpoint")


def override_key(override: str) -> str:
    """'+model.width=8' -> 'model.width' (the `+`, `++` and `~` prefixes dropped)."""
    return override.split("=", 1)[0].lstrip("+~")


def override_value(overrides: Iterable[str], key: str) -> str | None:
    """The value an override list sets for `key`, or None."""
    for o in overrides:
        k, sep, v = o.partition("=")
        if sep and k.lstrip("+~") == key:
            return v
    return None


def is_meaningful(override: str) -> bool:
    """Does this override change what is trained (not just where files go or how it runs)?"""
    return not override_key(override).startswith(NAME_SKIP_PREFIXES)


def short_override(override: str) -> str:
    """'optimizer.lr=0.0039266720040339615' -> 'optimizer.lr=0.003927': Optuna samples, readable in names."""
    key, sep, value = override.partition("=")
    try:
        number = float(value)
    except ValueError:
        return override
    return f"{key}{sep}{number:.4g}" if "." in value or "e" in value.lower() else override


def sweep_group_name(sweep_dir: str | Path, job_name: str = "train") -> str:
    """W&B group of a sweep: '<job>/<parent dir>/<sweep dir>', e.g. 'train/2026-11-22/05-03-06'.
    The report recomputes it from the sweep directory when trials carry no wandb.json."""
    path = Path(sweep_dir)
    return "/".join([job_name, path.parent.name, path.name])[-128:]


def run_name(overrides: Iterable[str], fixed: Iterable[str] = ()) -> str | None:
    """A run's meaningful overrides, shortened; in a sweep only those not shared by every trial (`fixed`).
    None when there are none (W&B then picks a name)."""
    own = [o for o in overrides if is_meaningful(o)]
    shared = set(fixed)
    own = [o for o in own if o not in shared] or own
    return ",".join(map(short_override, own))[:128] or None


def model_option(target: str, conf_dir: Path) -> str:
    """The conf/model option whose _target_ is `target` (a run made without Hydra), else the class name."""
    for path in sorted((conf_dir / "model").glob("*.yaml")):
        if f"_target_: {target}\n" in path.read_text():
            return path.stem
    return target.rsplit(".", 1)[-1].lower()


def norm_option(norm: dict) -> str:
    """'bn', 'gn' or 'ln' from a resolved norm config (ln is GroupNorm with one group)."""
    if norm.get("kind") == "gn" and norm.get("groups") == 1:
        return "ln"
    return str(norm.get("kind", "?"))


def trial_dir_name(number: int) -> str:
    """A sweep trial's job folder, named by its Optuna trial number: never reused, sorts in order."""
    return f"trial_{number:04d}"
