"""The star-particle mock generator: sampling, binning, conservation, truth, determinism."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

from galae.data.conditions import sample_sdss_conditions
from galae.data.hdf5 import H5Writer, read_h5
from galae.data.particles import (
    AV_PER_GAS_MSUN_PC2,
    EXTRA_MAP_UNITS,
    ParticleMockConfig,
    bin_particles,
    deposit_particles,
    generate_particle_mocks,
    sample_gamma,
    sample_particles,
    sample_sfh,
    sample_sfh_ages,
    weighted_half_radius,
)
from galae.physics import gas
from galae.physics.maps import MAP_UNITS, YOUNG_AGE_GYR
from galae.physics.population import sample_population
from galae.physics.sps import SPSTable
from galae.render.geometry import disk_axis_ratio
from galae.settings import DEFAULT_SETTINGS

ROOT = Path(__file__).resolve().parents[1]
#: Half-light radius of an exponential profile in scale lengths (root of 1 - (1 + x) e^-x = 1/2).
EXP_RHALF = 1.6783469900166612

SMALL = {
    "n_particles": 3000,
    "batch_size": 3,
    "dtype": "float64",
    "star_fraction": 0.5,
    "neighbour_fraction": 0.5,
}


@pytest.fixture(scope="module")
def sps() -> SPSTable:
    return SPSTable.load("sdss")


@pytest.fixture(scope="module")
def config() -> ParticleMockConfig:
    return ParticleMockConfig.from_dict(SMALL)


@pytest.fixture(scope="module")
def mocks(sps: SPSTable, config: ParticleMockConfig) -> dict:
    return generate_particle_mocks(6, 11, config, sps, return_particles=True)


def _params(n: int, seed: int, **override: float) -> dict[str, torch.Tensor]:
    p = sample_population(n, torch.Generator().manual_seed(seed), dtype=torch.float64)
    for k, v in override.items():
        p[k] = torch.full((n,), float(v), dtype=torch.float64)
    return p


# ------------------------------------------------------------------------------ config


def test_config_unknown_key_is_named() -> None:
    with pytest.raises(ValueError, match="bogus_knob"):
        ParticleMockConfig.from_dict({"n_particles": 100, "bogus_knob": 1})
    # in the python -m galae.mock layout too, inside "particles" and at the top level
    with pytest.raises(ValueError, match="arm_contrast"):
        ParticleMockConfig.from_dict({"generator": "particles", "particles": {"arm_contrast": 1}})
    with pytest.raises(ValueError, match="not_a_key"):
        ParticleMockConfig.from_dict({"not_a_key": 3, "particles": {}})
    with pytest.raises(ValueError, match="generator"):
        ParticleMockConfig.from_dict({"generator": "analytic"})


@pytest.mark.parametrize(
    ("knob", "value"),
    [
        ("pitch_deg", [30.0, 10.0]),  # low > high
        ("pitch_deg", [10.0]),  # not a pair
        ("n_particles", "many"),  # wrong type
        ("n_particles", 2.5),  # not an integer
        ("young_particle_fraction", 1.0),
        ("light_deposit", "spline"),
        ("bar_fraction", 1.5),
        ("gas_smoothing_kpc", -1.0),
        ("inside_out_correlation", [0.5, 1.0]),
        ("sfh_fine_bins", 63),  # not a multiple of sfh_bins
        ("amr_dex_per_gyr", float("nan")),
    ],
)
def test_config_bad_value_is_named(knob: str, value: object) -> None:
    with pytest.raises(ValueError, match=knob):
        ParticleMockConfig.from_dict({knob: value})


def test_shipped_yaml_reads_and_round_trips() -> None:
    cfg = ParticleMockConfig.from_yaml(ROOT / "configs" / "mock_particles.yaml")
    assert cfg.shape == (64, 64) and cfg.pixel_scale_arcsec == 0.396
    assert cfg.bands == ("u", "g", "r", "i", "z")
    assert ParticleMockConfig.from_dict(cfg.to_dict()) == cfg


def test_bad_inputs(sps: SPSTable, config: ParticleMockConfig) -> None:
    with pytest.raises(ValueError, match="n must be"):
        generate_particle_mocks(0, 1, config, sps)
    with pytest.raises(ValueError, match="bands"):
        generate_particle_mocks(2, 1, replace(config, bands=("g", "r", "i")), sps)
    cond = sample_sdss_conditions(3, np.random.default_rng(0))
    with pytest.raises(ValueError, match="conditions are for 3"):
        generate_particle_mocks(2, 1, config, sps, conditions=cond)


# ------------------------------------------------------------------------------ samplers


@pytest.mark.parametrize("k", [1.0, 2.6, 12.0])
def test_sample_gamma_matches_scipy(k: float) -> None:
    g = torch.Generator().manual_seed(5)
    x = sample_gamma(torch.full((40000,), k, dtype=torch.float64), g).numpy()
    # Kolmogorov-Smirnov against scipy's Gamma(k); mean and variance are k
    assert scipy.stats.kstest(x, scipy.stats.gamma(k).cdf).pvalue > 1e-3
    assert x.mean() == pytest.approx(k, rel=0.02)
    assert x.var() == pytest.approx(k, rel=0.05)


def test_bulge_and_disk_radii_follow_their_profiles() -> None:
    """The median radius of a Sersic bulge is R_e (half-light radius, Graham & Driver 2005
    eq. 2); of an exponential disk 1.678 R_d."""
    cfg = ParticleMockConfig(n_particles=40000, bar_fraction=0.0, young_particle_fraction=0.1)
    p = _params(3, 2, log10_mstar_bulge_msun=10.0, log10_mstar_disk_msun=10.0)
    p["sersic_n_bulge"] = torch.tensor([1.0, 2.5, 4.0], dtype=torch.float64)
    t_univ = torch.full((3,), 13.0, dtype=torch.float64)
    parts = sample_particles(p, t_univ, cfg, torch.Generator().manual_seed(3))
    old = ~parts.is_young
    for i in range(3):
        rb = parts.r_plane_kpc[i][parts.is_bulge[i]]
        rd = parts.r_plane_kpc[i][old[i] & ~parts.is_bulge[i]]
        assert len(rb) > 5000 and len(rd) > 5000
        # binomial error of the median ~ 1.25 / sqrt(N) in quantile: a few per cent in radius
        assert rb.median().item() == pytest.approx(p["r_eff_bulge_kpc"][i].item(), rel=0.05)
        assert rd.median().item() == pytest.approx(EXP_RHALF * p["r_d_kpc"][i].item(), rel=0.05)


def test_young_particles_carry_the_sfr_and_masses_add_up() -> None:
    cfg = ParticleMockConfig(n_particles=5000)
    p = _params(4, 7)
    t_univ = torch.full((4,), 12.0, dtype=torch.float64)
    parts = sample_particles(p, t_univ, cfg, torch.Generator().manual_seed(1))
    young = parts.is_young
    sfr = 10.0 ** p["log10_sfr_msun_per_yr"]
    assert torch.allclose(parts.sfr_msun_per_yr.sum(-1), sfr, rtol=1e-12)
    assert (parts.age_gyr[young] > 0).all() and (parts.age_gyr[young] <= YOUNG_AGE_GYR).all()
    assert (parts.age_gyr[~young] >= YOUNG_AGE_GYR).all()
    assert (parts.age_gyr[~young] <= 12.0 + 1e-9).all()
    m_old = 10.0 ** p["log10_mstar_bulge_msun"] + 10.0 ** p["log10_mstar_disk_msun"]
    total = m_old + sfr * YOUNG_AGE_GYR * 1e9
    assert torch.allclose(parts.mass_msun.sum(-1), total, rtol=1e-12)
    assert torch.allclose(
        (parts.mass_msun * parts.is_bulge).sum(-1), 10.0 ** p["log10_mstar_bulge_msun"], rtol=1e-12
    )


def test_inside_out_growth_outer_disk_is_younger() -> None:
    cfg = ParticleMockConfig(n_particles=20000, inside_out_correlation=(0.5, 0.5))
    p = _params(2, 4, log10_mstar_bulge_msun=8.0, log10_mstar_disk_msun=10.5)
    parts = sample_particles(
        p, torch.full((2,), 13.0, dtype=torch.float64), cfg, torch.Generator().manual_seed(9)
    )
    disk = ~parts.is_young & ~parts.is_bulge
    for i in range(2):
        r, age = parts.r_plane_kpc[i][disk[i]].numpy(), parts.age_gyr[i][disk[i]].numpy()
        assert scipy.stats.spearmanr(r, age).statistic < -0.3


def test_sfh_hits_the_mean_age_and_is_sampled_by_its_cdf() -> None:
    cfg = ParticleMockConfig()
    t_univ = torch.tensor([13.5, 12.0, 11.0, 13.0], dtype=torch.float64)
    target = torch.tensor([1.0, 3.0, 6.0, 8.0], dtype=torch.float64)
    sfh = sample_sfh(t_univ, target, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(sfh.mass_fraction.sum(-1), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(sfh.mean_age_gyr, target, rtol=1e-6)
    assert torch.allclose(sfh.edges_gyr[:, 0], torch.full((4,), YOUNG_AGE_GYR, dtype=torch.float64))
    assert torch.allclose(sfh.edges_gyr[:, -1], t_univ)
    n = 200000
    q = torch.rand(4, n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ages = sample_sfh_ages(sfh, q)
    assert (ages >= YOUNG_AGE_GYR).all() and (ages <= t_univ[:, None]).all()
    for i in range(4):
        counts = torch.histogram(ages[i], bins=sfh.edges_gyr[i]).hist / n
        # binomial 5 sigma per bin
        tol = 5.0 * torch.sqrt(sfh.mass_fraction[i] * (1 - sfh.mass_fraction[i]) / n) + 1e-12
        assert ((counts - sfh.mass_fraction[i]).abs() <= tol).all()
        assert ages[i].mean().item() == pytest.approx(target[i].item(), rel=0.01)


# ------------------------------------------------------------------------------ binning


def test_binning_conserves_and_respects_pixel_edges() -> None:
    x = torch.tensor([[0.0, 0.49, 0.5, -0.51, 2.4, 3.49]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0, 1.2, 0.0, 2.6, 3.0]], dtype=torch.float64)
    v = torch.tensor([[[1.0, 2.0, 4.0, 8.0, 16.0, 32.0]]], dtype=torch.float64)
    out = bin_particles(x, y, v, (4, 4))[0, 0]
    # pixel (row, col) covers [col - 1/2, col + 1/2) x [row - 1/2, row + 1/2)
    assert out[0, 0] == 3.0 and out[1, 1] == 4.0 and out[3, 2] == 16.0 and out[3, 3] == 32.0
    assert out.sum() == 55.0  # the particle at x = -0.51 is outside
    cic = deposit_particles(x, y, v, (4, 4), "cic")[0, 0]
    assert (cic >= 0).all()
    # a particle on a pixel centre puts everything there; interior particles are conserved
    one = deposit_particles(
        torch.tensor([[1.0, 1.25]]), torch.tensor([[2.0, 1.5]]), torch.ones(1, 1, 2), (4, 4)
    )[0, 0]
    assert one[2, 1] == pytest.approx(1.0 + 0.75 * 0.5) and one.sum() == pytest.approx(2.0)


def test_cic_deposit_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    x = (0.3 + 3.4 * torch.rand(2, 5, generator=g, dtype=torch.float64)).requires_grad_()
    y = (0.3 + 3.4 * torch.rand(2, 5, generator=g, dtype=torch.float64)).requires_grad_()
    v = torch.rand(2, 3, 5, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: deposit_particles(a, b, c, (5, 5)), (x, y, v))


def test_weighted_half_radius() -> None:
    r = torch.arange(1, 101, dtype=torch.float64).flip(0).unsqueeze(0)
    w = torch.ones(1, 1, 100, dtype=torch.float64)
    assert weighted_half_radius(r, w).item() == pytest.approx(50.0)
    # face-on exponential disk: projected half-mass radius 1.678 R_d
    g = torch.Generator().manual_seed(0)
    u = torch.rand(2, 1, 200000, generator=g, dtype=torch.float64)
    rr = -torch.log(u[0] * u[1])
    half = weighted_half_radius(rr, torch.ones(1, 1, 200000, dtype=torch.float64))
    assert half.item() == pytest.approx(EXP_RHALF, rel=0.01)


def test_dust_to_gas_normalisation() -> None:
    # Bohlin et al. (1978): A_V / N_H = 3.1 / 5.8e21 mag cm^2; 1 Msun/pc^2 of gas holds
    # 1.25e20 / 1.36 H atoms per cm^2 (helium correction 1.36)
    n_h = 1.989e33 / (3.0857e18**2) / 1.6735e-24 / 1.36
    assert n_h == pytest.approx(9.17e19, rel=1e-3)
    assert AV_PER_GAS_MSUN_PC2 == pytest.approx(3.1 / 5.8e21 * n_h, rel=1e-12)
    assert 0.048 < AV_PER_GAS_MSUN_PC2 < 0.050


# ------------------------------------------------------------------------------ full mocks


def test_layout_names_and_finiteness(mocks: dict, config: ParticleMockConfig) -> None:
    n, (h, w), c = 6, config.shape, len(config.bands)
    for key in ("images", "sigma", "model_images", "mask"):
        assert mocks[key].shape == (n, c, h, w)
    assert mocks["mask"].dtype == np.bool_ and not mocks["mask"].any()
    assert mocks["psf_fwhm_arcsec"].shape == (n, c) and mocks["redshift"].shape == (n,)
    maps = mocks["truth"]["maps"]
    assert set(maps) == set(MAP_UNITS) | set(EXTRA_MAP_UNITS)
    for name, m in maps.items():
        assert m.shape == (n, h, w), name
        assert np.isfinite(m).all(), name
    for name, v in mocks["truth"]["params"].items():
        assert v.shape == (n,) and np.isfinite(v).all(), name
    for key in ("images", "sigma", "model_images"):
        assert np.isfinite(mocks[key]).all()
    assert (mocks["sigma"] > 0).all()


def test_map_floors_and_gas_physics(mocks: dict) -> None:
    maps = mocks["truth"]["maps"]
    # the floors of GalaxyMaps.named(): 1e3 Msun/kpc^2, 1e-7 Msun/yr/kpc^2, 1e-3 Msun/pc^2
    assert maps["log10_sigma_mstar_msun_per_kpc2"].min() >= 3.0 - 1e-12
    assert maps["log10_sigma_sfr_msun_per_yr_per_kpc2"].min() >= -7.0 - 1e-12
    assert maps["log10_sigma_gas_msun_per_pc2"].min() >= -3.0 - 1e-12
    # HI never exceeds the total gas and saturates near 9 Msun/pc^2 face-on (Bigiel et al.
    # 2008): on the sky at 9 / q for a disk of projected axis ratio q
    hi, g = maps["log10_sigma_hi_msun_per_pc2"], maps["log10_sigma_gas_msun_per_pc2"]
    assert (hi <= g + 1e-12).all()
    inc = torch.as_tensor(mocks["truth"]["params"]["inclination_deg"], dtype=torch.float64)
    q = disk_axis_ratio(inc, DEFAULT_SETTINGS.disk_thickness_q0).numpy()
    face_on = hi + np.log10(q)[:, None, None]
    assert face_on.max() <= math.log10(gas.HI_SATURATION_MSUN_PER_PC2) + 1e-6
    assert face_on.max() > math.log10(gas.HI_SATURATION_MSUN_PER_PC2) - 0.3  # saturated
    assert (maps["av_mag"] >= 0).all() and maps["av_mag"].max() < 10.0
    assert maps["age_gyr"].min() > 0 and maps["age_gyr"].max() < 14.0
    assert (maps["oh12_gas"] >= 7.0).all() and (maps["oh12_gas"] <= 9.6).all()
    # metallicity within the population grid (BC03: 0.005-5 Zsun)
    z = maps["log10_zstar_zsun"]
    assert z.min() >= -2.3 - 1e-9 and z.max() <= 0.69 + 1e-9


def test_mass_and_sfr_conservation(mocks: dict, config: ParticleMockConfig) -> None:
    """Sum of the mass (SFR) map = sum over the particles whose pixel is in the stamp."""
    h, w = config.shape
    maps, params = mocks["truth"]["maps"], mocks["truth"]["params"]
    i0 = 0
    for batch in mocks["particles"]:
        ix = np.floor(batch["x_pix"] + 0.5)
        iy = np.floor(batch["y_pix"] + 0.5)
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        for j in range(len(ix)):
            i = i0 + j
            m_in = (batch["mass_msun"][j] * inside[j]).sum()
            s_in = (batch["sfr_msun_per_yr"][j] * inside[j]).sum()
            assert maps["mstar_msun"][i].sum() == pytest.approx(m_in, rel=1e-12)
            assert maps["sfr_msun_per_yr"][i].sum() == pytest.approx(s_in, rel=1e-12)
            # the count maps count the particles inside, all and young (SFR-carrying) ones
            young = batch["sfr_msun_per_yr"][j] > 0
            assert maps["n_particles"][i].sum() == inside[j].sum()
            assert maps["n_young_particles"][i].sum() == (inside[j] & young).sum()
            assert (maps["n_young_particles"][i] <= maps["n_particles"][i]).all()
            assert (maps["n_particles"][i] == np.round(maps["n_particles"][i])).all()
            # integrated truths over all particles: M_b + M_d + SFR x 100 Myr, and the SFR
            m_tot = batch["mass_msun"][j].sum()
            assert 10 ** params["log10_mstar_msun"][i] == pytest.approx(m_tot, rel=1e-10)
            expect = (
                10 ** params["log10_mstar_bulge_msun"][i]
                + 10 ** params["log10_mstar_disk_msun"][i]
                + 10 ** params["log10_sfr_msun_per_yr"][i] * YOUNG_AGE_GYR * 1e9
            )
            assert m_tot == pytest.approx(expect, rel=1e-10)
            assert batch["sfr_msun_per_yr"][j].sum() == pytest.approx(
                10 ** params["log10_sfr_msun_per_yr"][i], rel=1e-10
            )
        i0 += len(ix)
    # the surface-density map is the mass map over the pixel area
    area = (params["kpc_per_arcsec"] * config.pixel_scale_arcsec) ** 2
    sig = np.log10(np.maximum(maps["mstar_msun"] / area[:, None, None], 1e3))
    np.testing.assert_allclose(sig, maps["log10_sigma_mstar_msun_per_kpc2"], rtol=1e-12)


def test_fluxes_positive_and_colours_sensible(mocks: dict) -> None:
    p = mocks["truth"]["params"]
    assert (mocks["model_images"] >= 0).all()
    for band in "ugriz":
        assert np.isfinite(p[f"mag_{band}"]).all()
        assert ((p[f"bulge_to_total_{band}"] >= 0) & (p[f"bulge_to_total_{band}"] <= 1)).all()
    # galaxies at z < 0.25 span u - r ~ 1-3.2 and g - r ~ 0.2-1.2 (Strateva et al. 2001, AJ 122,
    # 1861, whose bimodal u - r distribution splits at 2.22); allow k-correction margin
    u_r = p["mag_u"] - p["mag_r"]
    g_r = p["mag_g"] - p["mag_r"]
    assert ((u_r > 0.5) & (u_r < 3.6)).all(), u_r
    assert ((g_r > 0.0) & (g_r < 1.4)).all(), g_r
    # radii
    assert (p["r_half_light_arcsec"] > 0).all() and (p["r_half_mass_arcsec"] > 0).all()
    np.testing.assert_allclose(p["r_half_arcsec_r"], p["r_half_light_arcsec"])
    np.testing.assert_allclose(
        p["r_half_light_kpc"], p["r_half_light_arcsec"] * p["kpc_per_arcsec"], rtol=1e-10
    )
    assert (p["log10_mstar_2rhalf_msun"] <= p["log10_mstar_msun"] + 1e-12).all()
    assert (p["log10_sfr_2rhalf_msun_per_yr"] <= p["log10_sfr_msun_per_yr"] + 1e-12).all()


def test_mass_to_light_follows_bell03(sps: SPSTable) -> None:
    """Colour - M/L relation of nearby galaxies: log10(M/L_r) = -0.306 + 1.097 (g - r) (Bell et
    al. 2003, ApJS 149, 289, table 7, 'diet' Salpeter IMF; M_sun,r = 4.67).  Our table uses a
    Kroupa IMF, which lowers M/L by about 0.1-0.15 dex, so the median offset should lie in
    [-0.3, +0.1] dex; the scatter about the relation is ~0.1-0.2 dex (Bell et al. 2003)."""
    from galae.data.conditions import ConditionsConfig
    from galae.physics import cosmology

    n = 24
    low_z = ConditionsConfig(redshift_min=0.02, redshift_max=0.05)  # small k-corrections
    cond = sample_sdss_conditions(n, np.random.default_rng(3), config=low_z)
    cfg = ParticleMockConfig.from_dict(
        {**SMALL, "n_particles": 1500, "batch_size": n, "dtype": "float32"}
    )
    out = generate_particle_mocks(n, 5, cfg, sps, conditions=cond)
    p = out["truth"]["params"]
    dm = cosmology.distance_modulus_mag(torch.as_tensor(out["redshift"], dtype=torch.float64))
    dm = dm.numpy()
    lg_l_r = -0.4 * (p["mag_r"] - dm - 4.67)
    offset = p["log10_mstar_msun"] - lg_l_r - (-0.306 + 1.097 * (p["mag_g"] - p["mag_r"]))
    assert -0.3 < np.median(offset) < 0.1
    assert np.std(offset) < 0.35


def test_noise_matches_sigma(mocks: dict) -> None:
    pull = (mocks["images"] - mocks["model_images"]) / mocks["sigma"]
    assert abs(pull.mean()) < 0.02
    assert pull.std() == pytest.approx(1.0, abs=0.02)


def test_contaminants_are_in_images_not_in_truth_maps(sps: SPSTable) -> None:
    base = ParticleMockConfig.from_dict({**SMALL, "n_particles": 2000})
    clean = replace(base, star_fraction=0.0, neighbour_fraction=0.0)
    dirty = replace(base, star_fraction=1.0, neighbour_fraction=1.0)
    a = generate_particle_mocks(3, 4, clean, sps)
    b = generate_particle_mocks(3, 4, dirty, sps)
    assert not a["truth"]["params"]["contaminated"].any()
    assert b["truth"]["params"]["contaminated"].all()
    assert (b["truth"]["params"]["n_foreground_stars"] >= 1).all()
    assert (b["truth"]["params"]["n_neighbours"] >= 1).all()
    for name, m in a["truth"]["maps"].items():
        np.testing.assert_array_equal(m, b["truth"]["maps"][name], err_msg=name)
    for name in ("log10_mstar_msun", "mag_r", "r_half_light_arcsec", "inclination_deg"):
        np.testing.assert_array_equal(a["truth"]["params"][name], b["truth"]["params"][name])
    # the clean stamp holds at most the galaxy's total (PSF-free, attenuated) light, which the
    # PSF conserves (to its kernel's ~1e-6 ringing): it can only lose light off the stamp
    for i, band in enumerate("ugriz"):
        flux = a["model_images"][:, i].sum((-1, -2))
        ratio = flux / 10 ** (-0.4 * (a["truth"]["params"][f"mag_{band}"] - 22.5))
        assert ((ratio <= 1.0 + 1e-5) & (ratio > 0.2)).all(), (band, ratio)
    extra = b["model_images"] - a["model_images"]
    assert (extra >= -1e-9).all()
    assert (extra.sum((-1, -2)) > 0).all()  # every stamp and band got light from contaminants


def test_deterministic_per_seed_and_seeds_differ(sps: SPSTable) -> None:
    cfg = ParticleMockConfig.from_dict({**SMALL, "n_particles": 1500, "dtype": "float32"})
    a = generate_particle_mocks(2, 21, cfg, sps)
    b = generate_particle_mocks(2, 21, cfg, sps)
    c = generate_particle_mocks(2, 22, cfg, sps)
    for key in ("images", "model_images", "sigma"):
        np.testing.assert_array_equal(a[key], b[key])
        assert not np.array_equal(a[key], c[key])
    for name, m in a["truth"]["maps"].items():
        np.testing.assert_array_equal(m, b["truth"]["maps"][name])
    assert a["images"].dtype == np.float32


def test_writes_and_reads_hdf5(mocks: dict, tmp_path: Path) -> None:
    batch = {k: v for k, v in mocks.items() if k != "particles"}
    path = tmp_path / "particles.h5"
    with H5Writer(path, bands="ugriz", pixel_scale_arcsec=0.396, generator="particles") as wr:
        wr.append(batch)
    back = read_h5(path)
    np.testing.assert_allclose(back["images"], mocks["images"], rtol=1e-6)
    assert set(back["truth"]["maps"]) == set(mocks["truth"]["maps"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_gpu(sps: SPSTable) -> None:
    cfg = ParticleMockConfig.from_dict({**SMALL, "n_particles": 2000, "dtype": "float32"})
    out = generate_particle_mocks(3, 1, cfg, sps, device="cuda")
    assert np.isfinite(out["images"]).all()
    assert set(out["truth"]["maps"]) == set(MAP_UNITS) | set(EXTRA_MAP_UNITS)


def test_birth_clouds_change_the_young_light_not_the_truth(sps: SPSTable) -> None:
    """The same seed with the two birth-cloud references of
    :data:`galae.physics.dust.BIRTH_CLOUDS`: identical truth maps and parameters (dust, SFR and
    masses do not depend on them), different images where young stars sit in dust; an unknown
    reference is named."""
    base = ParticleMockConfig.from_dict(
        {**SMALL, "n_particles": 1500, "star_fraction": 0.0, "neighbour_fraction": 0.0}
    )
    assert base.birth_clouds == "effective"
    a = generate_particle_mocks(3, 8, replace(base, birth_clouds="face_on"), sps)
    b = generate_particle_mocks(3, 8, base, sps)
    for name, m in a["truth"]["maps"].items():
        np.testing.assert_array_equal(m, b["truth"]["maps"][name], err_msg=name)
    for name in ("av_face_on_mag", "log10_mstar_2rhalf_msun", "log10_sfr_2rhalf_msun_per_yr"):
        np.testing.assert_array_equal(a["truth"]["params"][name], b["truth"]["params"][name])
    dusty = a["truth"]["maps"]["av_mag"].max((-1, -2)) > 0.05
    assert dusty.any()
    u_a, u_b = a["model_images"][:, 0].sum((-1, -2)), b["model_images"][:, 0].sum((-1, -2))
    assert (np.abs(u_a / u_b - 1.0)[dusty] > 1e-3).all()
    with pytest.raises(ValueError, match="birth_clouds"):
        ParticleMockConfig.from_dict({**SMALL, "birth_clouds": "none"})
