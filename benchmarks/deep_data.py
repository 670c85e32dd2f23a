"""Images deeper than the training data: evaluation summaries side by side, and a grid of
exponential disks encoded at several depths.

    python benchmarks/deep_data.py \
        --runs packaged=runs/eval/pkg_analytic_deep sigma_ft=runs/eval/new_analytic_deep \
        --grid packaged=src/galae/default_model/model.pt sigma_ft=runs/sigma_ft/model_cal.pt

``--runs LABEL=DIR``: ``galae.evaluate`` output folders (their ``metrics.json``), summarised in one
row each: median and 84th-percentile chi2 per pixel, the fraction of galaxies above
:data:`galae.sampling.POOR_FIT_CHI2_PER_PIXEL`, log stellar mass scatter (1.4826 MAD) and median
bias, r-band half-light radius median absolute fractional error, r-band magnitude bias, and the
range of the latents' 68% coverage; on particle mocks also the map scatters of issue 6 (log M*
and log SFR within 2 r_half, per pixel over all and over well-sampled pixels).

``--grid LABEL=CHECKPOINT``: each model encodes (amortized) the same 16 exponential disks (r_half
0.5-4 arcsec, r-band flux 5-500 nmgy, fixed colours, at z = 0.1) under SDSS-median sky noise per
band times each of ``--depths`` (1 = the training data's noise); reported: the median chi2 per
pixel and the median ratio of model to data r-band flux on the stamp.

Results: ``results/deep_data.json``.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import name_value_pairs as _pairs
from _common import write_result

import galae
from galae.render.profile_api import noisy_disk_grid
from galae.sampling import POOR_FIT_CHI2_PER_PIXEL

#: Median per-pixel sky noise of the analytic mocks per band u, g, r, i, z (nmgy), measured on
#: configs/mock_analytic.yaml's stamps (the training data of the packaged model).
SKY_SIGMA_NMGY: tuple[float, ...] = (0.054, 0.018, 0.029, 0.048, 0.23)
#: Flux ratios u/r, g/r, r/r, i/r, z/r of the grid's disks (a red-sequence-like colour).
COLOURS: tuple[float, ...] = (0.15, 0.5, 1.0, 1.4, 1.7)
R_HALF_ARCSEC: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
R_FLUX_NMGY: tuple[float, ...] = (5.0, 20.0, 100.0, 500.0)


def summarize(run_dir: Path) -> dict[str, float]:
    m = json.loads((run_dir / "metrics.json").read_text())
    p, chi2 = m["params"], m["chi2_per_pixel"]
    cov = [v["68"] for v in m["coverage"].values() if isinstance(v, dict) and "68" in v]
    return (
        {
            "n": p["log10_mstar_msun"]["n"],
            "refine_steps": m.get("refine_steps", 0),
            "chi2_per_pixel_median": chi2["median"],
            "chi2_per_pixel_p84": chi2["p84"],
            "fraction_chi2_above_poor_fit": chi2.get("fraction_above_poor_fit"),
            "log10_mstar_scatter_mad_dex": p["log10_mstar_msun"]["scatter_mad"],
            "log10_mstar_bias_median_dex": p["log10_mstar_msun"]["bias_median"],
            "r_half_r_median_abs_frac_error": p["r_half_arcsec_r"]["median_abs_frac_error"],
            "mag_r_bias_median": p["mag_r"]["bias_median"],
            "coverage_68_min": min(cov),
            "coverage_68_max": max(cov),
            "fraction_refined": m.get("fraction_refined"),
        }
        | _map_scatters(m.get("maps", {}))
        | ({"photo_z": m["photo_z"]} if "photo_z" in m else {})
    )


def _map_scatters(maps: dict[str, Any]) -> dict[str, float]:
    """The particle mocks' map figures of issue 6, where the evaluation has them."""
    out = {}
    for short, name in (("mstar", "log10_mstar_2rhalf"), ("sfr", "log10_sfr_2rhalf")):
        if name in maps:
            out[f"log10_{short}_2rhalf_scatter_dex"] = maps[name]["scatter_dex"]
    for short, name in (
        ("mstar", "log10_sigma_mstar_msun_per_kpc2"),
        ("sfr", "log10_sigma_sfr_msun_per_yr_per_kpc2"),
    ):
        entry = maps.get(name, {})
        for key, label in (
            ("per_pixel_scatter", "all"),
            ("per_pixel_scatter_well_sampled", "well_sampled"),
        ):
            if key in entry:
                out[f"{short}_map_per_pixel_scatter_{label}_dex"] = entry[key]
    return out


def grid_images(depth: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The grid's 16 disks (16, 5, 64, 64) with noise, and their sigma, at ``depth`` x the sky."""
    return noisy_disk_grid(R_HALF_ARCSEC, R_FLUX_NMGY, COLOURS, SKY_SIGMA_NMGY, depth, seed)


def grid(checkpoint: str, depths: list[float]) -> dict[str, Any]:
    model = galae.load(checkpoint)
    out: dict[str, Any] = {}
    for depth in depths:
        x, sigma = grid_images(depth)
        n = x.shape[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the poor-fit warning: measured here instead
            post = model.encode(
                x,
                sigma,
                psf_fwhm_arcsec=np.full((n, 5), 1.4),
                redshift=np.full(n, 0.1),
                n_mc=32,
                n_mc_derived=2,
            )
        chi2 = post.chi2_per_pixel
        ratio = post.model_images[:, 2].sum((-2, -1)) / torch.as_tensor(x[:, 2]).sum((-2, -1))
        out[f"{depth:g}"] = {
            "chi2_per_pixel_median": float(chi2.median()),
            "fraction_chi2_above_poor_fit": float((chi2 > POOR_FIT_CHI2_PER_PIXEL).float().mean()),
            "r_flux_model_over_data_median": float(ratio.median()),
            "chi2_per_pixel": [round(float(c), 2) for c in chi2],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", nargs="*", default=[], help="LABEL=galae.evaluate output folder")
    ap.add_argument("--grid", nargs="*", default=[], help="LABEL=checkpoint for the disk grid")
    ap.add_argument("--depths", type=float, nargs="+", default=[1.0, 0.3, 0.1])
    ap.add_argument("--out-name", default="deep_data")
    a = ap.parse_args()
    payload: dict[str, Any] = {
        "runs": {k: summarize(Path(v)) | {"path": v} for k, v in _pairs(a.runs).items()},
        "grid": {
            k: {"checkpoint": v, "depths": grid(v, a.depths)} for k, v in _pairs(a.grid).items()
        },
        "grid_layout": {
            "r_half_arcsec": R_HALF_ARCSEC,
            "r_flux_nmgy": R_FLUX_NMGY,
            "order": "r_half-major: galaxy i = 4 * (r_half index) + (flux index)",
            "sky_sigma_nmgy_at_depth_1": SKY_SIGMA_NMGY,
        },
    }
    write_result(a.out_name, payload)


if __name__ == "__main__":
    main()
