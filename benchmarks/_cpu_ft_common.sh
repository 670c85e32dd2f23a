# Sourced (not run) by the CPU experiments that train the packaged model on
# (benchmarks/particle_wake.sh, birth_clouds.sh, birth_clouds_release.sh): the device, cache and
# batch of a CPU run (GPU_DEVICE cpu, GPU_CACHE ram, GPU_BATCH 32; set them for the same run on
# a GPU), steps and learning rate (GPU_STEPS 1500, GPU_LR 1e-4), benchmarks/_gpu_common.sh and
# ft_recipe.
GPU_DEVICE=${GPU_DEVICE:-cpu} GPU_CACHE=${GPU_CACHE:-ram} GPU_BATCH=${GPU_BATCH:-32}
OUT=${OUT:-runs} # _gpu_common.sh's output folder: nothing is shipped from here
# shellcheck source=benchmarks/_gpu_common.sh
source "$(dirname "${BASH_SOURCE[0]}")"/_gpu_common.sh
P=python
steps=${GPU_STEPS:-1500}
lr=${GPU_LR:-1e-4}

# ft_recipe DATA MINUTES [INIT]: recipe=(the packaged simulation recipe at batch $bs, on DATA,
# from INIT (default the packaged model) with the packaged architecture, $steps steps at lr $lr
# after 20 warm-up steps, seed 22, the ELBO term (for runs that set wake_weight > 0) ramped in
# over 100 steps, at most MINUTES minutes, 5% of DATA for validation, checkpoints every 200)
ft_recipe() {
  recipe=("${sleep_recipe[@]}" data="$1" "widths=[32,64,128,192]" blocks_per_stage=2 hidden=512
    rank=6 init_from="${3:-src/galae/default_model/model.pt}" lr="$lr" warmup_steps=20 seed=22
    wake_start_step=0 wake_ramp_steps=100 max_steps="$steps" max_minutes="$2" val_fraction=0.05
    eval_every=100000 ckpt_every=200 progress=true)
}
