"""Finding a sweep's run directories and loading them as `Trial`s of one `Sweep`.

A run directory is read through the run record (`cifar_sweeps.record`): summary.json and metrics.jsonl;
besides it only config.yaml, .hydra/{overrides,hydra,config}.yaml and wandb.json. Several directories
(e.g. each worker's sweep directory of one study) make one sweep, each run listed once.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..errors import ConfigError
from ..names import is_meaningful, override_value, short_override, sweep_group_name
from ..record import CONFIG_FILE, SUMMARY_FILE, RunSummary, read_history, read_summary
from .study import StudyReport, StudyTrial, read_studies, sweep_storages

METRICS = ("best_val_acc", "final_val_acc", "test_acc")
METRIC_NAMES = {"best_val_acc": "best val acc", "final_val_acc": "final val acc", "test_acc": "test acc"}
# the order states are counted and listed in; "unfinished" = no summary.json (running, or killed)
STATE_ORDER = {"completed": 0, "pruned": 1, "failed": 2, "rejected": 3, "unfinished": 4}


@dataclass
class Trial:
    path: Path
    num: str  # the run's folder, relative to the sweep directory ("-" for a single run)
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    choices: dict[str, str] = field(default_factory=dict)
    summary: RunSummary | None = None  # None while running, or after a kill
    history: list[dict[str, Any]] = field(default_factory=list)
    wandb: dict[str, Any] | None = None
    label: str = ""  # the overrides that set this trial apart from the others
    # the Optuna trials that ran in this folder, oldest first: a dead trial and its retry share one
    attempts: list[StudyTrial] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.summary.state if self.summary is not None else "unfinished"

    @property
    def params(self) -> int | None:
        return self.summary.params if self.summary is not None else None

    def metric(self, name: str) -> float | None:
        value = getattr(self.summary, name, None)
        return value if isinstance(value, (int, float)) and math.isfinite(value) else None

    def last_epoch(self) -> int:
        """The last epoch with a metrics row (a pruned or failed run stops early)."""
        return max((r.get("epoch", 0) for r in self.history), default=0)

    def key(self, name: str) -> str:
        """The trial's value of a Hydra group (its choice, e.g. norm -> 'gn') or of a dotted config key."""
        if name in self.choices:
            return str(self.choices[name])
        value = override_value(self.overrides, name)  # also for trials rejected before config.yaml
        if value is not None:
            return value
        node: Any = self.config
        for part in name.split("."):
            if not isinstance(node, dict) or part not in node:
                return "?"
            node = node[part]
        return json.dumps(node) if isinstance(node, (dict, list)) else str(node)


@dataclass
class Sweep:
    roots: list[Path]  # the directories given, first one first
    trials: list[Trial]
    shared_overrides: list[str]
    studies: list[StudyReport] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.roots[0]

    def completed(self) -> list[Trial]:
        return [t for t in self.trials if t.state == "completed"]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.trials:
            out[t.state] = out.get(t.state, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: STATE_ORDER.get(kv[0], 9)))

    def wandb_group(self) -> str:
        groups = [t.wandb.get("group") for t in self.trials if t.wandb and t.wandb.get("group")]
        return max(set(groups), key=groups.count) if groups else sweep_group_name(self.root)

    def wandb_project(self) -> str | None:
        projects = [t.wandb.get("project") for t in self.trials if t.wandb and t.wandb.get("project")]
        return max(set(projects), key=projects.count) if projects else None


# -- finding runs -----------------------------------------------------------------------------------

def natural_key(relative: Path) -> tuple:
    """Sort key of a run folder: numbers by value, so 2 < 10 and trial_0002 < trial_0010 (old job folders
    0, 1, ... and trial folders trial_0000, ... side by side)."""
    # re.split with a group alternates text and digits, so every position compares like with like
    return tuple(tuple(int(p) if i % 2 else p for i, p in enumerate(re.split(r"(\d+)", part)))
                 for part in relative.parts)


def _is_run_dir(path: Path) -> bool:
    return (path / SUMMARY_FILE).is_file() or (path / ".hydra").is_dir() or (path / CONFIG_FILE).is_file()


def find_run_dirs(root: Path) -> list[Path]:
    """DIR itself when it is a run, else every run directory below it (not inside wandb/ or report/)."""
    if _is_run_dir(root) and not (root / "multirun.yaml").is_file():
        return [root]
    found = set()
    for marker in (SUMMARY_FILE, ".hydra", CONFIG_FILE):
        for hit in root.rglob(marker):
            run = hit.parent
            if run != root and not {"wandb", "report", ".hydra"} & set(run.relative_to(root).parts):
                found.add(run)
    return sorted(found, key=lambda p: natural_key(p.relative_to(root)))


# -- loading ----------------------------------------------------------------------------------------

def _load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text()) if path.is_file() else None
    except (yaml.YAMLError, OSError):
        return None


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (json.JSONDecodeError, OSError):
        return None


