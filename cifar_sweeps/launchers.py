"""SLURM launcher for sweeps: Hydra's submitit launcher, with every job of a batch waited for on its own.

Hydra's submitit launcher collects a batch's results in order and raises at the first job that left
none (cancelled with scancel, killed for memory, lost with its node). The sweeper then stops beating
for the rest of the batch, so a batch-mate that is still queued, or was preempted and requeued (SLURM
holds a requeued job back for a while), would be declared dead after `grace_period` and retried for
nothing. `SlurmLauncher` (`_target_` of the `slurm_gpu` and `slurm_cpu` presets) waits for every job
of the batch and returns None for a job that left no result; the sweeper then judges that trial by its
run record and retries it from its checkpoint. A job launched alone (the sweeper's start-on-free slots)
is named after its trial folder (`trial_0007` in squeue and sacct). Everything else (settings, job arrays, submitit's
checkpoint-and-requeue on preemption and time limits) is the upstream launcher's.

Registered as a Hydra plugin through the `hydra.plugins` entry point (setup.cfg); imported during
Hydra's plugin scan, so it must not import torch.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

# launcher settings that configure the executor itself rather than each job's resources
EXECUTOR_KEYS = ("max_num_timeout", "python")


class SlurmLauncher(submitit_launcher.SlurmLauncher):
    """Every trial a SLURM job, `n_jobs` per job array; a job without a result does not hide the others'."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn | None]:
        # upstream's launch (hydra-submitit-launcher 1.4.0rc3) step for step, but for the last line
        import submitit  # lazy, as upstream: plugin discovery stays fast

        executor = submitit.AutoExecutor(
            cluster=self._EXECUTOR, folder=self.params["submitit_folder"],
            **{f"{self._EXECUTOR}_{k}": v for k, v in self.params.items() if k in EXECUTOR_KEYS})
        # shared settings keep their names (timeout_min, mem_gb, ...), SLURM ones get the slurm_ prefix
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self._EXECUTOR}_{k}": v
                                      for k, v in self.params.items()
                                      if k not in (*EXECUTOR_KEYS, "submitit_folder")})
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))

        job_args = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
            job_args.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
        if len(job_overrides) == 1 and trial_folder(job_overrides[0]):
            # one trial, one job (start-on-free): named after its folder, so squeue and sacct say which trial runs
            executor.update_parameters(name=trial_folder(job_overrides[0]))
        jobs = executor.map_array(self, *zip(*job_args))
        return [result_or_none(job) for job in jobs]


def trial_folder(overrides: Sequence[str]) -> str | None:
    """The name of a sweep job's run folder (trial_0007), from the sweeper's hydra.sweep.subdir override."""
    for override in overrides:
        if override.startswith("hydra.sweep.subdir="):
            return Path(override.split("=", 1)[1].strip("'\"")).name
    return None


def result_or_none(job: Any) -> JobReturn | None:
    """The job's JobReturn, or None when it ended without one (its trial's run record decides)."""
    try:
        return job.results()[0]
    except Exception as e:  # submitit's UncompletedJobError / FailedJobError
        log.warning("SLURM job %s ended without a result (%s): %s", job.job_id, job.state,
                    str(e).splitlines()[0] if str(e) else type(e).__name__)
        return None
