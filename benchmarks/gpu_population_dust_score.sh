#!/bin/bash
# Scores the GPU runs of benchmarks/gpu_population_dust.sh (and their annealed continuations, the
# "b" runs) on the CPU, against the packaged model (their start and control), each amortized:
# on 400 validation mocks of the first population (data/analytic_check.h5), of the gas population
# (data/analytic_check_gasdust.h5, the same seed) and on the 512 in-distribution particle mocks
# (masked); then the chosen run refined (60 steps) on both validation sets and the particles.
# The models are read from $GPD (runs/gpd: <name>.pt, the pieces of the device call joined with cat; the logs
# unpacked below it); then the chosen run's widths calibrated and scored again on both sets, the
# half-light radius by resolution, the particle masses by dust quartile and the calibrated run on
# issue 6's shifted sets against the U-Net's recorded figures.  About 65 minutes on 2 CPU
# cores.  Results: results/gpu_population_dust.json, rhalf_resolution.json,
# particle_mass_diagnostic_gpd_*.json, ae_vs_unet_gpu_population_dust.json;
# docs/rhalf_resolution.png.
set -e
P=python
GPD=${GPD:-runs/gpd}
CHOSEN=${CHOSEN:-mix6b}
E="$P -m galae.evaluate --no-figures --device cpu"
mkdir -p data
[ -e data/analytic_check.h5 ] || $P -m galae.mock --config configs/mock_analytic.yaml --n 1000 --seed 303 --out data/analytic_check.h5
[ -e data/analytic_check_gasdust.h5 ] || $P -m galae.mock --config configs/mock_analytic.yaml --n 400 --seed 303 --out data/analytic_check_gasdust.h5 population_dust=gas
[ -e data/particles_test.h5 ] || $P -m galae.mock --config configs/mock_particles.yaml --n 512 --seed 202 --out data/particles_test.h5
for m in packaged mix3 mix3b mix6b gas3b; do
  ck=$GPD/$m.pt
  [ $m = packaged ] && ck=src/galae/default_model/model.pt
  o=$GPD/ev_$m
  [ -e $o/check/metrics.json ] || $E --checkpoint $ck --data data/analytic_check.h5 --n 400 --out $o/check
  [ -e $o/gasdust/metrics.json ] || $E --checkpoint $ck --data data/analytic_check_gasdust.h5 --n 400 --out $o/gasdust
  [ -e $o/particles/metrics.json ] || $E --checkpoint $ck --data data/particles_test.h5 --mask-neighbours --out $o/particles
done
for m in packaged $CHOSEN; do
  ck=$GPD/$m.pt
  [ $m = packaged ] && ck=src/galae/default_model/model.pt
  o=$GPD/ev_$m
  [ -e $o/check_refined/metrics.json ] || $E --checkpoint $ck --data data/analytic_check.h5 --n 400 --refine-steps 60 --out $o/check_refined
  [ -e $o/gasdust_refined/metrics.json ] || $E --checkpoint $ck --data data/analytic_check_gasdust.h5 --n 400 --refine-steps 60 --out $o/gasdust_refined
done
# the chosen run refined on the particle mocks (the packaged model's: results/ae_vs_unet.json)
[ -e $GPD/ev_$CHOSEN/particles_refined/metrics.json ] || $E --checkpoint $GPD/$CHOSEN.pt --data data/particles_test.h5 --mask-neighbours --refine-steps 60 --out $GPD/ev_$CHOSEN/particles_refined
# the particle stellar masses by quartile of face-on A_V (results/particle_mass_diagnostic_gpd_*.json)
for m in packaged $CHOSEN; do
  $P benchmarks/particle_mass_diagnostic.py $GPD/ev_$m/particles --data data/particles_test.h5 --name gpd_$m >/dev/null
