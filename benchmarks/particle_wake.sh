#!/bin/bash
# The ELBO ("wake") term on particle images, on the CPU: the packaged model trained on for 1500
# steps of batch 32 with the ELBO on the 768 particle training mocks (other sources masked; their
# truth maps are never read), the packaged simulation recipe alongside, against a control with
# the same steps, learning rate and seed and the simulation term alone.  Both are scored
# amortized and refined on the 512 in-distribution particle mocks (masked) and amortized on 400
# validation analytic mocks.  A measurement, not a release: neither run is calibrated again.
# Needs data/particles_{train,test}.h5 (benchmarks/ae_vs_unet.sh) and data/analytic_check.h5.
# About 35 minutes on 2 CPU cores (each run 12 minutes).  Results: results/particle_wake.json
# (measured from the twenty-first release, whose recipe and mocks had the face-on birth clouds).
# The same at the GPU's scale (not run: no GPU was lent when this was written), in one line:
#   GPU_DEVICE=cuda GPU_CACHE=device GPU_BATCH=512 GPU_LR=3e-4 bash benchmarks/particle_wake.sh
# and a dry run of every step (runs under /tmp/pw, results/particle_wake_dry.json):
#   GPU_STEPS=2 PW_N=8 PW_RUNS=/tmp/pw PW_NAME=particle_wake_dry bash benchmarks/particle_wake.sh
# GPU_DEVICE (cpu), GPU_CACHE (ram), GPU_BATCH (32), GPU_STEPS (1500), GPU_LR (1e-4) set the runs;
# PW_N the galaxies evaluated (default all), PW_RUNS their folder (runs), PW_NAME the result's.
set -e
# shellcheck source=benchmarks/_cpu_ft_common.sh
source "$(dirname "$0")"/_cpu_ft_common.sh
R=${PW_RUNS:-runs}
n=${PW_N:+--n $PW_N}
$P -m galae.data.segmentation data/particles_train.h5 data/particles_train_masked.h5 --overwrite
ft_recipe data/particles_train_masked.h5 13
E="$P -m galae.evaluate --no-figures --device $dev"
for v in pwake pctl; do
  w=1.0; [ $v = pctl ] && w=0.0
  $P -m galae.train "${recipe[@]}" wake_weight=$w out_dir=$R/$v
  $E --checkpoint $R/$v/model.pt --data data/particles_test.h5 --mask-neighbours $n --out $R/$v/ev_particles_test
  $E --checkpoint $R/$v/model.pt --data data/particles_test.h5 --mask-neighbours --refine-steps 60 $n --out $R/$v/ev_particles_test_refined
  $E --checkpoint $R/$v/model.pt --data data/analytic_check.h5 --n ${PW_N:-400} --out $R/$v/ev_check
done
$P -m galae.evaluate --compare $R/pwake/ev_particles_test/metrics.json $R/pctl/ev_particles_test/metrics.json --out $R/pwake/compare_ctl
$P -m galae.evaluate --compare $R/pwake/ev_particles_test_refined/metrics.json $R/pctl/ev_particles_test_refined/metrics.json --out $R/pwake/compare_ctl_refined
O=runs/eval_new
# check_wake: the packaged weights before their calibration (benchmarks/gpu_wake_release.sh)
name=${PW_NAME:-particle_wake}; [ "$dev" = cpu ] || name=${PW_NAME:-particle_wake_$dev}
$P benchmarks/gpu_finetune_summary.py --out-name $name --device-name "$dev" \
  --what "ELBO on 768 masked particle images ($steps steps of $bs, lr $lr, $dev) against a simulation-only control, from the packaged model" \
  --runs wake=$R/pwake/log.csv ctl=$R/pctl/log.csv \
  --check packaged=runs/gpu_wake_ft/check_wake wake=$R/pwake/ev_check ctl=$R/pctl/ev_check \
  --particles packaged=$O/ae_masked_particles_test wake=$R/pwake/ev_particles_test ctl=$R/pctl/ev_particles_test \
  packaged_refined=$O/ae_refined_masked_particles_test wake_refined=$R/pwake/ev_particles_test_refined \
  ctl_refined=$R/pctl/ev_particles_test_refined
