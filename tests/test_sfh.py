"""The disk's older-than-100 Myr star-formation history (galae.physics.sfh) and its light."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from galae.physics import cosmology, sfh
from galae.physics.sps import SPSTable


@pytest.fixture(scope="module")
def sps64() -> SPSTable:
    return SPSTable.load(dtype=torch.float64)


def test_mean_fraction_series_and_closed_form_agree_and_are_monotonic() -> None:
    k = torch.linspace(-60.0, 60.0, 2401, dtype=torch.float64)
    m = sfh.tau_mean_fraction(k)
    assert bool((m[1:] > m[:-1]).all())
    assert sfh.tau_mean_fraction(torch.zeros(1, dtype=torch.float64)).item() == 0.5
    # closed form vs direct quadrature of u p(u) du
    for kappa in (-20.0, -3.0, -0.3, 0.2, 0.49, 0.51, 4.0, 25.0):
        num, _ = integrate.quad(lambda u, k=kappa: u * math.exp(k * u), 0.0, 1.0)
        den, _ = integrate.quad(lambda u, k=kappa: math.exp(k * u), 0.0, 1.0)
        got = sfh.tau_mean_fraction(torch.tensor(kappa, dtype=torch.float64)).item()
        assert got == pytest.approx(num / den, abs=1e-10)


def test_shape_solves_for_the_mean_with_the_implicit_gradient() -> None:
    f = torch.tensor([0.003, 0.05, 0.3, 0.4999, 0.5, 0.5001, 0.7, 0.99], dtype=torch.float64)
    f.requires_grad_(True)
    k = sfh.tau_shape_from_mean_fraction(f)
    assert torch.allclose(sfh.tau_mean_fraction(k), f, atol=1e-12)
    (g,) = torch.autograd.grad(k.sum(), f)
    eps = 1e-6
    fd = (
        sfh.tau_shape_from_mean_fraction(f.detach() + eps)
        - sfh.tau_shape_from_mean_fraction(f.detach() - eps)
    ) / (2 * eps)
    assert torch.allclose(g, fd, rtol=1e-5)


def test_float32_gradient_is_smooth_through_constant_star_formation() -> None:
    """kappa = 0 (mean age = the middle of the span) is where both the series and the closed
    forms meet: d(mean age of the grid weights)/d(age) stays 1 within the grid's 0.3%."""
    grid = SPSTable.load().lg_age_gyr_grid
    ages = torch.tensor([0.2, 3.0, 6.5, 6.94, 6.95, 6.96, 7.5, 9.0], requires_grad=True)
    hist = sfh.tau_history(ages, torch.full((8,), 13.8))
    w = sfh.age_grid_mass_fractions(hist, grid)
    (w * 10.0**grid).sum().backward()
    assert ages.grad is not None
    assert torch.allclose(ages.grad, torch.ones(8), atol=0.01)


@pytest.mark.parametrize("mean_age", [0.15, 0.5, 2.0, 6.0, 9.0, 12.5])
def test_grid_weights_sum_to_one_and_keep_the_mean_age(sps64: SPSTable, mean_age: float) -> None:
    a = torch.tensor([mean_age], dtype=torch.float64)
    hist = sfh.tau_history(a, torch.tensor([13.8], dtype=torch.float64))
    assert hist.mean_age_gyr.item() == pytest.approx(mean_age, rel=1e-10)
    w = sfh.age_grid_mass_fractions(hist, sps64.lg_age_gyr_grid)
    assert w.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert bool((w >= 0).all())
    ages = 10.0**sps64.lg_age_gyr_grid
    assert w[0, ages < 0.1 / 10**0.025].sum().item() == 0.0  # nothing younger than 100 Myr
    assert w[0, ages > 13.8 * 10**0.025].sum().item() == 0.0  # nor older than the universe
    assert (w[0] * ages).sum().item() == pytest.approx(mean_age, rel=0.01)


def test_constant_star_formation_is_flat_in_age(sps64: SPSTable) -> None:
    t0, t_max = sfh.OLD_MIN_AGE_GYR, 10.0
    hist = sfh.tau_history(torch.tensor([0.5 * (t0 + t_max)]), torch.tensor([t_max]))
    assert abs(hist.kappa.item()) < 1e-6
    ages = torch.tensor([[1.0, 2.5, 7.0]])
    assert torch.allclose(hist.cdf(ages), (ages - t0) / (t_max - t0), atol=1e-6)


