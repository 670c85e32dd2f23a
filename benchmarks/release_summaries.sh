#!/bin/bash
# The summaries of a release's reports (shared by benchmarks/packaged_release.sh and
# benchmarks/ceiling_release.sh): the README's issue-4 figures (results/packaged_release.json),
# the autoencoder against the U-Net (results/ae_vs_unet.json, docs/ae_vs_unet.png and the
# README's issue-6 table in runs/ae_vs_unet_table.md) and the real SDSS galaxy
# (results/real_sdss.json).  Reads the reports in the folder given (default runs/eval_new).
set -e
P=python
O=${1:-runs/eval_new}
$P benchmarks/deep_data.py --out-name packaged_release --runs \
  analytic_amortized=$O/analytic_400 analytic_refined=$O/analytic_refined_400 \
  analytic_photo_z=$O/analytic_photoz_200 \
  deep_amortized=$O/analytic_deep deep_refined=$O/analytic_deep_refined \
  particles_test_amortized=$O/ae_masked_particles_test \
  particles_test_refined=$O/ae_refined_masked_particles_test \
  analytic_refined_above_chi2_3=$O/analytic_above3_400 deep_refined_above_chi2_3=$O/analytic_deep_above3 \
  particles_test_refined_above_chi2_3=$O/particles_above3_masked_test
$P benchmarks/ae_vs_unet.py $O docs/ae_vs_unet.png
mkdir -p runs && $P benchmarks/ae_vs_unet_table.py > runs/ae_vs_unet_table.md
$P benchmarks/real_sdss.py
