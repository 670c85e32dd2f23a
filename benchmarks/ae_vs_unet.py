"""Autoencoder (self-supervised) vs U-Net (supervised) on particle mocks, in and out of sample.

Reads the ``metrics.json`` files that ``python -m galae.evaluate`` wrote for both models on the
particle test set and on the shifted sets (worse seeing, lower S/N, higher redshift, no u band)
and tabulates the scatter of log M* and log SFR within 2 r_half and the per-pixel scatter of the
stellar-mass and SFR maps, over all non-empty pixels and over the pixels that at least 10
particles sample.  Every ratio autoencoder / U-Net carries a 95% interval from a paired bootstrap
over the galaxies (galae.evaluate.compare_reports: both models read the same galaxies, so the
interval holds the models' difference and not the luck of the draw), and the fraction of
resamples in which the autoencoder's scatter is the lower; docs/ae_vs_unet.png draws them.
Reproduce (after training both models):

    bash benchmarks/ae_vs_unet.sh        # mocks, evaluations, then this script
    python benchmarks/ae_vs_unet.py runs/eval [figure.png] [result name]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _common import write_result

from galae.evaluate import compare_reports

SETS = ("test", "seeing", "lowsn", "highz", "nou")
SET_LABELS = {
    "test": "in distribution",
    "seeing": 'seeing 2.2"',
    "lowsn": "sky noise x3",
    "highz": "z 0.25-0.4",
    "nou": "no u band",
}
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


#: The figure: (label, autoencoder variant, STATS key) — each headline metric for the amortized
#: and the refined masked autoencoder.
FIGURE_ROWS = tuple(
    (f"{label} ({name})", variant, key)
    for label, key in (
        ("log M* < 2 r_half", "log10_mstar_2rhalf_scatter_dex"),
        ("log SFR < 2 r_half", "log10_sfr_2rhalf_scatter_dex"),
        ("M* per pixel, >=10 particles", "mstar_map_per_pixel_scatter_well_sampled_dex"),
        ("SFR per pixel, >=10 particles", "sfr_map_per_pixel_scatter_well_sampled_dex"),
        ("M* per pixel, all", "mstar_map_per_pixel_scatter_dex"),
        ("SFR per pixel, all", "sfr_map_per_pixel_scatter_dex"),
    )
    for variant, name in (("ae_masked", "amortized"), ("ae_refined_masked", "refined"))
)


def main(
    root: str = "runs/eval", figure: str = "docs/ae_vs_unet.png", name: str = "ae_vs_unet"
) -> None:
    """Tabulate the reports under ``root`` into ``results/<name>.json`` and draw ``figure``
    (an empty string: no figure)."""
    table: dict[str, dict] = {}
    trained = {}
    for s in SETS:
        row = {}
        files = {}
        for model in MODELS:
            f = Path(root) / f"{model}_particles_{s}" / "metrics.json"
            if not f.exists():
                continue
            files[model] = f
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
                boot = compare_reports(files[ae], files["unet"])
                if boot["bootstrap"]:
                    row[f"ratio_{ae}_over_unet_ci95"] = {}
                    row[f"p_{ae}_below_unet"] = {}
                    for k, (a, b) in STATS.items():
                        entry = boot["rows"].get(f"maps/{a}/{b}", {})
                        if "ratio_ci95" in entry:
                            row[f"ratio_{ae}_over_unet_ci95"][k] = entry["ratio_ci95"]
                            row[f"p_{ae}_below_unet"][k] = entry["p_A_below_B"]
                    row[f"bootstrap_{ae}"] = boot["bootstrap"]
        table[s] = row
    write_result(
        name,
        {
            "trained_with": trained,
            "eval_root": str(root),
            "sets": table,
            "goal": "AE within 1.5x the U-Net in distribution; better under every shift",
            "intervals": "95%, paired bootstrap over galaxies (galae.evaluate.bootstrap_scatters)",
        },
    )
    ratios: dict[str, dict[str, dict]] = {}
    for label, variant, key in FIGURE_ROWS:
        for s, row in table.items():
            r = row.get(f"ratio_{variant}_over_unet", {}).get(key)
            if r is None:
                continue
            ci = row.get(f"ratio_{variant}_over_unet_ci95", {}).get(key)
            entry = {"ratio": r, **({"ci95": ci} if ci else {})}
            ratios.setdefault(label, {})[SET_LABELS[s]] = entry
    if ratios and figure:
        from galae import plots

        plots.shift_ratios_figure(ratios, reference_set=SET_LABELS["test"], out=figure)
        print(f"wrote {figure}")


if __name__ == "__main__":
    main(*sys.argv[1:])
