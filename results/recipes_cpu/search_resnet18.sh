#!/usr/bin/env bash
# resnet18's proxy recipe search (10k training images, 8 epochs, 5k validation), two trials at a time, bf16 for
# speed (resnet18 trains 1.99x faster in it on this CPU, docs/speed.md), as for the other nets' proxy searches.
# The defaults resnet18 trains with now (the global ones, with its dropout 0.0) are queued as trial 0, so the
# study measures what it would replace. It takes longer than a session: BUDGET_S=2400 ends it after 40 min
# (hydra.sweeper.time_budget_s: the running trials are stopped and queued), and running it again continues the
# study (a stopped trial restarts from its checkpoint where that is still on the machine, else from epoch 1).
#   CIFAR10_NPZ=... BUDGET_S=2400 bash results/recipes_cpu/search_resnet18.sh
set -uo pipefail
/usr/bin/time -v -a -o results/recipes_cpu/recipe_resnet18_bn.time.txt \
python -m cifar_sweeps.train --multirun hparams_search=recipe model=resnet18 norm=bn amp=true \
    hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweeper.n_jobs=2 \
    "hydra.sweeper.time_budget_s=${BUDGET_S:-null}" \
    'hydra.sweeper.storage=sqlite:///results/recipes_cpu/optuna.db' \
    'hydra.sweep.dir=results/recipes_cpu/${hydra.sweeper.study_name}' \
    'hydra.sweeper.enqueue=[{optimizer:sgd,optimizer.lr:0.05,optimizer.weight_decay:5e-4,batch_size:256,model.dropout:0.0}]' \
    >> results/recipes_cpu/recipe_resnet18_bn.log 2>&1
