"""Which ingredient of the particle mocks the SFR errors come from (benchmarks/sfh_diagnostic.sh).

For the in-distribution test set and each variant of it (the same galaxies with one ingredient
of the particle generator switched off), the masked amortized autoencoder's and the U-Net's
scatters, their ratio with a 95% paired bootstrap interval (galae.evaluate.compare_reports), and
the error of log SFR inside 2 r_half for the quenched (sSFR < 10^-11.5 / yr) and main-sequence
(10^-10.5 ... 10^-9.5) galaxies, with the spread of the autoencoder's predicted sSFR.

    python benchmarks/sfh_diagnostic.py [ROOT [DATA [NAME]]]

ROOT (runs/eval) holds the test set's reports and ``sfh_diagnostic/`` the variants'; DATA (data)
the mocks; NAME (sfh_diagnostic) names the result file.  Every variant of :data:`VARIANTS` with
reports is read; the others are skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
from _common import write_result

from galae.evaluate import PER_GALAXY_FILE, compare_reports

VARIANTS = {
    "test": "in distribution (bursts, continuity scale 0.3 dex, metallicity spread)",
    "noburst": "no starbursts",
    "smooth": "no starbursts, continuity scale 0.01 dex (a smooth history)",
    "noz": "one metallicity per population (no scatter, no age-metallicity relation)",
    # the structure of the young stars and the dust that follows them (twenty-fourth session)
    "noyoungarms": "no young stars in spiral arms (arm_fraction_young 0)",
    "noclumps": "no star-forming clumps (clump_fraction_young 0)",
    "smoothdust": "dust from the SFR smoothed over 5 kpc, not 0.75 (it no longer follows arms "
    "and clumps)",
    "nodust": "no dust (av_face_on_max_mag 1e-6; the birth clouds scale with it)",
    "smoothyoung": "no young arms, no clumps, dust from the SFR smoothed over 5 kpc",
}
_MSTAR_MAP = "maps/log10_sigma_mstar_msun_per_kpc2/per_pixel_scatter"
_SFR_MAP = "maps/log10_sigma_sfr_msun_per_yr_per_kpc2/per_pixel_scatter"
ROWS = {
    "log10_mstar_2rhalf": "maps/log10_mstar_2rhalf/scatter_dex",
    "log10_sfr_2rhalf": "maps/log10_sfr_2rhalf/scatter_dex",
    "sigma_mstar_well_sampled": f"{_MSTAR_MAP}_well_sampled",
    "sigma_sfr_well_sampled": f"{_SFR_MAP}_well_sampled",
    "sigma_sfr_between_galaxies": f"{_SFR_MAP}_between_galaxies_well_sampled",
}
SSFR_GROUPS = {"quenched": (-np.inf, -11.5), "main_sequence": (-10.5, -9.5)}


def _paths(root: Path, data: Path, v: str) -> tuple[Path, Path, Path]:
    if v == "test":
        return (
            root / "ae_masked_particles_test",
            root / "unet_particles_test",
            data / "particles_test.h5",
        )
    d = root / "sfh_diagnostic"
    return d / f"ae_masked_{v}", d / f"unet_{v}", data / "sfh_diagnostic" / f"particles_{v}.h5"


def _truth(data: Path) -> dict[str, np.ndarray]:
    with h5py.File(data) as f:
        return {k: f["truth/params"][k][:] for k in f["truth/params"]}


def _groups(report: Path, tp: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Error of log SFR inside 2 r_half by sSFR group, and the predicted sSFR's spread
    (``tp``: the data set's truth/params)."""
    d = np.load(report / PER_GALAXY_FILE)["log10_sfr_2rhalf/log_true_over_pred"]
    n = len(d)
    lg_m, lg_sfr = tp["log10_mstar_msun"][:n], tp["log10_sfr_msun_per_yr"][:n]
    ssfr = lg_sfr - lg_m
    pred_ssfr = tp["log10_sfr_2rhalf_msun_per_yr"][:n] - d - lg_m
    out = {}
    for name, (lo, hi) in SSFR_GROUPS.items():
        sel = (ssfr >= lo) & (ssfr < hi) & np.isfinite(d)
        out[name] = {
            "n": int(sel.sum()),
            "error_mean_dex": float(d[sel].mean()),
            "error_std_dex": float(d[sel].std()),
            "true_ssfr_std_dex": float(ssfr[sel].std()),
            "pred_ssfr_std_dex": float(pred_ssfr[sel].std()),
        }
    return out


def main(root: str = "runs/eval", data: str = "data", name: str = "sfh_diagnostic") -> None:
    table = {}
    for v, label in VARIANTS.items():
        ae, unet, h5 = _paths(Path(root), Path(data), v)
        if not (ae / "metrics.json").exists() or not (unet / "metrics.json").exists():
            print(f"skipping {v}: no reports under {ae} / {unet}")
            continue
        cmp = compare_reports(ae / "metrics.json", unet / "metrics.json", figure=False)
        tp = _truth(h5)  # read once for both models
        rows = {}
        for key, row in ROWS.items():
            r = cmp["rows"][row]
            rows[key] = {
                "ae_masked": r["A"],
                "unet": r["B"],
                "ratio": r["ratio_A_over_B"],
                "ratio_ci95": r.get("ratio_ci95"),
            }
        table[v] = {
            "variant": label,
            "scatters_dex": rows,
            "log_sfr_2rhalf_by_ssfr": {"ae_masked": _groups(ae, tp), "unet": _groups(unet, tp)},
        }
    write_result(
        name,
        {
            "reports": root,
            "what": "particle-mock ingredients switched off one at a time; the same 512 galaxies",
            "models": "packaged autoencoder (amortized, neighbours masked) and the U-Net",
            "variants": table,
        },
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
