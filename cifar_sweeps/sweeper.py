"""Hydra's Optuna sweeper, made fit for long searches: budgets, restarts, many workers, pruning.

`BudgetOptunaSweeper` (`hydra/sweeper: cifar_optuna`, composed by conf/hparams_search/_search_space.yaml)
keeps hydra-optuna-sweeper's settings and search-space syntax, and runs its own loop so that:

- **Every job knows its Optuna trial.** Each job gets the override `trial={storage, study, number}`
  (cifar_sweeps.trial): it reports its validation accuracy after every epoch, asks the pruner
  (`pruner=median|hyperband|successive_halving`), and beats a heartbeat. This works the same for the
  basic in-process launcher, joblib workers and SLURM jobs (submitit), on SQLite and PostgreSQL.
- **The study is the truth, and the run record says how each trial ended.** A trial is told COMPLETE,
  PRUNED or FAIL from its run's summary.json (`record.RunSummary`), and gets the run's facts as user
  attributes (state, params, reason, error, accuracies, run_dir), shown by optuna-dashboard.
  Within-or-over-budget trials get the constraint `params / max_params - 1` (Optuna's
  `Trial.set_constraint`), so TPE/NSGA-II model the budget edge and `best_trial` is within budget.
- **n_trials is the study's total.** Re-running the same command continues the study until it holds
  n_trials trials (completed, pruned, rejected or failed for good); several workers running the same
  command share that total. Job folders are named by trial number (`trial_0007`), so nothing is
  overwritten, and the sampler is seeded per trial from (sampler seed, trial number): a restart or a
  second worker never replays a configuration.
- **Dead trials are noticed and retried.** A trial whose job died (kill -9, a cancelled or preempted
  SLURM job, a killed worker) stops beating; after `grace_period` seconds it is failed and retried
  once (Optuna's heartbeat and `RetryHeartbeatStaleTrialCallback`, `max_retry`). The retry runs in the
  dead trial's folder with `resume=true`, from its last checkpoint. A job that stopped beating because
  it finished while no sweeper was there (the sweeper was killed) is told from its run record instead:
  a finished record always wins, even over a trial failed earlier (`recover_finished_runs`).
- **No password travels**: a password in the storage URL moves to PGPASSWORD; jobs, Hydra's saved
  configs, W&B files and logs see the URL without it.
- **Concurrent start is safe**: workers creating one fresh study at once all succeed.
- `max_failure_rate` counts failures over the whole sweep (the stock sweeper applies it per batch).

This module is imported during Hydra's plugin scan, so it must not import torch.
"""

from __future__ import annotations

import fcntl
import functools
import inspect
import logging
import os
import random
import sys
import threading
import time
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import (OptunaSweeperImpl, create_optuna_distribution_from_override,
                                                      create_params_from_overrides)
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf, read_write
from optuna.trial import TrialState

from .errors import ConfigError, StorageError
from .names import trial_dir_name
from .record import RunSummary, read_summary
from .targets import check_target, check_targets, whitelist

log = logging.getLogger(__name__)

# RunSummary fields copied to each trial's user attributes
RECORDED = ("state", "params", "max_params", "model_width", "reason", "error", "best_val_acc", "final_val_acc",
            "test_acc", "epochs_done", "wall_s", "resumed_at")


@dataclass
class BudgetOptunaSweeperConf(OptunaSweeperConf):
    """hydra/sweeper=cifar_optuna: the stock Optuna sweeper's settings plus recovery settings."""

    _target_: str = "cifar_sweeps.sweeper.BudgetOptunaSweeper"
    # seconds between heartbeats of a running trial
    heartbeat_interval: int = 10
    # a running trial with no heartbeat for this long is dead: failed, then retried
    grace_period: int = 60
    # how many times a dead trial is retried (each retry resumes from its checkpoint)
    max_retry: int = 1


ConfigStore.instance().store(group="hydra/sweeper", name="cifar_optuna", node=BudgetOptunaSweeperConf,
                             provider="cifar_sweeps")


