#!/bin/bash
# Which of the particle mocks' ingredients the models' SFR errors come from: the in-distribution
# test set (seed 202) made again with one ingredient switched off, the same galaxies (the same
# latents; only the switched ingredient differs), evaluated by the masked amortized autoencoder
# and the U-Net. Needs data/particles_test.h5 and the evaluations of benchmarks/ae_vs_unet.sh
# (ROOT/ae_masked_particles_test, ROOT/unet_particles_test) and runs/unet/model.pt.
# About 4 minutes per variant on two cores.
#   bash benchmarks/sfh_diagnostic.sh     # the history and metallicity variants (sfh_diagnostic.json)
#   ROOT=runs/eval_new NAME=sfr_ingredients VARIANTS="smooth noyoungarms noclumps smoothdust nodust smoothyoung" bash benchmarks/sfh_diagnostic.sh
#     # the twenty-fourth session's: the young stars' structure and their dust, against the
#     # twenty-third release and the 6144-mock U-Net (results/sfr_ingredients.json)
set -e
P=python
AE=${AE:-src/galae/default_model/model.pt}  # the docs/results.md table: the release before the twelfth (AE=<its model.pt>)
UNET=${UNET:-runs/unet/model.pt}
ROOT=${ROOT:-runs/eval}
NAME=${NAME:-sfh_diagnostic}
VARIANTS=${VARIANTS:-noburst smooth noz}
C=configs/mock_particles.yaml
mkdir -p data/sfh_diagnostic
# one sed script per variant: noburst: no starbursts; smooth: no starbursts and a smooth history
# (continuity scale 0.3 -> 0.01 dex); noz: one metallicity per population (no scatter, no
# age-metallicity relation); noyoungarms / noclumps: no young stars in arms / clumps (the
# fractions set to 0, so every random draw, and so every galaxy, stays the same); smoothdust:
# the dust's gas from the SFR smoothed over 5 kpc instead of 0.75 kpc; nodust: A_V capped at
# 1e-6 mag; smoothyoung: the last three together but the dust.
edits() {
  case $1 in
    noburst) echo 's/^  max_bursts: .*/  max_bursts: 0/' ;;
    smooth) echo 's/^  max_bursts: .*/  max_bursts: 0/;s/^  sfh_continuity_scale_dex: .*/  sfh_continuity_scale_dex: 0.01/' ;;
    noz) echo 's/^  zstar_scatter_dex: .*/  zstar_scatter_dex: 0.0/;s/^  amr_dex_per_gyr: .*/  amr_dex_per_gyr: 0.0/;s/^  bulge_age_scatter_dex: .*/  bulge_age_scatter_dex: 0.0/' ;;
    noyoungarms) echo 's/^  arm_fraction_young: .*/  arm_fraction_young: [0.0, 0.0]/' ;;
    noclumps) echo 's/^  clump_fraction_young: .*/  clump_fraction_young: [0.0, 0.0]/' ;;
    smoothdust) echo 's/^  gas_smoothing_kpc: .*/  gas_smoothing_kpc: 5.0/' ;;
    nodust) echo 's/^  av_face_on_max_mag: .*/  av_face_on_max_mag: 1.0e-6/' ;;
    smoothyoung) echo 's/^  arm_fraction_young: .*/  arm_fraction_young: [0.0, 0.0]/;s/^  clump_fraction_young: .*/  clump_fraction_young: [0.0, 0.0]/;s/^  gas_smoothing_kpc: .*/  gas_smoothing_kpc: 5.0/' ;;
    *) echo "unknown variant $1" >&2; exit 1 ;;
  esac
}
for v in $VARIANTS; do
  e=$(edits $v)
  sed -e "$e" $C > data/sfh_diagnostic/$v.yaml
  if cmp -s $C data/sfh_diagnostic/$v.yaml; then echo "variant $v changed nothing in $C" >&2; exit 1; fi
  $P -m galae.mock --config data/sfh_diagnostic/$v.yaml --n 512 --seed 202 --out data/sfh_diagnostic/particles_$v.h5 --overwrite
  $P -m galae.evaluate --checkpoint $AE --data data/sfh_diagnostic/particles_$v.h5 --mask-neighbours --out $ROOT/sfh_diagnostic/ae_masked_$v --no-figures
  $P -m galae.evaluate --checkpoint $UNET --data data/sfh_diagnostic/particles_$v.h5 --out $ROOT/sfh_diagnostic/unet_$v --no-figures
done
$P benchmarks/sfh_diagnostic.py $ROOT data $NAME
