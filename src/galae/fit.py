"""Fit one galaxy from its FITS cutouts and write its maps and parameters as FITS.

    python -m galae.fit u=stamp-u.fits g=stamp-g.fits r=stamp-r.fits i=stamp-i.fits \\
        z=stamp-z.fits --ivar-hdu 1 --out galaxy.fits [--redshift 0.08] [--refine-steps 60]

The cutouts are read by :func:`galae.data.fits.load_fits_cutouts` (nanomaggies, noise, mask,
PSF and WCS from the headers, or from the options), optionally cut about their centre with
``--crop N`` (the WCS follows; stamps larger than the model's are fitted whole, the encoder
reading their centre), encoded by the model (the packaged one by
default) with other sources masked by segmentation, refined through the renderer, and written
by :func:`galae.export.write_posterior_fits`: every map's posterior mean and standard deviation
on the stamp's pixels with its WCS, the model image, the fit's mask and a table of every
parameter's posterior mean, standard deviation and unit.  A PSF model in the headers (SDSS's
3-Gaussian mixture) is convolved with as an image (``encode``'s ``psf_image``).  Without
``--redshift`` the redshift is inferred with the rest (the photo-z posterior).  A band left
out (``u=`` not given, say) is masked: no data, as is a band whose pixels are all unusable
(NaN, or inverse variance <= 0), with a note; a galaxy without any usable pixel is an error.
The bands' WCS must agree (one pixel grid), and stamps (after ``--crop``) must be at least
16 x 16 pixels.  A summary is printed.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from galae.runtime import cli_errors

#: Quantities the printed summary shows (all are in the FITS table).
SUMMARY = (
    "redshift",
    "mag_r",
    "r_half_arcsec_r",
    "bulge_to_total_r",
    "log10_mstar_msun",
    "log10_sfr_msun_per_yr",
    "age_disk_gyr",
    "av_face_on_mag",
)


#: Smallest stamp side (pixels) fitted, 6.3" at SDSS's 0.396"/pixel: the encoder places, sizes
#: and measures the galaxy against the sky around it, and segmentation finds the other sources
#: there; an 8 x 8 stamp holds hardly more than the PSF core (1.4" FWHM = 3.5 pixels).
MIN_STAMP_PIX = 16


def _check_options(a: argparse.Namespace) -> None:
    """The options' values, before any file is read (the message names the option)."""
    values = {
        "--psf-fwhm": a.psf_fwhm,
        "--pixel-scale": None if a.pixel_scale is None else [a.pixel_scale],
    }
    for option, given in values.items():
        for v in given or ():
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{option} must be finite and > 0, got {v:g}")
    for v in a.zero_point or ():
        if not np.isfinite(v):
            raise ValueError(f"--zero-point must be finite, got {v:g}")
    if a.refine_steps < 0:
        raise ValueError(f"--refine-steps must be >= 0, got {a.refine_steps}")
    if a.redshift is not None and not (np.isfinite(a.redshift) and a.redshift > 0):
        raise ValueError(f"--redshift must be a positive number, got {a.redshift:g}")
    if a.n_mc_derived < 2:
        raise ValueError(
            f"--n-mc-derived must be >= 2, got {a.n_mc_derived}: the derived observables "
            "(stellar mass, magnitudes, sizes) and the maps' spreads come from rendered draws, "
            "and a spread needs two"
        )
    if a.crop is not None and a.crop < MIN_STAMP_PIX:
        raise ValueError(
            f"--crop {a.crop}: stamps must be at least {MIN_STAMP_PIX} x {MIN_STAMP_PIX} pixels "
            "(the galaxy with sky around it)"
        )


