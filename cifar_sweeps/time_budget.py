"""Time-budgeted runs: `time_budget_s=600` trains as many steps as fit in 600 s, counted from process
start (from the start of `train()` inside a sweep job, or when `train(cfg)` is called from Python), up to
the test accuracy.

How a run plans itself (`make_plan`), once, before its first real step:

1. Measure. A few training steps on real batches (augmentation included): the first `WARMUP_STEPS`
   are not timed (the first steps are slower: allocator, OpenMP pool, cuDNN autotuning), the next
   `TIMED_STEPS` are. Then one evaluation forward of a test batch (with the run's TTA), timed after
   a warm-up forward. The model, optimizer, EMA and every random generator are put back as they were
   before these steps (`Snapshot`): the measuring steps are thrown away and their time is paid from
   the budget, so a budgeted run that plans N steps trains exactly as `epochs=N/steps_per_epoch` would.
2. Plan. What is left of the budget after the time already spent, the estimated final test and a
   reserve (`RESERVE` of the budget: writing the record, process exit) is filled with whole epochs
   (each: its steps plus a validation pass), then with the steps of a partial last epoch that still
   fit with its validation. `epochs` caps the plan (the rule when both are given: the budget decides,
   `epochs` is an upper bound). Less than one whole epoch is a `ConfigError` naming the measured epoch
   time and the smallest budget that would fit.
3. Lay the schedule over the plan (`lay_schedule`): OneCycleLR's total_steps and CosineAnnealingLR's
   T_max are the planned steps (epochs, for an epoch-interval schedule), and the epoch settings of
   StepLR / MultiStepLR / ExponentialLR, written for `epochs`, are scaled to the planned epochs, so
   the schedule ends at the last planned step.
4. Re-plan after every epoch (`replan_to_fit`): the epochs' wall times against their estimates give
   the machine's speed now (the mean ratio of the last `RECENT_EPOCHS` epochs; after the first epoch
   alone only a ratio beyond `FIRST_EPOCH_TOLERANCE` counts, as it pays one-time costs). The steps that
   fit in what is left of the budget at that speed become the new plan when they move its end by more
   than `REPLAN_TOLERANCE` of the budget: cut when the machine got slower, lengthened (up to `epochs`)
   when it got faster. The schedule is then laid again over the new length and stepped forward to
   where training is: the learning rate moves to where the new schedule is at this step and still
   ends at its end value on the (new) last step.

The plan lives in the checkpoint (`Progress.plan`): a resumed run (resume=true after a kill) keeps
the plan it was killed with, never measures again and never re-plans, so it ends where the plan ends
(the kill already broke the wall-clock budget; exact resume is the promise that stands).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import statistics
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .build import build_scheduler
from .engine import Run, sync, train_step, tta_logits
from .errors import ConfigError

log = logging.getLogger("cifar_sweeps")

# no run fits in less: start-up alone (imports, data) takes seconds
MIN_TIME_BUDGET_S = 10.0
WARMUP_STEPS, TIMED_STEPS = 2, 6
# share of the budget kept for what is not measured: the record, the logger, the process's exit
RESERVE = 0.01
# the first epoch alone pays one-time costs (allocations, first validation): within this factor of its
# estimate it is not taken for a slower (or faster) machine
FIRST_EPOCH_TOLERANCE = 1.25
# the machine's speed is the mean over this many recent epochs: on a 2-core cloud VM one epoch's time moved
# by up to +-20% from the next (results/time_budget_cpu/), and following every epoch would re-plan on noise
RECENT_EPOCHS = 3
# every re-plan moves the learning rate: one is made only when it moves the end by more than this share of
# the budget (well inside the +-3% the budget is kept to)
REPLAN_TOLERANCE = 0.01


@dataclass
class Plan:
    """A budgeted run's length and the measurements it was chosen from; saved in the checkpoint and
    summary.json (`time_plan`)."""

    time_budget_s: float
    steps_per_epoch: int
    total_steps: int  # training steps planned: the schedule's length
    first_total_steps: int  # the plan as first made, before any re-plan
    step_s: float  # seconds per training step, measured
    img_s: float  # training images per second, measured
    val_s: float  # estimated seconds of one validation pass
    test_s: float  # estimated seconds of the final test
    startup_s: float  # budget already spent when the plan was made (start-up, data, measuring)
    replans: list[dict[str, Any]] = field(default_factory=list)  # each re-plan: after which epoch, why
    slowdowns: list[float] = field(default_factory=list)  # each epoch's wall time / its estimate

    @property
    def epochs(self) -> int:
        """Epochs planned; the last one may be partial."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def steps_in(self, epoch: int) -> int:
        """Training steps of `epoch` (1-based): all of them, or the rest for a partial last epoch."""
        return min(self.steps_per_epoch, self.total_steps - (epoch - 1) * self.steps_per_epoch)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"epochs": self.epochs}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Plan":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def check_time_left(budget: float, started: float) -> None:
    """Before any data is loaded: a budget that start-up has already spent is an error now, not later."""
    used = time.perf_counter() - started
    if used + MIN_TIME_BUDGET_S > budget:
        raise ConfigError(f"time_budget_s={budget:g} leaves no time to train: {used:.1f} s of it went to start-up "
                          f"before loading data; give at least {used + MIN_TIME_BUDGET_S:.0f} s plus the training")


