#!/usr/bin/env bash
# resnet18's proxy winner (recipe_resnet18_bn trial 8) against its defaults (the global ones) at full length
# (20 epochs, 45k/5k, then the test set), seed 1, one thread each, bf16 autocast for both (amp=true, as in the
# search: resnet18 trains 1.99x faster in it on this CPU, docs/speed.md). A run takes about 3 h next to the
# other, so the pair spans sessions: continue with  RESUME=1 bash results/recipes_cpu/full_length/run_resnet18.sh
# The sides can be started separately (the defaults do not wait for the search to end):
#   bash results/recipes_cpu/full_length/run_resnet18.sh defaults      # or: winner, or both (the default)
set -uo pipefail
here=results/recipes_cpu/full_length
resume=${RESUME:+resume=true}
run() {  # folder, overrides...
  local dir=$here/$1; shift
  python -m cifar_sweeps.train model=resnet18 norm=bn threads=1 seed=1 amp=true keep_checkpoint=true $resume "$@" \
      hydra.run.dir=$dir >> $dir.log 2>&1
}
for side in ${@:-defaults winner}; do
  case $side in
    defaults) run r18_defaults_s1 & ;;
    winner) run r18_trial8_s1 optimizer=adamw optimizer.lr=0.0005842025477849932 optimizer.weight_decay=0.27959033289536644 \
        batch_size=32 model.dropout=0.022751523595724604 & ;;
    *) echo "unknown side '$side': use defaults, winner or nothing for both" >&2; exit 2 ;;
  esac
done
wait
