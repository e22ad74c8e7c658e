#!/bin/bash
# cpu_speedrun's recipe (18 epochs) in bf16 autocast, seeds 1 and 2, one at a time; the fp32 reference is
# results/cpu_speedrun_cpu/ (the same fp32 path: airnet has no module the fast path swaps).
cd "$(dirname "$0")/../.."
for seed in 1 2; do
  CIFAR10_NPZ=${CIFAR10_NPZ:-../shared/cifar10/cifar10.npz} /usr/bin/time -v python -m cifar_sweeps.train \
    +experiment=cpu_speedrun epochs=18 amp=true seed=$seed logger=csv \
    hydra.run.dir=results/bf16_parity_cpu/cpu_speedrun_bf16_s$seed 2> results/bf16_parity_cpu/cpu_speedrun_bf16_s$seed.time.txt
done
