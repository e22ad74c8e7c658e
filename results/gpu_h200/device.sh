#!/usr/bin/env bash
# The runs behind results/gpu_h200/README.md, on one lent H200 (issue 28's speed figures, issue 25's
# write-up and headline runs). The lent machine takes at most 64 MiB per call and has none of the
# project's Hydra/Optuna/albumentations packages, so it runs in three calls of the device tool:
#
#   bash results/gpu_h200/device.sh 1   # carry .whl .gpudata/p1: install wheels (the project's own too, for its
#                                       # Hydra plugin entry points), smoke every command on 12k images
#   bash results/gpu_h200/device.sh 2   # carry .gpudata/p2
#   bash results/gpu_h200/device.sh 3   # carry .gpudata/p3: rebuild the verified npz, measure; results in $OUT
#
# Prepared here (both folders git-ignored through .git/info/exclude):
#   python results/gpu_h200/ship_data.py pack "$CIFAR10_NPZ" .gpudata     # 37 + 54 + 10 MiB
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d .whl \
#       hydra-core==1.4.0rc3 omegaconf antlr4-python3-runtime optuna alembic Mako colorlog SQLAlchemy \
#       hydra-optuna-sweeper==1.4.0rc3 hydra-joblib-launcher==1.4.0rc3 torchinfo albumentations albucore \
#       pydantic pydantic_core annotated-types typing-inspection stringzilla simsimd   # versions as installed here
#   pip wheel --no-deps --no-build-isolation -w .whl .      # 14 MiB of wheels in all
#
# On a machine that has the packages and the data (CIFAR10_NPZ set), `bash results/gpu_h200/device.sh
# measure` runs step 3's measurements alone; `... smoke` step 1's smoke runs. ONLY=REGEX runs only the
# commands whose names match.
#
# TASK=recipes (a second lent H200, results/gpu_h200/recipes/README.md) runs, in the same three steps,
# smoke_recipes and measure_recipes instead: dilated_c4's full-fidelity recipe search (hparams_search=recipe_full),
# then the headline command with its winner (2 norms x 2 seeds) beside the other zoo nets' defaults.
set -u
cd "$(dirname "$0")/../.."
STEP=${1:?usage: device.sh 1|2|3|smoke|measure}
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HYDRA_FULL_ERROR=1
PY=${PY:-python3}
HERE=results/gpu_h200
START=$(date +%s)
DEADLINE=$((START + ${BUDGET_S:-500}))   # leave the call's timeout time to pack the results

left() { echo $((DEADLINE - $(date +%s))); }

# run NAME TIMEOUT_S ARGS...: one training command, its output in $HERE/logs/NAME.log, its wall time logged
run() {
  local name=$1 limit=$2; shift 2
  [[ $name =~ ${ONLY:-.} ]] || return 0
  mkdir -p "$HERE/logs"
  local t0; t0=$(date +%s.%N)
  timeout --signal=INT --kill-after=10 "$limit" "$PY" "$@" >"$HERE/logs/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc wall_s=$(awk "BEGIN{print $(date +%s.%N) - $t0}")" | tee -a "$HERE/logs/walls.txt"
}

