"""Real multi-band cutouts from FITS files: pixels in nanomaggies, noise, mask, WCS and PSF.

:func:`load_fits_cutouts` reads one FITS image per band (plus inverse variance, from the same
file or another) into a :class:`Cutout`; :func:`cutouts_to_h5` writes a list of cutouts in the
galae HDF5 format (:mod:`galae.data.hdf5`).

Units.  Pixels are converted to nanomaggies (AB zero point 22.5: m = 22.5 - 2.5 log10 f) by
the first rule that applies, per band:

1. an explicit ``zero_point_mag`` (the AB magnitude of one pixel unit):
   f_nmgy = value * 10^(-0.4 (ZP - 22.5));
2. an explicit ``image_unit`` ("nanomaggy", or "counts" converted with the header's NMGY =
   nanomaggies per count, the SDSS frame keyword);
3. a flux-density ``BUNIT`` header (nanomaggy, maggy, Jy, mJy, uJy, nJy; 1 nmgy = 3.631 uJy,
   Oke & Gunn 1983 AB system: 0 mag = 3631 Jy);
4. a counts-like ``BUNIT`` (counts, DN, ADU) with an ``NMGY`` header;
5. a zero-point header (MAGZERO, MAGZP, ZEROPNT, ZP);
6. an ``NMGY`` header without ``BUNIT``: SDSS convention (DR8+ frames and the Celeste.jl
   Stripe-82 stamps): the pixels are already nanomaggies and NMGY only records the
   calibration from counts;
7. otherwise the units are unknown and it is an error.

The inverse variance is in the image's (inverse squared) units and converts with the same
factor.  sigma = ivar^(-1/2); ivar <= 0 or non-finite, and non-finite image pixels, are masked.

PSF.  From an explicit ``psf_fwhm_arcsec``, or from the header: the SDSS 3-Gaussian mixture of
Celeste.jl's stamps (PSF_P0..2 amplitudes, P3..8 means (x, y) per component, P9..17
covariances (xx, yy, xy) per component, all in pixels), or a PSF_FWHM keyword (arcsec).  The
FWHM of a mixture is "effective" by default: the FWHM of the Gaussian with the same
noise-equivalent area 1 / int p^2 (King 1983, PASP 95, 163), which is how SDSS defines its
seeing ("PSF width", Stoughton et al. 2002, sec. 4.3) and what :mod:`galae.data.conditions`
samples; ``psf_fwhm_definition="half_maximum"`` gives the literal FWHM instead.  The mixture
is also rendered, sampled at pixel centres (the SDSS PSF model describes the pixelated
image of a star), as ``psf_image``.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning
from astropy.wcs.utils import proj_plane_pixel_scales

from galae.data.conditions import SDSS_BANDS
from galae.data.hdf5 import H5Writer

__all__ = [
    "Cutout",
    "GaussianMixturePSF",
    "load_fits_cutouts",
    "cutouts_to_h5",
    "crop_cutout",
    "fill_missing_bands",
    "split_hdu_selector",
    "sdss_psf_mixture",
    "mixture_fwhm_pix",
    "render_mixture",
]

PathLike = str | os.PathLike

# Gaussian sigma -> FWHM.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass(frozen=True, eq=False)
class Cutout:
    """One galaxy's multi-band cutout.

    Attributes:
        images: (C, H, W) float32, nanomaggies per pixel (0 where masked and not finite).
        sigma: (C, H, W) float32, 1-sigma noise per pixel in nanomaggies; > 0 everywhere
            (masked pixels carry their band's median sigma, meaningless there).
        mask: (C, H, W) bool, True = pixel ignored.
        bands: band names, length C.
        pixel_scale_arcsec: arcsec / pixel.
        wcs: celestial WCS of the first band that has one (all bands share the pixel grid:
            :func:`load_fits_cutouts` checks it), or None.
        psf_fwhm_arcsec: (C,) float32 PSF FWHM per band (arcsec), or None if unknown.
        psf_image: (C, h, w) float32 PSF images summing to 1, or None.
        sources: the image file of each band.
    """

    images: np.ndarray
    sigma: np.ndarray
    mask: np.ndarray
    bands: tuple[str, ...]
    pixel_scale_arcsec: float
    wcs: WCS | None
    psf_fwhm_arcsec: np.ndarray | None
    psf_image: np.ndarray | None
    sources: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class GaussianMixturePSF:
    """A PSF as a mixture of K 2-d Gaussians, in pixel units.

    Attributes:
        amplitudes: (K,) weights (the integral of each component).
        means_pix: (K, 2) centres (x, y) in pixels relative to the PSF centre.
        covariances_pix2: (K, 2, 2) covariance matrices [[xx, xy], [xy, yy]] in pixels^2.
    """

    amplitudes: np.ndarray
    means_pix: np.ndarray
    covariances_pix2: np.ndarray

    def __post_init__(self) -> None:
        a, m, c = self.amplitudes, self.means_pix, self.covariances_pix2
        k = a.shape[0]
        if a.ndim != 1 or m.shape != (k, 2) or c.shape != (k, 2, 2):
            raise ValueError(
                f"mixture shapes must be (K,), (K, 2), (K, 2, 2); got {a.shape}, {m.shape}, "
                f"{c.shape}"
            )
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(m)) and np.all(np.isfinite(c))):
            raise ValueError("mixture has NaN/inf parameters")
        det = c[:, 0, 0] * c[:, 1, 1] - c[:, 0, 1] * c[:, 1, 0]
        if np.any(c[:, 0, 0] <= 0) or np.any(det <= 0):
            raise ValueError("mixture covariances must be positive definite")
        if a.sum() <= 0:
            raise ValueError("mixture amplitudes must sum to > 0")

    def density(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Mixture density at pixel offsets (x, y) (any broadcastable shapes), per pixel^2."""
        out = np.zeros(np.broadcast(x, y).shape)
        for a, (mx, my), cov in zip(
            self.amplitudes, self.means_pix, self.covariances_pix2, strict=True
        ):
            det = cov[0, 0] * cov[1, 1] - cov[0, 1] * cov[1, 0]
            dx, dy = x - mx, y - my
            q = (cov[1, 1] * dx * dx - 2.0 * cov[0, 1] * dx * dy + cov[0, 0] * dy * dy) / det
            out = out + a * np.exp(-0.5 * q) / (2.0 * math.pi * math.sqrt(det))
        return out


def sdss_psf_mixture(header: fits.Header) -> GaussianMixturePSF | None:
    """The 3-Gaussian PSF of a Celeste.jl SDSS stamp header (PSF_P0..PSF_P17), or None."""
    keys = [f"PSF_P{i}" for i in range(18)]
    if not all(k in header for k in keys):
        return None
    p = np.array([float(header[k]) for k in keys])
    amplitudes = p[0:3]
    means = p[3:9].reshape(3, 2)
    cov = np.empty((3, 2, 2))
    for k in range(3):
        xx, yy, xy = p[9 + 3 * k : 12 + 3 * k]
        cov[k] = [[xx, xy], [xy, yy]]
    return GaussianMixturePSF(amplitudes, means, cov)


def _fwhm_effective(mix: GaussianMixturePSF) -> float:
    """FWHM (pixels) of the Gaussian with the mixture's noise-equivalent area.

    N_eff = (sum a)^2 / int f^2 with int f^2 = sum_jk a_j a_k N(mu_j - mu_k; 0, S_j + S_k)
    (the product of two Gaussians integrates to a Gaussian of the difference of means); a
    Gaussian of standard deviation s has N_eff = 4 pi s^2 (King 1983).
    """
    a, m, c = mix.amplitudes, mix.means_pix, mix.covariances_pix2
    total = 0.0
    for j in range(a.size):
        for k in range(a.size):
            s = c[j] + c[k]
            det = s[0, 0] * s[1, 1] - s[0, 1] * s[1, 0]
            d = m[j] - m[k]
            q = (s[1, 1] * d[0] ** 2 - 2.0 * s[0, 1] * d[0] * d[1] + s[0, 0] * d[1] ** 2) / det
            total += a[j] * a[k] * math.exp(-0.5 * q) / (2.0 * math.pi * math.sqrt(det))
    n_eff = a.sum() ** 2 / total
    return _FWHM_PER_SIGMA * math.sqrt(n_eff / (4.0 * math.pi))


def _fwhm_half_maximum(mix: GaussianMixturePSF) -> float:
    """Literal FWHM (pixels): diameter of the circle with the area where f >= max(f) / 2.

    Evaluated on a grid of spacing (smallest component sigma) / 20 over +-4 (largest
    component sigma) around the centre; exact for one circular Gaussian up to the grid
    sampling (relative error ~1e-3).
    """
    eig = np.linalg.eigvalsh(mix.covariances_pix2)
    s_min, s_max = math.sqrt(eig.min()), math.sqrt(eig.max())
    h = s_min / 20.0
    half = min(4.0 * s_max + float(np.abs(mix.means_pix).max()), 1500.0 * h)
    g = np.arange(-half, half + 0.5 * h, h)
    f = mix.density(g[None, :], g[:, None])
    area = float((f >= 0.5 * f.max()).sum()) * h * h
    return 2.0 * math.sqrt(area / math.pi)


_FWHM_DEFINITIONS: dict[str, Callable[[GaussianMixturePSF], float]] = {
    "effective": _fwhm_effective,
    "half_maximum": _fwhm_half_maximum,
}


def mixture_fwhm_pix(mix: GaussianMixturePSF, definition: str = "effective") -> float:
    """FWHM of a Gaussian-mixture PSF in pixels ("effective" or "half_maximum")."""
    if definition not in _FWHM_DEFINITIONS:
        raise ValueError(
            f"unknown psf_fwhm_definition {definition!r}; known: {sorted(_FWHM_DEFINITIONS)}"
        )
    return _FWHM_DEFINITIONS[definition](mix)


def render_mixture(mix: GaussianMixturePSF, size: int) -> np.ndarray:
    """(size, size) PSF image sampled at pixel centres, centre at (size-1)/2, summing to 1."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"PSF image size must be odd and >= 1, got {size}")
    g = np.arange(size) - (size - 1) / 2.0
    img = mix.density(g[None, :], g[:, None])
    return (img / img.sum()).astype(np.float32)


# --------------------------------------------------------------------------------------
# Units
# --------------------------------------------------------------------------------------

# BUNIT (lower case, spaces removed) -> nanomaggies per unit.  1 maggy = 3631 Jy (AB, Oke &
# Gunn 1983), so 1 nmgy = 3.631e-6 Jy.
_FLUX_BUNITS: dict[str, float] = {
    "nanomaggy": 1.0,
    "nanomaggies": 1.0,
    "nmgy": 1.0,
    "nanomaggy/pixel": 1.0,
    "maggy": 1e9,
    "maggies": 1e9,
    "jy": 1.0 / 3.631e-6,
    "mjy": 1e-3 / 3.631e-6,
    "ujy": 1e-6 / 3.631e-6,
    "microjy": 1e-6 / 3.631e-6,
    "njy": 1e-9 / 3.631e-6,
}
_COUNT_BUNITS = ("counts", "count", "dn", "adu")
_ZP_KEYWORDS = ("MAGZERO", "MAGZP", "ZEROPNT", "ZP")


def _zp_factor(zero_point_mag: float) -> float:
    """nanomaggies per unit for an AB zero point (magnitude of one unit)."""
    if not math.isfinite(zero_point_mag):
        raise ValueError(f"zero point must be finite, got {zero_point_mag}")
    return 10.0 ** (-0.4 * (zero_point_mag - 22.5))


def _bunit(header: fits.Header) -> str | None:
    value = header.get("BUNIT")
    return None if value is None else re.sub(r"\s+", "", str(value)).lower()


def _nmgy_header(header: fits.Header, where: str) -> float | None:
    if "NMGY" not in header:
        return None
    value = float(header["NMGY"])
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: NMGY header must be > 0, got {value}")
    return value


@dataclass(frozen=True)
class _UnitRequest:
    """Explicit unit choices for one band."""

    zero_point_mag: float | None
    image_unit: str | None


def _rule_explicit_zp(header: fits.Header, req: _UnitRequest, where: str) -> float | None:
    return None if req.zero_point_mag is None else _zp_factor(req.zero_point_mag)


def _unit_nanomaggy(header: fits.Header, where: str) -> float:
    return 1.0


def _unit_counts(header: fits.Header, where: str) -> float:
    nmgy = _nmgy_header(header, where)
    if nmgy is None:
        raise ValueError(f"{where}: image_unit='counts' needs an NMGY header (nmgy per count)")
    return nmgy


_IMAGE_UNITS: dict[str, Callable[[fits.Header, str], float]] = {
    "nanomaggy": _unit_nanomaggy,
    "counts": _unit_counts,
}


def _rule_explicit_unit(header: fits.Header, req: _UnitRequest, where: str) -> float | None:
    if req.image_unit is None:
        return None
    if req.image_unit not in _IMAGE_UNITS:
        raise ValueError(f"unknown image_unit {req.image_unit!r}; known: {sorted(_IMAGE_UNITS)}")
    return _IMAGE_UNITS[req.image_unit](header, where)


def _rule_flux_bunit(header: fits.Header, req: _UnitRequest, where: str) -> float | None:
    return _FLUX_BUNITS.get(_bunit(header) or "")


def _rule_count_bunit(header: fits.Header, req: _UnitRequest, where: str) -> float | None:
    return _nmgy_header(header, where) if _bunit(header) in _COUNT_BUNITS else None


def _rule_zp_header(header: fits.Header, req: _UnitRequest, where: str) -> float | None:
    for key in _ZP_KEYWORDS:
        if key in header:
            return _zp_factor(float(header[key]))
    return None


def _rule_sdss_nmgy(header: fits.Header, req: _UnitRequest, where: str) -> float | None:
    if _bunit(header) is None and _nmgy_header(header, where) is not None:
        return 1.0
    return None


_UNIT_RULES: tuple[Callable[[fits.Header, _UnitRequest, str], float | None], ...] = (
    _rule_explicit_zp,
    _rule_explicit_unit,
    _rule_flux_bunit,
    _rule_count_bunit,
    _rule_zp_header,
    _rule_sdss_nmgy,
)


def _nmgy_per_unit(header: fits.Header, req: _UnitRequest, where: str) -> float:
    """Nanomaggies per pixel unit, by the first matching rule (module docstring)."""
    for rule in _UNIT_RULES:
        factor = rule(header, req, where)
        if factor is not None:
            return factor
    raise ValueError(
        f"{where}: unknown pixel units (BUNIT={header.get('BUNIT')!r}, no zero point or NMGY "
        "header); pass zero_point_mag or image_unit"
    )


# --------------------------------------------------------------------------------------
# PSF from header
# --------------------------------------------------------------------------------------


def _per_band(value: Any, bands: Sequence[str], name: str) -> list[Any]:
    """A scalar, a per-band mapping or a sequence in band order -> list in band order."""
    if value is None or isinstance(value, int | float | str):
        return [value] * len(bands)
    if isinstance(value, Mapping):
        missing = [b for b in bands if b not in value]
        if missing:
            raise ValueError(f"{name} lacks bands {missing}")
        return [value[b] for b in bands]
    values = list(value)
    if len(values) != len(bands):
        raise ValueError(f"{name} has {len(values)} entries for {len(bands)} bands")
    return values


# --------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------


_HDU_SELECTOR = re.compile(r"^(?P<path>.+)\[(?P<hdu>[^\[\]]+)\]$")


def split_hdu_selector(spec: str | Path, hdu: int | str) -> tuple[Path, int | str]:
    """A file name with an optional CFITSIO-style HDU selector -> (path, HDU).

    ``"cutout.fits[3]"`` reads HDU 3 and ``"cutout.fits[IVAR]"`` the HDU of that EXTNAME, as
    ds9 and fitsio write them, so the bands of a multi-extension cutout (a Legacy Surveys
    cutout holds g, its inverse variance, r, ...) can each be named; a plain name keeps
    ``hdu``.  A file whose own name ends in brackets is read as that file.
    """
    text = str(spec)
    m = _HDU_SELECTOR.match(text)
    if m is None or Path(text).exists():
        return Path(text), hdu
    sel = m.group("hdu").strip()
    try:
        return Path(m.group("path")), int(sel)
    except ValueError:
        return Path(m.group("path")), sel


def _read_hdu(path: Path, hdu: int | str, what: str) -> tuple[np.ndarray, fits.Header]:
    """2-d float64 data and header of one HDU (an index, or an EXTNAME).

    A missing file is a FileNotFoundError, an unreadable, truncated or corrupt one an OSError,
    a wrong HDU a ValueError; each names the file.
    """
    path, hdu = split_hdu_selector(path, hdu)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    n_hdu = 0
    unknown_name: str | None = None  # the EXTNAMEs there, when an absent one was asked for
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False) as hdul:
                n_hdu = len(hdul)
                names = [h.name.upper() for h in hdul]
                if isinstance(hdu, str) and hdu.upper() not in names:
                    unknown_name = ", ".join(n for n in names if n) or "none"
                elif isinstance(hdu, str):
                    hdu = names.index(hdu.upper())
                if unknown_name is None and -n_hdu <= int(hdu) < n_hdu:
                    data, header = hdul[hdu].data, hdul[hdu].header.copy()
        except (OSError, ValueError, TypeError, IndexError, EOFError) as err:
            truncated = any("truncat" in str(w.message).lower() for w in caught)
            why = "truncated FITS file" if truncated else "corrupt or not a FITS file"
            raise OSError(f"{path}: cannot read the {what} HDU {hdu} ({why}: {err})") from err
    for w in caught:  # e.g. astropy's notes on non-standard headers: said, naming the file
        if "truncat" not in str(w.message).lower():  # the HDU read is whole: nothing lost
            warnings.warn(f"{path}: {w.message}", w.category, stacklevel=3)
    if unknown_name is not None:
        raise ValueError(f"{path}: no HDU named {hdu!r} (EXTNAMEs: {unknown_name})")
    if not -n_hdu <= int(hdu) < n_hdu:
        raise ValueError(f"{path}: has {n_hdu} HDUs, asked for {what} HDU {hdu}")
    if data is None or data.ndim != 2:
        shape = None if data is None else data.shape
        raise ValueError(f"{path}: {what} HDU {hdu} is not a 2-d image (shape {shape})")
    return np.asarray(data, dtype=np.float64), header


#: A FILTER (or BAND) header value naming an SDSS band: "r", "r'", "SDSS r", "sdss_r", "r-band".
_SDSS_FILTER = re.compile(r"(sdss[\s_\-]*)?([ugriz])'?([\s_\-]*band)?", re.IGNORECASE)


def _sdss_band_name(value: Any) -> str | None:
    """The SDSS band ("u".."z") a band name or filter header value names, or None.

    A bare capital letter ("R", "I") is not taken for SDSS's: it is usually Johnson-Cousins.
    """
    text = str(value).strip()
    m = _SDSS_FILTER.fullmatch(text)
    if m is None or (m.group(1) is None and m.group(2).isupper()):
        return None
    return m.group(2).lower()


def _check_band_header(header: fits.Header, band: str, where: str) -> None:
    """A BAND or FILTER header that names another band than ``band`` is an error.

    BAND (galae's own keyword) must name the band; FILTER (SDSS frames: "r") is checked when
    both it and ``band`` are recognised SDSS band names (other surveys' filter names pass).
    """
    mine = _sdss_band_name(band)
    if "BAND" in header:
        value = str(header["BAND"]).strip()
        if value != band and (mine is None or _sdss_band_name(value) != mine):
            raise ValueError(f"{where}: file's BAND header is {value!r}, not {band!r}")
    if "FILTER" in header:
        value = str(header["FILTER"]).strip()
        theirs = _sdss_band_name(value)
        if value != band and mine is not None and theirs is not None and theirs != mine:
            raise ValueError(
                f"{where}: file's FILTER header is {value!r} (SDSS {theirs}), not {band!r}"
            )


def _celestial_wcs(header: fits.Header) -> WCS | None:
    """Celestial WCS of a header, or None if it has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header, naxis=2)
    return wcs.celestial if wcs.has_celestial else None


def _wcs_pixel_scale(wcs: WCS, where: str) -> float:
    """Pixel scale (arcsec) of a celestial WCS; square pixels required (1 % tolerance)."""
    scales = proj_plane_pixel_scales(wcs) * 3600.0
    if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
        raise ValueError(f"{where}: WCS pixel scale is not positive: {scales}")
    if abs(scales[0] / scales[1] - 1.0) > 0.01:
        raise ValueError(f'{where}: pixels are not square ({scales[0]:.4g}" x {scales[1]:.4g}")')
    return float(math.sqrt(scales[0] * scales[1]))


def _check_registration(
    wcs: WCS,
    ref: WCS,
    shape: tuple[int, ...],
    names: tuple[str, str],
    scale_arcsec: float,
    where: str,
) -> None:
    """Check that a band's WCS puts its pixels where the reference band's WCS puts its own.

    The sky position of the stamp's centre must agree within half a pixel, and the pixel axes'
    orientation and scale (the CD, or PC x CDELT, matrices) within 1 % of the pixel scale.

    Args:
        wcs, ref: celestial WCS of the band and of the reference band.
        shape: (H, W) of the stamps.
        names: (band, reference band), for the message.
        scale_arcsec: the reference band's pixel scale.
        where: the file, for the message.
    """
    band, ref_band = names
    height, width = shape[-2:]
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        world = wcs.pixel_to_world_values(cx, cy)
        px, py = ref.world_to_pixel_values(*world)
    offset = float(np.hypot(float(px) - cx, float(py) - cy))
    if not offset <= 0.5:
        raise ValueError(
            f"{where}: {band} is misregistered with {ref_band} by {offset:.3g} pixels "
            f"({offset * scale_arcsec:.3g}\"): its WCS puts the stamp's centre that far from "
            f"where {ref_band}'s does; the bands must be cut on one pixel grid (to within half a "
            "pixel)"
        )
    m, m0 = wcs.pixel_scale_matrix, ref.pixel_scale_matrix
    pixel = math.sqrt(abs(float(np.linalg.det(m0))))
    mismatch = float(np.abs(m - m0).max()) / pixel
    if not mismatch <= 0.01:
        raise ValueError(
            f"{where}: the pixel axes of {band} are not those of {ref_band}: their WCS matrices "
            f"(CD, or PC x CDELT) differ by {100 * mismatch:.3g}% of the pixel scale (rotated, "
            "flipped, swapped or rescaled axes; 1% is allowed); the bands must be cut on one "
            "pixel grid"
        )


def load_fits_cutouts(
    paths_by_band: Mapping[str, PathLike],
    ivar_paths: Mapping[str, PathLike] | None = None,
    *,
    bands: Sequence[str] | None = SDSS_BANDS,
    hdu: int = 0,
    ivar_hdu: int | None = None,
    zero_point_mag: float | Mapping[str, float] | None = None,
    image_unit: str | None = None,
    psf_fwhm_arcsec: float | Mapping[str, float] | Sequence[float] | None = None,
    psf_fwhm_definition: str = "effective",
    psf_image_size: int = 25,
    pixel_scale_arcsec: float | None = None,
    check_band_header: bool = True,
) -> Cutout:
    """Read one galaxy's cutout, one FITS file per band, into nanomaggies with noise and mask.

    Example (the Celeste.jl SDSS Stripe-82 stamps: HDU 2k image, 2k+1 inverse variance of
    epoch k)::

        cut = load_fits_cutouts({b: f"stamp-{b}-5.0073-0.0739.fits" for b in "ugriz"},
                                hdu=0, ivar_hdu=1)

    Args:
        paths_by_band: {band: image file}, in band order; ``"file.fits[3]"`` or
            ``"file.fits[EXTNAME]"`` picks that HDU of the file instead of ``hdu``
            (:func:`split_hdu_selector`), for bands that share one multi-extension file.
        ivar_paths: {band: inverse-variance file}; the HDU read is ``ivar_hdu`` (default 0)
            or the file's own selector. Without it, ``ivar_hdu`` of the image file is read.
        bands: the required band order (default u, g, r, i, z); None accepts any bands in the
            order of ``paths_by_band``.
        hdu: HDU index of the image in each file.
        ivar_hdu: HDU index of the inverse variance (same file unless ``ivar_paths``).
        zero_point_mag: AB zero point of the pixel unit (scalar or per band); overrides headers.
        image_unit: "nanomaggy" or "counts" (uses the NMGY header); overrides headers.
        psf_fwhm_arcsec: PSF FWHM per band (scalar, mapping or sequence); overrides headers.
        psf_fwhm_definition: "effective" or "half_maximum" for mixture PSFs (module docstring).
        psf_image_size: side (odd) of the rendered PSF image for mixture PSFs.
        pixel_scale_arcsec: used when the files have no celestial WCS; else checked against it.
        check_band_header: require a BAND header keyword, where present, to match the band,
            and a FILTER keyword (SDSS frames: "r"; also "SDSS r", "r'"), where present and an
            SDSS band name, to name the same band (other filter names are not checked).

    Returns:
        A :class:`Cutout`.

    Raises:
        ValueError: wrong band order or count (naming the bands), BAND or FILTER header
            mismatch, unknown units, different image shapes or pixel scales between bands,
            bands whose WCS disagree (the stamp centre more than half a pixel apart on the sky,
            or rotated, flipped or swapped pixel axes), no inverse variance, no pixel scale, a
            PSF FWHM or pixel scale given that is not finite and > 0.
        FileNotFoundError / OSError: a missing, unreadable or truncated file (named).
    """
    given = tuple(paths_by_band)
    if not given:
        raise ValueError("paths_by_band is empty")
    if bands is not None and given != tuple(bands):
        raise ValueError(
            f"bands given as {','.join(given)} ({len(given)}); expected {','.join(bands)} "
            f"({len(bands)}) in this order"
        )
    if ivar_paths is not None and tuple(ivar_paths) != given:
        raise ValueError(
            f"ivar_paths bands {','.join(ivar_paths)} differ from image bands {','.join(given)}"
        )
    if ivar_paths is None and ivar_hdu is None:
        raise ValueError("no inverse variance: pass ivar_paths or ivar_hdu")
    zps = _per_band(zero_point_mag, given, "zero_point_mag")
    fwhm_given = _per_band(psf_fwhm_arcsec, given, "psf_fwhm_arcsec")
    if psf_fwhm_definition not in _FWHM_DEFINITIONS:
        raise ValueError(
            f"unknown psf_fwhm_definition {psf_fwhm_definition!r}; "
            f"known: {sorted(_FWHM_DEFINITIONS)}"
        )

    if pixel_scale_arcsec is not None and not (
        math.isfinite(pixel_scale_arcsec) and pixel_scale_arcsec > 0
    ):
        raise ValueError(f"pixel_scale_arcsec must be finite and > 0, got {pixel_scale_arcsec}")
    for band, value in zip(given, fwhm_given, strict=True):
        if value is not None and not (math.isfinite(float(value)) and float(value) > 0):
            raise ValueError(f"psf_fwhm_arcsec of band {band} must be finite and > 0, got {value}")

    images, sigmas, masks, fwhms, psfs, sources = [], [], [], [], [], []
    wcs0: WCS | None = None
    wcs_band = given[0]
    scale0: float | None = None
    for band, zp, fwhm_arg in zip(given, zps, fwhm_given, strict=True):
        path = Path(paths_by_band[band])
        where = f"{path} (band {band})"
        image, header = _read_hdu(path, hdu, "image")
        if ivar_paths is not None:
            ivar, _ = _read_hdu(Path(ivar_paths[band]), ivar_hdu or 0, "inverse-variance")
        else:
            ivar, _ = _read_hdu(path, int(ivar_hdu), "inverse-variance")  # type: ignore[arg-type]
        if ivar.shape != image.shape:
            raise ValueError(f"{where}: inverse variance {ivar.shape} != image {image.shape}")
        if check_band_header:
            _check_band_header(header, band, where)
        if images and image.shape != images[0].shape:
            raise ValueError(
                f"{where}: image shape {image.shape} differs from band {given[0]}'s "
                f"{images[0].shape}"
            )

        wcs = _celestial_wcs(header)
        if wcs is not None:
            scale = _wcs_pixel_scale(wcs, where)
            if pixel_scale_arcsec is not None and abs(scale / pixel_scale_arcsec - 1) > 0.01:
                raise ValueError(
                    f'{where}: WCS pixel scale {scale:.4g}" != given {pixel_scale_arcsec}"'
                )
        elif pixel_scale_arcsec is not None:
            scale = float(pixel_scale_arcsec)
        else:
            raise ValueError(f"{where}: no celestial WCS; pass pixel_scale_arcsec")
        if scale0 is None:
            scale0 = scale
        elif abs(scale / scale0 - 1.0) > 0.01:
            raise ValueError(
                f'{where}: pixel scale {scale:.4g}" differs from band {given[0]}\'s {scale0:.4g}"'
            )
        if wcs is not None:
            if wcs0 is None:
                wcs0, wcs_band = wcs, band
            else:
                _check_registration(wcs, wcs0, image.shape, (band, wcs_band), scale0, where)

        factor = _nmgy_per_unit(header, _UnitRequest(zp, image_unit), where)
        image_nmgy = image * factor
        ivar_nmgy = ivar / factor**2
        mask = ~(np.isfinite(ivar_nmgy) & (ivar_nmgy > 0)) | ~np.isfinite(image_nmgy)
        with np.errstate(divide="ignore", invalid="ignore"):
            sigma = 1.0 / np.sqrt(ivar_nmgy)
        fill = float(np.median(sigma[~mask])) if (~mask).any() else 1.0
        sigma = np.where(mask, fill, sigma)
        image_nmgy = np.where(np.isfinite(image_nmgy), image_nmgy, 0.0)

        mix = sdss_psf_mixture(header)
        psf_img = None
        if fwhm_arg is not None:
            fwhm = float(fwhm_arg)
        elif mix is not None:
            fwhm = mixture_fwhm_pix(mix, psf_fwhm_definition) * scale
        elif "PSF_FWHM" in header:
            fwhm = float(header["PSF_FWHM"])
        else:
            fwhm = math.nan
        if not (math.isnan(fwhm) or (math.isfinite(fwhm) and fwhm > 0)):
            raise ValueError(f"{where}: PSF FWHM must be > 0, got {fwhm}")
        if mix is not None:
            psf_img = render_mixture(mix, psf_image_size)

        images.append(image_nmgy)
        sigmas.append(sigma)
        masks.append(mask)
        fwhms.append(fwhm)
        psfs.append(psf_img)
        sources.append(str(path))

    fwhm_arr = np.asarray(fwhms, dtype=np.float32)
    psf_stack = None if any(p is None for p in psfs) else np.stack(psfs).astype(np.float32)
    assert scale0 is not None
    return Cutout(
        images=np.stack(images).astype(np.float32),
        sigma=np.stack(sigmas).astype(np.float32),
        mask=np.stack(masks),
        bands=given,
        pixel_scale_arcsec=scale0,
        wcs=wcs0,
        psf_fwhm_arcsec=None if np.isnan(fwhm_arr).any() else fwhm_arr,
        psf_image=psf_stack,
        sources=tuple(sources),
    )


def fill_missing_bands(
    cutout: Cutout, bands: Sequence[str], psf_fwhm_arcsec: Mapping[str, float]
) -> Cutout:
    """The cutout on the band list ``bands``, the bands it lacks added as fully masked planes.

    A band the survey did not take (or that was lost) is no data: its pixels are masked, so the
    likelihood ignores them, and an encoder trained with missing bands (``galae.train``'s
    ``sleep_missing_band_fraction``) reads the mask.  The cutout's bands must appear in
    ``bands`` in the same order.

    Args:
        cutout: the cutout.
        bands: the bands wanted (a superset of ``cutout.bands``, in order).
        psf_fwhm_arcsec: PSF FWHM (arcsec) to record for each added band (the encoder is
            told a PSF for every band; for a masked band any typical value serves).

    Raises:
        ValueError: a band of the cutout not in ``bands``, or out of order; no FWHM given for
            an added band.
    """
    bands = tuple(bands)
    unknown = [b for b in cutout.bands if b not in bands]
    if unknown:
        raise ValueError(f"bands {','.join(unknown)} are not among {','.join(bands)}")
    order = [bands.index(b) for b in cutout.bands]
    if order != sorted(order):
        raise ValueError(
            f"bands {','.join(cutout.bands)} are not in the order of {','.join(bands)}"
        )
    missing = [b for b in bands if b not in cutout.bands]
    if not missing:
        return cutout
    no_fwhm = [b for b in missing if b not in psf_fwhm_arcsec]
    if no_fwhm:
        raise ValueError(f"no PSF FWHM given for the added band(s) {','.join(no_fwhm)}")
    h, w = cutout.images.shape[-2:]
    images = np.zeros((len(bands), h, w), np.float32)
    sigma = np.ones((len(bands), h, w), np.float32)
    mask = np.ones((len(bands), h, w), bool)
    images[order], sigma[order], mask[order] = cutout.images, cutout.sigma, cutout.mask
    psf = None
    if cutout.psf_fwhm_arcsec is not None:
        psf = np.array([float(psf_fwhm_arcsec.get(b, np.nan)) for b in bands], np.float32)
        psf[order] = cutout.psf_fwhm_arcsec
    psf_image = None
    if cutout.psf_image is not None:  # a Gaussian of the given FWHM for the added bands
        size = cutout.psf_image.shape[-1]
        psf_image = np.zeros((len(bands), size, size), np.float32)
        psf_image[order] = cutout.psf_image
        for i, b in enumerate(bands):
            if b in missing:
                var = (psf_fwhm_arcsec[b] / cutout.pixel_scale_arcsec / _FWHM_PER_SIGMA) ** 2
                gaussian = GaussianMixturePSF(np.ones(1), np.zeros((1, 2)), var * np.eye(2)[None])
                psf_image[i] = render_mixture(gaussian, size)
    return replace(
        cutout,
        images=images,
        sigma=sigma,
        mask=mask,
        bands=bands,
        psf_fwhm_arcsec=psf,
        psf_image=psf_image,
        sources=tuple(
            cutout.sources[cutout.bands.index(b)] if b in cutout.bands else "(missing)"
            for b in bands
        ),
    )


def crop_cutout(
    cutout: Cutout, shape: tuple[int, int], center_pix: tuple[int, int] | None = None
) -> Cutout:
    """A (H, W) sub-stamp of a cutout (WCS cropped too).

    Args:
        cutout: the cutout.
        shape: (H, W) of the crop.
        center_pix: integer (x, y) pixel that becomes the crop's centre pixel
            (index (H // 2, W // 2)); default the cutout's centre pixel.

    Raises:
        ValueError: the crop does not fit inside the cutout.
    """
    height, width = (int(s) for s in shape)
    full_h, full_w = cutout.images.shape[-2:]
    cx, cy = (full_w // 2, full_h // 2) if center_pix is None else (int(c) for c in center_pix)
    x0, y0 = cx - width // 2, cy - height // 2
    if height < 1 or width < 1 or x0 < 0 or y0 < 0 or x0 + width > full_w or y0 + height > full_h:
        raise ValueError(
            f"crop {height}x{width} around (x={cx}, y={cy}) does not fit in {full_h}x{full_w}"
        )
    sl = (slice(None), slice(y0, y0 + height), slice(x0, x0 + width))
    wcs = None if cutout.wcs is None else cutout.wcs[sl[1], sl[2]]
    return replace(
        cutout,
        images=cutout.images[sl].copy(),
        sigma=cutout.sigma[sl].copy(),
        mask=cutout.mask[sl].copy(),
        wcs=wcs,
    )


def cutouts_to_h5(
    path: PathLike,
    cutouts: Sequence[Cutout],
    *,
    redshift: Sequence[float] | np.ndarray | None = None,
    generator: str = "galae.data.fits",
    generator_config: str | Mapping[str, Any] | None = None,
    overwrite: bool = False,
    compression: str = "gzip",
) -> Path:
    """Write cutouts (same bands, shape and pixel scale) as a galae HDF5 data set.

    Writes ``psf_fwhm_arcsec`` when every cutout has it and ``psf_image`` when every cutout
    has one of the same shape; at least one of them is required.  ``redshift`` (n,) defaults
    to NaN (unknown).  The source files are recorded in ``generator_config`` when it is not
    given.

    Returns:
        The path written.
    """
    if not cutouts:
        raise ValueError("no cutouts to write")
    first = cutouts[0]
    for k, cut in enumerate(cutouts):
        if cut.bands != first.bands:
            raise ValueError(f"cutout {k} has bands {cut.bands}, cutout 0 has {first.bands}")
        if cut.images.shape != first.images.shape:
            raise ValueError(
                f"cutout {k} has shape {cut.images.shape}, cutout 0 has {first.images.shape}"
                " (crop them with crop_cutout)"
            )
        if abs(cut.pixel_scale_arcsec / first.pixel_scale_arcsec - 1.0) > 1e-3:
            raise ValueError(
                f'cutout {k} has pixel scale {cut.pixel_scale_arcsec}", cutout 0 has '
                f'{first.pixel_scale_arcsec}"'
            )
    n = len(cutouts)
    z = np.full(n, np.nan) if redshift is None else np.asarray(redshift, dtype=np.float64)
    if z.shape != (n,):
        raise ValueError(f"redshift must have shape ({n},), got {z.shape}")
    batch: dict[str, Any] = {
        "images": np.stack([c.images for c in cutouts]),
        "sigma": np.stack([c.sigma for c in cutouts]),
        "mask": np.stack([c.mask for c in cutouts]),
        "redshift": z,
    }
    if all(c.psf_fwhm_arcsec is not None for c in cutouts):
        batch["psf_fwhm_arcsec"] = np.stack([c.psf_fwhm_arcsec for c in cutouts])
    psf_shapes = {None if c.psf_image is None else c.psf_image.shape for c in cutouts}
    if None not in psf_shapes and len(psf_shapes) == 1:
        batch["psf_image"] = np.stack([c.psf_image for c in cutouts])
    if "psf_fwhm_arcsec" not in batch and "psf_image" not in batch:
        raise ValueError("the cutouts carry no PSF: pass psf_fwhm_arcsec to load_fits_cutouts")
    if generator_config is None:
        generator_config = {"sources": [list(c.sources) for c in cutouts]}
    with H5Writer(
        path,
        bands=first.bands,
        pixel_scale_arcsec=first.pixel_scale_arcsec,
        generator=generator,
        generator_config=generator_config,
        overwrite=overwrite,
        compression=compression,
    ) as writer:
        writer.append(batch)
    return Path(path)
