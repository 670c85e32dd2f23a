#!/bin/bash
# Images deeper than the training data (docs/results.md, issue 4, "Images deeper than the training data"):
# the packaged model and a fine-tune of it trained with deeper and shallower simulated noise
# (TrainConfig.sleep_sigma_scale_dex), on analytic mocks at a fifth of the training sky noise, in
# distribution, and on the particle mocks; then benchmarks/deep_data.py (results/deep_data.json).
# About 90 minutes on 2 CPU cores.
set -e
P=python
# the release before the fourteenth (made by benchmarks/ae_vs_unet.sh); the fine-tune below is the
# packaged model since then (src/galae/default_model/README.md, with its refined widths too)
PKG=${PKG:-runs/hist_ft/model_refcal.pt}
NEW=runs/sigma_ft/model_cal.pt
$P -m galae.mock --config configs/mock_analytic.yaml --n 2000 --seed 1 --out data/analytic_train.h5
$P -m galae.mock --config configs/mock_analytic.yaml --n 400 --seed 101 --out data/analytic_test.h5
$P -m galae.mock --config configs/mock_analytic.yaml --n 400 --seed 101 --out data/analytic_deep.h5 sky_sigma_scale=0.2
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 202 --out data/particles_test.h5
# the fine-tune: the packaged model's last recipe (src/galae/default_model/README.md) plus half
# the simulated stamps at 10**U(-1, 0.5) times their sigma; 6000 steps, then the amortized widths
# calibrated again (the refined ones the previous release's; the packaged model's were calibrated
# again, src/galae/default_model/README.md)
$P -m galae.train --config configs/analytic_pop.yaml init_from=$PKG data=data/analytic_train.h5 disk_history=tau sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 sleep_missing_band_fraction=0.2 sleep_history_scale_dex=0.3 "sleep_sigma_scale_dex=[-1.0,0.5]" sleep_sigma_scale_fraction=0.5 lr=2e-4 warmup_steps=20 max_steps=6000 max_minutes=22 out_dir=runs/sigma_ft fit_prior=false
$P -m galae.calibrate --checkpoint runs/sigma_ft/model.pt --data data/analytic_train.h5 --out $NEW
E="$P -m galae.evaluate --no-figures"
$E --checkpoint $PKG --data data/analytic_deep.h5 --n 400 --out runs/eval/pkg_analytic_deep
$E --checkpoint $NEW --data data/analytic_deep.h5 --n 400 --out runs/eval/new_analytic_deep
$E --checkpoint $PKG --data data/analytic_deep.h5 --n 200 --refine-steps 60 --out runs/eval/pkg_analytic_deep_refined
$E --checkpoint $NEW --data data/analytic_deep.h5 --n 200 --refine-steps 60 --out runs/eval/new_analytic_deep_refined
$E --checkpoint $NEW --data data/analytic_test.h5 --n 400 --out runs/eval/new_analytic_400
$E --checkpoint $NEW --data data/analytic_test.h5 --n 400 --refine-steps 60 --out runs/eval/new_analytic_refined_400
$E --checkpoint $PKG --data data/particles_test.h5 --mask-neighbours --out runs/eval/ae_masked_test
$E --checkpoint $NEW --data data/particles_test.h5 --mask-neighbours --out runs/eval/new_masked_test
$E --checkpoint $PKG --data data/particles_test.h5 --refine-steps 60 --mask-neighbours --out runs/eval/ae_refined_masked_test
$E --checkpoint $NEW --data data/particles_test.h5 --refine-steps 60 --mask-neighbours --out runs/eval/new_refined_masked_test
# issue 6's shifted particle sets (the seeds of benchmarks/ae_vs_unet.sh), the fine-tune amortized
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 203 --out data/particles_seeing.h5 seeing_r_median_arcsec=2.2
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 204 --out data/particles_lowsn.h5 sky_sigma_scale=3.0
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 205 --out data/particles_highz.h5 redshift_min=0.25 redshift_max=0.4
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 206 --out data/particles_nou.h5 missing_band=u
for s in seeing lowsn highz nou; do
  $E --checkpoint $NEW --data data/particles_$s.h5 --mask-neighbours --out runs/eval/new_masked_$s
done
$P benchmarks/deep_data.py \
  --runs packaged_amortized=runs/eval/pkg_analytic_deep sigma_ft_amortized=runs/eval/new_analytic_deep \
  packaged_refined=runs/eval/pkg_analytic_deep_refined sigma_ft_refined=runs/eval/new_analytic_deep_refined \
  sigma_ft_in_distribution_amortized=runs/eval/new_analytic_400 \
  sigma_ft_in_distribution_refined=runs/eval/new_analytic_refined_400 \
  sigma_ft_particles_masked_amortized=runs/eval/new_masked_test \
  sigma_ft_particles_masked_refined=runs/eval/new_refined_masked_test \
  packaged_particles_masked_amortized=runs/eval/ae_masked_test \
  packaged_particles_masked_refined=runs/eval/ae_refined_masked_test \
  sigma_ft_particles_seeing=runs/eval/new_masked_seeing sigma_ft_particles_lowsn=runs/eval/new_masked_lowsn \
  sigma_ft_particles_highz=runs/eval/new_masked_highz sigma_ft_particles_nou=runs/eval/new_masked_nou \
  --grid packaged=$PKG sigma_ft=$NEW