# -- measuring --------------------------------------------------------------------------------------

class Snapshot:
    """Everything a training step changes, copied, to be put back after the measuring steps."""

    def __init__(self, run: Run):
        self.run = run
        self.model = copy.deepcopy(run.model.state_dict())
        self.optimizer = copy.deepcopy(run.optimizer.state_dict())
        self.ema = copy.deepcopy(run.ema.state_dict()) if run.ema is not None else None
        self.torch_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if run.device.type == "cuda" else None
        self.numpy_rng = np.random.get_state()
        gen = getattr(run.train_batches, "gen", None)
        self.batches_rng = gen.get_state() if gen is not None else None

    def restore(self) -> None:
        run = self.run
        run.model.load_state_dict(self.model)
        run.optimizer.load_state_dict(self.optimizer)
        if self.ema is not None:
            run.ema.load_state_dict(self.ema)
        torch.set_rng_state(self.torch_rng)
        if self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        np.random.set_state(self.numpy_rng)
        if self.batches_rng is not None:
            run.train_batches.gen.set_state(self.batches_rng)


def measure_step_s(run: Run) -> tuple[float, float]:
    """(seconds per training step, images per second) over TIMED_STEPS real steps after WARMUP_STEPS; the
    run's state is put back afterwards."""
    snapshot = Snapshot(run)
    steps = len(run.train_batches)
    warmup = min(WARMUP_STEPS, steps - 1)
    timed = min(TIMED_STEPS, steps - warmup)
    run.model.train()
    images, t0 = 0, time.perf_counter()
    for i, (x, y) in enumerate(run.train_batches):
        if i == warmup:
            sync(run.device)
            images, t0 = 0, time.perf_counter()
        loss, _ = train_step(run.model, run.forward, run.optimizer, x, y, run.cfg, run.use_amp)
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        images += len(y)
        if i + 1 >= warmup + timed:
            loss.item()  # waits for the step on any device
            break
    sync(run.device)
    elapsed = time.perf_counter() - t0
    snapshot.restore()
    return elapsed / timed, images / elapsed


@torch.inference_mode()
def measure_eval_s_per_image(run: Run) -> float:
    """Seconds per image of the scored model's evaluation forward (with the run's TTA), on one test batch."""
    x, _ = next(iter(run.test_batches))
    model = run.scored
    model.eval()
    tta_logits(model, x, run.cfg.tta_flip, run.cfg.tta_translate)  # warm-up
    sync(run.device)
    t0 = time.perf_counter()
    tta_logits(model, x, run.cfg.tta_flip, run.cfg.tta_translate).sum().item()
    sync(run.device)
    return (time.perf_counter() - t0) / len(x)


# -- planning ---------------------------------------------------------------------------------------

