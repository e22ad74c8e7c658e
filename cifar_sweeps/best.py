"""The best trials of an Optuna study as Hydra overrides, to train a search's winner for real.

A search's trials are selected on the validation split; the final run trains the winner on all 50k
images and reports test accuracy. Works on a study that is still running or was stopped early
(Hydra's optimization_results.yaml is only written when a sweep finishes).

    python -m cifar_sweeps.best airnet_full_50k                  # overrides of the best trial
    python -m cifar_sweeps.best airnet_full_50k --top 5          # the top 5, best first, with values
    python -m cifar_sweeps.best airnet_full_50k --trial 0        # overrides of trial 0 (e.g. a queued baseline)
    python -m cifar_sweeps.train hparams_search=airnet_full_50k $(python -m cifar_sweeps.best airnet_full_50k) \\
        data.val_size=0 objective=test_acc seed=2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna

DEFAULT_STORAGE = "sqlite:///multirun/optuna.db"
# studies searched before augmentation ops were keyed by name (results/airnet_full_h100) name them
# by list position: 0 was crop, 2 was cutout
LEGACY_KEYS = {"augment.ops.0.": "augment.ops.crop.", "augment.ops.2.": "augment.ops.cutout."}


def check_storage_exists(storage: str) -> None:
    """A SQLite URL must name an existing file: opening a mistyped path would create an empty database."""
    prefix = "sqlite:///"
    if storage.startswith(prefix) and not Path(storage[len(prefix):]).is_file():
        raise SystemExit(f"error: no Optuna database at {storage[len(prefix):]!r} (from --storage {storage}); a sweep "
                         "writes it (python -m cifar_sweeps.train --multirun hparams_search=NAME); pass "
                         "--storage sqlite:///PATH/optuna.db for another one")


def ranked_trials(storage: str, study_name: str) -> list[optuna.trial.FrozenTrial]:
    """Completed trials of a single-objective study, best first."""
    check_storage_exists(storage)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
        raise SystemExit(f"no study {study_name!r} in {storage}; studies there: {', '.join(names) or 'none'}")
    if len(study.directions) != 1:
        raise SystemExit(f"study {study_name!r} has {len(study.directions)} objectives; a single best trial is "
                         "not defined (read its Pareto front with python -m cifar_sweeps.report)")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.value is not None]
    if not done:
        raise SystemExit(f"study {study_name!r} has no completed trial yet")
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    return sorted(done, key=lambda t: t.value, reverse=maximize)


def as_overrides(params: dict) -> str:
    """Hydra command-line overrides for a trial's params (group choices and keys alike)."""
    def current(key: str) -> str:
        return next((key.replace(old, new, 1) for old, new in LEGACY_KEYS.items() if key.startswith(old)), key)

    return " ".join(f"{current(key)}={value!r}" if isinstance(value, str) and " " in value else f"{current(key)}={value}"
                    for key, value in sorted(params.items()))


def completed_trial(ranked: list[optuna.trial.FrozenTrial], number: int, study_name: str) -> optuna.trial.FrozenTrial:
    """Trial `number` among a study's completed trials (ranked_trials), or an error listing those there are."""
    chosen = next((t for t in ranked if t.number == number), None)
    if chosen is None:
        raise SystemExit(f"study {study_name!r} has no completed trial {number}; completed: "
                         f"{', '.join(str(t.number) for t in sorted(ranked, key=lambda t: t.number))}")
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="study name (hydra.sweeper.study_name of the search)")
    parser.add_argument("--storage", default=DEFAULT_STORAGE, help=f"Optuna storage URL (default {DEFAULT_STORAGE})")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--top", type=int, default=1, help="print the N best trials with their values")
    which.add_argument("--trial", type=int, metavar="N", help="the overrides of completed trial N instead of the best")
    args = parser.parse_args(argv)
    trials = ranked_trials(args.storage, args.study)
    if args.trial is not None:
        chosen = completed_trial(trials, args.trial, args.study)
        print(f"trial {chosen.number}: value {chosen.value:.4f}, rank {trials.index(chosen) + 1} of {len(trials)} "
              "completed", file=sys.stderr)
        print(as_overrides(chosen.params))
        return
    if args.top == 1:
        best = trials[0]
        print(f"trial {best.number}: value {best.value:.4f} of {len(trials)} completed", file=sys.stderr)
        print(as_overrides(best.params))
        return
    for t in trials[:args.top]:
        print(f"trial {t.number}\tvalue {t.value:.4f}\tparams {t.user_attrs.get('params', '?')}\t"
              f"{as_overrides(t.params)}")


if __name__ == "__main__":
    main()