class TooManyFailedTrials(RuntimeError):
    """More than max_failure_rate * n_trials trials of the sweep failed."""


# -- storage ----------------------------------------------------------------------------------------

def make_sqlite_dir(storage: Any) -> None:
    """SQLite creates the database file but not its folder (e.g. a fresh multirun/)."""
    prefix = "sqlite:///"
    if isinstance(storage, str) and storage.startswith(prefix) and storage != prefix + ":memory:":
        Path(storage[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)


def job_storage_url(url: str) -> str:
    """The storage URL handed to jobs: SQLite paths made absolute (a job may run elsewhere, e.g. SLURM),
    and no password. A password in the URL is moved to PGPASSWORD, which libpq reads and which the
    launchers pass on to the jobs, so it never lands in a job's config.yaml, overrides or W&B files."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != prefix + ":memory:":
        return prefix + str(Path(url[len(prefix):]).resolve())
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.password:
        # the password given in the URL wins over one already in the environment
        os.environ["PGPASSWORD"] = str(parsed.password)
        # URL.set(password=None) keeps the password (it skips None values); _replace clears it
        return parsed._replace(password=None).render_as_string(hide_password=False)
    return url


def masked_url(url: str) -> str:
    """The URL as logs and error messages show it: any password replaced by ***."""
    if url.startswith("sqlite"):
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: show its scheme only
        return url.split("://", 1)[0] + "://***"


def scrub_secret(secret: str, config: DictConfig, safe_url: str) -> None:
    """Remove a storage password given on the command line from everything Hydra hands on: the sweeper's
    config and its hydra overrides (which every job's config is recomposed from, so each job's
    .hydra/ files and the overrides W&B records), and sys.argv (which W&B records as the command)."""
    override = f"hydra.sweeper.storage={quoted(safe_url)}"
    hydra_overrides = [o for o in config.hydra.overrides.hydra if not o.lstrip("+~").startswith("hydra.sweeper.storage=")]
    # Hydra marks its own nodes read-only, each with its own flag
    with read_write(config.hydra.sweeper), read_write(config.hydra.overrides):
        config.hydra.sweeper.storage = safe_url
        # the override pins the safe URL for the jobs even when the password came from a YAML file
        config.hydra.overrides.hydra = [*hydra_overrides, override]
    sys.argv[:] = [arg.replace(secret, "***") for arg in sys.argv]


def open_storage(url: str, heartbeat_interval: int, grace_period: int, max_retry: int) -> optuna.storages.RDBStorage:
    """An RDB storage with heartbeats and retries of dead trials. Workers that create one fresh database at
    the same moment race on Optuna's schema tables (IntegrityError on alembic_version): the loser retries.
    Anything else (a corrupt SQLite file, a PostgreSQL server that cannot be reached or refuses the login)
    is a StorageError at once, naming the storage and what is wrong."""
    import sqlalchemy.exc

    make_sqlite_dir(url)
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(8):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; they are tested here
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry))
        except sqlalchemy.exc.IntegrityError:  # another worker is creating the schema right now
            if attempt == 7:
                raise
            log.info("storage busy while another worker creates it; retrying")
            time.sleep(0.5 + random.random())
        except Exception as e:
            raise StorageError(f"hydra.sweeper.storage={masked_url(url)}: cannot open the study's database: "
                               f"{storage_problem(e)}") from None
    raise AssertionError("unreachable")


def storage_problem(error: Exception) -> str:
    """One line on why a storage failed, without SQLAlchemy's SQL and background links."""
    cause = getattr(error, "orig", None) or error
    text = " ".join(str(cause).split())
    if "file is not a database" in text or "malformed" in text:
        return f"the SQLite file is not a database or is damaged ({text}); move it away to start a new study"
    if "Connection refused" in text or "could not connect" in text or "could not translate host" in text:
        return f"the server cannot be reached ({text}); check host, port and that it is running"
    if "password authentication failed" in text or "no password supplied" in text:
        return f"the server refused the login ({text}); set the password in PGPASSWORD"
    return f"{type(cause).__name__}: {text[:400]}"


def create_or_load_study(storage, study_name: str, sampler, pruner, directions: list[str]) -> optuna.Study:
    for attempt in range(8):
        try:
            return optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner,
                                       directions=directions, load_if_exists=True)
        except Exception as e:  # DuplicatedStudyError / IntegrityError: another worker created it just now
            if attempt == 7:
                raise
            log.info("study %s being created by another worker (%s); retrying", study_name, type(e).__name__)
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