setup() {
  if [ -d .whl ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  fi
  [ -d /tmp/site ] || { echo "no /tmp/site: the machine was recycled since step 1; start again at step 1"; exit 3; }
  export PYTHONPATH=/tmp/site
  mkdir -p /tmp/parts && for part in .gpudata/p*/; do cp -f "$part"* /tmp/parts/; done
}

smoke() {  # every command of `measure`, side by side, a few steps each, on the smoke subset
  local tiny="epochs=1 data.train_subset=2000 data.val_size=500 data.test_subset=1000"
  export CIFAR10_NPZ=${CIFAR10_NPZ:-/tmp/smoke.npz}
  local HERE=$HERE/smoke
  run smoke_trial 120 -m cifar_sweeps.train +experiment=best_50k $tiny hydra.run.dir=$HERE/trial &
  run smoke_sweep 120 -m cifar_sweeps.train --multirun hparams_search=airnet_full_50k pruner=none $tiny \
    hydra.sweeper.n_trials=2 hydra.sweeper.n_jobs=2 hydra.launcher.n_jobs=2 \
    hydra.sweeper.storage=sqlite:///$HERE/optuna.db hydra.sweep.dir=$HERE/sweep &
  for exp in seed002 seed003 seed004; do
    run smoke_$exp 120 -m cifar_sweeps.train +experiment=$exp threads=2 $tiny hydra.run.dir=$HERE/$exp &
  done
  run smoke_headline 120 -m cifar_sweeps.train model=dilated_c4 norm=gn threads=2 $tiny hydra.run.dir=$HERE/headline &
  run smoke_bench 120 -m cifar_sweeps.bench --seconds 0.5 --rounds 1 --startup-runs 0 data.train_subset=2000 &
  wait
}

# headline_runs LIMIT EXTRA...: the headline command, 2 norms x 2 seeds, started side by side in the background
headline_runs() {
  local limit=$1; shift
  for norm in gn bn; do for seed in 1 2; do
    run headline_${norm}_s$seed $limit -m cifar_sweeps.train model=dilated_c4 norm=$norm seed=$seed threads=2 \
      keep_checkpoint=true "$@" hydra.run.dir=$HERE/headline/dilated_c4_${norm}_s$seed &
  done; done
}

measure() {
  export CIFAR10_NPZ=${CIFAR10_NPZ:-/tmp/cifar10.npz}
  mkdir -p "$HERE/logs"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$HERE/logs/gpu.txt" 2>&1
  $PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())" >>"$HERE/logs/gpu.txt" 2>&1
  # 1. one 20-epoch 50k-parameter airnet trial at full fidelity (45k/5k, TTA), alone on the GPU
  for seed in 1 2; do
    run trial_50k_eager_s$seed 90 -m cifar_sweeps.train +experiment=best_50k data.val_size=5000 seed=$seed \
      hydra.run.dir=$HERE/trial_50k/eager_s$seed
  done
  # 2. the write-ups' runs and the headline command, side by side (7 processes sharing the GPU)
  local c_limit=$(( $(left) - 150 )); [ $c_limit -gt 280 ] && c_limit=280
  for exp in seed002 seed003 seed004; do
    run writeup_$exp $c_limit -m cifar_sweeps.train +experiment=$exp threads=2 keep_checkpoint=true \
      hydra.run.dir=$HERE/writeups/$exp &
  done
  headline_runs $c_limit
  wait
  # 3. sweep throughput: the full-fidelity 50k search, every trial to the end, 8 slots
  local b_limit=$(( $(left) - 55 )); [ $b_limit -gt 100 ] && b_limit=100
  [ $b_limit -gt 30 ] && run throughput_8_slots $b_limit -m cifar_sweeps.train --multirun hparams_search=airnet_full_50k \
    pruner=none hydra.sweeper.n_trials=16 hydra.sweeper.n_jobs=8 hydra.launcher.n_jobs=8 \
    hydra.sweeper.storage=sqlite:///$HERE/throughput_8_slots/optuna.db hydra.sweep.dir=$HERE/throughput_8_slots
  # 4. the fast path against the write-ups' DataLoader + per-image albumentations loop
  local a_limit=$(( $(left) - 35 ))
  [ $a_limit -gt 20 ] && run bench $a_limit -m cifar_sweeps.bench --seconds 3 --rounds 3 --startup-runs 2
  # 5. the same trial compiled (compile time included in its wall time)
  a_limit=$(( $(left) - 5 ))
  [ $a_limit -gt 30 ] && run trial_50k_compiled_s1 $a_limit -m cifar_sweeps.train +experiment=best_50k \
    data.val_size=5000 seed=1 compile=true hydra.run.dir=$HERE/trial_50k/compiled_s1
}

# hydra.sweeper.enqueue for dilated_c4's search: its recipe before this search (conf/recipe/dilated_c4.yaml at the
# time), then five common CIFAR recipes, no dropout and light label smoothing, for batch 64 to 512
DILATED_C4_START=$(tr -d '\n' <<'EOF'
hydra.sweeper.enqueue=[
{optimizer:sgd,optimizer.lr:0.03280102504072369,optimizer.weight_decay:1.1585772722593272e-05,batch_size:64,model.dropout:0.08697473022159513,loss.label_smoothing:0.0,augment:flip_crop},
{optimizer:sgd,optimizer.lr:0.05,optimizer.weight_decay:5e-4,batch_size:64,model.dropout:0.0,loss.label_smoothing:0.1,augment:flip_translate},
{optimizer:sgd,optimizer.lr:0.1,optimizer.weight_decay:5e-4,batch_size:128,model.dropout:0.0,loss.label_smoothing:0.1,augment:flip_crop},
{optimizer:sgd,optimizer.lr:0.2,optimizer.weight_decay:5e-4,batch_size:256,model.dropout:0.0,loss.label_smoothing:0.1,augment:flip_translate},
{optimizer:adamw,optimizer.lr:0.003,optimizer.weight_decay:0.05,batch_size:128,model.dropout:0.0,loss.label_smoothing:0.1,augment:flip_crop},
{optimizer:sgd,optimizer.lr:0.4,optimizer.weight_decay:2e-4,batch_size:512,model.dropout:0.0,loss.label_smoothing:0.1,augment:flip_translate}]
EOF
)

