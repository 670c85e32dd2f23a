#!/bin/bash
# The position angle scored and calibrated on the circle (seventeenth submission): the packaged
# model's widths calibrated again (amortized, then refined), evaluated on the analytic mocks and
# the in-distribution particle mocks, against the previous calibration scored both ways.  Needs
# the mocks of benchmarks/ae_vs_unet.sh and runs/psf_ft (src/galae/default_model/README.md) and
# runs/eval_new of packaged_release.sh (the previous calibration scored on the line).  About 20
# minutes on 2 CPU cores.  Results: results/pa_calibration.json.
set -e
P=python
E="$P -m galae.evaluate --no-figures"
mkdir -p runs/pa_cal runs/eval_pa
$P -m galae.calibrate --checkpoint runs/psf_ft/model.pt --data data/analytic_train.h5 --out runs/pa_cal/model_cal.pt
$P -m galae.calibrate --checkpoint runs/pa_cal/model_cal.pt --data data/analytic_train.h5 --n 1024 --refine-steps 60 --out runs/pa_cal/model_refcal.pt
$E --checkpoint runs/pa_cal/model_refcal.pt --data data/analytic_test.h5 --n 400 --out runs/eval_pa/analytic_400
$E --checkpoint runs/psf_ft/model_refcal.pt --data data/analytic_test.h5 --n 400 --out runs/eval_pa/old_analytic_400
$E --checkpoint runs/pa_cal/model_refcal.pt --data data/analytic_test.h5 --n 400 --refine-steps 60 --out runs/eval_pa/analytic_refined_400
$E --checkpoint runs/pa_cal/model_refcal.pt --data data/particles_test.h5 --mask-neighbours --out runs/eval_pa/ae_masked_particles_test
$P benchmarks/pa_calibration.py \
  previous_on_the_line=runs/eval_new/analytic_400 \
  previous_on_the_circle=runs/eval_pa/old_analytic_400 \
  this_release=runs/eval_pa/analytic_400 \
  previous_refined_on_the_line=runs/eval_new/analytic_refined_400 \
  this_release_refined=runs/eval_pa/analytic_refined_400 \
  previous_particles_test_masked=runs/eval_new/ae_masked_particles_test \
  this_release_particles_test_masked=runs/eval_pa/ae_masked_particles_test
