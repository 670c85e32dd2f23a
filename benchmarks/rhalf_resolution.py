"""Half-light radius recovery against resolution, for several ``galae.evaluate`` reports.

    python benchmarks/rhalf_resolution.py --reports packaged=DIR mix3b=DIR ... \
        [--name rhalf_resolution] [--figure docs/rhalf_resolution.png]

For each report on analytic mocks: the median |fractional error| (and the median signed error)
of the r-band half-light radius in bins of r_half,true / FWHM_PSF (galae.evaluate's
``r_half_by_resolution``, with the fraction of the truths within one posterior sigma; for
reports written before that block existed, recomputed from the report's per_galaxy.npz and its
data file's truth and PSFs, without the widths), the number of galaxies in each bin, and the
face-on A_V bias.  Writes ``results/<name>.json`` and the
figure (galae.plots.r_half_resolution_figure).  Seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from _common import per_galaxy, write_result

from galae import plots
from galae.evaluate import r_half_by_resolution


def _from_truth(m: dict[str, Any], g: dict[str, np.ndarray]) -> dict[str, Any]:
    """``r_half_by_resolution`` (without the widths) of a report written before the block
    existed: its per-galaxy errors and its data file's truth and PSFs."""
    n = int(m["n_galaxies"])
    with h5py.File(m["data"], "r") as f:
        true = np.asarray(f["truth/params/r_half_arcsec_r"][:n], np.float64)
        psf = np.asarray(f["psf_fwhm_arcsec"][:n], np.float64)
        bands = str(f.attrs["bands"]).split(",")  # "u,g,r,i,z"
    psf_r = psf[:, bands.index("r")] if psf.ndim == 2 else psf
    pred = true + g["params/r_half_arcsec_r/pred_minus_true"]
    return r_half_by_resolution(pred, true, psf_r)


def resolution_summary(report: Path) -> dict[str, Any]:
    """``r_half_by_resolution`` of one report (its own block where it has one, with the
    posterior widths' coverage), its overall r_half error and face-on A_V bias."""
    m = json.loads((report / "metrics.json").read_text())
    g = per_galaxy(report)
    out = m.get("r_half_by_resolution") or _from_truth(m, g)
    return out | {
        "report": str(report),
        "data": m["data"],
        "n": int(m["n_galaxies"]),
        "median_abs_frac_error": m["params"]["r_half_arcsec_r"]["median_abs_frac_error"],
        "av_face_on_mag_median_bias": float(np.median(g["params/av_face_on_mag/pred_minus_true"])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", nargs="+", required=True, help="NAME=evaluation folder")
    ap.add_argument("--name", default="rhalf_resolution")
    ap.add_argument("--figure", default=None, help="PNG of the first --figure-set reports")
    ap.add_argument("--figure-set", nargs="*", default=None, help="the NAMEs drawn (all)")
    a = ap.parse_args()
    reports = {}
    for item in a.reports:
        name, _, folder = item.partition("=")
        if not folder:
            raise SystemExit(f"expected NAME=DIR, got {item!r}")
        reports[name] = resolution_summary(Path(folder))
    write_result(a.name, {"what": __doc__.split("\n")[0], "reports": reports})
    if a.figure:
        drawn = a.figure_set or list(reports)
        plots.r_half_resolution_figure({k: reports[k] for k in drawn}, out=a.figure)


if __name__ == "__main__":
    main()