def test_composite_flux_equals_the_integral_of_ssp_fluxes(sps64: SPSTable) -> None:
    """The composite on the 0.05 dex grid against a 4000-point quadrature of p(t) f_ssp(t)
    (the table interpolated log-linearly in age): within 1% in every band."""
    z = torch.tensor([0.08], dtype=torch.float64)
    t_max = cosmology.age_of_universe_gyr(z)
    for mean_age in (0.4, 2.0, 5.0, 9.0):
        hist = sfh.tau_history(torch.tensor([mean_age], dtype=torch.float64), t_max)
        w = sfh.age_grid_mass_fractions(hist, sps64.lg_age_gyr_grid)
        comp = sps64.composite_flux_nmgy_per_msun(z, w, torch.tensor([-0.2], dtype=torch.float64))
        edges = torch.linspace(sfh.OLD_MIN_AGE_GYR, float(t_max), 4001, dtype=torch.float64)
        mid = 0.5 * (edges[1:] + edges[:-1])
        mass = hist.cdf(edges.unsqueeze(0))[0].diff()
        f = sps64.ssp_flux_nmgy_per_msun(
            z, torch.log10(mid).unsqueeze(0), torch.full((1, 4000), -0.2, dtype=torch.float64)
        )[0]  # (C, 4000)
        want = (f * mass).sum(-1) / mass.sum()
        assert torch.allclose(comp[0], want, rtol=0.01), mean_age


def test_oldest_histories_tend_to_a_single_population(sps64: SPSTable) -> None:
    """A mean age at the age of the universe is a burst at T: the composite is that SSP."""
    z = torch.tensor([0.1], dtype=torch.float64)
    t_max = cosmology.age_of_universe_gyr(z)
    hist = sfh.tau_history(t_max * 0.9999, t_max)
    w = sfh.age_grid_mass_fractions(hist, sps64.lg_age_gyr_grid)
    comp = sps64.composite_flux_nmgy_per_msun(z, w, 0.0)
    ssp = sps64.ssp_flux_nmgy_per_msun(z, torch.log10(t_max), 0.0)
    assert torch.allclose(comp, ssp, rtol=0.03)


def test_composite_disk_is_bluer_than_one_age(sps64: SPSTable) -> None:
    """The point of the history: at the same mean age, stars spread over 0.1-13 Gyr are bluer
    in u - r than one population of that age (young stars outshine old ones per unit mass)."""
    z = torch.tensor([0.05], dtype=torch.float64)
    t_max = cosmology.age_of_universe_gyr(z)
    for mean_age in (1.0, 3.0, 6.0):
        a = torch.tensor([mean_age], dtype=torch.float64)
        w = sfh.age_grid_mass_fractions(sfh.tau_history(a, t_max), sps64.lg_age_gyr_grid)
        comp = sps64.composite_flux_nmgy_per_msun(z, w, 0.0)[0]
        ssp = sps64.ssp_flux_nmgy_per_msun(z, torch.log10(a), 0.0)[0]
        u_r_comp = -2.5 * torch.log10(comp[0] / comp[2])
        u_r_ssp = -2.5 * torch.log10(ssp[0] / ssp[2])
        assert u_r_comp < u_r_ssp - 0.2


def test_composite_flux_rejects_weights_of_the_wrong_shape(sps64: SPSTable) -> None:
    z = torch.tensor([0.1], dtype=torch.float64)
    n_age = sps64.lg_age_gyr_grid.shape[0]
    with pytest.raises(ValueError, match="age_weights must have shape"):
        sps64.composite_flux_nmgy_per_msun(z, torch.ones(1, n_age + 1, dtype=torch.float64), 0.0)
    with pytest.raises(ValueError, match="age_weights must have shape"):
        sps64.composite_flux_nmgy_per_msun(z, torch.ones(n_age, dtype=torch.float64), 0.0)


def test_weights_on_the_older_ages_alone_give_the_same_light(sps64: SPSTable) -> None:
    """The renderer passes weights for the ages from 0.1 Gyr up only (the table's last n):
    the same light as the full grid, whose younger nodes get no mass."""
    z = torch.tensor([0.05, 0.3], dtype=torch.float64)
    ages = torch.tensor([0.7, 5.0], dtype=torch.float64)
    hist = sfh.tau_history(ages, cosmology.age_of_universe_gyr(z))
    full = sfh.age_grid_mass_fractions(hist, sps64.lg_age_gyr_grid)
    first = sps64.age_index_of(math.log10(sfh.OLD_MIN_AGE_GYR))
    assert sps64.lg_age_gyr_grid[first].item() == pytest.approx(-1.0)
    assert full[:, : first - 1].abs().max().item() == 0.0
    lg_z = torch.tensor([[-0.5, 0.0], [0.2, 0.3]], dtype=torch.float64)
    want = sps64.composite_flux_nmgy_per_msun(z, full, lg_z)
    got = sfh.tau_disk_flux_nmgy_per_msun(sps64, z, ages, lg_z)
    assert torch.allclose(got, want, rtol=1e-12)


