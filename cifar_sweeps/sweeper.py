"""Hydra's Optuna sweeper, plus what budget-constrained searches need.

`BudgetOptunaSweeper` (`hydra.sweeper._target_` in conf/hparams_search/_search_space.yaml; Hydra
finds it through the `hydra.plugins` entry point in setup.cfg) is hydra-optuna-sweeper 1.4.0rc3 with
four additions:

1. Each trial gets the facts of its run as Optuna user attributes, read from the run's
   summary.json: `state` (completed / rejected / failed), `params`, `max_params`, `model_width`,
   `reason` (why a trial was rejected) or `error` (why it failed), `best_val_acc`, `test_acc`,
   `run_dir`. optuna-dashboard shows them next to each trial.
2. Each trial within or over budget gets the constraint `params / max_params - 1` (feasible when
   <= 0; Optuna 5's `Trial.set_constraint`), so TPE and NSGA-II model the budget edge and
   `study.best_trial` only ever returns a trial within budget. The sampler config may also name
   callables from `cifar_sweeps.*` (the stock sweeper allows only `optuna.samplers.*`).
3. `max_failure_rate` counts failures over the whole sweep: the sweep stops once more than
   `max_failure_rate * n_trials` trials have failed. (The stock sweeper applies it to each batch
   of `n_jobs` trials, so with n_jobs=1 any single failure would stop the sweep.)
4. A `sqlite:///path` storage gets its folder created first (SQLite cannot create folders).

It also offers `conditional_space`, a `custom_search_space` that reads knobs searched only for one
choice of a group (a model's own knobs, an optimizer's learning-rate range) from the config's
`search.conditional` block, written in Hydra's sweep syntax.

This module is imported during Hydra's plugin scan, so it must not import torch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_optuna_distribution_from_override
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig

log = logging.getLogger(__name__)

# what the sampler config and custom_search_space may name
TRUSTED = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*", "cifar_sweeps.*")
# summary.json keys copied to each trial's user attributes
RECORDED = ("state", "params", "max_params", "model_width", "reason", "error", "best_val_acc", "final_val_acc",
            "test_acc", "epochs_done", "wall_s")


class TooManyFailedTrials(RuntimeError):
    """More than max_failure_rate * n_trials trials of the sweep failed."""


def make_sqlite_dir(storage: Any) -> None:
    """SQLite creates the database file but not its folder (e.g. a fresh multirun/)."""
    prefix = "sqlite:///"
    if isinstance(storage, str) and storage.startswith(prefix) and storage != prefix + ":memory:":
        Path(storage[len(prefix):]).parent.mkdir(parents=True, exist_ok=True)


def run_facts(ret: JobReturn, since: float) -> dict[str, Any]:
    """User attributes of one finished job: its summary.json (if written after `since`) and failure."""
    facts: dict[str, Any] = {}
    run_dir = None
    if ret.hydra_cfg is not None:
        run_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
        facts["run_dir"] = str(run_dir)
    summary_path = run_dir / "summary.json" if run_dir is not None else None
    # a reused sweep dir may hold an older summary.json: only trust one written by this job
    if summary_path is not None and summary_path.is_file() and summary_path.stat().st_mtime >= since:
        summary = json.loads(summary_path.read_text())
        facts.update({k: summary[k] for k in RECORDED if summary.get(k) is not None})
    if ret.status == JobStatus.FAILED:
        facts["state"] = "failed"
        err = ret._return_value
        facts.setdefault("error", f"{type(err).__name__}: {err}" if isinstance(err, BaseException) else str(err))
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


class _RecordingLauncher:
    """Wraps the real launcher: after each batch, copies run facts onto the batch's Optuna trials."""

    def __init__(self, launcher, sweeper: "BudgetSweeperImpl"):
        self.launcher, self.sweeper = launcher, sweeper

    def launch(self, job_overrides, initial_job_idx: int):
        since = time.time() - 1.0  # mtime resolution
        returns = self.launcher.launch(job_overrides, initial_job_idx=initial_job_idx)
        self.sweeper.record(returns, since)
        return returns


