#!/usr/bin/env bash
# skip_s8's proxy-chosen recipe at full default length (20 epochs, 45k/5k, then the test set) against the
# defaults it had before (airnet's: SGD lr 0.05, batch 256; the write-up's dropout 0.1), seeds 1 and 2.
# Two runs at a time, one thread each, nothing else running:
#   CIFAR10_NPZ=... bash results/recipes_cpu/full_length/run.sh
set -uo pipefail
here=results/recipes_cpu/full_length
run() {  # folder, overrides...
  local dir=$here/$1; shift
  /usr/bin/time -v -o $dir.time.txt python -m cifar_sweeps.train model=skip_s8 norm=bn threads=1 "$@" \
      hydra.run.dir=$dir > $dir.log 2>&1
}
for seed in 1 2; do
  run recipe_s$seed seed=$seed &
  run before_s$seed seed=$seed optimizer=sgd batch_size=256 model.dropout=0.1 &
  wait
done
