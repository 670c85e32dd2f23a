#!/bin/bash
# Does more of the same training help?  The packaged model (sixteenth release) trained on for
# another 6000 steps with its own recipe, calibrated amortized and evaluated against it: the
# analytic r_half error (issue 4's borderline target) on the 400 test mocks and, paired, on the
# 1000 fresh mocks of conditions_ft.sh, and the masked particle mocks of issue 6 against the
# U-Net.  Needs the mocks of benchmarks/ae_vs_unet.sh, deep_data.sh and conditions_ft.sh
# (data/analytic_check.h5), and runs/eval_new and runs/eval_check/psf of packaged_release.sh and
# conditions_ft.sh.  About 35 minutes on 2 CPU cores.  Results: results/more_steps_ft.json,
# results/paired_rhalf_more_steps_check.json.
set -ef  # -f: no globbing of the [low,high] values
P=python
C=runs/more_ft
O=runs/eval_more
$P -m galae.train --config configs/analytic_pop.yaml init_from=src/galae/default_model/model.pt data=data/analytic_train.h5 disk_history=tau sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 sleep_missing_band_fraction=0.2 sleep_history_scale_dex=0.3 "sleep_sigma_scale_dex=[-1.0,0.5]" sleep_sigma_scale_fraction=0.5 "sleep_psf_scale_dex=[0.0,0.35]" sleep_psf_scale_fraction=0.3 lr=2e-4 warmup_steps=20 max_steps=6000 max_minutes=22 fit_prior=false out_dir=$C
$P -m galae.calibrate --checkpoint $C/model.pt --data data/analytic_train.h5 --out $C/model_cal.pt
mkdir -p $O
$P -m galae.evaluate --no-figures --checkpoint $C/model_cal.pt --data data/analytic_test.h5 --n 400 --out $O/analytic_400
$P -m galae.evaluate --no-figures --checkpoint $C/model_cal.pt --data data/analytic_check.h5 --out runs/eval_check/more
$P benchmarks/paired_rhalf.py --data data/analytic_check.h5 runs/eval_check/psf runs/eval_check/more --name more_steps_check
for s in test seeing lowsn highz nou; do
  $P -m galae.evaluate --no-figures --checkpoint $C/model_cal.pt --data data/particles_$s.h5 --mask-neighbours --out $O/ae_masked_particles_$s
  ln -sfn ../eval_new/unet_particles_$s $O/unet_particles_$s
done
$P benchmarks/conditions_ft.py packaged=runs/eval_new more_steps=$O --name more_steps_ft
