"""The Optuna trial a sweep job runs, seen from inside the job.

Hydra's Optuna sweeper never hands a job its trial. `cifar_sweeps.sweeper` does: it adds the
override `trial={storage: URL, study: NAME, number: N}` to every job, and the job opens its own trial
through the storage. That works the same in-process, in joblib workers and in SLURM jobs, with SQLite
and PostgreSQL. Through this handle the job

- reports the objective's validation accuracy after every epoch (`Trial.report`; optuna-dashboard
  draws these as the trial's intermediate values),
- asks the configured pruner (`pruner=median|hyperband|successive_halving`) whether to stop,
- records a heartbeat every few seconds while it runs, so that a trial whose job was killed is
  noticed by the sweeper (Optuna's heartbeat: no beat for `grace_period` seconds = the job died).

A run outside a sweep has `trial: null` and none of this happens.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

log = logging.getLogger("cifar_sweeps")


class Pruned(Exception):
    """The pruner stopped this trial; the run records `state: pruned` and the epoch it reached."""

    def __init__(self, epoch: int, value: float):
        super().__init__(f"pruned at epoch {epoch} (validation accuracy {value:.4f})")
        self.epoch, self.value = epoch, value


class TrialTakenOver(Exception):
    """This job's trial is already finished: the sweeper declared the job dead (no heartbeat for
    grace_period seconds) and a retry owns the run folder now. The job stops without touching it."""


class SweepTrial:
    def __init__(self, storage_url: str, study_name: str, number: int, pruner: Any = None,
                 heartbeat_interval: float = 10.0):
        import optuna

        storage = optuna.storages.get_storage(storage_url)
        # a sampler is never used here (the sweeper samples); RandomSampler keeps Trial() cheap
        self.study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner,
                                       sampler=optuna.samplers.RandomSampler())
        self.trial_id = storage.get_trial_id_from_study_id_trial_number(self.study._study_id, number)
        state = storage.get_trial(self.trial_id).state
        if state.is_finished():  # e.g. a requeued SLURM job that started after its trial was retried
            raise TrialTakenOver(f"trial {number} of study {study_name} is already {state.name}: its job was "
                                 f"declared dead and a retry took over; this job stops")
        self.trial = optuna.trial.Trial(self.study, self.trial_id)
        self.number, self.storage = number, storage
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, args=(heartbeat_interval,), daemon=True,
                                      name=f"heartbeat-trial-{number}")
        self._beat.start()

    @classmethod
    def from_config(cls, cfg, pruner: Any = None) -> "SweepTrial | None":
        spec = cfg.get("trial")
        if not spec:
            return None
        return cls(spec.storage, spec.study, int(spec.number), pruner, float(spec.get("heartbeat_interval", 10)))

    def _heartbeat(self, interval: float) -> None:
        while not self._stop.is_set():
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception as e:  # a storage hiccup must not kill training; the next beat retries
                log.debug("heartbeat of trial %d failed: %s", self.number, e)
            self._stop.wait(interval)

    def report(self, epoch: int, value: float, last: bool = False) -> None:
        """Record the epoch's value; raise Pruned when the pruner says stop. The `last` epoch is never pruned:
        the run is fully trained by then, and stopping it would only throw the result away."""
        import optuna

        try:
            self.trial.report(value, epoch)
        except optuna.exceptions.UpdateFinishedTrialError as e:
            raise TrialTakenOver(f"trial {self.number} was finished while this job ran (declared dead after "
                                 f"missed heartbeats, and retried); this job stops") from e
        if not last and self.trial.should_prune():
            raise Pruned(epoch, value)

    def report_resumed(self, history: list[dict]) -> None:
        """A resumed run's earlier epochs, for a retry: a new trial that has not seen them (a requeued job's
        own trial has; Optuna keeps the first value of an epoch). No pruning decision on old epochs."""
        known = self.storage.get_trial(self.trial_id).intermediate_values
        for row in history:
            if row.get("val_acc") is not None and row["epoch"] not in known:
                self.trial.report(row["val_acc"], row["epoch"])

    def close(self) -> None:
        self._stop.set()
        self._beat.join(timeout=5)
