#!/bin/bash
# Is the U-Net baseline starved of data?  configs/unet.yaml as it was (1750 steps on the 768
# mocks of data/particles_train.h5) against the same trained on 6144 particle mocks (seed 12) for
# 1750 steps and for 5250, all three scored on 512 validation particle mocks (seed 207), the
# choice made by the rule written in benchmarks/unet_data_size.py, and the packaged autoencoder
# against both new U-Nets on the five particle sets (the twenty-second release's reports, made by
# benchmarks/birth_clouds_release.sh in runs/eval_new).  About 45 minutes on 2 CPU cores (7 more
# for the reference, if not trained); 1.3 GB of mocks.  The chosen U-Net (unet6k_5250) became
# configs/unet.yaml's recipe and runs/unet.  Results: results/unet_data_size.json,
# results/ae_vs_unet_unet6k_1750.json, results/ae_vs_unet_unet6k_5250.json.
set -e
P=python
E="$P -m galae.evaluate --no-figures"
R=runs/unet_size
mkdir -p $R
[ -f data/particles_train6k.h5 ] || $P -m galae.mock --config configs/mock_particles.yaml --n 6144 --seed 12 --workers 2 --out data/particles_train6k.h5
[ -f data/particles_check.h5 ] || $P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 207 --out data/particles_check.h5
for steps in 1750 5250; do
  [ -f $R/unet6k_$steps/model.pt ] || $P -m galae.train --config configs/unet.yaml data=data/particles_train6k.h5 \
    max_steps=$steps max_minutes=100 seed=0 out_dir=$R/unet6k_$steps
done
# the reference: the twenty-second submission's U-Net (recorded run: runs/unet768, linked here)
[ -f $R/unet768_1750/model.pt ] || $P -m galae.train --config configs/unet.yaml data=data/particles_train.h5 \
  mock_n=768 max_steps=1750 max_minutes=100 seed=0 out_dir=$R/unet768_1750
for u in unet768_1750 unet6k_1750 unet6k_5250; do
  [ -f $R/val_$u/metrics.json ] || $E --checkpoint $R/$u/model.pt --data data/particles_check.h5 --out $R/val_$u
done
$P benchmarks/unet_data_size.py $R
for u in unet6k_1750 unet6k_5250; do
  O=$R/eval_$u
  mkdir -p $O
  for s in test seeing lowsn highz nou; do
    [ -f $O/unet_particles_$s/metrics.json ] || $E --checkpoint $R/$u/model.pt --data data/particles_$s.h5 --out $O/unet_particles_$s
    ln -sfn ../../eval_new/ae_masked_particles_$s $O/ae_masked_particles_$s
    ln -sfn ../../eval_new/ae_refined_masked_particles_$s $O/ae_refined_masked_particles_$s
  done
  $P benchmarks/ae_vs_unet.py $O "" ae_vs_unet_$u
done
