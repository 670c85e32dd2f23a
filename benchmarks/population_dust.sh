#!/bin/bash
# The population prior's dust from its gas (galae.physics.population.POPULATION_DUST "gas": the
# central face-on A_V from the Kennicutt-Schmidt gas of the SFR disk and the Galactic
# dust-to-gas ratio, the renderer's own dust law, instead of galae's first relation set by
# eye), on the CPU: the twenty-third packaged model trained on for 1500 steps of batch 32 (lr
# 1e-4, seed 22) with its simulation recipe drawing the dustier population
# (sleep_population_dust=gas), against the control of benchmarks/dust_clumping.sh (runs/dctl:
# the same steps, learning rate and seed, the first population).  Each is scored amortized on
# 400 validation analytic mocks of each population (data/analytic_check.h5 and
# data/analytic_check_gasdust.h5, the same seed) and on the 512 in-distribution particle mocks
# (masked), and against the U-Net.  A measurement, not a release.  Needs what
# benchmarks/dust_clumping.sh needs, and its control run.  Then the same run trained on for
# 3000 more steps (runs/pdust2, seed 23; 4500 in all), scored the same way, and refined (60
# steps) on both validation sets and the particle mocks, with the control refined on both
# validation sets; and a hedge, each simulated galaxy's dust from one of the two laws with
# equal odds (sleep_population_dust=empirical+gas, runs/pdmix, 1500 steps from the packaged
# model, scored as the first run); the continuation is also scored on issue 6's four shifted
# particle sets against the U-Net.  About 95 minutes on 2 CPU cores.
# Results: results/population_dust.json.  The same at the GPU's scale, in one line:
#   GPU_DEVICE=cuda GPU_CACHE=device GPU_BATCH=512 GPU_LR=3e-4 bash benchmarks/population_dust.sh
# GPU_* as in benchmarks/_cpu_ft_common.sh; PD_RUNS the run's folder (runs), PD_CONTROL the
# control's (runs/dctl), PD_NAME the result's name, PD_N the galaxies evaluated.
set -e
# shellcheck source=benchmarks/_cpu_ft_common.sh
source "$(dirname "$0")"/_cpu_ft_common.sh
R=${PD_RUNS:-runs}
C=${PD_CONTROL:-runs/dctl}
n=${PD_N:+--n $PD_N}
F=data/particles_train_masked.h5
[ -e $F ] || $P -m galae.data.segmentation data/particles_train.h5 $F
G=data/analytic_check_gasdust.h5
[ -e $G ] || $P -m galae.mock --config configs/mock_analytic.yaml --n 400 --seed 303 --out $G population_dust=gas
ft_recipe $F 20
recipe+=(wake_weight=0.0 sleep_population_dust=gas)
$P -m galae.train "${recipe[@]}" out_dir=$R/pdust
for v in $R/pdust $C; do
  E="$P -m galae.evaluate --no-figures --device $dev --checkpoint $v/model.pt"
  [ -e $v/ev_check/metrics.json ] || $E --data data/analytic_check.h5 --n ${PD_N:-400} --out $v/ev_check
  $E --data $G --n ${PD_N:-400} --out $v/ev_check_gasdust
  [ -e $v/ev_particles_test/metrics.json ] || $E --data data/particles_test.h5 --mask-neighbours $n --out $v/ev_particles_test
done
# trained on: 3000 more steps from runs/pdust
steps2=$((2 * steps))
ft_recipe $F 20 $R/pdust/model.pt
recipe+=(wake_weight=0.0 sleep_population_dust=gas seed=23 max_steps=$steps2)
$P -m galae.train "${recipe[@]}" out_dir=$R/pdust2
E="$P -m galae.evaluate --no-figures --device $dev"
$E --checkpoint $R/pdust2/model.pt --data $G --n ${PD_N:-400} --out $R/pdust2/ev_check_gasdust
$E --checkpoint $R/pdust2/model.pt --data data/particles_test.h5 --mask-neighbours $n --out $R/pdust2/ev_particles_test
$E --checkpoint $R/pdust2/model.pt --data data/analytic_check.h5 --n ${PD_N:-400} --out $R/pdust2/ev_check
# refined (60 steps): both validation sets (the continuation and the control), and
# the particle mocks
for v in $R/pdust2 $C; do
  $E --checkpoint $v/model.pt --data $G --n ${PD_N:-400} --refine-steps 60 --out $v/ev_check_gasdust_refined
  $E --checkpoint $v/model.pt --data data/analytic_check.h5 --n ${PD_N:-400} --refine-steps 60 --out $v/ev_check_refined
