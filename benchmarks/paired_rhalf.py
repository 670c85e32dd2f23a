"""Two models on the same analytic mocks: the r-band r_half error (issue 4's median |fractional
error|) and the log M* scatter, with paired bootstrap intervals over the galaxies.

``galae.evaluate --compare`` resamples the robust scatters; issue 4's r_half figure is a median
of |fractional errors|, which this resamples instead (2000 resamples; 500 for the MAD).

    python benchmarks/paired_rhalf.py --data data/analytic_check.h5 \\
        runs/eval_check/packaged runs/eval_check/psf --name analytic_check

Results: ``results/paired_rhalf_<name>.json``.
"""

from __future__ import annotations

import argparse
from typing import Any

import h5py
import numpy as np
from _common import mad, per_galaxy, write_result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="galae.evaluate folder of model A")
    ap.add_argument("b", help="galae.evaluate folder of model B, same data")
    ap.add_argument("--data", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--n-boot", type=int, default=2000)
    a = ap.parse_args(argv)
    runs = {}
    for label, folder in (("a", a.a), ("b", a.b)):
        stats = per_galaxy(folder)
        runs[label] = {
            "r_half": stats["params/r_half_arcsec_r/pred_minus_true"],
            "mstar": stats["params/log10_mstar_msun/pred_minus_true"],
        }
    n = runs["a"]["r_half"].size
    if runs["b"]["r_half"].size != n:
        raise ValueError("the two reports hold different numbers of galaxies")
    with h5py.File(a.data, "r") as f:
        true_r = np.asarray(f["truth/params/r_half_arcsec_r"][:n], np.float64)
    frac = {k: np.abs(v["r_half"] / true_r) for k, v in runs.items()}
    rng = np.random.default_rng(0)
    idx = rng.integers(0, n, (a.n_boot, n))
    med = {k: np.median(v[idx], axis=1) for k, v in frac.items()}
    mads = {k: np.array([mad(v["mstar"][i]) for i in idx[:500]]) for k, v in runs.items()}

    def ci(x: np.ndarray) -> list[float]:
        return [float(v) for v in np.percentile(x, [2.5, 97.5])]

    payload = {
        "data": a.data,
        "n_galaxies": n,
        "models": {"a": a.a, "b": a.b},
        "r_half_r_median_abs_frac_error": {
            "a": float(np.median(frac["a"])),
            "a_ci95": ci(med["a"]),
            "b": float(np.median(frac["b"])),
            "b_ci95": ci(med["b"]),
            "b_minus_a_ci95": ci(med["b"] - med["a"]),
        },
        "log_mstar_scatter_mad_dex": {
            "a": mad(runs["a"]["mstar"]),
            "b": mad(runs["b"]["mstar"]),
            "b_minus_a_ci95": ci(mads["b"] - mads["a"]),
        },
    }
    write_result(f"paired_rhalf_{a.name}", payload)
    return payload


if __name__ == "__main__":
    main()
