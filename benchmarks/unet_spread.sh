#!/bin/bash
# The U-Net's own run-to-run spread against the margins left in issue 6: a third training of
# configs/unet.yaml (seed 1, the recorded runs' 1750 steps; ~7 minutes on 2 cores), evaluated
# on the five particle sets, and the packaged model (amortized and refined, masked; the reports
# of benchmarks/packaged_release.sh in runs/eval_new) against it.  Needs data/particles_*.h5 of
# benchmarks/ae_vs_unet.sh and ae_vs_unet_candidate.sh.  About 15 minutes on 2 CPU cores.
# Results: results/ae_vs_unet_unet3.json.
set -e
P=python
O=runs/eval_unet3
$P -m galae.train --config configs/unet.yaml max_steps=1750 max_minutes=100 seed=1 out_dir=runs/unet3
mkdir -p $O
for s in test seeing lowsn highz nou; do
  $P -m galae.evaluate --no-figures --checkpoint runs/unet3/model.pt --data data/particles_$s.h5 --out $O/unet_particles_$s
  ln -sfn ../eval_new/ae_masked_particles_$s $O/ae_masked_particles_$s
  ln -sfn ../eval_new/ae_refined_masked_particles_$s $O/ae_refined_masked_particles_$s
done
$P benchmarks/ae_vs_unet.py $O "" ae_vs_unet_unet3
