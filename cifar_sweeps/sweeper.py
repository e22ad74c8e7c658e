"""Hydra's Optuna sweeper, made fit for long searches: budgets, restarts, many workers, pruning, and
every slot kept busy.

`BudgetOptunaSweeper` (`hydra/sweeper: cifar_optuna`, composed by conf/hparams_search/_search_space.yaml)
keeps hydra-optuna-sweeper's settings and search-space syntax and runs its own loop. The map:

- this module: the plugin, its settings (`BudgetOptunaSweeperConf`), the search space, and how one
  trial becomes a job (`prepare`: seeded sampling, overrides, folder);
- `cifar_sweeps.sweep.storage`: where the study lives (SQLite, PostgreSQL; no password travels),
  and the lock under which workers count the study and ask for trials;
- `cifar_sweeps.sweep.scheduler`: running the jobs on the launcher, start-on-free (`schedule=free`,
  the default) or in batches, heartbeats for launched jobs, Ctrl-C;
- `cifar_sweeps.sweep.outcomes`: telling the study how each trial ended, from its run record, and
  recovering trials whose job died or finished unseen;
- `cifar_sweeps.sweep.progress`: the one-line progress of the sweep.

What holds:

- **Every job knows its Optuna trial.** Each job gets the override `trial={storage, study, number}`
  (cifar_sweeps.trial): it reports its validation accuracy after every epoch, asks the pruner, and beats
  a heartbeat, for every launcher (basic, joblib, submitit_local, SLURM), on SQLite and PostgreSQL.
- **The study is the truth, and the run record says how each trial ended** (`record.RunSummary`,
  copied to the trial's user attributes; over-budget trials get the constraint `params / max_params - 1`).
- **n_trials is the study's total.** Re-running the same command continues the study until it holds
  n_trials trials that count; several workers running the same command share that total. Job folders
  are named by trial number (`trial_0007`), and the sampler is seeded per trial from (sampler seed,
  trial number): a restart or a second worker never replays a configuration.
- **Dead trials are noticed and retried** from their checkpoint, and a finished record always wins.
- **Concurrent start is safe**, and `max_failure_rate` counts failures over the whole sweep.

This module is imported during Hydra's plugin scan, so it must not import torch.
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import optuna
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import (OptunaSweeperImpl, create_optuna_distribution_from_override,
                                                      create_params_from_overrides)
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.trial import TrialState

from .clock import process_started
from .errors import ConfigError
from .names import trial_dir_name
from .sweep.outcomes import RECORDED, Outcomes
from .sweep.progress import SweepProgress
from .sweep.scheduler import SCHEDULES, Job, Scheduler
from .sweep.storage import (AskLock, counted_trials, create_or_load_study, job_storage_url, masked_url, open_storage,
                            quoted, scrub_secret)
from .targets import check_target, check_targets, whitelist

log = logging.getLogger(__name__)


@dataclass
class BudgetOptunaSweeperConf(OptunaSweeperConf):
    """hydra/sweeper=cifar_optuna: the stock Optuna sweeper's settings plus recovery and scheduling settings."""

    _target_: str = "cifar_sweeps.sweeper.BudgetOptunaSweeper"
    # seconds between heartbeats of a running trial
    heartbeat_interval: int = 10
    # a running trial with no heartbeat for this long is dead: failed, then retried
    grace_period: int = 60
    # how many times a dead trial is retried (each retry resumes from its checkpoint)
    max_retry: int = 1
    # free: start the next trial the moment a slot frees; batch: n_jobs trials at a time, waiting for all
    schedule: str = "free"
    # the search's wall-clock budget in seconds, from the sweeper's process start; null = none. No trial
    # starts once the time left cannot fit one; at the deadline running trials are stopped and queued for a
    # retry (cifar_sweeps.sweep.scheduler)
    time_budget_s: Optional[float] = None
    # trials to run first, each a mapping of searched key to value (Optuna's Study.enqueue_trial), e.g. today's
    # default as the study's baseline: [{optimizer: sgd, optimizer.lr: 0.05, batch_size: 256}]. Searched keys
    # left out are sampled; an entry whose trial the study already holds is not queued again, so a re-run
    # continues the study instead of repeating it
    enqueue: Optional[List[Dict[str, Any]]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="cifar_optuna", node=BudgetOptunaSweeperConf,
                             provider="cifar_sweeps")


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


