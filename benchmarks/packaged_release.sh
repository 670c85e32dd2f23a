#!/bin/bash
# The packaged model's figures in the README (issues 4 and 6), measured again for the fourteenth
# release (src/galae/default_model/README.md): analytic mocks amortized, refined and with the
# redshift withheld; the deep analytic mocks; the masked particle mocks amortized and refined on
# all five sets of issue 6, against the U-Net; the real SDSS galaxy; refining only the poor fits.  Needs the mocks of
# benchmarks/deep_data.sh and benchmarks/ae_vs_unet.sh (same seeds) and the U-Net of
# benchmarks/ae_vs_unet_candidate.sh (runs/unet).  About 75 minutes on 2 CPU cores.
# Results: results/packaged_release.json, results/ae_vs_unet.json, docs/ae_vs_unet.png,
# results/real_sdss.json.
set -e
P=python
AE=src/galae/default_model/model.pt
E="$P -m galae.evaluate --no-figures"
O=runs/eval_new
mkdir -p $O
$E --checkpoint $AE --data data/analytic_test.h5 --n 400 --out $O/analytic_400
$E --checkpoint $AE --data data/analytic_test.h5 --n 400 --refine-steps 60 --out $O/analytic_refined_400
$E --checkpoint $AE --data data/analytic_test.h5 --n 200 --hide-redshift --out $O/analytic_photoz_200
$E --checkpoint $AE --data data/analytic_deep.h5 --n 400 --out $O/analytic_deep
$E --checkpoint $AE --data data/analytic_deep.h5 --n 200 --refine-steps 60 --out $O/analytic_deep_refined
for s in test seeing lowsn highz nou; do
  $E --checkpoint $AE --data data/particles_$s.h5 --mask-neighbours --out $O/ae_masked_particles_$s
  $E --checkpoint $AE --data data/particles_$s.h5 --refine-steps 60 --mask-neighbours --out $O/ae_refined_masked_particles_$s
  [ -e $O/unet_particles_$s ] || $E --checkpoint runs/unet/model.pt --data data/particles_$s.h5 --out $O/unet_particles_$s
done
# refining only the poor amortized fits (encode's refine_above_chi2; docs/results.md, issue 4)
$E --checkpoint $AE --data data/analytic_test.h5 --n 400 --refine-steps 60 --refine-above-chi2 3 --out $O/analytic_above3_400
$E --checkpoint $AE --data data/analytic_deep.h5 --n 400 --refine-steps 60 --refine-above-chi2 3 --out $O/analytic_deep_above3
$E --checkpoint $AE --data data/particles_test.h5 --mask-neighbours --refine-steps 60 --refine-above-chi2 3 --out $O/particles_above3_masked_test
$P benchmarks/refine_poor_fits.py --data data/analytic_test.h5 --n 128
$P benchmarks/refine_poor_fits.py --data data/analytic_deep.h5 --n 128 --name deep
$P benchmarks/refine_poor_fits.py --data data/particles_test.h5 --n 128 --name particles
bash benchmarks/release_summaries.sh $O   # results/packaged_release.json, ae_vs_unet.json, real_sdss.json
# what limits the particle stellar masses (docs/results.md, issue 4)
$P benchmarks/particle_mass_diagnostic.py $O/ae_masked_particles_test --data data/particles_test.h5
$P benchmarks/particle_mass_diagnostic.py $O/ae_refined_masked_particles_test --data data/particles_test.h5 --name refined
# the encoder averaged over mirrored stamps (encode's flips; docs/results.md, issue 4), against the U-Net
$E --checkpoint $AE --data data/analytic_test.h5 --n 400 --flips --out $O/analytic_flips_400
mkdir -p runs/eval_flips
for s in test seeing lowsn highz nou; do
  $E --checkpoint $AE --data data/particles_$s.h5 --mask-neighbours --flips --out $O/flips_masked_particles_$s
  ln -sfn ../eval_new/flips_masked_particles_$s runs/eval_flips/ae_masked_particles_$s
  ln -sfn ../eval_new/unet_particles_$s runs/eval_flips/unet_particles_$s
done
$E --checkpoint $AE --data data/particles_test.h5 --mask-neighbours --flips --refine-steps 60 --out $O/flips_refined_masked_particles_test
$P benchmarks/ae_vs_unet.py runs/eval_flips "" ae_vs_unet_flips
$P benchmarks/mirror_consistency.py --data data/particles_test.h5 --n 256 --mask-neighbours
$P benchmarks/mirror_consistency.py --data data/analytic_test.h5 --n 256 --name analytic
