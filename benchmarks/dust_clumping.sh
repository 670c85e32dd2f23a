#!/bin/bash
# Patchy dust as a simulation nuisance (galae.physics.dust.DustClumping, train's
# sleep_dust_clumping_max), on the CPU: the twenty-third packaged model trained on for 1500
# steps of batch 32 (lr 1e-4, seed 22) with its simulation recipe plus patchy dust
# (sigma_ln_tau ~ U(0, MAX), MAX = 1.0 by default, chosen before any run), against a control with
# the same steps, learning rate and seed and the smooth slab.  Each is scored amortized on 400
# validation analytic mocks (data/analytic_check.h5) and on the 512 in-distribution particle
# mocks (masked), and against the U-Net.  A measurement, not a release: neither run is
# calibrated again.  Needs data/particles_{train,test}.h5 (benchmarks/ae_vs_unet.sh),
# data/analytic_check.h5 and runs/eval_new/unet_particles_test.  About 25 minutes on 2 CPU
# cores.  Results: results/dust_clumping.json.  The same at the GPU's scale, in one line:
#   GPU_DEVICE=cuda GPU_CACHE=device GPU_BATCH=512 GPU_LR=3e-4 bash benchmarks/dust_clumping.sh
# and a dry run of every step (runs under /tmp/dc, results/dust_clumping_dry.json):
#   GPU_STEPS=2 DC_N=8 DC_RUNS=/tmp/dc DC_NAME=dust_clumping_dry bash benchmarks/dust_clumping.sh
# GPU_* as in benchmarks/_cpu_ft_common.sh; DC_MAX the nuisance's largest spread (1.0), DC_N the
# galaxies evaluated (default all), DC_RUNS the runs' folder (runs), DC_NAME the result's name,
# DC_SKIP_CONTROL=1 reuses an existing control run.
set -e
# shellcheck source=benchmarks/_cpu_ft_common.sh
source "$(dirname "$0")"/_cpu_ft_common.sh
R=${DC_RUNS:-runs}
MAX=${DC_MAX:-1.0}
n=${DC_N:+--n $DC_N}
F=data/particles_train_masked.h5
[ -e $F ] || $P -m galae.data.segmentation data/particles_train.h5 $F
ft_recipe $F 20
recipe+=(wake_weight=0.0)
tag=dclump${MAX/./p}
runs=("$tag")
[ "${DC_SKIP_CONTROL:-0}" = 1 ] || runs+=(dctl)
for v in "${runs[@]}"; do
  m=0.0; [ "$v" = dctl ] || m=$MAX
  $P -m galae.train "${recipe[@]}" sleep_dust_clumping_max=$m out_dir=$R/$v
  E="$P -m galae.evaluate --no-figures --device $dev --checkpoint $R/$v/model.pt"
  $E --data data/analytic_check.h5 --n ${DC_N:-400} --out $R/$v/ev_check
  $E --data data/particles_test.h5 --mask-neighbours $n --out $R/$v/ev_particles_test
done
name=${DC_NAME:-dust_clumping_$tag}; [ "$dev" = cpu ] || name=${DC_NAME:-dust_clumping_${tag}_$dev}
$P benchmarks/gpu_finetune_summary.py --out-name $name --device-name "$dev" \
  --what "patchy dust (sigma_ln_tau ~ U(0, $MAX)) as a simulation nuisance: the packaged model trained on with it for $steps steps of $bs (lr $lr, $dev), against a control with the smooth slab" \
  --runs clumpy=$R/$tag/log.csv control=$R/dctl/log.csv \
  --check clumpy=$R/$tag/ev_check control=$R/dctl/ev_check \
  --particles clumpy=$R/$tag/ev_particles_test control=$R/dctl/ev_particles_test \
  packaged=runs/eval_new/ae_masked_particles_test unet=runs/eval_new/unet_particles_test
