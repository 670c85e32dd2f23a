"""The position angle scored and calibrated on the circle (seventeenth submission): the packaged
model before and after its widths were calibrated again, on the analytic mocks (amortized and
refined) and the in-distribution particle mocks (amortized, masked).

Reads ``galae.evaluate`` folders (``label=folder``) and collects, per folder, the median chi2 per
pixel, the r-band r_half error, the log M* scatter (1.4826 MAD and standard deviation), the
range of the latents' 68% and 95% coverage, the position angle's own 68% coverage and scatter,
and, where present, the particle scatters of log M* and log SFR inside 2 r_half and per pixel.

    bash benchmarks/pa_calibration.sh     # calibrates, evaluates, then runs this

Results: ``results/pa_calibration.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from _common import write_result
from conditions_ft import MAPS  # the particle scatters, by the same keys


def _summary(folder: Path) -> dict[str, Any]:
    m = json.loads((folder / "metrics.json").read_text())
    out: dict[str, Any] = {"folder": str(folder), "n_galaxies": m["n_galaxies"]}
    out["chi2_median"] = m["chi2_per_pixel"]["median"]
    cov = m.get("coverage", {})
    if cov:
        c68 = [v["68"] for v in cov.values()]
        c95 = [v["95"] for v in cov.values()]
        out["coverage_68_range"] = [min(c68), max(c68)]
        out["coverage_95_range"] = [min(c95), max(c95)]
        out["coverage_68_pa_deg"] = cov["pa_deg"]["68"]
    params = m.get("params", {})
    if "r_half_arcsec_r" in params:
        out["r_half_r_median_abs_frac_error"] = params["r_half_arcsec_r"]["median_abs_frac_error"]
    if "log10_mstar_msun" in params:
        out["log_mstar_scatter_mad"] = params["log10_mstar_msun"]["scatter_mad"]
        out["log_mstar_scatter_std"] = params["log10_mstar_msun"]["scatter_std"]
    if "pa_deg" in params:
        out["pa_deg_scatter_mad"] = params["pa_deg"]["scatter_mad"]
        out["pa_deg_scatter_std"] = params["pa_deg"]["scatter_std"]
    maps = m.get("maps", {})
    for key, (name, stat) in MAPS.items():
        if name in maps and stat in maps[name]:
            out[key] = maps[name][stat]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folders", nargs="+", help="label=galae.evaluate output folder")
    ap.add_argument("--name", default="pa_calibration")
    a = ap.parse_args()
    rows = {}
    for item in a.folders:
        label, _, folder = item.partition("=")
        rows[label] = _summary(Path(folder))
    write_result(a.name, {"reports": rows})


if __name__ == "__main__":
    main()
