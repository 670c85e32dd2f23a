"""Tests of galae.physics.cosmology against astropy's Planck18 and analytic identities."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.cosmology import Planck18

from galae.physics import cosmology as cosmo

Z_TEST = np.concatenate(
    [[1e-4, 1e-3, 0.0123, 0.1, 0.6], np.random.default_rng(0).uniform(0, 10, 40)]
)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (cosmo.luminosity_distance_mpc, lambda z: Planck18.luminosity_distance(z).to_value("Mpc")),
        (
            cosmo.angular_diameter_distance_mpc,
            lambda z: Planck18.angular_diameter_distance(z).to_value("Mpc"),
        ),
        (
            cosmo.transverse_comoving_distance_mpc,
            lambda z: Planck18.comoving_transverse_distance(z).to_value("Mpc"),
        ),
        (cosmo.distance_modulus_mag, lambda z: Planck18.distmod(z).to_value("mag")),
        (
            cosmo.kpc_per_arcsec,
            lambda z: 1.0 / Planck18.arcsec_per_kpc_proper(z).to_value("arcsec/kpc"),
        ),
        (cosmo.age_of_universe_gyr, lambda z: Planck18.age(z).to_value("Gyr")),
    ],
)
def test_matches_astropy_to_1e4(ours, theirs) -> None:
    got = ours(torch.as_tensor(Z_TEST, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, theirs(Z_TEST), rtol=1e-4)


def test_published_and_limiting_values() -> None:
    z0 = torch.zeros(1, dtype=torch.float64)
    # Planck Collaboration (2020, A&A 641, A6, table 2, last column): age 13.787 +- 0.020 Gyr
    assert float(cosmo.age_of_universe_gyr(z0)) == pytest.approx(13.787, abs=0.02)
    assert float(cosmo.luminosity_distance_mpc(z0)) == 0.0
    assert float(cosmo.kpc_per_arcsec(z0)) == 0.0
    # Hubble law at low z: d_L = c z / H0 (1 + (1 - q0) z / 2 + ...), H0 = 67.66 km/s/Mpc
    z = 1e-3
    d_l = float(cosmo.luminosity_distance_mpc(torch.tensor([z], dtype=torch.float64)))
    assert d_l == pytest.approx(299792.458 * z / 67.66, rel=1e-3)


def test_distance_duality_and_dtype_shape() -> None:
    z = torch.rand(3, 4, dtype=torch.float64) * 3 + 0.01
    d_l = cosmo.luminosity_distance_mpc(z)
    d_a = cosmo.angular_diameter_distance_mpc(z)
    # Etherington (1933) reciprocity: d_L = (1 + z)^2 d_A
    torch.testing.assert_close(d_l, (1 + z) ** 2 * d_a, rtol=1e-12, atol=0)
    dm = cosmo.distance_modulus_mag(z)
    torch.testing.assert_close(dm, 5 * torch.log10(d_l * 1e5), rtol=1e-12, atol=0)
    z32 = torch.tensor([0.1, 0.2])
    for fn in (cosmo.luminosity_distance_mpc, cosmo.distance_modulus_mag, cosmo.kpc_per_arcsec):
        out = fn(z32)
        assert out.dtype == torch.float32 and out.shape == (2,)


def test_gradients() -> None:
    z = torch.tensor([0.0513, 0.3771, 1.2349, 4.0001], dtype=torch.float64, requires_grad=True)
    for fn in (
        cosmo.luminosity_distance_mpc,
        cosmo.angular_diameter_distance_mpc,
        cosmo.distance_modulus_mag,
        cosmo.kpc_per_arcsec,
        cosmo.age_of_universe_gyr,
    ):
        assert torch.autograd.gradcheck(fn, (z,), eps=1e-7, atol=1e-5)
    # d d_L / dz at z -> 0 is the Hubble distance c / H0
    z_small = torch.tensor([1e-5], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(cosmo.luminosity_distance_mpc(z_small).sum(), z_small)
    assert float(g) == pytest.approx(299792.458 / 67.66, rel=1e-3)


def test_errors() -> None:
    with pytest.raises(ValueError, match="> 0"):
        cosmo.distance_modulus_mag(torch.tensor([0.0, 0.1]))
    with pytest.raises(ValueError, match=">= 0"):
        cosmo.luminosity_distance_mpc(torch.tensor([-0.1]))
    with pytest.raises(ValueError, match="<= 10"):
        cosmo.kpc_per_arcsec(torch.tensor([12.0]))
    with pytest.raises(ValueError, match="NaN"):
        cosmo.age_of_universe_gyr(torch.tensor([float("nan")]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_gpu() -> None:
    z = torch.tensor([0.1, 0.5], device="cuda")
    assert cosmo.distance_modulus_mag(z).device.type == "cuda"
