"""PSF models and convolution: flux conservation, analytic identities, conventions, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
import torch

from galae.render.psf import (
    FWHM_PER_SIGMA,
    PSF_MODELS,
    GaussianPSF,
    MoffatPSF,
    PixelPSF,
    convolve,
    convolve_central_moments,
    convolve_moments,
    fft_shape_for,
    make_psf,
    moffat_alpha,
)
from galae.render.raster import sersic_image, sersic_pixel_moments
from galae.settings import DEFAULT_SETTINGS

F64 = torch.float64
FFT = DEFAULT_SETTINGS.with_(separable_psf_convolution=False)


def t64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def gaussian_image(
    sigma_pix: float, cx: float, cy: float, shape, batch_bands=(1, 1)
) -> torch.Tensor:
    """Pixel-integrated circular Gaussian (n = 1/2 Sersic, r_half = sigma sqrt(2 ln 2))."""
    r_half = sigma_pix * math.sqrt(2 * math.log(2))
    img = sersic_image(t64(r_half), t64(0.5), t64(1.0), t64(0.0), t64(cx), t64(cy), shape)
    return img.reshape(1, 1, *shape).expand(*batch_bands, *shape).clone()


def point_image(x: int, y: int, shape, dtype=F64) -> torch.Tensor:
    img = torch.zeros(1, 1, *shape, dtype=dtype)
    img[0, 0, y, x] = 1.0
    return img


# --------------------------------------------------------------------------- flux conservation


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize(
    "psf",
    [
        GaussianPSF(torch.tensor([[1.0, 1.4, 2.0]])),
        MoffatPSF(torch.tensor([[1.0, 1.4, 2.0]]), 4.5),
        "pixel",
    ],
    ids=["gaussian", "moffat", "pixel"],
)
@pytest.mark.parametrize("settings", [DEFAULT_SETTINGS, FFT], ids=["default", "fft"])
def test_convolution_conserves_flux(psf, dtype, settings):
    if psf == "pixel":
        yy, xx = torch.meshgrid(torch.arange(15.0), torch.arange(15.0), indexing="ij")
        psf = PixelPSF(
            torch.stack(
                [torch.exp(-((xx - 7) ** 2 + (yy - 7) ** 2) / (2 * s**2)) for s in (1.0, 1.5, 2.0)]
            )
        )
    # a compact source in the middle of a stamp wide enough to hold the PSF wings: the
    # Moffat light beyond 40 px is (1 + 40^2/alpha^2)^(1 - beta) < 2e-6 (alpha <= 6 px)
    images = torch.zeros(2, 3, 96, 96, dtype=dtype)
    images[:, :, 44:52, 45:50] = torch.rand(2, 3, 8, 5, dtype=dtype)
    out = convolve(images, psf, 0.396, settings)
    assert out.dtype == dtype and out.shape == images.shape
    rel = (out.sum((-2, -1)) / images.sum((-2, -1)) - 1).abs().max().item()
    assert rel < (1e-5 if dtype == torch.float32 else 2e-6)


def test_no_wrap_around():
    """Light at one edge never re-enters at the opposite edge (zero padding): a point at the
    left edge of a 40 x 40 stamp gives the same image as the same point in a wide canvas."""
    small = point_image(0, 20, (40, 40))
    wide = point_image(100, 20, (40, 240))
    for psf in (GaussianPSF(t64(3.0)), MoffatPSF(t64(3.0), 2.5)):
        for settings in (DEFAULT_SETTINGS, FFT):
            out = convolve(small, psf, 0.396, settings)[0, 0]
            ref = convolve(wide, psf, 0.396, settings)[0, 0, :, 100:140]
            assert (out - ref).abs().max() < 2e-4 * ref.max()  # kernels cut at 1e-4 of light
            # far edge: nothing but the light that really gets there
            assert (out - ref)[:, -8:].abs().max() < 1e-8 * ref.max()


def test_fft_grid_is_padded_enough():
    psf = GaussianPSF(t64(2.0))
    shape = fft_shape_for((64, 64), psf, 0.396)
    assert all(s >= 96 for s in shape)  # fft_pad_factor 1.5
    wide = MoffatPSF(t64(6.0), 2.0)
    radius = wide.kernel_radius_pix(0.396)
    assert all(s >= 64 + radius for s in fft_shape_for((64, 64), wide, 0.396))


# --------------------------------------------------------------------------- identities


@pytest.mark.parametrize("settings", [DEFAULT_SETTINGS, FFT], ids=["separable", "fft"])
def test_gaussian_times_gaussian_is_gaussian(settings):
    """(Gaussian sigma_g) * (PSF sigma_p) = Gaussian of variance sigma_g^2 + sigma_p^2."""
    sigma_g, sigma_p, scale = 2.5, 1.8, 0.4
    img = gaussian_image(sigma_g, 30.3, 29.6, (60, 60))
    psf = GaussianPSF(t64(sigma_p * FWHM_PER_SIGMA * scale))
    out = convolve(img, psf, scale, settings)[0, 0]
    ref = gaussian_image(math.hypot(sigma_g, sigma_p), 30.3, 29.6, (60, 60))[0, 0]
    assert (out - ref).abs().max() < 1e-5 * ref.max()


def test_separable_equals_fft():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 2, 33, 40, dtype=F64, generator=gen)
    psf = GaussianPSF(torch.tensor([[1.0, 2.5], [1.5, 0.8], [3.0, 1.2]], dtype=F64))
    a = convolve(images, psf, 0.396, DEFAULT_SETTINGS)
    b = convolve(images, psf, 0.396, FFT)
    assert (a - b).abs().max() < 1e-12
    moments = torch.rand(3, 2, 6, 33, 40, dtype=F64, generator=gen)
    c = convolve_moments(moments, psf, 0.396, DEFAULT_SETTINGS)
    d = convolve_moments(moments, psf, 0.396, FFT)
    # the FFT kernels are cut where the PSF holds < psf_wing_flux = 1e-4 of its light
    assert (c - d).abs().max() < 1e-6 * c.abs().max()


def test_gaussian_otf_and_fwhm():
    scale, fwhm = 0.25, 1.5  # 6 pixels
    psf = GaussianPSF(t64(fwhm))
    otf = psf.otf((64, 64), scale)
    assert otf.shape == (1, 1, 64, 33) and otf.is_complex()
    assert abs(otf[0, 0, 0, 0].item() - 1.0) < 1e-15
    out = convolve(point_image(32, 32, (64, 64)), psf, scale)[0, 0, 32]
    # half maximum at +-3 pixels (FWHM = 6 px), within the sampling of a resolved Gaussian
    assert abs(out[35].item() / out[32].item() - 0.5) < 1e-6


def test_moffat_fwhm_and_normalisation():
    """Moffat (1969): the sampled kernel is at half its peak at r = FWHM / 2 (8 px FWHM)."""
    beta = 2.5
    psf = MoffatPSF(t64(8.0), beta)
    out = convolve(point_image(40, 40, (81, 81)), psf, 1.0)[0, 0]
    assert abs(out[40, 44].item() / out[40, 40].item() - 0.5) < 1e-9
    assert abs(out[36, 40].item() / out[40, 40].item() - 0.5) < 1e-9
    alpha = moffat_alpha(t64(8.0), t64(beta))
    # FWHM = 2 alpha sqrt(2^(1/beta) - 1) (Trujillo et al. 2001, eq. 4)
    assert abs(float(alpha) * 2 * math.sqrt(2 ** (1 / beta) - 1) - 8.0) < 1e-12
    # truncation radius: light outside r is (1 + r^2/alpha^2)^(1 - beta) = psf_wing_flux,
    # capped at psf_kernel_fwhm_extent FWHM (6 x 8 px here for beta = 2.5, not for 4.5)
    for b, capped in ((2.5, True), (4.5, False)):
        a = float(moffat_alpha(t64(8.0), t64(b)))
        radius = MoffatPSF(t64(8.0), b).kernel_radius_pix(1.0)
        wing = (1 + radius**2 / a**2) ** (1 - b)
        assert (radius == 48.0 and wing > 1e-4) if capped else abs(wing - 1e-4) < 1e-12


def test_moffat_tends_to_gaussian_at_large_beta():
    img = point_image(25, 25, (51, 51))
    a = convolve(img, MoffatPSF(t64(2.0), 200.0), 0.5)
    b = convolve(img, GaussianPSF(t64(2.0)), 0.5)
    assert (a - b).abs().max() < 5e-3 * b.max()


@pytest.mark.parametrize("size", [23, 24])
def test_pixel_psf_centring(size):
    """Odd and even PSF images are centred on their geometric centre ((size - 1) / 2).

    A point source convolved with the PSF image keeps its centroid; for odd sizes the
    output reproduces the normalised image exactly.
    """
    c = (size - 1) / 2
    yy, xx = torch.meshgrid(
        torch.arange(size, dtype=F64), torch.arange(size, dtype=F64), indexing="ij"
    )
    # sigma 1.8 / 2.2 px: resolved (transfer function exp(-16) at Nyquist) and negligible at
    # the image edges (exp(-13)), so the half-pixel phase shift of even sizes does not ring
    image = torch.exp(-((xx - c) ** 2 / 1.8**2 + (yy - c) ** 2 / 2.2**2) / 2)
    out = convolve(point_image(30, 28, (60, 60)), PixelPSF(image[None]), 0.396)[0, 0]
    coords = torch.arange(60, dtype=F64)
    assert abs(out.sum().item() - 1.0) < 1e-9
    assert abs((out.sum(0) * coords).sum().item() - 30.0) < 1e-6
    assert abs((out.sum(1) * coords).sum().item() - 28.0) < 1e-6
    if size % 2 == 1:
        h = size // 2
        ref = image / image.sum()
        assert torch.allclose(out[28 - h : 28 + h + 1, 30 - h : 30 + h + 1], ref, atol=1e-14)


def test_pixel_psf_reproduces_gaussian_psf():
    """A PSF image made of the Gaussian's own kernel gives the Gaussian's result."""
    scale, fwhm = 0.396, 2.0  # 5 px: the band limit cuts exp(-22) of the transfer function
    psf = GaussianPSF(t64(fwhm))
    kernel = convolve(point_image(20, 20, (41, 41)), psf, scale)[0]  # (1, 41, 41), centred
    img = gaussian_image(1.2, 24.4, 23.7, (48, 48))
    a = convolve(img, psf, scale)
    b = convolve(img, PixelPSF(kernel, pixel_scale_arcsec=scale), scale)
    assert (a - b).abs().max() < 1e-8 * a.max()


def test_pixel_psf_scale_must_match():
    psf = PixelPSF(torch.ones(1, 5, 5), pixel_scale_arcsec=0.2)
    with pytest.raises(ValueError, match="pixel scale"):
        convolve(torch.zeros(1, 1, 10, 10), psf, 0.396)
    convolve(torch.zeros(1, 1, 10, 10), psf, 0.2)  # equal scale is fine


# --------------------------------------------------------------------------- moments


def test_moment_convolution_of_offset_point_source():
    """A point at (x0, y0) inside pixel k has M1 = d, M2 = d d^T; the second-order expansion
    reproduces the exact pixel response K(m - x0) (Gaussian (x) box) to O(d^3 / sigma^3)."""
    sigma, shape = 1.5, (25, 25)
    k = (12, 12)
    d = (0.3, -0.2)
    moments = torch.zeros(1, 1, 6, *shape, dtype=F64)
    moments[0, 0, :, k[1], k[0]] = t64(1.0, d[0], d[1], d[0] ** 2, d[0] * d[1], d[1] ** 2)
    psf = GaussianPSF(t64(sigma * FWHM_PER_SIGMA))
    out = convolve_moments(moments, psf, 1.0)[0, 0].numpy()
    edges = np.arange(26) - 0.5
    fx = np.diff(scipy.special.ndtr((edges - k[0] - d[0]) / sigma))
    fy = np.diff(scipy.special.ndtr((edges - k[1] - d[1]) / sigma))
    ref = fy[:, None] * fx[None, :]
    assert np.abs(out - ref).max() < 3e-3 * ref.max()
    # without the moments (point at the pixel centre) the error is ~ d / sigma
    moments[0, 0, 1:] = 0
    crude = convolve_moments(moments, psf, 1.0)[0, 0].numpy()
    assert np.abs(crude - ref).max() > 5 * np.abs(out - ref).max()


@pytest.mark.parametrize(
    ("psf", "tol"),
    # the Moffat's power-law wings scatter ~5e-7 of the light beyond the stamp
    [(MoffatPSF(t64(2.0), 3.5), 2e-6), (GaussianPSF(t64(2.0)), 1e-9)],
    ids=["moffat", "gaussian"],
)
def test_moment_convolution_conserves_flux(psf, tol):
    # compact exponential: no light near the stamp edges to be scattered out
    m = sersic_pixel_moments(t64(1.0), t64(1.0), t64(0.6), t64(0.3), t64(32.3), t64(31.8), (64, 64))
    for settings in (DEFAULT_SETTINGS, FFT):
        out = convolve_moments(m.stack()[:, None], psf, 0.396, settings)
        assert abs(out.sum().item() / m.flux.sum().item() - 1) < tol


def test_pixel_psf_moment_kernels_are_derivatives():
    """For a PSF image, the moment kernels are Fourier derivatives of the image: compare with
    the analytic Gaussian response on a well-sampled case."""
    sigma = 2.0
    gauss = GaussianPSF(t64(sigma * FWHM_PER_SIGMA))
    off = torch.arange(-15, 16, dtype=F64)
    k = gauss.response_1d(off, 1.0)[0, 0]  # (3, 31)
    image = (k[0][:, None] * k[0][None, :])[None]  # pixel response K, centred
    gen = torch.Generator().manual_seed(2)
    moments = torch.zeros(1, 1, 6, 40, 40, dtype=F64)
    moments[..., 15:25, 15:25] = torch.rand(1, 1, 6, 10, 10, dtype=F64, generator=gen) * 0.1
    a = convolve_moments(moments, gauss, 1.0)
    b = convolve_moments(moments, PixelPSF(image), 1.0)
    assert (a - b).abs().max() < 2e-4 * a.abs().max()


# --------------------------------------------------------------------------- make_psf, errors


def test_make_psf_variants():
    g = make_psf(1.4)
    assert isinstance(g, GaussianPSF) and g.fwhm_arcsec.shape == (1, 1)
    g = make_psf(np.array([1.1, 1.2, 1.3, 1.4, 1.5]))
    assert g.fwhm_arcsec.shape == (1, 5)
    g = make_psf(torch.ones(4, 5))
    assert g.batch_shape == (4, 5)
    m = make_psf([1.0, 2.0], moffat_beta=2.5)
    assert isinstance(m, MoffatPSF) and float(m.beta.max()) == 2.5
    p = make_psf(np.ones((5, 11, 11)), pixel_scale_arcsec=0.396)
    assert isinstance(p, PixelPSF) and p.image.shape == (1, 5, 11, 11)
    p = make_psf(np.ones((11, 11)), kind="pixel")
    assert p.image.shape == (1, 1, 11, 11)
    d = make_psf({"model": "moffat", "fwhm_arcsec": 1.0, "beta": 3.0})
    assert isinstance(d, MoffatPSF)
    assert make_psf(d) is d
    assert set(PSF_MODELS) == {"gaussian", "moffat", "pixel"}


def test_psf_errors():
    with pytest.raises(ValueError, match="> 0"):
        GaussianPSF(t64(0.0))
    with pytest.raises(ValueError, match="NaN"):
        GaussianPSF(t64(float("nan")))
    with pytest.raises(ValueError, match="scalar, \\(C,\\) or \\(B, C\\)"):
        GaussianPSF(torch.ones(2, 3, 4))
    with pytest.raises(ValueError, match="beta"):
        MoffatPSF(t64(1.0), 0.8)
    with pytest.raises(ValueError, match="positive sum"):
        PixelPSF(torch.zeros(1, 5, 5))
    with pytest.raises(ValueError, match=r"\(B, C, h, w\)"):
        PixelPSF(torch.ones(5, 5))
    with pytest.raises(ValueError, match="unknown PSF model"):
        make_psf({"model": "airy", "fwhm_arcsec": 1.0})
    with pytest.raises(ValueError, match="unknown PSF model"):
        make_psf(1.0, kind="airy")


def test_convolve_errors():
    psf = GaussianPSF(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        convolve(torch.zeros(3, 10, 10), psf, 0.396)
    with pytest.raises(ValueError, match="broadcast"):
        convolve(torch.zeros(4, 3, 10, 10), psf, 0.396)
    images = torch.zeros(2, 3, 10, 10)
    images[0, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        convolve(images, psf, 0.396)
    with pytest.raises(ValueError, match="pixel_scale"):
        convolve(torch.zeros(2, 3, 10, 10), psf, -1.0)
    with pytest.raises(ValueError, match="psf must be"):
        convolve(torch.zeros(2, 3, 10, 10), 1.4, 0.396)
    with pytest.raises(ValueError, match=r"\(B, C, 6, H, W\)"):
        convolve_moments(torch.zeros(2, 3, 10, 10), psf, 0.396)


# --------------------------------------------------------------------------- gradients


def test_convolve_gradcheck():
    gen = torch.Generator().manual_seed(4)
    images = torch.rand(2, 1, 4, 5, dtype=F64, generator=gen).requires_grad_(True)
    fwhm = t64(0.8, 1.1).reshape(2, 1).requires_grad_(True)
    beta = t64(3.0).requires_grad_(True)
    for settings in (DEFAULT_SETTINGS, FFT):

        def gauss(img: torch.Tensor, f: torch.Tensor, s=settings) -> torch.Tensor:
            return convolve(img, GaussianPSF(f), 0.396, s)

        assert torch.autograd.gradcheck(gauss, (images, fwhm), fast_mode=True)

        def moment_gauss(m: torch.Tensor, f: torch.Tensor, s=settings) -> torch.Tensor:
            return convolve_moments(m, GaussianPSF(f), 0.396, s)

        moments = torch.rand(2, 1, 6, 4, 5, dtype=F64, generator=gen).requires_grad_(True)
        assert torch.autograd.gradcheck(moment_gauss, (moments, fwhm), fast_mode=True)

    def moffat(img: torch.Tensor, f: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return convolve(img, MoffatPSF(f, b), 0.396)

    assert torch.autograd.gradcheck(moffat, (images, fwhm, beta), fast_mode=True)


def test_float32_psf_gradients_finite():
    images = torch.rand(2, 5, 32, 32, requires_grad=True)
    fwhm = (1.0 + torch.rand(2, 5)).requires_grad_(True)
    out = convolve(images, GaussianPSF(fwhm), 0.396)
    out.square().sum().backward()
    assert torch.isfinite(images.grad).all() and torch.isfinite(fwhm.grad).all()
    assert (fwhm.grad != 0).all()


# --------------------------------------------------------------------------- central moments


def _central_case(margin: int = 0):
    """Random box totals and moment deviations on a 30 x 34 grid (box 5 x 5, away from edges)."""
    gen = torch.Generator().manual_seed(4)
    batch, bands, shape = 2, 3, (30, 34)
    central = torch.rand(batch, bands, 6, 5, 5, dtype=F64, generator=gen)
    central[:, :, 1:] = 0.05 * (central[:, :, 1:] - 0.5)
    row0, col0 = torch.tensor([11, 12]), torch.tensor([13, 14])
    totals = torch.zeros(batch, bands, *shape, dtype=F64)
    for b in range(batch):
        totals[b, :, row0[b] : row0[b] + 5, col0[b] : col0[b] + 5] = central[b, :, 0]
    psf = GaussianPSF(torch.tensor([[1.0, 1.3, 1.8]], dtype=F64))
    return totals, central, row0, col0, psf


def test_central_moments_equal_every_pixel_moments():
    """Algebraic identity: totals F on a box with moment deviations dM there are, for
    :func:`convolve_moments`, moments M1 = D F / 12 + dM1, M2 = F / 12 + dM2 on every pixel
    (the smooth part reaching one pixel past the box); both routes then agree to rounding."""
    totals, central, row0, col0, psf = _central_case()
    smooth_x = torch.zeros_like(totals)
    smooth_y = torch.zeros_like(totals)
    smooth_x[..., 1:-1] = 0.5 * (totals[..., 2:] - totals[..., :-2]) / 12.0
    smooth_y[..., 1:-1, :] = 0.5 * (totals[..., 2:, :] - totals[..., :-2, :]) / 12.0
    full = torch.stack(
        [totals, smooth_x, smooth_y, totals / 12.0, torch.zeros_like(totals), totals / 12.0], 2
    )
    for b in range(2):
        box = (slice(row0[b], row0[b] + 5), slice(col0[b], col0[b] + 5))
        full[b, :, 1:, box[0], box[1]] += central[b, :, 1:]
    ref = convolve_moments(full, psf, 1.0)
    out = convolve_central_moments(totals, central, row0, col0, psf, 1.0)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-12)


def test_central_moments_margin_crops():
    totals, central, row0, col0, psf = _central_case()
    whole = convolve_central_moments(totals, central, row0, col0, psf, 1.0)
    cropped = convolve_central_moments(totals, central, row0, col0, psf, 1.0, margin=4)
    assert cropped.shape == (2, 3, 22, 26)
    torch.testing.assert_close(cropped, whole[..., 4:-4, 4:-4], rtol=1e-12, atol=1e-14)


def test_central_moments_gradcheck_and_errors():
    totals, central, row0, col0, psf = _central_case()
    fwhm = psf.fwhm_arcsec.clone().requires_grad_(True)
    totals = totals[:1, :, 8:22, 9:25].clone().requires_grad_(True)
    central = central[:1].clone().requires_grad_(True)
    r0, c0 = row0[:1] - 8, col0[:1] - 9

    def f(t, c, w):
        return convolve_central_moments(t, c, r0, c0, GaussianPSF(w), 1.0, margin=2)

    assert torch.autograd.gradcheck(f, (totals, central, fwhm), fast_mode=True)
    with pytest.raises(ValueError, match="GaussianPSF"):
        convolve_central_moments(totals, central, r0, c0, MoffatPSF(fwhm.detach(), 3.0), 1.0)
    with pytest.raises(ValueError, match="central"):
        convolve_central_moments(totals, central[:, :, :5], r0, c0, psf, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        bad = totals.detach().clone()
        bad[0, 0, 0, 0] = float("nan")
        convolve_central_moments(bad, central, r0, c0, psf, 1.0)
    with pytest.raises(ValueError, match="margin"):
        convolve_central_moments(totals, central, r0, c0, psf, 1.0, margin=8)