# -- counting and seeding ---------------------------------------------------------------------------

def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards n_trials: all but dead trials that were retried (their retry counts)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if not (t.state == TrialState.FAIL and t.number in retried))


def reseed_sampler(sampler: Any, seed: int | None, trial_number: int) -> None:
    """Seed the sampler's random states from (seed, trial number): reproducible, and distinct for every
    trial, so a restarted sweep or a second worker never draws a configuration again."""
    if seed is None:
        return
    value = (int(seed) * 1_000_003 + trial_number) % 2**32

    def visit(obj: Any, depth: int = 0) -> None:
        for attr in list(vars(obj).values()):
            rng = getattr(attr, "rng", None)  # optuna's LazyRandomState
            if hasattr(rng, "seed"):
                rng.seed(value)
            elif hasattr(attr, "seed") and hasattr(attr, "randint"):  # a numpy RandomState
                attr.seed(value)
            elif isinstance(attr, optuna.samplers.BaseSampler) and depth < 3:
                visit(attr, depth + 1)

    visit(sampler)


def check_searched_keys(config: DictConfig, names: list[str]) -> None:
    """A searched key must exist: a mistyped or stale key (augment.ops.2.p) would otherwise search nothing."""
    choices = config.hydra.runtime.choices
    missing = object()
    for name in names:
        key = name.lstrip("+~")
        if name.startswith("+") or key in choices:
            continue
        if OmegaConf.select(config, key, default=missing, throw_on_missing=False) is missing:
            raise ConfigError(f"hydra.sweeper.params: '{key}' is not a key of the config, so searching it would "
                              "change nothing; check its spelling (augmentation ops are addressed by name, e.g. "
                              "augment.ops.cutout.p), or prefix it with + to add a new key")


# -- one batch of jobs ------------------------------------------------------------------------------

class Heartbeats:
    """While a batch is launched, the sweeper beats for its trials (a SLURM job may wait in the queue
    before its own beats start); the jobs beat too, so they stay alive if this process dies."""

    def __init__(self, storage: optuna.storages.RDBStorage, trial_ids: list[int], interval: float):
        self.storage, self.trial_ids, self.interval = storage, trial_ids, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sweeper-heartbeats")

    def _run(self) -> None:
        while not self._stop.is_set():
            for trial_id in self.trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as e:
                    log.debug("heartbeat failed: %s", e)
            self._stop.wait(self.interval)

    def __enter__(self) -> "Heartbeats":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def trial_facts(summary: RunSummary | None, run_dir: Path, ret: JobReturn | None,
                known: dict[str, Any] | None = None) -> dict[str, Any]:
    """User attributes of a finished job: its run record, or why it has none. A key the trial already holds
    (a retry inherits its dead parent's `state` and `error`) is overwritten, with None if the record has
    no value for it."""
    known = known or {}
    facts: dict[str, Any] = {"run_dir": str(run_dir)}
    if summary is not None:
        for key, value in summary.as_dict().items():
            if key in RECORDED and (value not in (None, []) or key in known):
                facts[key] = value
    if ret is not None and ret.status == JobStatus.FAILED:
        facts["state"] = "failed"
        err = ret._return_value
        if facts.get("error") is None:
            facts["error"] = f"{type(err).__name__}: {err}" if isinstance(err, BaseException) else str(err)
    return facts


