#!/usr/bin/env bash
# advanced_c4's proxy winner (recipe_advanced_c4_bn trial 14) against its defaults at full length (20 epochs,
# 45k/5k, then the test set), seed 1, fp32 as amp=auto chooses on CPU, two runs at a time, one thread each.
# Runs longer than a session: continue with  RESUME=1 bash results/recipes_cpu/full_length/run_advanced_c4.sh
set -uo pipefail
here=results/recipes_cpu/full_length
resume=${RESUME:+resume=true}
run() {  # folder, overrides...
  local dir=$here/$1; shift
  python -m cifar_sweeps.train model=advanced_c4 norm=bn threads=1 seed=1 keep_checkpoint=true $resume "$@" \
      hydra.run.dir=$dir >> $dir.log 2>&1
}
run adv_trial14_s1 optimizer=adamw optimizer.lr=0.004286034496257114 optimizer.weight_decay=0.0010202041055442463 \
    batch_size=64 model.dropout=0.02511884970839296 &
run adv_defaults_s1 &
wait
