#!/usr/bin/env bash
# A model's proxy recipe winner against its defaults at full length (20 epochs, 45k/5k, then the test set), side
# by side, one thread each. Both sides are read back from the proxy study recipe_MODEL_bn in
# results/recipes_cpu/optuna.db as explicit overrides: the winner is its best trial, the defaults its trial 0 (the
# defaults the model trained with, queued first by search_recipe.sh). So the pair stays the same after the model's
# recipe changes to the winner.
#   CIFAR10_NPZ=... bash results/recipes_cpu/full_length/run_pair.sh MODEL PREFIX [defaults|winner]...
# The folders are full_length/PREFIX_trialN_sSEED and PREFIX_defaults_sSEED, each with its .log beside it. Both
# sides run unless one is named (a side can start while the other's search still runs).
#   SEED=2      a second seed (default 1)
#   AMP=auto    fp32 on a CPU; the default, AMP=true, is bf16 autocast for both sides, as in the proxy searches
#   RESUME=1    continue both runs from their checkpoints (a pair outlasts a session)
#   DRY_RUN=1   print the two commands instead of running them
# The pairs measured (results/recipes_cpu/README.md):
#   AMP=auto bash results/recipes_cpu/full_length/run_pair.sh advanced_c4 adv
#   bash results/recipes_cpu/full_length/run_pair.sh s8_net s8
#   bash results/recipes_cpu/full_length/run_pair.sh resnet18 r18
set -euo pipefail
usage="usage: run_pair.sh MODEL PREFIX [defaults|winner]..."
model=${1:?$usage} prefix=${2:?$usage}
shift 2
cd "$(dirname "$0")/../../.."
study=recipe_${model}_bn storage=sqlite:///results/recipes_cpu/optuna.db
seed=${SEED:-1}
# the best trial, as "trial N<TAB>value ...<TAB>params ...<TAB>overrides"
best=$(python -m cifar_sweeps.best "$study" --storage "$storage" --top 2 | head -n 1)
number=$(cut -f1 <<<"$best")
number=${number#trial }
winner=$(cut -f4 <<<"$best")
defaults=$(python -m cifar_sweeps.best "$study" --storage "$storage" --trial 0)  # says "trial 0: value ..." on stderr
[ "$number" != 0 ] || { echo "$study: the best trial is trial 0, the defaults themselves; nothing to compare" >&2; exit 2; }

run() {  # folder, overrides...
  local dir=results/recipes_cpu/full_length/$1; shift
  local cmd=(python -m cifar_sweeps.train "model=$model" norm=bn threads=1 "seed=$seed" "amp=${AMP:-true}"
             keep_checkpoint=true ${RESUME:+resume=true} "$@" "hydra.run.dir=$dir")
  if [ -n "${DRY_RUN:-}" ]; then echo "${cmd[*]}"; else "${cmd[@]}" >> "$dir.log" 2>&1; fi
}
sides=${@:-defaults winner}
for side in $sides; do
  [[ $side == defaults || $side == winner ]] || { echo "unknown side '$side': use defaults, winner or nothing for both" >&2; exit 2; }
done
for side in $sides; do
  case $side in
    defaults) run "${prefix}_defaults_s$seed" $defaults & ;;
    winner) run "${prefix}_trial${number}_s$seed" $winner & ;;
  esac
done
wait