def test_single_history_is_one_population_and_the_renderer_names_unknown_ones() -> None:
    """ "single" reproduces the SSP of the disk's age; the default renderer is "tau", whose disk
    is brighter and bluer at the same latents; an unknown history is an error naming it."""
    from galae.render.observation import Observation
    from galae.render.renderer import GalaxyRenderer

    sps = SPSTable.load(dtype=torch.float64)
    z = torch.tensor([0.1, 0.2], dtype=torch.float64)
    age = torch.tensor([2.0, 8.0], dtype=torch.float64)
    lg_z = torch.tensor([[-0.3], [0.1]], dtype=torch.float64)
    got = sfh.DISK_HISTORIES["single"](sps, z, age, lg_z)
    want = sps.ssp_flux_nmgy_per_msun(z, torch.log10(age).unsqueeze(-1), lg_z)
    assert torch.equal(got, want)
    with pytest.raises(ValueError, match="unknown disk_history 'burst'"):
        GalaxyRenderer(sps, disk_history="burst")

    from galae.latent import REGISTRY

    params = REGISTRY.midpoint(2, dtype=torch.float64)
    params["log10_mstar_bulge_msun"] = torch.full((2,), 7.0, dtype=torch.float64)
    obs = Observation.create(z, 1.3, dtype=torch.float64)
    tau = GalaxyRenderer(sps).derived(params, obs)
    one = GalaxyRenderer(sps, disk_history="single").derived(params, obs)
    assert bool((tau["mag_r"] < one["mag_r"]).all())
    assert bool(((tau["mag_u"] - tau["mag_r"]) < (one["mag_u"] - one["mag_r"])).all())


# ------------------------------------------------------------------------------------------
# epoch-to-epoch variability, a simulation nuisance
# ------------------------------------------------------------------------------------------


def test_history_variability_steps_are_student_t_of_two_degrees() -> None:
    """For Student-t(2), P(|T| < x) = x / sqrt(2 + x^2): the median of |T| is sqrt(2/3)."""
    g = torch.Generator().manual_seed(0)
    v = sfh.HistoryVariability.draw(40000, 0.3, n_bins=2, generator=g)
    assert torch.equal(v.log10_offsets[:, 0], torch.zeros(40000))  # anchored at the youngest
    steps = v.log10_offsets[:, 1]
    assert steps.abs().median().item() == pytest.approx(0.3 * math.sqrt(2.0 / 3.0), rel=0.03)
    assert steps.abs().max().item() <= sfh.HistoryVariability.STEP_CLIP_DEX
    with pytest.raises(ValueError, match="scale_dex"):
        sfh.HistoryVariability.draw(3, -0.1)


def test_history_variability_keeps_the_mean_age_and_the_mass(sps64: SPSTable) -> None:
    n = 64
    ages = torch.linspace(0.5, 9.0, n, dtype=torch.float64)
    t_max = cosmology.age_of_universe_gyr(torch.full((n,), 0.05, dtype=torch.float64))
    history = sfh.tau_history(ages, t_max)
    grid = sps64.lg_age_gyr_grid[sps64.age_index_of(-1.0) - 1 :].to(torch.float64)
    w = sfh.age_grid_mass_fractions(history, grid)
    v = sfh.HistoryVariability.draw(
        n, 0.3, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    w2 = v.reweight(w, grid, t_max)
    assert not torch.allclose(w, w2)
    torch.testing.assert_close(w2.sum(-1), w.sum(-1))
    mean = (w * 10.0**grid).sum(-1) / w.sum(-1)
    mean2 = (w2 * 10.0**grid).sum(-1) / w2.sum(-1)
    torch.testing.assert_close(mean2, mean, rtol=1e-6, atol=0.0)
    # no ups and downs: the smooth history
    flat = sfh.HistoryVariability(torch.zeros(n, 8, dtype=torch.float64))
    torch.testing.assert_close(flat.reweight(w, grid, t_max), w)
    with pytest.raises(ValueError, match="drawn for 64 galaxies, rendering 3"):
        v.reweight(w[:3], grid, t_max[:3])


def test_history_variability_applies_inside_its_block_only(sps64: SPSTable) -> None:
    n = 16
    z = torch.full((n,), 0.08, dtype=torch.float64)
    age = torch.full((n,), 4.0, dtype=torch.float64)
    lg_z = torch.zeros(n, 3, dtype=torch.float64)  # three radii
    smooth = sfh.tau_disk_flux_nmgy_per_msun(sps64, z, age, lg_z)
    v = sfh.HistoryVariability.draw(
        n, 0.3, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    with sfh.history_variability(v):
        a = sfh.tau_disk_flux_nmgy_per_msun(sps64, z, age, lg_z)
        b = sfh.tau_disk_flux_nmgy_per_msun(sps64, z, age, lg_z)
    torch.testing.assert_close(a, b)  # one draw: every evaluation in a render agrees
    assert not torch.allclose(a, smooth, rtol=1e-3, atol=0.0)
    torch.testing.assert_close(sfh.tau_disk_flux_nmgy_per_msun(sps64, z, age, lg_z), smooth)
    # the u - g colours spread, blue and red, about the smooth history's
    ug = -2.5 * torch.log10(a[:, 0, 0] / a[:, 1, 0])
    ug0 = -2.5 * torch.log10(smooth[0, 0, 0] / smooth[0, 1, 0])
    assert (ug < ug0).any() and (ug > ug0).any()
