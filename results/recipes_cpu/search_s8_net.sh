#!/usr/bin/env bash
# s8_net's proxy recipe search (10k training images, 8 epochs, 5k validation), two trials at a time, bf16 for
# speed (as for dilated_c4's and advanced_c4's proxy searches). The defaults s8_net trains with now (the
# global ones with its write-up's dropout 0.05) are queued as trial 0, so the study measures what it would replace.
#   CIFAR10_NPZ=... bash results/recipes_cpu/search_s8_net.sh
set -uo pipefail
/usr/bin/time -v -o results/recipes_cpu/recipe_s8_net_bn.time.txt \
python -m cifar_sweeps.train --multirun hparams_search=recipe model=s8_net norm=bn amp=true \
    hydra/launcher=joblib hydra.launcher.n_jobs=2 hydra.sweeper.n_jobs=2 \
    'hydra.sweeper.storage=sqlite:///results/recipes_cpu/optuna.db' \
    'hydra.sweep.dir=results/recipes_cpu/${hydra.sweeper.study_name}' \
    'hydra.sweeper.enqueue=[{optimizer:sgd,optimizer.lr:0.05,optimizer.weight_decay:5e-4,batch_size:256,model.dropout:0.05}]' \
    > results/recipes_cpu/recipe_s8_net_bn.log 2>&1
