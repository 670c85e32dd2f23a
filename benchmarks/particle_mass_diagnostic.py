"""What limits the stellar masses on the particle mocks (issue 4's 0.09 dex target).

Reads a ``galae.evaluate`` report on a particle mock set (its ``per_galaxy.npz``) and the set's
truth, and splits the error of log M* inside 2 r_half (true - predicted):

* against the error of the total mass (how much the aperture adds);
* its heavy tails: std against 1.4826 MAD, the galaxies beyond 3 MAD and what sets them apart,
  and the galaxies larger than the stamp (r-band r_half above a third of its side);
* by quartile of the true mass-weighted age (outshining: old stars hidden by young light),
  inclination, redshift, dust, young-arm fraction and clumps.

    python benchmarks/particle_mass_diagnostic.py runs/eval_new/ae_masked_particles_test \\
        --data data/particles_test.h5 [--name NAME]

Results: ``results/particle_mass_diagnostic[_NAME].json``.
"""

from __future__ import annotations

import argparse
from typing import Any

import h5py
import numpy as np
from _common import mad, per_galaxy, write_result

#: truth parameters split into quartiles (those the particle mocks record)
SPLITS = (
    "age_mass_weighted_gyr",
    "inclination_deg",
    "redshift",
    "av_face_on_mag",
    "arm_fraction_young",
    "n_clumps",
    "r_half_arcsec_r",
    "log10_mstar_msun",
)
#: truth parameters compared between the tail (beyond 3 MAD) and the rest
TAIL_KEYS = ("r_half_arcsec_r", "av_face_on_mag", "arm_fraction_young", "mag_r", "redshift")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report", help="galae.evaluate output folder on a particle mock set")
    ap.add_argument("--data", default="data/particles_test.h5")
    ap.add_argument("--name", default="")
    a = ap.parse_args(argv)

    stats = per_galaxy(a.report)
    e = stats["log10_mstar_2rhalf/log_true_over_pred"]
    e_tot = -stats["params/log10_mstar_msun/pred_minus_true"]
    n = e.size
    with h5py.File(a.data, "r") as f:
        truth = {k: np.asarray(f[f"truth/params/{k}"][:n], np.float64) for k in f["truth/params"]}
        truth["redshift"] = np.asarray(f["redshift"][:n], np.float64)
        side_arcsec = float(f["images"].shape[-1]) * float(f.attrs["pixel_scale_arcsec"])
    ok = np.isfinite(e) & np.isfinite(e_tot)
    e, e_tot = e[ok], e_tot[ok]
    truth = {k: v[ok] for k, v in truth.items()}

    tail = np.abs(e - np.median(e)) > 3 * mad(e)
    big = truth["r_half_arcsec_r"] > side_arcsec / 3
    out: dict[str, Any] = {
        "report": a.report,
        "data": a.data,
        "n": int(ok.sum()),
        "within_2rhalf": {"mean": float(e.mean()), "std": float(e.std()), "mad": mad(e)},
        "total": {"mean": float(e_tot.mean()), "std": float(e_tot.std()), "mad": mad(e_tot)},
        "corr_2rhalf_total": float(np.corrcoef(e, e_tot)[0, 1]),
        "std_2rhalf_minus_total": float((e - e_tot).std()),
        "tail_beyond_3mad": {
            "n": int(tail.sum()),
            "std_without": float(e[~tail].std()),
            "truth_mean_tail_vs_rest": {
                k: [float(truth[k][tail].mean()), float(truth[k][~tail].mean())]
                for k in TAIL_KEYS
                if k in truth
            },
        },
        "larger_than_stamp": {
            "r_half_arcsec_above": side_arcsec / 3,
            "n": int(big.sum()),
            "mean": float(e[big].mean()) if big.any() else None,
            "std": float(e[big].std()) if big.any() else None,
            "std_without": float(e[~big].std()),
            "max_redshift": float(truth["redshift"][big].max()) if big.any() else None,
        },
        "quartiles": {},
    }
    for k in SPLITS:
        if k not in truth:
            continue
        x = truth[k]
        edges = np.quantile(x, [0.25, 0.5, 0.75])
        q = np.digitize(x, edges)
        out["quartiles"][k] = {
            "edges": [float(v) for v in edges],
            "mean": [float(e[q == b].mean()) for b in range(4)],
            "std": [float(e[q == b].std()) for b in range(4)],
            "corr": float(np.corrcoef(x, e)[0, 1]),
        }
    write_result("particle_mass_diagnostic" + (f"_{a.name}" if a.name else ""), out)
    return out


if __name__ == "__main__":
    main()
