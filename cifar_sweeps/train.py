"""Train one configuration: the recipe, and its Hydra entry point.

    python -m cifar_sweeps.train model=dilated_c4 norm=gn epochs=5
    python -m cifar_sweeps.train --multirun norm=bn,gn,ln
    python -m cifar_sweeps.train <same overrides> hydra.run.dir=RUN_DIR resume=true   # after a kill

`train(cfg)` is plain Python (tests call it directly): validate, size the model, build, fit, test,
record, return. The machinery lives in `engine`, checkpoints in `checkpoint`, the record in
`record`; `main` is a thin @hydra.main wrapper that returns train()'s value for Hydra's sweepers.
"""

from __future__ import annotations

import errno
import json
import logging
import time
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from . import sweeper  # noqa: F401  registers hydra/sweeper=cifar_optuna before Hydra composes
from .budget import fit_width_to_budget
from .build import count_params, instantiate_group
from .clock import process_started
from .checkpoint import (Progress, check_same_config, has_checkpoint, load_checkpoint, remove_checkpoint,
                         save_checkpoint)
from .data import CLASSES
from .engine import Run, build_run, evaluate, train_epoch
from .errors import RunFolderError, UserError, exit_with, unwritable
from .loggers import NullLogger
from .record import (CONFIG_FILE, FINISHED, METRICS_FILE, MODEL_FILE, RunSummary, atomic_write_text, read_summary,
                     rejection_value, write_atomically, write_summary)
from .run_folder import RunFolderLock
from .time_budget import Plan, check_time_left, lay_schedule, make_plan, replan_to_fit
from .trial import Pruned, SweepTrial, TrialTakenOver
from .validation import validate

log = logging.getLogger("cifar_sweeps")


def run_dir_of(cfg: DictConfig) -> Path:
    """output_dir if set, else Hydra's job directory, else the working directory."""
    if cfg.get("output_dir"):
        path = Path(cfg.output_dir)
    else:
        from hydra.core.hydra_config import HydraConfig

        path = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise unwritable(path, e) from None
    return path


def size_model(cfg: DictConfig) -> int:
    """Fit model.width to the budget when asked (cfg is updated), then count parameters on the meta device."""
    if cfg.budget.get("fit_width"):
        fit_width_to_budget(cfg)
    return count_params(cfg)


def start_or_resume(run: Run, config: dict, run_dir: Path) -> Progress:
    """Progress of a fresh run, or, with resume=true and a checkpoint in run_dir, where the run stopped."""
    if run.cfg.resume and has_checkpoint(run_dir):
        progress = load_checkpoint(run, config, run_dir)
        progress.resumed_at.append(progress.epoch)
        log.info("resumed %s after epoch %d of %d", run_dir, progress.epoch,
                 Plan.from_dict(progress.plan).epochs if progress.plan else run.cfg.epochs)
        return progress
    if run.cfg.resume:
        log.info("resume=true but %s holds no checkpoint yet; starting from epoch 1", run_dir)
    return Progress()


def plan_budget(run: Run, progress: Progress, started: float) -> Plan | None:
    """With time_budget_s: the plan of a resumed run as it was saved, else measured and made now, with the
    schedule laid over it (cifar_sweeps.time_budget). None without a budget: cfg.epochs stands."""
    budget = run.cfg.get("time_budget_s")
    if budget is None:
        return None
    if progress.plan is not None:  # never measured again: the resumed run ends where its plan ends
        plan = Plan.from_dict(progress.plan)
        run.epochs = plan.epochs
        log.info("time budget %gs: keeping the saved plan, %d steps (%d epochs)", budget, plan.total_steps,
                 plan.epochs)
        return plan
    plan = make_plan(run, budget, started)
    lay_schedule(run, plan)
    progress.plan = plan.as_dict()
    return plan


def log_epoch_line(row, epochs: int) -> None:
    val = f"  val {100 * row.val_acc:.2f}%" if row.val_acc is not None else ""
    log.info("epoch %d/%d  loss %.4f  train %.2f%%%s  lr %.4g  %.1fs  %.0f img/s", row.epoch, epochs, row.train_loss,
             100 * row.train_acc, val, row.lr, row.epoch_s, row.img_s)