done
$E --checkpoint $R/pdust2/model.pt --data data/particles_test.h5 --mask-neighbours --refine-steps 60 $n --out $R/pdust2/ev_particles_test_refined
# the continuation on issue 6's four shifted sets (amortized, masked), against the U-Net:
# results/ae_vs_unet_population_dust.json (its ae_masked rows)
mkdir -p runs/eval_pdust2
for s in test seeing lowsn highz nou; do
  [ $s = test ] || $E --checkpoint $R/pdust2/model.pt --data data/particles_$s.h5 --mask-neighbours $n --out $R/pdust2/ev_particles_$s
  ln -sfn "$(realpath $R/pdust2/ev_particles_$s)" runs/eval_pdust2/ae_masked_particles_$s
  ln -sfn "$(realpath runs/eval_new/unet_particles_$s)" runs/eval_pdust2/unet_particles_$s
done
$P benchmarks/ae_vs_unet.py runs/eval_pdust2 "" ae_vs_unet_population_dust
# a hedge: each simulated galaxy's dust from one of the two laws, with equal odds
# (sleep_population_dust=empirical+gas), 1500 steps from the packaged model as the control
ft_recipe $F 20
recipe+=(wake_weight=0.0 "sleep_population_dust=empirical+gas")
$P -m galae.train "${recipe[@]}" out_dir=$R/pdmix
for d in check check_gasdust; do
  f=data/analytic_$d.h5; [ $d = check ] || f=$G
  $E --checkpoint $R/pdmix/model.pt --data $f --n ${PD_N:-400} --out $R/pdmix/ev_$d
done
$E --checkpoint $R/pdmix/model.pt --data data/particles_test.h5 --mask-neighbours $n --out $R/pdmix/ev_particles_test
name=${PD_NAME:-population_dust}; [ "$dev" = cpu ] || name=${PD_NAME:-population_dust_$dev}
$P benchmarks/gpu_finetune_summary.py --out-name $name --device-name "$dev" \
  --what "the population's dust from its gas (sleep_population_dust=gas): the packaged model trained on with it for $steps steps of $bs (lr $lr, $dev), then $steps2 more (gas_4500), against the control of benchmarks/dust_clumping.sh (the first population, $steps steps)" \
  --runs gas=$R/pdust/log.csv gas_4500=$R/pdust2/log.csv mixed=$R/pdmix/log.csv control=$C/log.csv \
  --check gas=$R/pdust/ev_check gas_4500=$R/pdust2/ev_check mixed=$R/pdmix/ev_check control=$C/ev_check \
  mixed_on_gasdust=$R/pdmix/ev_check_gasdust \
  gas_on_gasdust=$R/pdust/ev_check_gasdust gas_4500_on_gasdust=$R/pdust2/ev_check_gasdust \
  control_on_gasdust=$C/ev_check_gasdust gas_4500_on_gasdust_refined=$R/pdust2/ev_check_gasdust_refined \
  gas_4500_refined=$R/pdust2/ev_check_refined control_refined=$C/ev_check_refined \
  control_on_gasdust_refined=$C/ev_check_gasdust_refined \
  --particles gas=$R/pdust/ev_particles_test gas_4500=$R/pdust2/ev_particles_test \
  mixed=$R/pdmix/ev_particles_test \
  gas_4500_refined=$R/pdust2/ev_particles_test_refined control=$C/ev_particles_test \
  packaged=runs/eval_new/ae_masked_particles_test \
  packaged_refined=runs/eval_new/ae_refined_masked_particles_test unet=runs/eval_new/unet_particles_test
