"""The README's issue-6 table (Markdown) from ``results/ae_vs_unet.json``.

    python benchmarks/ae_vs_unet_table.py [benchmarks/results/ae_vs_unet.json]

One block per metric, one row per set: the masked autoencoder amortized and refined, the U-Net,
and each autoencoder / U-Net ratio with its 95% paired-bootstrap interval.  A ratio is bold when
the goal is met at 95%: the interval's upper end below 1.5 in distribution, below 1 under a
shift (issue 6).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ae_vs_unet import SET_LABELS, SETS

#: (block title, key of results/ae_vs_unet.json's per-model statistics), in the README's order.
BLOCKS: tuple[tuple[str, str], ...] = (
    ("log M* inside 2 r_half", "log10_mstar_2rhalf_scatter_dex"),
    ("log SFR inside 2 r_half", "log10_sfr_2rhalf_scatter_dex"),
    (
        "log Sigma* per pixel, pixels of >= 10 particles",
        "mstar_map_per_pixel_scatter_well_sampled_dex",
    ),
    (
        "log Sigma_SFR per pixel, pixels of >= 10 young particles",
        "sfr_map_per_pixel_scatter_well_sampled_dex",
    ),
    ("log Sigma* per pixel, all non-empty pixels", "mstar_map_per_pixel_scatter_dex"),
    ("log Sigma_SFR per pixel, all pixels with a young particle", "sfr_map_per_pixel_scatter_dex"),
    (
        "log Sigma_SFR per pixel, within galaxies (>= 10)",
        "sfr_map_per_pixel_scatter_within_galaxies_well_sampled_dex",
    ),
    (
        "log Sigma_SFR per pixel, between galaxies (>= 10)",
        "sfr_map_per_pixel_scatter_between_galaxies_well_sampled_dex",
    ),
)
#: The goal on the ratio: in distribution, then under a shift.
GOAL_IN_DISTRIBUTION, GOAL_SHIFTED = 1.5, 1.0
VARIANTS = ("ae_masked", "ae_refined_masked")


def _ratio(row: dict[str, Any], variant: str, key: str, goal: float) -> str:
    r = row.get(f"ratio_{variant}_over_unet", {}).get(key)
    if r is None:
        return ""
    ci = row.get(f"ratio_{variant}_over_unet_ci95", {}).get(key)
    if ci is None:
        return f"{r:.2f}"
    text = f"{r:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"
    return f"**{text}**" if ci[1] < goal else text


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| set | AE masked | AE refined, masked | U-Net | AE masked / U-Net "
        "| AE refined, masked / U-Net |",
        "|---|---|---|---|---|---|",
    ]
    for title, key in BLOCKS:
        lines.append(f"| **{title}** | | | | | |")
        for s in SETS:
            row = result["sets"].get(s)
            if row is None:
                continue
            goal = GOAL_IN_DISTRIBUTION if s == "test" else GOAL_SHIFTED
            cells = [
                f"{row[m][key]:.3f}" if m in row and row[m].get(key) is not None else ""
                for m in (*VARIANTS, "unet")
            ]
            cells += [_ratio(row, v, key, goal) for v in VARIANTS]
            lines.append(f"| {SET_LABELS[s]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    path = (
        sys.argv[1]
        if len(sys.argv) > 1
        else str(Path(__file__).resolve().parent / "results" / "ae_vs_unet.json")
    )
    print(markdown(json.loads(Path(path).read_text())))
