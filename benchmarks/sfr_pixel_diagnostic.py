"""Where the autoencoder's per-pixel SFR scatter exceeds the U-Net's (issue 6).

Reads ``galae.evaluate`` reports of the autoencoder and of the U-Net on the same particle mock
set (their ``per_galaxy.npz``) and the set's truth, and splits the galaxies into quenched
(sSFR < 1e-11 / yr), green valley and star-forming (sSFR > 1e-10 / yr).  For each class and
model: the galaxies' share of the well-sampled SFR pixels, the spread between galaxies of their
mean offset log(true / predicted) over those pixels (what the "between galaxies" part of the
per-pixel scatter measures), the scatter of log SFR inside 2 r_half (galaxies without SFR
there left out), and the scatter of the SFR scale length r_sfr (autoencoder).

With ``--redistribute N`` it also encodes the first N galaxies and tries a data-driven map: the
model's SFR map times the ratio of the observed to the model u-band light (smoothed, where the
model is above the noise), rescaled to keep the model's total SFR, and reports the per-pixel
scatter over the well-sampled pixels with and without it.

    python benchmarks/sfr_pixel_diagnostic.py runs/eval_new/ae_masked_particles_seeing \\
        runs/eval_new/unet_particles_seeing --data data/particles_seeing.h5 --name seeing \\
        [--redistribute 128]

Results: ``results/sfr_pixel_diagnostic_<name>.json``.
"""

from __future__ import annotations

import argparse
import warnings
from typing import Any

import h5py
import numpy as np
from _common import per_galaxy, write_result

SFR = "log10_sigma_sfr_msun_per_yr_per_kpc2"
#: sSFR classes, log10(sSFR / yr^-1)
CLASSES = {
    "quenched": (-np.inf, -11.0),
    "green_valley": (-11.0, -10.0),
    "star_forming": (-10.0, np.inf),
}


def _class_table(
    ae: dict[str, np.ndarray], unet: dict[str, np.ndarray], ssfr: np.ndarray
) -> dict[str, Any]:
    key = f"{SFR}/well_sampled/"
    n = ae[key + "n"]
    if not np.array_equal(n, unet[key + "n"]):
        raise ValueError("the two reports did not read the same pixels (other galaxies?)")
    out: dict[str, Any] = {}
    for name, (lo, hi) in CLASSES.items():
        sel = (n > 0) & (ssfr >= lo) & (ssfr < hi)
        row: dict[str, Any] = {
            "n_galaxies": int(sel.sum()),
            "share_of_well_sampled_pixels": float(n[sel].sum() / n[n > 0].sum()),
        }
        for label, rep in (("ae", ae), ("unet", unet)):
            offset = rep[key + "sum"][sel] / n[sel]
            row[f"{label}_pixel_offset_mean_dex"] = float(offset.mean())
            row[f"{label}_pixel_offset_spread_dex"] = float(offset.std())
            row[f"{label}_log_sfr_2rhalf_scatter_dex"] = float(
                np.nanstd(rep["log10_sfr_2rhalf/log_true_over_pred"][sel])
            )
        r_sfr = ae.get("params/r_sfr_kpc/pred_minus_true")
        if r_sfr is not None:
            row["ae_r_sfr_error_std_kpc"] = float(r_sfr[sel].std())
        out[name] = row
    return out


