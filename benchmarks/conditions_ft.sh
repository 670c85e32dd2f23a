#!/bin/bash
# Fine-tunes of the packaged model that simulate worse seeing (and larger distances) than the
# data hold (train's sleep_psf_scale_* and sleep_redshift_*; docs/results.md, issue 6), calibrated and
# evaluated amortized against the packaged model and the U-Net, and the analytic r_half error
# of the psf fine-tune against the packaged model on 1000 fresh mocks.  Needs the mocks of
# benchmarks/ae_vs_unet.sh and deep_data.sh, and runs/eval_new of packaged_release.sh.  About 70
# minutes on 2 CPU cores.  Results: results/conditions_ft.json.
set -ef  # -f: no globbing of the [low,high] values in $BASE
P=python
BASE="--config configs/analytic_pop.yaml init_from=src/galae/default_model/model.pt data=data/analytic_train.h5 disk_history=tau sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 sleep_missing_band_fraction=0.2 sleep_history_scale_dex=0.3 sleep_sigma_scale_dex=[-1.0,0.5] sleep_sigma_scale_fraction=0.5 lr=2e-4 warmup_steps=20 max_steps=6000 max_minutes=22 fit_prior=false"
$P -m galae.train $BASE "sleep_psf_scale_dex=[0.0,0.35]" sleep_psf_scale_fraction=0.3 "sleep_redshift_range=[0.01,0.45]" sleep_redshift_fraction=0.25 out_dir=runs/cond_ft
$P -m galae.train $BASE "sleep_psf_scale_dex=[0.0,0.35]" sleep_psf_scale_fraction=0.3 out_dir=runs/psf_ft
for run in cond psf; do
  C=runs/${run}_ft
  O=runs/eval_$run
  $P -m galae.calibrate --checkpoint $C/model.pt --data data/analytic_train.h5 --out $C/model_cal.pt
  mkdir -p $O
  $P -m galae.evaluate --no-figures --checkpoint $C/model_cal.pt --data data/analytic_test.h5 --n 400 --out $O/analytic_400
  for s in test seeing lowsn highz nou; do
    $P -m galae.evaluate --no-figures --checkpoint $C/model_cal.pt --data data/particles_$s.h5 --mask-neighbours --out $O/ae_masked_particles_$s
    ln -sfn ../eval_new/unet_particles_$s $O/unet_particles_$s
  done
done
$P benchmarks/conditions_ft.py packaged=runs/eval_new psf_and_redshift=runs/eval_cond psf=runs/eval_psf
# the analytic r_half error on 1000 fresh mocks, paired (the 400 above are few for a median)
$P -m galae.mock --config configs/mock_analytic.yaml --n 1000 --seed 303 --out data/analytic_check.h5
$P -m galae.evaluate --no-figures --checkpoint src/galae/default_model/model.pt --data data/analytic_check.h5 --out runs/eval_check/packaged
$P -m galae.evaluate --no-figures --checkpoint runs/psf_ft/model_cal.pt --data data/analytic_check.h5 --out runs/eval_check/psf
$P benchmarks/paired_rhalf.py --data data/analytic_check.h5 runs/eval_check/packaged runs/eval_check/psf --name analytic_check
$P benchmarks/paired_rhalf.py --data data/analytic_test.h5 runs/eval_new/analytic_400 runs/eval_psf/analytic_400 --name analytic_test
