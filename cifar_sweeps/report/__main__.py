"""python -m cifar_sweeps.report DIR: write the sweep report (and with --wandb, the W&B Report)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import ConfigError
from . import METRICS, __doc__ as REPORT_DOC, load_sweep, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cifar_sweeps.report", description=REPORT_DOC.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, help="a sweep directory (multirun/<date>/<time>) or a run directory")
    parser.add_argument("--out", type=Path, help="output directory (default: DIR/report)")
    parser.add_argument("--compare-key", default="norm",
                        help="Hydra group (norm, model, optimizer, ...) or dotted config key (model.width) "
                             "to compare side by side (default: norm)")
    parser.add_argument("--metric", default="best_val_acc", choices=METRICS, help="ranking metric")
    parser.add_argument("--budget", type=int, nargs="*", default=[],
                        help="parameter budgets to draw (budget.max_params of the trials is always drawn)")
    parser.add_argument("--top", type=int, default=5, help="how many best trials' validation curves to plot")
    parser.add_argument("--wandb", action="store_true", help="also save the comparison as a W&B Report (needs network)")
    parser.add_argument("--entity", help="W&B entity for --wandb (default: $WANDB_ENTITY, else your default entity)")
    parser.add_argument("--project", help="W&B project for --wandb (default: the trials' project)")
    parser.add_argument("--title", help="title of the W&B Report")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(args.dir)
        paths = write_report(sweep, args.out or args.dir / "report", args.compare_key, args.metric, args.budget,
                             args.top)
    except ConfigError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"{len(sweep.trials)} trials: " + ", ".join(f"{n} {s}" for s, n in sweep.counts().items()))
    for name, path in paths.items():
        print(f"{name:>20}: {path}")
    if args.wandb:
        from .wandb import save_wandb_report

        return save_wandb_report(sweep, args.entity, args.project, args.compare_key, args.metric, args.title)
    return 0


if __name__ == "__main__":
    sys.exit(main())