def _redistributed(data: str, n: int, band: str = "u", smooth_pix: float = 1.5) -> dict[str, Any]:
    from scipy.ndimage import gaussian_filter

    import galae
    from galae.data.hdf5 import read_h5
    from galae.evaluate import map_residuals, per_galaxy_map_stats, scatters_from_sums

    model = galae.load()
    d = read_h5(data, np.arange(n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = model.encode(
            d["images"],
            d["sigma"],
            psf_fwhm_arcsec=d["psf_fwhm_arcsec"],
            redshift=d["redshift"],
            mask=d["mask"],
            mask_neighbours=True,
            n_mc_derived=64,
        )
    tm = {k: np.asarray(v) for k, v in d["truth"]["maps"].items()}
    tp = {k: np.asarray(v) for k, v in d["truth"]["params"].items()}
    tp["redshift"] = np.asarray(d["redshift"])
    counts = {k: tm[k] for k in ("n_particles", "n_young_particles")}
    shape = tuple(d["images"].shape[-2:])

    def scatter(pm: dict[str, np.ndarray]) -> dict[str, float]:
        """The well-sampled per-pixel SFR scatter of maps ``pm``: total, between, within."""
        res = map_residuals(tm, pm, tp, shape, float(d["pixel_scale_arcsec"]), n, counts)
        st = per_galaxy_map_stats(res)
        k = f"{SFR}/well_sampled/"
        parts = scatters_from_sums(st[k + "n"], st[k + "sum"], st[k + "sum_sq"])
        return {
            name: float(x) for name, x in zip(("total", "between", "within"), parts, strict=True)
        }

    base = {k: v.numpy() for k, v in post.maps.items()}
    b = model.bands.index(band)
    obs = d["images"][:, b].astype(np.float64)
    mod = post.model_images[:, b].numpy().astype(np.float64)
    use = (~post.mask[:, b].numpy()).astype(np.float64)
    noise = d["sigma"][:, b].astype(np.float64)
    out: dict[str, Any] = {
        "n_galaxies": n,
        "band": band,
        "smooth_pix": smooth_pix,
        "model_maps": scatter(base),
    }
    # the smoothed images do not depend on the variant: computed once
    obs_s = np.stack(
        [
            gaussian_filter(obs[i] * use[i], smooth_pix)
            / np.maximum(gaussian_filter(use[i], smooth_pix), 1e-3)
            for i in range(n)
        ]
    )
    mod_s = np.stack([gaussian_filter(mod[i], smooth_pix) for i in range(n)])
    noise_s = np.stack([gaussian_filter(noise[i], smooth_pix) for i in range(n)]) / (
        smooth_pix * np.sqrt(4.0 * np.pi)
    )
    covered = gaussian_filter(use, (0, smooth_pix, smooth_pix)) > 0.5
    lin = 10.0 ** base[SFR]
    for alpha in (0.5, 1.0):
        for snr in (1.0, 3.0):
            good = (mod_s > snr * noise_s) & covered
            ratio = np.where(good, np.clip(obs_s / np.maximum(mod_s, 1e-12), 0.1, 10.0), 1.0)
            ratio = ratio**alpha
            norm = (lin * ratio).sum((1, 2)) / lin.sum((1, 2))
            pm = dict(base)
            pm[SFR] = base[SFR] + np.log10(ratio) - np.log10(norm)[:, None, None]
            out[f"redistributed_alpha{alpha:g}_snr{snr:g}"] = scatter(pm)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ae", help="galae.evaluate report of the autoencoder")
    ap.add_argument("unet", help="galae.evaluate report of the U-Net, same data")
    ap.add_argument("--data", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--redistribute", type=int, default=0, metavar="N")
    a = ap.parse_args(argv)
    ae, unet = per_galaxy(a.ae), per_galaxy(a.unet)
    n = ae[f"{SFR}/well_sampled/n"].size
    with h5py.File(a.data, "r") as f:
        tp = f["truth/params"]
        ssfr = np.asarray(tp["log10_sfr_msun_per_yr"][:n] - tp["log10_mstar_msun"][:n], np.float64)
    payload: dict[str, Any] = {
        "reports": {"ae": a.ae, "unet": a.unet},
        "data": a.data,
        "classes_log10_ssfr_per_yr": {k: list(v) for k, v in CLASSES.items()},
        "by_class": _class_table(ae, unet, ssfr),
    }
    if a.redistribute > 0:
        payload["redistributed_u"] = _redistributed(a.data, a.redistribute)
    write_result(f"sfr_pixel_diagnostic_{a.name}", payload)
    return payload


if __name__ == "__main__":
    main()
