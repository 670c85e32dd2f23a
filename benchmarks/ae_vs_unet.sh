#!/bin/bash
# Autoencoder vs U-Net on particle mocks, in distribution and under four shifts.
set -e
P=python
$P -m galae.mock --config configs/mock_particles.yaml --n 768 --seed 2 --out data/particles_train.h5
# 512 galaxies per set (the generator seeds each chunk of 64, so the first 128 of each set are the
# 128-galaxy sets of earlier submissions)
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 202 --out data/particles_test.h5
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 203 --out data/particles_seeing.h5 seeing_r_median_arcsec=2.2
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 204 --out data/particles_lowsn.h5 sky_sigma_scale=3.0
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 205 --out data/particles_highz.h5 redshift_min=0.25 redshift_max=0.4
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 206 --out data/particles_nou.h5 missing_band=u
$P -m galae.train --config configs/analytic_pop.yaml       # simulation-based, no labels (55 min, 1 core)
# the packaged default model (src/galae/default_model/README.md): calibrate, train on with masked
# simulations, calibrate again, amortized then refined
$P -m galae.calibrate --checkpoint runs/analytic_pop/model.pt --data data/quickstart_train.h5 --out runs/analytic_pop/model_cal.pt
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/analytic_pop/model_cal.pt sleep_mask_fraction=0.5 lr=5e-4 warmup_steps=50 max_minutes=25 out_dir=runs/mask_ft fit_prior=false
$P -m galae.calibrate --checkpoint runs/mask_ft/model.pt --data data/quickstart_train.h5 --out runs/mask_ft/model_cal.pt
$P -m galae.calibrate --checkpoint runs/mask_ft/model_cal.pt --data data/quickstart_train.h5 --n 1024 --refine-steps 60 --out runs/mask_ft/model_refcal.pt
# ... then 1556 steps on a GPU, 789 annealing steps on the CPU, the photo-z head fitted alone,
# calibrated again (src/galae/default_model/README.md, "This release"; the GPU step needs CUDA)
$P -m galae.mock --config configs/mock_analytic.yaml --n 1600 --seed 11 --out data/gtrain.h5 --workers 12
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/mask_ft/model_refcal.pt data=data/gtrain.h5 sleep_mask_fraction=0.5 lr=5e-4 warmup_steps=50 max_minutes=3.2 max_steps=100000 batch_size=256 out_dir=runs/gpu_ft fit_prior=false num_workers=6 device=cuda
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/gpu_ft/model.pt sleep_mask_fraction=0.5 lr=2e-4 warmup_steps=20 max_steps=1600 max_minutes=7 out_dir=runs/gpu_anneal fit_prior=false
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/gpu_anneal/model.pt "trainable=[encoder.out_z]" sleep_photo_z_fraction=1.0 sleep_mask_fraction=0.5 lr=2e-3 warmup_steps=20 max_steps=1500 max_minutes=6 out_dir=runs/pz_head fit_prior=false
$P -m galae.calibrate --checkpoint runs/pz_head/model.pt --data data/quickstart_train.h5 --out runs/pz_head/model_cal.pt
$P -m galae.calibrate --checkpoint runs/pz_head/model_cal.pt --data data/quickstart_train.h5 --n 1024 --refine-steps 60 --out runs/pz_head/model_refcal.pt
# ... then fine-tuned for the tau-model disk (galae.physics.sfh; the mocks rendered with it)
$P -m galae.mock --config configs/mock_analytic.yaml --n 2000 --seed 1 --out data/analytic_train.h5
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/pz_head/model_refcal.pt data=data/analytic_train.h5 disk_history=tau sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 lr=5e-4 warmup_steps=50 max_steps=12000 max_minutes=48 out_dir=runs/sfh_ft fit_prior=false
$P -m galae.calibrate --checkpoint runs/sfh_ft/model.pt --data data/analytic_train.h5 --out runs/sfh_ft/model_cal.pt
$P -m galae.calibrate --checkpoint runs/sfh_ft/model_cal.pt --data data/analytic_train.h5 --n 1024 --refine-steps 60 --out runs/sfh_ft/model_refcal.pt
# ... then 2781 steps on a GPU, 6000 on the CPU with a fifth of the simulated stamps missing a
# whole band, calibrated again (src/galae/default_model/README.md, "This release"; CUDA needed)
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/sfh_ft/model_refcal.pt data=data/gtrain.h5 disk_history=tau sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 lr=5e-4 warmup_steps=50 max_minutes=3.8 max_steps=2200 batch_size=256 out_dir=runs/gpu_ft9 fit_prior=false num_workers=6 device=cuda
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/gpu_ft9/model.pt data=data/gtrain.h5 disk_history=tau sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 lr=2e-4 warmup_steps=20 max_minutes=4.0 max_steps=1400 batch_size=256 out_dir=runs/gpu_ft9b fit_prior=false num_workers=6 device=cuda seed=4
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/gpu_ft9b/model.pt data=data/analytic_train.h5 disk_history=tau sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 sleep_missing_band_fraction=0.2 lr=2e-4 warmup_steps=20 max_steps=6000 max_minutes=22 out_dir=runs/band_ft fit_prior=false
$P -m galae.calibrate --checkpoint runs/band_ft/model.pt --data data/analytic_train.h5 --out runs/band_ft/model_cal.pt
$P -m galae.calibrate --checkpoint runs/band_ft/model_cal.pt --data data/analytic_train.h5 --n 1024 --refine-steps 60 --out runs/band_ft/model_refcal.pt
# ... then 6000 CPU steps with disk histories that go up and down (sleep_history_scale_dex, a
# nuisance of the simulations), calibrated again under it (twelfth session; this release)
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/band_ft/model_refcal.pt data=data/analytic_train.h5 disk_history=tau sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 sleep_missing_band_fraction=0.2 sleep_history_scale_dex=0.3 lr=2e-4 warmup_steps=20 max_steps=6000 max_minutes=22 out_dir=runs/hist_ft fit_prior=false
$P -m galae.calibrate --checkpoint runs/hist_ft/model.pt --data data/analytic_train.h5 --out runs/hist_ft/model_cal.pt
$P -m galae.calibrate --checkpoint runs/hist_ft/model_cal.pt --data data/analytic_train.h5 --n 1024 --refine-steps 60 --out runs/hist_ft/model_refcal.pt
# ... then 6000 CPU steps with half the simulated stamps at 10**U(-1, 0.5) times their sigma
# (sleep_sigma_scale_dex: images deeper and shallower than the data), calibrated again
# (fourteenth session; this release)
$P -m galae.train --config configs/analytic_pop.yaml init_from=runs/hist_ft/model_refcal.pt data=data/analytic_train.h5 disk_history=tau sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 sleep_missing_band_fraction=0.2 sleep_history_scale_dex=0.3 "sleep_sigma_scale_dex=[-1.0,0.5]" sleep_sigma_scale_fraction=0.5 lr=2e-4 warmup_steps=20 max_steps=6000 max_minutes=22 out_dir=runs/sigma_ft fit_prior=false
$P -m galae.calibrate --checkpoint runs/sigma_ft/model.pt --data data/analytic_train.h5 --out runs/sigma_ft/model_cal.pt
$P -m galae.calibrate --checkpoint runs/sigma_ft/model_cal.pt --data data/analytic_train.h5 --n 1024 --refine-steps 60 --out runs/sigma_ft/model_refcal.pt
# supervised, on the particle truth maps; the README's U-Net is a second training of this recipe
# (seed 0, 1750 steps: benchmarks/ae_vs_unet_candidate.sh), the first one's figures are in
# results/ae_vs_unet_hist_ft.json
# (until the twenty-second submission: 1750 steps on the 768 mocks of data/particles_train.h5,
# data=data/particles_train.h5 mock_n=768 max_steps=1750; since the twenty-third the config's
# 5250 steps on 6144 mocks, benchmarks/unet_data_size.sh)
$P -m galae.mock --config configs/mock_particles.yaml --n 6144 --seed 12 --workers 2 --out data/particles_train6k.h5
$P -m galae.train --config configs/unet.yaml
AE=runs/sigma_ft/model_refcal.pt  # = src/galae/default_model/model.pt
# the README table: the masked autoencoder, amortized and refined, and the U-Net on all 512
# galaxies of each set (about 45 minutes on 2 cores); each evaluation also writes per_galaxy.npz,
# from which ae_vs_unet.py puts paired bootstrap intervals on every ratio
for s in test seeing lowsn highz nou; do
  $P -m galae.evaluate --checkpoint runs/unet/model.pt --data data/particles_$s.h5 --out runs/eval/unet_particles_$s --no-figures
  $P -m galae.evaluate --checkpoint $AE --data data/particles_$s.h5 --mask-neighbours --out runs/eval/ae_masked_particles_$s --no-figures
  $P -m galae.evaluate --checkpoint $AE --data data/particles_$s.h5 --refine-steps 60 --mask-neighbours --out runs/eval/ae_refined_masked_particles_$s --no-figures
