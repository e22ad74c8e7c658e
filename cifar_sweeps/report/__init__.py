"""Sweep comparison report: one self-contained HTML page, its PNGs and a markdown table.

    python -m cifar_sweeps.report multirun/budget_50k [more sweep dirs of the same study ...]
    python -m cifar_sweeps.report multirun/budget_50k --storage postgresql+psycopg2://me@db/optuna
    python -m cifar_sweeps.report multirun/budget_50k --wandb --entity me

From Python: `write_report(load_sweep([dir, ...]), out_dir)`. Output goes to DIR/report/ by default.

Modules: `load` (runs -> Trial, Sweep), `study` (the Optuna study, any storage URL), `stats`
(Pareto front, per-group numbers, budgets), `figures`, `page` (HTML and markdown), `text` (number
formats), `wandb` (the W&B Report), `cli` (the command line; `__main__` runs it).
"""

from .cli import main
from .load import METRICS, Sweep, Trial, load_sweep
from .page import write_report
from .stats import pareto_front

__all__ = ["METRICS", "Sweep", "Trial", "load_sweep", "main", "pareto_front", "write_report"]
