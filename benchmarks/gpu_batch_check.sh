#!/usr/bin/env bash
# configs/sdss.yaml on one GPU: training throughput against batch size, and a short training run
# at a large batch, for one prepared device call (about 8 minutes on an H200):
#
#   bash benchmarks/gpu_batch_check.sh          # from the repository root, galae importable
#
#   1. benchmarks/train_step.py: seconds per step at batch 256 (the former config's) to 4096, the
#      simulation term alone, with one profiled step at 256 (kernel launches, GPU-busy fraction);
#      then with the ELBO term at 256 and 2048;
#   2. the CUDA test of the on-device data cache;
#   3. configs/sdss.yaml trained for GPU_TRAIN_MINUTES (default 2) at batch GPU_BATCH (default
#      2048; lr, warmup and max_steps scaled to keep the config's galaxies and warm-up) on
#      GPU_N_TRAIN (2304) analytic mocks held on the GPU (GPU_CACHE=device), then evaluated on
#      256 held-out mocks: to set beside the 2-minute run at batch 256 of
#      benchmarks/results/train_gpu_check.json (benchmarks/gpu_check.sh).
# GPU_SKIP="bench tests" leaves out steps 1 and 2.
# Results go to $OUT (default benchmarks/results/gpu); the training run's summary also to
# benchmarks/results/train_gpu_batch<batch>.json (benchmarks/gpu_train_summary.py).
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT" data
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
minutes=${GPU_TRAIN_MINUTES:-2}
bs=${GPU_BATCH:-2048}
cache=${GPU_CACHE:-device}     # TrainConfig.data_cache of the training run
n_train=${GPU_N_TRAIN:-2304}   # analytic mocks to train on
# the 60000 steps x 256 galaxies and 1000 x 256 of warm-up of the former config, at batch $bs (at
# 2048: configs/sdss.yaml's 7500 steps, warm-up 125, lr 2.83e-3);
# the learning rate grows as the square root of the batch (from 1e-3 at 256)
steps=$(( 60000 * 256 / bs )); warm=$(( 1000 * 256 / bs ))
lr=$(python3 -c "print(f'{1e-3 * ($bs / 256) ** 0.5:.3g}')")
# loader workers: each holds two batches of stamps in shared memory (about 0.4 GB per batch of
# 2048), so no more than /dev/shm allows
shm_mb=$(df -m /dev/shm 2>/dev/null | awk 'NR==2{print $4}')
workers=$(( ${shm_mb:-4000} * 256 / (100 * bs) )); (( workers > 10 )) && workers=10
(( workers < 1 )) && workers=1
nvidia-smi -L
echo "/dev/shm free: ${shm_mb:-?} MB; loader workers: $workers; batch $bs, lr $lr, warm-up $warm"
python3 -m galae.mock --config configs/mock_analytic.yaml --n "$n_train" --seed 11 \
  --out data/gpu_train.h5 --workers 12 --overwrite >"$OUT"/mock.log 2>&1 || exit 1
python3 -m galae.mock --config configs/mock_analytic.yaml --n 256 --seed 12 \
  --out data/gpu_test.h5 --workers 4 --overwrite >>"$OUT"/mock.log 2>&1 || exit 1
if [[ " ${GPU_SKIP:-} " != *" bench "* ]]; then
(timeout 150 python3 benchmarks/train_step.py --data data/gpu_train.h5 \
  --config configs/sdss.yaml --device cuda --batch-sizes 256 1024 2048 4096 --steps 8 \
  --profile --out-name train_step_cuda) 2>&1 | grep -v '^ ' | tail -n 8
(timeout 70 python3 benchmarks/train_step.py --data data/gpu_train.h5 \
  --config configs/sdss.yaml --device cuda --batch-sizes 256 2048 --steps 6 --wake \
  --out-name train_step_cuda_wake) 2>&1 | grep -v '^ ' | tail -n 4
cp benchmarks/results/train_step_cuda*.json "$OUT"/ 2>/dev/null
fi
if [[ " ${GPU_SKIP:-} " != *" tests "* ]]; then
  timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -k data_cache 2>&1 | tail -n 2
fi
timeout $(( 60 * minutes + 100 )) python3 -m galae.train --config configs/sdss.yaml \
  data=data/gpu_train.h5 out_dir=runs/gpu_batch max_minutes="$minutes" batch_size="$bs" \
  lr="$lr" warmup_steps="$warm" max_steps="$steps" prior_epochs=3 eval_every=50 \
  ckpt_every=100000 num_workers="$workers" data_cache="$cache" progress=false >"$OUT"/train.log 2>&1
tail -n 3 "$OUT"/train.log
timeout 60 python3 -m galae.evaluate --checkpoint runs/gpu_batch/model.pt \
  --data data/gpu_test.h5 --n 256 --device cuda --out runs/gpu_batch/eval --no-figures \
  >"$OUT"/eval.log 2>&1
tail -n 3 "$OUT"/eval.log
cp runs/gpu_batch/log.csv "$OUT"/train_log.csv 2>/dev/null
cp runs/gpu_batch/eval/metrics.json "$OUT"/gpu_batch_metrics.json 2>/dev/null
python3 benchmarks/gpu_train_summary.py --log runs/gpu_batch/log.csv \
  --metrics runs/gpu_batch/eval/metrics.json --train-log "$OUT"/train.log --minutes "$minutes" \
  --device-name "$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)" \
  --what "configs/sdss.yaml, batch $bs, data_cache=$cache, $n_train mocks, $minutes minutes" \
  --out-name "train_gpu_batch${bs}" >/dev/null && cp "benchmarks/results/train_gpu_batch${bs}.json" "$OUT"/
ls -la "$OUT"
