"""Is the U-Net baseline limited by its 768 training galaxies?  (issue 6)

The README's U-Net (``configs/unet.yaml``, 1750 steps of batch 16) sees the 768 galaxies of
``data/particles_train.h5`` about 36 times and overfits them (``docs/results.md``).  A baseline the
autoencoder is judged against must not be starved, so ``benchmarks/unet_data_size.sh`` trains the
same recipe on 6144 particle mocks (eight times the data, another seed), for the same 1750 steps
and for three times as many, and scores all three U-Nets on 512 *validation* particle mocks
(``data/particles_check.h5``, seed 207, never used for a figure).

The rule, written before any of them was trained: the headline score of a U-Net is the geometric
mean, over the four scatters issue 6 is judged on (log M* and log SFR inside 2 r_half, the
per-pixel log Sigma* and log Sigma_SFR over the pixels at least 10 particles sample), of its
scatter divided by the 768-galaxy U-Net's on the same validation galaxies.  The candidate with the
lowest score replaces the README's U-Net if that score is below 0.97 (a 3% gain in the geometric
mean; the bootstrap interval of one ratio over 512 galaxies is about +-10%, of the mean of four
correlated ones a few per cent).  The chosen U-Net is then the baseline of every issue-6 figure.

    python benchmarks/unet_data_size.py runs/unet_size   # writes results/unet_data_size.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from _common import write_result
from ae_vs_unet import STATS

#: (metrics.json "maps" key, statistic) of the four headline scatters of issue 6
HEADLINE = {
    k: STATS[k]
    for k in (
        "log10_mstar_2rhalf_scatter_dex",
        "log10_sfr_2rhalf_scatter_dex",
        "mstar_map_per_pixel_scatter_well_sampled_dex",
        "sfr_map_per_pixel_scatter_well_sampled_dex",
    )
}
REFERENCE = "unet768_1750"
CANDIDATES = ("unet6k_1750", "unet6k_5250")
THRESHOLD = 0.97


def scatters(report: Path) -> dict[str, float]:
    m = json.loads((report / "metrics.json").read_text())
    return {k: float(m["maps"][a][b]) for k, (a, b) in HEADLINE.items()}


def main(root: str = "runs/unet_size") -> dict[str, Any]:
    base = Path(root)
    names = (REFERENCE, *CANDIDATES)
    rows: dict[str, Any] = {name: scatters(base / f"val_{name}") for name in names}
    ref = rows[REFERENCE]
    for name in CANDIDATES:
        ratios = {k: rows[name][k] / ref[k] for k in HEADLINE}
        rows[name]["ratio_to_reference"] = ratios
        rows[name]["score"] = math.exp(sum(math.log(r) for r in ratios.values()) / len(ratios))
    best = min(CANDIDATES, key=lambda n: rows[n]["score"])
    chosen = best if rows[best]["score"] < THRESHOLD else REFERENCE
    payload = {
        "validation_data": "data/particles_check.h5",
        "reference": REFERENCE,
        "rule": f"lowest geometric-mean scatter ratio to {REFERENCE}, adopted below {THRESHOLD}",
        "unets": rows,
        "chosen": chosen,
    }
    write_result("unet_data_size", payload)
    return payload


if __name__ == "__main__":
    main(*sys.argv[1:])