def set_budget_constraint(trial: optuna.trial.Trial, value: float) -> None:
    """Record how far over budget a trial is (<= 0: within) as an Optuna constraint."""
    if hasattr(trial, "set_constraint"):  # optuna >= 5
        trial.set_constraint("budget", value)
    else:  # optuna 4 samplers read the list under system attribute "constraints"
        trial.storage.set_trial_system_attr(trial._trial_id, "constraints", [value])


def constraint_values(trial: optuna.trial.FrozenTrial) -> list[float]:
    constraints = getattr(trial, "constraints", None)  # optuna >= 5: a dict by name
    if isinstance(constraints, dict):
        return list(constraints.values())
    return list(trial.system_attrs.get("constraints") or [])


class AskLock:
    """Serialises 'count the study, then ask for trials' across the workers of one study, so that
    several workers end with exactly n_trials: a file lock beside a SQLite database, a session-level
    advisory lock on PostgreSQL. Other storages get no lock (workers may then overshoot by a trial)."""

    def __init__(self, url: str, study_name: str):
        self.url, self.key = url, zlib.crc32(study_name.encode())
        self._file = None
        self._engine = None

    def __enter__(self) -> "AskLock":
        if self.url.startswith("sqlite:///") and ":memory:" not in self.url:
            self._file = open(self.url[len("sqlite:///"):] + ".lock", "a")
            fcntl.flock(self._file, fcntl.LOCK_EX)
        elif self.url.startswith("postgresql"):
            import sqlalchemy

            if self._engine is None:
                self._engine = sqlalchemy.create_engine(self.url, poolclass=sqlalchemy.pool.NullPool)
            self._conn = self._engine.connect()
            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": self.key})
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        elif self._engine is not None:
            import sqlalchemy

            self._conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": self.key})
            self._conn.close()