def steps_that_fit(available_s: float, step_s: float, val_s: float, steps_per_epoch: int, max_steps: int) -> int:
    """The most training steps (at most max_steps) whose epochs, each with its validation pass, take at most
    available_s: whole epochs first, then a partial last epoch with its own validation."""
    epoch_s = steps_per_epoch * step_s + val_s
    whole = int(max(0.0, available_s) // epoch_s)
    steps = whole * steps_per_epoch
    left = available_s - whole * epoch_s - val_s
    if left > step_s:
        steps += min(steps_per_epoch - 1, int(left // step_s))
    return min(steps, max_steps)


def make_plan(run: Run, budget: float, started: float) -> Plan:
    """Measure, then choose how many steps fit in what is left of the budget; raises ConfigError when not one
    whole epoch fits."""
    step_s, img_s = measure_step_s(run)
    eval_s = measure_eval_s_per_image(run)
    val_s = eval_s * len(run.data.val) if run.data.val is not None else 0.0
    test_s = eval_s * len(run.data.test)
    spe = len(run.train_batches)
    used = time.perf_counter() - started
    available = budget - used - test_s - RESERVE * budget
    steps = steps_that_fit(available, step_s, val_s, spe, run.cfg.epochs * spe)
    if steps < spe:
        epoch_s = spe * step_s + val_s
        smallest = used + epoch_s + test_s + RESERVE * budget
        raise ConfigError(f"time_budget_s={budget:g} is too small for one epoch: {used:.1f} s went to start-up, "
                          f"data and measuring, one epoch takes about {epoch_s:.1f} s ({spe} steps of {step_s:.3f} s "
                          f"+ {val_s:.1f} s validation) and the final test about {test_s:.1f} s; the smallest budget "
                          f"that fits one epoch is about {math.ceil(smallest * 1.05)} s (or train on less data, "
                          "e.g. data.train_subset)")
    plan = Plan(time_budget_s=float(budget), steps_per_epoch=spe, total_steps=steps, first_total_steps=steps,
                step_s=step_s, img_s=img_s, val_s=val_s, test_s=test_s, startup_s=used)
    log.info("time budget %gs: %.1fs spent on start-up and measuring; %.0f img/s (%.3fs a step), ~%.1fs validation, "
             "~%.1fs test -> %d steps = %s epochs (epochs=%d caps it)", budget, used, img_s, step_s, val_s, test_s,
             steps, f"{steps / spe:.2f}".rstrip("0").rstrip("."), run.cfg.epochs)
    return plan


def lay_schedule(run: Run, plan: Plan, epochs_done: int = 0) -> None:
    """A new scheduler over the plan's length, stepped forward to where training is (`epochs_done` whole
    epochs), in place of run.scheduler."""
    scheduler, interval = build_scheduler(run.cfg, run.optimizer, plan.steps_per_epoch, plan.epochs,
                                          total_steps=plan.total_steps, written_for=run.cfg.epochs)
    if scheduler is not None:
        done = epochs_done * plan.steps_per_epoch if interval == "step" else epochs_done
        with warnings.catch_warnings():  # torch warns of scheduler steps without optimizer steps: intended here
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(done):
                scheduler.step()
    run.scheduler, run.interval = scheduler, interval
    run.epochs = plan.epochs


def replan_to_fit(run: Run, plan: Plan, epoch: int, epoch_wall_s: float, started: float) -> bool:
    """After `epoch` (whole, took epoch_wall_s with everything around it): the steps that fit in what is left of
    the budget at the speed of the recent epochs become the plan, with the schedule laid again over it, when
    they move its end by more than REPLAN_TOLERANCE of the budget (cut or lengthened). True if re-planned."""
    done = epoch * plan.steps_per_epoch
    plan.slowdowns.append(epoch_wall_s / (plan.steps_in(epoch) * plan.step_s + plan.val_s))
    if done >= plan.total_steps:
        return False
    if len(plan.slowdowns) == 1 and 1 / FIRST_EPOCH_TOLERANCE <= plan.slowdowns[0] <= FIRST_EPOCH_TOLERANCE:
        return False
    slowdown = statistics.fmean(plan.slowdowns[-RECENT_EPOCHS:])
    left = plan.time_budget_s * (1 - RESERVE) - (time.perf_counter() - started) - plan.test_s * slowdown
    most = run.cfg.epochs * plan.steps_per_epoch - done
    # at least one more step, even past the budget: the schedule must end at its end value on a real step
    fits = max(1, steps_that_fit(left / slowdown, plan.step_s, plan.val_s, plan.steps_per_epoch, most))
    moved_s = abs(done + fits - plan.total_steps) * plan.step_s * slowdown
    if moved_s <= REPLAN_TOLERANCE * plan.time_budget_s:  # a step or two over or under: noise, not the machine
        return False
    log.warning("time budget: the last epochs took %.2fx their estimate; %d more steps fit: the plan goes from %d "
                "to %d steps and the schedule is laid over it", slowdown, fits, plan.total_steps, done + fits)
    plan.replans.append({"after_epoch": epoch, "slowdown": round(slowdown, 3), "total_steps_before": plan.total_steps,
                         "total_steps": done + fits})
    plan.total_steps = done + fits
    lay_schedule(run, plan, epoch)
    return True
