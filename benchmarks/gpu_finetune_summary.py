"""One JSON result for the GPU training runs of benchmarks/gpu_finetune.sh and their continuation.

    python benchmarks/gpu_finetune_summary.py --runs ft_lo=LOG.csv ft_hi=LOG.csv big=LOG.csv \
        big2=LOG.csv big3=LOG.csv --check packaged=DIR ft_lo=DIR ft_hi=DIR big3=DIR \
        --test packaged=DIR big3=DIR --minutes ft_lo=6 ... --device-name "NVIDIA H200"

For each training run (its log.csv): its last logged step, the simulation loss
(-log q(u_true | x) per latent dimension, lower is better) over its first and last ten logged
steps (and those of the ELBO term, where the run had one), the validation chi2 per pixel at its
first and last evaluation, and the steps per second for its wall time.  For each evaluation
(galae.evaluate's metrics.json folders, amortized posterior): median chi2 per pixel, r-band
half-light radius median |fractional error|, log stellar mass scatter (1.4826 MAD and std),
per-latent 68% and 95% coverage ranges (``_common.evaluate_summary``), and the log SFR scatter,
the scatter of the u-, g- and r-band magnitudes and bulge-to-total, and of the stellar mass
inside 2 r_half; for each report on particle mocks (``--particles``), the scatters of issue 6
(``ae_vs_unet.STATS``) and the biases inside 2 r_half.  Writes ``results/<out-name>.json``
(default gpu_finetune; the ELBO runs of benchmarks/gpu_wake.sh: --out-name gpu_wake; those of
benchmarks/particle_wake.sh on the CPU: --out-name particle_wake).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, evaluate_summary
from _common import name_value_pairs as _pairs


def run_summary(log_csv: Path, minutes: float | None) -> dict[str, Any]:
    rows = list(csv.DictReader(log_csv.open()))
    if not rows:
        raise SystemExit(f"{log_csv}: no logged steps")
    loss = [float(r["loss_sleep"]) for r in rows]
    steps = int(rows[-1]["step"])
    out: dict[str, Any] = {
        "last_logged_step": steps,
        "loss_sleep_first10_mean": statistics.mean(loss[:10]),
        "loss_sleep_last10_mean": statistics.mean(loss[-10:]),
        "lr_last": float(rows[-1]["lr"]),
    }
    wake = [float(r["loss_wake"]) for r in rows if r.get("loss_wake")]
    if wake:  # the ELBO term (negative ELBO per pixel and band, lower is better)
        out["loss_wake_first10_mean"] = statistics.mean(wake[:10])
        out["loss_wake_last10_mean"] = statistics.mean(wake[-10:])
    val = [r for r in rows if r.get("val_chi2_median")]
    if val:  # the median chi2 per pixel at q's mean on the run's held-out stamps
        out["val_chi2_median_first"] = float(val[0]["val_chi2_median"])
        out["val_chi2_median_last"] = float(val[-1]["val_chi2_median"])
    if minutes:
        out["wall_minutes"] = minutes
        out["steps_per_second"] = steps / (60 * minutes)
    return out


def eval_summary(folder: Path) -> dict[str, Any]:
    """:func:`_common.evaluate_summary` of the report, with the figures that set the encoders
    apart: SFR, colours, bulge-to-total and the stellar mass inside 2 r_half."""
    m = json.loads((folder / "metrics.json").read_text())
    p = m["params"]
    return evaluate_summary(folder, None) | {
        "n": p["log10_mstar_msun"]["n"],
        "log10_sfr_scatter_mad_dex": p["log10_sfr_msun_per_yr"]["scatter_mad"],
        "mag_r_scatter_mad": p["mag_r"]["scatter_mad"],
        "mag_g_scatter_mad": p["mag_g"]["scatter_mad"],
        "mag_u_scatter_mad": p["mag_u"]["scatter_mad"],
        "bulge_to_total_r_scatter_mad": p["bulge_to_total_r"]["scatter_mad"],
        "log10_mstar_2rhalf_scatter_mad_dex": m["maps"]["log10_mstar_2rhalf"]["scatter_mad_dex"],
    }


def particle_summary(folder: Path) -> dict[str, Any]:
    """The issue-6 scatters of a report on particle mocks (``ae_vs_unet.STATS``, the figures of
    the README's comparison with the U-Net) and the biases inside 2 r_half."""
    from ae_vs_unet import STATS

    m = json.loads((folder / "metrics.json").read_text())
    maps = m["maps"]
    return {k: maps[name][key] for k, (name, key) in STATS.items()} | {
        "log10_mstar_2rhalf_bias_dex": maps["log10_mstar_2rhalf"]["mean_log_true_over_pred"],
        "log10_sfr_2rhalf_bias_dex": maps["log10_sfr_2rhalf"]["mean_log_true_over_pred"],
        "report": str(folder),
        # a U-Net's report has neither
        "refine_steps": m.get("refine_steps"),
        "chi2_per_pixel_median": m.get("chi2_per_pixel", {}).get("median"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="+", required=True, help="NAME=log.csv")
    ap.add_argument("--minutes", nargs="*", default=[], help="NAME=wall minutes")
    ap.add_argument("--check", nargs="*", default=[], help="NAME=evaluation folder (validation)")
    ap.add_argument("--test", nargs="*", default=[], help="NAME=evaluation folder (test)")
    ap.add_argument("--particles", nargs="*", default=[], help="NAME=evaluation folder (particles)")
    ap.add_argument("--device-name", default="NVIDIA H200")
    ap.add_argument("--what", default="")
    ap.add_argument("--out-name", default="gpu_finetune")
    a = ap.parse_args()
    minutes = {k: float(v) for k, v in _pairs(a.minutes).items()}
    payload: dict[str, Any] = {
        "benchmark": a.out_name,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "what": a.what,
        "machine": {"cuda_device": a.device_name},
        "runs": {k: run_summary(Path(v), minutes.get(k)) for k, v in _pairs(a.runs).items()},
        "validation": {k: eval_summary(Path(v)) for k, v in _pairs(a.check).items()},
        "test": {k: eval_summary(Path(v)) for k, v in _pairs(a.test).items()},
        "particles": {k: particle_summary(Path(v)) for k, v in _pairs(a.particles).items()},
    }
    path = RESULTS / f"{a.out_name}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