def in_space(value: Any, distribution: optuna.distributions.BaseDistribution) -> bool:
    """Whether a sampler could draw `value` from `distribution` (a choice among its choices, a number in range)."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(distribution, optuna.distributions.IntDistribution) and value != int(value):
        return False
    return distribution.low <= value <= distribution.high


def knob_distribution(key: str, sweep: Any) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution of a knob given in Hydra sweep syntax ("interval(0.01, 0.8)", "choice(1, 2)"); a
    plain value is a one-choice categorical, so it reaches the job's overrides."""
    distribution = create_optuna_distribution_from_override(OverridesParser.create().parse_override(f"{key}={sweep}"))
    if isinstance(distribution, optuna.distributions.BaseDistribution):
        return distribution
    return optuna.distributions.CategoricalDistribution([distribution])


def conditional_distribution(conditional: DictConfig, entry: dict[str, Any], key: str) -> Any:
    """The space of conditional knob `key` under the group option `entry` chooses; None when it chooses none."""
    for group, options in conditional.items():
        knobs = options.get(str(entry.get(group))) or {}
        if key in knobs:
            return knob_distribution(key, knobs[key])
    return None


def check_enqueued(entries: list[dict[str, Any]], distributions: dict[str, Any], fixed: dict[str, Any],
                   config: DictConfig) -> None:
    """Every key of hydra.sweeper.enqueue is searched (in params or search.conditional), and a value of params'
    space lies in it: a queued trial would otherwise run something other than what it says."""
    conditional = config.get("search", {}).get("conditional") or {}
    conditional_keys = {key for options in conditional.values() for knobs in options.values() for key in knobs or {}}
    searched = sorted({*distributions, *conditional_keys})
    for index, entry in enumerate(entries):
        for key, value in entry.items():
            where = f"hydra.sweeper.enqueue[{index}].{key}={value!r}"
            if key in fixed:
                continue
            if key not in distributions and key not in conditional_keys:
                raise ConfigError(f"{where}: '{key}' is not searched, so it cannot be queued; searched keys: "
                                  f"{', '.join(searched)}")
            distribution = distributions.get(key) or conditional_distribution(conditional, entry, key)
            if distribution is not None and not in_space(value, distribution):
                raise ConfigError(f"{where} lies outside the searched space of '{key}' ({distribution}); "
                                  "queue a value the search could sample")


