#!/bin/bash
# The nineteenth release of the packaged model: the configs/sdss.yaml encoder (3.9 M parameters)
# trained on an H200 by benchmarks/gpu_finetune.sh ("big", 1659 steps of batch 2048) and two
# continuations on the same machine (1100 steps at lr 9e-4, then 900 at 4e-4; the commands are in
# src/galae/default_model/README.md), brought back as runs/gpu_ft/big3.pt.  On the CPU: its
# learned population prior (max_steps=0: no step, the prior alone), its amortized and refined
# widths calibrated, then every figure of the README measured again (benchmarks/packaged_release.sh
# and benchmarks/release_figures.sh).  About 2 hours on 2 CPU cores.
set -e
P=python
R="--config configs/analytic_pop.yaml data=data/analytic_train.h5 disk_history=tau
  sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 sleep_missing_band_fraction=0.2
  sleep_history_scale_dex=0.3 sleep_sigma_scale_dex=[-1.0,0.5] sleep_sigma_scale_fraction=0.5
  sleep_psf_scale_dex=[0.0,0.35] sleep_psf_scale_fraction=0.3 batch_size=2048
  widths=[32,64,128,192] blocks_per_stage=2 hidden=512 rank=6"
# shellcheck disable=SC2086
$P -m galae.train $R init_from=runs/gpu_ft/big3.pt max_steps=0 fit_prior=true prior_epochs=40 \
  progress=false resume=false overwrite=true out_dir=runs/gpu_ft/big3_prior
$P -m galae.calibrate --checkpoint runs/gpu_ft/big3_prior/model.pt --data data/analytic_train.h5 \
  --out runs/gpu_ft/big3_cal.pt
$P -m galae.calibrate --checkpoint runs/gpu_ft/big3_cal.pt --data data/analytic_train.h5 --n 1024 \
  --refine-steps 60 --out runs/gpu_ft/big3_refcal.pt
cp runs/gpu_ft/big3_refcal.pt src/galae/default_model/model.pt
bash benchmarks/packaged_release.sh
bash benchmarks/release_figures.sh
