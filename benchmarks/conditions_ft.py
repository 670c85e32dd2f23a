"""Simulating worse seeing and larger distances than the data hold: fine-tunes of the packaged
model, against it and the U-Net (issues 4 and 6).

Reads ``galae.evaluate`` folders laid out as ``benchmarks/packaged_release.sh`` writes them
(``analytic_400`` and ``ae_masked_particles_<set>``, with ``unet_particles_<set>`` beside) for
each model and collects: on the analytic mocks the median chi2 per pixel, the r-band r_half
error, the log M* scatter and the range of the latents' 68% coverage; on the masked particle
mocks, amortized, the scatters of log M* and log SFR inside 2 r_half and the per-pixel scatters
over the well-sampled pixels, each with its ratio to the U-Net's.

    bash benchmarks/conditions_ft.sh     # trains, calibrates and evaluates, then runs this

Results: ``results/conditions_ft.json`` (``--name`` for another name).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from _common import write_result

SETS = ("test", "seeing", "lowsn", "highz", "nou")
MAPS = {
    "log_mstar_2rhalf": ("log10_mstar_2rhalf", "scatter_dex"),
    "log_sfr_2rhalf": ("log10_sfr_2rhalf", "scatter_dex"),
    "pixel_mstar_well_sampled": (
        "log10_sigma_mstar_msun_per_kpc2",
        "per_pixel_scatter_well_sampled",
    ),
    "pixel_sfr_well_sampled": (
        "log10_sigma_sfr_msun_per_yr_per_kpc2",
        "per_pixel_scatter_well_sampled",
    ),
}


def _metrics(folder: Path) -> dict[str, Any] | None:
    path = folder / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _analytic(m: dict[str, Any]) -> dict[str, float]:
    cov = [v["68"] for v in m["coverage"].values()]
    return {
        "chi2_per_pixel_median": m["chi2_per_pixel"]["median"],
        "r_half_r_median_abs_frac_error": m["params"]["r_half_arcsec_r"]["median_abs_frac_error"],
        "log_mstar_scatter_mad_dex": m["params"]["log10_mstar_msun"]["scatter_mad"],
        "coverage_68_min": min(cov),
        "coverage_68_max": max(cov),
    }


def _particles(ae: dict[str, Any], unet: dict[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for label, (name, stat) in MAPS.items():
        value = ae["maps"][name][stat]
        out[label] = value
        if unet is not None:
            out[f"{label}_over_unet"] = value / unet["maps"][name][stat]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="LABEL=FOLDER")
    ap.add_argument("--name", default="conditions_ft", help="result name (results/NAME.json)")
    a = ap.parse_args(argv)
    table: dict[str, Any] = {}
    for item in a.runs:
        label, _, folder = item.partition("=")
        root = Path(folder)
        row: dict[str, Any] = {"folder": folder}
        analytic = _metrics(root / "analytic_400")
        if analytic is not None:
            row["analytic_400"] = _analytic(analytic)
        for s in SETS:
            ae = _metrics(root / f"ae_masked_particles_{s}")
            if ae is not None:
                row[f"particles_{s}"] = _particles(ae, _metrics(root / f"unet_particles_{s}"))
        table[label] = row
    payload = {
        "models": table,
        "note": "amortized; particle mocks masked; 512 per set, 400 analytic",
    }
    write_result(a.name, payload)
    return payload


if __name__ == "__main__":
    main()
