"""PSFs given as images: their Gaussian-equivalent FWHM, the point-source image of a PSF model,
and ``encode`` / ``analogues`` with ``psf_image`` (the likelihood convolves with the image)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import galae
from galae.data.conditions import add_noise, sample_sdss_conditions
from galae.model import Batch
from galae.physics.population import sample_population
from galae.render.observation import Observation
from galae.render.psf import (
    GaussianPSF,
    MoffatPSF,
    PixelPSF,
    gaussian_equivalent_fwhm_arcsec,
    point_source_image,
)
from galae.render.renderer import GalaxyRenderer
from galae.sampling import _flipped

SCALE = 0.396


def moffat_r50_over_fwhm(beta: float) -> float:
    """Half-light radius / FWHM of a Moffat profile (Moffat 1969; Trujillo et al. 2001, eqs. 4
    and 7): FWHM = 2 alpha sqrt(2^(1/beta) - 1), r50 = alpha sqrt(2^(1/(beta - 1)) - 1)."""
    return math.sqrt(2 ** (1 / (beta - 1)) - 1) / (2 * math.sqrt(2 ** (1 / beta) - 1))


# ---------------------------------------------------------------------------------- the helpers
@pytest.mark.parametrize("side", [41, 40])
def test_a_gaussian_is_its_own_equivalent(side: int) -> None:
    fwhm = torch.tensor([[0.7, 1.0, 1.4, 2.0, 3.0]], dtype=torch.float64)
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2))) / SCALE  # pixels
    lag = torch.arange(side, dtype=torch.float64) - 0.5 * (side - 1)
    # the pixel response of a Gaussian about the geometric centre (odd and even sides)
    phi = torch.special.ndtr
    k = phi((lag + 0.5) / sigma[..., None]) - phi((lag - 0.5) / sigma[..., None])
    image = k[..., :, None] * k[..., None, :]
    got = gaussian_equivalent_fwhm_arcsec(image, SCALE)
    torch.testing.assert_close(got, fwhm, rtol=2e-3, atol=0.0)


@pytest.mark.parametrize("beta", [2.5, 3.5, 4.765])
def test_a_moffat_has_the_fwhm_of_twice_its_half_light_radius(beta: float) -> None:
    """A Gaussian's half-light radius is FWHM / 2, so the equivalent FWHM of a Moffat is twice
    its r50: 1.36, 1.21, 1.14 times its FWHM for beta 2.5, 3.5, 4.765; to 2% for PSFs of 2.5-7
    pixels (pixelisation and the kernel's truncation at 1e-4 of the light)."""
    fwhm = torch.tensor([[1.0, 1.4, 2.0, 2.6]], dtype=torch.float64)
    image = point_source_image(MoffatPSF(fwhm, beta), SCALE, 61)
    ratio = gaussian_equivalent_fwhm_arcsec(image, SCALE) / fwhm
    expected = 2 * moffat_r50_over_fwhm(beta)
    torch.testing.assert_close(ratio, torch.full_like(ratio, expected), rtol=0.02, atol=0.0)


def test_equivalent_fwhm_refuses_a_stamp_too_small_for_its_psf() -> None:
    wide = point_source_image(GaussianPSF(torch.tensor([[8.0]])), SCALE, 11)
    with pytest.raises(ValueError, match="larger PSF image"):
        gaussian_equivalent_fwhm_arcsec(wide, SCALE)


@pytest.mark.parametrize("psf", [GaussianPSF(torch.tensor([[1.2, 1.6]])), "moffat"])
def test_point_source_image_sums_to_one_and_renders_like_its_model(psf) -> None:
    fwhm = torch.full((4, 5), 1.3)
    model = MoffatPSF(fwhm, 3.0) if psf == "moffat" else GaussianPSF(fwhm)
    image = point_source_image(model, SCALE, 45)
    torch.testing.assert_close(image.sum((-2, -1)), torch.ones(4, 5, dtype=image.dtype))
    # symmetric about the centre pixel
    torch.testing.assert_close(image, image.flip(-1))
    torch.testing.assert_close(image, image.flip(-2))
    with pytest.raises(ValueError, match="odd"):
        point_source_image(model, SCALE, 44)
    if psf != "moffat":
        return
    # the renderer through the image equals the renderer through the model (same code path)
    params = sample_population(4, torch.Generator().manual_seed(3))
    z = torch.full((4,), 0.1)
    r = GalaxyRenderer()
    a = r(params, Observation(z, model, SCALE, (48, 48))).images
    b = r(params, Observation(z, PixelPSF(image), SCALE, (48, 48))).images
    peak = a.amax((-2, -1), keepdim=True)
    assert float(((a - b).abs() / peak).max()) < 1e-3


# ------------------------------------------------------------------------------------- encode
@pytest.fixture(scope="module")
def moffat_galaxies() -> dict[str, np.ndarray]:
    """Four population galaxies under SDSS conditions, seen through a Moffat PSF (beta 2.5)."""
    n = 4
    params = sample_population(n, torch.Generator().manual_seed(11))
    cond = sample_sdss_conditions(n, np.random.default_rng(5))
    fwhm = torch.as_tensor(cond.psf_fwhm_arcsec)
    moffat = MoffatPSF(fwhm, 2.5)
    z = torch.tensor([0.07, 0.1, 0.12, 0.15])  # SDSS's; the draws' 0.01 are too near for a test
    with torch.no_grad():
        clean = GalaxyRenderer()(params, Observation(z, moffat, SCALE, (64, 64))).images
    noisy, sigma = add_noise(clean, cond, generator=2)
    return {
        "images": noisy.numpy(),
        "sigma": sigma.numpy(),
        "redshift": z.numpy(),
        "fwhm": fwhm.numpy(),
        "psf_image": point_source_image(moffat, SCALE, 41).numpy(),
    }


def test_encode_with_a_psf_image_fits_through_it(moffat_galaxies) -> None:
    """Told the PSF image, the likelihood convolves with it: the model images of the same
    posterior means fit the Moffat-PSF data better than the Gaussian of its FWHM does, and the
    encoder is told the image's Gaussian-equivalent FWHM."""
    d = moffat_galaxies
    m = galae.load()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        by_image = m.encode(
            d["images"], d["sigma"], psf_image=d["psf_image"], redshift=d["redshift"],
            refine_steps=60, n_mc_derived=2,
        )  # fmt: skip
        by_fwhm = m.encode(
            d["images"], d["sigma"], psf_fwhm_arcsec=d["fwhm"], redshift=d["redshift"],
            refine_steps=60, n_mc_derived=2,
        )  # fmt: skip
    assert by_image._batch.psf_image is not None and by_fwhm._batch.psf_image is None
    equivalent = gaussian_equivalent_fwhm_arcsec(torch.as_tensor(d["psf_image"]), SCALE)
    torch.testing.assert_close(by_image._batch.psf_fwhm_arcsec, equivalent.float())
    assert bool((equivalent > 1.3 * torch.as_tensor(d["fwhm"])).all())  # the wings count
    # the image's fit is as good as a fit can be at this noise; the Gaussian's is worse
    chi2_image, chi2_fwhm = by_image.chi2_per_pixel, by_fwhm.chi2_per_pixel
    assert float(chi2_image.median()) < float(chi2_fwhm.median())
    assert float(chi2_image.max()) < 1.1, chi2_image


def test_psf_image_errors_name_the_problem(moffat_galaxies) -> None:
    d = moffat_galaxies
    m = galae.load()
    images, sigma, psf = d["images"], d["sigma"], d["psf_image"]
    with pytest.raises(ValueError, match="not both"):
        m.encode(images, sigma, psf_image=psf, psf_fwhm_arcsec=d["fwhm"])
    bad = psf.copy()
    bad[0, 2, 5, 5] = np.nan
    with pytest.raises(ValueError, match="psf_image holds NaN"):
        m.encode(images, sigma, psf_image=bad)
    with pytest.raises(ValueError, match=r"psf_image must be \(N, C, h, w\)"):
        m.encode(images, sigma, psf_image=psf[:, :4])
    with pytest.raises(ValueError, match="positive light"):
        m.encode(images, sigma, psf_image=np.zeros_like(psf))
    with pytest.raises(ValueError, match="at least 3 x 3"):
        m.encode(images, sigma, psf_image=psf[..., 19:21, 19:21])


def test_mirrored_stamps_have_mirrored_psfs() -> None:
    img = torch.arange(2 * 5 * 8 * 8, dtype=torch.float32).reshape(2, 5, 8, 8)
    psf = torch.rand(2, 5, 7, 7, generator=torch.Generator().manual_seed(0))
    b = Batch(
        img, torch.ones_like(img), torch.zeros_like(img, dtype=torch.bool),
        torch.ones(2, 5), torch.full((2,), 0.1), SCALE, tuple("ugriz"), torch.arange(2),
        psf_image=psf,
    )  # fmt: skip
    f = _flipped(b, True, False)
    torch.testing.assert_close(f.psf_image, psf.flip(-1))
    assert isinstance(f.observation().psf, PixelPSF)
    assert isinstance(Batch(**{**b.__dict__, "psf_image": None}).observation().psf, GaussianPSF)


def test_analogues_are_drawn_on_the_image_pixels_and_psf(moffat_galaxies) -> None:
    """The analogues of a stamp are rendered at its own pixel scale (a DECaLS stamp's galaxy is
    as many pixels across in the analogues as in the posterior's model image) and through its
    PSF image."""
    m = galae.load()
    kw = {"flux": 60.0, "r_half_major_arcsec": 2.0, "sersic_n": 1.0, "q": 0.7, "pa_deg": 0.0}
    one = galae.render_profile("sersic", shape=(96, 96), pixel_scale_arcsec=0.262, **kw)
    image = one.expand(5, 96, 96) * torch.tensor([0.3, 0.6, 1.0, 1.3, 1.5]).view(5, 1, 1)
    sigma = torch.full_like(image, 0.03)
    args = {"psf_fwhm_arcsec": 1.3, "redshift": 0.05, "pixel_scale_arcsec": 0.262}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = m.encode(image[None], sigma[None], n_mc_derived=2, **args)
        a = m.analogues(image, sigma, n=8, **args)

    def size_pix(x: torch.Tensor) -> torch.Tensor:
        """Light-weighted rms radius about the stamp's centre, pixels, of the r band."""
        r = x[..., 2, :, :].clamp_min(0)
        yy, xx = torch.meshgrid(torch.arange(96.0) - 47.5, torch.arange(96.0) - 47.5, indexing="ij")
        return torch.sqrt((r * (xx**2 + yy**2)).sum((-2, -1)) / r.sum((-2, -1)))

    ratio = size_pix(a.model_images).median() / size_pix(post.model_images)[0]
    assert 0.8 < float(ratio) < 1.25  # at the model's 0.396" pixels it would be 0.66
    # and through the PSF image when one is given
    d = moffat_galaxies
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        b = m.analogues(
            d["images"][0], d["sigma"][0], n=2, psf_image=d["psf_image"][0], redshift=0.06
        )
    assert b.images.shape == (2, 5, 64, 64)
