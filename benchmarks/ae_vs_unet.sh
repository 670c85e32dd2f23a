#!/bin/bash
# Autoencoder vs U-Net on particle mocks, in distribution and under four shifts.
set -e
P=python
$P -m galae.mock --config configs/mock_particles.yaml --n 768 --seed 2 --out data/particles_train.h5
$P -m galae.mock --config configs/mock_particles.yaml --n 256 --seed 202 --out data/particles_test.h5
$P -m galae.mock --config configs/mock_particles.yaml --n 128 --seed 203 --out data/particles_seeing.h5 seeing_r_median_arcsec=2.2
$P -m galae.mock --config configs/mock_particles.yaml --n 128 --seed 204 --out data/particles_lowsn.h5 sky_sigma_scale=3.0
$P -m galae.mock --config configs/mock_particles.yaml --n 128 --seed 205 --out data/particles_highz.h5 redshift_min=0.25 redshift_max=0.4
$P -m galae.mock --config configs/mock_particles.yaml --n 128 --seed 206 --out data/particles_nou.h5 missing_band=u
$P -m galae.train --config configs/analytic_pop.yaml       # simulation-based, no labels (55 min, 1 core)
# the packaged default model (src/galae/default_model/README.md): calibrate, train on with masked
# simulations, calibrate again, amortized then refined
$P -m galae.calibrate --checkpoint runs/analytic_pop/model.pt --data data/quickstart_train.h5 --out runs/analytic_pop/model_cal.pt
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/analytic_pop/model_cal.pt sleep_mask_fraction=0.5 lr=5e-4 warmup_steps=50 max_minutes=25 out_dir=runs/mask_ft fit_prior=false
$P -m galae.calibrate --checkpoint runs/mask_ft/model.pt --data data/quickstart_train.h5 --out runs/mask_ft/model_cal.pt
$P -m galae.calibrate --checkpoint runs/mask_ft/model_cal.pt --data data/quickstart_train.h5 --n 1024 --refine-steps 60 --out runs/mask_ft/model_refcal.pt
$P -m galae.train --config configs/unet.yaml max_minutes=50  # supervised, on the particle truth maps
for s in test seeing lowsn highz nou; do
  AE=runs/mask_ft/model_refcal.pt  # = src/galae/default_model/model.pt
  $P -m galae.evaluate --checkpoint $AE --data data/particles_$s.h5 --n 128 --out runs/eval/ae_particles_$s --no-figures
  $P -m galae.evaluate --checkpoint $AE --data data/particles_$s.h5 --n 128 --refine-steps 60 --out runs/eval/ae_refined_particles_$s --no-figures
  $P -m galae.evaluate --checkpoint $AE --data data/particles_$s.h5 --n 128 --mask-neighbours --out runs/eval/ae_masked_particles_$s --no-figures
  $P -m galae.evaluate --checkpoint $AE --data data/particles_$s.h5 --n 128 --refine-steps 60 --mask-neighbours --out runs/eval/ae_refined_masked_particles_$s --no-figures
  $P -m galae.evaluate --checkpoint runs/unet/model.pt --data data/particles_$s.h5 --n 128 --out runs/eval/unet_particles_$s --no-figures
done
$P benchmarks/ae_vs_unet.py
