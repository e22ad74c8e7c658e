#!/usr/bin/env bash
# The same budget search with and without the median pruner: CPU proxy (AirNet fitted to 50k parameters,
# 10,000 training images, 8 epochs, 8 TPE trials), sampler seeds 1, 2 and 3. Each seed's two sweeps run side
# by side (one core each, threads=1), so both see the same machine load.
#   CIFAR10_NPZ=/path/cifar10.npz bash results/pruning_cpu/run.sh          # seeds 1, 2 and 3, ~40 min on 2 cores
#   SEEDS=1 CIFAR10_NPZ=/path/cifar10.npz bash results/pruning_cpu/run.sh  # one seed again; the table reads all
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/pruning_cpu
for seed in ${SEEDS:-1 2 3}; do
  for pruner in none median; do
    name=seed${seed}_${pruner}
    rm -rf "$out/$name"
    /usr/bin/time -f "%e" -o "$out/$name.wall_s" python -m cifar_sweeps.train --multirun hparams_search=budget_50k \
      model=airnet data.train_subset=10000 data.val_size=1000 epochs=8 threads=1 logger=none save_model=false \
      hydra.sweeper.n_trials=8 hydra.sweeper.sampler.n_startup_trials=4 hydra.sweeper.sampler.seed=$seed \
      pruner=$pruner $( [ $pruner = median ] && echo pruner.n_startup_trials=3 ) \
      hydra.sweep.dir=$out/$name hydra.sweeper.storage=sqlite:///$out/$name/optuna.db > "$out/$name.log" 2>&1 &
  done
  wait
done
python - <<'PY'
import json, pathlib, optuna
out = pathlib.Path("results/pruning_cpu")
rows = []
seeds = sorted({int(p.name[4:].split("_")[0]) for p in out.glob("seed*_none.wall_s")})
for seed in seeds:
    for pruner in ("none", "median"):
        name = f"seed{seed}_{pruner}"
        study = optuna.load_study(study_name="budget_50k", storage=f"sqlite:///{out / name / 'optuna.db'}")
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(done, key=lambda t: t.value)
        summary = json.loads((pathlib.Path(best.user_attrs["run_dir"]) / "summary.json").read_text())
        epochs = sum(len(t.intermediate_values) for t in study.trials)
        rows.append({"seed": seed, "pruner": pruner, "wall_s": float((out / f"{name}.wall_s").read_text()),
                     "epochs_trained": epochs, "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
                     "best_val_acc": best.value, "its_test_acc": summary["test_acc"], "best_trial": best.number})
(out / "summary.json").write_text(json.dumps(rows, indent=2))
for r in rows:
    print(r)
PY
