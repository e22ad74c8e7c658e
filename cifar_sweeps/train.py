"""The training function and its Hydra entry point.

    python -m cifar_sweeps.train model=dilated_c4 norm=gn epochs=5
    python -m cifar_sweeps.train --multirun norm=bn,gn,ln

`train(cfg)` is plain Python (tests call it directly); `main` is a thin @hydra.main wrapper that
returns its value so Hydra sweepers can optimise it.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from .augment import check_augment
from .build import instantiate_trusted, build_model, build_optimizer, build_scheduler, count_params
from .data import CLASSES, check_sizes, load_cifar10
from .errors import ConfigError
from .loaders import AlbumentationsBatches, Normalize, TensorBatches
from .receptive_field import receptive_field

log = logging.getLogger("cifar_sweeps")

OBJECTIVES = ("best_val_acc", "final_val_acc", "test_acc")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run (or sweep trial) is marked failed."""


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


def validate(cfg: DictConfig) -> None:
    """Reject bad input before any data is loaded or model trained; errors name the key."""
    if not (isinstance(cfg.epochs, int) and cfg.epochs >= 1):
        raise ConfigError(f"epochs={cfg.epochs} must be a positive integer")
    for key in ("batch_size", "eval_batch_size"):
        if not (isinstance(cfg[key], int) and cfg[key] >= 1):
            raise ConfigError(f"{key}={cfg[key]} must be a positive integer")
    lr = cfg.optimizer.get("lr")
    if lr is None or not lr > 0:
        raise ConfigError(f"optimizer.lr={lr} must be a positive number")
    # one name (single-objective sweeps) or a list, e.g. [best_val_acc, params] for a Pareto search
    names = [cfg.objective] if isinstance(cfg.objective, str) else list(cfg.objective)
    for name in names:
        if name not in OBJECTIVES + ("params",):
            raise ConfigError(f"objective={cfg.objective!r}: {name!r} must be one of {list(OBJECTIVES)} or 'params' "
                              "(a list such as [best_val_acc, params] makes train() return one value per name)")
    if any(n in ("best_val_acc", "final_val_acc") for n in names) and cfg.data.val_size == 0:
        raise ConfigError(f"objective={cfg.objective} needs validation data but data.val_size=0; "
                          "set data.val_size>0, or objective=test_acc for a final run on all 50k images")
    dropout = cfg.model.get("dropout", 0.0)
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(f"model.dropout={dropout} must be in [0, 1)")
    if cfg.grad_clip_value is not None and not cfg.grad_clip_value > 0:
        raise ConfigError(f"grad_clip_value={cfg.grad_clip_value} must be positive or null")
    ema_decay = cfg.get("ema_decay")
    if ema_decay is not None and not (isinstance(ema_decay, float) and 0.0 < ema_decay < 1.0):
        raise ConfigError(f"ema_decay={ema_decay} must be a number in (0, 1), e.g. 0.99, or null for no weight EMA")
    check_sizes(cfg.data)
    check_augment(cfg.augment)
    resolve_device(cfg.device)


