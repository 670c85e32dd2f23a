"""Gas physics and the mock population: published relations and ranges."""

import pytest
import torch

from galae.latent import REGISTRY
from galae.physics import gas
from galae.physics.population import sample_population, shen03_r50_late_kpc


def test_kennicutt_schmidt_inversion():
    # Kennicutt (1998) eq. 4: Sigma_gas = 10 Msun/pc^2 gives a Salpeter-IMF Sigma_SFR of
    # 2.5e-4 * 10^1.4; galae's SFRs are Kroupa ones, 0.17 dex lower for the same light
    # (Kennicutt & Evans 2012, table 1: H-alpha log C 41.27 against Kennicutt's 41.10)
    assert gas.SALPETER_OVER_KROUPA_SFR == pytest.approx(10 ** (41.27 - 41.10), rel=1e-9)
    sfr = torch.tensor([2.5e-4 * 10**1.4 / gas.SALPETER_OVER_KROUPA_SFR], dtype=torch.float64)
    assert gas.gas_surface_density_msun_per_pc2(sfr).item() == pytest.approx(10.0, rel=1e-9)


def test_gas_laws_hold_face_on():
    """On the sky a disk of axis ratio q has its face-on surface densities over q: the gas is
    KS^-1(q Sigma_SFR) / q and HI saturates at 9 / q."""
    sfr = torch.tensor([1e-3, 1e-2, 1e-1], dtype=torch.float64)
    for q in (1.0, 0.5, 0.2):
        sky = gas.gas_surface_density_msun_per_pc2(sfr, q)
        face_on = gas.gas_surface_density_msun_per_pc2(q * sfr)
        torch.testing.assert_close(sky, face_on / q)
        hi = gas.hi_surface_density_msun_per_pc2(torch.tensor([1e4], dtype=torch.float64), q)
        assert hi.item() == pytest.approx(gas.HI_SATURATION_MSUN_PER_PC2 / q, rel=1e-6)


def test_gas_and_hi_masses_do_not_depend_on_inclination():
    """The renderer's gas and HI maps summed over the stamp: the same galaxy at 0, 60 and 80
    degrees holds the same gas (the laws applied on the sky gave 0.83 and 0.68 of the face-on
    mass at 60 and 80 degrees, and HI down to 0.48)."""
    from galae.latent import REGISTRY as R
    from galae.render.observation import Observation
    from galae.render.psf import GaussianPSF
    from galae.render.renderer import GalaxyRenderer

    renderer = GalaxyRenderer()
    masses = []
    for inc in (0.0, 60.0, 80.0):
        p = R.midpoint(1, torch.float64)
        p.update(
            inclination_deg=torch.tensor([inc], dtype=torch.float64),
            log10_sfr_msun_per_yr=torch.tensor([0.5], dtype=torch.float64),
            r_sfr_kpc=torch.tensor([3.0], dtype=torch.float64),
        )
        p = {k: v.float() for k, v in p.items()}
        obs = Observation(torch.tensor([0.05]), GaussianPSF(torch.ones(1, 5)), 0.396, (160, 160))
        maps = renderer.derived_and_maps(p, obs)[1]
        area_pc2 = maps.pixel_area_kpc2 * 1e6
        gas_mass = (maps.sigma_gas_msun_per_pc2.sum() * area_pc2).item()
        hi_mass = (maps.sigma_hi_msun_per_pc2.sum() * area_pc2).item()
        masses.append((gas_mass, hi_mass))
    for gas_mass, hi_mass in masses[1:]:
        assert gas_mass == pytest.approx(masses[0][0], rel=0.03)
        assert hi_mass == pytest.approx(masses[0][1], rel=0.03)


def test_hi_saturates():
    sg = torch.tensor([0.1, 1.0, 9.0, 100.0, 1000.0], dtype=torch.float64)
    hi = gas.hi_surface_density_msun_per_pc2(sg)
    assert hi[0].item() == pytest.approx(0.1, rel=1e-3)  # atomic at low density
    assert (hi <= sg).all()
    assert hi[-1].item() == pytest.approx(gas.HI_SATURATION_MSUN_PER_PC2, rel=1e-3)
    assert (hi[1:] >= hi[:-1]).all()


def test_gas_metallicity_profile_and_solar():
    r = torch.tensor([[0.0, 5.0, 100.0]])
    oh = gas.oh12_profile(torch.tensor([8.7]), torch.tensor([-0.05]), r)
    assert oh[0, 0].item() == pytest.approx(8.7)
    assert oh[0, 1].item() == pytest.approx(8.45)
    assert oh[0, 2].item() == pytest.approx(7.0)  # clamped
    assert gas.oh12_to_lg_zgas_zsun(torch.tensor(8.69)).item() == pytest.approx(0.0)