def fit(run: Run, progress: Progress, config: dict, run_dir: Path, logger, trial: SweepTrial | None,
        started: float, plan: Plan | None = None) -> None:
    """Train the remaining epochs (run.epochs: cfg.epochs or the time budget's plan); after each: the plan
    re-checked, metrics line, checkpoint, logger, pruner."""
    cfg = run.cfg
    earlier_s = progress.train_s
    metrics_path = run_dir / METRICS_FILE
    # the checkpoint's history is the truth: a line written after the last checkpoint is dropped
    atomic_write_text(metrics_path, "".join(json.dumps(r) + "\n" for r in progress.history))
    epoch_began = time.perf_counter()
    with open(metrics_path, "a") as metrics_file:
        while progress.epoch < run.epochs:  # a loop, not a range: the plan may be cut as it goes
            epoch = progress.epoch + 1
            row = train_epoch(run, epoch, plan.steps_in(epoch) if plan is not None else None)
            progress.epoch = epoch
            progress.history.append(row.as_dict())
            if row.val_acc is not None and row.val_acc > progress.best_val:
                progress.best_val, progress.best_epoch = row.val_acc, epoch
            # a resumed run keeps its plan: it ends exactly where the interrupted one would have
            if plan is not None and not progress.resumed_at:
                replan_to_fit(run, plan, epoch, time.perf_counter() - epoch_began, started)
                progress.plan = plan.as_dict()  # checkpointed with the schedule laid over it
            progress.train_s = earlier_s + time.perf_counter() - started
            try:
                metrics_file.write(json.dumps(row.as_dict()) + "\n")
                metrics_file.flush()
            except OSError as e:  # a full disk: the previous epoch's checkpoint is kept
                raise unwritable(metrics_path, e) from None
            save_checkpoint(run, progress, config, run_dir)
            logger.log_epoch(row.as_dict())
            log_epoch_line(row, run.epochs)
            if trial is not None and row.val_acc is not None and isinstance(cfg.objective, str):
                trial.report(epoch, row.val_acc, last=epoch == run.epochs)
            epoch_began = time.perf_counter()


def test_summary(run: Run, progress: Progress, params: int, wall_s: float) -> RunSummary:
    """Score the final weights on the test set once and summarise the run."""
    cfg = run.cfg
    test = evaluate(run.scored, run.test_batches, cfg.tta_flip, cfg.tta_translate)
    confusion = test["confusion"]
    per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1).float()).tolist()
    has_val = run.val_batches is not None
    return RunSummary(
        state="completed", params=params, max_params=cfg.budget.get("max_params"),
        model_width=cfg.model.get("width"), receptive_field=run.receptive_field["receptive_field"],
        receptive_field_with_pool=run.receptive_field["receptive_field_with_pool"],
        best_val_acc=progress.best_val if has_val else None, best_epoch=progress.best_epoch if has_val else None,
        final_val_acc=progress.history[-1].get("val_acc"), test_acc=test["acc"], test_loss=test["loss"],
        test_acc_per_class=dict(zip(CLASSES, per_class)), test_confusion=confusion.tolist(), epochs=cfg.epochs,
        epochs_done=progress.epoch, train_images=len(run.data.train), wall_s=wall_s, device=str(run.device),
        seed=cfg.seed, resumed_at=progress.resumed_at, speed=run.speed, **budget_facts(cfg, progress))


def budget_facts(cfg: DictConfig, progress: Progress) -> dict:
    """summary.json's time-budget fields: the budget, the epochs planned and the plan (None without a budget)."""
    plan = progress.plan
    return {"time_budget_s": cfg.get("time_budget_s"), "epochs_planned": plan["epochs"] if plan else None,
            "time_plan": plan}


def reject(cfg: DictConfig, run_dir: Path, params: int, config: dict, started: float):
    """Over budget: recorded (also by the logger: one W&B run per trial) and never trained."""
    max_params = cfg.budget.max_params
    reason = f"{params:,} parameters > budget.max_params={max_params:,}"
    log.warning("rejected: %s", reason)
    summary = RunSummary(state="rejected", reason=reason, params=params, max_params=max_params,
                         model_width=cfg.model.get("width"), epochs=cfg.epochs,
                         wall_s=time.perf_counter() - started, seed=cfg.seed)
    atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(config))
    write_summary(run_dir, summary)
    logger = instantiate_group("logger", cfg.logger)
    logger.start(config, run_dir, {"params": params})
    logger.log_summary(summary, {})
    logger.finish(True)
    return rejection_value(params, max_params, cfg.objective)


