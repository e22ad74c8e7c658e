"""Where a sweep's study lives: the storage URL (no password travels), opening it with clear errors,
creating the study once for many workers, and the lock under which workers count and ask.

Imported during Hydra's plugin scan: no torch.
"""

from __future__ import annotations

import fcntl
import logging
import os
import random
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, read_write
from optuna.trial import TrialState

from ..errors import StorageError

log = logging.getLogger("cifar_sweeps.sweeper")


def quoted(value: str) -> str:
    """A string as a quoted Hydra override value (URLs and paths hold ':', '@', '+')."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


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
    the same moment race on Optuna's schema tables (IntegrityError on alembic_version, "table studies already
    exists", "database is locked"): the loser retries.
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
        except Exception as e:
            # another worker is creating the schema right now: a duplicate row, "table ... already exists", or
            # SQLite's "database is locked"
            racing = isinstance(e, sqlalchemy.exc.IntegrityError) or (
                isinstance(e, sqlalchemy.exc.OperationalError) and ("already exists" in str(e) or "locked" in str(e)))
            if racing and attempt < 7:
                log.info("storage busy while another worker creates it; retrying")
                time.sleep(0.5 + random.random())
                continue
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


def counted_trials(study: optuna.Study) -> int:
    """Trials that count towards n_trials: all but dead trials that were retried (their retry counts)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if not (t.state == TrialState.FAIL and t.number in retried))


class AskLock:
    """Serialises 'count the study, then ask for trials' across the workers of one study, so that
    several workers end with exactly n_trials: a file lock beside a SQLite database, a session-level
    advisory lock on PostgreSQL. Other storages get no lock (workers may then overshoot by a trial)."""

    def __init__(self, url: str, study_name: str):
        self.url, self.key = url, zlib.crc32(study_name.encode())
        self._file = None
        self._engine = None
        # the scheduler's slots are threads of one process: they take turns before taking the shared lock
        self._threads = threading.Lock()

    def __enter__(self) -> "AskLock":
        self._threads.acquire()
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
        self._threads.release()
