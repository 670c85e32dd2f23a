"""Masking of other sources (foreground stars, neighbouring galaxies) in galaxy cutouts.

SExtractor-style segmentation with numpy and :mod:`scipy.ndimage` only.  Entry point:
:func:`neighbour_mask`; thresholds in :class:`SegmentationSettings`.

1. **Detection image.**  The bands are combined into one flux-like image ``L`` with constant
   per-band weights ``w_c = 1 / median(sigma_c^2)`` (so that ``L`` stays linear in flux and the
   deblending contrasts below are flux ratios), normalised per pixel over the bands valid there;
   its noise variance ``V = sum_c a_c^2 sigma_c^2`` follows from ``sigma``.  ``L`` is smoothed
   with a normalised Gaussian kernel ``k`` (a matched filter of about the PSF core) by
   normalised convolution, ``F = conv(L, k) / conv(valid, k)``, so that masked and non-finite
   pixels do not count, and ``F`` is expressed in units of its own noise,
   ``S = F / sqrt(conv(V, k^2) / conv(valid, k)^2)``.  That is exact for white noise: for a
   fully valid stamp and constant sigma the noise shrinks by ``sqrt(sum k^2)``, i.e. about
   ``1 / (2 sqrt(pi) s)`` for a kernel of ``s`` pixels, taken here from the kernel itself.
2. **Segmentation.**  ``S > detect_thresh`` is labelled into 8-connected components;
   components smaller than ``min_area_pix`` or never reaching ``S >= min_peak_snr`` are noise
   and dropped.  The central galaxy is the component nearest the stamp centre
   ``((W - 1) / 2, (H - 1) / 2)`` (distance 0 if it contains it) within
   ``centre_search_radius_pix``; its peak ``cp`` is the brightest pixel of ``F`` in it within that
   radius, and its centre ``c0`` the centroid of the light above half that peak there.  Every
   other component is another source.
3. **Deblending** of the central component, conservatively (spiral arms, bars, dust lanes and
   star-forming clumps of the galaxy itself must not be masked; a faint neighbour overlapping
   the galaxy is rather missed).  The galaxy is taken to be roughly point-symmetric about
   ``c0``: ``G(q)``, the maximum of ``F`` over a disc of ``symmetry_radius_pix`` about the mirror
   point ``2 c0 - q`` (with the other sources found so far set to 0), estimates the galaxy's
   own light at ``q``.  A local maximum ``pk`` of ``F`` (brightest first) becomes a separate
   source only if all of:

   * it is at least ``min_peak_separation_pix`` from ``cp``, ``c0`` and the stamp centre;
   * it is not matched on the opposite side, ``G(pk) <= deblend_max_mirror * F(pk)`` (this keeps
     the halves of a disc split by a dust lane, bar ends and two-armed spirals);
   * it stands above its saddle towards ``cp`` -- the highest level ``t`` at which ``pk`` and
     ``cp`` are still connected in ``comp & (F > t)``, found by bisection (SExtractor's
     multi-thresholding restricted to the two peaks) -- by ``deblend_contrast`` of its peak
     value and by ``deblend_min_snr`` in units of the smoothed noise;
   * if it is fainter than ``cp``, the saddle is below ``deblend_max_saddle * F(cp)``: knots in
     the galaxy's bright body are taken for clumps;
   * the branch detaching at the saddle carries a flux above the saddle level of at least
     ``deblend_mincont`` of the component's flux (cf. SExtractor's DEBLEND_MINCONT).

   The source's pixels are its branch plus the pixels of the central component that flow to it
   in a watershed of ``-F`` (markers: ``cp`` and the accepted branches) within
   ``deblend_radius_factor`` times its saddle distance (peak to the central branch at the level
   where it detaches).
4. **Growing.**  Each source's pixels are dilated by ``grow_pix`` (plus ``grow_per_mag_pix`` per
   magnitude by which its peak S/N exceeds ``grow_snr_ref``, up to ``max_grow_pix``) to cover
   PSF wings.  Pixels of the central component stay unmasked where the galaxy dominates,
   ``F - G < min_contaminant_ratio * G``, and a deblended source only takes pixels of the
   central component nearer to its own peak than to ``c0``.  Discs of
   ``centre_keep_radius_pix`` about ``cp`` and ``c0`` are never masked.

Limitations: a contaminant point-symmetric to the galaxy's light (e.g. exactly opposite a
bright spiral arm), or sitting in its bright body while fainter than its peak, is not
deblended; a very bright knot of the galaxy (brighter than ``deblend_max_saddle`` of the peak
above its surroundings, far from the centre, holding more than ``deblend_mincont`` of the
light) is masked, as SExtractor would.

The returned mask is the same in every band and is not combined with the input mask.

A whole data set: :func:`mask_neighbours_h5` (``python -m galae.data.segmentation IN.h5
OUT.h5``) writes a copy of a galae HDF5 file whose mask also covers the other sources, e.g. to
train the autoencoder on survey images with neighbours (the simulations it learns from are
masked alike, ``sleep_mask_fraction``).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import shutil
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from scipy import ndimage

from galae.runtime import cli_errors

__all__ = ["DEFAULT_SEGMENTATION", "SegmentationSettings", "neighbour_mask", "mask_neighbours_h5"]

_EIGHT = np.ones((3, 3), dtype=bool)
_SADDLE_BISECTIONS = 10  # saddle level to a factor (hi / lo) ** (1 / 1024)
_CHUNK = 256  # galaxies per vectorised detection step


@dataclass(frozen=True)
class SegmentationSettings:
    """Thresholds of :func:`neighbour_mask` (immutable; vary with ``dataclasses.replace``).

    "S/N" below means units of the noise sigma of the smoothed, band-combined detection image
    (not of a single pixel of one band).  The defaults were tuned on SDSS-like particle mocks
    (0.396 arcsec pixels, seeing FWHM ~3-5 pixels, 64 x 64 stamps) for high recall of stars and
    neighbours with next to no masking of the central galaxy's own light.

    Detection:
        smooth_fwhm_pix: FWHM (pixels) of the Gaussian smoothing kernel of the detection image
            (a matched filter of about the PSF core).
        detect_thresh: detection threshold (S/N).
        min_area_pix: minimum area (pixels) of a detected component; smaller ones are noise.
        min_peak_snr: minimum peak S/N of a detected component.
    Central galaxy:
        centre_search_radius_pix: the central galaxy's component must come within this
            distance (pixels) of the stamp centre; its peak is searched within this radius.
        centre_keep_radius_pix: radius (pixels) of the discs about the central peak and the
            galaxy's centre that are never masked.
    Deblending of the central component:
        min_peak_separation_pix: minimum distance (pixels) of a secondary peak from the central
            peak, the galaxy's centre and the stamp centre.
        deblend_contrast: minimum rise of a secondary peak above its saddle level, as a
            fraction of the peak value (dimensionless, in [0, 1)).
        deblend_min_snr: minimum rise of a secondary peak above its saddle level (S/N at the
            peak).
        deblend_mincont: minimum flux above the saddle level of the detaching branch, as a
            fraction of the central component's flux (dimensionless).
        deblend_max_saddle: a secondary peak fainter than the central peak is rejected if its
            saddle level exceeds this fraction of the central peak's value: it sits in the
            galaxy's bright body and is taken for a clump or arm (dimensionless).
        deblend_max_mirror: maximum ratio of the galaxy's light at the mirror point (about the
            galaxy's centre) to the secondary peak's value (dimensionless).
        symmetry_radius_pix: radius (pixels) of the disc about the mirror point over which the
            mirrored light is maximised (tolerance to asymmetry and centring).
        deblend_radius_factor: a secondary source's pixels within the central component lie
            within this factor times its saddle distance (pixels) from its peak.
    Masking and growing:
        min_contaminant_ratio: a pixel of the central component is masked only where the
            estimated contaminating light exceeds this multiple of the galaxy's (symmetric)
            light there (dimensionless).
        grow_pix: dilation radius (pixels) of every source's mask.
        grow_per_mag_pix: extra dilation (pixels) per magnitude (factor 10**0.4) by which a
            source's peak S/N exceeds ``grow_snr_ref``.
        grow_snr_ref: peak S/N above which the extra dilation starts.
        max_grow_pix: upper bound (pixels) on the total dilation radius.
    """

    smooth_fwhm_pix: float = 2.0
    detect_thresh: float = 2.0
    min_area_pix: int = 8
    min_peak_snr: float = 5.0
    centre_search_radius_pix: float = 6.0
    centre_keep_radius_pix: float = 2.5
    min_peak_separation_pix: float = 8.0
    deblend_contrast: float = 0.45
    deblend_min_snr: float = 8.0
    deblend_mincont: float = 0.005
    deblend_max_mirror: float = 0.33
    deblend_max_saddle: float = 0.3
    symmetry_radius_pix: float = 2.0
    deblend_radius_factor: float = 1.5
    min_contaminant_ratio: float = 0.5
    grow_pix: float = 3.0
    grow_per_mag_pix: float = 1.0
    grow_snr_ref: float = 50.0
    max_grow_pix: float = 12.0

    def __post_init__(self) -> None:
        positive = {"smooth_fwhm_pix", "detect_thresh", "centre_search_radius_pix", "grow_snr_ref"}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(
                    f"SegmentationSettings.{f.name} must be a finite number, got {v!r}"
                )
            if f.name in positive and v <= 0:
                raise ValueError(f"SegmentationSettings.{f.name} must be > 0, got {v!r}")
            if v < 0:
                raise ValueError(f"SegmentationSettings.{f.name} must be >= 0, got {v!r}")
        if self.deblend_contrast >= 1.0:
            raise ValueError(
                f"SegmentationSettings.deblend_contrast must be < 1, got {self.deblend_contrast!r}"
            )


DEFAULT_SEGMENTATION = SegmentationSettings()


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------


def _gaussian_kernel_1d(fwhm_pix: float) -> np.ndarray:
    """Normalised 1-D Gaussian of the given FWHM (pixels), truncated at 4 sigma; shape (K,)."""
    s = fwhm_pix / (2.0 * math.sqrt(2.0 * math.log(2.0)))
    half = max(1, int(math.ceil(4.0 * s)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / s) ** 2)
    return g / g.sum()


def _smooth(a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable correlation of (N, H, W) with the 1-D kernel g along H and W (zeros outside)."""
    out = ndimage.correlate1d(a, g, axis=-1, mode="constant", cval=0.0)
    return ndimage.correlate1d(out, g, axis=-2, mode="constant", cval=0.0)