def quoted(value: str) -> str:
    """A string as a quoted Hydra override value (URLs and paths hold ':', '@', '+')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


DIED = "the job died before finishing (no heartbeat for {grace} s: killed, cancelled or preempted)"


class BudgetSweeperImpl(OptunaSweeperImpl):
    def __init__(self, *args: Any, max_failure_rate: float, heartbeat_interval: int, grace_period: int,
                 max_retry: int, sampler_seed: int | None, **kwargs: Any) -> None:
        super().__init__(*args, max_failure_rate=1.0, **kwargs)  # record() applies a sweep-wide rate
        self.sweep_max_failure_rate = max_failure_rate
        self.heartbeat_interval, self.grace_period, self.max_retry = heartbeat_interval, grace_period, max_retry
        self.sampler_seed = sampler_seed
        self.n_failed = 0

    # -- the loop -------------------------------------------------------------------------------------

    def sweep(self, arguments: list[str]) -> None:
        if not self.storage:
            raise ConfigError("hydra.sweeper.storage is not set: a study must live in a database to survive "
                              "restarts, e.g. hydra.sweeper.storage=sqlite:///multirun/optuna.db")
        if isinstance(self.sampler, functools.partial):
            raise ConfigError("the grid sampler is not supported by cifar_optuna; for a grid use Hydra's own "
                              "sweeper: python -m cifar_sweeps.train --multirun norm=bn,gn,ln")
        self.url = job_storage_url(str(self.storage))
        if self.url != str(self.storage):  # a password was in the URL: it goes nowhere but PGPASSWORD
            from sqlalchemy.engine import make_url

            scrub_secret(str(make_url(str(self.storage)).password), self.config, self.url)
            self.storage = self.url
        self._process_searchspace_config()
        distributions, fixed_params, fixed_overrides = create_params_from_overrides(
            self._parse_sweeper_params_config() + list(arguments))
        for name in fixed_params:
            distributions.pop(name, None)
        check_searched_keys(self.config, [*distributions, *fixed_params])
        directions = self._get_directions()
        pruner = None
        if self.config.get("pruner"):
            check_targets("pruner", self.config.pruner)
            pruner = instantiate(self.config.pruner, _execution_whitelist_=whitelist("pruner"))
        if pruner is not None and not isinstance(pruner, optuna.pruners.NopPruner) and len(directions) > 1:
            raise ConfigError(f"pruner={self.config.hydra.runtime.choices.get('pruner')} needs a single objective; "
                              f"this search has {len(directions)} (use pruner=none)")
        storage = open_storage(self.url, self.heartbeat_interval, self.grace_period, self.max_retry)
        study = create_or_load_study(storage, self.study_name, self.sampler, pruner, directions)
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        log.info("Study %s in %s: %d of n_trials=%d trials so far; sampler %s, pruner %s; jobs in %s",
                 study.study_name, masked_url(self.url), counted_trials(study), self.n_trials,
                 type(self.sampler).__name__, type(pruner).__name__, self.sweep_dir)
        lock = AskLock(self.url, study.study_name)
        while True:
            with lock, warnings.catch_warnings():
                # Optuna marks its heartbeat retries experimental and expects heartbeats from Study.optimize;
                # this loop records them itself (Heartbeats, cifar_sweeps.trial)
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
                self.settle_stale_trials(study)
                self.recover_finished_runs(study)
                to_go = self.n_trials - counted_trials(study)
                waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
                batch_size = min(self.n_jobs, max(to_go, 0) + waiting)
                trials = [study.ask() for _ in range(batch_size)]
            if not trials:
                if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                    break
                # other workers' trials, or dead ones that will be retried once their grace period is over
                time.sleep(self.heartbeat_interval)
                continue
            self.run_batch(study, storage, trials, distributions, fixed_params, fixed_overrides)
        self.write_results(study)

    def settle_stale_trials(self, study: optuna.Study) -> None:
        """Running trials whose job stopped beating for grace_period seconds (killed, cancelled, preempted,
        or it finished while no sweeper was there to tell the study): each is told from its run record as
        any finished job is, so a finished record wins; one with no record is failed with the reason and
        retried from its checkpoint (up to max_retry times). Replaces Optuna's fail_stale_trials, which
        fails them all and records no reason."""
        storage = study._storage
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            frozen = storage.get_trial(trial_id)
            run_dir = frozen.user_attrs.get("run_dir") or self.sweep_dir / trial_dir_name(frozen.number)
            self.tell(study, optuna.trial.Trial(study, trial_id), None, Path(run_dir))

    def recover_finished_runs(self, study: optuna.Study) -> None:
        """A failed trial that was not retried but whose run record says it finished (its job completed after
        it had been declared dead, and no retry was left) gets a finished copy in the study, standing in
        for it as a retry does: the record is the truth, and `best` and the report see the result."""
        trials = study.get_trials(deepcopy=False)
        retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
        for failed in trials:
            if failed.state != TrialState.FAIL or failed.number in retried or "run_dir" not in failed.user_attrs:
                continue
            run_dir = Path(failed.user_attrs["run_dir"])
            summary = read_summary(run_dir)
            if summary is None or summary.state not in ("completed", "pruned", "rejected"):
                continue
            values = None
            if summary.state != "pruned":
                value = self.recorded_value(summary)
                values = list(value) if isinstance(value, (list, tuple)) else [value]
            constraints = ({"budget": summary.params / summary.max_params - 1.0}
                           if summary.params is not None and summary.max_params else None)
            system_attrs = {**failed.system_attrs, "failed_trial": failed.system_attrs.get("failed_trial", failed.number),
                            "retry_history": [*failed.system_attrs.get("retry_history", []), failed.number]}
            extra = {}
            if constraints is not None:
                if "constraints" in inspect.signature(optuna.create_trial).parameters:  # optuna >= 5
                    extra["constraints"] = constraints
                else:
                    system_attrs["constraints"] = list(constraints.values())
            study.add_trial(optuna.create_trial(
                state=TrialState.PRUNED if summary.state == "pruned" else TrialState.COMPLETE, values=values,
                params=failed.params, distributions=failed.distributions,
                user_attrs={**failed.user_attrs, **trial_facts(summary, run_dir, None, failed.user_attrs),
                            "recovered_from": failed.number},
                system_attrs=system_attrs, intermediate_values=failed.intermediate_values, **extra))
            log.warning("trial %d was failed, but its run record in %s says %s: recorded again from it",
                        failed.number, run_dir, summary.state)

    def run_batch(self, study, storage, trials, distributions, fixed_params, fixed_overrides) -> None:
        run_dirs, overrides = [], []
        for trial in trials:
            reseed_sampler(self.sampler, self.sampler_seed, trial.number)
            (trial_overrides,) = self._configure_trials([trial], distributions, fixed_params, fixed_overrides)
            # a retry (Optuna copies the dead trial's user attributes) continues in the dead trial's folder
            run_dir = Path(trial.user_attrs.get("run_dir") or self.sweep_dir / trial_dir_name(trial.number))
            trial.set_user_attr("run_dir", str(run_dir))
            storage.record_heartbeat(trial._trial_id)
            spec = (f"{{storage:{quoted(self.url)},study:{quoted(study.study_name)},number:{trial.number},"
                    f"heartbeat_interval:{self.heartbeat_interval}}}")
            overrides.append([*trial_overrides, f"trial={spec}", "resume=true",
                              f"hydra.sweep.subdir={quoted(str(run_dir))}"])
            run_dirs.append(run_dir)
            retried = storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
            if retried is not None:
                # the dead parent's attributes were copied: this trial is running, with no error of its own
                for key in set(RECORDED) & set(trial.user_attrs):
                    trial.set_user_attr(key, None)
                trial.set_user_attr("state", "running")
                log.warning("trial %d retries dead trial %d, resuming from its checkpoint in %s", trial.number,
                            retried, run_dir)
        returns: list[JobReturn | None]
        with Heartbeats(storage, [t._trial_id for t in trials], self.heartbeat_interval):
            try:
                returns = list(self.launcher.launch(overrides, initial_job_idx=self.job_idx))
            except Exception as e:  # a job died under the launcher (cancelled SLURM job, killed worker)
                log.warning("the launcher lost jobs of this batch (%s: %s); each trial's run record decides",
                            type(e).__name__, str(e).splitlines()[0] if str(e) else "")
                returns = [None] * len(trials)
        self.job_idx += len(trials)
        if any(r is None for r in returns):
            self.wait_for_jobs(study, storage, trials, run_dirs)
        for trial, ret, run_dir in zip(trials, returns, run_dirs):
            self.tell(study, trial, ret, run_dir)
        allowed = self.sweep_max_failure_rate * self.n_trials
        if self.n_failed > allowed:
            raise TooManyFailedTrials(f"{self.n_failed} trials failed, more than hydra.sweeper.max_failure_rate="
                                      f"{self.sweep_max_failure_rate} x n_trials={self.n_trials}; last error: "
                                      f"{self.last_error}")

    def wait_for_jobs(self, study, storage, trials, run_dirs) -> None:
        """After a launcher error, other jobs of the batch may still run (SLURM): wait until each has a run
        record or has stopped beating."""
        while True:
            stale = set(storage._get_stale_trial_ids(study._study_id))
            pending = [t for t, d in zip(trials, run_dirs) if read_summary(d) is None and t._trial_id not in stale]
            if not pending:
                return
            time.sleep(self.heartbeat_interval)

    def tell(self, study: optuna.Study, trial: optuna.trial.Trial, ret: JobReturn | None, run_dir: Path) -> None:
        """Tell the study how the trial ended, from its run record (and the job's return value, when this
        process launched it). A trial that another worker told meanwhile is finished already: every update
        below raises UpdateFinishedTrialError, so nothing is recorded or counted twice."""
        summary = read_summary(run_dir)
        state = summary.state if summary is not None else None
        try:
            facts = trial_facts(summary, run_dir, ret, trial.user_attrs)
            for key, value in facts.items():
                trial.set_user_attr(key, value)
            if summary is not None and summary.params is not None and summary.max_params:
                set_budget_constraint(trial, summary.params / summary.max_params - 1.0)
            if state == "pruned":
                study.tell(trial, state=TrialState.PRUNED)
            elif (ret is not None and ret.status == JobStatus.FAILED) or state == "failed":
                study.tell(trial, state=TrialState.FAIL)
                self.n_failed += 1
                self.last_error = facts.get("error")
                log.warning("trial %d failed: %s", trial.number, facts.get("error"))
            elif state in ("completed", "rejected"):
                value = ret.return_value if ret is not None else self.recorded_value(summary)
                study.tell(trial, values=list(value) if isinstance(value, (list, tuple)) else [value])
                if state == "rejected":
                    log.warning("trial %d rejected: %s", trial.number, summary.reason)
            else:
                # no run record: the job died (killed, cancelled, preempted); retried from its checkpoint
                trial.set_user_attr("state", "failed")
                trial.set_user_attr("error", DIED.format(grace=self.grace_period))
                study.tell(trial, state=TrialState.FAIL)
                log.warning("trial %d: its job died; it will be retried from its checkpoint", trial.number)
                retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)
                retry(study, study._storage.get_trial(trial._trial_id))
        except optuna.exceptions.UpdateFinishedTrialError:
            log.info("trial %d was already finished by another worker; its retry reports it", trial.number)

    def recorded_value(self, summary: RunSummary):
        objective = self.config.objective
        if summary.state == "rejected":
            from .record import rejection_value

            return rejection_value(summary.params, summary.max_params, objective)
        return summary.objective(objective)

    def write_results(self, study: optuna.Study) -> None:
        """optimization_results.yaml, as the stock sweeper writes it, when there is a feasible best."""
        try:
            if len(study.directions) == 1:
                best = study.best_trial
                results = {"name": "optuna", "best_params": best.params, "best_value": best.value}
                log.info("Best trial %d: value %s, params %s", best.number, best.value, best.params)
            else:
                results = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values}
                                                           for t in study.best_trials]}
                log.info("Number of Pareto solutions: %d", len(results["solutions"]))
        except ValueError:
            # best_trial skips failed and infeasible (over-budget) trials and raises when none is left
            log.error("No completed trial within budget yet; see the trials' user attributes (state, reason, "
                      "error) in study %s", study.study_name)
            return
        OmegaConf.save(OmegaConf.create(results), self.sweep_dir / "optimization_results.yaml")


class BudgetOptunaSweeper(OptunaSweeper):
    """Takes the settings of `hydra/sweeper: cifar_optuna` (the stock optuna ones plus recovery ones). They
    are checked and the sampler is built in setup(), where a ConfigError reaches the user as one line
    (an error in __init__ would come wrapped in Hydra's instantiation traceback)."""

    def __init__(self, sampler: Any, direction: Any, storage: Any | None, study_name: str | None, n_trials: int,
                 n_jobs: int, max_failure_rate: float, custom_search_space: str | None, params: DictConfig | None,
                 heartbeat_interval: int = 10, grace_period: int = 60, max_retry: int = 1) -> None:
        self.settings = dict(sampler=sampler, direction=direction, storage=storage, study_name=study_name,
                             n_trials=n_trials, n_jobs=n_jobs, max_failure_rate=max_failure_rate,
                             custom_search_space=custom_search_space, params=params,
                             heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry)

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        s = self.settings
        check_sweeper_settings(s)
        sampler_cfg = s["sampler"]
        sampler_seed = sampler_cfg.get("seed") if isinstance(sampler_cfg, (dict, DictConfig)) else None
        check_targets("sampler", sampler_cfg, "hydra.sweeper.sampler")
        sampler = instantiate(sampler_cfg, _execution_whitelist_=whitelist("sampler"))
        self.sweeper = BudgetSweeperImpl(sampler, s["direction"], s["storage"], s["study_name"], s["n_trials"],
                                         s["n_jobs"], max_failure_rate=s["max_failure_rate"], custom_search_space=None,
                                         params=s["params"], heartbeat_interval=s["heartbeat_interval"],
                                         grace_period=s["grace_period"], max_retry=s["max_retry"],
                                         sampler_seed=sampler_seed)
        if s["custom_search_space"]:
            check_target("custom_search_space", "hydra.sweeper.custom_search_space", s["custom_search_space"])
            self.sweeper.custom_search_space_extender = instantiate(
                {"_target_": s["custom_search_space"], "_partial_": True},
                _execution_whitelist_=whitelist("custom_search_space"))
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)


