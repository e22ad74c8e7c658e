"""How each trial ended, told to the study from its run record: the one place where a trial's state
and user attributes are decided.

- `Outcomes.tell`: a finished job, from its `summary.json` (and the job's return value when this
  process launched it): COMPLETE, PRUNED, FAIL, or, with no record at all, FAIL and a retry from its
  checkpoint (up to `max_retry`).
- `Outcomes.settle_stale`: running trials whose job stopped beating (killed, cancelled, or finished
  while no sweeper was there) are told the same way, so a finished record always wins.
- `Outcomes.recover_finished`: a trial failed for good whose run went on to complete gets a finished
  stand-in, as a retry would.

Imported during Hydra's plugin scan: no torch.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

from ..names import trial_dir_name
from ..record import RunSummary, read_summary, rejection_value

log = logging.getLogger("cifar_sweeps.sweeper")

# RunSummary fields copied to each trial's user attributes
RECORDED = ("state", "params", "max_params", "model_width", "reason", "error", "best_val_acc", "final_val_acc",
            "test_acc", "epochs_done", "wall_s", "resumed_at", "time_budget_s", "epochs_planned")
DIED = "the job died before finishing (no heartbeat for {grace} s: killed, cancelled or preempted)"


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


class Outcomes:
    """Tells the study how its trials ended; counts the failures for max_failure_rate."""

    def __init__(self, objective: Any, grace_period: int, max_retry: int):
        self.objective, self.grace_period, self.max_retry = objective, grace_period, max_retry
        self.n_failed = 0
        self.last_error: str | None = None

    def tell(self, study: optuna.Study, trial: optuna.trial.Trial, ret: JobReturn | None, run_dir: Path) -> None:
        """Tell the study how the trial ended, from its run record (and the job's return value, when this
        process launched it). A trial that another worker told meanwhile is finished already: every update below
        raises UpdateFinishedTrialError, so nothing is recorded or counted twice."""
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
                self.fail_and_retry(study, trial, DIED.format(grace=self.grace_period))
                log.warning("trial %d: its job died; it will be retried from its checkpoint", trial.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.info("trial %d was already finished by another worker; its retry reports it", trial.number)

    def fail_and_retry(self, study: optuna.Study, trial: optuna.trial.Trial, error: str) -> None:
        """A trial whose job ended without a run record: FAIL with why, and a retry queued (up to max_retry)
        that resumes in its folder. Raises UpdateFinishedTrialError when another worker told it first."""
        trial.set_user_attr("state", "failed")
        trial.set_user_attr("error", error)
        study.tell(trial, state=TrialState.FAIL)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=self.max_retry)
        retry(study, study._storage.get_trial(trial._trial_id))

    def settle_stale(self, study: optuna.Study, sweep_dir: Path) -> None:
        """Running trials whose job stopped beating for grace_period seconds (killed, cancelled, preempted,
        or it finished while no sweeper was there to tell the study): each is told from its run record as
        any finished job is, so a finished record wins; one with no record is failed with the reason and
        retried from its checkpoint (up to max_retry times). Replaces Optuna's fail_stale_trials, which
        fails them all and records no reason."""
        storage = study._storage
        for trial_id in storage._get_stale_trial_ids(study._study_id):
            frozen = storage.get_trial(trial_id)
            run_dir = frozen.user_attrs.get("run_dir") or sweep_dir / trial_dir_name(frozen.number)
            self.tell(study, optuna.trial.Trial(study, trial_id), None, Path(run_dir))

    def recover_finished(self, study: optuna.Study) -> None:
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

    def recorded_value(self, summary: RunSummary):
        """The value a finished record stands for: the objective, or a rejected trial's penalty."""
        if summary.state == "rejected":
            return rejection_value(summary.params, summary.max_params, self.objective)
        return summary.objective(self.objective)