done
# the chosen run's amortized widths calibrated (on simulations of the population it was trained
# on, with the conditions of 2000 analytic mocks) and scored on both validation sets
[ -e data/analytic_train.h5 ] || $P -m galae.mock --config configs/mock_analytic.yaml --n 2000 --seed 1 --out data/analytic_train.h5
[ -e $GPD/${CHOSEN}_cal.pt ] || $P -m galae.calibrate --checkpoint $GPD/$CHOSEN.pt --data data/analytic_train.h5 --out $GPD/${CHOSEN}_cal.pt
for d in check gasdust; do
  f=data/analytic_check.h5; [ $d = check ] || f=data/analytic_check_gasdust.h5
  [ -e $GPD/ev_${CHOSEN}_cal/$d/metrics.json ] || $E --checkpoint $GPD/${CHOSEN}_cal.pt --data $f --n 400 --out $GPD/ev_${CHOSEN}_cal/$d
done
# the half-light radius by resolution, with the posterior widths' coverage (the chosen run
# calibrated; results/rhalf_resolution.json, docs/rhalf_resolution.png)
$P benchmarks/rhalf_resolution.py --reports packaged=$GPD/ev_packaged/check \
  ${CHOSEN}=$GPD/ev_${CHOSEN}_cal/check gas3b=$GPD/ev_gas3b/check \
  packaged_refined=$GPD/ev_packaged/check_refined ${CHOSEN}_refined=$GPD/ev_$CHOSEN/check_refined \
  packaged_on_gasdust=$GPD/ev_packaged/gasdust ${CHOSEN}_on_gasdust=$GPD/ev_${CHOSEN}_cal/gasdust \
  packaged_on_gasdust_refined=$GPD/ev_packaged/gasdust_refined \
  ${CHOSEN}_on_gasdust_refined=$GPD/ev_$CHOSEN/gasdust_refined --figure docs/rhalf_resolution.png \
  --figure-set packaged ${CHOSEN} packaged_on_gasdust ${CHOSEN}_on_gasdust >/dev/null
L=$GPD/runs/gpu_population_dust_logs
B=$GPD/runs/gpu_pd_b
$P benchmarks/gpu_finetune_summary.py --out-name gpu_population_dust --device-name "NVIDIA H200" \
  --what "The population's dust at the GPU's scale (benchmarks/gpu_population_dust.sh): the packaged model trained on for about 1200 steps of batch 2048 on an H200, three runs sharing it (mix3: each simulated galaxy's dust from the empirical or the gas law with even odds, lr 3e-4; mix6: the same at 6e-4; gas3: the gas law alone, 3e-4), each continued for about 830 steps with a shorter cosine (the b runs: lr 1.5e-4, 3e-4, 1.5e-4); scored amortized (the packaged model's calibrated widths, carried by init_from) on 400 validation mocks of each population and the 512 masked in-distribution particle mocks; the packaged model is the control" \
  --runs mix3=$L/mix3.csv mix6=$L/mix6.csv gas3=$L/gas3.csv mix3b=$B/mix3b.csv mix6b=$B/mix6b.csv gas3b=$B/gas3b.csv \
  --minutes mix3=6 mix6=6 gas3=6 mix3b=3.6 mix6b=3.6 gas3b=3.6 \
  --check packaged=$GPD/ev_packaged/check mix3=$GPD/ev_mix3/check mix3b=$GPD/ev_mix3b/check \
  mix6b=$GPD/ev_mix6b/check gas3b=$GPD/ev_gas3b/check \
  packaged_on_gasdust=$GPD/ev_packaged/gasdust mix3_on_gasdust=$GPD/ev_mix3/gasdust \
  mix3b_on_gasdust=$GPD/ev_mix3b/gasdust mix6b_on_gasdust=$GPD/ev_mix6b/gasdust \
  gas3b_on_gasdust=$GPD/ev_gas3b/gasdust \
  packaged_refined=$GPD/ev_packaged/check_refined ${CHOSEN}_refined=$GPD/ev_$CHOSEN/check_refined \
  packaged_on_gasdust_refined=$GPD/ev_packaged/gasdust_refined \
  ${CHOSEN}_on_gasdust_refined=$GPD/ev_$CHOSEN/gasdust_refined \
  ${CHOSEN}_calibrated=$GPD/ev_${CHOSEN}_cal/check ${CHOSEN}_calibrated_on_gasdust=$GPD/ev_${CHOSEN}_cal/gasdust \
  --particles packaged=$GPD/ev_packaged/particles mix3=$GPD/ev_mix3/particles \
  mix3b=$GPD/ev_mix3b/particles mix6b=$GPD/ev_mix6b/particles gas3b=$GPD/ev_gas3b/particles \
  ${CHOSEN}_refined=$GPD/ev_$CHOSEN/particles_refined