def check_sweeper_settings(settings: dict[str, Any]) -> None:
    """The numbers of hydra.sweeper, each named with what it accepts."""
    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    n_trials, n_jobs = settings["n_trials"], settings["n_jobs"]
    if not (is_int(n_trials) and n_trials >= 1):
        raise ConfigError(f"hydra.sweeper.n_trials={n_trials!r} must be an integer >= 1 (the study's total number "
                          "of trials); e.g. hydra.sweeper.n_trials=30")
    if not (is_int(n_jobs) and n_jobs >= 1):
        raise ConfigError(f"hydra.sweeper.n_jobs={n_jobs!r} must be an integer >= 1 (trials launched at once); "
                          "e.g. hydra.sweeper.n_jobs=2")
    rate = settings["max_failure_rate"]
    if not (isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0.0 <= rate <= 1.0):
        raise ConfigError(f"hydra.sweeper.max_failure_rate={rate!r} must be a number in [0, 1]; "
                          "e.g. hydra.sweeper.max_failure_rate=0.5")
    interval, grace, retry = settings["heartbeat_interval"], settings["grace_period"], settings["max_retry"]
    if not (is_int(interval) and interval >= 1):
        raise ConfigError(f"hydra.sweeper.heartbeat_interval={interval!r} must be an integer >= 1 (seconds); "
                          "e.g. hydra.sweeper.heartbeat_interval=10")
    if not (is_int(grace) and grace > interval):
        raise ConfigError(f"hydra.sweeper.grace_period={grace!r} must be an integer larger than "
                          f"hydra.sweeper.heartbeat_interval={interval} (seconds); e.g. hydra.sweeper.grace_period=60")
    if not (is_int(retry) and retry >= 0):
        raise ConfigError(f"hydra.sweeper.max_retry={retry!r} must be an integer >= 0; e.g. hydra.sweeper.max_retry=1")


