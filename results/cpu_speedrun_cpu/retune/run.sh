#!/usr/bin/env bash
# cpu_speedrun's width, re-chosen on validation: the 10-minute preset at each width, trained on the 45k
# split and scored on the 5k hold-out, one run at a time, nothing else running.
#   CIFAR10_NPZ=... bash results/cpu_speedrun_cpu/retune/run.sh 18 32 48
set -euo pipefail
here=results/cpu_speedrun_cpu/retune
for width in "$@"; do
  dir=$here/w${width}_s1
  /usr/bin/time -v -o $dir.time.txt python -m cifar_sweeps.train +experiment=cpu_speedrun model.width=$width \
      data.val_size=5000 seed=1 hydra.run.dir=$dir > $dir.log 2>&1
done