def test_shen03_size_at_1e10():
    # Shen et al. (2003) late types: R50 ~ 3 kpc at 1e10 Msun (their fig. 11)
    r = shen03_r50_late_kpc(torch.tensor(10.0, dtype=torch.float64)).item()
    assert 2.5 < r < 4.5


def test_population_in_range_deterministic_and_main_sequence():
    g = torch.Generator().manual_seed(3)
    p = sample_population(4000, g, dtype=torch.float64)
    REGISTRY.check(p)
    p2 = sample_population(4000, torch.Generator().manual_seed(3), dtype=torch.float64)
    assert all(torch.equal(p[k], p2[k]) for k in p)
    m = torch.log10(10 ** p["log10_mstar_bulge_msun"] + 10 ** p["log10_mstar_disk_msun"])
    ssfr = p["log10_sfr_msun_per_yr"] - m
    # bimodal: star-forming (log sSFR ~ -10) and quenched (< -11) both present
    assert ((ssfr > -10.5) & (ssfr < -9.0)).float().mean() > 0.25
    assert (ssfr < -11.0).float().mean() > 0.1


def test_population_dust_from_the_gas_law():
    """The "gas" dust law: A_V,0 = kappa Sigma_gas(SFR / (2 pi r_SFR^2)) Z_gas / Z_sun times
    10^(0.15 N(0, 1)), clipped into the registry; the galaxies' other latents do not depend on
    the law (the same draws), and the default is the first, empirical law."""
    import math

    from galae.physics import dust
    from galae.physics.population import (
        DEFAULT_POPULATION_DUST,
        DUST_TO_GAS_SCATTER_DEX,
        POPULATION_DUST,
        DustDraw,
        check_population_dust,
        gas_av_face_on_mag,
    )

    g = torch.Generator().manual_seed(7)
    first = sample_population(3000, g, dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    from_gas = sample_population(3000, g, dtype=torch.float64, population_dust="gas")
    g = torch.Generator().manual_seed(7)
    default = sample_population(3000, g, dtype=torch.float64)
    assert DEFAULT_POPULATION_DUST == "empirical" and set(POPULATION_DUST) == {"empirical", "gas"}
    for k in first:
        assert torch.equal(first[k], default[k])
        if k != "av_face_on_mag":
            assert torch.equal(first[k], from_gas[k]), k
    # the law itself, at the scatter's centre (normal = 0): a Milky-Way-like disk
    one = torch.ones(1, dtype=torch.float64)
    sfr, r_sfr, oh = 1.5, 3.5, 8.69
    draw = DustDraw(one > 0, math.log10(sfr) * one, r_sfr * one, oh * one, one, 0 * one)
    av = gas_av_face_on_mag(draw)
    sigma_sfr0 = sfr / (2 * math.pi * r_sfr**2)
    sigma_gas0 = (sigma_sfr0 * gas.SALPETER_OVER_KROUPA_SFR / gas.KS_A_MSUN_PER_YR_PER_KPC2) ** (
        1 / gas.KS_N
    )
    assert float(av) == pytest.approx(dust.AV_PER_GAS_MSUN_PC2 * sigma_gas0, rel=1e-9)
    assert 0.5 < float(av) < 3.0  # central face-on A_V of a Milky-Way-like disk
    # dustier than the first law, quenched galaxies (1.2 dex below the main sequence) less dusty
    # than star-forming ones by their lower SFR densities, all inside the registry
    av_gas, av_first = from_gas["av_face_on_mag"], first["av_face_on_mag"]
    assert float(av_gas.median()) > 3 * float(av_first.median())
    lg_m = torch.log10(
        10 ** from_gas["log10_mstar_bulge_msun"] + 10 ** from_gas["log10_mstar_disk_msun"]
    )
    quenched = from_gas["log10_sfr_msun_per_yr"] < 0.76 * lg_m - 7.64 - 1.2
    assert float(av_gas[quenched].median()) < 0.5 * float(av_gas[~quenched].median())
    p = REGISTRY["av_face_on_mag"]
    assert float(av_gas.min()) >= p.low and float(av_gas.max()) <= p.high
    assert DUST_TO_GAS_SCATTER_DEX == 0.15
    with pytest.raises(ValueError, match="unknown population_dust 'smooth'"):
        check_population_dust("smooth")
    with pytest.raises(ValueError, match="population_dust"):
        sample_population(4, population_dust="smooth")
