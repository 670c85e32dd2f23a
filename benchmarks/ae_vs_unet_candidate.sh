#!/bin/bash
# Issue 6 for the fine-tune of benchmarks/deep_data.sh (runs/sigma_ft/model_cal.pt), against a
# second training of the U-Net (configs/unet.yaml, seed 0, the recorded run's 1750 steps; ~7
# minutes on 2 cores), and the packaged model against that same U-Net on the sets where issue 6
# is short.  Run after benchmarks/deep_data.sh (its mocks and the fine-tune's amortized
# evaluations); about an hour on 2 CPU cores.  Results: results/ae_vs_unet_sigma_ft_unet2.json,
# results/ae_vs_unet_packaged_unet2.json.
set -e
P=python
NEW=runs/sigma_ft/model_cal.pt
PKG=src/galae/default_model/model.pt
E="$P -m galae.evaluate --no-figures"
$P -m galae.mock --config configs/mock_particles.yaml --n 768 --seed 2 --out data/particles_train.h5
$P -m galae.train --config configs/unet.yaml data=data/particles_train.h5 mock_n=768 max_steps=1750 max_minutes=100
for s in test seeing lowsn highz nou; do
  $E --checkpoint runs/unet/model.pt --data data/particles_$s.h5 --out runs/eval/unet_particles_$s
done
for s in seeing lowsn highz nou; do
  $E --checkpoint $NEW --data data/particles_$s.h5 --refine-steps 60 --mask-neighbours --out runs/eval/new_refined_masked_$s
done
for s in seeing lowsn highz; do
  $E --checkpoint $PKG --data data/particles_$s.h5 --mask-neighbours --out runs/eval/ae_masked_$s
done
# the folder layout benchmarks/ae_vs_unet.py reads: <model>_particles_<set>
mkdir -p runs/eval_sigma_ft runs/eval_pkg_unet2
for s in test seeing lowsn highz nou; do
  ln -sfn ../eval/new_masked_$s runs/eval_sigma_ft/ae_masked_particles_$s
  ln -sfn ../eval/new_refined_masked_$s runs/eval_sigma_ft/ae_refined_masked_particles_$s
  ln -sfn ../eval/unet_particles_$s runs/eval_sigma_ft/unet_particles_$s
done
for s in test seeing lowsn highz; do
  ln -sfn ../eval/ae_masked_$s runs/eval_pkg_unet2/ae_masked_particles_$s
  ln -sfn ../eval/unet_particles_$s runs/eval_pkg_unet2/unet_particles_$s
done
ln -sfn ../eval/ae_refined_masked_test runs/eval_pkg_unet2/ae_refined_masked_particles_test
$P benchmarks/ae_vs_unet.py runs/eval_sigma_ft "" ae_vs_unet_sigma_ft_unet2
$P benchmarks/ae_vs_unet.py runs/eval_pkg_unet2 "" ae_vs_unet_packaged_unet2
$P benchmarks/ae_vs_unet_table.py benchmarks/results/ae_vs_unet_sigma_ft_unet2.json
