"""Experiment loggers. metrics.jsonl and summary.json are always written by train(); a logger adds
a destination (CSV file, W&B run, ...). Pick one with `logger=<name>`."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


class NullLogger:
    """Logs nothing beyond the run directory's metrics.jsonl and summary.json."""

    def start(self, config: dict, run_dir: Path, info: dict[str, Any]) -> None:
        self.run_dir = run_dir

    def log_epoch(self, row: dict[str, Any]) -> None:
        pass

    def log_summary(self, summary: dict[str, Any], artifacts: dict[str, Any]) -> None:
        pass

    def finish(self, ok: bool = True) -> None:
        pass


class CSVLogger(NullLogger):
    """Also writes metrics.csv, one row per epoch, for spreadsheets and pandas."""

    def __init__(self, filename: str = "metrics.csv"):
        self.filename = filename
        self._file = None
        self._writer = None

    def log_epoch(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            self._file = open(self.run_dir / self.filename, "w", newline="")
            self._writer = csv.DictWriter(self._file, fieldnames=list(row))
            self._writer.writeheader()
        self._writer.writerow(row)
        self._file.flush()

    def finish(self, ok: bool = True) -> None:
        if self._file is not None:
            self._file.close()
