"""Running a sweep's trials on its Hydra launcher, keeping every slot busy.

`hydra.sweeper.schedule`:

- `free` (default): at most `n_jobs` trials run at once per sweeper process, and when one ends
  (completed, pruned, rejected, failed, or its job died) the next is asked and started at once. Each
  slot is a thread that launches one job at a time through the configured launcher
  (`launcher.launch([overrides])`): a loky worker for joblib, a process for submitit_local, a SLURM job
  for the SLURM presets. Hydra's basic launcher runs a job inside the sweeper's own process, and Hydra's
  job set-up is process-global (its config singleton, logging), so it gets one slot.
- `batch`: Hydra's classic policy, kept to measure against: ask `n_jobs` trials, launch them as one
  batch, wait for the whole batch.

The sampler sees the running trials (Optuna's `constant_liar` where the sampler has it). While a job
is launched the sweeper beats for its trial (a SLURM job may wait in the queue before its own beats
start); the job beats too, so it stays alive if this process dies.

Ctrl-C (SIGINT to the sweeper): no new trial starts; local jobs (basic, joblib, submitit_local) are
stopped, and their trials failed with `error: interrupted` and queued for a retry, so running the
same command again continues each from its checkpoint; SLURM jobs are left to finish (their run
records are read by the next sweeper). The sweeper exits with status 130.

`hydra.sweeper.time_budget_s` (a search's wall-clock budget, from the sweeper's process start): a slot
starts no new trial once the time left is less than a trial takes (the per-trial `time_budget_s` when
the search fixes or bounds it, else the median length of the jobs this sweeper has seen end, pruned ones
included; with neither known yet, a trial starts while any time is left). So the search runs to its
deadline: a trial that started with time for a typical trial but runs longer is stopped there. At the deadline the running trials are stopped the Ctrl-C way
(`interrupt`), failed with `error: the search's time budget ended ...` and queued for a retry, and the
sweeper ends normally (status 0, optimization_results.yaml written); the same command continues the
study, retrying them from their checkpoints.

Imported during Hydra's plugin scan: no torch.
"""

from __future__ import annotations

import logging
import signal
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import optuna
from hydra.core.utils import JobReturn
from optuna.trial import TrialState

from ..record import read_summary
from .outcomes import Outcomes
from .progress import SweepProgress

log = logging.getLogger("cifar_sweeps.sweeper")

SCHEDULES = ("free", "batch")
INTERRUPTED = "interrupted (Ctrl-C) before finishing; running the sweep again retries it from its checkpoint"
BUDGET_ENDED = ("the search's time budget (hydra.sweeper.time_budget_s) ended before it finished; running the sweep "
                "again retries it from its checkpoint")


class TooManyFailedTrials(RuntimeError):
    """More than max_failure_rate * n_trials trials of the sweep failed."""


@dataclass
class Job:
    """One trial's job: its Optuna trial, its Hydra overrides and its run folder."""

    trial: optuna.trial.Trial
    overrides: list[str]
    run_dir: Path


class Heartbeats:
    """Beats for every trial whose job this process has launched, from one background thread."""

    def __init__(self, storage: optuna.storages.RDBStorage, interval: float):
        self.storage, self.interval = storage, interval
        self.trial_ids: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="sweeper-heartbeats")

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                trial_ids = list(self.trial_ids)
            for trial_id in trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as e:
                    log.debug("heartbeat failed: %s", e)
            self._stop.wait(self.interval)

    def add(self, trial_id: int) -> None:
        self.storage.record_heartbeat(trial_id)
        with self._lock:
            self.trial_ids.add(trial_id)

    def discard(self, trial_id: int) -> None:
        with self._lock:
            self.trial_ids.discard(trial_id)

    def __enter__(self) -> "Heartbeats":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def launcher_kind(launcher: Any) -> str:
    """basic, joblib, slurm or local (submitit_local): what a slot and Ctrl-C mean for it."""
    name = type(launcher).__name__.lower()
    if "joblib" in name:
        return "joblib"
    if "slurm" in name:
        return "slurm"
    if "local" in name:
        return "local"
    return "basic"


