"""The sweep's Optuna studies, read from any Optuna storage URL (SQLite, PostgreSQL, ...).

Where the studies are: `--storage URL` / `--study NAME` when given; else the sweep's own
`hydra.sweeper.storage` and `study_name` (from the trials' .hydra/hydra.yaml) and any *.db file in the
sweep directory. Reading only: no table is created, no stale trial is failed. A storage that cannot be
read becomes a `StudyReport` with its `error`, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

# Optuna trial states, in the order the report counts them
OPTUNA_STATES = ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING")
SQLITE = "sqlite:///"


@dataclass
class StudyTrial:
    """One Optuna trial, as far as the report needs it."""

    number: int
    state: str  # an OPTUNA_STATES name
    values: list[float] | None
    run_dir: str | None  # user_attrs["run_dir"], set by cifar_sweeps.sweeper when the job starts
    retry_of: int | None = None  # the dead trial this one re-runs
    retried_as: int | None = None  # the trial that re-runs this dead one

    def story(self) -> str:
        """The retry story in words ('' for a trial that was neither retried nor a retry)."""
        if self.retried_as is not None:
            return f"failed (worker died), retried as trial {self.retried_as}"
        if self.retry_of is not None:
            return f"retry of trial {self.retry_of}"
        return ""


@dataclass
class StudyReport:
    storage: str  # the URL as shown: never with a password
    name: str | None = None
    directions: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # trials by Optuna state
    best_values: list[float] | None = None
    best_params: dict[str, Any] | None = None
    pareto: list[int] = field(default_factory=list)  # numbers of the best trials of a multi-objective study
    trials: list[StudyTrial] = field(default_factory=list)
    error: str | None = None

    @property
    def n_trials(self) -> int:
        return len(self.trials)


def shown_url(url: str) -> str:
    """The URL with any password masked: the report is shared, the password is not."""
    if url.startswith(SQLITE):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy can parse: show the scheme only
        return url.split("://", 1)[0] + "://…"


def _sweeper_settings(run_dir: Path) -> tuple[str | None, str | None, str | None]:
    """(storage, study_name, cwd) of the Optuna sweeper that launched this job, from .hydra/hydra.yaml."""
    path = run_dir / ".hydra" / "hydra.yaml"
    try:
        text = path.read_text() if path.is_file() else ""
        hydra_cfg = (yaml.safe_load(text) or {}).get("hydra", {}) or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return None, None, None
    sweeper = hydra_cfg.get("sweeper", {}) or {}
    storage, study_name = sweeper.get("storage"), sweeper.get("study_name")
    if isinstance(storage, str) and "${" in storage:
        # hydra.yaml keeps interpolations (e.g. sqlite:///${hydra.sweep.dir}/optuna.db): resolve them
        # within the file; one that needs Hydra's runtime (${now:...}) stays as it is and fails visibly
        try:
            from omegaconf import OmegaConf

            storage = OmegaConf.select(OmegaConf.create(text), "hydra.sweeper.storage")
        except Exception:
            pass
    cwd = (hydra_cfg.get("runtime", {}) or {}).get("cwd")
    return (storage if isinstance(storage, str) else None, study_name if isinstance(study_name, str) else None,
            cwd if isinstance(cwd, str) else None)


def _absolute_sqlite(url: str, cwd: str | None) -> str:
    """A relative SQLite path is relative to the directory the sweep ran in."""
    if url.startswith(SQLITE) and ":memory:" not in url:
        path = Path(url[len(SQLITE):])
        if not path.is_absolute():
            path = Path(cwd or ".") / path
        return SQLITE + str(path.resolve())
    return url


def sweep_storages(roots: Iterable[Path], run_dirs: Iterable[Path]) -> tuple[list[str], str | None]:
    """The storage URLs of a sweep (its sweeper's storage and any *.db in its directories) and its study
    name when the sweeper config gives one."""
    urls: list[str] = []
    study_name = None
    sweep_dirs = set()
    for run_dir in run_dirs:
        if run_dir.parent in sweep_dirs or not (run_dir / ".hydra" / "hydra.yaml").is_file():
            continue  # the jobs of one sweep directory share its sweeper config: read one of them
        sweep_dirs.add(run_dir.parent)
        storage, name, cwd = _sweeper_settings(run_dir)
        if storage:
            urls.append(_absolute_sqlite(storage, cwd))
        study_name = study_name or name
    for root in roots:
        urls += [SQLITE + str(db.resolve()) for db in sorted(Path(root).glob("*.db"))]
    return list(dict.fromkeys(urls)), study_name


def read_studies(urls: Iterable[str], study_name: str | None = None) -> list[StudyReport]:
    """Every study in these storages (only `study_name` when given: one storage often holds many searches)."""
    reports = []
    for url in urls:
        try:
            reports += _read_storage(url, study_name)
        except Exception as e:  # a locked, foreign, corrupt or unreachable storage must not stop the report
            reports.append(StudyReport(storage=shown_url(url), name=study_name, error=error_text(e)))
    return reports


def error_text(e: BaseException) -> str:
    """'Type: first line' of an error and of its root cause (Optuna wraps a refused connection in a vague
    StorageInternalError; the cause says what went wrong)."""
    def line(x: BaseException) -> str:
        return f"{type(x).__name__}: {str(x).splitlines()[0] if str(x) else ''}".strip()

    root = e
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__
    return line(e) if root is e else f"{line(e)} ({line(root)})"


def _read_storage(url: str, study_name: str | None) -> list[StudyReport]:
    if url.startswith(SQLITE) and not Path(url[len(SQLITE):]).is_file():
        # SQLite would create an empty database here: say it is missing instead
        raise FileNotFoundError(f"no SQLite file {url[len(SQLITE):]}")
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    engine_kwargs = {"connect_args": {"timeout": 10}} if url.startswith("sqlite") else {}
    storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=True)
    try:
        names = [s.study_name for s in storage.get_all_studies()]
        if study_name is not None:
            if study_name not in names:
                raise KeyError(f"no study {study_name!r} here (it holds: {', '.join(names) or 'none'})")
            names = [study_name]
        return [_read_study(optuna.load_study(study_name=n, storage=storage), shown_url(url)) for n in names]
    finally:
        storage.engine.dispose()


def _read_study(study, shown: str) -> StudyReport:
    trials = []
    for t in study.get_trials(deepcopy=False):
        # RetryHeartbeatStaleTrialCallback gives a retry the system attributes failed_trial (the first
        # dead trial) and retry_history (every dead one before it, the last being the one it re-runs)
        history = t.system_attrs.get("retry_history") or []
        retry_of = history[-1] if history else t.system_attrs.get("failed_trial")
        run_dir = t.user_attrs.get("run_dir")
        trials.append(StudyTrial(number=t.number, state=t.state.name, values=list(t.values) if t.values else None,
                                 run_dir=str(run_dir) if run_dir else None, retry_of=retry_of))
    by_number = {t.number: t for t in trials}
    for t in trials:
        if t.retry_of in by_number:
            by_number[t.retry_of].retried_as = t.number
    counts = {s: n for s in OPTUNA_STATES if (n := sum(t.state == s for t in trials))}
    report = StudyReport(storage=shown, name=study.study_name, directions=[d.name.lower() for d in study.directions],
                         counts=counts, trials=trials)
    if len(study.directions) == 1:
        try:
            best = study.best_trial
            report.best_values, report.best_params = list(best.values), dict(best.params)
        except ValueError:  # no completed trial (within budget) yet
            pass
    else:
        report.pareto = sorted(t.number for t in study.best_trials)
    return report
