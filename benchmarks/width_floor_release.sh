#!/bin/bash
# The packaged model with the refined posterior's width floor (eighteenth submission): its
# refined widths calibrated again with galae.refine.REFINED_WIDTH_FLOOR (chosen on the
# validation mocks by benchmarks/width_floor.py), for the bursty disk histories of real
# galaxies as before; the weights, the prior and the amortized widths are those of
# runs/pa_cal/model_refcal.pt.  Then the refined evaluations of the README: the analytic test
# mocks, the five masked particle sets of issue 6 against the U-Net (the amortized and U-Net
# reports are those of benchmarks/packaged_release.sh in runs/eval_new), and the real SDSS
# galaxy.  About 30 minutes on 2 CPU cores.  Results: results/ae_vs_unet.json,
# docs/ae_vs_unet.png, results/real_sdss.json, runs/eval_floor.
set -e
P=python
E="$P -m galae.evaluate --no-figures"
O=runs/eval_floor
AE=runs/floor_pkg/model_refcal.pt
mkdir -p runs/floor_pkg $O
[ -e $AE ] || $P -m galae.calibrate --checkpoint runs/pa_cal/model_cal.pt --data data/analytic_train.h5 --n 1024 --refine-steps 60 --out $AE
[ -e $O/analytic_refined_400/metrics.json ] || $E --checkpoint $AE --data data/analytic_test.h5 --n 400 --refine-steps 60 --out $O/analytic_refined_400
for s in test seeing lowsn highz nou; do
  [ -e $O/ae_refined_masked_particles_$s/metrics.json ] || $E --checkpoint $AE --data data/particles_$s.h5 --refine-steps 60 --mask-neighbours --out $O/ae_refined_masked_particles_$s
  ln -sfn ../eval_new/ae_masked_particles_$s $O/ae_masked_particles_$s
  ln -sfn ../eval_new/unet_particles_$s $O/unet_particles_$s
done
cp $AE src/galae/default_model/model.pt
$P benchmarks/ae_vs_unet.py $O docs/ae_vs_unet.png
$P benchmarks/ae_vs_unet_table.py > runs/ae_vs_unet_table.md
$P benchmarks/real_sdss.py