def load_trial(path: Path, num: str) -> Trial:
    trial = Trial(path=path, num=num)
    trial.overrides = [str(o) for o in (_load_yaml(path / ".hydra" / "overrides.yaml") or [])]
    # config.yaml is resolved but written only once training starts; Hydra's copy exists for every trial
    trial.config = _load_yaml(path / CONFIG_FILE) or _load_yaml(path / ".hydra" / "config.yaml") or {}
    hydra_cfg = _load_yaml(path / ".hydra" / "hydra.yaml") or {}
    choices = (hydra_cfg.get("hydra", {}).get("runtime", {}) or {}).get("choices", {}) or {}
    trial.choices = {k: v for k, v in choices.items() if not k.startswith("hydra") and v is not None}
    trial.summary = read_summary(path)
    trial.history = read_history(path)
    trial.wandb = _load_json(path / "wandb.json")
    return trial


def label_trials(trials: list[Trial]) -> list[str]:
    """Give each trial the overrides that differ between trials; return the ones all trials share."""
    sets = [[o for o in t.overrides if is_meaningful(o)] for t in trials]
    shared = set.intersection(*map(set, sets)) if len(sets) > 1 else set()
    for t, own in zip(trials, sets):
        fallback = "defaults" if len(trials) == 1 else f"trial {t.num}" if t.num.isdigit() else t.num
        t.label = ", ".join(short_override(o) for o in own if o not in shared) or fallback
    return [o for o in (sets[0] if sets else []) if o in shared]


def attach_study_trials(trials: list[Trial], studies: list[StudyReport]) -> None:
    """Give each run its Optuna trials, matched by the run_dir user attribute (resolved paths). A sweep
    directory copied elsewhere (e.g. results fetched from a cluster) keeps the old paths in its study:
    then a run matches by its last two path parts (sweep folder/trial folder), when only one run has them."""
    by_dir: dict[Path, list[StudyTrial]] = {}
    for study in studies:
        for st in study.trials:
            if st.run_dir:
                by_dir.setdefault(Path(st.run_dir).resolve(), []).append(st)
    runs = {t.path.resolve(): t for t in trials}
    tails: dict[tuple[str, ...], list[Trial]] = {}
    for path, t in runs.items():
        tails.setdefault(path.parts[-2:], []).append(t)
    for path, attempts in by_dir.items():
        t = runs.get(path)
        if t is None and len(tails.get(path.parts[-2:], [])) == 1:
            t = tails[path.parts[-2:]][0]
        if t is not None:
            t.attempts = sorted(t.attempts + attempts, key=lambda st: st.number)


def _roots(dirs: Path | str | Iterable[Path | str]) -> list[Path]:
    roots = [Path(dirs)] if isinstance(dirs, (str, os.PathLike)) else [Path(d) for d in dirs]
    unique, seen = [], set()
    for root in roots:
        if not root.is_dir():
            raise ConfigError(f"{root} is not a directory; pass a sweep directory (multirun/<date>/<time>) "
                              "or a run directory (outputs/<date>/<time>)")
        if root.resolve() not in seen:  # the same directory twice counts once
            seen.add(root.resolve())
            unique.append(root)
    if not unique:
        raise ConfigError("no directory given; pass a sweep or run directory")
    return unique


def load_sweep(dirs: Path | str | Iterable[Path | str], storage: str | None = None,
               study_name: str | None = None) -> Sweep:
    """Load one or more sweep (or run) directories as one sweep, and its Optuna studies.

    Several directories are merged, each run listed once even when two directories hold it. `storage` and
    `study_name` override where the study is read from (default: the sweep's own sweeper settings)."""
    roots = _roots(dirs)
    # several directories: name each run by its path below their common parent, so names stay unique
    base = Path(os.path.commonpath([r.resolve() for r in roots])) if len(roots) > 1 else None
    trials, seen = [], set()
    for root in roots:
        runs = find_run_dirs(root)
        if not runs:
            raise ConfigError(f"{root} holds no runs (no summary.json, config.yaml or .hydra/ below it); "
                              "pass the directory a sweep or run wrote")
        for path in runs:
            if path.resolve() in seen:  # a run two of the directories hold (nested, or linked)
                continue
            seen.add(path.resolve())
            if base is not None:
                num = path.resolve().relative_to(base).as_posix() if path.resolve() != base else path.name
            else:
                num = path.relative_to(root).as_posix() if path != root else "-"
            trials.append(load_trial(path, num))
    if base is not None:
        # workers of one study share its trial numbers: list their trial folders in that order
        trials.sort(key=lambda t: (natural_key(Path(t.path.name)), natural_key(Path(t.num))))
    shared = label_trials(trials)
    urls, sweep_study = sweep_storages(roots, [t.path for t in trials])
    studies = read_studies([storage] if storage else urls, study_name or sweep_study)
    attach_study_trials(trials, studies)
    return Sweep(roots=roots, trials=trials, shared_overrides=shared, studies=studies)