def run_dir_of(cfg: DictConfig) -> Path:
    if cfg.get("output_dir"):
        path = Path(cfg.output_dir)
    else:
        from hydra.core.hydra_config import HydraConfig

        path = Path(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else Path.cwd()
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


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
def evaluate(model, batches, tta_flip: bool = False, num_classes: int = 10, tta_translate: bool = False) -> dict:
    """Loss, accuracy and confusion matrix (rows = true class) of `model` on `batches`."""
    model.eval()
    total_loss, confusion = 0.0, torch.zeros(num_classes, num_classes, dtype=torch.long)
    for x, y in batches:
        logits = tta_logits(model, x, tta_flip, tta_translate)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        pred = logits.argmax(1)
        confusion += torch.bincount((y * num_classes + pred).cpu(), minlength=num_classes**2).view(num_classes, -1)
    n = int(confusion.sum())
    return {"loss": total_loss / n, "acc": confusion.trace().item() / n, "confusion": confusion}


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


def make_batches(cfg: DictConfig, data, device):
    normalize = Normalize(cfg.data.mean, cfg.data.std, device, cfg.channels_last)
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


def train(cfg: DictConfig) -> float:
    """Train one configuration, write its artefacts, return summary[cfg.objective]."""
    t0 = time.perf_counter()
    validate(cfg)
    run_dir = run_dir_of(cfg)
    if cfg.budget.get("fit_width"):
        # fit-to-budget: model.width becomes the largest that fits budget.max_params (meta-device counts)
        from .budget import fit_width_to_budget

        fit_width_to_budget(cfg)
    params = count_params(cfg)
    max_params = cfg.budget.get("max_params")
    if max_params is not None and params > max_params:
        # Over budget: rejected before data or weights are touched. The returned penalty is below
        # any accuracy and grows with the excess, so a sampler learns where the budget edge is.
        reason = f"{params:,} parameters > budget.max_params={max_params:,}"
        log.warning("rejected: %s", reason)
        summary = {"state": "rejected", "reason": reason, "params": params, "max_params": max_params,
                   "model_width": cfg.model.get("width"), "wall_s": time.perf_counter() - t0}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        # a rejected trial is still a trial: its logger (e.g. one W&B run per trial) records why
        logger = instantiate_trusted(cfg.logger)
        logger.start(OmegaConf.to_container(cfg, resolve=True), run_dir, {"params": params})
        logger.log_summary(summary, {})
        logger.finish(True)
        penalty = dict.fromkeys(OBJECTIVES, -params / max_params)
        return objective_value({**penalty, "params": params}, cfg.objective)

    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    use_amp = cfg.amp and device.type == "cuda"

    data = load_cifar10(cfg.data, cfg.seed)
    model = build_model(cfg).to(device)
    # traced from the model itself (one eval-mode forward of a 32x32 input, no gradients)
    rf = receptive_field(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    forward = torch.compile(model) if cfg.compile else model
    train_batches, val_batches, test_batches = make_batches(cfg, data, device)
    if hasattr(model, "init_from_data"):  # data-derived init (e.g. AirNet's whitening conv)
        model.init_from_data(train_batches.normalize(torch.from_numpy(data.train.x[:5000]).to(device)))
    optimizer = build_optimizer(cfg, model)
    scheduler, interval = build_scheduler(cfg, optimizer, len(train_batches), cfg.epochs)
    # weight EMA (parameters and BN statistics, torch's AveragedModel): evaluated and saved in place
    # of the raw weights, which keep training
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
           if cfg.get("ema_decay") else None)
    final_model = ema.module if ema is not None else model  # the weights that are scored and saved
    scored = final_model if ema is not None else forward  # forward: the same weights, compiled if asked

    config = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(config))
    logger = instantiate_trusted(cfg.logger)
    logger.start(config, run_dir, {"params": params})
    log.info("model %s: %s parameters | %d train / %d val / %d test images | device %s | run dir %s",
             cfg.model._target_.rsplit(".", 1)[-1], f"{params:,}", len(data.train),
             len(data.val) if data.val else 0, len(data.test), device, run_dir)

    history, best_val, best_epoch = [], -1.0, 0
    show_bar = sys.stderr.isatty()
    ok = False
    try:
        with open(run_dir / "metrics.jsonl", "w") as metrics_file:
            for epoch in range(1, cfg.epochs + 1):
                model.train()
                te = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                loss_sum = torch.zeros((), device=device)
                correct = torch.zeros((), device=device, dtype=torch.long)
                seen = 0
                bar = tqdm(train_batches, desc=f"epoch {epoch}/{cfg.epochs}", leave=False, disable=not show_bar)
                for x, y in bar:
                    loss, logits = train_step(model, forward, optimizer, x, y, cfg, use_amp)
                    if ema is not None:
                        ema.update_parameters(model)
                    if scheduler is not None and interval == "step":
                        scheduler.step()
                    # accumulate on the device: no host sync per batch
                    loss_sum += loss * len(y)
                    correct += (logits.argmax(1) == y).sum()
                    seen += len(y)
                train_loss = loss_sum.item() / seen
                if not math.isfinite(train_loss):
                    raise TrainingDiverged(f"training loss is {train_loss} at epoch {epoch}; lower optimizer.lr "
                                           "or set grad_clip_value")
                if scheduler is not None and interval == "epoch":
                    scheduler.step()
                train_s = time.perf_counter() - te
                row = {"epoch": epoch, "train_loss": train_loss, "train_acc": correct.item() / seen, "lr": lr}
                if val_batches is not None:
                    val = evaluate(scored, val_batches, cfg.tta_flip, tta_translate=cfg.tta_translate)
                    row.update(val_loss=val["loss"], val_acc=val["acc"])
                    if val["acc"] > best_val:
                        best_val, best_epoch = val["acc"], epoch
                row.update(epoch_s=time.perf_counter() - te, img_s=seen / train_s)
                history.append(row)
                metrics_file.write(json.dumps(row) + "\n")
                metrics_file.flush()
                logger.log_epoch(row)
                log.info("epoch %d/%d  loss %.4f  train %.2f%%%s  lr %.4g  %.1fs  %.0f img/s", epoch, cfg.epochs,
                         train_loss, 100 * row["train_acc"],
                         f"  val {100 * row['val_acc']:.2f}%" if "val_acc" in row else "", lr, row["epoch_s"],
                         row["img_s"])

        test = evaluate(scored, test_batches, cfg.tta_flip, tta_translate=cfg.tta_translate)
        confusion = test["confusion"]
        per_class = (confusion.diag().float() / confusion.sum(1).clamp(min=1).float()).tolist()
        summary = {
            "state": "completed",
            "params": params,
            "max_params": max_params,
            "model_width": cfg.model.get("width"),
            "receptive_field": rf["receptive_field"],
            "receptive_field_with_pool": rf["receptive_field_with_pool"],
            "best_val_acc": best_val if val_batches is not None else None,
            "best_epoch": best_epoch if val_batches is not None else None,
            "final_val_acc": history[-1].get("val_acc"),
            "test_acc": test["acc"],
            "test_loss": test["loss"],
            "test_acc_per_class": dict(zip(CLASSES, per_class)),
            "test_confusion": confusion.tolist(),
            "epochs": cfg.epochs,
            "train_images": len(data.train),
            "wall_s": time.perf_counter() - t0,
            "device": str(device),
            "seed": cfg.seed,
        }
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        if cfg.save_model:
            torch.save(final_model.state_dict(), run_dir / "model.pt")
        logger.log_summary(summary, {"model": final_model, "test_batches": test_batches, "history": history})
        log.info("test accuracy %.2f%% | best val %s | %s params | %.0fs", 100 * test["acc"],
                 f"{100 * best_val:.2f}% (epoch {best_epoch})" if val_batches is not None else "n/a",
                 f"{params:,}", summary["wall_s"])
        ok = True
    except Exception as e:
        # keep a record of what failed and why: reports list failed trials next to finished ones
        failed = {"state": "failed", "error": f"{type(e).__name__}: {e}", "params": params,
                  "epochs_done": len(history), "best_val_acc": best_val if history else None,
                  "wall_s": time.perf_counter() - t0}
        (run_dir / "summary.json").write_text(json.dumps(failed, indent=2))
        raise
    finally:
        logger.finish(ok)
    return objective_value(summary, cfg.objective)


def objective_value(summary: dict, objective):
    """summary[objective], or a list of values for a list of names (multi-objective sweeps)."""
    if isinstance(objective, str):
        return summary[objective]
    return [summary[name] for name in objective]


# absolute: Hydra resolves a relative config_path against the package when main is imported (not
# run as __main__), as it is in hydra/launcher=joblib workers
@hydra.main(config_path=str(Path(__file__).resolve().parents[1] / "conf"), config_name="train")
def main(cfg: DictConfig) -> float:
    return train(cfg)


if __name__ == "__main__":
    # `python -m cifar_sweeps.train` runs this file as __main__; call the importable copy of main so
    # hydra/launcher=joblib pickles the task by reference (by value it drags in torch.backends.cudnn)
    from cifar_sweeps.train import main as importable_main

    importable_main()
