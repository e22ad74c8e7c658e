#!/usr/bin/env bash
# cpu_speedrun as a user runs it (trained on all 50k, then the test set), one seed at a time, nothing
# else running:   CIFAR10_NPZ=... bash results/cpu_speedrun_cpu/run_test.sh NAME SEED [overrides...]
set -euo pipefail
here=results/cpu_speedrun_cpu
name=$1 seed=$2; shift 2
dir=$here/${name}_s$seed
/usr/bin/time -v -o $dir.time.txt python -m cifar_sweeps.train +experiment=cpu_speedrun seed=$seed "$@" \
    hydra.run.dir=$dir > $dir.log 2>&1
