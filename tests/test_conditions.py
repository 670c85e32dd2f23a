"""Tests of SDSS-like observing conditions and the noise model (galae.data.conditions)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits

from galae.data.conditions import (
    SDSS_BAND_MODELS,
    SDSS_BANDS,
    SDSS_EXPOSURE_S,
    SDSS_LIMITING_MAG_5SIGMA,
    ConditionsConfig,
    ObservingConditions,
    add_noise,
    median_psf_fwhm_arcsec,
    point_source_depth_mag,
    sample_redshifts,
    sample_sdss_conditions,
    sky_sigma_nmgy_from_brightness,
)

DATA = Path(__file__).parent / "data" / "celeste_sdss"
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@pytest.fixture(scope="module")
def many() -> ObservingConditions:
    return sample_sdss_conditions(20000, np.random.default_rng(0))


def test_deterministic_per_seed() -> None:
    a = sample_sdss_conditions(50, np.random.default_rng(42))
    b = sample_sdss_conditions(50, np.random.default_rng(42))
    c = sample_sdss_conditions(50, np.random.default_rng(43))
    for name in ("psf_fwhm_arcsec", "sky_sigma_nmgy", "gain_e_per_nmgy", "redshift"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.psf_fwhm_arcsec, c.psf_fwhm_arcsec)
    assert not np.array_equal(a.redshift, c.redshift)


def test_shapes_and_band_subset() -> None:
    cond = sample_sdss_conditions(7, np.random.default_rng(0), bands=("r", "g"))
    assert cond.bands == ("r", "g") and cond.n == 7
    for arr in (cond.psf_fwhm_arcsec, cond.sky_sigma_nmgy, cond.gain_e_per_nmgy):
        assert arr.shape == (7, 2)
    assert cond.redshift.shape == (7,) and cond.pixel_scale_arcsec == 0.396
    np.testing.assert_allclose(cond.gain_e_per_nmgy[:, 0], SDSS_BAND_MODELS["r"].electrons_per_nmgy)
    sub = cond.subset([0, 3])
    np.testing.assert_array_equal(sub.psf_fwhm_arcsec, cond.psf_fwhm_arcsec[[0, 3]])
    with pytest.raises(ValueError, match=r"unknown SDSS bands \['y'\]"):
        sample_sdss_conditions(3, np.random.default_rng(0), bands=("g", "y"))
    with pytest.raises(ValueError, match="numpy.random.Generator"):
        sample_sdss_conditions(3, 0)  # type: ignore[arg-type]


def test_seeing_matches_published_statistics(many: ObservingConditions) -> None:
    fwhm = many.psf_fwhm_arcsec
    r = fwhm[:, SDSS_BANDS.index("r")]
    # Median r seeing: 1.32" (SDSS DR17 image-quality page) to 1.43" (DR1 fields, SDSS DR7
    # seeing page); we sample around the former.
    assert 1.30 <= np.median(r) <= 1.43
    # Quartile ratio of the DR1 fields: 1.58 / 1.30 = 1.215 (widened a little by the band jitter).
    q25, q75 = np.percentile(r, [25, 75])
    assert q75 / q25 == pytest.approx(1.58 / 1.30, rel=0.05)
    # u worse than r worse than z (Kolmogorov lambda^-1/5), bands of one field correlated.
    med = np.median(fwhm, axis=0)
    assert med[0] > med[1] > med[2] > med[3] > med[4]
    lam = np.array([SDSS_BAND_MODELS[b].effective_wavelength_angstrom for b in SDSS_BANDS])
    np.testing.assert_allclose(med / med[2], (lam / lam[2]) ** -0.2, rtol=0.01)
    corr = np.corrcoef(np.log(fwhm[:, 0]), np.log(r))[0, 1]
    assert corr > 0.85


def test_median_psf_is_the_median_of_the_sampled_seeing(many: ObservingConditions) -> None:
    # the PSF an encoder assumes when it is not told one: the sampled conditions' median per
    # band, to the sampling error of 20000 draws (the band jitter and the clip are symmetric
    # about it in ln FWHM, so the medians agree to ~1%)
    np.testing.assert_allclose(
        median_psf_fwhm_arcsec(), np.median(many.psf_fwhm_arcsec, axis=0), rtol=0.01
    )
    assert median_psf_fwhm_arcsec(("r",))[0] == pytest.approx(1.32)
    assert median_psf_fwhm_arcsec(("z", "u")).shape == (2,)
    with pytest.raises(ValueError, match=r"unknown SDSS bands \['y'\]"):
        median_psf_fwhm_arcsec(("g", "y"))


def test_sky_brightness_medians(many: ObservingConditions) -> None:
    med = np.median(many.sky_mag_per_arcsec2, axis=0)
    published = [22.01, 21.84, 20.84, 20.16, 18.96]  # SDSS DR17 image-quality page
    np.testing.assert_allclose(med, published, atol=0.02)
    spread = np.subtract(*np.percentile(many.sky_mag_per_arcsec2[:, 2], [75, 25]))
    assert spread == pytest.approx(21.03 - 20.70, abs=0.02)  # DR1 r-band quartiles


def test_sky_sigma_formula_by_hand() -> None:
    # mu = 22.5 mag/arcsec^2 on 1 arcsec^2 pixels is 1 nmgy per pixel: 1000 e- at 1000 e-/nmgy;
    # plus 500 e^2 dark variance: sigma = sqrt(1500) / 1000 nmgy.
    got = sky_sigma_nmgy_from_brightness(22.5, 1000.0, 500.0, 1.0)
    assert got == pytest.approx(math.sqrt(1500.0) / 1000.0, rel=1e-12)
    with pytest.raises(ValueError, match="electrons_per_nmgy"):
        sky_sigma_nmgy_from_brightness(22.5, 0.0, 0.0, 1.0)


def test_depth_identities() -> None:
    # Sky-limited: F_5 = 5 sigma sqrt(4 pi s^2) for a Gaussian PSF of sigma s pixels.
    s_pix = 2.0
    fwhm_arcsec = FWHM_PER_SIGMA * s_pix * 0.5
    depth = point_source_depth_mag(0.01, fwhm_arcsec, 0.5)
    flux = 5.0 * 0.01 * math.sqrt(4.0 * math.pi * s_pix**2)
    assert depth == pytest.approx(22.5 - 2.5 * math.log10(flux), abs=1e-12)
    # With source noise the flux solves F = 5 sqrt(sigma^2 N_eff + F / g).
    depth_g = point_source_depth_mag(0.01, fwhm_arcsec, 0.5, gain_e_per_nmgy=100.0)
    f = 10 ** (-0.4 * (depth_g - 22.5))
    n_eff = 4.0 * math.pi * s_pix**2
    assert f == pytest.approx(5.0 * math.sqrt(0.01**2 * n_eff + f / 100.0), rel=1e-12)
    assert depth_g < depth


def test_depths_match_published_5sigma_limits(many: ObservingConditions) -> None:
    depth = point_source_depth_mag(
        many.sky_sigma_nmgy, many.psf_fwhm_arcsec, many.pixel_scale_arcsec, many.gain_e_per_nmgy
    )
    med = np.median(depth, axis=0)
    # 5-sigma limiting magnitudes u 22.3, g 23.3, r 23.1, i 22.3, z 20.8 (York et al. 2000;
    # SDSS CAS SDSSConstants).  Measured medians: u 22.01, g 23.35, r 22.87, i 22.37, z 20.68.
    for k, band in enumerate(SDSS_BANDS):
        assert med[k] == pytest.approx(SDSS_LIMITING_MAG_5SIGMA[band], abs=0.3), band


def test_depth_of_real_sdss_stamp_matches_model() -> None:
    """5-sigma depth of the real r-band fixture (its ivar and PSF) vs the model median."""
    from galae.data.fits import mixture_fwhm_pix, sdss_psf_mixture

    with fits.open(DATA / "stamp-r-5.0073-0.0739.fits") as h:
        ivar, header = h[1].data.astype(float), h[0].header
    sigma = float(np.median(1.0 / np.sqrt(ivar[ivar > 0])))
    fwhm = mixture_fwhm_pix(sdss_psf_mixture(header), "effective") * 0.396
    real = point_source_depth_mag(sigma, fwhm, 0.396)
    model = np.median(
        point_source_depth_mag(
            *[
                getattr(sample_sdss_conditions(4000, np.random.default_rng(1), ("r",)), k)
                for k in ("sky_sigma_nmgy", "psf_fwhm_arcsec")
            ],
            0.396,
        )
    )
    assert real == pytest.approx(model, abs=0.5)


def test_detector_numbers_match_fixture_headers() -> None:
    """Electrons per nmgy, dark variance and sky of the SDSS fixture headers (epoch 0)."""
    for band in SDSS_BANDS:
        hd = fits.getheader(DATA / f"stamp-{band}-5.0073-0.0739.fits")
        model = SDSS_BAND_MODELS[band]
        assert hd["GAIN"] / hd["NMGY"] == pytest.approx(model.electrons_per_nmgy, rel=0.25)
        assert hd["DARKVAR"] * hd["GAIN"] ** 2 == pytest.approx(model.dark_variance_e2, rel=0.01)
        sky_mu = 22.5 - 2.5 * math.log10(hd["SKY"] * hd["NMGY"] / 0.396**2)
        assert sky_mu == pytest.approx(model.sky_mag_per_arcsec2, abs=0.5)


def test_electrons_per_nmgy_from_first_principles() -> None:
    """N_e = A t f_nu / h * int R(lambda) dlambda / lambda, for 1 nmgy = 3.631e-6 Jy.

    A = pi (1.25 m)^2 (1 - 0.27) (2.5 m mirror, 27 % obscured; Gunn et al. 1998), t = 53.9 s,
    R the Doi et al. (2010) response at airmass 1.3 (speclite "sdss2010").
    """
    filters = pytest.importorskip("speclite.filters")
    area_m2 = math.pi * 1.25**2 * (1.0 - 0.27)
    h_planck = 6.62607015e-34
    f_nu = 3.631e-6 * 1e-26  # W m^-2 Hz^-1
    for band in SDSS_BANDS:
        resp = filters.load_filter(f"sdss2010-{band}")
        lam = np.asarray(resp.wavelength)
        integral = np.trapezoid(np.asarray(resp.response) / lam, lam)
        electrons = area_m2 * SDSS_EXPOSURE_S * f_nu / h_planck * integral
        assert electrons == pytest.approx(SDSS_BAND_MODELS[band].electrons_per_nmgy, rel=0.15)
        assert resp.effective_wavelength.value == pytest.approx(
            SDSS_BAND_MODELS[band].effective_wavelength_angstrom, rel=1e-3
        )


def test_redshift_distributions() -> None:
    z = sample_redshifts(20000, np.random.default_rng(0))
    assert z.min() >= 0.01 and z.max() <= 0.25
    assert np.mean(z) == pytest.approx(0.13, abs=0.003)
    cfg = ConditionsConfig(redshift_distribution="volume")
    zv = sample_redshifts(20000, np.random.default_rng(0), cfg)
    assert zv.min() >= 0.01 and zv.max() <= 0.25
    # Euclidean limit dV/dz ~ z^2: median (0.25^3 / 2)^(1/3) = 0.198; cosmology lowers it a bit.
    assert 0.185 <= np.median(zv) <= 0.198
    with pytest.raises(ValueError, match="unknown redshift_distribution"):
        ConditionsConfig(redshift_distribution="log")


def test_add_noise_statistics_float64() -> None:
    gen = torch.Generator().manual_seed(0)
    model = torch.full((4, 2, 64, 64), 10.0, dtype=torch.float64)
    model[:, 1] = -5.0  # negative model: sky noise only
    sky = torch.tensor([0.05, 0.2], dtype=torch.float64)
    gain = torch.tensor([1000.0, 1000.0], dtype=torch.float64)
    noisy, sigma = add_noise(model, sky_sigma_nmgy=sky, gain_e_per_nmgy=gain, generator=gen)
    assert noisy.dtype == torch.float64 and noisy.shape == model.shape
    assert torch.allclose(
        sigma[:, 0], torch.tensor(math.sqrt(0.05**2 + 10.0 / 1000.0), dtype=torch.float64)
    )
    assert torch.allclose(sigma[:, 1], torch.tensor(0.2, dtype=torch.float64))
    pull = (noisy - model) / sigma
    assert abs(pull.mean().item()) < 0.02 and abs(pull.std().item() - 1.0) < 0.02


def test_add_noise_deterministic_and_with_conditions() -> None:
    cond = sample_sdss_conditions(3, np.random.default_rng(0))
    model = torch.rand(3, 5, 16, 16)
    a, sa = add_noise(model, cond, generator=123)
    b, _ = add_noise(model, cond, generator=torch.Generator().manual_seed(123))
    c, _ = add_noise(model, cond, generator=124)
    assert torch.equal(a, b) and not torch.equal(a, c)
    expected = torch.sqrt(
        torch.as_tensor(cond.sky_sigma_nmgy, dtype=torch.float32)[..., None, None] ** 2
        + model / torch.as_tensor(cond.gain_e_per_nmgy, dtype=torch.float32)[..., None, None]
    )
    torch.testing.assert_close(sa, expected)
    with pytest.raises(ValueError, match="conditions for 3 galaxies"):
        add_noise(model[:2], cond)
    with pytest.raises(ValueError, match="has 2 bands"):
        add_noise(model, sky_sigma_nmgy=torch.ones(2))
    with pytest.raises(ValueError, match="NaN"):
        add_noise(torch.full((1, 5, 4, 4), float("nan")), sky_sigma_nmgy=0.1)
    with pytest.raises(ValueError, match="not both"):
        add_noise(model, cond, sky_sigma_nmgy=0.1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_add_noise_on_cuda() -> None:
    model = torch.rand(2, 5, 8, 8, device="cuda")
    a, s = add_noise(
        model, sky_sigma_nmgy=torch.full((5,), 0.1), gain_e_per_nmgy=500.0, generator=1
    )
    b, _ = add_noise(
        model, sky_sigma_nmgy=torch.full((5,), 0.1), gain_e_per_nmgy=500.0, generator=1
    )
    assert a.device.type == "cuda" and s.device.type == "cuda" and torch.equal(a, b)


def test_add_noise_gradcheck() -> None:
    """noisy = m + sqrt(s^2 + m / g) eps is differentiable in m (fixed seed -> fixed eps)."""
    model = (torch.rand(1, 2, 3, 3, dtype=torch.float64) + 0.5).requires_grad_()
    sky = torch.tensor([0.3, 0.2], dtype=torch.float64)

    def f(m: torch.Tensor) -> torch.Tensor:
        return add_noise(m, sky_sigma_nmgy=sky, gain_e_per_nmgy=5.0, generator=7)[0]

    assert torch.autograd.gradcheck(f, (model,))
