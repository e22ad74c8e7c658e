"""The run's machinery, written once: set up torch, build everything a run needs, train an epoch,
evaluate with test-time augmentation.

`train` (the recipe), `bench` (timing), `evaluate` (re-scoring a saved run) and the loggers all use
these pieces, so a training step, a batch or an evaluation means the same thing everywhere.

    run = build_run(cfg)                   # device, data, model, batches, optimizer, schedule, EMA
    row = train_epoch(run, epoch)          # one pass over the training split
    val = evaluate(run.scored, run.val_batches, cfg.tta_flip, cfg.tta_translate)
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from .build import build_model, build_optimizer, build_scheduler
from .data import CifarData, check_batch_size, load_cifar10
from .errors import ConfigError
from .loaders import AlbumentationsBatches, Normalize, TensorBatches, cpu_workers
from .receptive_field import receptive_field
from .record import EpochRow
from .speed import BF16_ON_CPU, resolve_amp, use_fast_modules

log = logging.getLogger("cifar_sweeps")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run (or sweep trial) is marked failed."""


# -- torch set-up -----------------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"device={name!r} is not a torch device; use auto, cpu or cuda[:N]") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available here; use device=auto or device=cpu")
    return device


def parallel_trials() -> int:
    """How many trials share this machine: a joblib sweep's n_jobs (read from Hydra's launcher config
    when this job runs under it), else 1."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            launcher = HydraConfig.get().launcher
            if "joblib" in str(launcher.get("_target_", "")):
                n_jobs = int(launcher.get("n_jobs") or 1)
                return cpu_workers() if n_jobs < 0 else n_jobs
    except Exception:  # outside Hydra, or a launcher config without these keys
        pass
    return 1


def resolve_threads(threads: Any) -> int:
    """`threads=auto`: the cores this process may use (SLURM's cpus-per-task inside a SLURM job), divided
    among the trials a joblib sweep runs side by side; a number is taken as given."""
    if threads != "auto":
        return int(threads)
    cores = int(os.environ.get("SLURM_CPUS_PER_TASK") or cpu_workers())
    return max(1, cores // parallel_trials())


def has_narrow_strided_pointwise_conv(model: nn.Module) -> bool:
    """A 1x1 stride-2 conv with fewer than 8 input channels (ResNet-18 at width <= 5, advanced_c4 at
    width <= 3): torch's CPU backward through it in channels_last never returns (torch 2.14)."""
    return any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1 and m.in_channels < 8
               for m in model.modules())


def resolve_channels_last(channels_last: Any, device: torch.device, norm_kind: str, model: nn.Module,
                          amp: bool = False) -> bool:
    """`channels_last=auto`: on for CUDA and for a CPU in fp32 (with the fast modules it measured as fast
    or faster than NCHW for every zoo net and norm: `cifar_sweeps.bench --zoo --candidates`,
    docs/speed.md); on a CPU in bf16, the format the zoo benchmark measured fastest for the net
    (`speed.BF16_ON_CPU`). Always off on CPU for a net that would hang in it."""
    if device.type == "cpu" and has_narrow_strided_pointwise_conv(model):
        if channels_last is True:
            log.warning("channels_last=true ignored: a 1x1 stride-2 conv with < 8 input channels hangs in "
                        "torch's CPU channels_last backward; training in NCHW")
        return False
    if channels_last != "auto":
        return bool(channels_last)
    if device.type == "cpu" and amp:
        return BF16_ON_CPU.get((type(model).__name__, norm_kind), True)
    return True


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def configure_torch(cfg: DictConfig) -> torch.device:
    """Device, threads and cuDNN for this process; returns the device."""
    device = resolve_device(cfg.device)
    torch.set_num_threads(resolve_threads(cfg.threads))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed 32x32 shapes: autotuned kernels pay at once
    return device


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously): timings must include it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -- building a run ---------------------------------------------------------------------------------

