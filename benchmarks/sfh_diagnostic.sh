#!/bin/bash
# Which of the particle mocks' ingredients the models' SFR errors come from: the in-distribution
# test set (seed 202) made again with one ingredient switched off, the same galaxies (the same
# latents; only the switched ingredient differs), evaluated by the masked amortized autoencoder
# and the U-Net. Needs data/particles_test.h5 and the evaluations of benchmarks/ae_vs_unet.sh
# (runs/eval/ae_masked_particles_test, runs/eval/unet_particles_test) and runs/unet/model.pt.
# About 4 minutes per variant on two cores.
set -e
P=python
AE=${AE:-src/galae/default_model/model.pt}  # the docs/results.md table: the release before the twelfth (AE=<its model.pt>)
C=configs/mock_particles.yaml
mkdir -p data/sfh_diagnostic
# noburst: no starbursts; smooth: no starbursts and a smooth history (continuity scale 0.3 ->
# 0.01 dex); noz: one metallicity per population (no scatter, no age-metallicity relation)
sed -e 's/^  max_bursts: .*/  max_bursts: 0/' $C > data/sfh_diagnostic/noburst.yaml
sed -e 's/^  max_bursts: .*/  max_bursts: 0/' -e 's/^  sfh_continuity_scale_dex: .*/  sfh_continuity_scale_dex: 0.01/' $C > data/sfh_diagnostic/smooth.yaml
sed -e 's/^  zstar_scatter_dex: .*/  zstar_scatter_dex: 0.0/' -e 's/^  amr_dex_per_gyr: .*/  amr_dex_per_gyr: 0.0/' -e 's/^  bulge_age_scatter_dex: .*/  bulge_age_scatter_dex: 0.0/' $C > data/sfh_diagnostic/noz.yaml
for v in noburst smooth noz; do
  $P -m galae.mock --config data/sfh_diagnostic/$v.yaml --n 512 --seed 202 --out data/sfh_diagnostic/particles_$v.h5 --overwrite
  $P -m galae.evaluate --checkpoint $AE --data data/sfh_diagnostic/particles_$v.h5 --mask-neighbours --out runs/eval/sfh_diagnostic/ae_masked_$v --no-figures
  $P -m galae.evaluate --checkpoint runs/unet/model.pt --data data/sfh_diagnostic/particles_$v.h5 --out runs/eval/sfh_diagnostic/unet_$v --no-figures
done
$P benchmarks/sfh_diagnostic.py runs/eval data