class Scheduler:
    """Runs jobs from `next_job` (None: nothing to start now) until the study has nothing left to run."""

    def __init__(self, study: optuna.Study, launcher: Any, outcomes: Outcomes, heartbeat_interval: int,
                 n_jobs: int, schedule: str, max_failures: float, progress: SweepProgress,
                 deadline: float | None = None, trial_budget_s: float | None = None):
        self.study, self.launcher, self.outcomes, self.progress = study, launcher, outcomes, progress
        self.heartbeat_interval, self.schedule, self.max_failures = heartbeat_interval, schedule, max_failures
        self.kind = launcher_kind(launcher)
        # the basic launcher, and joblib with one worker (joblib then runs the job in the calling thread), run
        # jobs in this process, whose Hydra state is global: one at a time
        in_process = self.kind == "basic" or (self.kind == "joblib" and launcher.joblib.get("n_jobs") == 1)
        self.slots = 1 if in_process else n_jobs
        self.heartbeats = Heartbeats(study._storage, heartbeat_interval)
        self.stop = threading.Event()
        self.freed = threading.Event()  # a job ended: a waiting slot looks again at once
        self.running: dict[int, Job] = {}  # trial id -> job launched by this process and not yet told
        self._running_lock = threading.Lock()
        self.error: BaseException | None = None
        # the search's time budget: a perf_counter deadline, and what a trial is known to take at most
        self.deadline, self.trial_budget_s = deadline, trial_budget_s
        self.job_seconds: list[float] = []  # wall time of each job this process launched and saw end
        self.expired = False
        self._out_of_time_said = False

    # -- one job ----------------------------------------------------------------------------------

    def launch(self, jobs: list[Job]) -> list[JobReturn | None]:
        """Launch jobs as one call of the launcher; None for a job the launcher lost (its record decides)."""
        for job in jobs:
            self.heartbeats.add(job.trial._trial_id)
            with self._running_lock:
                self.running[job.trial._trial_id] = job
        launched = time.perf_counter()
        try:
            returns = list(self.launcher.launch([job.overrides for job in jobs],
                                                initial_job_idx=jobs[0].trial.number))
        except Exception as e:  # a job died under the launcher (cancelled SLURM job, killed worker)
            if not self.stop.is_set():
                log.warning("the launcher lost a job (%s: %s); its trial's run record decides",
                            type(e).__name__, str(e).splitlines()[0] if str(e) else "")
            returns = [None] * len(jobs)
        if not self.stop.is_set():
            self.job_seconds.append(time.perf_counter() - launched)
        for job in jobs:  # ended, or lost: from here on only a job that still runs beats for its trial
            self.heartbeats.discard(job.trial._trial_id)
        if any(r is None for r in returns) and not self.stop.is_set():
            self.wait_for_records([job for job, r in zip(jobs, returns) if r is None])
        return returns

    def wait_for_records(self, jobs: list[Job]) -> None:
        """A job the launcher lost may still run (SLURM): wait until it has a run record or stops beating."""
        storage = self.study._storage
        while not self.stop.is_set():
            stale = set(storage._get_stale_trial_ids(self.study._study_id))
            if all(read_summary(job.run_dir) is not None or job.trial._trial_id in stale for job in jobs):
                return
            time.sleep(self.heartbeat_interval)

    def finish(self, job: Job, ret: JobReturn | None) -> None:
        """Tell the study how the job ended and show where the sweep stands."""
        if self.stop.is_set() and ret is None and read_summary(job.run_dir) is None:
            self.freed.set()
            return  # interrupted: `interrupt` fails it and queues its retry
        self.outcomes.tell(self.study, job.trial, ret, job.run_dir)
        with self._running_lock:
            self.running.pop(job.trial._trial_id, None)
        self.freed.set()
        self.progress.update(self.study)
        if self.outcomes.n_failed > self.max_failures:
            self.error = TooManyFailedTrials(
                f"{self.outcomes.n_failed} trials failed, more than hydra.sweeper.max_failure_rate x n_trials="
                f"{self.max_failures:g}; last error: {self.outcomes.last_error}")
            self.stop.set()

    # -- the search's time budget -------------------------------------------------------------------

    def time_fits_a_trial(self) -> bool:
        """Whether a new trial may start: always without a search budget; with one, while the time left is
        at least what a trial takes (its fixed or bounded time_budget_s, or the median job seen end: the longest
        would leave the slots idle for most of a trial's length before the deadline)."""
        if self.deadline is None:
            return True
        left = self.deadline - time.perf_counter()
        typical_job_s = statistics.median(self.job_seconds) if self.job_seconds else None
        known = [s for s in (self.trial_budget_s, typical_job_s) if s is not None]
        needed = max(known, default=0.0)
        if left > needed and left > 0:
            return True
        if not self._out_of_time_said:
            self._out_of_time_said = True
            log.info("search time budget: %.0f s left, a trial takes about %.0f s: no new trial starts", left, needed)
        return False

    def expire(self) -> None:
        """At the deadline: stop the running trials the way Ctrl-C does (KeyboardInterrupt in the main thread,
        which runs an in-process job or waits for the slots)."""
        import _thread

        if not self.stop.is_set():
            self.expired = True
            _thread.interrupt_main()

    # -- the policies -----------------------------------------------------------------------------

    def run(self, next_job: Callable[[], Job | None]) -> None:
        timer, sigint_was = None, None
        if self.deadline is not None:
            if (threading.current_thread() is threading.main_thread()
                    and signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, signal.SIG_DFL)):
                # started with Ctrl-C ignored (`nohup ... &` in a script): interrupt_main() would then do nothing
                # and the deadline would never stop an in-process trial; KeyboardInterrupt it is, for this sweep
                sigint_was = signal.signal(signal.SIGINT, signal.default_int_handler)
            timer = threading.Timer(max(0.0, self.deadline - time.perf_counter()), self.expire)
            timer.daemon = True
            timer.start()
        self._threads: list[threading.Thread] = []
        with self.heartbeats:
            try:
                if self.schedule == "batch":
                    self.run_batches(next_job)
                elif self.slots == 1:
                    self.slot(next_job)
                else:
                    threads = [threading.Thread(target=self.slot, args=(next_job,), daemon=True, name=f"slot-{i}")
                               for i in range(self.slots)]
                    self._threads = threads
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        while thread.is_alive():
                            thread.join(timeout=0.5)  # short joins: Ctrl-C reaches this thread
                self.stop.set()  # ended before the deadline: the timer must not interrupt what follows
            except KeyboardInterrupt:
                self.interrupt(BUDGET_ENDED if self.expired else INTERRUPTED)
                if not self.expired:
                    raise
                for thread in self._threads:  # their launches end with the jobs just stopped
                    thread.join(timeout=30)
            finally:
                if timer is not None:
                    timer.cancel()
                if sigint_was is not None:
                    signal.signal(signal.SIGINT, sigint_was)
                self.progress.close()
        if self.error is not None:
            raise self.error

    def slot(self, next_job: Callable[[], Job | None]) -> None:
        """Start-on-free: one trial after the other, as long as the study has trials to run."""
        try:
            while not self.stop.is_set() and self.time_fits_a_trial():
                job = next_job()
                if job is None:
                    if not self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                        return
                    # this process's other slots, other workers' trials, or dead ones retried once their grace
                    # period is over
                    self.freed.wait(self.heartbeat_interval)
                    self.freed.clear()
                    continue
                (ret,) = self.launch([job])
                self.finish(job, ret)
        except BaseException as e:  # a bug or a storage failure in one slot stops the sweep, said once
            if self.error is None and not isinstance(e, KeyboardInterrupt):
                self.error = e
            self.stop.set()
            self.freed.set()
            if threading.current_thread() is threading.main_thread():
                raise

    def run_batches(self, next_job: Callable[[], Job | None]) -> None:
        """The classic policy: up to n_jobs trials as one launch, the next batch once all have ended."""
        while not self.stop.is_set():
            jobs = []
            while len(jobs) < self.slots and self.time_fits_a_trial():
                job = next_job()
                if job is None:
                    break
                jobs.append(job)
            if not jobs:
                if not self.time_fits_a_trial() or not self.study.get_trials(deepcopy=False,
                                                                             states=(TrialState.RUNNING,)):
                    return
                self.stop.wait(self.heartbeat_interval)
                continue
            for job, ret in zip(jobs, self.launch(jobs)):
                self.finish(job, ret)

    # -- Ctrl-C -----------------------------------------------------------------------------------

    def interrupt(self, reason: str = INTERRUPTED) -> None:
        """Stop starting trials; stop local jobs and queue their trials for a retry (failed with `reason`);
        leave SLURM jobs. Ctrl-C and the end of the search's time budget."""
        self.stop.set()
        what = "the search's time budget ended" if reason == BUDGET_ENDED else "interrupted"
        with self._running_lock:
            jobs = list(self.running.values())
        if self.kind == "slurm":
            log.warning("%s: %d SLURM job(s) left running; their run records are read when the sweep "
                        "is run again", what, len(jobs))
            return
        # local jobs run in this process's children (loky workers, submitit_local processes) or in this process
        # (basic launcher, stopped by the KeyboardInterrupt itself): end them all
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                child.kill()
            except psutil.Error:  # it ended meanwhile
                pass
        for job in jobs:
            if read_summary(job.run_dir) is not None:  # it finished meanwhile: its record says how
                self.outcomes.tell(self.study, job.trial, None, job.run_dir)
                continue
            try:
                self.outcomes.fail_and_retry(self.study, job.trial, reason)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass
        log.warning("%s: %d running trial(s) stopped and queued for a retry from their checkpoints; run "
                    "the same command to continue", what, len(jobs))