def make_batches(cfg: DictConfig, data: CifarData, device: torch.device, channels_last: bool):
    """(train, val or None, test) batch iterators; the training one augments with the config's ops."""
    normalize = Normalize(cfg.data.mean, cfg.data.std, device, channels_last)
    mean = list(cfg.data.mean)
    if cfg.augment.backend == "albumentations":
        train = AlbumentationsBatches(data.train, cfg.batch_size, device, normalize, cfg.augment, mean,
                                      seed=cfg.seed, workers=cfg.augment.get("workers"))
    else:
        train = TensorBatches(data.train, cfg.batch_size, device, normalize, cfg.augment, mean,
                              shuffle=True, seed=cfg.seed)
    val = TensorBatches(data.val, cfg.eval_batch_size, device, normalize) if data.val is not None else None
    test = TensorBatches(data.test, cfg.eval_batch_size, device, normalize)
    return train, val, test


@dataclass
class Run:
    """Everything one training run is made of, built by `build_run`."""

    cfg: DictConfig
    device: torch.device
    data: CifarData
    model: nn.Module  # the weights being trained
    forward: nn.Module  # the same weights, compiled when cfg.compile
    ema: AveragedModel | None  # weight EMA, when cfg.ema_decay
    optimizer: torch.optim.Optimizer
    scheduler: Any
    interval: str  # when the scheduler steps: "step" or "epoch"
    train_batches: Any
    val_batches: TensorBatches | None
    test_batches: TensorBatches
    use_amp: bool
    channels_last: bool
    receptive_field: dict
    speed: dict  # the settings the training step runs with (threads, precision, ...), for summary.json
    epochs: int = 0  # epochs this run trains: cfg.epochs, or a time budget's plan (cifar_sweeps.time_budget)

    @property
    def final_model(self) -> nn.Module:
        """The weights that are scored and saved: the EMA's when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def scored(self) -> nn.Module:
        """What evaluation calls: the EMA, else the (possibly compiled) trained model."""
        return self.ema.module if self.ema is not None else self.forward


def build_run(cfg: DictConfig, data: CifarData | None = None) -> Run:
    """Set up torch and build the data, model, batches, optimizer, schedule and EMA of `cfg`."""
    seed_everything(cfg.seed)
    device = configure_torch(cfg)
    if data is None:
        data = load_cifar10(cfg.data, cfg.seed)
        check_batch_size(cfg.batch_size, cfg.data, len(data.train) + len(data.val or ()))  # a smaller file
    model = build_model(cfg).to(device)
    rf = receptive_field(model)  # traced from the model itself: one eval-mode forward, no gradients
    norm_kind = str(cfg.norm.get("kind"))
    use_amp = resolve_amp(cfg.amp, device, type(model).__name__, norm_kind)
    channels_last = resolve_channels_last(cfg.channels_last, device, norm_kind, model, use_amp)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # same maths, cheaper modules (dropout mask from 16-bit random draws, ReLU in place, strided dilated convs on the
    # subsampled map); same parameters and state_dict (cifar_sweeps/speed.py)
    fast_modules = use_fast_modules(model) if cfg.get("fast_modules", True) else {}
    forward = torch.compile(model) if cfg.compile else model
    train_batches, val_batches, test_batches = make_batches(cfg, data, device, channels_last)
    if hasattr(model, "init_from_data"):  # data-derived init (e.g. AirNet's whitening conv)
        model.init_from_data(train_batches.normalize(torch.from_numpy(data.train.x[:5000]).to(device)))
    optimizer = build_optimizer(cfg, model)
    scheduler, interval = build_scheduler(cfg, optimizer, len(train_batches), cfg.epochs)
    # weight EMA over parameters and BN statistics (torch's AveragedModel), evaluated and saved in
    # place of the raw weights, which keep training
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
           if cfg.get("ema_decay") else None)
    speed = {"threads": torch.get_num_threads() if device.type == "cpu" else None,
             "precision": "bf16 autocast" if use_amp else "fp32",
             "memory_format": "channels_last" if channels_last else "NCHW", "compile": bool(cfg.compile),
             "fast_modules": fast_modules}
    return Run(cfg=cfg, device=device, data=data, model=model, forward=forward, ema=ema, optimizer=optimizer,
               scheduler=scheduler, interval=interval, train_batches=train_batches, val_batches=val_batches,
               test_batches=test_batches, use_amp=use_amp, channels_last=channels_last, receptive_field=rf,
               speed=speed, epochs=cfg.epochs)


# -- training ---------------------------------------------------------------------------------------

def train_step(model, forward, optimizer, x, y, cfg: DictConfig, use_amp: bool):
    """One optimisation step (also timed by cifar_sweeps.bench); returns (loss, logits), no host sync."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        logits = forward(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.loss.label_smoothing)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip_value is not None:
        torch.nn.utils.clip_grad_value_(model.parameters(), cfg.grad_clip_value)
    optimizer.step()
    return loss.detach(), logits


