"""One real SDSS galaxy seen in 17 Stripe-82 epochs: does its fitted size follow the seeing?

The Celeste.jl stamps in ``../shared/real/celeste_sdss`` hold 17 single-epoch ugriz images of
one edge-on disk (RA 5.00733, Dec 0.07394), each with its inverse variance and the epoch's
SDSS PSF model (a 3-Gaussian mixture in the header).  The galaxy is the same in every epoch; the
seeing is not (r-band FWHM 0.9-1.7").  A fitted PSF-free half-light radius that rises with the
seeing is a PSF systematic.  Each epoch is fitted by the packaged model (other sources masked,
redshift fixed at an assumed 0.15), amortized and refined (60 steps), with the PSF given as the
mixture's FWHM (noise-equivalent, ``galae.data.fits``) or as its image (``encode(...,
psf_image=...)``); the posterior means and the best fit (``Posterior.model_params``) are both
recorded.  The reference is the Stripe-82 coadd's exponential fit (theta_exp 2.00",
b/a 0.15, ``cat-s82-5.0073-0.0739.fits``), whose circular half-light radius is computed here.
An epoch whose stamp has the galaxy's centre masked in every band (it lies off the frame) is
fitted but left out of the summary.

    python benchmarks/real_sdss_epochs.py [--refine-steps 60]

Writes ``benchmarks/results/real_sdss_epochs.json``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import write_result

import galae
from galae.data.fits import load_fits_cutouts
from galae.render.psf import gaussian_equivalent_fwhm_arcsec
from galae.render.renderer import half_light_radius_pix

ROOT = Path(__file__).resolve().parent.parent
STAMPS = ROOT.parent / "shared" / "real" / "celeste_sdss"
BANDS = ("u", "g", "r", "i", "z")
EPOCHS = 17
ASSUMED_REDSHIFT = 0.15
#: the Stripe-82 coadd's exponential fit of the galaxy (cat-s82-5.0073-0.0739.fits, row 0)
COADD_THETA_EXP_ARCSEC = 2.0029445
COADD_AB_EXP = 0.14996077
COADD_CMODEL_R_NMGY = 7.0872464


def _coadd_circular_r_half() -> float:
    """Circular half-light radius (arcsec) of the coadd's exponential: r_e 2.00" along the major
    axis, b/a 0.15, drawn PSF-free on 0.05" pixels and measured about its centre."""
    scale = 0.05
    img = galae.render_profile(
        "exponential", flux=1.0, r_half_major_arcsec=COADD_THETA_EXP_ARCSEC, q=COADD_AB_EXP,
        pa_deg=0.0, shape=(801, 801), pixel_scale_arcsec=scale,
    )  # fmt: skip
    centre = torch.tensor([400.0], dtype=torch.float64)
    r = half_light_radius_pix(img.double()[None, None], centre, centre, 50)
    return float(r.reshape(-1)[0]) * scale