def recorded_result(finished: RunSummary, config: dict, run_dir: Path, objective):
    """resume=true on a run that already finished: its record stands (nothing is trained, tested or written
    again), provided it was made by the same configuration."""
    saved = run_dir / CONFIG_FILE
    if saved.is_file():
        check_same_config(OmegaConf.to_container(OmegaConf.load(saved)), config,
                          f"{run_dir} holds a {finished.state} run of", "its config.yaml")
    log.info("%s already %s; nothing to resume", run_dir, finished.state)
    if finished.state == "rejected":
        return rejection_value(finished.params, finished.max_params, objective)
    return finished.objective(objective) if finished.state == "completed" else finished.final_val_acc


def record_failure(cfg: DictConfig, run_dir: Path, error: Exception, params, progress: Progress, started: float,
                   logger) -> None:
    """A failed run leaves its record too (the sweeper and the report say what failed and why), unless the
    folder holds a finished record: a failure never replaces a finished run."""
    done = read_summary(run_dir)
    if done is not None and done.state in FINISHED:
        return

    def as_int(value):  # a bad value (e.g. epochs=[1,2]) is in the error; the record keeps only integers
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    summary = RunSummary(state="failed", error=f"{type(error).__name__}: {error}", params=params,
                         max_params=as_int(cfg.budget.get("max_params")), epochs=as_int(cfg.get("epochs")),
                         epochs_done=progress.epoch, best_val_acc=progress.best_val if progress.history else None,
                         wall_s=time.perf_counter() - started, seed=as_int(cfg.get("seed")),
                         resumed_at=progress.resumed_at)
    try:
        write_summary(run_dir, summary)
        logger.log_summary(summary, {})
        logger.finish(False)
    except Exception as e:  # e.g. the disk that failed the run is still full: the first error is the one to see
        log.error("the failure could not be recorded in %s: %s", run_dir, e)


# a write that failed for one of these is the folder's fault, not the run's: said in one line
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)

# how long a sweep job waits for its run folder: a retried trial's parent job, declared dead after missed
# heartbeats but alive, may still be in an epoch there (it stops at its next report and lets go)
SWEEP_FOLDER_WAIT_S = 600


def train(cfg: DictConfig, started: float | None = None):
    """Train one configuration, write its record, return summary[cfg.objective] (a list for a list).
    `started`: the perf_counter reading a time budget counts from (the CLI passes its process's start);
    by default, now."""
    started = time.perf_counter() if started is None else started
    run_dir = run_dir_of(cfg)
    with RunFolderLock(run_dir, wait_s=SWEEP_FOLDER_WAIT_S if cfg.get("trial") else 0):
        finished = read_summary(run_dir)
        finished = finished if finished is not None and finished.state in FINISHED else None
        if not cfg.get("resume"):
            if finished is not None:
                raise RunFolderError(f"{run_dir} holds a {finished.state} run; a new run there would overwrite it. "
                                     "Use another hydra.run.dir (or output_dir), delete the folder, or pass "
                                     "resume=true to read its result")
            if has_checkpoint(run_dir):
                raise RunFolderError(f"{run_dir} holds the checkpoint of an unfinished run; resume=true continues "
                                     "it, or delete its checkpoint.pt to start over there")
        return train_in(cfg, run_dir, finished, started)