def _choice_of(group: str, config: DictConfig, trial: optuna.trial.Trial) -> Any:
    """The option of config group `group` this trial runs: sampled, fixed on the command line, or default."""
    if group in trial.params:
        return trial.params[group]
    if group in trial.user_attrs:
        return trial.user_attrs[group]
    return config.hydra.runtime.choices.get(group)


def conditional_space(config: DictConfig, trial: optuna.trial.Trial) -> None:
    """custom_search_space: knobs searched only when their group option is chosen.

    Reads `search.conditional.<group>.<option>`: a mapping of override key to Hydra sweep syntax,
    e.g. `search.conditional.model.dilated_c4: {model.expansion: "choice(1, 2, 3)"}`. Keys fixed on
    the command line (or in `hydra.sweeper.params`) win over the conditional ones.
    """
    conditional = config.get("search", {}).get("conditional") or {}
    parser = OverridesParser.create()
    fixed = set(trial.user_attrs) | set(trial.params)
    if config.get("budget", {}).get("fit_width"):
        fixed.add("model.width")  # solved per trial by train() (cifar_sweeps.budget), not searched
    for group, options in conditional.items():
        knobs = options.get(str(_choice_of(group, config, trial))) or {}
        for key, sweep in knobs.items():
            if key in fixed:
                continue
            override = parser.parse_override(f"{key}={sweep}")
            distribution = create_optuna_distribution_from_override(override)
            if not isinstance(distribution, optuna.distributions.BaseDistribution):
                # a plain value: a one-choice categorical, so it reaches the job's overrides
                distribution = optuna.distributions.CategoricalDistribution([distribution])
            trial._suggest(key, distribution)
