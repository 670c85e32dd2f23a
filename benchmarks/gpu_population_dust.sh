#!/usr/bin/env bash
# The population's dust from its gas (benchmarks/population_dust.sh) at the GPU's scale: does a
# prior that covers both dust regimes keep the sizes of dust-poor disks once the encoder has seen
# millions of simulations rather than 48,000?  One prepared device call of about 8 minutes:
#
#   bash benchmarks/gpu_population_dust.sh      # from the repository root, galae importable
#
# 1. tests/test_cuda.py in the background (its log in the logs archive);
# 2. 2000 analytic mocks (seed 1, as benchmarks/gpu_finetune.sh), whose conditions (sigma, PSF,
#    redshift) the simulations take;
# 3. three runs from src/galae/default_model/model.pt sharing the GPU (each is bound by the host
#    launching kernels), at batch 2048 on the packaged recipe, GPU_STEPS steps each:
#      mix3  each simulated galaxy's dust from one of the two laws with even odds
#            (sleep_population_dust=empirical+gas), lr 3e-4
#      mix6  the same at lr 6e-4
#      gas3  the dust from the gas alone, lr 3e-4
#    The packaged model is the control: the same recipe on the first population at this scale
#    moved none of its figures (results/gpu_wake.json, "ctl").
# Each model comes back as $OUT/<name>.pt.part* (join with cat), the logs in
# $OUT/gpu_population_dust_logs.tar.gz.  A second call on the same warm machine continues each
# run with a fresh, shorter cosine (about 4 minutes; the "b" runs: lr 1.5e-4, 3e-4, 1.5e-4,
# 1000 steps or 3.6 minutes, seed 32, logs in $OUT/gpu_pd_b_logs.tar.gz):
#   GPU_STAGE=2 bash benchmarks/gpu_population_dust.sh
# Score them on the CPU with benchmarks/gpu_population_dust_score.sh (twenty-fifth submission:
# about 1200 + 830 steps each on an H200).
# GPU_STAGE (1), GPU_STEPS (1500; 1000 in stage 2), GPU_TRAIN_MINUTES (6; 3.6), GPU_BATCH
# (2048), GPU_N_TRAIN (2000), GPU_DEVICE (cuda), GPU_VARIANTS change the run; a CPU dry run:
#   GPU_DEVICE=cpu GPU_BATCH=4 GPU_STEPS=2 GPU_N_TRAIN=16 GPU_TRAIN_MINUTES=1 bash benchmarks/gpu_population_dust.sh
# shellcheck source=benchmarks/_gpu_common.sh
source "$(dirname "$0")"/_gpu_common.sh
stage=${GPU_STAGE:-1}
variants=${GPU_VARIANTS:-mix3 mix6 gas3}
declare -A law=([mix3]=empirical+gas [mix6]=empirical+gas [gas3]=gas)
declare -A lr1=([mix3]=3e-4 [mix6]=6e-4 [gas3]=3e-4)
declare -A lr2=([mix3]=1.5e-4 [mix6]=3e-4 [gas3]=1.5e-4)
start=$(date +%s)
# the packaged model's recipe and architecture (the configs/sdss.yaml encoder)
recipe=("${sleep_recipe[@]}" data=data/gpu_train.h5 "widths=[32,64,128,192]" blocks_per_stage=2
  hidden=512 rank=6 val_fraction=0.02 eval_every=250 wake_weight=0.0)
declare -A extra=()
if [[ $stage == 2 ]]; then
  minutes=${GPU_TRAIN_MINUTES:-3.6}
  LOGS=runs/gpu_pd_b
  mkdir -p "$LOGS"
  recipe+=(warmup_steps=10 seed=32 max_steps="${GPU_STEPS:-1000}" max_minutes="$minutes")
  names=()
  for v in $variants; do
    cp runs/gpu_"$v"/model.pt runs/init_"$v".pt
    extra[${v}b]="init_from=runs/init_$v.pt lr=${lr2[$v]} sleep_population_dust=${law[$v]}"
    names+=("${v}b")
  done
  train_variants 300 "${names[@]}" 2>&1 | grep -v "^config:"
  tar czf "$OUT"/gpu_pd_b_logs.tar.gz "$LOGS"
  ls -la "$OUT"
  exit 0
fi
minutes=${GPU_TRAIN_MINUTES:-6}
n_train=${GPU_N_TRAIN:-2000}
LOGS=runs/gpu_population_dust_logs
mkdir -p "$LOGS"
if [[ $dev == cuda* ]]; then
  nvidia-smi -L
  timeout 420 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py >"$LOGS"/test_cuda.log 2>&1 &
fi
python3 -m galae.mock --config configs/mock_analytic.yaml --n "$n_train" --seed 1 \
  --out data/gpu_train.h5 --workers 12 --overwrite >"$LOGS"/mock.log 2>&1 || {
  tail -n 20 "$LOGS"/mock.log
  exit 1
}
echo "mocks: $(($(date +%s) - start)) s"
recipe+=(init_from=src/galae/default_model/model.pt warmup_steps=20 seed=31
  max_steps="${GPU_STEPS:-1500}" max_minutes="$minutes")
for v in $variants; do
  extra[$v]="lr=${lr1[$v]} sleep_population_dust=${law[$v]}"
done
# shellcheck disable=SC2086
train_variants $(((${minutes%.*} + 2) * 60)) $variants
wait
echo "test_cuda: $(tail -n 1 "$LOGS"/test_cuda.log 2>/dev/null) ($(($(date +%s) - start)) s)"
tar czf "$OUT"/gpu_population_dust_logs.tar.gz "$LOGS"
ls -la "$OUT"