done
# the four-variant table of docs/results.md (unmasked too): the first 128 galaxies of each set (the
# one there was measured on an earlier release, as it says; this measures the current one)
for s in test seeing lowsn highz nou; do
  $P -m galae.evaluate --checkpoint $AE --data data/particles_$s.h5 --n 128 --out runs/eval128/ae_particles_$s --no-figures
  $P -m galae.evaluate --checkpoint $AE --data data/particles_$s.h5 --n 128 --refine-steps 60 --out runs/eval128/ae_refined_particles_$s --no-figures
  $P -m galae.evaluate --checkpoint $AE --data data/particles_$s.h5 --n 128 --mask-neighbours --out runs/eval128/ae_masked_particles_$s --no-figures
  $P -m galae.evaluate --checkpoint $AE --data data/particles_$s.h5 --n 128 --refine-steps 60 --mask-neighbours --out runs/eval128/ae_refined_masked_particles_$s --no-figures
  $P -m galae.evaluate --checkpoint runs/unet/model.pt --data data/particles_$s.h5 --n 128 --out runs/eval128/unet_particles_$s --no-figures
done
$P benchmarks/ae_vs_unet.py runs/eval docs/ae_vs_unet.png   # results/ae_vs_unet.json and the figure
mkdir -p runs && $P benchmarks/ae_vs_unet_table.py > runs/ae_vs_unet_table.md  # the README's issue-6 table
$P benchmarks/ae_vs_unet.py runs/eval128 "" ae_vs_unet_128   # results/ae_vs_unet_128.json
# which summary of the map posterior to report (docs/results.md, issue 6): four estimators, 32 draws (the
# figures in docs/results.md are an earlier release's, as for the four-variant table)
for s in test seeing lowsn highz nou; do
  $P benchmarks/map_estimators.py --data data/particles_$s.h5 --n 128 --name amortized_$s
done
$P benchmarks/map_estimators.py --data data/particles_test.h5 --n 128 --refine-steps 60 --name refined_test
