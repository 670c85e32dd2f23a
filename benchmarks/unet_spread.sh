#!/bin/bash
# The U-Net's own run-to-run spread against the margins left in issue 6: another training of
# the U-Net recipe with seed 1, evaluated on the five particle sets, and the packaged model
# (amortized and refined, masked; its reports in runs/eval_new) against it.  Needs
# data/particles_*.h5 of benchmarks/ae_vs_unet.sh.
#   bash benchmarks/unet_spread.sh          # configs/unet.yaml as it is (5250 steps on 6144
#                                           # mocks; ~35 minutes on 2 cores): results/ae_vs_unet_unet6k_seed1.json
#   TAG=unet3 bash benchmarks/unet_spread.sh   # the twenty-second submission's recipe (1750
#                                           # steps on 768 mocks; ~15 minutes): results/ae_vs_unet_unet3.json
set -e
P=python
TAG=${TAG:-unet6k_seed1}
case $TAG in
  unet3) RECIPE="data=data/particles_train.h5 mock_n=768 max_steps=1750 max_minutes=100" ;;
  *) RECIPE="" ;;
esac
O=runs/eval_$TAG
[ -f runs/$TAG/model.pt ] || $P -m galae.train --config configs/unet.yaml $RECIPE seed=1 out_dir=runs/$TAG progress=false
mkdir -p $O
for s in test seeing lowsn highz nou; do
  $P -m galae.evaluate --no-figures --checkpoint runs/$TAG/model.pt --data data/particles_$s.h5 --out $O/unet_particles_$s
  ln -sfn ../eval_new/ae_masked_particles_$s $O/ae_masked_particles_$s
  ln -sfn ../eval_new/ae_refined_masked_particles_$s $O/ae_refined_masked_particles_$s
done
$P benchmarks/ae_vs_unet.py $O "" ae_vs_unet_$TAG
