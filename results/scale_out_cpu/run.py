"""The same 8-trial tiny sweep with 1 and 2 workers: two sweep processes on one PostgreSQL study, and
SLURM jobs with 1 and 2 job slots (hydra.sweeper.n_jobs), on servers started by tests/servers.py.

    CIFAR10_NPZ=/path/cifar10.npz python results/scale_out_cpu/run.py     # as root; ~8 min on 2 cores

Writes results/scale_out_cpu/summary.json and prints the table (wall time, trials completed, duplicates).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from servers import postgres_server, slurm_cluster  # noqa: E402

OUT = Path(__file__).resolve().parent
N_TRIALS = 8
# AirNet fitted to 50k parameters, 3 epochs of 3,000 real images, one thread per trial
TRIAL = ["hparams_search=budget_50k", "model=airnet", "data.train_subset=3000", "data.val_size=500",
         "data.test_subset=1000", "epochs=3", "batch_size=100", "logger=none", "save_model=false", "threads=1",
         "pruner=none", f"hydra.sweeper.n_trials={N_TRIALS}", f"data.npz={os.environ['CIFAR10_NPZ']}"]


def sweep(workdir: Path, storage: str, extra: list[str], workers: int, env: dict) -> float:
    cmds = [[sys.executable, "-m", "cifar_sweeps.train", "--multirun", *TRIAL, f"hydra.sweeper.storage={storage}",
             f"hydra.sweep.dir={workdir / f'worker{w}'}", *extra] for w in range(workers)]
    started = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=open(workdir / f"worker{w}.log", "w"),
                              stderr=subprocess.STDOUT) for w, c in enumerate(cmds)]
    codes = [p.wait() for p in procs]
    wall = time.perf_counter() - started
    assert codes == [0] * workers, f"a worker failed: see {workdir}/worker*.log"
    return wall


def row(setup: str, workers: int, wall: float, storage: str, env: dict) -> dict:
    os.environ.update({k: v for k, v in env.items() if k == "PGPASSWORD"})
    trials = optuna.load_study(study_name="budget_50k", storage=storage).trials
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    points = [tuple(sorted(t.params.items())) for t in trials]
    return {"setup": setup, "workers": workers, "wall_s": round(wall, 1), "trials": len(trials),
            "completed": len(done), "duplicates": len(points) - len(set(points))}


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="scale-out-"))
    try:
        with postgres_server() as pg:
            for workers in (1, 2):
                work = scratch / f"pg{workers}"
                work.mkdir()
                env = pg.env()
                storage = pg.url()
                os.environ["PGPASSWORD"] = pg.password
                try:  # a fresh study for each measurement
                    optuna.delete_study(study_name="budget_50k", storage=storage)
                except KeyError:
                    pass
                wall = sweep(work, storage, [], workers, env)
                rows.append(row("PostgreSQL study, basic launcher", workers, wall, storage, env))
                print(rows[-1], flush=True)
        with slurm_cluster() as cluster:
            for slots in (1, 2):
                work = scratch / f"slurm{slots}"
                work.mkdir()
                storage = f"sqlite:///{work / 'study.db'}"
                extra = ["hydra/launcher=slurm_cpu", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
                         "hydra.launcher.mem_gb=1", f"hydra.sweeper.n_jobs={slots}"]
                wall = sweep(work, storage, extra, 1, cluster.env())
                rows.append(row("SLURM jobs (submitit), SQLite study", slots, wall, storage, cluster.env()))
                print(rows[-1], flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (OUT / "summary.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n| setup | workers / job slots | wall s | trials | completed | duplicates |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['setup']} | {r['workers']} | {r['wall_s']} | {r['trials']} | {r['completed']} | {r['duplicates']} |")


if __name__ == "__main__":
    main()
