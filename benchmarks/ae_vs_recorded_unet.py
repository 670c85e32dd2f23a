"""Autoencoder reports on issue 6's particle sets against the U-Net figures already recorded.

    python benchmarks/ae_vs_recorded_unet.py --reports test=DIR seeing=DIR lowsn=DIR \
        highz=DIR nou=DIR --name NAME [--check seeing=DIR] [--what TEXT]

For a checkout that no longer holds the U-Net's reports (``runs/`` is not kept), each scatter of
``ae_vs_unet.STATS`` in each autoencoder report over the U-Net's value for the same set in
``results/ae_vs_unet.json`` (the 512-galaxy sets of benchmarks/ae_vs_unet.sh, made again from
their seeds).  Point ratios only: the paired bootstrap intervals of benchmarks/ae_vs_unet.py
need the U-Net's per-galaxy residuals.  ``--check SET=DIR`` names a report of the packaged
model made again on a set, compared with the packaged model's recorded figures there: equal
figures show that the set was made again galaxy for galaxy.  Writes ``results/<NAME>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from _common import RESULTS, name_value_pairs, write_result
from ae_vs_unet import STATS

#: the headline scatters (the README's comparison table)
HEADLINE = (
    "log10_mstar_2rhalf_scatter_dex",
    "log10_sfr_2rhalf_scatter_dex",
    "mstar_map_per_pixel_scatter_well_sampled_dex",
    "sfr_map_per_pixel_scatter_well_sampled_dex",
)


def scatters(report: Path) -> dict[str, float]:
    """``STATS`` of one ``galae.evaluate`` report on particle mocks."""
    maps = json.loads((report / "metrics.json").read_text())["maps"]
    return {k: float(maps[name][key]) for k, (name, key) in STATS.items()}


def _pairs(items: list[str]) -> dict[str, Path]:
    return {k: Path(v) for k, v in name_value_pairs(items).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reports", nargs="+", required=True, help="SET=evaluation folder")
    ap.add_argument("--check", nargs="*", default=[], help="SET=packaged model's report")
    ap.add_argument("--name", required=True)
    ap.add_argument("--what", default="")
    a = ap.parse_args()
    recorded = json.loads((RESULTS / "ae_vs_unet.json").read_text())["sets"]
    sets: dict[str, Any] = {}
    for name, folder in _pairs(a.reports).items():
        if name not in recorded:
            raise SystemExit(f"{name!r} is not a set of results/ae_vs_unet.json: {list(recorded)}")
        ae, unet = scatters(folder), recorded[name]["unet"]
        sets[name] = {
            "report": str(folder),
            "ae": ae,
            "unet_recorded": {k: unet[k] for k in ae},
            "ratio_over_unet": {k: ae[k] / unet[k] for k in ae},
            "packaged_ratio_recorded": {
                k: recorded[name]["ratio_ae_masked_over_unet"][k] for k in HEADLINE
            },
        }
    checks = {}
    for name, folder in _pairs(a.check).items():
        again, before = scatters(folder), recorded[name]["ae_masked"]
        checks[name] = {k: {"again": again[k], "recorded": before[k]} for k in HEADLINE}
    write_result(
        a.name,
        {"what": a.what or __doc__.split("\n")[0], "headline": HEADLINE, "sets": sets}
        | ({"reproduction_check": checks} if checks else {}),
    )


if __name__ == "__main__":
    main()
