"""How much the amortized estimates of a galaxy change when its stamp is mirrored.

Encodes the first ``--n`` galaxies of a data set as given, mirrored in x (columns) and mirrored
in y (rows), and reports, per quantity, the rms difference between the estimate of a galaxy
and of its mirror image divided by sqrt(2) (the scatter that one pass adds, were the two
independent), beside the median posterior standard deviation; with ``--flips`` the encoder is
averaged over the mirrored stamps (``encode(flips=True)``), which makes the latents' means
mirror-equivariant (what remains is the Monte Carlo of the posterior means, whose covariance is
that of the stamp as given).

    python benchmarks/mirror_consistency.py --data data/particles_test.h5 --n 256 --mask-neighbours
    python benchmarks/mirror_consistency.py --data data/analytic_test.h5 --n 256 --name analytic

Results: ``results/mirror_consistency[_NAME].json``.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import numpy as np
from _common import write_result

import galae
from galae.data.hdf5 import read_h5

#: quantities compared (the log of the sizes)
QUANTITIES = (
    "log10_mstar_msun",
    "log10_sfr_msun_per_yr",
    "r_half_arcsec_r",
    "r_sfr_kpc",
    "age_disk_gyr",
    "av_face_on_mag",
)
LOG = ("r_half_arcsec_r", "r_sfr_kpc")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--mask-neighbours", action="store_true")
    ap.add_argument("--name", default="")
    a = ap.parse_args(argv)

    d = read_h5(a.data, np.arange(a.n), with_maps=False)
    m = galae.load(a.checkpoint)
    result: dict[str, Any] = {"data": a.data, "n": a.n, "mask_neighbours": a.mask_neighbours}
    for flips in (False, True):
        posts = {}
        for label, axis in (("as_given", None), ("mirror_x", -1), ("mirror_y", -2)):

            def f(x: np.ndarray, axis: int | None = axis) -> np.ndarray:
                return x if axis is None else np.ascontiguousarray(np.flip(x, axis))

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                posts[label] = m.encode(
                    f(d["images"]),
                    f(d["sigma"]),
                    psf_fwhm_arcsec=d["psf_fwhm_arcsec"],
                    redshift=d["redshift"],
                    mask=f(d["mask"]),
                    n_mc=64,
                    n_mc_derived=8,
                    mask_neighbours=a.mask_neighbours,
                    flips=flips,
                )
        rows = {}
        for q in QUANTITIES:
            vals = {}
            for label, post in posts.items():
                v = post.params[q].cpu().numpy().astype(np.float64)
                vals[label] = np.log10(v) if q in LOG else v
            base = vals["as_given"]
            rows[q] = {
                "rms_mirror_x_over_sqrt2": float(np.std(base - vals["mirror_x"]) / np.sqrt(2)),
                "rms_mirror_y_over_sqrt2": float(np.std(base - vals["mirror_y"]) / np.sqrt(2)),
                "median_posterior_std": float(np.median(posts["as_given"].std[q].cpu().numpy())),
                "unit": "dex" if q in LOG else "",
            }
            print(f"flips={flips} {q:24s} {rows[q]}")
        result["flips" if flips else "one_pass"] = rows
    write_result("mirror_consistency" + (f"_{a.name}" if a.name else ""), result)
    return result


if __name__ == "__main__":
    main()