def _check_pixels(cut: Any, given: Sequence[str]) -> None:
    """The stamp's size, a note for each given band without a usable pixel, and an error when
    no band has one (all masked: nothing to fit)."""
    h, w = cut.images.shape[-2:]
    if min(h, w) < MIN_STAMP_PIX:
        raise ValueError(
            f"the stamps are {h} x {w} pixels; galae.fit needs at least {MIN_STAMP_PIX} x "
            f"{MIN_STAMP_PIX}: the encoder places, sizes and measures the galaxy against the sky "
            "around it"
        )
    empty = [b for i, b in enumerate(cut.bands) if b in given and bool(cut.mask[i].all())]
    if bool(cut.mask.all()):
        raise ValueError(
            "no usable pixel: every pixel of every band is masked (image NaN or inverse "
            "variance <= 0 or not finite), so there is nothing to fit: "
            + ", ".join(f"{b}={cut.sources[cut.bands.index(b)]}" for b in given)
        )
    for b in empty:
        print(
            f"band {b} ({cut.sources[cut.bands.index(b)]}) has no usable pixel (image NaN or "
            "inverse variance <= 0 or not finite everywhere): masked (no data)"
        )


def _band_files(items: Sequence[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        band, sep, path = item.partition("=")
        if not sep or not band or not path:
            raise ValueError(f"{what}: expected BAND=FILE, got {item!r}")
        if band in out:
            raise ValueError(f"{what}: band {band!r} given twice")
        out[band] = path
    return out


def _floats(values: Sequence[float] | None) -> float | list[float] | None:
    if values is None:
        return None
    if len(values) == 1:
        return float(values[0])
    return [float(v) for v in values]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m galae.fit", description=__doc__.splitlines()[0])
    ap.add_argument(
        "images",
        nargs="+",
        metavar="BAND=FILE",
        help="one image file per band; FILE[N] or FILE[EXTNAME] picks an HDU of the file",
    )
    ap.add_argument("--out", required=True, help="output FITS file")
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--checkpoint", default=None, help="model (default: the packaged one)")
    ap.add_argument(
        "--ivar",
        nargs="*",
        default=None,
        metavar="BAND=FILE",
        help="inverse-variance files (default: --ivar-hdu of the image files)",
    )
    ap.add_argument("--hdu", type=int, default=0, help="HDU of the image in each file")
    ap.add_argument("--ivar-hdu", type=int, default=None, help="HDU of the inverse variance")
    ap.add_argument(
        "--zero-point",
        type=float,
        nargs="+",
        default=None,
        help="AB zero point of the pixel unit (one, or one per band)",
    )
    ap.add_argument("--image-unit", choices=("nanomaggy", "counts"), default=None)
    ap.add_argument(
        "--psf-fwhm",
        type=float,
        nargs="+",
        default=None,
        help="PSF FWHM in arcsec (one, or one per band) of a Gaussian PSF; default from the "
        "headers (their PSF model's image where they give one, as SDSS's 3-Gaussian mixture)",
    )
    ap.add_argument(
        "--pixel-scale",
        type=float,
        default=None,
        help="arcsec per pixel, for files without a celestial WCS",
    )
    ap.add_argument(
        "--redshift",
        type=float,
        default=None,
        help="spectroscopic redshift; without it the photo-z posterior is used",
    )
    ap.add_argument(
        "--refine-steps",
        type=int,
        default=60,
        help="likelihood steps through the renderer (0: the amortized posterior)",
    )
    ap.add_argument(
        "--no-mask-neighbours",
        action="store_true",
        help="do not mask other sources (stars, neighbouring galaxies)",
    )
    ap.add_argument(
        "--crop",
        type=int,
        default=None,
        metavar="N",
        help=f"cut N x N pixels about the stamp's centre first (N >= {MIN_STAMP_PIX})",
    )
    ap.add_argument(
        "--n-mc-derived",
        type=int,
        default=64,
        help="rendered posterior draws for the maps' and observables' moments (>= 2)",
    )
    a = ap.parse_args(argv)
    _check_options(a)
    out = Path(a.out)
    if out.exists() and not a.overwrite:
        raise FileExistsError(f"{out} exists (pass --overwrite to replace it)")

    import galae
    from galae.data.conditions import median_psf_fwhm_arcsec
    from galae.data.fits import crop_cutout, fill_missing_bands, load_fits_cutouts
    from galae.export import write_posterior_fits

    paths = _band_files(a.images, "images")
    cut = load_fits_cutouts(
        paths,
        _band_files(a.ivar, "--ivar") if a.ivar else None,
        hdu=a.hdu,
        ivar_hdu=a.ivar_hdu,
        zero_point_mag=_floats(a.zero_point),
        image_unit=a.image_unit,
        psf_fwhm_arcsec=_floats(a.psf_fwhm),
        pixel_scale_arcsec=a.pixel_scale,
        bands=None,
    )
    if cut.psf_fwhm_arcsec is None:
        raise ValueError("no PSF FWHM in the headers: give it with --psf-fwhm")
    model = galae.load(a.checkpoint)
    missing = [b for b in model.bands if b not in cut.bands]
    if missing:
        # a band not taken is masked (the model was trained with missing bands)
        typical = dict(zip(model.bands, median_psf_fwhm_arcsec(model.bands), strict=True))
        cut = fill_missing_bands(cut, model.bands, typical)
        print(f"bands {','.join(missing)} not given: masked (no data)")
    elif cut.bands != tuple(model.bands):
        raise ValueError(
            f"bands given as {','.join(cut.bands)}; this model takes {','.join(model.bands)} "
            "in this order (a band may be left out)"
        )
    if a.crop is not None:
        cut = crop_cutout(cut, (a.crop, a.crop))
    _check_pixels(cut, tuple(paths))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        # the headers' PSF model, where they give one, is the PSF (its image); an explicit
        # --psf-fwhm is a Gaussian of that FWHM
        psf_kw = (
            {"psf_image": cut.psf_image[None]}
            if a.psf_fwhm is None and cut.psf_image is not None
            else {"psf_fwhm_arcsec": cut.psf_fwhm_arcsec[None]}
        )
        post = model.encode(
            cut.images[None],
            cut.sigma[None],
            **psf_kw,
            redshift=None if a.redshift is None else np.array([a.redshift], np.float32),
            pixel_scale_arcsec=cut.pixel_scale_arcsec,
            mask=cut.mask[None],
            mask_neighbours=not a.no_mask_neighbours,
            refine_steps=a.refine_steps,
            n_mc_derived=a.n_mc_derived,
        )
    for w in caught:  # e.g. a poor fit: said once, on the command line
        print(f"warning: {w.message}")
    meta = {
        "CHECKPT": (a.checkpoint or "packaged default model")[-68:],
        "NSTEPS": a.refine_steps,
        "NEIGHMSK": not a.no_mask_neighbours,
    }
    write_posterior_fits(post, out, 0, cut.wcs, meta, overwrite=a.overwrite)
    summary = {
        k: (float(post.params[k][0]), float(post.std[k][0])) for k in SUMMARY if k in post.params
    }
    best = {k: float(post.model_params[k][0]) for k in summary if k in post.model_params}
    kind = f"refined ({a.refine_steps} steps)" if a.refine_steps else "amortized"
    print(
        f"{Path(next(iter(paths.values()))).name} ...: {kind}, chi2 per pixel "
        f"{float(post.chi2_per_pixel[0]):.2f}"
    )
    print(f"  {'':24s} {'mean':>10s}    {'std':<9s} {'best fit':>10s}")
    for k, (m, s) in summary.items():
        print(f"  {k:24s} {m:10.4g} +- {s:<9.3g} {best.get(k, float('nan')):10.4g}")
    print(f"wrote {out}")
    return {
        "out": str(out),
        "params": summary,
        "best_fit": best,
        "chi2_per_pixel": float(post.chi2_per_pixel[0]),
    }


if __name__ == "__main__":
    with cli_errors("python -m galae.fit"):
        main()
