#!/bin/bash
# The ELBO ("wake") term on particle images, on the CPU: the packaged model trained on for 1500
# steps of batch 32 with the ELBO on the 768 particle training mocks (other sources masked; their
# truth maps are never read), the packaged simulation recipe alongside, against a control with
# the same steps, learning rate and seed and the simulation term alone.  Both are scored
# amortized and refined on the 512 in-distribution particle mocks (masked) and amortized on 400
# validation analytic mocks.  A measurement, not a release: neither run is calibrated again.
# Needs data/particles_{train,test}.h5 (benchmarks/ae_vs_unet.sh) and data/analytic_check.h5.
# About 35 minutes on 2 CPU cores (each run 12 minutes).  Results: results/particle_wake.json.
set -e
P=python
$P -m galae.data.segmentation data/particles_train.h5 data/particles_train_masked.h5 --overwrite
# the packaged recipe (src/galae/default_model/README.md; benchmarks/_gpu_common.sh) at batch 32
recipe=(--config configs/analytic_pop.yaml disk_history=tau sleep_mask_fraction=0.5
  sleep_photo_z_fraction=0.5 sleep_missing_band_fraction=0.2 sleep_history_scale_dex=0.3
  "sleep_sigma_scale_dex=[-1.0,0.5]" sleep_sigma_scale_fraction=0.5 "sleep_psf_scale_dex=[0.0,0.35]"
  sleep_psf_scale_fraction=0.3 batch_size=32 fit_prior=false data=data/particles_train_masked.h5
  "widths=[32,64,128,192]" blocks_per_stage=2 hidden=512 rank=6
  init_from=src/galae/default_model/model.pt lr=1e-4 warmup_steps=20 seed=22 wake_start_step=0
  wake_ramp_steps=100 max_steps=1500 max_minutes=13 val_fraction=0.05 eval_every=100000
  ckpt_every=200 resume=false overwrite=true data_cache=ram)
E="$P -m galae.evaluate --no-figures"
for v in pwake pctl; do
  w=1.0; [ $v = pctl ] && w=0.0
  $P -m galae.train "${recipe[@]}" wake_weight=$w out_dir=runs/$v
  $E --checkpoint runs/$v/model.pt --data data/particles_test.h5 --mask-neighbours --out runs/$v/ev_particles_test
  $E --checkpoint runs/$v/model.pt --data data/particles_test.h5 --mask-neighbours --refine-steps 60 --out runs/$v/ev_particles_test_refined
  $E --checkpoint runs/$v/model.pt --data data/analytic_check.h5 --n 400 --out runs/$v/ev_check
done
$P -m galae.evaluate --compare runs/pwake/ev_particles_test/metrics.json runs/pctl/ev_particles_test/metrics.json --out runs/pwake/compare_ctl
$P -m galae.evaluate --compare runs/pwake/ev_particles_test_refined/metrics.json runs/pctl/ev_particles_test_refined/metrics.json --out runs/pwake/compare_ctl_refined
O=runs/eval_new
# check_wake: the packaged weights before their calibration (benchmarks/gpu_wake_release.sh)
$P benchmarks/gpu_finetune_summary.py --out-name particle_wake --device-name "CPU (2 cores)" \
  --what "ELBO on 768 masked particle images (1500 steps of 32, lr 1e-4) against a simulation-only control, from the twenty-first packaged model" \
  --runs wake=runs/pwake/log.csv ctl=runs/pctl/log.csv \
  --check packaged=runs/gpu_wake_ft/check_wake wake=runs/pwake/ev_check ctl=runs/pctl/ev_check \
  --particles packaged=$O/ae_masked_particles_test wake=runs/pwake/ev_particles_test ctl=runs/pctl/ev_particles_test \
  packaged_refined=$O/ae_refined_masked_particles_test wake_refined=runs/pwake/ev_particles_test_refined \
  ctl_refined=runs/pctl/ev_particles_test_refined
