"""Stand-in bands for the encoder: a band a galaxy lacks, interpolated from its neighbours.

A checkpoint's encoder was trained with at most one whole band missing from a stamp
(``sleep_missing_band_fraction`` takes one band at a time), never two.  Shown a stamp that
misses two, as grz data misses u and i of ugriz, its amortized posterior is far off: on the
packaged model's own population, magnitudes 0.52-0.58 mag off with 1-sigma intervals holding
17-26% of the truths; with the stand-ins below, 0.11-0.19 mag and 74-83%, as for ugriz
(``benchmarks/missing_bands.py``).  Until an encoder is trained with more bands
missing, :meth:`galae.GalaeModel.encode` shows the encoder a stand-in for each missing band
beyond the number it was trained without: the light of the neighbouring bands, interpolated
in log wavelength, at ``noise_factor`` times their noise, so that the encoder reads it as a
shallow observation of that band.

For a missing band b between available bands lo and hi, with t = ln(lambda_b / lambda_lo) /
ln(lambda_hi / lambda_lo) and R = F_hi / F_lo the ratio of the two bands' fluxes summed over
the pixels both have (a power law in wavelength through the two)::

    F_b = F_lo R^t,    x_b = (1 - t) R^t x_lo + t R^(t - 1) x_hi     (so that sum x_b = F_b)
    sigma_b = noise_factor sqrt(((1 - t) R^t sigma_lo)^2 + (t R^(t - 1) sigma_hi)^2)

A band outside the available range takes the power law of its two nearest available bands
and the image of the nearest one.  Where a flux is not positive at three sigma the colour is
taken flat (R = 1: a constant f_nu).  The PSF FWHM is interpolated the same way (linear in t),
and a pixel is masked where a band it comes from is masked.

Which missing bands keep missing: up to ``keep_missing`` of them, those outside the available
range first (a power law extrapolates worst), the bluest first (the 4000 A break is what a
power law cannot carry).  The stand-ins are the encoder's input only: the likelihood (the
refinement, ``chi2_per_pixel``, ``model_images``) never sees them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["STAND_IN_NOISE_FACTOR", "StandIns", "stand_in_bands", "stand_in_plan"]

#: Noise of a stand-in band relative to the interpolation of its neighbours' noise; chosen on
#: validation draws among 1, 1.5, 2 and 3 (``python benchmarks/missing_bands.py --choose``,
#: benchmarks/results/missing_bands_choice.json: mean median |error| of log M* over four sets
#: of missing bands 0.212, 0.179, 0.157, 0.144 dex).  The grid stops at 3 because the encoder
#: was trained on noise up to 3.2 times SDSS's: a noisier band is outside what it has seen.
STAND_IN_NOISE_FACTOR: float = 3.0
#: A summed flux below this many sigma does not fix a colour (R = 1 then).
_MIN_FLUX_SNR: float = 3.0
#: Colours beyond this flux ratio between two bands are clipped (an AB colour of 3.7 mag).
_MAX_FLUX_RATIO: float = 30.0


@dataclass(frozen=True)
class StandIns:
    """The encoder's view of a batch with stand-ins for missing bands.

    Attributes:
        images, sigma: (B, C, H, W) nanomaggies; stand-in bands replaced.
        mask: (B, C, H, W) bool, True = ignore; a stand-in is masked where its sources are.
        psf_fwhm_arcsec: (B, C); a stand-in's interpolated.
        stood_in: (B, C) bool, the bands replaced.
    """

    images: Tensor
    sigma: Tensor
    mask: Tensor
    psf_fwhm_arcsec: Tensor
    stood_in: Tensor


def stand_in_plan(
    gone: Sequence[bool], lg_wavelength: Sequence[float], keep_missing: int
) -> list[tuple[int, int, int, float]]:
    """Which bands to stand in for, and from what: [(band, lo, hi, t)], for one pattern of
    missing bands (``gone``, per band; bands in increasing wavelength).

    Empty when no more than ``keep_missing`` bands are gone or fewer than two remain.
    For an extrapolated band, lo and hi are its two nearest available bands on one side and
    t lies outside [0, 1].
    """
    c = len(gone)
    have = [k for k in range(c) if not gone[k]]
    missing = [k for k in range(c) if gone[k]]
    if len(missing) <= keep_missing or len(have) < 2:
        return []
    outside = [k for k in missing if k < have[0] or k > have[-1]]
    inside = [k for k in missing if have[0] < k < have[-1]]
    keep = set((outside + inside)[:keep_missing])  # extrapolations first, bluest first
    plan = []
    for b in missing:
        if b in keep:
            continue
        below = [k for k in have if k < b]
        above = [k for k in have if k > b]
        if below and above:
            lo, hi = below[-1], above[0]
        elif above:
            lo, hi = above[0], above[1]
        else:
            lo, hi = below[-2], below[-1]
        lw = lg_wavelength
        t = (lw[b] - lw[lo]) / (lw[hi] - lw[lo])
        plan.append((b, lo, hi, float(t)))
    return plan


def _colour_ratio(
    images: Tensor, sigma: Tensor, mask: Tensor, lo: int, hi: int
) -> tuple[Tensor, Tensor]:
    """(R, both): R = F_hi / F_lo (B,) over the pixels unmasked in both bands, 1 where either
    flux is not positive at :data:`_MIN_FLUX_SNR`; ``both`` (B, H, W) those pixels."""
    both = ~mask[:, lo] & ~mask[:, hi]
    zero = torch.zeros((), dtype=images.dtype, device=images.device)
    f = [torch.where(both, images[:, k], zero).sum((-2, -1)) for k in (lo, hi)]
    s = [torch.where(both, sigma[:, k] ** 2, zero).sum((-2, -1)).sqrt() for k in (lo, hi)]
    ok = (f[0] > _MIN_FLUX_SNR * s[0]) & (f[1] > _MIN_FLUX_SNR * s[1])
    ratio = torch.where(
        ok, f[1] / torch.where(ok, f[0], torch.ones_like(f[0])), torch.ones_like(f[0])
    )
    return ratio.clamp(1.0 / _MAX_FLUX_RATIO, _MAX_FLUX_RATIO), both


def stand_in_bands(
    images: Tensor,
    sigma: Tensor,
    mask: Tensor,
    psf_fwhm_arcsec: Tensor,
    wavelength_aa: Sequence[float],
    keep_missing: int,
    noise_factor: float = STAND_IN_NOISE_FACTOR,
) -> StandIns:
    """Stand-ins for the bands that each galaxy lacks beyond ``keep_missing`` (module doc).

    Args:
        images, sigma: (B, C, H, W) nanomaggies, bands in increasing wavelength.
        mask: (B, C, H, W) bool, True = ignore; a band is missing where all its pixels are.
        psf_fwhm_arcsec: (B, C).
        wavelength_aa: (C,) effective wavelengths of the bands, Angstrom, increasing.
        keep_missing: how many missing bands to leave missing (what the encoder was trained
            without, :attr:`galae.GalaeModel.trained_missing_bands`).
        noise_factor: the stand-in's noise relative to its sources' (> 0).

    Returns:
        :class:`StandIns`; galaxies with no more than ``keep_missing`` bands missing, or
        fewer than two left, are as given.
    """
    c = images.shape[1]
    if len(wavelength_aa) != c or any(
        not b > a for a, b in zip(wavelength_aa[:-1], wavelength_aa[1:], strict=True)
    ):
        raise ValueError(f"wavelength_aa must hold {c} increasing wavelengths, got {wavelength_aa}")
    if not (math.isfinite(noise_factor) and noise_factor > 0):
        raise ValueError(f"noise_factor must be finite and > 0, got {noise_factor}")
    lg = [math.log(w) for w in wavelength_aa]
    gone = mask.flatten(2).all(-1)  # (B, C)
    x, s, m, p = images.clone(), sigma.clone(), mask.clone(), psf_fwhm_arcsec.clone()
    stood = torch.zeros_like(gone)
    for pattern in torch.unique(gone, dim=0):
        rows = torch.nonzero((gone == pattern).all(1)).flatten()
        plan = stand_in_plan(pattern.tolist(), lg, keep_missing)
        if not plan:
            continue
        xi, si, mi = images[rows], sigma[rows], mask[rows]
        for b, lo, hi, t in plan:
            ratio, both = _colour_ratio(xi, si, mi, lo, hi)
            r = ratio.view(-1, 1, 1)
            if 0.0 <= t <= 1.0:
                a, bb = (1 - t) * r**t, t * r ** (t - 1)
                xb = a * xi[:, lo] + bb * xi[:, hi]
                sb = torch.sqrt((a * si[:, lo]) ** 2 + (bb * si[:, hi]) ** 2)
                pb = (1 - t) * psf_fwhm_arcsec[rows, lo] + t * psf_fwhm_arcsec[rows, hi]
                mb = ~both
            else:
                near = lo if abs(t) < abs(t - 1) else hi
                # F_b / F_near: R^t from lo, R^(t - 1) from hi
                gain = r**t if near == lo else r ** (t - 1)
                xb, sb = gain * xi[:, near], gain * si[:, near]
                pb, mb = psf_fwhm_arcsec[rows, near], mi[:, near]
            x[rows, b] = torch.where(mb, torch.zeros_like(xb), xb)
            s[rows, b] = torch.where(mb, torch.ones_like(sb), noise_factor * sb)
            m[rows, b] = mb
            p[rows, b] = pb
            stood[rows, b] = True
    return StandIns(x, s, m, p, stood)