# recipe_search NAME SLOTS N_TRIALS SEARCH_BUDGET_S EXTRA...: dilated_c4's search, its study in $HERE/optuna.db
recipe_search() {
  local name=$1 slots=$2 n_trials=$3 budget=$4; shift 4
  run $name $((budget + 60)) -m cifar_sweeps.train --multirun hparams_search=recipe_full model=dilated_c4 norm=gn \
    hydra/launcher=joblib hydra.launcher.n_jobs=$slots hydra.sweeper.n_jobs=$slots hydra.sweeper.n_trials=$n_trials \
    hydra.sweeper.time_budget_s=$budget "$DILATED_C4_START" "$@" \
    hydra.sweeper.storage=sqlite:///$HERE/optuna.db 'hydra.sweep.dir='$HERE'/${hydra.sweeper.study_name}'
}

# with_winner LIMIT EXTRA...: the headline command with the search's best trial (2 norms x 2 seeds), beside the
# other zoo nets at their defaults (seed 1), all side by side
with_winner() {
  local limit=$1; shift
  local best; best=$($PY -m cifar_sweeps.best recipe_full_dilated_c4_gn --storage sqlite:///$HERE/optuna.db \
    2>"$HERE/logs/best.txt") || { cat "$HERE/logs/best.txt"; return 1; }
  echo "winner: $(cat "$HERE/logs/best.txt"): $best" | tee -a "$HERE/logs/walls.txt"
  headline_runs $limit $best "$@"
  for model in advanced_c4 s8_net resnet18; do
    run default_$model $limit -m cifar_sweeps.train model=$model seed=1 threads=2 "$@" hydra.run.dir=$HERE/defaults/$model &
  done
  wait
}

smoke_recipes() {  # both phases on the smoke subset, a few steps each
  local tiny="epochs=1 data.train_subset=2000 data.val_size=500 data.test_subset=1000"
  export CIFAR10_NPZ=${CIFAR10_NPZ:-/tmp/smoke.npz}
  local HERE=$HERE/recipes_smoke
  mkdir -p "$HERE/logs"
  recipe_search smoke_search 2 2 60 $tiny
  with_winner 60 $tiny
}

measure_recipes() {
  export CIFAR10_NPZ=${CIFAR10_NPZ:-/tmp/cifar10.npz}
  local HERE=$HERE/recipes
  mkdir -p "$HERE/logs"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$HERE/logs/gpu.txt" 2>&1
  $PY -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())" >>"$HERE/logs/gpu.txt" 2>&1
  # 1. the search: 12 trials at a time, stopped when B's runs still fit in the call
  local search_s=$(( $(left) - ${WINNER_S:-230} )); [ $search_s -gt 330 ] && search_s=330
  recipe_search search 12 ${N_TRIALS:-24} $search_s
  # 2. its winner at the headline command, beside the other nets' defaults
  with_winner $(( $(left) - 5 ))
}

pack_results() {  # what comes back: one archive (no checkpoints or weights), plus the wall times in the output
  [ -n "${OUT:-}" ] || return 0
  tar czf "$OUT/gpu_h200.tgz" --exclude='*.pt' --exclude='*.npz' --exclude='.run.lock' "$HERE"
  # the headline runs' checkpoints (1 MiB each): a run the call's limit stopped continues elsewhere with resume=true
  find "$HERE" -path '*/headline/*/checkpoint.pt' | tar czf "$OUT/checkpoints.tgz" -T - 2>/dev/null
  cat "$HERE"/logs/walls.txt "$HERE"/recipes*/logs/walls.txt 2>/dev/null
}

case $STEP in
  1) setup; $PY $HERE/ship_data.py unpack /tmp/parts /tmp/smoke.npz && smoke${TASK:+_$TASK}; pack_results
     grep -h -A3 -E "Error|error:|Traceback" $HERE/smoke*/logs/*.log $HERE/recipes_smoke/logs/*.log 2>/dev/null | tail -60 ;;
  2) setup; ls -la /tmp/parts ;;
  3) setup; $PY $HERE/ship_data.py unpack /tmp/parts /tmp/cifar10.npz || exit 2; measure${TASK:+_$TASK}; pack_results ;;
  smoke) smoke${TASK:+_$TASK} ;;
  measure) measure${TASK:+_$TASK} ;;
esac
