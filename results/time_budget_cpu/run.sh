#!/bin/bash
# Issue 27's measurements on the project's 2-core CPU, one at a time, nothing else running.
#   CIFAR10_NPZ=/path/cifar10.npz bash results/time_budget_cpu/run.sh [speedrun|slowed|search]...
# Wall times are /usr/bin/time -v around the whole command (*.time.txt): process start to exit.
set -u
cd "$(dirname "$0")/../.."
export CIFAR10_NPZ=${CIFAR10_NPZ:-../shared/cifar10/cifar10.npz}
out=results/time_budget_cpu

speedrun() {  # full speed, seeds 1 and 2
  for seed in 1 2; do
    /usr/bin/time -v python -m cifar_sweeps.train +experiment=cpu_speedrun seed=$seed \
      hydra.run.dir=$out/speedrun_s$seed > $out/speedrun_s$seed.log 2> $out/speedrun_s$seed.time.txt
  done
}

slowed() {  # the machine made slower part-way: the run on one core with one thread, and from 150 s on a
            # busy-looping process on the same core takes half of it
  taskset -c 0 /usr/bin/time -v python -m cifar_sweeps.train +experiment=cpu_speedrun seed=1 threads=1 \
    hydra.run.dir=$out/speedrun_slowed_s1 > $out/speedrun_slowed_s1.log 2> $out/speedrun_slowed_s1.time.txt &
  run=$!
  sleep 150
  taskset -c 0 python -c "while True: pass" &
  hog=$!
  wait $run
  kill $hog
}

search() {  # a 10-minute search budget: 2 joblib slots, trials of 5k images x 5 epochs, no trial count limit
  rm -rf $out/search
  /usr/bin/time -v python -m cifar_sweeps.train --multirun hparams_search=budget_50k \
    hydra.sweeper.time_budget_s=600 hydra.sweeper.n_trials=500 hydra.sweeper.study_name=time_budget_600 \
    hydra.sweeper.storage=sqlite:///$out/search/optuna.db hydra.sweep.dir=$out/search \
    hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweeper.n_jobs=2 threads=1 \
    data.train_subset=5000 data.val_size=1000 data.test_subset=1000 epochs=5 logger=none save_model=false \
    > $out/search.log 2> $out/search.time.txt
}

for what in "${@:-speedrun slowed search}"; do
  for step in $what; do $step; done
done
