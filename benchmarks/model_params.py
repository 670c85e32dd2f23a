"""Posterior means against the best fit (``Posterior.model_params``) on the issue-4 test mocks.

``galae.evaluate`` scores both: ``params`` (the posterior means over rendered draws) and
``model_params`` (the parameters of the one model that ``model_images`` renders, at the
posterior mean latent; for a refined posterior the refinement's mode).  This runs it on the 400
analytic test mocks (``data/analytic_test.h5``, made by ``benchmarks/derived_release.sh``),
amortized and refined (60 steps), and tabulates the derived observables' bias and scatter.

    python benchmarks/model_params.py [--data data/analytic_test.h5] [--n 400]

Writes ``benchmarks/results/model_params.json``; the reports go to runs/model_params/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import write_result

ROOT = Path(__file__).resolve().parent.parent
NAMES = (
    "mag_u",
    "mag_r",
    "r_half_arcsec_r",
    "bulge_to_total_r",
    "log10_mstar_msun",
    "log10_sfr_msun_per_yr",
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "analytic_test.h5"))
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--refine-steps", type=int, default=60)
    a = ap.parse_args()
    out = ROOT / "runs" / "model_params"
    t0 = time.perf_counter()
    rows: dict[str, Any] = {}
    for mode, steps in (("amortized", 0), ("refined", a.refine_steps)):
        report = out / mode
        cmd = [sys.executable, "-m", "galae.evaluate", "--no-figures", "--data", a.data,
               "--n", str(a.n), "--out", str(report), "--refine-steps", str(steps)]  # fmt: skip
        subprocess.run(cmd, check=True, cwd=ROOT)
        metrics = json.loads((report / "metrics.json").read_text())
        row: dict[str, Any] = {"chi2_median": metrics["chi2_per_pixel"]["median"]}
        for section in ("params", "model_params"):
            row[section] = {
                k: {
                    key: metrics[section][k][key]
                    for key in ("bias_median", "scatter_mad", "median_abs_frac_error")
                    if key in metrics[section][k]
                }
                for k in NAMES
            }
        rows[mode] = row
        for k in NAMES:
            p, b = row["params"][k], row["model_params"][k]
            print(
                f"{mode:9s} {k:22s} mean: bias {p['bias_median']:+.3f} mad {p['scatter_mad']:.3f}"
                f"   best fit: bias {b['bias_median']:+.3f} mad {b['scatter_mad']:.3f}",
                flush=True,
            )
    print(
        write_result(
            "model_params",
            {
                "checkpoint": "packaged model (galae.load())",
                "data": f"the first {a.n} of {a.data}",
                "what": "median signed error (bias_median) and 1.4826 MAD scatter about it of the "
                "posterior means (params) and of the best fit (model_params); r_half also the "
                "median |fractional error|",
                "modes": rows,
                "seconds": round(time.perf_counter() - t0, 1),
            },
        )
    )


if __name__ == "__main__":
    main()
