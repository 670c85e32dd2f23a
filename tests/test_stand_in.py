"""Stand-in bands for the encoder (galae.data.stand_in): the plan, and exactness on power-law
spectra, where interpolation in log wavelength is exact."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import galae
from galae.data.stand_in import STAND_IN_NOISE_FACTOR, stand_in_bands, stand_in_plan

F64 = torch.float64
#: SDSS effective wavelengths (Angstrom, speclite sdss2010), rounded
WAVE = (3614.4, 4749.2, 6205.8, 7525.6, 8947.4)
LG = [math.log(w) for w in WAVE]


def test_plan_keeps_the_trained_number_missing() -> None:
    # grz: u kept missing (outside the range), i interpolated from r and z
    ((b, lo, hi, t),) = stand_in_plan([True, False, False, True, False], LG, 1)
    assert (b, lo, hi) == (3, 2, 4) and 0 < t < 1
    assert t == pytest.approx((LG[3] - LG[2]) / (LG[4] - LG[2]))
    # gri: u and z both outside; u (bluest) kept, z extrapolated from r and i
    ((b, lo, hi, t),) = stand_in_plan([True, False, False, False, True], LG, 1)
    assert (b, lo, hi) == (4, 2, 3) and t > 1
    # riz: u kept, g extrapolated from r and i below it
    ((b, lo, hi, t),) = stand_in_plan([True, True, False, False, False], LG, 1)
    assert (b, lo, hi) == (1, 2, 3) and t < 0
    # nothing beyond what the encoder was trained without, or too few bands left
    assert stand_in_plan([True, False, False, False, False], LG, 1) == []
    assert stand_in_plan([False] * 5, LG, 0) == []
    assert stand_in_plan([True, True, True, True, False], LG, 1) == []
    # an encoder trained without missing bands gets a stand-in for every one
    assert [p[0] for p in stand_in_plan([True, False, False, True, False], LG, 0)] == [0, 3]


def _power_law_batch(beta: float, gone: list[int]) -> tuple[torch.Tensor, ...]:
    """Two galaxies of one shape in every band, flux proportional to lambda^beta."""
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    shape = torch.exp(-((yy - 7.5) ** 2 + (xx - 7.0) ** 2) / 8.0).to(F64)
    flux = torch.tensor([(w / 6000.0) ** beta for w in WAVE], dtype=F64)
    amplitude = torch.tensor([1.0, 3.0], dtype=F64).view(2, 1, 1, 1)
    images = amplitude * flux.view(1, 5, 1, 1) * shape
    truth = images.clone()
    sigma = torch.full_like(images, 1e-3)
    mask = torch.zeros_like(images, dtype=torch.bool)
    mask[:, gone] = True
    images[:, gone] = 0.0
    psf = torch.tensor([1.5, 1.4, 1.3, 1.2, 1.1], dtype=F64).expand(2, 5).clone()
    return images, sigma, mask, psf, truth


@pytest.mark.parametrize("gone", [[0, 3], [0, 4], [0, 1], [0, 3, 4]])
@pytest.mark.parametrize("beta", [-1.5, 0.0, 2.0])
def test_power_law_spectra_are_stood_in_exactly(gone: list[int], beta: float) -> None:
    images, sigma, mask, psf, truth = _power_law_batch(beta, gone)
    si = stand_in_bands(images, sigma, mask, psf, WAVE, keep_missing=1)
    assert si.stood_in[:, 0].eq(False).all()  # u stays missing
    assert si.mask[:, 0].all() and (si.images[:, 0] == 0).all()
    for b in gone[1:]:
        assert si.stood_in[:, b].all() and not si.mask[:, b].any()
        torch.testing.assert_close(si.images[:, b], truth[:, b], rtol=1e-10, atol=1e-14)
    for b in range(5):
        if b not in gone:  # bands that are there pass through untouched
            assert torch.equal(si.images[:, b], images[:, b])
            assert torch.equal(si.sigma[:, b], sigma[:, b])


def test_noise_psf_and_mask_of_a_stand_in() -> None:
    images, sigma, mask, psf, _ = _power_law_batch(0.0, [0, 3])
    mask[0, 2, 3, 4] = True  # a masked pixel of r: the stand-in for i is masked there
    images[0, 2, 3, 4] = 0.0
    si = stand_in_bands(images, sigma, mask, psf, WAVE, keep_missing=1, noise_factor=2.0)
    t = (LG[3] - LG[2]) / (LG[4] - LG[2])
    # flat f_nu: R = 1, weights 1 - t and t, noise 2 sqrt((1-t)^2 + t^2) sigma
    expect = 2.0 * math.sqrt((1 - t) ** 2 + t**2) * 1e-3
    assert si.sigma[1, 3].sub(expect).abs().max() < 1e-12
    assert si.mask[0, 3, 3, 4] and si.mask[0, 3].sum() == 1 and not si.mask[1, 3].any()
    torch.testing.assert_close(si.psf_fwhm_arcsec[:, 3], (1 - t) * psf[:, 2] + t * psf[:, 4])
    assert STAND_IN_NOISE_FACTOR == 3.0


def test_faint_galaxies_take_a_flat_colour() -> None:
    images, sigma, mask, psf, _ = _power_law_batch(2.0, [0, 3])
    images[:, 4] *= -1.0  # a negative z flux fixes no colour
    si = stand_in_bands(images, sigma, mask, psf, WAVE, keep_missing=1)
    t = (LG[3] - LG[2]) / (LG[4] - LG[2])
    expect = (1 - t) * images[:, 2] + t * images[:, 4]  # R = 1
    torch.testing.assert_close(si.images[:, 3], expect)


def test_bad_arguments() -> None:
    images, sigma, mask, psf, _ = _power_law_batch(0.0, [0, 3])
    with pytest.raises(ValueError, match="5 increasing wavelengths"):
        stand_in_bands(images, sigma, mask, psf, WAVE[:4], keep_missing=1)
    with pytest.raises(ValueError, match="5 increasing wavelengths"):
        stand_in_bands(images, sigma, mask, psf, WAVE[::-1], keep_missing=1)
    with pytest.raises(ValueError, match="noise_factor"):
        stand_in_bands(images, sigma, mask, psf, WAVE, keep_missing=1, noise_factor=0.0)


def test_encode_reads_grz_with_stand_ins() -> None:
    """The packaged model on grz draws of its own population: the stand-ins bring the
    amortized r magnitude from about 0.5 mag off to about 0.15 (benchmarks/missing_bands.py)."""
    m = galae.load()
    s = m.sample(n=24, seed=11)
    images = s.images.clone()
    images[:, [0, 3]] = float("nan")
    kw = {"psf_fwhm_arcsec": s.psf_fwhm_arcsec, "redshift": s.redshift, "n_mc_derived": 4}
    err = {}
    for flag in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = m.encode(images, s.sigma, stand_in_bands=flag, **kw)
        err[flag] = float((post.params["mag_r"] - s.params["mag_r"]).abs().median())
    assert err[True] < 0.3 < err[False]
    assert m.band_wavelengths_aa == pytest.approx(WAVE, abs=0.1)