def train_in(cfg: DictConfig, run_dir: Path, finished: RunSummary | None, started: float):
    """train() once the run folder is this process's: validate, size, build, fit, test, record."""
    logger, params, progress, trial = NullLogger(), None, Progress(), None
    try:
        validate(cfg)
        if cfg.get("time_budget_s") is not None:
            check_time_left(cfg.time_budget_s, started)
        # inside a cifar_sweeps sweep: the job's Optuna trial (heartbeat, per-epoch reports, pruner)
        trial = SweepTrial.from_config(cfg, pruner=instantiate_group("pruner", cfg.pruner))
        params = size_model(cfg)
        config = OmegaConf.to_container(cfg, resolve=True)
        if finished is not None:  # e.g. a sweep job that outlived its sweeper, run again
            return recorded_result(finished, config, run_dir, cfg.objective)
        max_params = cfg.budget.get("max_params")
        if max_params is not None and params > max_params:
            return reject(cfg, run_dir, params, config, started)
        atomic_write_text(run_dir / CONFIG_FILE, OmegaConf.to_yaml(config))
        logger = instantiate_group("logger", cfg.logger)
        logger.start(config, run_dir, {"params": params})
        run = build_run(cfg)
        log.info("model %s: %s parameters | %d train / %d val / %d test images | device %s | run dir %s",
                 cfg.model._target_.rsplit(".", 1)[-1], f"{params:,}", len(run.data.train),
                 len(run.data.val) if run.data.val else 0, len(run.data.test), run.device, run_dir)
        progress = start_or_resume(run, config, run_dir)
        if progress.history:
            logger.log_resumed(progress.history)
            if trial is not None and isinstance(cfg.objective, str):
                trial.report_resumed(progress.history)  # a retry's curve starts at epoch 1 too
        plan = plan_budget(run, progress, started)
        fit(run, progress, config, run_dir, logger, trial, started, plan)
        summary = test_summary(run, progress, params, progress.train_s)
    except TrialTakenOver as e:
        log.warning("%s", e)  # another job owns this run folder now: leave it as it is
        raise
    except Pruned as pruned:
        summary = RunSummary(state="pruned", reason=str(pruned), params=params, max_params=cfg.budget.max_params,
                             model_width=cfg.model.get("width"), best_val_acc=progress.best_val,
                             best_epoch=progress.best_epoch, final_val_acc=pruned.value, epochs=cfg.epochs,
                             epochs_done=progress.epoch, wall_s=progress.train_s, seed=cfg.seed,
                             resumed_at=progress.resumed_at, **budget_facts(cfg, progress))
        log.info("trial pruned at epoch %d of %d", pruned.epoch,
                 progress.plan["epochs"] if progress.plan else cfg.epochs)
        write_summary(run_dir, summary)
        remove_checkpoint(run_dir)  # a pruned trial's weights are not needed
        logger.log_summary(summary, {})
        logger.finish(True)
        return pruned.value
    except Exception as e:
        record_failure(cfg, run_dir, e, params, progress, started, logger)
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:  # e.g. a logger's file on a full disk
            raise unwritable(Path(e.filename) if e.filename else run_dir, e) from None
        raise
    finally:
        if trial is not None:
            trial.close()
    return record_completed(run, summary, progress, run_dir, logger)


def record_completed(run: Run, summary: RunSummary, progress: Progress, run_dir: Path, logger):
    """Write the finished run's record (and weights), tell the logger, return the objective's value."""
    cfg = run.cfg
    if cfg.save_model:  # the weights first: a completed record always comes with its model.pt
        state = run.final_model.state_dict()
        write_atomically(run_dir / MODEL_FILE, lambda tmp: torch.save(state, tmp))
    write_summary(run_dir, summary)
    if not cfg.keep_checkpoint:
        remove_checkpoint(run_dir)
    logger.log_summary(summary, {"model": run.final_model, "test_batches": run.test_batches,
                                 "history": progress.history})
    logger.finish(True)
    best = f"{100 * summary.best_val_acc:.2f}% (epoch {summary.best_epoch})" if summary.best_val_acc is not None \
        else "n/a"
    log.info("test accuracy %.2f%% | best val %s | %s params | %.0fs", 100 * summary.test_acc, best,
             f"{summary.params:,}", summary.wall_s)
    return summary.objective(cfg.objective)


# what Hydra itself may instantiate from conf/train.yaml (hydra.callbacks); each group's own objects are
# checked per group (cifar_sweeps.targets)
HYDRA_TRUSTED = ["cifar_sweeps.run_folder.RunFolderCheck"]


@hydra.main(config_path="pkg://cifar_sweeps.conf", config_name="train", execution_whitelist=HYDRA_TRUSTED)
def main(cfg: DictConfig):
    # a log file on a full disk must not turn every later log line into a traceback: the error that
    # stops the run is said once, below
    logging.raiseExceptions = False
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        # a single run's time budget counts from process start; a sweep job's from its own start (a joblib
        # worker or the sweeper's process runs many jobs)
        return train(cfg, started=None if multirun else process_started())
    except UserError as e:
        # one clear line instead of a traceback; in a sweep the sweeper records the failure
        if multirun:
            raise
        exit_with(e)


if __name__ == "__main__":
    # `python -m cifar_sweeps.train` runs this file as __main__; call the importable copy of main so
    # hydra/launcher=joblib pickles the task by reference (by value it drags in torch.backends.cudnn)
    from cifar_sweeps.train import main as importable_main

    importable_main()
