"""When this process started, on the `time.perf_counter` clock: time budgets (`time_budget_s` of a run,
`hydra.sweeper.time_budget_s` of a search) count from process start, so Python's and torch's imports,
Hydra's composition and data loading are paid from the budget like everything else.

Imported by the sweeper during Hydra's plugin scan: no torch.
"""

from __future__ import annotations

import time


def process_started() -> float:
    """The `time.perf_counter()` reading at this process's start (psutil's create_time, 10 ms ticks)."""
    import psutil

    age = max(0.0, time.time() - psutil.Process().create_time())
    return time.perf_counter() - age