@functools.lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (yy, xx), each (H, W) float64 (read-only, cached)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy.flags.writeable = False
    xx.flags.writeable = False
    return yy, xx


@functools.lru_cache(maxsize=32)
def _disc(radius: float) -> np.ndarray:
    """Boolean disc of the given radius (pixels); shape (2 r + 1, 2 r + 1), r = floor(radius)."""
    r = int(math.floor(radius))
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    out = (x * x + y * y) <= radius * radius + 1e-9
    out.flags.writeable = False
    return out


def _check_shapes(
    images: np.ndarray, sigma: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, bool]:
    """Check the shapes and dtypes of the inputs of :func:`neighbour_mask` (no copies).

    Returns (x, sig, m, single): x (N, C, H, W) view of images; sig (N, C, H, W) (broadcast
    from (N, C) where given per band); m (N, C, H, W) bool or None; whether the input was a
    single (C, H, W) galaxy.
    """
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(
            f"images must have shape (N, C, H, W) or (C, H, W); got ndim {images.ndim} "
            f"(shape {images.shape})"
        )
    if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
        raise ValueError(f"images must be a real numeric array, got dtype {images.dtype}")
    single = images.ndim == 3
    x = images[None] if single else images
    n, c, h, w = x.shape
    if min(n, c, h, w) < 1:
        raise ValueError(f"images has an empty dimension: shape {images.shape}")

    sig = np.asarray(sigma)
    if not (np.issubdtype(sig.dtype, np.floating) or np.issubdtype(sig.dtype, np.integer)):
        raise ValueError(f"sigma must be a real numeric array, got dtype {sig.dtype}")
    if single and sig.ndim in (1, 3):
        sig = sig[None]
    if sig.shape == (n, c):
        sig = np.broadcast_to(sig[:, :, None, None], x.shape)
    elif sig.shape != x.shape:
        expect = "(C, H, W) or (C,)" if single else "(N, C, H, W) or (N, C)"
        raise ValueError(
            f"sigma shape {np.shape(sigma)} does not match images shape {images.shape}: "
            f"expected {expect}"
        )

    m = None
    if mask is not None:
        m = np.asarray(mask)
        if not (m.dtype == bool or np.issubdtype(m.dtype, np.integer)):
            raise ValueError(f"mask must be a boolean array, got dtype {m.dtype}")
        if single and m.ndim == 3:
            m = m[None]
        if m.shape != x.shape:
            raise ValueError(
                f"mask shape {np.shape(mask)} does not match images shape {images.shape}"
            )
        m = m.astype(bool, copy=False)
    return x, sig, m, single