# the chosen run (calibrated) on issue 6's shifted particle sets, against the U-Net's recorded
# figures; the packaged model made again on two sets checks that the sets are the same galaxies
# (results/ae_vs_unet_gpu_population_dust.json)
M="$P -m galae.mock --config configs/mock_particles.yaml --n 512"
[ -e data/particles_seeing.h5 ] || $M --seed 203 --out data/particles_seeing.h5 seeing_r_median_arcsec=2.2
[ -e data/particles_lowsn.h5 ] || $M --seed 204 --out data/particles_lowsn.h5 sky_sigma_scale=3.0
[ -e data/particles_highz.h5 ] || $M --seed 205 --out data/particles_highz.h5 redshift_min=0.25 redshift_max=0.4
[ -e data/particles_nou.h5 ] || $M --seed 206 --out data/particles_nou.h5 missing_band=u
C=$GPD/ev_${CHOSEN}_cal
[ -e $C/particles/metrics.json ] || $E --checkpoint $GPD/${CHOSEN}_cal.pt --data data/particles_test.h5 --mask-neighbours --out $C/particles
for s in seeing lowsn highz nou; do
  [ -e $C/particles_$s/metrics.json ] || $E --checkpoint $GPD/${CHOSEN}_cal.pt --data data/particles_$s.h5 --mask-neighbours --out $C/particles_$s
done
[ -e $GPD/ev_packaged/particles_seeing/metrics.json ] || $E --checkpoint src/galae/default_model/model.pt --data data/particles_seeing.h5 --mask-neighbours --out $GPD/ev_packaged/particles_seeing
$P benchmarks/ae_vs_recorded_unet.py --reports test=$C/particles seeing=$C/particles_seeing \
  lowsn=$C/particles_lowsn highz=$C/particles_highz nou=$C/particles_nou \
  --check seeing=$GPD/ev_packaged/particles_seeing test=$GPD/ev_packaged/particles \
  --name ae_vs_unet_gpu_population_dust \
  --what "$CHOSEN (benchmarks/gpu_population_dust.sh, an H200; its amortized widths calibrated), amortized and masked, on issue 6's five particle sets, over the 6144-mock U-Net's recorded figures (results/ae_vs_unet.json); point ratios" >/dev/null
# with the U-Net trained again from configs/unet.yaml (35 minutes; its figures come out as the
# recorded ones to the last digit), the same ratios with paired bootstrap intervals
# (results/ae_vs_unet_gpu_population_dust_paired.json)
if [ -n "${WITH_UNET:-}" ]; then
  [ -f data/particles_train6k.h5 ] || $P -m galae.mock --config configs/mock_particles.yaml --n 6144 --seed 12 --workers 2 --out data/particles_train6k.h5
  [ -f runs/unet/model.pt ] || $P -m galae.train --config configs/unet.yaml progress=false
  R=runs/eval_gpd
  mkdir -p $R
  for s in test seeing lowsn highz nou; do
    [ -e $GPD/unet_particles_$s/metrics.json ] || $E --checkpoint runs/unet/model.pt --data data/particles_$s.h5 --out $GPD/unet_particles_$s
    src=$C/particles_$s; [ $s = test ] && src=$C/particles
    ln -sfn "$(realpath $src)" $R/ae_masked_particles_$s
    ln -sfn "$(realpath $GPD/unet_particles_$s)" $R/unet_particles_$s
  done
  ln -sfn "$(realpath $GPD/ev_$CHOSEN/particles_refined)" $R/ae_refined_masked_particles_test
  $P benchmarks/ae_vs_unet.py $R "" ae_vs_unet_gpu_population_dust_paired >/dev/null
fi
