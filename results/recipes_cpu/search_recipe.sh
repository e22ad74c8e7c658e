#!/usr/bin/env bash
# A model's proxy recipe search (hparams_search=recipe: 10k training images, 8 epochs, 5k validation, median
# pruning, 16 trials), two trials at a time, one thread each, bf16 autocast for speed, into the study
# recipe_MODEL_bn in results/recipes_cpu/optuna.db. The defaults the model trains with before its recipe (the
# global ones with the model's dropout, DROPOUT) are queued as trial 0, so the study measures what a winner would
# replace (full_length/run_pair.sh then runs the two at full length).
#   CIFAR10_NPZ=... bash results/recipes_cpu/search_recipe.sh MODEL DROPOUT
# BUDGET_S=2400 ends the search after 40 min (hydra.sweeper.time_budget_s: running trials are stopped and queued);
# running the command again continues the study. Log and /usr/bin/time figures append to recipe_MODEL_bn.{log,time.txt}.
# The searches run with it (results/recipes_cpu/README.md):
#   bash results/recipes_cpu/search_recipe.sh s8_net 0.05
#   BUDGET_S=2400 bash results/recipes_cpu/search_recipe.sh resnet18 0.0     # then BUDGET_S=8100, which finished it
set -euo pipefail
usage="usage: search_recipe.sh MODEL DROPOUT"
model=${1:?$usage} dropout=${2:?$usage}
cd "$(dirname "$0")/../.."
out=results/recipes_cpu/recipe_${model}_bn
/usr/bin/time -v -a -o "$out.time.txt" \
python -m cifar_sweeps.train --multirun hparams_search=recipe "model=$model" norm=bn amp=true \
    hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweeper.n_jobs=2 \
    "hydra.sweeper.time_budget_s=${BUDGET_S:-null}" \
    'hydra.sweeper.storage=sqlite:///results/recipes_cpu/optuna.db' \
    'hydra.sweep.dir=results/recipes_cpu/${hydra.sweeper.study_name}' \
    "hydra.sweeper.enqueue=[{optimizer:sgd,optimizer.lr:0.05,optimizer.weight_decay:5e-4,batch_size:256,model.dropout:$dropout}]" \
    >> "$out.log" 2>&1
