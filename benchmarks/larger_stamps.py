"""Do larger stamps help the particle stellar masses?  The same galaxies on 64 x 64 and 96 x 96.

``galae.mock`` with the same seed draws the same particle galaxies whatever the stamp size (the
stars, neighbours and noise differ), and ``encode`` fits stamps larger than the model's whole
(the encoder reads the centre 64 x 64, the renderer and the refinement cover every pixel).
This compares two pairs of ``galae.evaluate`` reports (amortized and refined, masked) on the
two sets, galaxy by galaxy: the error of log M* inside 2 r_half and of the total log M*, for all
galaxies, for those whose r-band r_half exceeds a third of the 64 x 64 stamp (the largest, all
nearby) and for those at z < 0.045.  Each set's truth is measured on its own stamps.

    bash benchmarks/larger_stamps.sh    # makes the 96 x 96 set and its reports, then runs this

Results: ``results/larger_stamps.json``.
"""

from __future__ import annotations

import argparse
from typing import Any

import h5py
import numpy as np
from _common import per_galaxy, write_result

from galae.evaluate import robust_stats


def _errors(report: str, data: str) -> dict[str, np.ndarray]:
    stats = per_galaxy(report)
    aperture = stats["log10_mstar_2rhalf/log_true_over_pred"]
    total = -stats["params/log10_mstar_msun/pred_minus_true"]
    n = aperture.size
    with h5py.File(data, "r") as f:
        redshift = np.asarray(f["redshift"][:n], np.float64)
        r_half = np.asarray(f["truth/params/r_half_arcsec_r"][:n], np.float64)
        side = float(f["images"].shape[-1]) * float(f.attrs.get("pixel_scale_arcsec", 0.396))
    return {
        "aperture": aperture,
        "total": total,
        "redshift": redshift,
        "r_half": r_half,
        "side": np.full(n, side),
    }


def _summary(err: np.ndarray) -> dict[str, float]:
    stats = robust_stats(err, np.zeros_like(err))
    return {
        "mean_dex": stats["bias_mean"],
        "std_dex": stats["scatter_std"],
        "mad_dex": stats["scatter_mad"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", nargs=2, metavar=("AMORTIZED", "REFINED"), required=True)
    ap.add_argument("--large", nargs=2, metavar=("AMORTIZED", "REFINED"), required=True)
    ap.add_argument("--small-data", default="data/particles_test.h5")
    ap.add_argument("--large-data", default="data/particles_test96.h5")
    a = ap.parse_args(argv)
    runs = {}
    for size, reports, data in (("small", a.small, a.small_data), ("large", a.large, a.large_data)):
        for kind, report in zip(("amortized", "refined"), reports, strict=True):
            runs[(size, kind)] = _errors(report, data)
    ref = runs[("small", "amortized")]
    for key, run in runs.items():
        if run["redshift"].shape != ref["redshift"].shape or not np.allclose(
            run["redshift"], ref["redshift"]
        ):
            raise ValueError(f"{key}: not the same galaxies (redshifts differ)")
    groups = {
        "all": np.ones_like(ref["redshift"], bool),
        "r_half_above_a_third_of_the_small_stamp": ref["r_half"] > ref["side"] / 3,
        "z_below_0.045": ref["redshift"] < 0.045,
    }
    table: dict[str, Any] = {}
    for group, sel in groups.items():
        table[group] = {"n_galaxies": int(sel.sum())}
        for (size, kind), run in runs.items():
            side = int(round(run["side"][0] / 0.396))
            for what in ("aperture", "total"):
                table[group][f"{kind}_{size}_{side}px_{what}"] = _summary(run[what][sel])
    payload = {
        "reports": {f"{s}_{k}": r for (s, k), r in zip(runs, [*a.small, *a.large], strict=True)},
        "data": {"small": a.small_data, "large": a.large_data},
        "error": "log10 true - log10 predicted; aperture: inside 2 r_half; total: whole galaxy",
        "groups": table,
    }
    write_result("larger_stamps", payload)
    return payload


if __name__ == "__main__":
    main()
