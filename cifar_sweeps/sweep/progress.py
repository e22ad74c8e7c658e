"""Where a running sweep stands, in one line: trials done / running / pruned / failed of n_trials, the
best value so far and the elapsed time. A progress bar on a terminal (tqdm), a log line per finished
trial otherwise (a SLURM log, a file, a CI run). Counts come from the study, so with several workers
they are the whole study's."""

from __future__ import annotations

import logging
import sys
import time

import optuna
from optuna.trial import TrialState

from .storage import counted_trials

log = logging.getLogger("cifar_sweeps.sweeper")


def elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


class SweepProgress:
    def __init__(self, n_trials: int, terminal: bool | None = None):
        self.n_trials = n_trials
        self.started = time.monotonic()
        terminal = sys.stderr.isatty() if terminal is None else terminal
        self.bar = None
        if terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=n_trials, desc="sweep", unit="trial", dynamic_ncols=True)

    def line(self, study: optuna.Study) -> tuple[int, str]:
        trials = study.get_trials(deepcopy=False)
        count = {state: sum(1 for t in trials if t.state == state) for state in TrialState}
        done = counted_trials(study) - count[TrialState.RUNNING] - count[TrialState.WAITING]
        best = "n/a"
        if len(study.directions) == 1:
            try:
                best = f"{study.best_value:.4f}"
            except ValueError:  # no completed trial within budget yet
                pass
        retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
        failed = sum(1 for t in trials if t.state == TrialState.FAIL and t.number not in retried)  # for good
        return done, (f"{done}/{self.n_trials} trials done, {count[TrialState.RUNNING]} running, "
                      f"{count[TrialState.PRUNED]} pruned, {failed} failed | best {best} | "
                      f"{elapsed(time.monotonic() - self.started)}")

    def update(self, study: optuna.Study) -> None:
        done, text = self.line(study)
        if self.bar is not None:
            self.bar.n = min(done, self.n_trials)
            self.bar.set_postfix_str(text.split(", ", 1)[1], refresh=True)
        else:
            log.info("sweep: %s", text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
