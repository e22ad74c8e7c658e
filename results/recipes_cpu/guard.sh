#!/usr/bin/env bash
# The tiny-data guard's setting (tests/test_recipes.py): 5k training images, 3 epochs, 1k validation and 1k test
# images, amp=auto (fp32 for these nets on a CPU), seeds 1 and 2. "before" is the defaults the model had before
# its recipe (airnet's SGD nesterov lr 0.05 at batch 256, with the model's own dropout); "recipe" is
# `model=MODEL` alone. WHAT=recipe runs only the recipe side (after a model's recipe changed).
#   CIFAR10_NPZ=... bash results/recipes_cpu/guard.sh dilated_c4 0.05 gn bn
#   CIFAR10_NPZ=... bash results/recipes_cpu/guard.sh skip_s8 0.1 bn
# TRAIN=2000 EPOCHS=2 shrink the task for the slowest nets, THREADS=1 when other jobs share the machine, SEEDS="1" runs one seed.
set -euo pipefail
cd "$(dirname "$0")/../.."
model=$1 dropout_before=$2
shift 2
out=results/recipes_cpu/guard
mkdir -p "$out"
tiny="data.train_subset=${TRAIN:-5000} data.val_size=1000 data.test_subset=1000 epochs=${EPOCHS:-3} threads=${THREADS:-auto} logger=none save_model=false"
for seed in ${SEEDS:-1 2}; do
  for norm in "$@"; do
    for what in ${WHAT:-before recipe}; do
      extra=""; [ "$what" = before ] && extra="optimizer=sgd batch_size=256 model.dropout=$dropout_before loss.label_smoothing=0.0"
      run=$out/${model}_${norm}_${what}${TRAIN:+_${TRAIN}x${EPOCHS:-3}}_s$seed
      python -m cifar_sweeps.train model=$model norm=$norm seed=$seed $tiny $extra hydra.run.dir=$run > /dev/null 2>&1
      python -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[2], 'val %.2f %%' % (100*s['best_val_acc']), 'test %.2f %%' % (100*s['test_acc']), '%.0f s' % s['wall_s'])" \
        $run/summary.json "model=$model norm=$norm $what seed=$seed"
    done
  done
done
