"""What refining only the poor fits costs and gives: ``encode`` amortized, refined for every
galaxy, and refined only where the amortized fit's chi2 per pixel is above a threshold
(``refine_above_chi2``), on the same galaxies of a data set, with ``encode``'s defaults.

    python benchmarks/refine_poor_fits.py --data data/analytic_test.h5 --n 128
    python benchmarks/refine_poor_fits.py --data data/analytic_deep.h5 --n 128 --name deep

Reports, per variant: wall seconds per galaxy (best of ``--repeat``), the fraction of galaxies
refined, and the median, 84th percentile and fraction above 3 of the chi2 per pixel.  Results:
``results/refine_poor_fits[_NAME].json``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from typing import Any

import numpy as np
import torch
from _common import write_result

import galae
from galae.data.hdf5 import read_h5
from galae.sampling import POOR_FIT_CHI2_PER_PIXEL


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", default=None, help="default: the packaged model")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--refine-steps", type=int, default=60)
    ap.add_argument("--threshold", type=float, default=POOR_FIT_CHI2_PER_PIXEL)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--name", default="")
    a = ap.parse_args(argv)

    d = read_h5(a.data, np.arange(a.n), with_maps=False)
    m = galae.load(a.checkpoint)
    args = (d["images"], d["sigma"])
    kw = {
        "psf_fwhm_arcsec": d["psf_fwhm_arcsec"],
        "redshift": d["redshift"],
        "pixel_scale_arcsec": float(d["pixel_scale_arcsec"]),
        "mask": d["mask"],
    }
    variants = {
        "amortized": {},
        "refined": {"refine_steps": a.refine_steps},
        f"refined_above_chi2_{a.threshold:g}": {
            "refine_steps": a.refine_steps,
            "refine_above_chi2": a.threshold,
        },
    }
    out: dict[str, Any] = {}
    for name, extra in variants.items():
        best = float("inf")
        for _ in range(a.repeat):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the chi2 is reported instead
                t0 = time.perf_counter()
                post = m.encode(*args, **kw, **extra)
                best = min(best, time.perf_counter() - t0)
        chi2 = post.chi2_per_pixel.cpu()
        out[name] = {
            "seconds_per_galaxy": best / a.n,
            "fraction_refined": float(post.refined.float().mean()),
            "chi2_per_pixel_median": float(chi2.median()),
            "chi2_per_pixel_p84": float(torch.quantile(chi2, 0.84)),
            "fraction_chi2_above_3": float((chi2 > POOR_FIT_CHI2_PER_PIXEL).float().mean()),
        }
        print(name, out[name])
    result = {
        "data": a.data,
        "n": a.n,
        "checkpoint": a.checkpoint or "packaged default model",
        "refine_steps": a.refine_steps,
        "threshold": a.threshold,
        "torch_threads": torch.get_num_threads(),
        "variants": out,
    }
    write_result("refine_poor_fits" + (f"_{a.name}" if a.name else ""), result)
    return result


if __name__ == "__main__":
    main()
