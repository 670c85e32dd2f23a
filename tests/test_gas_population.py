"""Gas physics and the mock population: published relations and ranges."""

import pytest
import torch

from galae.latent import REGISTRY
from galae.physics import gas
from galae.physics.population import sample_population, shen03_r50_late_kpc


def test_kennicutt_schmidt_inversion():
    # Kennicutt (1998) eq. 4: Sigma_gas = 10 Msun/pc^2 gives Sigma_SFR = 2.5e-4 * 10^1.4
    sfr = torch.tensor([2.5e-4 * 10**1.4], dtype=torch.float64)
    assert gas.gas_surface_density_msun_per_pc2(sfr).item() == pytest.approx(10.0, rel=1e-9)


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
