"""A galaxy's posterior as a FITS file: its resolved maps with the image's WCS, and its parameters.

:func:`posterior_hdus` (and :func:`write_posterior_fits`) turn one galaxy of a
:class:`~galae.sampling.Posterior` into

* a primary HDU whose header says what made it (galae version, the model's training, whether
  the posterior was refined and the redshift given or inferred, the fit's chi2 per pixel, and
  any cards the caller adds, such as the checkpoint);
* per map of :data:`galae.physics.maps.MAP_UNITS`, an image HDU of its posterior mean per pixel
  (``EXTNAME`` the map's name in capitals) and one of its posterior standard deviation (name
  plus ``_STD``; only when the posterior has them), with ``BUNIT`` the map's unit and the
  celestial WCS of the input stamp when one is given;
* ``MODEL_<BAND>`` per band: the model image in nanomaggies per pixel;
* ``MASK_<BAND>`` per band: 1 where a pixel was left out of the fit (the input mask,
  non-finite pixels, and with ``mask_neighbours`` the other sources);
* ``PARAMS``: a table of every posterior quantity (latents, derived observables, redshift)
  with its posterior mean, standard deviation, best fit (``Posterior.model_params``: the model
  of ``MODEL_*``; for a refined posterior the better point estimate) and unit
  (:func:`galae.latent.unit_of`).

The maps lie on the input stamp's pixel grid, so the stamp's WCS describes them unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from galae import __version__
from galae.latent import unit_of
from galae.physics.maps import MAP_UNITS

__all__ = ["posterior_hdus", "write_posterior_fits"]

#: FITS extension of a map's posterior standard deviation: the map's EXTNAME plus this.
STD_SUFFIX = "_STD"


#: primary-header keywords that galae writes itself or that FITS reserves: ``meta`` may not set
#: them (a ``meta`` REDSHIFT would replace the posterior's, a SIMPLE would break the file).
RESERVED_KEYWORDS = frozenset(
    {"ORIGIN", "GALAEVER", "TRAINSTP", "TRAINED", "REFINED", "ZGIVEN", "REDSHIFT", "CHI2PIX"}
    | {"PIXSCALE", "SIMPLE", "BITPIX", "EXTEND", "EXTNAME", "XTENSION", "PCOUNT", "GCOUNT"}
    | {"END", "BLANK", "BSCALE", "BZERO"}
)
_KEYWORD = re.compile(r"[A-Z0-9_-]{1,8}")


def _extname(name: str) -> str:
    return name.upper()


def _meta_keyword(key: Any) -> str:
    """``key`` as a primary-header keyword that ``meta`` may set, or a ValueError."""
    word = str(key).upper()
    if not _KEYWORD.fullmatch(word):
        raise ValueError(
            f"FITS keyword {key!r}: 1-8 characters of A-Z, 0-9, '_' or '-' (no spaces)"
        )
    if word in RESERVED_KEYWORDS or word.startswith("NAXIS"):
        raise ValueError(f"FITS keyword {key!r} is written by galae or FITS itself; rename it")
    return word


def _stamp_wcs(wcs: Any, shape: tuple[int, int]) -> WCS | None:
    """``wcs`` (a WCS, a FITS header or None) as a 2-d celestial WCS of a stamp of ``shape``."""
    if wcs is None:
        return None
    if isinstance(wcs, fits.Header):
        wcs = WCS(wcs)
    if not isinstance(wcs, WCS):
        raise ValueError(f"wcs must be an astropy WCS or FITS header, got {type(wcs).__name__}")
    if wcs.naxis != 2 or not wcs.has_celestial:
        raise ValueError(f"wcs must be a 2-d celestial WCS, got naxis={wcs.naxis}")
    if wcs.pixel_shape is not None and tuple(wcs.pixel_shape) != (shape[1], shape[0]):
        raise ValueError(
            f"wcs describes {wcs.pixel_shape[0]} x {wcs.pixel_shape[1]} pixels (x, y); the "
            f"stamp is {shape[1]} x {shape[0]}"
        )
    return wcs


def posterior_hdus(
    post: Any,
    index: int = 0,
    wcs: WCS | None = None,
    meta: Mapping[str, Any] | None = None,
) -> fits.HDUList:
    """The FITS HDUs of galaxy ``index`` of ``post`` (module docstring for the layout).

    Args:
        post: a :class:`~galae.sampling.Posterior` of N galaxies.
        index: which galaxy, 0 <= index < N.
        wcs: the celestial WCS of that galaxy's stamp (e.g. :attr:`galae.data.fits.Cutout.wcs`),
            or a FITS header holding one, written into every image HDU; None writes none.
        meta: further primary-header cards {keyword (<= 8 characters): value}.
    Raises:
        IndexError: ``index`` outside the posterior's galaxies.
        ValueError: an ``index`` that is not an integer; a ``wcs`` that is not 2-dimensional
            and celestial, or whose pixel shape is not the stamp's; a ``meta`` keyword that is
            not a FITS keyword or is one galae writes itself (:data:`RESERVED_KEYWORDS`).
    """
    n = int(post.model_images.shape[0])
    if isinstance(index, bool) or not isinstance(index, int | np.integer):
        raise ValueError(f"index must be an integer (which galaxy), got {index!r}")
    if not 0 <= index < n:
        raise IndexError(f"galaxy index {index} outside the posterior's {n} galaxies")
    index = int(index)
    wcs = _stamp_wcs(wcs, tuple(post.model_images.shape[-2:]))
    cards = {_meta_keyword(key): value for key, value in (meta or {}).items()}
    owner = post.model
    primary = fits.PrimaryHDU()
    h = primary.header
    h["ORIGIN"] = ("galae", "galaxy posterior maps and parameters")
    h["GALAEVER"] = (__version__, "galae version")
    h["TRAINSTP"] = (int(owner.state.get("step", 0)), "training steps of the model")
    h["TRAINED"] = (str(owner.state.get("loss_terms", "unknown"))[:68], "how it learned")
    h["REFINED"] = (bool(post.refined[index]), "posterior refined through the renderer")
    h["ZGIVEN"] = (bool(post.redshift_given[index]), "redshift given (else the photo-z posterior)")
    h["REDSHIFT"] = (float(post.params["redshift"][index]), "posterior mean redshift")
    h["CHI2PIX"] = (float(post.chi2_per_pixel[index]), "chi2 per unmasked pixel of MODEL")
    h["PIXSCALE"] = (float(owner.pixel_scale_arcsec), "model pixel scale [arcsec]")
    for key, value in cards.items():
        h[key] = value
    wcs_header = wcs.to_header() if wcs is not None else fits.Header()

    def image(data: np.ndarray, extname: str, unit: str | None, comment: str) -> fits.ImageHDU:
        hdu = fits.ImageHDU(data, header=wcs_header.copy())
        hdu.header["EXTNAME"] = extname
        if unit is not None:
            hdu.header["BUNIT"] = unit
        hdu.header["COMMENT"] = comment
        return hdu

    def np32(t: Any) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

    hdus: list[Any] = [primary]
    for name, unit in MAP_UNITS.items():
        if name not in post.maps:
            continue
        mean = np32(post.maps[name][index])
        hdus.append(image(mean, _extname(name), unit, f"posterior mean of {name} per pixel"))
        if name in post.maps_std:
            std = np32(post.maps_std[name][index])
            hdus.append(
                image(std, _extname(name) + STD_SUFFIX, unit, f"posterior std of {name} per pixel")
            )
    for c, band in enumerate(owner.bands):
        model = np32(post.model_images[index, c])
        hdus.append(image(model, f"MODEL_{band.upper()}", "nanomaggy", f"model image, {band}"))
    for c, band in enumerate(owner.bands):
        mask = post.mask[index, c].detach().cpu().numpy().astype(np.uint8)
        hdus.append(
            image(mask, f"MASK_{band.upper()}", None, f"1 = pixel left out of the fit, {band}")
        )
    names = sorted(post.params)
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column("name", "A40", array=np.array(names)),
            fits.Column(
                "mean",
                "D",
                array=np.array([float(post.params[k][index]) for k in names]),
            ),
            fits.Column(
                "std",
                "D",
                array=np.array(
                    [float(post.std[k][index]) if k in post.std else np.nan for k in names]
                ),
            ),
            fits.Column(
                "best_fit",
                "D",
                array=np.array(
                    [
                        float(post.model_params[k][index]) if k in post.model_params else np.nan
                        for k in names
                    ]
                ),
            ),
            fits.Column("unit", "A24", array=np.array([unit_of(k) for k in names])),
        ],
        name="PARAMS",
    )
    hdus.append(table)
    return fits.HDUList(hdus)


def write_posterior_fits(
    post: Any,
    path: str | Path,
    index: int = 0,
    wcs: WCS | None = None,
    meta: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write :func:`posterior_hdus` of galaxy ``index`` to ``path``; returns the path.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    p = Path(path)
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists (pass overwrite=True to replace it)")
    posterior_hdus(post, index, wcs, meta).writeto(p, overwrite=overwrite)
    return p
