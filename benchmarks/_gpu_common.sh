# Sourced (not run) by the prepared GPU calls benchmarks/gpu_finetune.sh and gpu_wake.sh: the
# output folder, the environment, the device and batch (GPU_DEVICE, GPU_BATCH), the packaged
# model's simulation recipe, ship_model and train_variants.
set -u
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT" data runs
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
dev=${GPU_DEVICE:-cuda}
bs=${GPU_BATCH:-2048}

# the packaged model's simulation recipe (src/galae/default_model/README.md, sixteenth release:
# population-prior simulations, masks, missing bands, photo-z, bursty histories, deeper and
# shallower noise, worse seeing; its physics: the corrected birth clouds since the twenty-second
# release, "face_on" before), at batch $bs with the data set held on the device (GPU_CACHE:
# another data_cache, such as ram)
sleep_recipe=(--config configs/analytic_pop.yaml disk_history=tau birth_clouds=effective
  sleep_mask_fraction=0.5 sleep_photo_z_fraction=0.5 sleep_missing_band_fraction=0.2
  sleep_history_scale_dex=0.3 "sleep_sigma_scale_dex=[-1.0,0.5]" sleep_sigma_scale_fraction=0.5
  "sleep_psf_scale_dex=[0.0,0.35]" sleep_psf_scale_fraction=0.3 batch_size="$bs"
  fit_prior=false data_cache="${GPU_CACHE:-device}" device="$dev" ckpt_every=100000 num_workers=0
  progress=false resume=false overwrite=true)

# ship_model NAME: runs/gpu_NAME/model.pt to $OUT/NAME.pt, or in 15 MB pieces
# ($OUT/NAME.pt.part*: join with cat) when larger; nothing when the run left no model
ship_model() {
  local f=runs/gpu_"$1"/model.pt
  [[ -f $f ]] || return 0
  if (($(stat -c %s "$f") > 15000000)); then
    split -b 15000000 -d "$f" "$OUT/$1.pt.part"
  else
    cp "$f" "$OUT/$1.pt"
  fi
}

# train_variants LIMIT_S NAME...: the runs NAME... side by side on the device, each
# `python3 -m galae.train "${recipe[@]}" out_dir=runs/gpu_NAME ${extra[NAME]}` (the caller's
# recipe array and extra associative array) under a timeout of LIMIT_S seconds, logged to
# $LOGS/NAME.log; then each run's last lines, its log.csv copied to $LOGS and its model shipped
train_variants() {
  local limit=$1 v p
  shift
  local pids=()
  for v in "$@"; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=4 timeout "$limit" python3 -m galae.train "${recipe[@]}" \
      out_dir=runs/gpu_"$v" ${extra[$v]} >"$LOGS/$v.log" 2>&1 &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  echo "training: $(($(date +%s) - start)) s"
  for v in "$@"; do
    echo "== $v"
    tail -n 3 "$LOGS/$v.log"
    cp runs/gpu_"$v"/log.csv "$LOGS/$v.csv" 2>/dev/null
    ship_model "$v"
  done
}
