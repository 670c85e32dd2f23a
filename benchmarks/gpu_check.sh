#!/usr/bin/env bash
# Every GPU check of galae in one prepared run, for a machine with one CUDA device:
#
#   bash benchmarks/gpu_check.sh            # from the repository root, galae importable
#
# In order of priority, each step with its own time limit inside an overall deadline
# (GPU_CHECK_SECONDS, default 560 s), so that one slow or failing step does not cost the others:
#   1. benchmarks/render.py on the GPU (issue 2: 50,000 galaxies/s target), every preset, batch
#      4096 with a scan over 1024 and 16384, the fast preset's images compiled; each preset's
#      float32 GPU images against the CPU's float64 render;
#   2. benchmarks/encode.py on the GPU, bf16 autocast (issue 4: 50,000 galaxies/s target), the
#      packaged model and the configs/sdss.yaml architecture;
#   3. the CUDA tests (tests/test_cuda.py and the other tests that need a GPU);
#   4. configs/sdss.yaml trained for GPU_TRAIN_MINUTES (default 1) on fresh analytic mocks, to
#      measure its steps per second (a throughput check, not a trained model), then evaluated.
# GPU_SKIP="render encode" leaves out the steps so named.
# Logs and results go to $OUT (default benchmarks/results/gpu): the JSON results by name and
# everything in gpu_check.tar.gz.
set -u
OUT=${OUT:-benchmarks/results/gpu}
LOGS=${LOGS:-/tmp/galae_gpu_logs}
mkdir -p "$OUT" "$LOGS"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
deadline=$(( $(date +%s) + ${GPU_CHECK_SECONDS:-560} ))
train_minutes=${GPU_TRAIN_MINUTES:-1}

step() {  # step NAME SECONDS CMD...: run CMD with a limit of SECONDS (cut to the deadline)
  local name=$1 limit=$2 left start rc
  shift 2
  if [[ " ${GPU_SKIP:-} " == *" $name "* ]]; then echo "== $name: skipped (GPU_SKIP)"; return 0; fi
  left=$(( deadline - $(date +%s) - 15 ))
  if (( left < 20 )); then echo "== $name: skipped (deadline)"; return 0; fi
  (( limit > left )) && limit=$left
  start=$(date +%s)
  timeout "$limit" "$@" >"$LOGS/$name.log" 2>&1
  rc=$?
  echo "== $name: rc=$rc in $(( $(date +%s) - start )) s (limit $limit s)"
  tail -n 4 "$LOGS/$name.log"
}

nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"

step render 170 python3 benchmarks/render.py --device cuda --no-galsim --batch 4096 \
  --scan 1024 16384 --compile --compile-presets fast --compile-images-only
step encode 45 python3 benchmarks/encode.py --device cuda --amp \
  --checkpoint src/galae/default_model/model.pt --batch-sizes 1024 4096 16384
step encode_sdss 45 python3 benchmarks/encode.py --device cuda --amp --arch sdss \
  --batch-sizes 1024 4096 16384 --out-name encode_cuda_sdss_arch
step tests 100 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
  tests/test_conditions.py::test_add_noise_on_cuda tests/test_cosmology.py::test_runs_on_gpu \
  tests/test_particles.py::test_runs_on_gpu
step mock 45 python3 -m galae.mock --config configs/mock_analytic.yaml --n 2000 --seed 11 \
  --out data/gpu_train.h5 --workers 12 --overwrite
step mock_test 30 python3 -m galae.mock --config configs/mock_analytic.yaml --n 256 --seed 12 \
  --out data/gpu_test.h5 --workers 4 --overwrite
step train $(( 60 * train_minutes + 90 )) python3 -m galae.train --config configs/sdss.yaml \
  data=data/gpu_train.h5 out_dir=runs/gpu_sdss max_minutes="$train_minutes" prior_epochs=3 \
  eval_every=200 ckpt_every=100000 num_workers=6 progress=false
step evaluate 60 python3 -m galae.evaluate --checkpoint runs/gpu_sdss/model.pt \
  --data data/gpu_test.h5 --n 256 --device cuda --out runs/gpu_sdss/eval --no-figures

cp benchmarks/results/render_cuda.json benchmarks/results/encode_cuda.json \
  benchmarks/results/encode_cuda_sdss_arch.json "$OUT"/ 2>/dev/null
cp runs/gpu_sdss/log.csv "$OUT"/train_log.csv 2>/dev/null
cp runs/gpu_sdss/eval/metrics.json "$OUT"/gpu_sdss_metrics.json 2>/dev/null
tar czf "$OUT"/gpu_check.tar.gz "$LOGS" benchmarks/results/*cuda*.json runs/gpu_sdss/log.csv \
  runs/gpu_sdss/eval/metrics.json 2>/dev/null
ls -la "$OUT"
