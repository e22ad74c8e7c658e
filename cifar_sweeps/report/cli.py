"""The command line: python -m cifar_sweeps.report DIR [DIR ...] [options]."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigError
from .load import METRICS, load_sweep
from .page import write_report

DESCRIPTION = "Sweep comparison report: one self-contained HTML page, its PNGs and a markdown table."
EPILOG = """examples:
  python -m cifar_sweeps.report multirun/2026-11-22/05-03-06
  python -m cifar_sweeps.report multirun/budget_50k --compare-key optimizer --budget 50000 100000
  python -m cifar_sweeps.report worker1/multirun/budget_50k worker2/multirun/budget_50k  # one study, two workers
  python -m cifar_sweeps.report multirun/budget_50k --storage postgresql+psycopg2://me@db/optuna --study budget_50k
  python -m cifar_sweeps.report multirun/budget_50k --wandb --entity me --project cifar_sweeps

Each DIR is a sweep directory (its runs are the sub-directories holding summary.json, config.yaml or
.hydra/) or a single run directory. Read: each run's record (summary.json, metrics.jsonl), config.yaml,
.hydra/{overrides,hydra}.yaml and wandb.json, and the Optuna study when one can be found (read only).
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cifar_sweeps.report", description=DESCRIPTION,
                                     epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dir", type=Path, nargs="+",
                        help="a sweep directory (multirun/<date>/<time>) or a run directory; several (e.g. each "
                             "worker's sweep directory of one study) are merged, each run listed once")
    parser.add_argument("--out", type=Path, help="output directory (default: DIR/report, the first DIR's)")
    parser.add_argument("--compare-key", default="norm",
                        help="Hydra group (norm, model, optimizer, ...) or dotted config key (model.width) "
                             "to compare side by side (default: norm)")
    parser.add_argument("--metric", default="best_val_acc", choices=METRICS, help="ranking metric")
    parser.add_argument("--budget", type=int, nargs="*", default=[],
                        help="parameter budgets to draw (budget.max_params of the trials is always drawn)")
    parser.add_argument("--top", type=int, default=5, help="how many best trials' validation curves to plot")
    parser.add_argument("--storage", help="Optuna storage URL to read the study from, e.g. "
                                          "sqlite:///multirun/optuna.db or postgresql+psycopg2://user@host/db "
                                          "(default: the sweep's hydra.sweeper.storage, and any *.db in DIR)")
    parser.add_argument("--study", help="Optuna study name (default: the sweep's hydra.sweeper.study_name; "
                                        "without one, every study in the storage)")
    parser.add_argument("--wandb", action="store_true", help="also save the comparison as a W&B Report (needs network)")
    parser.add_argument("--entity", help="W&B entity for --wandb (default: $WANDB_ENTITY, else your default entity)")
    parser.add_argument("--project", help="W&B project for --wandb (default: the trials' project)")
    parser.add_argument("--title", help="title of the W&B Report")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(args.dir, storage=args.storage, study_name=args.study)
        paths = write_report(sweep, args.out or args.dir[0] / "report", args.compare_key, args.metric, args.budget,
                             args.top)
    except ConfigError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"{len(sweep.trials)} trials: " + ", ".join(f"{n} {s}" for s, n in sweep.counts().items()))
    for s in sweep.studies:
        print(f"Optuna study {s.name or '?'} in {s.storage}: "
              + (s.error or ", ".join(f"{n} {state}" for state, n in s.counts.items()) or "no trials"))
    for name, path in paths.items():
        print(f"{name:>20}: {path}")
    if args.wandb:
        from .wandb import save_wandb_report

        return save_wandb_report(sweep, args.entity, args.project, args.compare_key, args.metric, args.title)
    return 0
