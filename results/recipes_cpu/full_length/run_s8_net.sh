#!/usr/bin/env bash
# s8_net's proxy winner (recipe_s8_net_bn trial 7) against its defaults at full length (20 epochs, 45k/5k, then
# the test set), seed 1 (SEED=2 for the second), two runs at a time, one thread each. bf16 autocast (amp=true), as
# in the search: s8_net trains 1.9x faster in it on this CPU (docs/speed.md), and both sides run in it, so the
# comparison stays even (amp=auto keeps s8_net in fp32 on a CPU until its bf16 parity is shown).
# Runs longer than a session: continue with  RESUME=1 [SEED=2] bash results/recipes_cpu/full_length/run_s8_net.sh
set -uo pipefail
here=results/recipes_cpu/full_length
resume=${RESUME:+resume=true}
seed=${SEED:-1}
run() {  # folder, overrides...
  local dir=$here/$1; shift
  python -m cifar_sweeps.train model=s8_net norm=bn threads=1 seed=$seed amp=true keep_checkpoint=true $resume "$@" \
      hydra.run.dir=$dir >> $dir.log 2>&1
}
run s8_trial7_s$seed optimizer=adamw optimizer.lr=0.00313910645844955 optimizer.weight_decay=0.001386307036241134 \
    batch_size=32 model.dropout=0.053007821448205865 &
run s8_defaults_s$seed &
wait
