"""Autoencoder (self-supervised) vs U-Net (supervised) on particle mocks, in and out of sample.

Reads the ``metrics.json`` files that ``python -m galae.evaluate`` wrote for both models on the
particle test set and on the shifted sets (worse seeing, lower S/N, higher redshift, no u band)
and tabulates the scatter of log M* and log SFR within 2 r_half and the per-pixel scatter of the
stellar-mass and SFR maps, over all non-empty pixels and over the pixels that at least 10
particles sample.  Reproduce (after training both models):

    bash benchmarks/ae_vs_unet.sh        # mocks, evaluations, then this script
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _common import write_result

SETS = ("test", "seeing", "lowsn", "highz", "nou")
# the autoencoder amortized, the same with 60 likelihood steps per galaxy (--refine-steps), both
# again with other sources in the stamps masked by segmentation (--mask-neighbours), the U-Net
AE_MODELS = ("ae", "ae_refined", "ae_masked", "ae_refined_masked")
MODELS = (*AE_MODELS, "unet")
STATS = {
    "log10_mstar_2rhalf_scatter_dex": ("log10_mstar_2rhalf", "scatter_dex"),
    "log10_sfr_2rhalf_scatter_dex": ("log10_sfr_2rhalf", "scatter_dex"),
    "mstar_map_per_pixel_scatter_dex": ("log10_sigma_mstar_msun_per_kpc2", "per_pixel_scatter"),
    "sfr_map_per_pixel_scatter_dex": ("log10_sigma_sfr_msun_per_yr_per_kpc2", "per_pixel_scatter"),
    # the same over the pixels that >= 10 particles sample (galae.evaluate.MIN_PARTICLES_PER_PIXEL)
    "mstar_map_per_pixel_scatter_well_sampled_dex": (
        "log10_sigma_mstar_msun_per_kpc2",
        "per_pixel_scatter_well_sampled",
    ),
    "sfr_map_per_pixel_scatter_well_sampled_dex": (
        "log10_sigma_sfr_msun_per_yr_per_kpc2",
        "per_pixel_scatter_well_sampled",
    ),
    # ... split into the galaxies' mean offsets and the structure within them
    # (galae.evaluate.split_scatter; the two add in quadrature to the line above)
    **{
        f"{short}_map_per_pixel_scatter_{part}_galaxies_well_sampled_dex": (
            name,
            f"per_pixel_scatter_{part}_galaxies_well_sampled",
        )
        for short, name in (
            ("mstar", "log10_sigma_mstar_msun_per_kpc2"),
            ("sfr", "log10_sigma_sfr_msun_per_yr_per_kpc2"),
        )
        for part in ("between", "within")
    },
}


def main(root: str = "runs/eval") -> None:
    table: dict[str, dict] = {}
    trained = {}
    for s in SETS:
        row = {}
        for model in MODELS:
            f = Path(root) / f"{model}_particles_{s}" / "metrics.json"
            if not f.exists():
                continue
            m = json.loads(f.read_text())
            trained[model] = m.get("trained_with")
            row[model] = {k: m["maps"].get(a, {}).get(b) for k, (a, b) in STATS.items()}
            row[model]["n_galaxies"] = m["n_galaxies"]
        for ae in AE_MODELS:
            if ae in row and "unet" in row:
                row[f"ratio_{ae}_over_unet"] = {
                    k: row[ae][k] / row["unet"][k]
                    for k in STATS
                    if row["unet"][k] and row[ae][k] is not None
                }
        table[s] = row
    write_result(
        "ae_vs_unet",
        {
            "trained_with": trained,
            "sets": table,
            "goal": "AE within 1.5x the U-Net in distribution; better under every shift",
        },
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
