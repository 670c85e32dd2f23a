#!/bin/bash
# The corrected birth clouds (galae.physics.dust.BIRTH_CLOUDS "effective": the young stars'
# extra screen is 1/0.44 - 1 times the slab's effective A_V, not the face-on one), on the CPU:
# the twenty-first packaged model (trained with "face_on") trained on for 1500 steps of batch 32
# (lr 1e-4) with the packaged simulation recipe rendered with "effective", against the control
# of benchmarks/particle_wake.sh (runs/pctl: the same steps, learning rate, seed and training
# file, "face_on").  Each is scored amortized on 400 validation analytic mocks and amortized and
# refined on the 512 in-distribution particle mocks (masked), both made with its own physics:
# the same galaxies, seeds and noise (data/analytic_check.h5 and data/particles_test.h5 of the
# twenty-second release's configs; the control's reports were made on the twenty-first's, kept
# in data/face_on/).  A measurement, not a release: neither run is calibrated again.  Needs
# runs/pctl and its reports (benchmarks/particle_wake.sh at the twenty-first release) and the
# twenty-first packaged model (git show 5ce3154:src/galae/default_model/model.pt, BC_INIT).
# About 15 minutes on 2 CPU cores.  Results: results/birth_clouds.json.  The same at the GPU's
# scale, in one line:
#   GPU_DEVICE=cuda GPU_CACHE=device GPU_BATCH=512 GPU_LR=3e-4 bash benchmarks/birth_clouds.sh
# and a dry run of every step (runs under /tmp/bc, results/birth_clouds_dry.json):
#   GPU_STEPS=2 BC_N=8 BC_RUNS=/tmp/bc BC_NAME=birth_clouds_dry bash benchmarks/birth_clouds.sh
# GPU_* as in benchmarks/_cpu_ft_common.sh; BC_N the galaxies evaluated (default all), BC_RUNS
# the new run's folder (runs), BC_CONTROL the control's (runs/pctl), BC_INIT the model trained
# on (runs/release21.pt), BC_NAME the result's name.
set -e
# shellcheck source=benchmarks/_cpu_ft_common.sh
source "$(dirname "$0")"/_cpu_ft_common.sh
R=${BC_RUNS:-runs}
C=${BC_CONTROL:-runs/pctl}
n=${BC_N:+--n $BC_N}
I=${BC_INIT:-runs/release21.pt}
[ -e "$I" ] || git show 5ce3154:src/galae/default_model/model.pt >"$I"
# the control's training file: the twenty-first release's particle images, other sources masked
F=data/face_on/particles_train_masked.h5
if [ ! -e $F ]; then
  mkdir -p data/face_on
  $P -m galae.mock --config configs/mock_particles.yaml --n 768 --seed 2 \
    --out data/face_on/particles_train.h5 birth_clouds=face_on
  $P -m galae.data.segmentation data/face_on/particles_train.h5 $F
fi
# benchmarks/particle_wake.sh's control recipe, rendered with the corrected birth clouds
ft_recipe $F 13 "$I"
recipe+=(wake_weight=0.0 birth_clouds=effective)
$P -m galae.train "${recipe[@]}" out_dir=$R/pbc
E="$P -m galae.evaluate --no-figures --device $dev --checkpoint $R/pbc/model.pt"
$E --data data/analytic_check.h5 --n ${BC_N:-400} --out $R/pbc/ev_check
$E --data data/particles_test.h5 --mask-neighbours $n --out $R/pbc/ev_particles_test
$E --data data/particles_test.h5 --mask-neighbours --refine-steps 60 $n \
  --out $R/pbc/ev_particles_test_refined
name=${BC_NAME:-birth_clouds}; [ "$dev" = cpu ] || name=${BC_NAME:-birth_clouds_$dev}
$P benchmarks/gpu_finetune_summary.py --out-name $name --device-name "$dev" \
  --what "corrected (effective) birth clouds: the packaged model trained on with them for $steps steps of $bs (lr $lr, $dev), against the face-on control of benchmarks/particle_wake.sh, each scored on mocks of its own physics" \
  --runs effective=$R/pbc/log.csv face_on=$C/log.csv \
  --check effective=$R/pbc/ev_check face_on=$C/ev_check \
  --particles effective=$R/pbc/ev_particles_test face_on=$C/ev_particles_test \
  effective_refined=$R/pbc/ev_particles_test_refined face_on_refined=$C/ev_particles_test_refined
