#!/bin/bash
# A release of the packaged model that changes only its refined widths: the previous release's
# weights, prior and amortized calibration, with its refined widths calibrated again under the
# width ceiling (galae.refine.REFINED_WIDTH_CEILING and REFINED_WIDTH_CEILING_FALLBACK, chosen on
# validation mocks by benchmarks/refined_ceiling.py), then every figure of the README that reads
# the refined posterior measured again (the amortized ones do not change: their reports are
# kept).  It made the twenty-first release (ceiling 1.5, on the twentieth) and the twenty-third
# (1.25 with the fallback 1.5, on the twenty-second).  Needs the data and reports of
# benchmarks/packaged_release.sh (runs/eval_new) and the U-Net of configs/unet.yaml (runs/unet;
# since the twenty-third, benchmarks/unet_data_size.sh's, whose reports it finds in
# runs/eval_new).  About 35 minutes on 2 CPU cores.
set -e
P=python
AE=src/galae/default_model/model.pt
E="$P -m galae.evaluate --no-figures"
O=runs/eval_new
W=runs/ceiling_release
mkdir -p $W $O
$P -m galae.calibrate --checkpoint $AE --data data/analytic_train.h5 --n 1024 --refine-steps 60 \
  --out $W/model.pt
cp $W/model.pt $AE
$E --checkpoint $AE --data data/analytic_test.h5 --n 400 --refine-steps 60 --out $O/analytic_refined_400
$E --checkpoint $AE --data data/analytic_deep.h5 --n 200 --refine-steps 60 --out $O/analytic_deep_refined
for s in test seeing lowsn highz nou; do
  $E --checkpoint $AE --data data/particles_$s.h5 --refine-steps 60 --mask-neighbours --out $O/ae_refined_masked_particles_$s
done
$E --checkpoint $AE --data data/analytic_test.h5 --n 400 --refine-steps 60 --refine-above-chi2 3 --out $O/analytic_above3_400
$E --checkpoint $AE --data data/analytic_deep.h5 --n 400 --refine-steps 60 --refine-above-chi2 3 --out $O/analytic_deep_above3
$E --checkpoint $AE --data data/particles_test.h5 --mask-neighbours --refine-steps 60 --refine-above-chi2 3 --out $O/particles_above3_masked_test
$E --checkpoint $AE --data data/particles_test.h5 --mask-neighbours --flips --refine-steps 60 --out $O/flips_refined_masked_particles_test
$P benchmarks/refine_poor_fits.py --data data/analytic_test.h5 --n 128
$P benchmarks/refine_poor_fits.py --data data/analytic_deep.h5 --n 128 --name deep
$P benchmarks/refine_poor_fits.py --data data/particles_test.h5 --n 128 --name particles
bash benchmarks/release_summaries.sh $O   # results/packaged_release.json, ae_vs_unet.json, real_sdss.json
$P benchmarks/particle_mass_diagnostic.py $O/ae_refined_masked_particles_test --data data/particles_test.h5 --name refined
bash benchmarks/release_figures.sh
# the refined widths calibrated for smooth disk histories (the README's third column)
$P -m galae.calibrate --checkpoint $AE --data data/analytic_train.h5 --n 1024 --refine-steps 60 \
  --history-scale-dex 0 --out $W/refcal_smooth.pt
$E --checkpoint $W/refcal_smooth.pt --data data/analytic_test.h5 --n 400 --refine-steps 60 --out $W/ev_refined_smooth
