"""Stamps onto another pixel grid, conserving flux: the encoder's view of other surveys' pixels.

A checkpoint's encoder was trained on stamps of one pixel scale (SDSS's 0.396" for the
packaged model).  A stamp of another survey (DECaLS 0.262", HSC 0.168", KiDS 0.2") shows it a
galaxy 1.5 to 2.4 times larger in pixels than any it has seen.  :func:`regrid` puts the stamp
on the training grid, centred where the stamp is centred, by the exact overlap of the pixels
(area weighting, separable in x and y): each new pixel's flux is the sum of the old pixels'
fluxes times the fraction of each that it covers, and its variance the sum of their
variances times the squared fractions (independent pixels; regridding correlates neighbours'
noise, which the encoder's input scaling does not see).  A new pixel is masked where less than
half of it is covered by unmasked old pixels; otherwise its flux and variance are scaled up
to its full area.  As :mod:`galae.data.stand_in`, this is the encoder's input only: the
likelihood (the refinement, ``chi2_per_pixel``, ``model_images``) is on the stamp's own pixels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["MIN_COVERED_FRACTION", "overlap_matrix", "regrid"]

#: A new pixel less covered than this by unmasked old pixels is masked.
MIN_COVERED_FRACTION: float = 0.5


def overlap_matrix(
    n_out: int,
    n_in: int,
    ratio: float,
    dtype: torch.dtype,
    device: torch.device | str | None = None,
) -> Tensor:
    """(n_out, n_in) overlap of new pixels with old ones along one axis, in units of an old
    pixel; new pixels are ``ratio`` old pixels wide and share the centre ((n - 1) / 2) of the
    old axis.  Row sums are ``ratio`` where a new pixel lies inside the old axis."""
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be finite and > 0, got {ratio}")
    centre_in = (n_in - 1) / 2.0
    i = torch.arange(n_out, dtype=torch.float64, device=device)
    lo = centre_in + (i - (n_out - 1) / 2.0 - 0.5) * ratio  # new pixel edges, old-pixel units
    hi = lo + ratio
    j = torch.arange(n_in, dtype=torch.float64, device=device)
    left = torch.maximum(lo[:, None], j[None, :] - 0.5)
    right = torch.minimum(hi[:, None], j[None, :] + 0.5)
    return (right - left).clamp_min(0.0).to(dtype)


def regrid(
    images: Tensor,
    sigma: Tensor,
    mask: Tensor,
    scale_in_arcsec: float,
    scale_out_arcsec: float,
    shape_out: tuple[int, int],
) -> tuple[Tensor, Tensor, Tensor]:
    """(images, sigma, mask) on a grid of ``shape_out`` pixels of ``scale_out_arcsec``, centred
    on the stamps' centre (module doc).

    Args:
        images, sigma: (B, C, H, W) nanomaggies per pixel and its noise.
        mask: (B, C, H, W) bool, True = ignore.
        scale_in_arcsec, scale_out_arcsec: pixel sides, arcsec.
        shape_out: (H', W').

    Returns:
        images (B, C, H', W') nanomaggies per new pixel (zero where masked), sigma (one where
        masked) and mask.
    """
    if not (scale_in_arcsec > 0 and scale_out_arcsec > 0):
        raise ValueError(f"pixel scales must be > 0, got {scale_in_arcsec} and {scale_out_arcsec}")
    ratio = scale_out_arcsec / scale_in_arcsec
    h, w = images.shape[-2:]
    wy = overlap_matrix(shape_out[0], h, ratio, images.dtype, images.device)
    wx = overlap_matrix(shape_out[1], w, ratio, images.dtype, images.device)
    good = (~mask).to(images.dtype)
    zero = torch.zeros((), dtype=images.dtype, device=images.device)
    flux = torch.where(mask, zero, images)
    var = torch.where(mask, zero, sigma**2)

    def rebin(x: Tensor, ay: Tensor, ax: Tensor) -> Tensor:
        return ay @ x @ ax.transpose(0, 1)

    covered = rebin(good, wy, wx) / (ratio * ratio)  # fraction of each new pixel
    out_mask = covered < MIN_COVERED_FRACTION
    safe = torch.where(out_mask, torch.ones_like(covered), covered)
    out_flux = rebin(flux, wy, wx) / safe
    out_var = rebin(var, wy * wy, wx * wx) / (safe * safe)
    out_images = torch.where(out_mask, zero, out_flux)
    out_sigma = torch.where(out_mask, torch.ones_like(out_var), out_var.clamp_min(0.0).sqrt())
    return out_images, out_sigma, out_mask
