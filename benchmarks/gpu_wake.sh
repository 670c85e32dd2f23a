#!/usr/bin/env bash
# The ELBO ("wake") term on a GPU: the second phase of configs/sdss.yaml's schedule, added to
# the packaged (simulation-trained) encoder, against a control that trains on by simulation alone
# for the same steps.  One prepared device call of about 9 minutes:
#
#   bash benchmarks/gpu_wake.sh          # from the repository root, galae importable
#
# 1. tests/test_cuda.py (the CUDA resume test among them), while the CPUs make the mocks;
# 2. 20,000 analytic mocks (seed 3: not a seed of data/analytic_{train,test,check,deep}.h5), the
#    data of the ELBO term, whose conditions (sigma, PSF, redshift) the simulations also take;
# 3. two runs from src/galae/default_model/model.pt, sharing the GPU (each is bound by the host
#    launching kernels, so they barely slow each other), at batch 2048 on the packaged recipe:
#      wake  the simulation term plus the ELBO on the mocks (wake_weight 1, ramped in over 100
#            steps; the learned population prior of the packaged model is the ELBO's p(u))
#      ctl   the simulation term alone, the same steps, learning rate and seed
# Each model comes back as $OUT/<name>.pt (a file over 15 MB in pieces, <name>.pt.part*: join
# with cat), the logs in $OUT/gpu_wake_logs.tar.gz.  Score them on the CPU (docs/results.md,
# "Twentieth submission"); benchmarks/gpu_wake_release.sh calibrates "wake" and measures it.
# GPU_STEPS (600), GPU_WAKE_MINUTES (5.5), GPU_BATCH (2048), GPU_N_TRAIN (20000), GPU_LR (3e-4),
# GPU_DEVICE (cuda) change the run; a CPU dry run:
#   GPU_DEVICE=cpu GPU_BATCH=4 GPU_STEPS=2 GPU_N_TRAIN=16 GPU_WAKE_MINUTES=1 bash benchmarks/gpu_wake.sh
# shellcheck source=benchmarks/_gpu_common.sh
source "$(dirname "$0")"/_gpu_common.sh
minutes=${GPU_WAKE_MINUTES:-5.5}
steps=${GPU_STEPS:-600}
n_train=${GPU_N_TRAIN:-20000}
lr=${GPU_LR:-3e-4}
LOGS=runs/gpu_wake_logs
mkdir -p "$LOGS"
start=$(date +%s)
if [[ $dev == cuda* ]]; then
  nvidia-smi -L
  timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py >"$LOGS"/test_cuda.log 2>&1 &
  tests=$!
fi
python3 -m galae.mock --config configs/mock_analytic.yaml --n "$n_train" --seed 3 \
  --out data/gpu_wake.h5 --workers 12 --overwrite >"$LOGS"/mock.log 2>&1 || {
  tail -n 20 "$LOGS"/mock.log
  exit 1
}
echo "mocks: $(($(date +%s) - start)) s"
if [[ -n ${tests:-} ]]; then
  wait "$tests"
  echo "test_cuda: $(tail -n 1 "$LOGS"/test_cuda.log) ($(($(date +%s) - start)) s)"
fi

# the packaged model's recipe (nineteenth release: the sixteenth's, on the configs/sdss.yaml encoder)
recipe=("${sleep_recipe[@]}" data=data/gpu_wake.h5 "widths=[32,64,128,192]" blocks_per_stage=2
  hidden=512 rank=6 init_from=src/galae/default_model/model.pt lr="$lr" warmup_steps=20 seed=21
  max_steps="$steps" max_minutes="$minutes" val_fraction=0.02 eval_every=100)
declare -A extra=(
  [wake]="wake_weight=1.0 wake_start_step=0 wake_ramp_steps=100"
  [ctl]="wake_weight=0.0"
)
train_variants $(((${minutes%.*} + 2) * 60)) wake ctl
tar czf "$OUT"/gpu_wake_logs.tar.gz "$LOGS"
ls -la "$OUT"