class BudgetSweeperImpl(OptunaSweeperImpl):
    def __init__(self, *args: Any, max_failure_rate: float, **kwargs: Any) -> None:
        # the stock per-batch check is switched off (rate 1.0); record() applies the sweep-wide one
        super().__init__(*args, max_failure_rate=1.0, **kwargs)
        if not 0.0 <= max_failure_rate <= 1.0:
            raise ValueError(f"hydra.sweeper.max_failure_rate={max_failure_rate} must be in [0, 1]")
        self.sweep_max_failure_rate = max_failure_rate
        self._batch: list[optuna.trial.Trial] = []
        self.n_failed = 0

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = _RecordingLauncher(self.launcher, self)
        make_sqlite_dir(self.storage)
        self.n_failed = 0

    def _configure_trials(self, trials, *args: Any):
        self._batch = list(trials)
        return super()._configure_trials(trials, *args)

    def record(self, returns: list[JobReturn], since: float) -> None:
        for trial, ret in zip(self._batch, returns):
            facts = run_facts(ret, since)
            for key, value in facts.items():
                trial.set_user_attr(key, value)
            if facts.get("params") is not None and facts.get("max_params"):
                set_budget_constraint(trial, facts["params"] / facts["max_params"] - 1.0)
            if facts.get("state") == "rejected":
                log.warning("trial %d rejected: %s", trial.number, facts.get("reason"))
            if ret.status == JobStatus.FAILED:
                self.n_failed += 1
                log.warning("trial %d failed: %s", trial.number, facts.get("error"))
        allowed = self.sweep_max_failure_rate * self.n_trials
        if self.n_failed > allowed:
            # tell Optuna how this batch ended (the stock loop would have), then stop the sweep
            for trial, ret in zip(self._batch, returns):
                if ret.status == JobStatus.COMPLETED:
                    value = ret.return_value
                    trial.study.tell(trial, values=value if isinstance(value, (list, tuple)) else [value])
                else:
                    trial.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            last = next(r for r in reversed(returns) if r.status == JobStatus.FAILED)
            raise TooManyFailedTrials(
                f"{self.n_failed} trials failed, more than hydra.sweeper.max_failure_rate="
                f"{self.sweep_max_failure_rate} x n_trials={self.n_trials}; last error: "
                f"{run_facts(last, 0).get('error')}") from (last._return_value if isinstance(
                    last._return_value, BaseException) else None)

    def sweep(self, arguments: list[str]) -> None:
        try:
            super().sweep(arguments)
        except ValueError:
            # study.best_trial skips failed and infeasible (over-budget) trials and raises when no
            # other is left; every trial is still in the study with its reason
            if self.storage is not None and self._has_feasible_trial():
                raise
            log.error("No completed trial within budget yet; see the trials' user attributes "
                      "(state, reason, error) in study %s", self.study_name)

    def _has_feasible_trial(self) -> bool:
        study = optuna.load_study(study_name=self.study_name, storage=self.storage)
        return any(t.state == optuna.trial.TrialState.COMPLETE and all(v <= 0 for v in constraint_values(t))
                   for t in study.get_trials(deepcopy=False))


class BudgetOptunaSweeper(OptunaSweeper):
    """Takes the same settings as `hydra/sweeper: optuna` (compose that, then set this `_target_`)."""

    def __init__(self, sampler: Any, direction: Any, storage: Any | None, study_name: str | None, n_trials: int,
                 n_jobs: int, max_failure_rate: float, custom_search_space: str | None,
                 params: DictConfig | None) -> None:
        sampler = instantiate(sampler, _execution_whitelist_=TRUSTED)
        self.sweeper = BudgetSweeperImpl(sampler, direction, storage, study_name, n_trials, n_jobs,
                                         max_failure_rate=max_failure_rate, custom_search_space=None,
                                         params=params)
        if custom_search_space:
            self.sweeper.custom_search_space_extender = instantiate(
                {"_target_": custom_search_space, "_partial_": True}, _execution_whitelist_=TRUSTED)


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