def _fit(m: Any, cut: Any, steps: int, psf: str) -> dict[str, float]:
    kw = (
        {"psf_image": cut.psf_image[None]}
        if psf == "image"
        else {"psf_fwhm_arcsec": cut.psf_fwhm_arcsec[None]}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        post = m.encode(
            cut.images[None], cut.sigma[None], redshift=np.float32([ASSUMED_REDSHIFT]),
            pixel_scale_arcsec=cut.pixel_scale_arcsec, mask=cut.mask[None], mask_neighbours=True,
            refine_steps=steps, n_mc_derived=32, **kw,
        )  # fmt: skip
    out = {"chi2_per_pixel": float(post.chi2_per_pixel[0])}
    for k in ("r_half_arcsec_r", "mag_r", "log10_mstar_msun"):
        out[k] = float(post.params[k][0])
        out[f"{k}_std"] = float(post.std[k][0])
        out[f"{k}_best_fit"] = float(post.model_params[k][0])
    return out


def _trend(seeing: np.ndarray, r_half: np.ndarray) -> dict[str, float]:
    """Least-squares slope of r_half against the seeing with its standard error, and the
    spread of r_half over the epochs."""
    a = np.vstack([seeing - seeing.mean(), np.ones_like(seeing)]).T
    coef, res, *_ = np.linalg.lstsq(a, r_half, rcond=None)
    dof = len(seeing) - 2
    s2 = float(res[0]) / dof if res.size else 0.0
    se = float(np.sqrt(s2 / np.sum((seeing - seeing.mean()) ** 2)))
    return {
        "mean_arcsec": float(r_half.mean()),
        "std_over_epochs_arcsec": float(r_half.std(ddof=1)),
        "slope_arcsec_per_arcsec_fwhm": float(coef[0]),
        "slope_stderr": se,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refine-steps", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    a = ap.parse_args()
    m = galae.load()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    kinds = (("amortized", 0), ("refined", a.refine_steps))
    modes = [(f"{kind}_{psf}", steps, psf) for kind, steps in kinds for psf in ("fwhm", "image")]
    for e in range(a.epochs):
        cut = load_fits_cutouts(
            {b: STAMPS / f"stamp-{b}-5.0073-0.0739.fits" for b in BANDS}, hdu=2 * e,
            ivar_hdu=2 * e + 1,
        )  # fmt: skip
        ir = BANDS.index("r")
        equivalent = gaussian_equivalent_fwhm_arcsec(
            torch.as_tensor(cut.psf_image), cut.pixel_scale_arcsec
        )
        h, w = cut.mask.shape[-2:]
        yy, xx = np.mgrid[:h, :w]
        centre = (yy - 0.5 * (h - 1)) ** 2 + (xx - 0.5 * (w - 1)) ** 2 <= (1.0 / 0.396) ** 2
        row: dict[str, Any] = {
            "epoch": e,
            # the galaxy off the frame: its centre masked in every band (encode warns)
            "centre_masked": bool(cut.mask[:, centre].all()),
            "psf_fwhm_r_arcsec": float(cut.psf_fwhm_arcsec[ir]),
            "psf_equivalent_fwhm_r_arcsec": float(equivalent[ir]),
        }
        for name, steps, psf in modes:
            row[name] = _fit(m, cut, steps, psf)
        rows.append(row)
        print(
            f"epoch {e:2d} FWHM_r {row['psf_fwhm_r_arcsec']:.2f} (equivalent "
            f"{row['psf_equivalent_fwhm_r_arcsec']:.2f}): "
            + "  ".join(
                f"{n} r_half {row[n]['r_half_arcsec_r']:.2f} chi2 {row[n]['chi2_per_pixel']:.2f}"
                for n, _, _ in modes
            ),
            flush=True,
        )
    used = [r for r in rows if not r["centre_masked"]]
    skipped = [r["epoch"] for r in rows if r["centre_masked"]]
    print(f"epochs with the galaxy's centre masked (left out of the summary): {skipped}")
    rows_all, rows = rows, used
    seeing = np.array([r["psf_fwhm_r_arcsec"] for r in rows])
    summary: dict[str, Any] = {"epochs_left_out_centre_masked": skipped}
    for name, _, _ in modes:
        rh = np.array([r[name]["r_half_arcsec_r"] for r in rows])
        summary[name] = _trend(seeing, rh) | {
            "median_chi2_per_pixel": float(np.median([r[name]["chi2_per_pixel"] for r in rows])),
            "median_r_half_std_arcsec": float(
                np.median([r[name]["r_half_arcsec_r_std"] for r in rows])
            ),
            "mag_r_mean": float(np.mean([r[name]["mag_r"] for r in rows])),
            "mag_r_std_over_epochs": float(np.std([r[name]["mag_r"] for r in rows], ddof=1)),
        }
        # the best fit (Posterior.model_params) instead of the posterior means
        best = {k: np.array([r[name][f"{k}_best_fit"] for r in rows]) for k in ("r_half_arcsec_r",
                "mag_r")}  # fmt: skip
        summary[name]["best_fit"] = _trend(seeing, best["r_half_arcsec_r"]) | {
            "mag_r_mean": float(best["mag_r"].mean()),
            "mag_r_std_over_epochs": float(best["mag_r"].std(ddof=1)),
        }
        print(name, summary[name], flush=True)
    coadd = {
        "theta_exp_arcsec": COADD_THETA_EXP_ARCSEC,
        "ab_exp": COADD_AB_EXP,
        "circular_r_half_arcsec": _coadd_circular_r_half(),
        "cmodel_mag_r": 22.5 - 2.5 * float(np.log10(COADD_CMODEL_R_NMGY)),
    }
    print("coadd", coadd)
    print(
        write_result(
            "real_sdss_epochs",
            {
                "checkpoint": "packaged model (galae.load())",
                "galaxy": "SDSS Stripe 82, RA 5.00733 Dec 0.07394 (Celeste.jl stamps, 17 epochs; "
                "../shared/real/celeste_sdss)",
                "redshift": f"fixed at an assumed {ASSUMED_REDSHIFT}",
                "modes": "amortized / refined; PSF as the mixture's noise-equivalent FWHM (fwhm) "
                "or as the mixture's image (image: encode's psf_image)",
                "coadd_reference": coadd,
                "summary": summary,
                "epochs": rows_all,
                "seconds": round(time.perf_counter() - t0, 1),
            },
        )
    )


if __name__ == "__main__":
    main()
