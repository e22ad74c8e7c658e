"""Start-on-free against batch scheduling: the same 16-trial pruned budget_50k search on a small real
subset, 2 slots, with joblib workers and with SLURM jobs (a single-node cluster started by
tests/servers.py), under `hydra.sweeper.schedule=batch` (Hydra's classic policy) and `=free`.

    CIFAR10_NPZ=/path/cifar10.npz python results/scheduling_cpu/run.py     # as root (SLURM)

For each run: wall time of the sweep process, trials/hour, and busy share = sum of the trials' job times
(from the trial's start to its job's run record) / (slots x wall). Fit-to-budget models differ in cost and the
median pruner stops some trials early, so trial lengths differ. Writes summary.json beside this file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from servers import slurm_cluster  # noqa: E402

OUT = Path(__file__).resolve().parent
N_TRIALS, SLOTS = 16, 2
# every budget_50k model fitted to 50k parameters, 4 epochs of 1,000 real images, one thread per trial;
# the median pruner may stop a trial from epoch 2 on, once 3 trials have finished
TRIAL = ["hparams_search=budget_50k", "data.train_subset=1000", "data.val_size=200", "data.test_subset=200",
         "epochs=4", "batch_size=100", "logger=none", "save_model=false", "threads=1", "pruner=median",
         "pruner.n_startup_trials=3", "pruner.n_warmup_steps=1", f"hydra.sweeper.n_trials={N_TRIALS}",
         f"hydra.sweeper.n_jobs={SLOTS}", "hydra.sweeper.sampler.seed=7", f"data.npz={os.environ['CIFAR10_NPZ']}"]
LAUNCHERS = {
    "joblib": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={SLOTS}"],
    "slurm_cpu": ["hydra/launcher=slurm_cpu", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
                  "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=30"],
}


def job_seconds(trial: optuna.trial.FrozenTrial) -> float:
    """From the trial's start (asked, then launched at once) to its job's end: when the job wrote its run
    record. The study's complete time is when the sweeper told it, which under the batch policy is when the
    whole batch has ended, so it would count a finished job's idle slot as busy."""
    record = Path(trial.user_attrs["run_dir"]) / "summary.json"
    return record.stat().st_mtime - trial.datetime_start.timestamp()


def measure(launcher: str, schedule: str, workdir: Path, env: dict) -> dict:
    storage = f"sqlite:///{workdir / 'study.db'}"
    cmd = [sys.executable, "-m", "cifar_sweeps.train", "--multirun", *TRIAL, *LAUNCHERS[launcher],
           f"hydra.sweeper.schedule={schedule}", f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={workdir}"]
    started = time.perf_counter()
    with open(workdir / "sweep.log", "w") as log:
        code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    assert code == 0, f"the sweep failed: see {workdir / 'sweep.log'}"
    trials = optuna.load_study(study_name="budget_50k", storage=storage).trials
    run_s = [job_seconds(t) for t in trials]
    states = {s.name: sum(1 for t in trials if t.state == s) for s in optuna.trial.TrialState}
    return {"launcher": launcher, "schedule": schedule, "slots": SLOTS, "wall_s": round(wall, 1),
            "trials": len(trials), "completed": states["COMPLETE"], "pruned": states["PRUNED"],
            "trials_per_hour": round(len(trials) * 3600 / wall, 1), "busy_share": round(sum(run_s) / (SLOTS * wall), 3),
            "trial_s_min": round(min(run_s), 1), "trial_s_max": round(max(run_s), 1)}


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="scheduling-"))
    rows = []
    with slurm_cluster() as cluster:
        env = cluster.env()
        for launcher in LAUNCHERS:
            for schedule in ("batch", "free"):  # alternating within one run: both see the same machine
                work = scratch / f"{launcher}_{schedule}"
                work.mkdir()
                rows.append(measure(launcher, schedule, work, env))
                print(json.dumps(rows[-1]), flush=True)
    (OUT / "summary.json").write_text(json.dumps({"n_trials": N_TRIALS, "slots": SLOTS, "rows": rows}, indent=2) + "\n")
    print(f"\n| launcher | schedule | wall | trials/hour | busy share | trial run times |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['launcher']} | {r['schedule']} | {r['wall_s']:.0f} s | {r['trials_per_hour']:.0f} | "
              f"{r['busy_share']:.2f} | {r['trial_s_min']:.0f}-{r['trial_s_max']:.0f} s |")
    for launcher in LAUNCHERS:
        batch, free = (next(r for r in rows if r["launcher"] == launcher and r["schedule"] == s)
                       for s in ("batch", "free"))
        print(f"{launcher}: free / batch wall = {free['wall_s'] / batch['wall_s']:.2f}")


if __name__ == "__main__":
    main()
