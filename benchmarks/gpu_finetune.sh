#!/usr/bin/env bash
# The packaged model's simulation-based training continued on one GPU, at 64 times its CPU batch,
# in one prepared device call (about 8 minutes):
#
#   bash benchmarks/gpu_finetune.sh          # from the repository root, galae importable
#
# The packaged encoder learned from about 2 million simulated galaxies, in CPU stages of 6000
# steps of batch 32 (src/galae/default_model/README.md).  On a GPU a step of the renderer costs
# about the same from batch 256 to 2048 (the host launching small kernels bounds it:
# results/train_step_cuda.json), so a few minutes there show it several million more.  Three runs
# share the GPU at once (each is launch-bound, the GPU mostly idle), on the packaged model's
# recipe (its README's training line) with the 2000 analytic mocks of data/analytic_train.h5 made
# again there (seed 1) for the simulations' noise, PSFs and redshifts:
#   ft_lo  the packaged model, lr 6e-4 at batch 2048
#   ft_hi  the packaged model, lr 1.6e-3 at batch 2048 (2e-4 at 32, scaled as the square root)
#   big    the configs/sdss.yaml encoder (3.9 M parameters) from scratch, same recipe, lr 2.83e-3
# Each model comes back as $OUT/<name>.pt (a file over 15 MB in pieces, <name>.pt.part*: join
# with cat), with the logs in $OUT/gpu_finetune_logs.tar.gz.  Evaluate and calibrate them on the
# CPU afterwards (docs/results.md, "GPU-trained encoders").
# GPU_VARIANTS, GPU_TRAIN_MINUTES (6), GPU_STEPS (2500), GPU_BATCH (2048), GPU_N_TRAIN (2000),
# GPU_DEVICE (cuda) change the run; a CPU dry run:
#   GPU_DEVICE=cpu GPU_BATCH=4 GPU_STEPS=3 GPU_N_TRAIN=16 GPU_TRAIN_MINUTES=1 bash benchmarks/gpu_finetune.sh
# shellcheck source=benchmarks/_gpu_common.sh
source "$(dirname "$0")"/_gpu_common.sh
minutes=${GPU_TRAIN_MINUTES:-6}
steps=${GPU_STEPS:-2500}
n_train=${GPU_N_TRAIN:-2000}
variants=${GPU_VARIANTS:-ft_lo ft_hi big}
LOGS=runs/gpu_finetune_logs
mkdir -p "$LOGS"
[[ $dev == cuda* ]] && nvidia-smi -L
start=$(date +%s)
python3 -m galae.mock --config configs/mock_analytic.yaml --n "$n_train" --seed 1 \
  --out data/gpu_train.h5 --workers 12 --overwrite >"$LOGS"/mock.log 2>&1 || {
  tail -n 20 "$LOGS"/mock.log
  exit 1
}
echo "mocks: $(($(date +%s) - start)) s"

recipe=("${sleep_recipe[@]}" data=data/gpu_train.h5 max_steps="$steps" max_minutes="$minutes"
  eval_every=500)
declare -A extra=(
  [ft_lo]="init_from=src/galae/default_model/model.pt lr=6e-4 warmup_steps=50 seed=11"
  [ft_hi]="init_from=src/galae/default_model/model.pt lr=1.6e-3 warmup_steps=50 seed=12"
  [big]="widths=[32,64,128,192] blocks_per_stage=2 hidden=512 rank=6 lr=2.83e-3 warmup_steps=125 seed=13"
)
# shellcheck disable=SC2086
train_variants $((60 * minutes + 120)) $variants
tar czf "$OUT"/gpu_finetune_logs.tar.gz "$LOGS"
ls -la "$OUT"