def _prepare(
    x: np.ndarray, sig: np.ndarray, m: np.ndarray | None, offset: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 copies of (N, C, H, W) images and sigma with invalid pixels neutralised.

    Returns (x, sig, valid): invalid (masked or non-finite) pixels get x = 0 and sig = 1;
    valid (N, C, H, W) bool.  Raises ValueError where sigma is not finite and > 0 on a valid
    pixel (``offset`` is added to the galaxy index in the message).
    """
    x = np.asarray(x, dtype=np.float64)
    sig = np.asarray(sig, dtype=np.float64)
    valid = np.isfinite(x)
    if m is not None:
        valid &= ~m
    bad = valid & ~(np.isfinite(sig) & (sig > 0))
    if bad.any():
        first = tuple(int(i[0]) for i in np.nonzero(bad))
        where = (first[0] + offset, *first[1:])
        raise ValueError(
            f"sigma must be finite and > 0 on every unmasked pixel; {int(bad.sum())} pixel(s) "
            f"are not (first at index {where} of the (N, C, H, W) array: sigma = {sig[first]!r})"
        )
    return np.where(valid, x, 0.0), np.where(valid, sig, 1.0), valid


def _validate(
    images: np.ndarray, sigma: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Check and normalise all inputs at once (see :func:`_check_shapes`, :func:`_prepare`).

    Returns (x, sig, valid, single) with x, sig, valid (N, C, H, W).
    """
    x, sig, m, single = _check_shapes(images, sigma, mask)
    return (*_prepare(x, sig, m), single)


def _detection(
    x: np.ndarray, sig: np.ndarray, valid: np.ndarray, fwhm_pix: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smoothed, band-combined detection image and its S/N (see the module docstring).

    x, sig, valid: (N, C, H, W) as returned by :func:`_validate`.  Returns F (N, H, W) (a
    band-weighted mean flux, smoothed), S (N, H, W) (F in units of its own noise sigma) and
    ok (N, H, W) bool (enough valid pixels under the kernel; F = S = 0 elsewhere).
    """
    n, c = x.shape[:2]
    var = sig * sig
    # constant per-band weights 1 / median(sigma^2) over the valid pixels (0 for an empty band)
    if valid.all():
        med = np.median(var.reshape(n, c, -1), axis=-1)  # (N, C)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN bands
            med = np.nanmedian(np.where(valid, var, np.nan).reshape(n, c, -1), axis=-1)
    good = np.isfinite(med) & (med > 0)
    wband = np.where(good, 1.0 / np.where(good, med, 1.0), 0.0)
    wpix = wband[:, :, None, None] * valid  # (N, C, H, W)
    wsum = wpix.sum(axis=1)  # (N, H, W)
    pix_ok = wsum > 0
    a = wpix / np.where(pix_ok, wsum, 1.0)[:, None]
    lum = (a * x).sum(axis=1)  # (N, H, W) combined flux
    lvar = (a * a * var).sum(axis=1)  # its noise variance
    v = pix_ok.astype(np.float64)
    g = _gaussian_kernel_1d(fwhm_pix)
    den = _smooth(v, g)  # conv(valid, k): 1 inside a fully valid stamp
    num = _smooth(lum * v, g)
    nvar = _smooth(lvar * v, g * g)  # conv(V, k^2): k^2 = (g g^T)^2 = (g^2)(g^2)^T
    ok = den > 0.25
    safe = np.where(ok, den, 1.0)
    f = np.where(ok, num / safe, 0.0)
    noise = np.sqrt(np.maximum(nvar, 0.0)) / safe
    s = np.where(ok & (noise > 0), f / np.where(noise > 0, noise, 1.0), 0.0)
    return f, s, ok


def _connected(region: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether pixels a and b lie in the same 8-connected component of ``region`` (H, W)."""
    if not (region[a] and region[b]):
        return False
    lab, _ = ndimage.label(region, structure=_EIGHT)
    return bool(lab[a] == lab[b])


def _saddle(
    f: np.ndarray,
    comp: np.ndarray,
    pk: tuple[int, int],
    cp: tuple[int, int],
    lo: float,
    hi: float,
) -> tuple[float, float]:
    """Saddle level between the peaks pk and cp inside comp (H, W), by bisection in log level.

    lo, hi: levels (0 < lo < hi) at which they are connected and separated.  Returns (t_conn,
    t_sep): pk and cp are connected in ``comp & (f > t_conn)`` and separated in
    ``comp & (f > t_sep)``.
    """
    a, b = math.log(lo), math.log(hi)
    for _ in range(_SADDLE_BISECTIONS):
        mid = 0.5 * (a + b)
        if _connected(comp & (f > math.exp(mid)), pk, cp):
            a = mid
        else:
            b = mid
    return math.exp(a), math.exp(b)


def _mirror(g: np.ndarray, c2: tuple[int, int], radius: float) -> np.ndarray:
    """Symmetric estimate G (H, W) of the central galaxy's light: g reflected through c2 / 2.

    g: (H, W) detection image with the pixels of known other sources set to 0; c2: twice the
    (y, x) centre of symmetry, rounded to integers, so that pixel q reflects exactly onto pixel
    c2 - q.  G is the maximum of the reflected image over a disc of ``radius`` pixels (tolerance
    to mild asymmetry and to the centring), clipped at 0; reflected points outside the stamp
    count as 0.
    """
    h, w = g.shape
    mirror = np.zeros((h, w))
    # pixel q reflects onto c2 - q: a flipped slice of g
    y0, y1 = max(c2[0] - (h - 1), 0), min(c2[0], h - 1)  # rows q with 0 <= c2 - q < h
    x0, x1 = max(c2[1] - (w - 1), 0), min(c2[1], w - 1)
    if y0 <= y1 and x0 <= x1:
        src = g[c2[0] - y1 : c2[0] - y0 + 1, c2[1] - x1 : c2[1] - x0 + 1]
        mirror[y0 : y1 + 1, x0 : x1 + 1] = src[::-1, ::-1]
    if radius >= 1.0:
        mirror = ndimage.grey_dilation(mirror, footprint=_disc(radius), mode="constant", cval=0.0)
    return np.maximum(mirror, 0.0)


def _mirror_at(g: np.ndarray, c2: tuple[int, int], p: tuple[int, int], radius: float) -> float:
    """The value of :func:`_mirror` ``(g, c2, radius)`` at the single pixel p."""
    h, w = g.shape
    my, mx = c2[0] - p[0], c2[1] - p[1]
    r = int(math.floor(radius)) if radius >= 1.0 else 0
    disc = _disc(radius) if r else np.ones((1, 1), dtype=bool)
    # window of the disc about the mirror point; its pixels must reflect into the stamp too,
    # i.e. lie in rows / columns [c2 - (h - 1), c2] as well as in [0, h - 1]
    ylo, yhi = max(my - r, 0, c2[0] - (h - 1)), min(my + r, h - 1, c2[0])
    xlo, xhi = max(mx - r, 0, c2[1] - (w - 1)), min(mx + r, w - 1, c2[1])
    if ylo > yhi or xlo > xhi:
        return 0.0
    sub = disc[ylo - my + r : yhi - my + r + 1, xlo - mx + r : xhi - mx + r + 1]
    if not sub.any():
        return 0.0
    return max(float(g[ylo : yhi + 1, xlo : xhi + 1][sub].max()), 0.0)


# ------------------------------------------------------------------------------------------
# deblending and per-galaxy segmentation
# ------------------------------------------------------------------------------------------

_Source = tuple[np.ndarray, float, "tuple[int, int] | None"]  # pixels, peak S/N, peak if deblended


def _deblend(
    f: np.ndarray,
    s: np.ndarray,
    comp: np.ndarray,
    cp: tuple[int, int],
    c0: tuple[float, float],
    clean: np.ndarray,
    st: SegmentationSettings,
) -> list[_Source]:
    """Secondary sources inside the central component.

    f, s: (H, W) detection image and its S/N; comp: (H, W) bool central component; cp: its
    peak (y, x); c0: the galaxy's centre of symmetry (y, x); clean: (H, W) copy of f with the
    pixels of other sources set to 0, for the symmetric estimate of the galaxy's light
    (:func:`_mirror`) -- updated in place: the branches accepted here are zeroed too.
    Returns a list of (pixels (H, W) bool, peak S/N, peak (y, x)) of the accepted sources.
    """
    h, w = f.shape
    yy, xx = _grid(h, w)
    c2 = (round(2 * c0[0]), round(2 * c0[1]))
    fc = f[comp]
    lo = float(fc.min())  # > 0: comp is above a positive S/N threshold
    fcp = float(f[cp])
    total = float(fc.sum())
    noise = np.where(s > 0, f / np.where(s > 0, s, 1.0), np.inf)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    # candidates: local maxima of f inside comp, far from the central peak, the galaxy's centre
    # and the stamp centre, with the necessary contrast / significance even for the lowest
    # possible saddle (lo)
    fin = np.where(comp, f, -np.inf)
    peaks = comp & (fin == ndimage.maximum_filter(fin, size=3, mode="constant", cval=-np.inf))
    for py, px in ((cp[0], cp[1]), (cy, cx), c0):
        peaks &= np.hypot(yy - py, xx - px) >= st.min_peak_separation_pix
    peaks &= (f - lo >= st.deblend_contrast * f) & ((f - lo) / noise >= st.deblend_min_snr)
    if not peaks.any():
        return []
    cand = sorted(
        (tuple(int(v) for v in p) for p in np.argwhere(peaks)), key=lambda p: -float(f[p])
    )

    accepted: list[tuple[np.ndarray, tuple[int, int], float]] = []  # branch, peak, saddle dist
    taken = np.zeros((h, w), dtype=bool)
    for pk in cand:  # brightest first
        if taken[pk]:
            continue  # a sub-peak of a source already accepted
        fpk = float(f[pk])
        # not matched by the galaxy's light on the opposite side (after removing the sources
        # found so far, so that a pair of contaminants on opposite sides does not hide itself)
        if _mirror_at(clean, c2, pk, st.symmetry_radius_pix) > st.deblend_max_mirror * fpk:
            continue
        # the highest saddle level compatible with the contrast and significance criteria and,
        # for a peak fainter than the central one, with lying outside the galaxy's bright body
        # (a knot there is taken for a clump or an arm); one labelling rejects most candidates
        t_max = min((1.0 - st.deblend_contrast) * fpk, fpk - st.deblend_min_snr * float(noise[pk]))
        if fpk < fcp:
            t_max = min(t_max, st.deblend_max_saddle * fcp)
        if t_max <= lo or _connected(comp & (f > t_max), pk, cp):
            continue
        t_conn, t_sep = _saddle(f, comp, pk, cp, lo, t_max)
        lab, _ = ndimage.label(comp & (f > t_sep), structure=_EIGHT)
        if lab[pk] == 0 or lab[pk] == lab[cp]:
            continue
        branch = lab == lab[pk]
        if float((f[branch] - t_conn).sum()) < st.deblend_mincont * total:
            continue
        central = lab == lab[cp] if lab[cp] else np.zeros((h, w), dtype=bool)
        if central.any():
            dist = float(np.hypot(yy[central] - pk[0], xx[central] - pk[1]).min())
        else:
            dist = float(math.hypot(pk[0] - cp[0], pk[1] - cp[1]))
        accepted.append((branch, pk, dist))
        taken |= branch
        clean[branch] = 0.0
    if not accepted:
        return []

    # watershed of -f inside comp from markers: 1 = central peak, k + 2 = accepted branch k
    hi = float(fc.max())
    markers = np.zeros((h, w), dtype=np.int16)
    markers[cp] = 1
    for k, (branch, _, _) in enumerate(accepted):
        markers[branch] = k + 2
    cost = np.full((h, w), 65535, dtype=np.uint16)
    cost[comp] = np.round((hi - fc) / max(hi - lo, 1e-300) * 65000.0).astype(np.uint16)
    basins = ndimage.watershed_ift(cost, markers, structure=_EIGHT)
    out: list[_Source] = []
    for k, (branch, pk, dist) in enumerate(accepted):
        near = np.hypot(yy - pk[0], xx - pk[1]) <= st.deblend_radius_factor * max(dist, 1.0)
        out.append((branch | (comp & (basins == k + 2) & near), float(s[pk]), pk))
    return out


def _segment_one(
    f: np.ndarray, s: np.ndarray, ok: np.ndarray, st: SegmentationSettings
) -> np.ndarray:
    """Other-source mask (H, W) bool of one galaxy from its detection image, S/N and validity."""
    h, w = f.shape
    yy, xx = _grid(h, w)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    r_centre = np.hypot(yy - cy, xx - cx)
    out = np.zeros((h, w), dtype=bool)

    lab, nlab = ndimage.label(ok & (s > st.detect_thresh), structure=_EIGHT)
    if nlab == 0:
        return out
    idx = np.arange(1, nlab + 1)
    flat = lab.ravel()
    area = np.bincount(flat, minlength=nlab + 1)[1:]
    peak_snr = np.full(nlab + 1, -np.inf)
    np.maximum.at(peak_snr, flat, s.ravel())
    peak_snr = peak_snr[1:]
    dmin = np.full(nlab + 1, np.inf)
    np.minimum.at(dmin, flat, r_centre.ravel())
    dmin = dmin[1:]
    keep = (area >= st.min_area_pix) & (peak_snr >= st.min_peak_snr)
    # the central galaxy: the kept component nearest the centre (ties: brightest), within reach
    cand = np.flatnonzero(keep & (dmin <= st.centre_search_radius_pix))
    central = 0
    if cand.size:
        central = int(idx[cand[np.lexsort((-peak_snr[cand], np.round(dmin[cand], 6)))[0]]])

    sources: list[_Source] = [
        (lab == j, float(peak_snr[j - 1]), None) for j in idx[keep] if j != central
    ]
    if central:
        comp = lab == central
        core = comp & (r_centre <= st.centre_search_radius_pix)
        fn = np.where(core, f, -np.inf)
        cp = tuple(int(v) for v in np.unravel_index(int(np.argmax(fn)), fn.shape))
        # centre of symmetry: centroid of the core's light above half the central peak
        top = core & (f >= 0.5 * f[cp])
        wt = f[top]
        c0 = (float((wt * yy[top]).sum() / wt.sum()), float((wt * xx[top]).sum() / wt.sum()))
        clean = f.copy()
        for pix, _, _ in sources:
            clean[pix] = 0.0
        sources.extend(_deblend(f, s, comp, cp, c0, clean, st))
        mirror = _mirror(clean, (round(2 * c0[0]), round(2 * c0[1])), st.symmetry_radius_pix)
        # pixels of the central component where the galaxy's (symmetric) light dominates
        protect = comp & (f - mirror < st.min_contaminant_ratio * mirror)
        d_c0 = np.hypot(yy - c0[0], xx - c0[1])
        keep_disc = (d_c0 <= st.centre_keep_radius_pix) | (
            np.hypot(yy - cp[0], xx - cp[1]) <= st.centre_keep_radius_pix
        )
    else:
        comp = protect = np.zeros((h, w), dtype=bool)
        d_c0 = r_centre
        keep_disc = r_centre <= st.centre_keep_radius_pix
    for pix, psnr, pk in sources:
        grow = st.grow_pix
        if psnr > st.grow_snr_ref:
            grow += st.grow_per_mag_pix * 2.5 * math.log10(psnr / st.grow_snr_ref)
        grow = min(grow, st.max_grow_pix)
        if grow >= 1.0:
            pix = ndimage.binary_dilation(pix, structure=_disc(grow))
        if pk is not None:  # a deblended source takes central-component pixels on its side only
            pix &= ~comp | (np.hypot(yy - pk[0], xx - pk[1]) < d_c0)
        out |= pix
    out &= ~(protect | keep_disc)
    return out


# ------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------


def neighbour_mask(
    images: np.ndarray,
    sigma: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    settings: SegmentationSettings = DEFAULT_SEGMENTATION,
) -> np.ndarray:
    """Mask of the pixels of sources other than the central galaxy (stars, neighbours).

    See the module docstring for the algorithm.

    Args:
        images: (N, C, H, W) fluxes (e.g. nanomaggies), or (C, H, W) for one galaxy.  NaN / inf
            pixels are treated as masked (never detected).
        sigma: per-pixel noise sigma (N, C, H, W) or per band (N, C), in the units of
            ``images`` ((C, H, W) or (C,) for a single galaxy); finite and > 0 on every
            unmasked, finite pixel (elsewhere it is ignored).
        mask: optional (N, C, H, W) (or (C, H, W)) bool, True = pixel already masked / ignored.
        settings: thresholds, see :class:`SegmentationSettings`.

    Returns:
        (N, C, H, W) bool (or (C, H, W) for a single galaxy), True = pixel belongs to another
        source and should be masked.  The same in every band; not OR-ed with ``mask``.

    Raises:
        ValueError: ``images`` not 3-D / 4-D or not numeric; ``sigma`` or ``mask`` shape not
            matching ``images``; non-boolean ``mask``; ``sigma`` <= 0 or non-finite on an
            unmasked pixel; ``settings`` not a :class:`SegmentationSettings`.
    """
    if not isinstance(settings, SegmentationSettings):
        raise ValueError(f"settings must be a SegmentationSettings, got {type(settings).__name__}")
    x, sig, m, single = _check_shapes(images, sigma, mask)
    n, c, h, w = x.shape
    out2d = np.zeros((n, h, w), dtype=bool)
    for i0 in range(0, n, _CHUNK):  # bounded memory for large batches
        i1 = min(i0 + _CHUNK, n)
        xc, sc, valid = _prepare(x[i0:i1], sig[i0:i1], None if m is None else m[i0:i1], i0)
        f, s, ok = _detection(xc, sc, valid, settings.smooth_fwhm_pix)
        for i in range(i1 - i0):
            out2d[i0 + i] = _segment_one(f[i], s[i], ok[i], settings)
    out = np.repeat(out2d[:, None], c, axis=1)
    return out[0] if single else out


def mask_neighbours_h5(
    src: str | Path,
    dst: str | Path,
    *,
    settings: SegmentationSettings = DEFAULT_SEGMENTATION,
    chunk: int = _CHUNK,
    overwrite: bool = False,
    progress: bool = True,
) -> float:
    """Copy a galae HDF5 data set to ``dst`` with the other sources OR-ed into its mask.

    Everything else (images, sigma, PSF, truth) is copied unchanged.  The copy records the
    segmentation settings in its ``neighbours_masked`` attribute; a file that has one is refused
    (masking twice would find nothing new but hide the provenance).

    Args:
        src: a galae HDF5 file (:func:`galae.data.hdf5.inspect_h5` validates it first, so a
            truncated or incomplete file is an error naming it).
        dst: the copy; an existing file is an error unless ``overwrite``.
        settings: thresholds of :func:`neighbour_mask`.
        chunk: galaxies read, segmented and written at a time.
        progress: a progress bar.
    Returns:
        the fraction of all pixels newly masked.
    Raises:
        FileExistsError: ``dst`` exists and not ``overwrite``.
        ValueError: ``src`` and ``dst`` are the same file; ``src`` already masked this way;
            ``chunk`` < 1; and whatever :func:`galae.data.hdf5.inspect_h5` refuses.
    """
    import h5py
    from tqdm.auto import tqdm

    from galae.data.hdf5 import inspect_h5

    src, dst = Path(src), Path(dst)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    info = inspect_h5(src)
    if "neighbours_masked" in info.attrs:
        raise ValueError(f"{src}: its neighbours are already masked (attribute neighbours_masked)")
    if dst.exists():
        if dst.resolve() == src.resolve():
            raise ValueError(f"source and destination are the same file: {src}")
        if not overwrite:
            raise FileExistsError(f"{dst} exists (pass overwrite=True / --overwrite)")
    shutil.copyfile(src, dst)
    newly = 0
    try:
        with h5py.File(dst, "r+") as f:
            n = info.n_galaxies
            with tqdm(total=n, desc="mask neighbours", unit="gal", disable=not progress) as bar:
                for i0 in range(0, n, chunk):
                    i1 = min(i0 + chunk, n)
                    mask = f["mask"][i0:i1]
                    extra = neighbour_mask(
                        f["images"][i0:i1], f["sigma"][i0:i1], mask, settings=settings
                    )
                    newly += int((extra & ~mask).sum())
                    f["mask"][i0:i1] = mask | extra
                    bar.update(i1 - i0)
            f.attrs["neighbours_masked"] = json.dumps(asdict(settings))
    except BaseException:
        dst.unlink(missing_ok=True)  # no half-masked copy left behind
        raise
    c = len(info.bands)
    return newly / max(1, info.n_galaxies * c * info.image_shape[0] * info.image_shape[1])


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(
        prog="python -m galae.data.segmentation",
        description="Copy a galae HDF5 data set with foreground stars and neighbours masked.",
    )
    ap.add_argument("src", help="galae HDF5 file")
    ap.add_argument("dst", help="the masked copy")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    with cli_errors(ap.prog):
        frac = mask_neighbours_h5(a.src, a.dst, overwrite=a.overwrite)
    print(f"wrote {a.dst}: {100 * frac:.2f}% of the pixels newly masked")
    return Path(a.dst)


if __name__ == "__main__":
    main()