class BudgetSweeperImpl(OptunaSweeperImpl):
    def __init__(self, *args: Any, max_failure_rate: float, heartbeat_interval: int, grace_period: int,
                 max_retry: int, sampler_seed: int | None, schedule: str, time_budget_s: float | None = None,
                 enqueue: list[dict[str, Any]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, max_failure_rate=1.0, **kwargs)  # the scheduler applies a sweep-wide rate
        self.sweep_max_failure_rate = max_failure_rate
        self.heartbeat_interval, self.grace_period, self.max_retry = heartbeat_interval, grace_period, max_retry
        self.sampler_seed, self.schedule = sampler_seed, schedule
        self.time_budget_s = time_budget_s
        self.enqueue = enqueue or []
        self.process_started = process_started()

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
        self.distributions, self.fixed_params, self.fixed_overrides = create_params_from_overrides(
            self._parse_sweeper_params_config() + list(arguments))
        for name in self.fixed_params:
            self.distributions.pop(name, None)
        check_searched_keys(self.config, [*self.distributions, *self.fixed_params])
        check_enqueued(self.enqueue, self.distributions, self.fixed_params, self.config)
        directions = self._get_directions()
        pruner = None
        if self.config.get("pruner"):
            check_targets("pruner", self.config.pruner)
            pruner = instantiate(self.config.pruner, _execution_whitelist_=whitelist("pruner"))
        if pruner is not None and not isinstance(pruner, optuna.pruners.NopPruner) and len(directions) > 1:
            raise ConfigError(f"pruner={self.config.hydra.runtime.choices.get('pruner')} needs a single objective; "
                              f"this search has {len(directions)} (use pruner=none)")
        storage = open_storage(self.url, self.heartbeat_interval, self.grace_period, self.max_retry)
        self.study = create_or_load_study(storage, self.study_name, self.sampler, pruner, directions)
        self.sweep_dir = Path(str(self.config.hydra.sweep.dir)).resolve()
        self.outcomes = Outcomes(self.config.objective, self.grace_period, self.max_retry)
        self.lock = AskLock(self.url, self.study.study_name)
        self.enqueue_trials()
        deadline = self.process_started + self.time_budget_s if self.time_budget_s is not None else None
        scheduler = Scheduler(self.study, self.launcher, self.outcomes, self.heartbeat_interval, self.n_jobs,
                              self.schedule, self.sweep_max_failure_rate * self.n_trials, SweepProgress(self.n_trials),
                              deadline=deadline, trial_budget_s=self.trial_time_budget())
        log.info("Study %s in %s: %d of n_trials=%d trials so far; sampler %s, pruner %s; %d slot(s), %s launcher, "
                 "schedule=%s; jobs in %s", self.study.study_name, masked_url(self.url), counted_trials(self.study),
                 self.n_trials, type(self.sampler).__name__, type(pruner).__name__, scheduler.slots, scheduler.kind,
                 self.schedule, self.sweep_dir)
        try:
            scheduler.run(self.next_job)
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        self.write_results(self.study)

    def enqueue_trials(self) -> None:
        """Queue hydra.sweeper.enqueue's trials, under the workers' lock: each once per study (a re-run or a
        second worker finds it there and skips it); keys fixed on the command line win over an entry's."""
        entries = [{key: value for key, value in entry.items() if key not in self.fixed_params}
                   for entry in self.enqueue]
        with self.lock, warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # skip_if_exists
            for entry in entries:
                self.study.enqueue_trial(entry, skip_if_exists=True)

    def trial_time_budget(self) -> float | None:
        """The most a trial's own time_budget_s may be: fixed on the command line or in the config, or the top
        of its searched range; None when trials have no time budget."""
        distribution = self.distributions.get("time_budget_s")
        if distribution is not None:
            high = getattr(distribution, "high", None)
            if high is None:  # a choice(...)
                high = max((c for c in getattr(distribution, "choices", ()) if isinstance(c, (int, float))),
                           default=None)
            return float(high) if high is not None else None
        value = self.fixed_params.get("time_budget_s", self.config.get("time_budget_s"))
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def next_job(self) -> Job | None:
        """Under the workers' lock: settle dead and unseen-finished trials, then ask for the next trial if the
        study still needs one (a queued retry first); None when there is nothing to start now."""
        study = self.study
        with self.lock, warnings.catch_warnings():
            # Optuna marks its heartbeat retries experimental and expects heartbeats from Study.optimize;
            # this sweeper records them itself (scheduler.Heartbeats, cifar_sweeps.trial)
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", "Heartbeat of storage", UserWarning)
            self.outcomes.settle_stale(study, self.sweep_dir)
            self.outcomes.recover_finished(study)
            waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            if self.n_trials - counted_trials(study) <= 0 and not waiting:
                return None
            # asked, sampled and configured under the lock: the per-trial reseeding stays the sampler's state
            return self.prepare(study.ask())

    def prepare(self, trial: optuna.trial.Trial) -> Job:
        """The job of one asked trial: its sampled overrides, its `trial=` handle, resume=true, its folder."""
        reseed_sampler(self.sampler, self.sampler_seed, trial.number)
        (trial_overrides,) = self._configure_trials([trial], self.distributions, self.fixed_params,
                                                    self.fixed_overrides)
        # a retry (Optuna copies the dead trial's user attributes) continues in the dead trial's folder
        run_dir = Path(trial.user_attrs.get("run_dir") or self.sweep_dir / trial_dir_name(trial.number))
        trial.set_user_attr("run_dir", str(run_dir))
        spec = (f"{{storage:{quoted(self.url)},study:{quoted(self.study.study_name)},number:{trial.number},"
                f"heartbeat_interval:{self.heartbeat_interval}}}")
        overrides = [*trial_overrides, f"trial={spec}", "resume=true", f"hydra.sweep.subdir={quoted(str(run_dir))}"]
        retried = self.study._storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
        if retried is not None:
            # the dead parent's attributes were copied: this trial is running, with no error of its own
            for key in set(RECORDED) & set(trial.user_attrs):
                trial.set_user_attr(key, None)
            trial.set_user_attr("state", "running")
            log.warning("trial %d retries dead trial %d, resuming from its checkpoint in %s", trial.number, retried,
                        run_dir)
        return Job(trial, overrides, run_dir)

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
                 heartbeat_interval: int = 10, grace_period: int = 60, max_retry: int = 1, schedule: str = "free",
                 time_budget_s: float | None = None, enqueue: Any = None) -> None:
        self.settings = dict(sampler=sampler, direction=direction, storage=storage, study_name=study_name,
                             n_trials=n_trials, n_jobs=n_jobs, max_failure_rate=max_failure_rate,
                             custom_search_space=custom_search_space, params=params,
                             heartbeat_interval=heartbeat_interval, grace_period=grace_period, max_retry=max_retry,
                             schedule=schedule, time_budget_s=time_budget_s, enqueue=enqueue)

    def setup(self, *, hydra_context: Any, task_function: Any, config: DictConfig) -> None:
        s = self.settings
        if isinstance(s["enqueue"], ListConfig):
            s["enqueue"] = OmegaConf.to_container(s["enqueue"])
        check_sweeper_settings(s)
        sampler_cfg = s["sampler"]
        sampler_seed = sampler_cfg.get("seed") if isinstance(sampler_cfg, (dict, DictConfig)) else None
        check_targets("sampler", sampler_cfg, "hydra.sweeper.sampler")
        sampler = instantiate(sampler_cfg, _execution_whitelist_=whitelist("sampler"))
        self.sweeper = BudgetSweeperImpl(sampler, s["direction"], s["storage"], s["study_name"], s["n_trials"],
                                         s["n_jobs"], max_failure_rate=s["max_failure_rate"], custom_search_space=None,
                                         params=s["params"], heartbeat_interval=s["heartbeat_interval"],
                                         grace_period=s["grace_period"], max_retry=s["max_retry"],
                                         sampler_seed=sampler_seed, schedule=s["schedule"],
                                         time_budget_s=s["time_budget_s"], enqueue=s["enqueue"])
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
    budget = settings["time_budget_s"]
    if budget is not None and not (isinstance(budget, (int, float)) and not isinstance(budget, bool) and budget > 0
                                   and budget != float("inf")):
        raise ConfigError(f"hydra.sweeper.time_budget_s={budget!r} must be a positive number of seconds (from the "
                          "sweeper's start) or null; e.g. hydra.sweeper.time_budget_s=600")
    enqueue = settings["enqueue"]
    if enqueue is not None and not (isinstance(enqueue, list) and all(isinstance(e, dict) for e in enqueue)):
        raise ConfigError(f"hydra.sweeper.enqueue={enqueue!r} must be a list of mappings of searched key to value; "
                          "e.g. hydra.sweeper.enqueue=[{optimizer.lr:0.05}]")
    if settings["schedule"] not in SCHEDULES:
        raise ConfigError(f"hydra.sweeper.schedule={settings['schedule']!r} must be one of {', '.join(SCHEDULES)} "
                          "(free: start a trial the moment a slot frees; batch: n_jobs at a time, waiting for all)")


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
    fixed = set(trial.user_attrs) | set(trial.params)
    if config.get("budget", {}).get("fit_width"):
        fixed.add("model.width")  # solved per trial by train() (cifar_sweeps.budget), not searched
    for group, options in conditional.items():
        knobs = options.get(str(_choice_of(group, config, trial))) or {}
        for key, sweep in knobs.items():
            if key in fixed:
                continue
            trial._suggest(key, knob_distribution(key, sweep))