def train_epoch(run: Run, epoch: int, steps: int | None = None) -> EpochRow:
    """One pass over the training split (its first `steps` batches, for a time budget's partial last epoch),
    then validation; returns the epoch's metrics row."""
    cfg = run.cfg
    run.model.train()
    started = time.perf_counter()
    lr = run.optimizer.param_groups[0]["lr"]
    # accumulated on the device: no host sync per batch
    loss_sum = torch.zeros((), device=run.device)
    correct = torch.zeros((), device=run.device, dtype=torch.long)
    seen = 0
    bar = tqdm(run.train_batches, desc=f"epoch {epoch}/{run.epochs}", leave=False, disable=not sys.stderr.isatty(),
               total=steps)
    for step, (x, y) in enumerate(bar, 1):
        loss, logits = train_step(run.model, run.forward, run.optimizer, x, y, cfg, run.use_amp)
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        if run.scheduler is not None and run.interval == "step":
            run.scheduler.step()
        loss_sum += loss * len(y)
        correct += (logits.argmax(1) == y).sum()
        seen += len(y)
        if step == steps:  # a partial last epoch: stop before drawing the next batch
            break
    train_loss = loss_sum.item() / seen
    if not math.isfinite(train_loss):
        raise TrainingDiverged(f"training loss is {train_loss} at epoch {epoch}; lower optimizer.lr "
                               "or set grad_clip_value")
    if run.scheduler is not None and run.interval == "epoch":
        run.scheduler.step()
    train_s = time.perf_counter() - started
    row = EpochRow(epoch=epoch, train_loss=train_loss, train_acc=correct.item() / seen, lr=lr)
    if run.val_batches is not None:
        val = evaluate(run.scored, run.val_batches, cfg.tta_flip, cfg.tta_translate)
        row.val_loss, row.val_acc = val["loss"], val["acc"]
    row.epoch_s, row.img_s = time.perf_counter() - started, seen / train_s
    return row


# -- evaluation -------------------------------------------------------------------------------------

def tta_logits(model, x: torch.Tensor, flip: bool = False, translate: bool = False) -> torch.Tensor:
    """Logits of `model` for `x`, averaged over test-time augmentations (airbench's TTA levels 1 and 2)."""
    logits = model(x).float()
    if flip:  # average with the mirrored image: cheap, reliable +0.3-0.5%
        logits = 0.5 * (logits + model(x.flip(3)).float())
    if translate:  # and with 1-pixel shifts up-left / down-right (reflect-padded), each with its mirror
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifted = [padded[:, :, :-2, :-2], padded[:, :, 2:, 2:]]
        logits = 0.5 * logits + 0.25 * sum(tta_logits(model, s, flip) for s in shifted)
    return logits


@torch.inference_mode()
def predict(model, batches, flip: bool = False, translate: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, logits) of `model` over `batches`, in order."""
    model.eval()
    labels, logits = [], []
    for x, y in batches:
        logits.append(tta_logits(model, x, flip, translate))
        labels.append(y)
    return torch.cat(labels), torch.cat(logits)


@torch.inference_mode()
def evaluate(model, batches, flip: bool = False, translate: bool = False, num_classes: int = 10) -> dict:
    """Loss, accuracy and confusion matrix (rows = true class) of `model` on `batches`."""
    model.eval()
    total_loss, confusion = 0.0, torch.zeros(num_classes, num_classes, dtype=torch.long)
    for x, y in batches:
        logits = tta_logits(model, x, flip, translate)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        pred = logits.argmax(1)
        confusion += torch.bincount((y * num_classes + pred).cpu(), minlength=num_classes**2).view(num_classes, -1)
    n = int(confusion.sum())
    return {"loss": total_loss / n, "acc": confusion.trace().item() / n, "confusion": confusion}
