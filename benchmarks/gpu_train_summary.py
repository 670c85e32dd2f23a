"""One JSON result from a short GPU training run of benchmarks/gpu_batch_check.sh.

    python benchmarks/gpu_train_summary.py --log runs/gpu_batch/log.csv \
        --metrics runs/gpu_batch/eval/metrics.json --train-log OUT/train.log --minutes 2 \
        --out-name train_gpu_batch2048

Reads the training log (steps reached, first and last simulation loss), the evaluation's
metrics (median chi2 per pixel, log stellar mass scatter, r-band half-light radius error on the
held-out mocks) and the config echoed at the top of the training log; writes
``results/<out-name>.json``, in the layout of ``results/train_gpu_check.json`` so that the two
can be set side by side.  Machine fields are those of the GPU (``--device-name``), not of the
machine that runs this summary.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import time
from pathlib import Path
from typing import Any

from _common import RESULTS


def summarize(
    log_csv: Path, metrics: Path, train_log: Path, minutes: float, device_name: str
) -> dict[str, Any]:
    rows = list(csv.DictReader(log_csv.open()))
    if not rows:
        raise SystemExit(f"{log_csv}: no logged steps")
    sleep = [float(r["loss_sleep"]) for r in rows if r.get("loss_sleep")]
    lines = train_log.read_text().splitlines()
    cfg_line = next((ln for ln in lines if ln.startswith("config: ")), None)
    if cfg_line is None:
        raise SystemExit(f"{train_log}: no 'config: ' line")
    cfg = ast.literal_eval(cfg_line[len("config: ") :])
    saved = [ln for ln in lines if ln.startswith("saved ")]
    steps = int(saved[-1].split("(step ")[1].split(",")[0]) if saved else int(rows[-1]["step"])
    m = json.loads(metrics.read_text())
    p = m["params"]
    return {
        "config": "configs/sdss.yaml",
        "machine": {"cuda_device": device_name},
        "batch_size": cfg["batch_size"],
        "lr": cfg["lr"],
        "warmup_steps": cfg["warmup_steps"],
        "data_cache": cfg.get("data_cache", "none"),
        "num_workers": cfg["num_workers"],
        "render_preset": cfg["render_preset"],
        "steps": steps,
        "wall_minutes": minutes,
        "steps_per_second": steps / (60 * minutes),
        "galaxies_seen": steps * cfg["batch_size"],
        "loss_sleep_first": sleep[0] if sleep else None,
        "loss_sleep_last": sleep[-1] if sleep else None,
        "eval_n": p["log10_mstar_msun"]["n"],
        "eval_chi2_per_pixel_median": m["chi2_per_pixel"]["median"],
        "eval_log10_mstar_scatter_mad_dex": p["log10_mstar_msun"]["scatter_mad"],
        "eval_r_half_r_median_abs_frac_error": p["r_half_arcsec_r"]["median_abs_frac_error"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--log", type=Path, required=True, help="the run's log.csv")
    ap.add_argument("--metrics", type=Path, required=True, help="galae.evaluate's metrics.json")
    ap.add_argument("--train-log", type=Path, required=True, help="galae.train's printed output")
    ap.add_argument("--minutes", type=float, required=True, help="the run's max_minutes")
    ap.add_argument("--device-name", default="NVIDIA H200")
    ap.add_argument("--what", default="", help="one line saying what the run was")
    ap.add_argument("--out-name", required=True)
    a = ap.parse_args()
    payload = {"benchmark": a.out_name, "date": time.strftime("%Y-%m-%d %H:%M"), "what": a.what}
    payload.update(summarize(a.log, a.metrics, a.train_log, a.minutes, a.device_name))
    path = RESULTS / f"{a.out_name}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
