"""Point-spread functions and PSF convolution.

PSF models are frozen dataclasses registered by name in :data:`PSF_MODELS`.  Each gives
its optical transfer function on an ``rfft2`` grid,

    otf(fft_shape, pixel_scale_arcsec, settings) -> complex (B, C, Hf, Wf // 2 + 1),

normalised to unit total (OTF = 1 at zero frequency), with the kernel centred on grid
index (0, 0).  Units: FWHM in arcsec, converted with the pixel scale in arcsec per pixel;
frequencies in cycles per pixel.

Two convolutions:

* :func:`convolve` acts on pixel totals: out = image (*) kernel, the kernel being the PSF
  sampled at pixel offsets (the Gaussian's band-limited equivalent) or a PSF image.  Exact
  for images the pixels resolve; for unresolved light (a cusp, a compact bulge) it ignores
  where inside a pixel the light sits, an error of several % of the peak pixel at FWHM
  2-5 px (it falls as ~FWHM^-2).
* :func:`convolve_moments` also takes each pixel's first and second intra-pixel moments
  (:func:`galae.render.raster.sersic_pixel_moments`) and applies the pixel response
  K = PSF (x) pixel box to second order in the intra-pixel offset: < 0.3% of the peak at
  FWHM >= 3.5 px, ~1-2% at 2-2.5 px; on 2 x 2 sub-pixels (as ``render_profile`` does)
  < 0.15% at FWHM >= 2 px, measured against GalSim.

Both zero-pad (no wrap-around) and conserve flux; the Gaussian runs as separable batched
matrix products (same kernel as the FFT route), other PSFs through ``rfft2``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from galae.render._tensors import to_tensor
from galae.settings import DEFAULT_SETTINGS, RenderSettings

__all__ = [
    "FWHM_PER_SIGMA",
    "GaussianPSF",
    "MoffatPSF",
    "PixelPSF",
    "PSF_MODELS",
    "PSFModel",
    "fft_shape_for",
    "convolve",
    "convolve_moments",
    "convolve_central_moments",
    "make_psf",
    "moffat_alpha",
    "point_source_image",
    "gaussian_equivalent_fwhm_arcsec",
]

# FWHM = 2 sqrt(2 ln 2) sigma for a Gaussian.
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def _to_float_tensor(value: object, name: str) -> Tensor:
    """Tensor (floating) from a number, array or tensor; ValueError if not numeric."""
    tensor = to_tensor(value, name)
    if not tensor.is_floating_point():
        if tensor.is_complex() or tensor.dtype == torch.bool:
            raise ValueError(f"{name} must be real numbers, got {tensor.dtype}")
        tensor = tensor.to(torch.get_default_dtype())
    return tensor


def _as_batch_band(value: object, name: str) -> Tensor:
    """A per-(galaxy, band) parameter as a 2-D tensor broadcastable to (B, C).

    A scalar becomes (1, 1), a (C,) vector (1, C); (B, C) is kept.
    """
    tensor = _to_float_tensor(value, name)
    if tensor.dim() > 2:
        raise ValueError(
            f"{name} must be a scalar, (C,) or (B, C), got shape {tuple(tensor.shape)}"
        )
    while tensor.dim() < 2:
        tensor = tensor.unsqueeze(0)
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} contains NaN or inf")
    return tensor


def _check_pixel_scale(pixel_scale_arcsec: float) -> float:
    scale = float(pixel_scale_arcsec)
    if not (math.isfinite(scale) and scale > 0.0):
        raise ValueError(f"pixel_scale_arcsec must be finite and > 0, got {pixel_scale_arcsec}")
    return scale


def _freq_grid(
    fft_shape: tuple[int, int], dtype: torch.dtype, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Frequencies (cycles / pixel) of an rfft2 grid: ky (Hf, 1), kx (1, Wf // 2 + 1)."""
    n_y, n_x = fft_shape
    k_y = torch.fft.fftfreq(n_y, dtype=dtype, device=device)[:, None]
    k_x = torch.fft.rfftfreq(n_x, dtype=dtype, device=device)[None, :]
    return k_y, k_x


