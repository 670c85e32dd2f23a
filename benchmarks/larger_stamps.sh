#!/bin/bash
# The in-distribution particle galaxies of benchmarks/ae_vs_unet.sh (seed 202) on 96 x 96 stamps,
# evaluated amortized and refined with the packaged model, against the 64 x 64 reports of
# benchmarks/packaged_release.sh (runs/eval_new).  About 10 minutes on 2 cores.
set -e
P=python
$P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 202 --out data/particles_test96.h5 "shape=[96,96]"
$P -m galae.evaluate --checkpoint src/galae/default_model/model.pt --data data/particles_test96.h5 --mask-neighbours --out runs/eval96/ae_masked --no-figures
$P -m galae.evaluate --checkpoint src/galae/default_model/model.pt --data data/particles_test96.h5 --mask-neighbours --refine-steps 60 --out runs/eval96/ae_refined_masked --no-figures
$P benchmarks/larger_stamps.py --small runs/eval_new/ae_masked_particles_test runs/eval_new/ae_refined_masked_particles_test --large runs/eval96/ae_masked runs/eval96/ae_refined_masked
