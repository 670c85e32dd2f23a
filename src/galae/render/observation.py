"""Observing conditions that come with an image: redshift, PSF, pixel scale, bands, stamp shape."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from galae.render._tensors import to_tensor
from galae.render.psf import GaussianPSF, PixelPSF

__all__ = ["Observation", "SDSS_BANDS", "as_tensor"]

SDSS_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")


def as_tensor(
    x: object, name: str, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """numpy array / tensor / number -> tensor of ``dtype`` (default: floating) on ``device``."""
    t = to_tensor(x, name)
    if dtype is None and not t.is_floating_point():
        dtype = torch.get_default_dtype()
    return t.to(dtype=dtype if dtype is not None else t.dtype, device=device)


@dataclass(frozen=True)
class Observation:
    """How a batch of galaxies is observed.

    Attributes:
        redshift: (B,) redshift of each galaxy (> 0).
        psf: a PSF model from :mod:`galae.render.psf` with batch B and C bands.
        pixel_scale_arcsec: pixel side in arcsec (one value for the batch).
        shape: stamp shape (H, W).
        bands: band names, length C, in the order of the image's band axis.
    """

    redshift: Tensor
    psf: object
    pixel_scale_arcsec: float
    shape: tuple[int, int]
    bands: tuple[str, ...] = SDSS_BANDS

    def __post_init__(self) -> None:
        if self.redshift.dim() != 1:
            raise ValueError(f"redshift must have shape (B,), got {tuple(self.redshift.shape)}")
        if not torch.isfinite(self.redshift).all() or (self.redshift <= 0).any():
            raise ValueError("redshift must be finite and > 0 (pass redshift=None when unknown)")
        if not (np.isfinite(self.pixel_scale_arcsec) and self.pixel_scale_arcsec > 0):
            raise ValueError(f"pixel_scale_arcsec must be > 0, got {self.pixel_scale_arcsec}")
        if (
            len(self.shape) != 2
            or not all(
                isinstance(v, int | np.integer) and not isinstance(v, bool) for v in self.shape
            )
            or min(self.shape) < 4
        ):
            raise ValueError(f"shape must be (H, W), integers >= 4, got {self.shape}")

    @property
    def batch_size(self) -> int:
        return self.redshift.shape[0]

    @classmethod
    def create(
        cls,
        redshift: object,
        psf_fwhm_arcsec: object = None,
        *,
        psf_image: object = None,
        pixel_scale_arcsec: float = 0.396,
        shape: Sequence[int] = (64, 64),
        bands: Sequence[str] = SDSS_BANDS,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> Observation:
        """Build from plain arrays: redshift (B,), psf_fwhm_arcsec (B, C) or (C,) or a scalar.

        Give either a Gaussian PSF FWHM or a pixel PSF image ``(B, C, h, w)`` / ``(C, h, w)``.
        """
        z = as_tensor(redshift, "redshift", dtype, device).reshape(-1)
        n_b, n_c = z.shape[0], len(bands)
        if (psf_fwhm_arcsec is None) == (psf_image is None):
            raise ValueError("give exactly one of psf_fwhm_arcsec or psf_image")
        if psf_image is not None:
            psf = PixelPSF(as_tensor(psf_image, "psf_image", dtype, device))
        else:
            fwhm = as_tensor(psf_fwhm_arcsec, "psf_fwhm_arcsec", dtype, device)
            if fwhm.dim() == 0:
                fwhm = fwhm.expand(n_b, n_c)
            elif fwhm.dim() == 1:
                if fwhm.shape[0] != n_c:
                    raise ValueError(
                        f"psf_fwhm_arcsec has {fwhm.shape[0]} values for {n_c} bands {tuple(bands)}"
                    )
                fwhm = fwhm.expand(n_b, n_c)
            if tuple(fwhm.shape) != (n_b, n_c):
                raise ValueError(
                    f"psf_fwhm_arcsec must be (B, C) = ({n_b}, {n_c}), got {tuple(fwhm.shape)}"
                )
            psf = GaussianPSF(fwhm.contiguous())
        return cls(z, psf, float(pixel_scale_arcsec), tuple(shape), tuple(bands))
