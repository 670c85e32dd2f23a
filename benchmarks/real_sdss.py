"""A real SDSS galaxy fitted by a galae model: the README's "real SDSS galaxy" figures.

The Stripe-82 ugriz stamp of ``tests/data/celeste_sdss`` (one epoch; see its ATTRIBUTION.md)
is encoded with other sources masked and its PSF model as an image (``psf_image``), amortized
and refined (60 steps), with the redshift
unknown (photo-z) and fixed at an assumed 0.15 (no spectroscopic redshift is at hand).  Writes
``results/real_sdss[_<name>].json``: the photo-z, r magnitude, log M*, log SFR and r_half with
their posterior standard deviations, and the fit's chi2 per pixel by band.

    python benchmarks/real_sdss.py [--checkpoint C] [--name NAME]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import write_result

import galae
from galae.data.fits import load_fits_cutouts
from galae.likelihood import chi2_per_pixel

STAMPS = Path(__file__).resolve().parents[1] / "tests" / "data" / "celeste_sdss"
BANDS = ("u", "g", "r", "i", "z")
#: an assumed redshift for the second fit (the galaxy has no spectroscopic one)
ASSUMED_REDSHIFT = 0.15
PARAMS = (
    "redshift",
    "mag_r",
    "log10_mstar_msun",
    "log10_sfr_msun_per_yr",
    "r_half_arcsec_r",
)


def _summary(post: Any, images: np.ndarray, sigma: np.ndarray) -> dict[str, Any]:
    """Posterior mean +- std of the reported quantities, and the fit per band."""
    out: dict[str, Any] = {}
    for name in PARAMS:
        if name in post.params:
            mean = float(post.params[name][0])
            std = float(post.std[name][0]) if name in post.std else float("nan")
            out[name] = {"mean": round(mean, 4), "std": round(std, 4)}
    # the bands as the batch axis of galae.likelihood.chi2_per_pixel: one value per band
    per_band = chi2_per_pixel(
        post.model_images[0].cpu(),
        torch.as_tensor(images[0]),
        torch.as_tensor(sigma[0]),
        post.mask[0].cpu(),
    )
    out["chi2_per_pixel_by_band"] = dict(
        zip(BANDS, (round(float(v), 3) for v in per_band), strict=True)
    )
    out["chi2_per_pixel"] = round(float(post.chi2_per_pixel[0]), 3)
    out["masked_fraction"] = round(float(post.mask[0].float().mean()), 3)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: the packaged model")
    p.add_argument("--name", default="", help="suffix of the results file")
    p.add_argument("--refine-steps", type=int, default=60)
    a = p.parse_args(argv)

    cut = load_fits_cutouts(
        {b: STAMPS / f"stamp-{b}-5.0073-0.0739.fits" for b in BANDS}, ivar_hdu=1
    )
    m = galae.load(a.checkpoint)
    images = cut.images[None]
    sigma = cut.sigma[None]
    psf = cut.psf_image[None]  # the epoch's SDSS PSF model (3-Gaussian mixture) as an image
    fits: dict[str, Any] = {}
    for label, z in (("photo_z", None), (f"z_{ASSUMED_REDSHIFT}", [ASSUMED_REDSHIFT])):
        for steps in (0, a.refine_steps):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # a poor fit is reported in the JSON instead
                torch.manual_seed(0)
                post = m.encode(
                    images,
                    sigma,
                    psf_image=psf,
                    redshift=None if z is None else np.asarray(z, dtype=np.float32),
                    pixel_scale_arcsec=cut.pixel_scale_arcsec,
                    mask=cut.mask[None],
                    mask_neighbours=True,
                    refine_steps=steps,
                    n_mc_derived=64,
                )
            kind = "refined" if steps else "amortized"
            fits[f"{label}_{kind}"] = _summary(post, images, sigma)
            print(label, kind, fits[f"{label}_{kind}"])
    result = {
        "checkpoint": a.checkpoint or "packaged default model",
        "stamp": "tests/data/celeste_sdss (SDSS Stripe 82, one epoch; see ATTRIBUTION.md)",
        "refine_steps": a.refine_steps,
        "assumed_redshift": ASSUMED_REDSHIFT,
        "fits": fits,
    }
    name = "real_sdss" + (f"_{a.name}" if a.name else "")
    write_result(name, result)


if __name__ == "__main__":
    main()
