"""Re-evaluate a finished run's saved model (model.pt) under each test-time augmentation.

The run's own config.yaml rebuilds the model (width as solved) and the data split (same seed, same
validation images), so the comparison is of one set of weights. Validation by default: choose the TTA
there, not on the test set.

    python -m cifar_sweeps.evaluate outputs/2026-11-22/11-40-00
    python -m cifar_sweeps.evaluate RUN_DIR --split test --json tta.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from .data import load_cifar10
from .engine import build_run, evaluate
from .errors import ConfigError

# (name, tta_flip, tta_translate)
TTA_VARIANTS = (("none", False, False), ("flip", True, False), ("flip_translate", True, True))


def evaluate_run(run_dir: Path, split: str = "val", device: str = "auto") -> dict[str, float]:
    """Accuracy of run_dir/model.pt on `split` ("val" or "test") under each TTA variant."""
    config_file, weights = run_dir / "config.yaml", run_dir / "model.pt"
    for path in (config_file, weights):
        if not path.is_file():
            raise ConfigError(f"{path} not found: evaluate needs a finished run directory with config.yaml and "
                              "model.pt (runs save the model unless save_model=false)")
    cfg = OmegaConf.load(config_file)
    cfg.device = device
    cfg.augment = {"backend": "tensor", "ops": {}}  # scoring needs no training augmentation
    data = load_cifar10(cfg.data, cfg.seed)
    if split == "val" and data.val is None:
        raise ConfigError(f"{run_dir} was trained without a validation split (data.val_size=0); use --split test")
    run = build_run(cfg, data)  # the same model, split and batches as the run that was trained
    run.model.load_state_dict(torch.load(weights, map_location=run.device, weights_only=True))
    model = run.model
    batches = run.val_batches if split == "val" else run.test_batches
    return {name: evaluate(model, batches, flip, translate)["acc"]
            for name, flip, translate in TTA_VARIANTS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run directory holding config.yaml and model.pt")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--json", type=Path, help="also write the accuracies to this JSON file")
    args = parser.parse_args(argv)
    try:
        accs = evaluate_run(args.run_dir, args.split, args.device)
    except ConfigError as e:
        raise SystemExit(f"error: {e}")
    for name, acc in accs.items():
        print(f"{args.split} accuracy, TTA {name:<15} {100 * acc:.2f}%")
    if args.json:
        args.json.write_text(json.dumps({"split": args.split, **accs}, indent=2))


if __name__ == "__main__":
    main()
