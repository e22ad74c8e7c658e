"""A short fp32 vs bf16 parity check on real CIFAR-10: the same seed, data order and recipe trained for
`--steps` steps in each precision; prints the training loss averaged over every `--every` steps and the
validation accuracy at the end (no TTA). Short by design: it shows the curves track, it is not the
full-length accuracy comparison.

    CIFAR10_NPZ=/path/cifar10.npz python tools/bf16_parity.py model=dilated_c4 norm=gn --steps 300
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from cifar_sweeps.config import compose_train_config
from cifar_sweeps.engine import build_run, evaluate, train_step


def train_curve(overrides: list[str], amp: bool, steps: int, every: int) -> dict:
    # epochs sized so that OneCycle's schedule spans exactly the steps run
    cfg = compose_train_config([*overrides, f"amp={str(amp).lower()}"])
    run = build_run(cfg)
    steps_per_epoch = len(run.train_batches)
    cfg = compose_train_config([*overrides, f"amp={str(amp).lower()}", f"epochs={-(-steps // steps_per_epoch)}"])
    run = build_run(cfg, run.data)
    run.model.train()
    losses, started, done = [], time.perf_counter(), 0
    while done < steps:
        for x, y in run.train_batches:
            loss, _ = train_step(run.model, run.forward, run.optimizer, x, y, cfg, run.use_amp)
            if run.scheduler is not None and run.interval == "step":
                run.scheduler.step()
            losses.append(loss.item())
            done += 1
            if done == steps:
                break
    seconds = time.perf_counter() - started
    val = evaluate(run.scored, run.val_batches) if run.val_batches is not None else {"acc": None}
    curve = [round(sum(losses[i:i + every]) / len(losses[i:i + every]), 4) for i in range(0, steps, every)]
    return {"precision": run.speed["precision"], "settings": run.speed, "curve": curve, "val_acc": val["acc"],
            "train_s": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=50)
    args, overrides = parser.parse_known_args()
    results = [train_curve(overrides, amp, args.steps, args.every) for amp in (False, True)]
    print(f"parity check, overrides {overrides}, {args.steps} steps, loss averaged per {args.every} steps:")
    for r in results:
        print(f"  {r['precision']:14s} loss {' '.join(f'{v:.3f}' for v in r['curve'])}  val_acc "
              f"{r['val_acc']:.4f}  ({r['train_s']} s)")
    print(json.dumps({"overrides": overrides, "steps": args.steps, "results": results}))


if __name__ == "__main__":
    main()