def _wrapped_offsets(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """Pixel offsets of FFT grid indices, wrapped to [-size//2, size//2): (size,)."""
    return torch.fft.fftfreq(size, d=1.0 / size, dtype=dtype, device=device)


def moffat_alpha(fwhm: Tensor, beta: Tensor) -> Tensor:
    """Moffat core width alpha from FWHM: FWHM = 2 alpha sqrt(2^(1/beta) - 1).

    (Moffat 1969, A&A 3, 455; Trujillo et al. 2001, MNRAS 328, 977, eq. 4.)
    """
    return fwhm / (2.0 * torch.sqrt(torch.pow(2.0, 1.0 / beta) - 1.0))


@dataclass(frozen=True)
class GaussianPSF:
    """Circular Gaussian PSF.

    Attributes:
        fwhm_arcsec: FWHM in arcsec, (B, C) (a scalar or a (C,) vector is stored as (1, 1)
            or (1, C) and broadcasts over the batch).  Must be finite and > 0.
    """

    fwhm_arcsec: Tensor

    def __post_init__(self) -> None:
        fwhm = _as_batch_band(self.fwhm_arcsec, "fwhm_arcsec")
        if bool((fwhm <= 0).any()):
            raise ValueError("fwhm_arcsec must be > 0")
        object.__setattr__(self, "fwhm_arcsec", fwhm)

    @property
    def batch_shape(self) -> tuple[int, int]:
        """(B, C) of the parameters (1 where it broadcasts)."""
        return (self.fwhm_arcsec.shape[0], self.fwhm_arcsec.shape[1])

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> GaussianPSF:
        """A copy with tensors moved/cast."""
        return GaussianPSF(self.fwhm_arcsec.to(dtype=dtype, device=device))

    def sigma_pix(self, pixel_scale_arcsec: float) -> Tensor:
        """Gaussian sigma in pixels, (B, C)."""
        return self.fwhm_arcsec / (FWHM_PER_SIGMA * _check_pixel_scale(pixel_scale_arcsec))

    def kernel_radius_pix(
        self, pixel_scale_arcsec: float, settings: RenderSettings = DEFAULT_SETTINGS
    ) -> float:
        """Radius (pixels) holding all but ``settings.psf_wing_flux`` of the light.

        For a 2-D Gaussian the light outside r is exp(-r^2 / 2 sigma^2); capped at
        ``settings.psf_kernel_fwhm_extent`` FWHM.  Largest over the batch.
        """
        sigma = float(self.sigma_pix(pixel_scale_arcsec).detach().max())
        radius = sigma * math.sqrt(2.0 * math.log(1.0 / settings.psf_wing_flux))
        return min(radius, settings.psf_kernel_fwhm_extent * FWHM_PER_SIGMA * sigma)

    def otf(
        self,
        fft_shape: tuple[int, int],
        pixel_scale_arcsec: float,
        settings: RenderSettings = DEFAULT_SETTINGS,
    ) -> Tensor:
        """Analytic transfer function exp(-2 pi^2 sigma^2 (kx^2 + ky^2)).

        Returns:
            complex (B, C, Hf, Wf // 2 + 1), dtype matching ``fwhm_arcsec``.
        """
        sigma = self.sigma_pix(pixel_scale_arcsec)[..., None, None]
        k_y, k_x = _freq_grid(fft_shape, sigma.dtype, sigma.device)
        real = torch.exp(-2.0 * math.pi**2 * sigma**2 * (k_y**2 + k_x**2))
        return torch.complex(real, torch.zeros_like(real))

    def separable_kernels(
        self, fft_shape: tuple[int, int], pixel_scale_arcsec: float
    ) -> tuple[Tensor, Tensor]:
        """The 1-D periodic kernels whose outer product is the inverse transform of ``otf``.

        Returns:
            (kernel_y (B, C, Hf), kernel_x (B, C, Wf)): real, indexed by wrapped offset, each
            summing to 1.
        """
        sigma = self.sigma_pix(pixel_scale_arcsec)[..., None]
        kernels = []
        for size in fft_shape:
            k = torch.fft.rfftfreq(size, dtype=sigma.dtype, device=sigma.device)
            half = torch.exp(-2.0 * math.pi**2 * sigma**2 * k**2)
            kernels.append(torch.fft.irfft(half, n=size))
        return kernels[0], kernels[1]

    def response_1d(self, offsets_pix: Tensor, pixel_scale_arcsec: float) -> Tensor:
        """1-D pixel response k(d) = int_{-1/2}^{1/2} g(d + u) du and its derivatives.

        The Gaussian convolved with the pixel box factorises, K(dx, dy) = k(dx) k(dy), with
        k(d) = Phi((d + 1/2)/sigma) - Phi((d - 1/2)/sigma); k' and k'' follow analytically.

        Args:
            offsets_pix: (N,) or (..., N) offsets d in pixels.

        Returns:
            (B, C, 3, ...) [k, k', k''] evaluated at the offsets (per pixel, per pixel^2).
        """
        sigma = self.sigma_pix(pixel_scale_arcsec)
        sigma = sigma.reshape(sigma.shape + (1,) * offsets_pix.dim())
        return torch.stack(_gaussian_pixel_response(offsets_pix, sigma), 2)

    def moment_kernels(
        self,
        fft_shape: tuple[int, int],
        pixel_scale_arcsec: float,
        settings: RenderSettings = DEFAULT_SETTINGS,
    ) -> Tensor:
        """Pixel response K = PSF (x) pixel box and its derivatives on the wrapped FFT grid.

        Returns:
            (B, C, 6, Hf, Wf) real: [K, -K_x, -K_y, K_xx / 2, K_xy, K_yy / 2] (see
            :func:`convolve_moments`).
        """
        sigma = self.sigma_pix(pixel_scale_arcsec)
        off_y = _wrapped_offsets(fft_shape[0], sigma.dtype, sigma.device)
        off_x = _wrapped_offsets(fft_shape[1], sigma.dtype, sigma.device)
        ky = self.response_1d(off_y, pixel_scale_arcsec)[..., :, None]  # (B, C, 3, Hf, 1)
        kx = self.response_1d(off_x, pixel_scale_arcsec)[..., None, :]  # (B, C, 3, 1, Wf)
        return torch.stack(
            [
                ky[:, :, 0] * kx[:, :, 0],
                -ky[:, :, 0] * kx[:, :, 1],
                -ky[:, :, 1] * kx[:, :, 0],
                0.5 * ky[:, :, 0] * kx[:, :, 2],
                ky[:, :, 1] * kx[:, :, 1],
                0.5 * ky[:, :, 2] * kx[:, :, 0],
            ],
            2,
        )


@dataclass(frozen=True)
class MoffatPSF:
    """Circular Moffat (1969) PSF, I(r) proportional to (1 + (r / alpha)^2)^(-beta).

    Attributes:
        fwhm_arcsec: FWHM in arcsec, (B, C) (scalars / (C,) broadcast as for GaussianPSF).
        beta: power-law index, > 1 (finite flux); a float or a tensor broadcastable to
            (B, C).  Typical seeing: beta ~ 2.5-4.8 (Trujillo et al. 2001).
    """

    fwhm_arcsec: Tensor
    beta: float | Tensor = 3.5

    def __post_init__(self) -> None:
        fwhm = _as_batch_band(self.fwhm_arcsec, "fwhm_arcsec")
        if bool((fwhm <= 0).any()):
            raise ValueError("fwhm_arcsec must be > 0")
        beta = _as_batch_band(self.beta, "beta").to(device=fwhm.device, dtype=fwhm.dtype)
        if bool((beta <= 1.0).any()):
            raise ValueError("Moffat beta must be > 1 (the profile has infinite flux otherwise)")
        object.__setattr__(self, "fwhm_arcsec", fwhm)
        object.__setattr__(self, "beta", beta)

    @property
    def batch_shape(self) -> tuple[int, int]:
        """(B, C) of the parameters (1 where it broadcasts)."""
        shape = torch.broadcast_shapes(self.fwhm_arcsec.shape, self.beta.shape)
        return (shape[0], shape[1])

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> MoffatPSF:
        """A copy with tensors moved/cast."""
        return MoffatPSF(
            self.fwhm_arcsec.to(dtype=dtype, device=device),
            self.beta.to(dtype=dtype, device=device),
        )

    def _alpha_and_radius(
        self, pixel_scale_arcsec: float, settings: RenderSettings
    ) -> tuple[Tensor, Tensor]:
        """(alpha, truncation radius), pixels, (B, C).

        The light outside r is (1 + r^2 / alpha^2)^(1 - beta), so the radius holding all but
        eps is alpha sqrt(eps^(1 / (1 - beta)) - 1), capped at psf_kernel_fwhm_extent FWHM.
        """
        fwhm_pix = self.fwhm_arcsec / _check_pixel_scale(pixel_scale_arcsec)
        alpha = moffat_alpha(fwhm_pix, self.beta)
        log_eps = math.log(settings.psf_wing_flux)
        radius = alpha * torch.sqrt(torch.expm1(log_eps / (1.0 - self.beta)))
        radius = torch.minimum(radius, settings.psf_kernel_fwhm_extent * fwhm_pix)
        return alpha, radius

    def kernel_radius_pix(
        self, pixel_scale_arcsec: float, settings: RenderSettings = DEFAULT_SETTINGS
    ) -> float:
        """Truncation radius of the sampled kernel, pixels, largest over the batch."""
        return float(self._alpha_and_radius(pixel_scale_arcsec, settings)[1].detach().max())

    def otf(
        self,
        fft_shape: tuple[int, int],
        pixel_scale_arcsec: float,
        settings: RenderSettings = DEFAULT_SETTINGS,
    ) -> Tensor:
        """Transfer function of the kernel sampled at pixel offsets.

        The Moffat profile is evaluated at integer pixel offsets (wrapped onto the FFT grid,
        centre at index (0, 0)), set to zero beyond the truncation radius, normalised to unit
        sum and Fourier transformed.

        Returns:
            complex (B, C, Hf, Wf // 2 + 1).
        """
        alpha, radius = self._alpha_and_radius(pixel_scale_arcsec, settings)
        alpha, radius = alpha[..., None, None], radius[..., None, None]
        beta = self.beta[..., None, None]
        dtype, device = alpha.dtype, alpha.device
        off_y = _wrapped_offsets(fft_shape[0], dtype, device)[:, None]
        off_x = _wrapped_offsets(fft_shape[1], dtype, device)[None, :]
        r2 = off_y**2 + off_x**2
        kernel = torch.pow(1.0 + r2 / alpha**2, -beta)
        kernel = torch.where(r2 <= radius**2, kernel, torch.zeros_like(kernel))
        kernel = kernel / kernel.sum((-2, -1), keepdim=True)
        return torch.fft.rfft2(kernel)

    def moment_kernels(
        self,
        fft_shape: tuple[int, int],
        pixel_scale_arcsec: float,
        settings: RenderSettings = DEFAULT_SETTINGS,
    ) -> Tensor:
        """Pixel response K = PSF (x) pixel box and its derivatives on the wrapped FFT grid.

        With P(r) = (beta - 1) / (pi alpha^2) (1 + r^2/alpha^2)^-beta (unit flux):
        K(d) = int_box P(d + u) du (Gauss-Legendre, 4 x 4 nodes); K_x(d) = int [P(d_x + 1/2,
        d_y + u) - P(d_x - 1/2, d_y + u)] du; K_xx the same with dP/dx; K_xy = P at the four
        corners with alternating signs.  Zero beyond the truncation radius, then all six are
        divided by the sum of K (flux conserved).

        Returns:
            (B, C, 6, Hf, Wf) real: [K, -K_x, -K_y, K_xx / 2, K_xy, K_yy / 2].
        """
        alpha, radius = self._alpha_and_radius(pixel_scale_arcsec, settings)
        view = alpha.shape + (1, 1)
        beta = self.beta.expand(alpha.shape).reshape(view)
        alpha, radius = alpha.reshape(view), radius.reshape(view)
        dtype, device = alpha.dtype, alpha.device
        d_y = _wrapped_offsets(fft_shape[0], dtype, device)[:, None]
        d_x = _wrapped_offsets(fft_shape[1], dtype, device)[None, :]
        nodes, weights = np.polynomial.legendre.leggauss(4)
        nodes = (0.5 * nodes).tolist()
        weights = (0.5 * weights).tolist()
        norm = (beta - 1.0) / (math.pi * alpha**2)

        def profile(x: Tensor, y: Tensor) -> Tensor:
            return norm * torch.pow(1.0 + (x**2 + y**2) / alpha**2, -beta)

        def d_profile_dx(x: Tensor, y: Tensor) -> Tensor:
            base = 1.0 + (x**2 + y**2) / alpha**2
            return -2.0 * beta * x / alpha**2 * norm * torch.pow(base, -beta - 1.0)

        k0 = sum(
            wy * wx * profile(d_x + ux, d_y + uy)
            for uy, wy in zip(nodes, weights, strict=True)
            for ux, wx in zip(nodes, weights, strict=True)
        )
        kx = sum(
            w * (profile(d_x + 0.5, d_y + u) - profile(d_x - 0.5, d_y + u))
            for u, w in zip(nodes, weights, strict=True)
        )
        ky = sum(
            w * (profile(d_x + u, d_y + 0.5) - profile(d_x + u, d_y - 0.5))
            for u, w in zip(nodes, weights, strict=True)
        )
        kxx = sum(
            w * (d_profile_dx(d_x + 0.5, d_y + u) - d_profile_dx(d_x - 0.5, d_y + u))
            for u, w in zip(nodes, weights, strict=True)
        )
        kyy = sum(
            w * (d_profile_dx(d_y + 0.5, d_x + u) - d_profile_dx(d_y - 0.5, d_x + u))
            for u, w in zip(nodes, weights, strict=True)
        )
        kxy = (
            profile(d_x + 0.5, d_y + 0.5)
            - profile(d_x + 0.5, d_y - 0.5)
            - profile(d_x - 0.5, d_y + 0.5)
            + profile(d_x - 0.5, d_y - 0.5)
        )
        kernels = torch.stack([k0, -kx, -ky, 0.5 * kxx, kxy, 0.5 * kyy], 2)
        inside = (d_x**2 + d_y**2 <= radius**2)[:, :, None]
        kernels = torch.where(inside, kernels, torch.zeros_like(kernels))
        return kernels / kernels[:, :, :1].sum((-2, -1), keepdim=True)


@dataclass(frozen=True)
class PixelPSF:
    """A PSF given as an image.

    The image is normalised to unit sum per (galaxy, band).  Its centre is the geometric
    centre ((h - 1) / 2, (w - 1) / 2): the middle pixel for odd sizes, the point between
    the two middle pixels for even sizes (placed by an exact half-pixel phase shift).

    Attributes:
        image: (B, C, h, w) or (C, h, w) (broadcast over the batch); finite, non-negative
            sum > 0 per band.
        pixel_scale_arcsec: pixel scale of the image; if given, it must equal the scale of
            the images it convolves (no resampling is done).  None: assumed equal.
    """

    image: Tensor
    pixel_scale_arcsec: float | None = None

    def __post_init__(self) -> None:
        image = _to_float_tensor(self.image, "PSF image")
        if image.dim() == 3:
            image = image.unsqueeze(0)
        if image.dim() != 4:
            raise ValueError(
                f"PSF image must be (B, C, h, w) or (C, h, w), got shape {tuple(image.shape)}"
            )
        if not bool(torch.isfinite(image).all()):
            raise ValueError("PSF image contains NaN or inf")
        if bool((image.sum((-2, -1)) <= 0).any()):
            raise ValueError("PSF image must have a positive sum in every band")
        if self.pixel_scale_arcsec is not None:
            object.__setattr__(
                self, "pixel_scale_arcsec", _check_pixel_scale(self.pixel_scale_arcsec)
            )
        object.__setattr__(self, "image", image)

    @property
    def batch_shape(self) -> tuple[int, int]:
        """(B, C) of the image (B = 1 broadcasts)."""
        return (self.image.shape[0], self.image.shape[1])

    def to(
        self, dtype: torch.dtype | None = None, device: torch.device | str | None = None
    ) -> PixelPSF:
        """A copy with the image moved/cast."""
        return PixelPSF(self.image.to(dtype=dtype, device=device), self.pixel_scale_arcsec)

    def _check_scale(self, pixel_scale_arcsec: float) -> None:
        scale = _check_pixel_scale(pixel_scale_arcsec)
        if self.pixel_scale_arcsec is not None and not math.isclose(
            scale, self.pixel_scale_arcsec, rel_tol=1e-6
        ):
            raise ValueError(
                f"PixelPSF pixel scale {self.pixel_scale_arcsec} arcsec differs from the image "
                f"pixel scale {scale} arcsec (resampling is not supported)"
            )

    def kernel_radius_pix(
        self, pixel_scale_arcsec: float, settings: RenderSettings = DEFAULT_SETTINGS
    ) -> float:
        """Half the larger side of the image, pixels."""
        self._check_scale(pixel_scale_arcsec)
        return 0.5 * max(self.image.shape[-2], self.image.shape[-1])

    def otf(
        self,
        fft_shape: tuple[int, int],
        pixel_scale_arcsec: float,
        settings: RenderSettings = DEFAULT_SETTINGS,
    ) -> Tensor:
        """Transfer function of the normalised image, centred on grid index (0, 0).

        Returns:
            complex (B, C, Hf, Wf // 2 + 1).
        """
        self._check_scale(pixel_scale_arcsec)
        height, width = self.image.shape[-2:]
        if height > fft_shape[0] or width > fft_shape[1]:
            raise ValueError(f"PSF image {height}x{width} does not fit the FFT grid {fft_shape}")
        kernel = self.image / self.image.sum((-2, -1), keepdim=True)
        # Pixel (h // 2, w // 2) goes to index (0, 0); for even sizes that is half a pixel
        # past the geometric centre, undone below by a phase ramp.
        rows = (torch.arange(height, device=kernel.device) - height // 2) % fft_shape[0]
        cols = (torch.arange(width, device=kernel.device) - width // 2) % fft_shape[1]
        grid = kernel.new_zeros(kernel.shape[:-2] + tuple(fft_shape))
        grid[..., rows[:, None], cols[None, :]] = kernel
        spectrum = torch.fft.rfft2(grid)
        shift_y = 0.5 if height % 2 == 0 else 0.0
        shift_x = 0.5 if width % 2 == 0 else 0.0
        if shift_y or shift_x:
            k_y, k_x = _freq_grid(fft_shape, kernel.dtype, kernel.device)
            phase = -2.0 * math.pi * (k_y * shift_y + k_x * shift_x)
            spectrum = spectrum * torch.polar(torch.ones_like(phase), phase)
        return spectrum


PSFModel = GaussianPSF | MoffatPSF | PixelPSF


def _moment_otfs(
    psf: PSFModel,
    fft_shape: tuple[int, int],
    pixel_scale_arcsec: float,
    settings: RenderSettings,
) -> Tensor:
    """Transfer functions of the six moment kernels, complex (B, C, 6, Hf, Wf // 2 + 1).

    Analytic PSFs give their kernels in pixel space (``moment_kernels``).  A PSF image is
    taken to be the pixel response K itself (the image of a point source at a pixel
    centre, as survey PSF models are); its derivatives are applied in Fourier space,
    d/dx <-> 2 pi i k_x.
    """
    if hasattr(psf, "moment_kernels"):
        return torch.fft.rfft2(psf.moment_kernels(fft_shape, pixel_scale_arcsec, settings))
    base = psf.otf(fft_shape, pixel_scale_arcsec, settings)[:, :, None]
    k_y, k_x = _freq_grid(fft_shape, base.real.dtype, base.device)
    i2pi_kx = torch.complex(torch.zeros_like(k_x), 2.0 * math.pi * k_x)
    i2pi_ky = torch.complex(torch.zeros_like(k_y), 2.0 * math.pi * k_y)
    one = torch.ones_like(i2pi_kx * i2pi_ky)
    factors = torch.stack(
        [
            one,
            -i2pi_kx * one,
            -i2pi_ky * one,
            0.5 * i2pi_kx**2 * one,
            i2pi_kx * i2pi_ky,
            0.5 * i2pi_ky**2 * one,
        ]
    )
    return base * factors


def point_source_image(
    psf: PSFModel,
    pixel_scale_arcsec: float,
    side: int,
    settings: RenderSettings = DEFAULT_SETTINGS,
) -> Tensor:
    """The image of a unit point source at the centre pixel of a ``side`` x ``side`` stamp.

    This is the pixel response K = PSF (x) pixel box sampled at pixel offsets, the convention
    of a survey's PSF image and of :class:`PixelPSF`: a :class:`PixelPSF` of this image renders
    what ``psf`` renders, to the truncation of its wings at the stamp's edge.

    Args:
        psf: a PSF model, (B, C) parameters.
        pixel_scale_arcsec: pixel side, arcsec.
        side: odd stamp side, pixels.

    Returns:
        (B, C, side, side), summing to 1 per (galaxy, band) within the truncation radius.
    """
    if side < 1 or side % 2 == 0:
        raise ValueError(f"side must be an odd number of pixels, got {side}")
    _check_pixel_scale(pixel_scale_arcsec)
    grid = (side, side)
    otf = _moment_otfs(psf, grid, pixel_scale_arcsec, settings)[:, :, 0]
    kernel = torch.fft.irfft2(otf, s=grid)  # centred on index (0, 0), wrapped
    return torch.roll(kernel, shifts=(side // 2, side // 2), dims=(-2, -1))


def _half_light_radius_about_centre(image: Tensor) -> Tensor:
    """(..., h, w) -> (...,) float64: the radius about the geometric centre that encloses half
    of each image's light (:func:`galae.render.renderer.half_light_radius_pix`), pixels."""
    from galae.render.renderer import half_light_radius_pix  # the renderer imports this module

    h, w = image.shape[-2:]
    flat = image.detach().double().reshape(-1, 1, h, w)
    centre = torch.ones(flat.shape[0], dtype=torch.float64, device=flat.device)
    radius = half_light_radius_pix(flat, 0.5 * (w - 1) * centre, 0.5 * (h - 1) * centre, 50)
    return radius.reshape(image.shape[:-2])


#: FWHMs (pixels) of the Gaussian references of :func:`gaussian_equivalent_fwhm_arcsec`
_REFERENCE_FWHM_PIX = (0.5, 60.0, 512)


@functools.lru_cache(maxsize=16)
def _gaussian_reference(h: int, w: int) -> tuple[Tensor, Tensor]:
    """(half-light radii (K,), FWHMs (K,)), pixels, float64, of the Gaussian point-source images
    on an h x w image that it holds (99% of their light: a wider one's radius is the stamp's, not
    the PSF's); the radii rise with the FWHM.  One table per image size (computing it is most
    of :func:`gaussian_equivalent_fwhm_arcsec`'s cost); the tensors are shared, not to be
    modified."""
    lo, hi, count = _REFERENCE_FWHM_PIX
    fwhm = torch.logspace(math.log10(lo), math.log10(hi), count, dtype=torch.float64)
    sigma = (fwhm / FWHM_PER_SIGMA)[:, None]
    ky = _gaussian_pixel_response(torch.arange(h, dtype=torch.float64) - 0.5 * (h - 1), sigma)[0]
    kx = _gaussian_pixel_response(torch.arange(w, dtype=torch.float64) - 0.5 * (w - 1), sigma)[0]
    reference = _half_light_radius_about_centre(ky[:, :, None] * kx[:, None, :])
    usable = ky.sum(-1) * kx.sum(-1) >= 0.99
    return reference[usable], fwhm[usable]


def gaussian_equivalent_fwhm_arcsec(psf_image: Tensor, pixel_scale_arcsec: float) -> Tensor:
    """FWHM of the Gaussian PSF whose point-source image has the half-light radius of each PSF
    image (about its geometric centre, measured the same way on both), arcsec.

    A PSF with power-law wings (a Moffat of beta 2.5-4.8, as ground-based seeing gives) holds
    more of its light far out than the Gaussian of its FWHM: a galae encoder, trained on
    Gaussian PSFs, told the FWHM of such a PSF reads the wings as the galaxy's light and its
    half-light radii come out 10-26% too large; told this FWHM instead, 5-7%
    (``benchmarks/psf_shape.py``).  For a Gaussian it is its own FWHM.

    Args:
        psf_image: (..., h, w) point-source images (the pixel response, centred on the
            geometric centre, as :class:`PixelPSF` takes them).
        pixel_scale_arcsec: pixel side of the images.

    Returns:
        (...,) float64 FWHM in arcsec.

    Raises:
        ValueError: a half-light radius outside what Gaussians of FWHM 0.5 pixels up to the
            widest whose light the image holds (99%) give (an image too small for its PSF, or
            not a PSF).
    """
    scale = _check_pixel_scale(pixel_scale_arcsec)
    h, w = psf_image.shape[-2:]
    lo = _REFERENCE_FWHM_PIX[0]
    reference, fwhm = _gaussian_reference(int(h), int(w))
    r50 = _half_light_radius_about_centre(psf_image.to(device="cpu"))
    if bool((r50 < reference[0]).any()) or bool((r50 > reference[-1]).any()):
        raise ValueError(
            f"PSF image half-light radii {float(r50.min()):.3g}-{float(r50.max()):.3g} pixels lie "
            f"outside what Gaussians of FWHM {lo:g}-{float(fwhm[-1]):.3g} pixels give on a "
            f"{h}x{w} image: a larger PSF image is needed, or this is not a PSF image"
        )
    j = torch.searchsorted(reference, r50.reshape(-1)).clamp(1, reference.numel() - 1)
    t = (r50.reshape(-1) - reference[j - 1]) / (reference[j] - reference[j - 1])
    log_fwhm = torch.log(fwhm[j - 1]) + t * (torch.log(fwhm[j]) - torch.log(fwhm[j - 1]))
    return (torch.exp(log_fwhm) * scale).reshape(r50.shape).to(psf_image.device)


# Registry of PSF models by name (configs and make_psf use it).
PSF_MODELS: dict[str, Callable[..., PSFModel]] = {
    "gaussian": GaussianPSF,
    "moffat": MoffatPSF,
    "pixel": PixelPSF,
}


def _next_fast_len(size: int) -> int:
    """Smallest integer >= size whose prime factors are 2, 3 and 5 (fast FFT sizes)."""
    candidate = max(int(size), 1)
    while True:
        rest = candidate
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return candidate
        candidate += 1


def fft_shape_for(
    image_shape: tuple[int, int],
    psf: PSFModel,
    pixel_scale_arcsec: float,
    settings: RenderSettings = DEFAULT_SETTINGS,
) -> tuple[int, int]:
    """Zero-padded FFT grid for convolving (H, W) images with ``psf``.

    Each side is at least ``settings.fft_pad_factor`` times the image side and at least the
    image side plus the kernel radius plus one (so that no light wraps around), rounded up
    to a 2-3-5-smooth size.
    """
    radius = math.ceil(psf.kernel_radius_pix(pixel_scale_arcsec, settings))
    return tuple(
        _next_fast_len(max(math.ceil(settings.fft_pad_factor * side), side + radius + 1))
        for side in image_shape
    )


def _all_finite(values: Tensor) -> bool:
    """Whether a (large) tensor holds no NaN/inf: one summation pass, the full elementwise
    test only when the sum is not finite (it is also not finite when finite values overflow)."""
    with torch.no_grad():
        if bool(torch.isfinite(values.sum())):
            return True
        return bool(torch.isfinite(values).all())


def _check_psf(
    psf: object, batch: int, bands: int, dtype: torch.dtype, device: torch.device
) -> PSFModel:
    """Validate a PSF against images of (B, C) = (batch, bands); cast it to dtype/device."""
    if not isinstance(psf, GaussianPSF | MoffatPSF | PixelPSF):
        raise ValueError(
            f"psf must be one of the {sorted(PSF_MODELS)} models (see make_psf), got {type(psf)}"
        )
    psf_b, psf_c = psf.batch_shape
    if psf_b not in (1, batch) or psf_c not in (1, bands):
        raise ValueError(
            f"PSF parameters of shape ({psf_b}, {psf_c}) do not broadcast to images "
            f"(B, C) = ({batch}, {bands})"
        )
    return psf.to(dtype=dtype, device=device)


def _toeplitz(kernel: Tensor, size: int) -> Tensor:
    """Toeplitz matrix M[m, k] = kernel[(m - k) mod N], m, k < size.

    kernel (..., N), periodic, N >= size -> (..., size, size).
    """
    # lags -(size - 1) .. size - 1 of the periodic kernel, in increasing order
    lagged = torch.cat([kernel[..., kernel.shape[-1] - size + 1 :], kernel[..., :size]], -1)
    return _hankel_to_toeplitz(lagged.contiguous(), size)


def convolve(
    images: Tensor,
    psf: PSFModel,
    pixel_scale_arcsec: float,
    settings: RenderSettings = DEFAULT_SETTINGS,
) -> Tensor:
    """Convolve pixel-total images with a PSF (zero-padded; flux conserving).

    out[m] = sum_k images[k] kernel[m - k], the kernel being the PSF's ``otf`` transformed
    back to pixels.  The FFT grid (see :func:`fft_shape_for`) is large enough that light
    leaving one edge never re-enters at the other; light that falls outside the stamp is
    lost, so a stamp's sum is conserved only when its light stays inside.  For separable
    PSFs (Gaussian) with ``settings.separable_psf_convolution`` the same kernel is applied
    as two batched matrix products, which equals the FFT result to rounding.

    Args:
        images: (B, C, H, W), float32 or float64, any device.
        psf: a PSF model with parameters broadcastable to (B, C).
        pixel_scale_arcsec: pixel side of the images, arcsec.
        settings: padding and kernel-extent settings.

    Returns:
        (B, C, H, W), dtype/device of ``images``; differentiable in images and PSF.

    Raises:
        ValueError: wrong shapes, NaN/inf, non-positive pixel scale, PSF scale mismatch.
    """
    if not isinstance(images, Tensor) or images.dim() != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"images must be floating point, got {images.dtype}")
    if not _all_finite(images):
        raise ValueError("images contain NaN or inf")
    _check_pixel_scale(pixel_scale_arcsec)
    batch, bands, height, width = images.shape
    psf = _check_psf(psf, batch, bands, images.dtype, images.device)
    fft_shape = fft_shape_for((height, width), psf, pixel_scale_arcsec, settings)
    if settings.separable_psf_convolution and hasattr(psf, "separable_kernels"):
        kernel_y, kernel_x = psf.separable_kernels(fft_shape, pixel_scale_arcsec)
        rows = _toeplitz(kernel_y, height)  # (B', C', H, H)
        cols = _toeplitz(kernel_x, width)  # (B', C', W, W)
        return rows @ images @ cols.transpose(-1, -2)
    spectrum = torch.fft.rfft2(images, s=fft_shape)
    spectrum = spectrum * psf.otf(fft_shape, pixel_scale_arcsec, settings)
    return torch.fft.irfft2(spectrum, s=fft_shape)[..., :height, :width]


def convolve_moments(
    moments: Tensor,
    psf: PSFModel,
    pixel_scale_arcsec: float,
    settings: RenderSettings = DEFAULT_SETTINGS,
) -> Tensor:
    """PSF-convolved, pixel-integrated images from per-pixel light moments.

    The observed pixel m collects int L(x) K(m - x) dx, with K = PSF (x) pixel box the
    pixel response.  Expanding K about each source pixel's centre k to second order in the
    offset x - k,

        out[m] = sum_k [ M0_k K(m-k) - M1_k . grad K(m-k) + 1/2 M2_k : Hess K(m-k) ],

    a sum of six convolutions of the moment images (see
    :class:`galae.render.raster.PixelMoments`).  Unlike :func:`convolve`, which only sees
    pixel totals, this is accurate for profiles the pixels do not resolve (a cusp or a
    compact bulge): with the moments of :func:`galae.render.raster.sersic_pixel_moments` it
    agrees with GalSim to 0.25% of the peak pixel at FWHM 3.5 px, 1.2% at 2.5 px, 2% at
    2 px (the neglected third-order term falls as FWHM^-3); on a grid of s x s sub-pixels
    (moments of sub-pixels, then summed) the residual falls as s^-3.  The Gaussian runs as
    separable matrix products, other PSFs through zero-padded FFTs.  Cost on CPU about
    nine times :func:`convolve` (it is nine batched matrix products).

    Args:
        moments: (B, C, 6, H, W) in MOMENT_NAMES order (light, first_x, first_y,
            second_xx, second_xy, second_yy); pixel units.
        psf: PSF model with parameters broadcastable to (B, C).
        pixel_scale_arcsec: arcsec per pixel.
        settings: padding settings.

    Returns:
        (B, C, H, W), dtype/device of ``moments``.

    Raises:
        ValueError: wrong shapes, NaN/inf, bad pixel scale.
    """
    if not isinstance(moments, Tensor) or moments.dim() != 5 or moments.shape[2] != 6:
        shape = tuple(moments.shape) if isinstance(moments, Tensor) else type(moments).__name__
        raise ValueError(f"moments must be a (B, C, 6, H, W) tensor, got {shape}")
    if not moments.is_floating_point():
        raise ValueError(f"moments must be floating point, got {moments.dtype}")
    if not _all_finite(moments):
        raise ValueError("moments contain NaN or inf")
    psf = _check_psf(psf, moments.shape[0], moments.shape[1], moments.dtype, moments.device)
    _check_pixel_scale(pixel_scale_arcsec)
    height, width = moments.shape[-2:]
    if settings.separable_psf_convolution and hasattr(psf, "response_1d"):
        rows = _toeplitz_response(psf, height, pixel_scale_arcsec)  # (B', C', 3, H, H)
        cols = _toeplitz_response(psf, width, pixel_scale_arcsec)  # (B', C', 3, W, W)
        batch, bands = moments.shape[:2]
        flat = moments.reshape(batch * bands, 6, height, width)
        m0, m1x, m1y, m2xx, m2xy, m2yy = flat.unbind(1)
        rows = rows.expand(batch, bands, 3, height, height).reshape(-1, 3, height, height)
        cols = cols.expand(batch, bands, 3, width, width).reshape(-1, 3, width, width)
        r0, r1, r2 = rows.unbind(1)
        c0, c1, c2 = cols.transpose(-1, -2).unbind(1)
        # r0 (m0 c0 - m1x c1 + m2xx c2 / 2) + r1 (m2xy c1 - m1y c0) + r2 (m2yy c0) / 2,
        # accumulated with fused batched multiply-adds
        inner0 = torch.baddbmm(torch.baddbmm(m0 @ c0, m1x, c1, alpha=-1.0), m2xx, c2, alpha=0.5)
        inner1 = torch.baddbmm(m2xy @ c1, m1y, c0, alpha=-1.0)
        out = torch.baddbmm(torch.baddbmm(r0 @ inner0, r1, inner1), r2, m2yy @ c0, alpha=0.5)
        return out.reshape(batch, bands, height, width)
    fft_shape = fft_shape_for((height, width), psf, pixel_scale_arcsec, settings)
    spectra = torch.fft.rfft2(moments, s=fft_shape)
    spectrum = (spectra * _moment_otfs(psf, fft_shape, pixel_scale_arcsec, settings)).sum(2)
    return torch.fft.irfft2(spectrum, s=fft_shape)[..., :height, :width]


def _toeplitz_response(psf: GaussianPSF, size: int, pixel_scale_arcsec: float) -> Tensor:
    """T[..., t, m, k] = k_t(m - k) of the Gaussian pixel response: (B, C, 3, size, size)."""
    device, dtype = psf.fwhm_arcsec.device, psf.fwhm_arcsec.dtype
    lags = torch.arange(-(size - 1), size, dtype=dtype, device=device)  # the 2 size - 1 lags
    response = psf.response_1d(lags, pixel_scale_arcsec).contiguous()  # (B, C, 3, 2 size - 1)
    return _hankel_to_toeplitz(response, size)


def _hankel_to_toeplitz(values: Tensor, size: int, size_in: int | None = None) -> Tensor:
    """T[..., m, k] = values[..., m - k + size_in - 1] from contiguous values
    (..., size + size_in - 1); (size, size_in), square by default.

    Built as the strided Hankel view H[m, j] = values[m + j] with its columns reversed
    (j = size_in - 1 - k): one copy, no index gather.
    """
    size_in = size if size_in is None else size_in
    strides = values.stride()[:-1] + (1, 1)
    shape = values.shape[:-1] + (size, size_in)
    return values.as_strided(shape, strides, values.storage_offset()).flip(-1)


def make_psf(
    spec: object,
    *,
    kind: str | None = None,
    pixel_scale_arcsec: float | None = None,
    moffat_beta: float | None = None,
) -> PSFModel:
    """Build a PSF model from a loose specification.

    Args:
        spec: one of
            - a PSF model (returned unchanged);
            - a mapping ``{"model": name, **fields}`` with name in :data:`PSF_MODELS`;
            - a FWHM in arcsec: float, numpy scalar/array or tensor, scalar, (C,) or (B, C)
              -> GaussianPSF (MoffatPSF if ``moffat_beta`` is given);
            - a PSF image (C, h, w) or (B, C, h, w) -> PixelPSF.
        kind: force the interpretation of an array: "gaussian", "moffat" or "pixel"
            (needed for a single-band (h, w) image, which reads as (B, C) FWHMs otherwise).
        pixel_scale_arcsec: pixel scale of a PSF image (checked against the images later).
        moffat_beta: Moffat beta for a FWHM spec.

    Returns:
        GaussianPSF, MoffatPSF or PixelPSF.

    Raises:
        ValueError: unknown model name or an unusable spec.
    """
    if isinstance(spec, GaussianPSF | MoffatPSF | PixelPSF):
        return spec
    if isinstance(spec, Mapping):
        fields = dict(spec)
        name = fields.pop("model", None)
        if name not in PSF_MODELS:
            raise ValueError(f"unknown PSF model {name!r}; known: {sorted(PSF_MODELS)}")
        return PSF_MODELS[name](**fields)
    tensor = _to_float_tensor(spec, "PSF spec")
    if kind is None:
        kind = (
            "pixel" if tensor.dim() >= 3 else ("moffat" if moffat_beta is not None else "gaussian")
        )
    if kind not in PSF_MODELS:
        raise ValueError(f"unknown PSF model {kind!r}; known: {sorted(PSF_MODELS)}")
    builders: dict[str, Callable[[], PSFModel]] = {
        "gaussian": lambda: GaussianPSF(tensor),
        "moffat": lambda: MoffatPSF(tensor, 3.5 if moffat_beta is None else moffat_beta),
        # a single (h, w) image is one band
        "pixel": lambda: PixelPSF(
            tensor[None] if tensor.dim() == 2 else tensor, pixel_scale_arcsec
        ),
    }
    return builders[kind]()


def convolve_central_moments(
    totals: Tensor,
    central: Tensor,
    row0: Tensor,
    col0: Tensor,
    psf: GaussianPSF,
    pixel_scale_arcsec: float,
    margin: int = 0,
) -> Tensor:
    """PSF-convolved images from pixel totals and the moments of a central box of pixels.

    The second-order expansion of :func:`convolve_moments`, with every pixel's moments split
    into those of light that is smooth on the pixel scale (first moment = central difference
    of the totals / 12, second = totals / 12 per axis) and deviations from it, becomes

        out[m] = sum_k F_k K_e(m - k) + sum_{k in box} [ - dM1_k . grad K + 1/2 dM2_k : Hess K ],
        K_e = K + Lap K / 24 - (D . grad K) / 12,

    (summation by parts; D the central difference).  The deviations vanish to second order
    where the pixels resolve the light, so the second sum is kept over the central box alone
    (:func:`galae.render.raster.smooth_moment_deviations`).  K_e is applied as the separable
    k_e(x) k_e(y) with k_e = k + k'' / 24 - (D k') / 12, whose excess over K_e, b(x) b(y) with
    b = k_e - k (a fourth-order term), is taken off again over the box.  Every term is a
    product of banded (H x H') and (W' x W) matrices of the 1-D Gaussian pixel response.

    Args:
        totals: (B, C, H', W') pixel totals (the stamp plus ``margin`` on every side).
        central: (B, C, 6, K, K): the box's pixel totals and moment deviations (MOMENT_NAMES
            order; pixel units).
        row0, col0: (B,) row and column of each box's first pixel on the (H', W') grid.
        psf: Gaussian PSF with FWHM broadcastable to (B, C).
        pixel_scale_arcsec: arcsec per pixel.
        margin: border drawn around the stamp; the output covers the stamp only.

    Returns:
        (B, C, H' - 2 margin, W' - 2 margin), dtype/device of ``totals``.
    """
    if not isinstance(psf, GaussianPSF):
        raise ValueError(f"central moments need a GaussianPSF, got {type(psf).__name__}")
    if not isinstance(central, Tensor) or central.dim() != 5 or central.shape[2] != 6:
        got = tuple(central.shape) if isinstance(central, Tensor) else type(central).__name__
        raise ValueError(f"central must be a (B, C, 6, K, K) tensor, got {got}")
    if not isinstance(totals, Tensor) or totals.dim() != 4:
        got = tuple(totals.shape) if isinstance(totals, Tensor) else type(totals).__name__
        raise ValueError(f"totals must be a (B, C, H, W) tensor, got {got}")
    if not _all_finite(totals):
        raise ValueError("totals contain NaN or inf")
    batch, bands, height_in, width_in = totals.shape
    height, width = height_in - 2 * margin, width_in - 2 * margin
    if margin < 0 or height < 1 or width < 1:
        raise ValueError(f"margin {margin} does not fit the {height_in} x {width_in} totals")
    dtype, device = totals.dtype, totals.device
    psf = _check_psf(psf, batch, bands, dtype, device)
    sigma = psf.sigma_pix(pixel_scale_arcsec).expand(batch, bands)[..., None]  # (B, C, 1)

    def smooth_kernel(size_out: int, size_in: int) -> Tensor:
        # k_e at the lags m + margin - k of output m and input k: a (size_out, size_in) Toeplitz
        lags = torch.arange(margin - size_in + 1, size_out + margin, dtype=dtype, device=device)
        k0, _, _, excess = _gaussian_box_response(lags, sigma)
        return _hankel_to_toeplitz((k0 + excess).contiguous(), size_out, size_in)

    rows = smooth_kernel(height, height_in)  # (B, C, H, H')
    cols = smooth_kernel(width, width_in).transpose(-1, -2)  # (B, C, W', W)
    images = rows @ totals @ cols

    box_y, box_x = central.shape[-2:]
    row0, col0 = row0.to(device=device, dtype=dtype), col0.to(device=device, dtype=dtype)

    def box_response(size_out: int, size_box: int, first: Tensor) -> list[Tensor]:
        # the response at the lags m + margin - (first + i) of output m and box pixel i, which
        # take size_out + size_box - 1 values per galaxy: evaluated once, laid out as Toeplitz
        lags = torch.arange(size_out + size_box - 1, dtype=dtype, device=device) - (size_box - 1)
        lags = (lags[None, :] + (margin - first)[:, None])[:, None]  # (B, 1, L)
        return [
            _hankel_to_toeplitz(v.contiguous(), size_out, size_box)
            for v in _gaussian_box_response(lags, sigma)
        ]

    r0, r1, r2, rb = box_response(height, box_y, row0)  # each (B, C, H, Ky)
    c0, c1, c2, cb = (c.transpose(-1, -2) for c in box_response(width, box_x, col0))  # (Kx, W)
    f, d1x, d1y, d2xx, d2xy, d2yy = central.unbind(2)
    # the box's terms as one product of (H x 4 Ky) and (4 Ky x W) matrices, added in place of
    # four stamp-sized temporaries
    left = torch.cat([r0, r1, r2, rb], -1)
    right = torch.cat(
        [
            0.5 * (d2xx @ c2) - d1x @ c1,
            d2xy @ c1 - d1y @ c0,
            0.5 * (d2yy @ c0),
            -(f @ cb),
        ],
        -2,
    )
    flat = (batch * bands, height, width)
    return torch.baddbmm(
        images.reshape(flat),
        left.reshape(batch * bands, height, -1),
        right.reshape(-1, *right.shape[-2:]),
    ).reshape(batch, bands, height, width)


def _gaussian_box_response(lags: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """k, k', k'' of the Gaussian pixel response at ``lags`` and b = k_e - k =
    (k'' - k'(d + 1) + k'(d - 1)) / 24 (see :func:`convolve_central_moments`), sharing the
    Gaussian's values at d +- 1/2 and d +- 3/2."""
    inv_norm = 1.0 / math.sqrt(2.0 * math.pi)
    k0, k1, k2, pdf_hi, pdf_lo = _gaussian_response_and_edges(lags, sigma)
    pdf_hi2 = torch.exp(-0.5 * ((lags + 1.5) / sigma) ** 2) * inv_norm
    pdf_lo2 = torch.exp(-0.5 * ((lags - 1.5) / sigma) ** 2) * inv_norm
    # k'(d + 1) - k'(d - 1) = (pdf(d + 3/2) - pdf(d + 1/2) - pdf(d - 1/2) + pdf(d - 3/2)) / sigma
    excess = (k2 - (pdf_hi2 - pdf_hi - pdf_lo + pdf_lo2) / sigma) / 24.0
    return k0, k1, k2, excess


def _gaussian_pixel_response(lags: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """1-D Gaussian pixel response k(d) = int_{-1/2}^{1/2} g(d + u) du, k' and k'' at ``lags``
    (broadcast against ``sigma``, pixels), as in :meth:`GaussianPSF.response_1d`."""
    return _gaussian_response_and_edges(lags, sigma)[:3]


def _gaussian_response_and_edges(
    lags: Tensor, sigma: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """k, k', k'' of the Gaussian pixel response at ``lags``, and the Gaussian density at the
    pixel edges d + 1/2 and d - 1/2 they are made of."""
    z_hi = (lags + 0.5) / sigma
    z_lo = (lags - 0.5) / sigma
    pdf_hi = torch.exp(-0.5 * z_hi**2) / math.sqrt(2.0 * math.pi)
    pdf_lo = torch.exp(-0.5 * z_lo**2) / math.sqrt(2.0 * math.pi)
    k0 = torch.special.ndtr(z_hi) - torch.special.ndtr(z_lo)
    k1 = (pdf_hi - pdf_lo) / sigma
    k2 = (z_lo * pdf_lo - z_hi * pdf_hi) / sigma**2
    return k0, k1, k2, pdf_hi, pdf_lo
