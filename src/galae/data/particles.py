"""A star-particle mock generator that galae's analytic model cannot represent exactly.

In the spirit of the SDSS mocks of simulated galaxies of Buck & Wolf (2021, arXiv:2111.01154),
each mock galaxy is a set of star particles with non-parametric structure and history, observed
under SDSS-like conditions, with truth maps binned from the particles.  Everything is batched
over galaxies (particles are a tensor dimension), runs on the device of the inputs, and is
deterministic per seed (``torch.Generator``; CPU and CUDA random streams differ).

Per galaxy (global properties from :func:`galae.physics.population.sample_population`):

* **bulge** particles: projected Sersic profile (R_e, n, q of the population); the radius is
  drawn exactly through ``x = b_n (R/R_e)^(1/n) ~ Gamma(2n, 1)`` (the enclosed light of a Sersic
  profile is the regularised incomplete gamma function P(2n, x); Graham & Driver 2005, PASA 22,
  118, eq. 2); ages log-normal about the bulge age.
* **disk** particles: exponential disk in 3-D (in-plane radius ~ Gamma(2, R_d), vertical
  Laplace profile of scale height h_z), inclined and projected; logarithmic spiral arms
  ``phi = phi_0 + 2 pi k / m + ln(R / R_d) / tan(pitch)`` (a fraction of particles, the arm
  contrast, is moved onto the arms); a bar in some galaxies (inner particles squeezed along the
  bar's minor axis); ages from a non-parametric star-formation history (below) correlated with
  radius (inside-out growth: outer particles younger).
* **young** particles (age < 100 Myr) carry the SFR: total mass SFR x 100 Myr, an exponential
  disk of the SFR scale length, stronger arms, and star-forming clumps.
* **metallicity**: stellar log Z = centre + gradient x R + age-metallicity slope x (age - mean
  age) + scatter; young particles have the local gas metallicity; the gas metallicity map is the
  population's linear gradient (:func:`galae.physics.gas.oh12_profile`) plus a Gaussian random
  field of a given correlation length.
* **star-formation history** of the disk: piecewise-constant SFR in log-spaced lookback-time
  bins between 100 Myr and the age of the universe, with the "continuity" prior of Leja et al.
  (2019, ApJ 876, 3: Delta log SFR between adjacent bins ~ Student-t, nu = 2, scale 0.3 dex),
  plus a few short bursts; the whole history is then tilted by a power of lookback time so that
  its mass-weighted age equals the population's disk age.
* **gas, HI**: the binned SFR surface density, smoothed over ``gas_smoothing_kpc`` (the
  Kennicutt-Schmidt law holds on kpc scales; Bigiel et al. 2008, AJ 136, 2846 measured it at
  750 pc resolution), through :mod:`galae.physics.gas` - the same functions as the analytic model.
* **dust**: face-on A_V = kappa Sigma_gas,face-on Z_gas / Z_sun with kappa from the Galactic
  dust-to-gas ratio (see :data:`AV_PER_GAS_MSUN_PC2`) times a per-galaxy log-normal factor,
  capped at ``av_face_on_max_mag``; Sigma_gas,face-on is the Kennicutt-Schmidt gas of the
  deprojected SFR density cos(i) Sigma_SFR,sky.  It is seen through the inclined mixed slab of
  :func:`galae.physics.dust.slab_transmission` (the truth map ``av_mag`` is that effective
  attenuation, as in the analytic model); young stars get the birth-cloud screen
  ``birth_clouds`` of :data:`galae.physics.dust.BIRTH_CLOUDS` on top (exactly as the analytic
  shader; files that do not name it were made with "face_on").  Each
  particle is attenuated by the dust of the pixel it lies in.
* **light**: old particles: mass x ``SPSTable.ssp_flux_nmgy_per_msun(age, Z)``; young
  particles: each is a piece of a constant-SFR population, flux = (mass / 100 Myr) x
  ``SPSTable.young_flux_nmgy_per_msun_yr(Z)`` (nebular emission included, as in the analytic
  model; individual young ages enter the age map but not the light).  Light is deposited on the
  pixels (cloud-in-cell by default), attenuated by the dust of the particle's pixel, convolved
  with the PSF (:func:`galae.render.psf.convolve`) on a grid with a margin around the stamp,
  and noise is added by :func:`galae.data.conditions.add_noise`.
* **contaminants** in some stamps: foreground stars (point sources with blackbody colours) and
  neighbouring galaxies (analytic Sersic profiles times a stellar-population colour); they are in
  the images and flagged in the truth (``contaminated``), never in the truth maps.

Truth maps are binned from the particles on the stamp's pixels (nearest-pixel binning, so that
the mass and SFR maps sum exactly to the particles inside the stamp) with the names and units of
:data:`galae.physics.maps.MAP_UNITS` and the floors of :meth:`galae.physics.maps.GalaxyMaps.named`.
Mass-weighted metallicity and age are undefined in pixels without particles; those take the
mass-weighted mean of their ring of deprojected radius (the radial profile, carried outwards
beyond the last well-populated ring), so the maps stay finite and smooth.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import yaml
from torch import Tensor

from galae.data.conditions import (
    SDSS_BAND_MODELS,
    ConditionsConfig,
    ObservingConditions,
    add_noise,
    sample_sdss_conditions,
)
from galae.latent import REGISTRY
from galae.physics import cosmology, dust, gas
from galae.physics.maps import YOUNG_AGE_GYR, named_maps
from galae.physics.population import check_log10_mstar_range, sample_population
from galae.physics.profiles import sersic_b
from galae.render import psf as psf_mod
from galae.render.geometry import galaxy_geometry
from galae.render.raster import sersic_image
from galae.runtime import checked_device
from galae.settings import DEFAULT_SETTINGS, RenderSettings

if TYPE_CHECKING:  # pragma: no cover
    from galae.physics.sps import SPSTable

__all__ = [
    "ParticleMockConfig",
    "ParticleSet",
    "StarFormationHistory",
    "ParticleMaps",
    "Contaminants",
    "sample_contaminants",
    "generate_particle_mocks",
    "sample_particles",
    "sample_sfh",
    "sample_sfh_ages",
    "bin_particles",
    "deposit_particles",
    "sample_gamma",
    "weighted_half_radius",
    "AV_PER_GAS_MSUN_PC2",
    "RUN_KEYS",
    "SHARED_KEYS",
    "EXTRA_MAP_UNITS",
]

#: Years in the young (SFR-carrying) window, 100 Myr.
_YOUNG_AGE_YR: float = YOUNG_AGE_GYR * 1e9
#: Grid range of the stellar-population table in log10 Z/Zsun (BC03: 0.005-5 Zsun), as maps.py.
_LG_Z_MIN, _LG_Z_MAX = -2.3, 0.69

#: Face-on V-band attenuation per unit gas surface density at solar metallicity (mag per
#: Msun pc^-2): :data:`galae.physics.dust.AV_PER_GAS_MSUN_PC2` (Bohlin, Savage & Drake 1978).
AV_PER_GAS_MSUN_PC2: float = dust.AV_PER_GAS_MSUN_PC2

#: Second radiation constant h c / k (CODATA 2018), Angstrom Kelvin.
_PLANCK_C2_ANGSTROM_K: float = 1.438776877e8

#: Keys of a mock YAML file that describe the run, not the generator (skipped by from_dict).
RUN_KEYS: tuple[str, ...] = ("generator", "n", "seed", "out", "chunk", "workers", "overwrite")
#: Top-level keys of a ``python -m galae.mock`` file that are also knobs of the generator.
SHARED_KEYS: tuple[str, ...] = (
    "shape",
    "pixel_scale_arcsec",
    "bands",
    "redshift_min",
    "redshift_max",
    "redshift_distribution",
    "log10_mstar_min",
    "log10_mstar_max",
    "birth_clouds",
)

#: Units of the linear per-pixel maps returned beside :data:`galae.physics.maps.MAP_UNITS`.
EXTRA_MAP_UNITS: dict[str, str] = {
    "mstar_msun": "Msun per pixel (all star particles binned)",
    "sfr_msun_per_yr": "Msun/yr per pixel (particles younger than 100 Myr)",
    "n_particles": "star particles per pixel (all ages); the truth maps' sampling: a pixel of N "
    "particles has a relative shot noise of about 1/sqrt(N)",
    "n_young_particles": "star particles younger than 100 Myr per pixel (the SFR map's sampling)",
}

#: Number of rings of deprojected radius for the radial-profile fill of the Z and age maps.
_N_RINGS: int = 96

#: Largest |alpha| of the power-law tilt t^alpha of the star-formation histories.
_ALPHA_MAX: float = 12.0

_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}


# ------------------------------------------------------------------------------------------
# Configuration
# ------------------------------------------------------------------------------------------

Range = tuple[float, float]


@dataclass(frozen=True)
class ParticleMockConfig:
    """Every knob of the particle mock generator (all immutable; ranges are (low, high) and
    drawn uniformly per galaxy unless said otherwise).

    Observation:
        shape: stamp (H, W) in pixels.  pixel_scale_arcsec: pixel side.  bands: band names
        (must equal the population table's).  redshift_min/max, redshift_distribution: passed to
        :class:`galae.data.conditions.ConditionsConfig`.  margin_pix: extra pixels on every
        side of the stamp on which light is deposited before the PSF (light from just outside
        the stamp is convolved into it).
    Population: log10_mstar_min/max: total stellar mass range; max_offset_arcsec: centre
        offsets (see :func:`sample_population`).
    Particles: n_particles per galaxy; young_particle_fraction of them (< 100 Myr) carry the
        SFR; batch_size: galaxies per vectorised batch (results depend on it through the random
        streams); dtype: "float32" or "float64"; light_deposit: "cic" or "ngp".
    Disk: disk_height_over_r_d: scale height of the vertical exponential in disk scale
        lengths; young_height_factor: young scale height relative to the old disk's.
    Arms: n_arms (integer range, inclusive); pitch_deg; arm_fraction_old / _young: fraction of
        disk particles placed on arms (the arm contrast); arm_width_rad: 1-sigma azimuthal
        width of an arm; arm_start_over_r_d: arms fade in over this radius.
    Bar: bar_fraction: fraction of galaxies with a bar; bar_length_over_r_d; bar_axis_ratio;
        bar_capture: fraction of the disk particles inside the bar length taken into it.
    Clumps: max_clumps (the number is uniform in 0..max); clump_fraction_young: fraction of the
        young particles in clumps; clump_sigma_kpc: Gaussian clump radius.
    History: sfh_bins (continuity bins), sfh_fine_bins (multiple of sfh_bins);
        sfh_continuity_scale_dex; max_bursts (number uniform in 0..max);
        burst_mass_fraction (each burst, relative to the smooth history); burst_width_dex;
        inside_out_correlation: Gaussian-copula correlation between radius and youth;
        bulge_age_scatter_dex.
    Metals: amr_dex_per_gyr: age-metallicity slope; zstar_scatter_dex: particle scatter;
        oh12_scatter_dex, oh12_correlation_kpc: random field of the gas metallicity.
    Gas and dust: gas_smoothing_kpc; dust_to_gas_scatter_dex: per-galaxy log-normal scatter of
        the dust-to-gas normalisation; av_face_on_max_mag: cap of the local face-on A_V.
    Maps: fill_min_particles: particles a ring of deprojected radius needs before its mean
        fills the empty pixels of the Z and age maps (see :func:`_mass_weighted_map`).
    Contaminants: star_fraction, neighbour_fraction: fractions of stamps with foreground
        stars / neighbouring galaxies; max_stars, max_neighbours (the number is uniform in
        1..max where present); star_mag_r, neighbour_mag_r: AB magnitude ranges in the band
        nearest 6200 A; star_temperature_k: blackbody temperatures; neighbour_r_half_arcsec,
        neighbour_sersic_n, neighbour_q, neighbour_redshift, neighbour_lg_age_gyr,
        neighbour_lg_z_zsun: the neighbours' profiles and populations;
        contaminant_min_distance_arcsec: minimum distance from the stamp centre;
        contaminant_mask_nsigma: if > 0, pixels where the contaminants' noiseless light
        exceeds this many sigma are masked (mask True); 0 keeps every pixel.
    """

    # observation
    shape: tuple[int, int] = (64, 64)
    pixel_scale_arcsec: float = 0.396
    bands: tuple[str, ...] = ("u", "g", "r", "i", "z")
    redshift_min: float = 0.01
    redshift_max: float = 0.25
    redshift_distribution: str = "uniform"
    margin_pix: int = 12
    # population
    log10_mstar_min: float = 8.5
    log10_mstar_max: float = 11.7
    max_offset_arcsec: float = 0.6
    # particles and numerics
    n_particles: int = 30000
    young_particle_fraction: float = 0.2
    batch_size: int = 16
    dtype: str = "float32"
    light_deposit: str = "cic"
    # disk
    disk_height_over_r_d: Range = (0.08, 0.15)
    young_height_factor: float = 0.4
    # spiral arms
    n_arms: tuple[int, int] = (2, 4)
    pitch_deg: Range = (10.0, 30.0)
    arm_fraction_old: Range = (0.05, 0.3)
    arm_fraction_young: Range = (0.3, 0.8)
    arm_width_rad: Range = (0.2, 0.45)
    arm_start_over_r_d: float = 0.7
    # bar
    bar_fraction: float = 0.3
    bar_length_over_r_d: Range = (0.8, 1.6)
    bar_axis_ratio: Range = (0.25, 0.45)
    bar_capture: Range = (0.3, 0.7)
    # clumps
    max_clumps: int = 8
    clump_fraction_young: Range = (0.1, 0.4)
    clump_sigma_kpc: Range = (0.1, 0.3)
    # star-formation history
    sfh_bins: int = 8
    sfh_fine_bins: int = 64
    sfh_continuity_scale_dex: float = 0.3
    max_bursts: int = 3
    burst_mass_fraction: Range = (0.02, 0.1)
    burst_width_dex: float = 0.03
    inside_out_correlation: Range = (0.2, 0.6)
    bulge_age_scatter_dex: float = 0.08
    # metallicity
    amr_dex_per_gyr: float = -0.02
    zstar_scatter_dex: float = 0.1
    oh12_scatter_dex: float = 0.05
    oh12_correlation_kpc: float = 1.0
    # gas and dust
    gas_smoothing_kpc: float = 0.75
    dust_to_gas_scatter_dex: float = 0.15
    av_face_on_max_mag: float = 5.0
    birth_clouds: str = dust.DEFAULT_BIRTH_CLOUDS  # young stars' extra dust (dust.BIRTH_CLOUDS)
    # maps
    fill_min_particles: int = 20
    # contaminants
    star_fraction: float = 0.15
    max_stars: int = 3
    star_mag_r: Range = (15.5, 22.0)
    star_temperature_k: Range = (3500.0, 9000.0)
    neighbour_fraction: float = 0.25
    max_neighbours: int = 2
    neighbour_mag_r: Range = (16.5, 21.5)
    neighbour_r_half_arcsec: Range = (0.8, 4.0)
    neighbour_sersic_n: Range = (0.8, 4.0)
    neighbour_q: Range = (0.3, 1.0)
    neighbour_redshift: Range = (0.02, 0.4)
    neighbour_lg_age_gyr: Range = (-0.3, 1.0)
    neighbour_lg_z_zsun: Range = (-0.7, 0.2)
    contaminant_min_distance_arcsec: float = 5.0
    contaminant_mask_nsigma: float = 0.0

    def __post_init__(self) -> None:
        # coerce YAML values (lists, ints for floats) to the types of the defaults; the
        # dataclass is frozen, hence object.__setattr__
        for f in fields(self):
            value = _coerce_knob(f.name, getattr(self, f.name), f.default)
            object.__setattr__(self, f.name, value)
        _check_config(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParticleMockConfig:
        """Build from a mapping of knobs; unknown keys raise ``ValueError`` naming the key.

        Also reads the layout of a ``python -m galae.mock`` file (``configs/mock_particles.yaml``):
        the knobs under ``particles``, plus the shared observation keys :data:`SHARED_KEYS` at
        the top level; the run keys :data:`RUN_KEYS` are ignored, and ``generator``, when
        present, must be "particles".
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"particle mock config must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        if "particles" in d:
            nested = d["particles"] or {}
            if not isinstance(nested, Mapping):
                raise ValueError("particle mock config: 'particles' must be a mapping of knobs")
            outer = [k for k in d if k not in RUN_KEYS and k != "particles"]
            bad_outer = [k for k in outer if k not in SHARED_KEYS]
            if bad_outer:
                raise ValueError(
                    f"unknown top-level key(s) {bad_outer} of a particle mock file; known: "
                    f"{sorted(SHARED_KEYS + RUN_KEYS + ('particles',))}"
                )
            merged = {k: d[k] for k in outer}
            merged.update(nested)
            d = merged
        unknown = [k for k in d if k not in known and k not in RUN_KEYS]
        if unknown:
            raise ValueError(
                f"unknown particle mock config key(s) {unknown}; known keys: {sorted(known)} "
                f"(and run keys {list(RUN_KEYS)})"
            )
        if "generator" in d and d["generator"] != "particles":
            raise ValueError(f"generator must be 'particles', got {d['generator']!r}")
        return cls(**{k: v for k, v in d.items() if k in known})

    @classmethod
    def from_yaml(cls, path: str | Path) -> ParticleMockConfig:
        """Read a YAML file: a flat mapping of knobs, or a ``python -m galae.mock`` file."""
        with open(path) as fh:
            return cls.from_dict(yaml.safe_load(fh) or {})

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python mapping (lists for tuples) that :meth:`from_dict` reads back."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }

    @property
    def n_young(self) -> int:
        """Number of young particles per galaxy."""
        return max(1, int(round(self.young_particle_fraction * self.n_particles)))

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]


#: Knobs that are (low, high) ranges.
_RANGE_KNOBS: tuple[str, ...] = (
    "disk_height_over_r_d",
    "n_arms",
    "pitch_deg",
    "arm_fraction_old",
    "arm_fraction_young",
    "arm_width_rad",
    "bar_length_over_r_d",
    "bar_axis_ratio",
    "bar_capture",
    "clump_fraction_young",
    "clump_sigma_kpc",
    "burst_mass_fraction",
    "inside_out_correlation",
    "star_mag_r",
    "star_temperature_k",
    "neighbour_mag_r",
    "neighbour_r_half_arcsec",
    "neighbour_sersic_n",
    "neighbour_q",
    "neighbour_redshift",
    "neighbour_lg_age_gyr",
    "neighbour_lg_z_zsun",
)


def _coerce_scalar(name: str, value: Any, like: Any) -> Any:
    """``value`` as the type of the default ``like`` (int, float or str), or ValueError."""
    if isinstance(like, str):
        if not isinstance(value, str):
            raise ValueError(f"ParticleMockConfig.{name}: expected a string, got {value!r}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"ParticleMockConfig.{name}: expected a number, got {value!r}")
    if isinstance(like, int):
        if float(value) != int(value):
            raise ValueError(f"ParticleMockConfig.{name}: expected an integer, got {value!r}")
        return int(value)
    return float(value)


def _coerce_knob(name: str, value: Any, default: Any) -> Any:
    """Coerce one knob to the type (and, for pairs, the length) of its default."""
    if not isinstance(default, tuple):
        return _coerce_scalar(name, value, default)
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise ValueError(f"ParticleMockConfig.{name}: expected a list, got {value!r}")
    if len(default) == 2 and (name in _RANGE_KNOBS or name == "shape") and len(value) != 2:
        raise ValueError(f"ParticleMockConfig.{name}: expected 2 values, got {value!r}")
    return tuple(_coerce_scalar(name, v, default[0]) for v in value)


def _check_config(c: ParticleMockConfig) -> None:
    """Raise ``ValueError`` naming the first invalid knob."""

    def bad(name: str, why: str) -> ValueError:
        return ValueError(f"ParticleMockConfig.{name}={getattr(c, name)!r}: {why}")

    for f in fields(c):
        v = getattr(c, f.name)
        vals = v if isinstance(v, tuple) else (v,)
        for x in vals:
            if isinstance(x, float | int) and not isinstance(x, bool) and not math.isfinite(x):
                raise bad(f.name, "must be finite")
    if len(c.shape) != 2 or min(c.shape) < 8:
        raise bad("shape", "must be (H, W) with H, W >= 8")
    if not c.pixel_scale_arcsec > 0:
        raise bad("pixel_scale_arcsec", "must be > 0")
    if len(c.bands) == 0 or len(set(c.bands)) != len(c.bands):
        raise bad("bands", "must be a non-empty list of distinct band names")
    if c.margin_pix < 0:
        raise bad("margin_pix", "must be >= 0")
    if c.birth_clouds not in dust.BIRTH_CLOUDS:
        raise bad("birth_clouds", f"must be one of {sorted(dust.BIRTH_CLOUDS)}")
    check_log10_mstar_range(c.log10_mstar_min, c.log10_mstar_max)
    if not 0.0 < c.redshift_min < c.redshift_max:
        raise ValueError(
            f"need 0 < redshift_min < redshift_max, got {c.redshift_min:g} and {c.redshift_max:g}"
        )
    if c.n_particles < 10:
        raise bad("n_particles", "must be >= 10")
    if not 0.0 < c.young_particle_fraction < 1.0:
        raise bad("young_particle_fraction", "must be in (0, 1)")
    if c.n_particles - c.n_young < 2:
        raise bad("young_particle_fraction", "leaves fewer than 2 old particles")
    if c.batch_size < 1:
        raise bad("batch_size", "must be >= 1")
    if c.dtype not in _DTYPES:
        raise bad("dtype", f"must be one of {sorted(_DTYPES)}")
    if c.light_deposit not in _DEPOSITS:
        raise bad("light_deposit", f"must be one of {sorted(_DEPOSITS)}")
    for name in _RANGE_KNOBS:
        lo, hi = getattr(c, name)
        if not lo <= hi:
            raise bad(name, "must be (low, high) with low <= high")
    fractions = (
        "arm_fraction_old",
        "arm_fraction_young",
        "bar_capture",
        "clump_fraction_young",
        "inside_out_correlation",
    )
    for name in fractions:
        lo, hi = getattr(c, name)
        if not (0.0 <= lo and hi <= 1.0):
            raise bad(name, "must lie in [0, 1]")
    if max(c.inside_out_correlation) >= 1.0:
        raise bad("inside_out_correlation", "must be < 1")
    for name in ("bar_fraction", "star_fraction", "neighbour_fraction"):
        if not 0.0 <= getattr(c, name) <= 1.0:
            raise bad(name, "must be in [0, 1]")
    if c.n_arms[0] < 1:
        raise bad("n_arms", "must be >= 1")
    if not (0.0 < c.pitch_deg[0] and c.pitch_deg[1] < 90.0):
        raise bad("pitch_deg", "must lie in (0, 90) deg")
    positive = (
        "disk_height_over_r_d",
        "arm_width_rad",
        "bar_length_over_r_d",
        "bar_axis_ratio",
        "clump_sigma_kpc",
        "star_temperature_k",
        "neighbour_r_half_arcsec",
        "neighbour_sersic_n",
        "neighbour_q",
        "neighbour_redshift",
    )
    for name in positive:
        if not min(getattr(c, name)) > 0.0:
            raise bad(name, "must be > 0")
    if max(c.bar_axis_ratio) > 1.0 or max(c.neighbour_q) > 1.0:
        raise bad(
            "bar_axis_ratio" if max(c.bar_axis_ratio) > 1.0 else "neighbour_q", "must be <= 1"
        )
    for name in (
        "young_height_factor",
        "arm_start_over_r_d",
        "sfh_continuity_scale_dex",
        "burst_width_dex",
        "oh12_correlation_kpc",
        "gas_smoothing_kpc",
        "av_face_on_max_mag",
    ):
        if not getattr(c, name) > 0.0:
            raise bad(name, "must be > 0")
    for name in (
        "bulge_age_scatter_dex",
        "zstar_scatter_dex",
        "oh12_scatter_dex",
        "dust_to_gas_scatter_dex",
        "contaminant_min_distance_arcsec",
        "contaminant_mask_nsigma",
    ):
        if not getattr(c, name) >= 0.0:
            raise bad(name, "must be >= 0")
    for name in ("max_clumps", "max_bursts", "max_stars", "max_neighbours"):
        if getattr(c, name) < 0:
            raise bad(name, "must be >= 0")
    if c.sfh_bins < 1 or c.sfh_fine_bins % c.sfh_bins != 0:
        raise bad("sfh_fine_bins", "must be a positive multiple of sfh_bins")
    if min(c.burst_mass_fraction) < 0.0:
        raise bad("burst_mass_fraction", "must be >= 0")
    if c.fill_min_particles < 1:
        raise bad("fill_min_particles", "must be >= 1")


# ------------------------------------------------------------------------------------------
# Small samplers
# ------------------------------------------------------------------------------------------


class _Rng:
    """Thin wrapper: uniform / normal draws of a given shape from one torch.Generator."""

    def __init__(self, generator: torch.Generator, dtype: torch.dtype) -> None:
        self.g = generator
        self.dtype = dtype
        self.device = generator.device

    def u(self, *shape: int) -> Tensor:
        """U[0, 1)."""
        return torch.rand(shape, generator=self.g, dtype=self.dtype, device=self.device)

    def u_open(self, *shape: int) -> Tensor:
        """U(0, 1] (safe under log)."""
        return 1.0 - self.u(*shape)

    def n(self, *shape: int) -> Tensor:
        return torch.randn(shape, generator=self.g, dtype=self.dtype, device=self.device)

    def range(self, r: Range, *shape: int) -> Tensor:
        return r[0] + (r[1] - r[0]) * self.u(*shape)

    def int_range(self, lo: int, hi: int, *shape: int) -> Tensor:
        """Integers uniform in [lo, hi] inclusive (as a long tensor)."""
        return torch.floor(lo + (hi - lo + 1) * self.u(*shape)).long().clamp(lo, hi)


def sample_gamma(shape_k: Tensor, generator: torch.Generator, max_rounds: int = 30) -> Tensor:
    """Gamma(k, 1) variates for k >= 1, elementwise (any shape), from one torch.Generator.

    Marsaglia & Tsang (2000, ACM TOMS 26, 363), vectorised: with d = k - 1/3, c = 1/sqrt(9 d),
    propose v = (1 + c x)^3 with x ~ N(0, 1), accept if v > 0 and
    log u < x^2/2 + d - d v + d log v (u ~ U(0, 1)); return d v.  Rejected entries are
    redrawn (only those; acceptance > 95 % for k >= 1); after ``max_rounds`` the rare leftovers
    get k.
    """
    if not torch.isfinite(shape_k).all() or (shape_k < 1.0).any():
        raise ValueError("sample_gamma needs finite shape k >= 1")
    rng = _Rng(generator, shape_k.dtype)
    k_flat = shape_k.reshape(-1)
    out = k_flat.clone()
    todo = torch.arange(out.numel(), device=out.device)  # entries still to draw
    for _ in range(max_rounds):
        d = k_flat[todo] - 1.0 / 3.0
        c = 1.0 / torch.sqrt(9.0 * d)
        x = rng.n(todo.numel())
        u = rng.u_open(todo.numel())
        v = (1.0 + c * x) ** 3
        v_safe = v.clamp_min(1e-30)
        ok = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v_safe + d * torch.log(v_safe))
        out[todo[ok]] = (d * v_safe)[ok]
        todo = todo[~ok]
        if todo.numel() == 0:
            break
    return out.view(shape_k.shape)


def _laplace(rng: _Rng, *shape: int) -> Tensor:
    """Standard Laplace variates (density exp(-|z|) / 2)."""
    sign = torch.where(rng.u(*shape) < 0.5, -1.0, 1.0).to(rng.dtype)
    return sign * -torch.log(rng.u_open(*shape))


def _gamma2(rng: _Rng, *shape: int) -> Tensor:
    """Gamma(2, 1) variates (in-plane radius of an exponential disk in scale lengths)."""
    return -torch.log(rng.u_open(*shape) * rng.u_open(*shape))


def _exp_disk_cdf(x: Tensor) -> Tensor:
    """Mass fraction of an exponential disk inside x scale lengths: 1 - (1 + x) e^-x."""
    return 1.0 - (1.0 + x) * torch.exp(-x)


def _col(x: Tensor) -> Tensor:
    """(B,) -> (B, 1)."""
    return x.unsqueeze(-1)


# ------------------------------------------------------------------------------------------
# Star-formation histories
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StarFormationHistory:
    """Non-parametric star-formation histories of B galaxies on G lookback-time bins.

    Attributes:
        edges_gyr: (B, G + 1) bin edges in lookback time, Gyr, from 0.1 Gyr (the end of the
            young window) to the age of the universe at the galaxy's redshift, log-spaced.
        mass_fraction: (B, G) fraction of the history's mass formed in each bin (sums to 1);
            SFR is constant within a bin.
    """

    edges_gyr: Tensor
    mass_fraction: Tensor

    @property
    def cdf(self) -> Tensor:
        """(B, G + 1) cumulative mass fraction at the edges (0 ... 1)."""
        c = torch.cumsum(self.mass_fraction, -1)
        c = c / c[:, -1:]
        return torch.cat([torch.zeros_like(c[:, :1]), c], -1)

    @property
    def mean_age_gyr(self) -> Tensor:
        """(B,) mass-weighted mean age (uniform within bins)."""
        mid = 0.5 * (self.edges_gyr[:, 1:] + self.edges_gyr[:, :-1])
        return (self.mass_fraction * mid).sum(-1) / self.mass_fraction.sum(-1)


def sample_sfh(
    age_universe_gyr: Tensor,
    mean_age_gyr: Tensor,
    config: ParticleMockConfig,
    generator: torch.Generator,
    n_pass: int = 4,
) -> StarFormationHistory:
    """Draw B non-parametric star-formation histories of older-than-100-Myr stars.

    SFR is constant in K = ``sfh_bins`` log-spaced bins; log SFR steps between adjacent bins are
    Student-t (nu = 2) with scale ``sfh_continuity_scale_dex`` (the "continuity" prior of Leja et
    al. 2019, ApJ 876, 3).  On the G = ``sfh_fine_bins`` fine bins, up to
    ``max_bursts`` Gaussian bursts in log age (width ``burst_width_dex``) are added.  Finally
    the mass per bin m_g is tilted, m_g t_g^alpha / sum, with alpha chosen so that
    the mass-weighted mean age equals ``mean_age_gyr`` (clamped to the reachable range, within
    |alpha| <= 12), by ``n_pass`` rounds of bracketing on a 129-point grid of alpha and a final
    linear interpolation.

    Args:
        age_universe_gyr: (B,) age of the universe at each galaxy's redshift (> 0.1 Gyr).
        mean_age_gyr: (B,) target mass-weighted age.
        config: uses the history knobs.
        generator: torch random generator (device of the inputs).
    """
    rng = _Rng(generator, age_universe_gyr.dtype)
    b = age_universe_gyr.shape[0]
    k, g = config.sfh_bins, config.sfh_fine_bins
    t_max = age_universe_gyr.clamp_min(YOUNG_AGE_GYR * 1.5)
    frac = torch.arange(g + 1, dtype=rng.dtype, device=rng.device) / g
    edges = YOUNG_AGE_GYR * (_col(t_max) / YOUNG_AGE_GYR) ** frac  # (B, G+1)
    mid = torch.sqrt(edges[:, 1:] * edges[:, :-1])  # log-centre of each bin
    width = edges[:, 1:] - edges[:, :-1]
    lg_mid = torch.log10(mid)

    # continuity prior: Student-t(2) = N / sqrt(chi2_2 / 2), chi2_2 / 2 = -ln U
    t2 = rng.n(b, k - 1) / torch.sqrt(-torch.log(rng.u_open(b, k - 1)))
    lg_sfr = torch.cat(
        [
            torch.zeros(b, 1, dtype=rng.dtype, device=rng.device),
            torch.cumsum(config.sfh_continuity_scale_dex * t2, -1),
        ],
        -1,
    ).clamp(-4.0, 4.0)
    lg_sfr_fine = lg_sfr.repeat_interleave(g // k, dim=-1)
    mass = 10.0**lg_sfr_fine * width
    mass = mass / mass.sum(-1, keepdim=True)

    nb = config.max_bursts
    if nb > 0:
        n_active = rng.int_range(0, nb, b)
        active = torch.arange(nb, device=rng.device).view(1, nb) < _col(n_active)
        lg_lo, lg_hi = math.log10(YOUNG_AGE_GYR), torch.log10(t_max)
        lg_tb = lg_lo + (_col(lg_hi) - lg_lo) * rng.u(b, nb)  # (B, nb)
        f_b = rng.range(config.burst_mass_fraction, b, nb) * active
        shape = torch.exp(
            -0.5 * ((lg_mid.unsqueeze(1) - lg_tb.unsqueeze(-1)) / config.burst_width_dex) ** 2
        )  # (B, nb, G)
        shape = shape / shape.sum(-1, keepdim=True).clamp_min(1e-30)
        mass = mass + (f_b.unsqueeze(-1) * shape).sum(1)

    # tilt by t^alpha to hit the target mean age: the mean age rises monotonically with alpha
    # (d mean / d alpha = Cov(t, ln t) >= 0), so refine a bracket on a grid of alpha values
    log_m = torch.log(mass.clamp_min(torch.finfo(rng.dtype).tiny))
    log_t = torch.log(mid)
    mid_lin = 0.5 * (edges[:, 1:] + edges[:, :-1])
    target = torch.minimum(
        torch.maximum(mean_age_gyr, mid_lin[:, 0] * 1.001), mid_lin[:, -1] * 0.999
    )

    def mean_age(alpha: Tensor) -> Tensor:  # alpha (B, K) -> (B, K)
        w = torch.softmax(log_m.unsqueeze(1) + alpha.unsqueeze(-1) * log_t.unsqueeze(1), -1)
        return (w * mid_lin.unsqueeze(1)).sum(-1)

    n_grid = 129
    frac_a = torch.linspace(0.0, 1.0, n_grid, dtype=rng.dtype, device=rng.device)
    lo = torch.full((b, 1), -_ALPHA_MAX, dtype=rng.dtype, device=rng.device)
    hi = -lo
    for _ in range(n_pass):
        alpha = lo + (hi - lo) * frac_a
        j = ((mean_age(alpha) <= _col(target)).sum(-1, keepdim=True) - 1).clamp(0, n_grid - 2)
        lo, hi = torch.gather(alpha, 1, j), torch.gather(alpha, 1, j + 1)
    m_lo, m_hi = mean_age(torch.cat([lo, hi], -1)).unbind(-1)
    f = ((target - m_lo) / (m_hi - m_lo).clamp_min(1e-30)).clamp(0.0, 1.0)
    alpha = lo[:, 0] + f * (hi[:, 0] - lo[:, 0])
    mass = torch.softmax(log_m + _col(alpha) * log_t, -1)
    return StarFormationHistory(edges_gyr=edges, mass_fraction=mass)


def sample_sfh_ages(sfh: StarFormationHistory, quantile: Tensor) -> Tensor:
    """Inverse-CDF ages: lookback times (B, P) Gyr at mass quantiles ``quantile`` (B, P) in
    [0, 1] (uniform in time within each bin)."""
    cdf = sfh.cdf.contiguous()
    g = cdf.shape[-1] - 1
    q = quantile.clamp(0.0, 1.0).contiguous()
    idx = (torch.searchsorted(cdf, q, right=True) - 1).clamp(0, g - 1)
    c0, c1 = torch.gather(cdf, 1, idx), torch.gather(cdf, 1, idx + 1)
    e0, e1 = torch.gather(sfh.edges_gyr, 1, idx), torch.gather(sfh.edges_gyr, 1, idx + 1)
    f = ((q - c0) / (c1 - c0).clamp_min(1e-30)).clamp(0.0, 1.0)
    return e0 + f * (e1 - e0)


# ------------------------------------------------------------------------------------------
# Particles
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParticleSet:
    """Star particles of B galaxies, P per galaxy; the first ``n_young`` of each are young.

    Attributes (each (B, P) unless said otherwise):
        dx_kpc, dy_kpc: projected offset from the galaxy centre on the sky, kpc, along the
            image's +x (columns) and +y (rows).
        r_plane_kpc: in-plane (deprojected) radius; for bulge particles the projected
            elliptical radius.
        mass_msun: particle mass, Msun.
        age_gyr: formation lookback time, Gyr.
        lg_zstar_zsun: stellar metallicity log10 Z/Zsun (young: NaN until the gas metallicity
            is known; see :func:`generate_particle_mocks`).
        is_bulge: bool, bulge particle.
        n_young: number of young (< 100 Myr) particles per galaxy (the first columns).
        structure: per-galaxy structural draws {name: (B,)} (n_arms, pitch_deg, has_bar, ...).
    """

    dx_kpc: Tensor
    dy_kpc: Tensor
    r_plane_kpc: Tensor
    mass_msun: Tensor
    age_gyr: Tensor
    lg_zstar_zsun: Tensor
    is_bulge: Tensor
    n_young: int
    structure: dict[str, Tensor]

    @property
    def is_young(self) -> Tensor:
        """(B, P) bool."""
        p = self.mass_msun.shape[-1]
        idx = torch.arange(p, device=self.mass_msun.device)
        return (idx < self.n_young).unsqueeze(0).expand_as(self.mass_msun)

    @property
    def sfr_msun_per_yr(self) -> Tensor:
        """(B, P) each particle's share of the SFR (young mass / 100 Myr; 0 for old)."""
        return torch.where(self.is_young, self.mass_msun / _YOUNG_AGE_YR, 0.0)


def _spiral_azimuth(
    r_over_rd: Tensor,
    phi0: Tensor,
    n_arms: Tensor,
    tan_pitch: Tensor,
    width: Tensor,
    rng: _Rng,
) -> Tensor:
    """Azimuth of a particle placed on a random arm of a logarithmic spiral (B, P)."""
    b, p = r_over_rd.shape
    k = torch.floor(rng.u(b, p) * _col(n_arms.to(rng.dtype)))
    arm = _col(phi0) + 2.0 * math.pi * k / _col(n_arms.to(rng.dtype))
    return arm + torch.log(r_over_rd.clamp_min(1e-3)) / _col(tan_pitch) + _col(width) * rng.n(b, p)


def sample_particles(
    params: Mapping[str, Tensor],
    age_universe_gyr: Tensor,
    config: ParticleMockConfig,
    generator: torch.Generator,
) -> ParticleSet:
    """Draw the star particles of B galaxies (positions, masses, ages, old metallicities).

    Args:
        params: population latents ``{name: (B,)}`` (see :func:`sample_population`) on the
            generator's device, in the working dtype.
        age_universe_gyr: (B,) age of the universe at each redshift, Gyr.
        config: knobs.
        generator: torch random generator on the device of ``params``.

    Returns:
        :class:`ParticleSet` with P = ``config.n_particles``; the young particles' metallicity
        is left NaN (it is the local gas metallicity, set by the caller).
    """
    ref = params["r_d_kpc"]
    dtype, device = ref.dtype, ref.device
    rng = _Rng(generator, dtype)
    b = ref.shape[0]
    p, p_y = config.n_particles, config.n_young
    p_o = p - p_y
    m_b = 10.0 ** params["log10_mstar_bulge_msun"]
    m_d = 10.0 ** params["log10_mstar_disk_msun"]
    sfr = 10.0 ** params["log10_sfr_msun_per_yr"]
    r_d = params["r_d_kpc"]
    inc = torch.deg2rad(params["inclination_deg"])
    pa = torch.deg2rad(params["pa_deg"])
    t_max = age_universe_gyr

    # ---- per-galaxy structure --------------------------------------------------------
    # spiral structure and clumps weaken in quenched galaxies: s = sigmoid((log sSFR + 11)/0.3)
    lg_m = torch.log10(m_b + m_d)
    sf_strength = torch.sigmoid((params["log10_sfr_msun_per_yr"] - lg_m + 11.0) / 0.3)
    n_arms = rng.int_range(config.n_arms[0], config.n_arms[1], b)
    pitch = torch.deg2rad(rng.range(config.pitch_deg, b))
    tan_pitch = torch.tan(pitch)
    phi0 = 2.0 * math.pi * rng.u(b)
    arm_w = rng.range(config.arm_width_rad, b)
    f_arm_old = rng.range(config.arm_fraction_old, b) * sf_strength
    f_arm_young = rng.range(config.arm_fraction_young, b) * sf_strength
    has_bar = rng.u(b) < config.bar_fraction
    bar_len = rng.range(config.bar_length_over_r_d, b) * r_d
    bar_q = rng.range(config.bar_axis_ratio, b)
    bar_capture = rng.range(config.bar_capture, b) * has_bar
    bar_angle = math.pi * rng.u(b)
    h_z = rng.range(config.disk_height_over_r_d, b) * r_d
    n_clumps = rng.int_range(0, config.max_clumps, b) if config.max_clumps > 0 else None
    rho_io = rng.range(config.inside_out_correlation, b)

    # ---- bulge (projected Sersic), evaluated for all old slots, selected below ----------
    n_s = params["sersic_n_bulge"]
    x_g = sample_gamma(_col(2.0 * n_s).expand(b, p_o).contiguous(), generator)
    r_bulge = _col(params["r_eff_bulge_kpc"]) * (x_g / _col(sersic_b(n_s))) ** _col(n_s)
    phi_b = 2.0 * math.pi * rng.u(b, p_o)
    bx_maj = r_bulge * torch.cos(phi_b)
    by_min = _col(params["q_bulge"]) * r_bulge * torch.sin(phi_b)

    # ---- old disk ---------------------------------------------------------------------
    x_d = _gamma2(rng, b, p_o)  # R / R_d
    r_disk = x_d * _col(r_d)
    phi = 2.0 * math.pi * rng.u(b, p_o)
    arm_ramp = 1.0 - torch.exp(-((x_d / config.arm_start_over_r_d) ** 2))
    on_arm = rng.u(b, p_o) < _col(f_arm_old) * arm_ramp
    phi = torch.where(on_arm, _spiral_azimuth(x_d, phi0, n_arms, tan_pitch, arm_w, rng), phi)
    x_pl, y_pl = r_disk * torch.cos(phi), r_disk * torch.sin(phi)
    # bar: inner particles (weight 1 - (R/L)^2) squeezed along the bar's minor axis
    ca, sa = torch.cos(_col(bar_angle)), torch.sin(_col(bar_angle))
    xb, yb = x_pl * ca + y_pl * sa, -x_pl * sa + y_pl * ca
    in_bar = rng.u(b, p_o) < _col(bar_capture) * (1.0 - (r_disk / _col(bar_len)) ** 2).clamp_min(0)
    yb = torch.where(in_bar, yb * _col(bar_q), yb)
    x_pl, y_pl = xb * ca - yb * sa, xb * sa + yb * ca
    z_pl = _col(h_z) * _laplace(rng, b, p_o)
    # ages: non-parametric history, Gaussian copula with radius (outer = younger)
    sfh = sample_sfh(t_max, params["age_disk_gyr"], config, generator)
    z_r = torch.special.ndtri(_exp_disk_cdf(x_d).clamp(1e-6, 1.0 - 1e-6))
    rho = _col(rho_io)
    q_age = torch.special.ndtr(-rho * z_r + torch.sqrt(1.0 - rho**2) * rng.n(b, p_o))
    age_disk = sample_sfh_ages(sfh, q_age)
    lg_z_disk = (
        _col(params["log10_zstar_disk_zsun"])
        + _col(params["zstar_grad_dex_per_kpc"]) * r_disk
        + config.amr_dex_per_gyr * (age_disk - _col(params["age_disk_gyr"]))
        + config.zstar_scatter_dex * rng.n(b, p_o)
    )
    # bulge ages and metallicities
    lg_age_b = torch.log10(_col(params["age_bulge_gyr"])) + config.bulge_age_scatter_dex * rng.n(
        b, p_o
    )
    age_bulge = torch.minimum(10.0**lg_age_b, _col(t_max)).clamp_min(YOUNG_AGE_GYR)
    lg_z_bulge = (
        _col(params["log10_zstar_bulge_zsun"])
        + config.amr_dex_per_gyr * (age_bulge - _col(params["age_bulge_gyr"]))
        + config.zstar_scatter_dex * rng.n(b, p_o)
    )

    # bulge / disk split of the old slots (per-galaxy counts, at least one of each)
    n_b = torch.round(p_o * m_b / (m_b + m_d)).long().clamp(1, p_o - 1)
    is_bulge = torch.arange(p_o, device=device).view(1, p_o) < _col(n_b)
    m_bulge_p = m_b / n_b.to(dtype)
    m_disk_p = m_d / (p_o - n_b).to(dtype)

    # disk projection: incline about the major axis (x), y_sky = y cos i - z sin i
    dx_maj = torch.where(is_bulge, bx_maj, x_pl)
    dy_min = torch.where(
        is_bulge, by_min, y_pl * _col(torch.cos(inc)) - z_pl * _col(torch.sin(inc))
    )
    r_old = torch.where(is_bulge, r_bulge, torch.sqrt(x_pl**2 + y_pl**2))
    mass_old = torch.where(is_bulge, _col(m_bulge_p), _col(m_disk_p))
    age_old = torch.where(is_bulge, age_bulge, age_disk)
    lgz_old = torch.where(is_bulge, lg_z_bulge, lg_z_disk).clamp(_LG_Z_MIN, _LG_Z_MAX)

    # ---- young particles: SFR disk, arms, clumps ---------------------------------------
    r_sfr = params["r_sfr_kpc"]
    x_y = _gamma2(rng, b, p_y)
    r_y = x_y * _col(r_sfr)
    phi_y = 2.0 * math.pi * rng.u(b, p_y)
    ramp_y = 1.0 - torch.exp(-((r_y / (config.arm_start_over_r_d * _col(r_d))) ** 2))
    on_arm_y = rng.u(b, p_y) < _col(f_arm_young) * ramp_y
    phi_y = torch.where(
        on_arm_y, _spiral_azimuth(r_y / _col(r_d), phi0, n_arms, tan_pitch, arm_w, rng), phi_y
    )
    xy, yy = r_y * torch.cos(phi_y), r_y * torch.sin(phi_y)
    age_y = YOUNG_AGE_GYR * rng.u_open(b, p_y)  # constant SFR over (0, 100 Myr]
    if n_clumps is not None:
        nc = config.max_clumps
        # clump centres: young-disk positions on the arms
        xc_r = _gamma2(rng, b, nc) * _col(r_sfr)
        phic = _spiral_azimuth(xc_r / _col(r_d), phi0, n_arms, tan_pitch, arm_w, rng)
        xc, yc = xc_r * torch.cos(phic), xc_r * torch.sin(phic)
        age_c = YOUNG_AGE_GYR * (0.02 + 0.48 * rng.u(b, nc))
        sig_c = rng.range(config.clump_sigma_kpc, b)
        f_clump = rng.range(config.clump_fraction_young, b) * sf_strength * (n_clumps > 0)
        in_clump = rng.u(b, p_y) < _col(f_clump)
        k = torch.floor(rng.u(b, p_y) * _col(n_clumps.clamp_min(1).to(dtype))).long()
        k = k.clamp(0, nc - 1)
        cx_p = torch.gather(xc, 1, k) + _col(sig_c) * rng.n(b, p_y)
        cy_p = torch.gather(yc, 1, k) + _col(sig_c) * rng.n(b, p_y)
        xy = torch.where(in_clump, cx_p, xy)
        yy = torch.where(in_clump, cy_p, yy)
        age_y = torch.where(in_clump, torch.gather(age_c, 1, k), age_y)
    zy = config.young_height_factor * _col(h_z) * _laplace(rng, b, p_y)
    y_dx_maj = xy
    y_dy_min = yy * _col(torch.cos(inc)) - zy * _col(torch.sin(inc))
    mass_y = _col(sfr * _YOUNG_AGE_YR / p_y).expand(b, p_y)

    # ---- assemble and rotate to the sky (PA counter-clockwise from +x) -----------------
    x_maj = torch.cat([y_dx_maj, dx_maj], -1)
    y_min = torch.cat([y_dy_min, dy_min], -1)
    c, s = torch.cos(_col(pa)), torch.sin(_col(pa))
    structure = {
        "n_arms": n_arms.to(dtype),
        "pitch_deg": torch.rad2deg(pitch),
        "arm_fraction_young": f_arm_young,
        "has_bar": has_bar.to(dtype),
        "n_clumps": (n_clumps if n_clumps is not None else torch.zeros_like(n_arms)).to(dtype),
        "disk_height_kpc": h_z,
    }
    return ParticleSet(
        dx_kpc=x_maj * c - y_min * s,
        dy_kpc=x_maj * s + y_min * c,
        r_plane_kpc=torch.cat([torch.sqrt(xy**2 + yy**2), r_old], -1),
        mass_msun=torch.cat([mass_y, mass_old], -1),
        age_gyr=torch.cat([age_y, age_old], -1),
        lg_zstar_zsun=torch.cat([torch.full_like(mass_y, float("nan")), lgz_old], -1),
        is_bulge=torch.cat([torch.zeros_like(mass_y, dtype=torch.bool), is_bulge], -1),
        n_young=p_y,
        structure=structure,
    )


# ------------------------------------------------------------------------------------------
# Binning and deposits
# ------------------------------------------------------------------------------------------


def _scatter_add(values: Tensor, pix: Tensor, weight: Tensor, shape: tuple[int, int]) -> Tensor:
    """sum_p values[b, k, p] * weight[b, p] into pixel pix[b, p] -> (B, K, H, W)."""
    b, k, p = values.shape
    h, w = shape
    hw = h * w
    base = (torch.arange(b * k, device=values.device) * hw).view(b, k, 1)
    flat = (base + pix.unsqueeze(1)).reshape(-1)
    out = torch.zeros(b * k * hw, dtype=values.dtype, device=values.device)
    out.index_add_(0, flat, (values * weight.unsqueeze(1)).reshape(-1))
    return out.view(b, k, h, w)


def bin_particles(x_pix: Tensor, y_pix: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """Nearest-pixel binning: each particle's values go to the pixel that contains it.

    Pixel (i, j) covers x in [j - 1/2, j + 1/2), y in [i - 1/2, i + 1/2) (pixel centres at
    integers); particles outside the grid are dropped, so ``out.sum((-1, -2))`` equals the sum
    over the particles inside exactly (up to float addition order).

    Args:
        x_pix, y_pix: (B, P) particle positions in pixels.
        values: (B, K, P) quantities to bin.
        shape: (H, W).

    Returns:
        (B, K, H, W) sums per pixel.
    """
    h, w = shape
    ix = torch.floor(x_pix + 0.5).long()
    iy = torch.floor(y_pix + 0.5).long()
    inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    pix = iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)
    return _scatter_add(values, pix, inside.to(values.dtype), shape)


def _deposit_cic(x_pix: Tensor, y_pix: Tensor, values: Tensor, shape: tuple[int, int]) -> Tensor:
    """Cloud-in-cell (bilinear) deposit: a particle at (x, y) shares its values among the four
    nearest pixel centres with weights (1 - |dx|)(1 - |dy|); shares off the grid are dropped."""
    h, w = shape
    x0f, y0f = torch.floor(x_pix), torch.floor(y_pix)
    fx, fy = x_pix - x0f, y_pix - y0f
    x0, y0 = x0f.long(), y0f.long()
    out = None
    for ox, wx in ((0, 1.0 - fx), (1, fx)):
        for oy, wy in ((0, 1.0 - fy), (1, fy)):
            ix, iy = x0 + ox, y0 + oy
            inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
            pix = iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)
            part = _scatter_add(values, pix, wx * wy * inside.to(values.dtype), shape)
            out = part if out is None else out + part
    assert out is not None
    return out


#: Light deposit schemes: name -> function (x_pix, y_pix, values (B,K,P), shape) -> (B,K,H,W).
_DEPOSITS: dict[str, Callable[[Tensor, Tensor, Tensor, tuple[int, int]], Tensor]] = {
    "ngp": bin_particles,
    "cic": _deposit_cic,
}


def deposit_particles(
    x_pix: Tensor, y_pix: Tensor, values: Tensor, shape: tuple[int, int], scheme: str = "cic"
) -> Tensor:
    """Deposit particle quantities (B, K, P) on a (H, W) grid with ``scheme`` ("cic", "ngp")."""
    try:
        fn = _DEPOSITS[scheme]
    except KeyError:
        raise ValueError(f"unknown deposit scheme {scheme!r}; known: {sorted(_DEPOSITS)}") from None
    return fn(x_pix, y_pix, values, shape)


def _gather_pixels(maps: Tensor, x_pix: Tensor, y_pix: Tensor) -> Tensor:
    """Values of (B, K, H, W) maps at the nearest pixel (clamped to the grid) -> (B, K, P)."""
    b, k, h, w = maps.shape
    ix = torch.floor(x_pix + 0.5).long().clamp(0, w - 1)
    iy = torch.floor(y_pix + 0.5).long().clamp(0, h - 1)
    pix = (iy * w + ix).unsqueeze(1).expand(b, k, -1)
    return torch.gather(maps.reshape(b, k, h * w), 2, pix)


def _periodic_gaussian_fft(img: Tensor, sigma_pix: Tensor) -> Tensor:
    """Periodic Gaussian smoothing of (B, H, W) with per-image sigma (B,) pixels (FFT)."""
    b, h, w = img.shape
    fy = torch.fft.fftfreq(h, dtype=img.dtype, device=img.device).view(1, h, 1)
    fx = torch.fft.rfftfreq(w, dtype=img.dtype, device=img.device).view(1, 1, -1)
    s2 = (sigma_pix**2).view(b, 1, 1)
    transfer = torch.exp(-2.0 * math.pi**2 * s2 * (fx**2 + fy**2))
    return torch.fft.irfft2(torch.fft.rfft2(img) * transfer, s=(h, w))


def _random_field(rng: _Rng, b: int, shape: tuple[int, int], sigma_pix: Tensor) -> Tensor:
    """Unit-variance Gaussian random field (B, H, W) with Gaussian correlation of width
    sigma_pix (B,) (periodic white noise smoothed, divided by its exact standard deviation)."""
    h, w = shape
    field = _periodic_gaussian_fft(rng.n(b, h, w), sigma_pix)
    # variance of smoothed unit white noise = mean over the full spectrum of |T|^2 (separable)
    fy = torch.fft.fftfreq(h, dtype=rng.dtype, device=rng.device).view(1, h)
    fx = torch.fft.fftfreq(w, dtype=rng.dtype, device=rng.device).view(1, w)
    s2 = (sigma_pix**2).view(b, 1)
    var = torch.exp(-4.0 * math.pi**2 * s2 * fy**2).mean(-1) * torch.exp(
        -4.0 * math.pi**2 * s2 * fx**2
    ).mean(-1)
    return field / torch.sqrt(var).view(b, 1, 1)


def _gaussian_blur(img: Tensor, sigma_pix: Tensor) -> Tensor:
    """Blur (B, H, W) with a pixel-integrated Gaussian of per-image sigma (B,) pixels.

    Separable direct convolution (grouped over images) with zero padding, kernel out to
    4 sigma: non-negative input gives non-negative output, and the kernel sums to 1 (light is
    conserved except what leaves the grid).  The 1-D weights are
    Phi((j + 1/2) / sigma) - Phi((j - 1/2) / sigma), normalised, so sigma << 1 tends to the
    identity.
    """
    b, h, w = img.shape
    rad = int(min(max(h, w), max(1, math.ceil(4.0 * float(sigma_pix.max())))))
    j = torch.arange(-rad, rad + 1, dtype=img.dtype, device=img.device)
    s = sigma_pix.clamp_min(1e-3).view(b, 1)
    k = torch.special.ndtr((j + 0.5) / s) - torch.special.ndtr((j - 0.5) / s)
    k = k / k.sum(-1, keepdim=True)
    t = img.unsqueeze(0)  # (1, B, H, W): one group per image
    t = torch.nn.functional.conv2d(t, k.view(b, 1, 1, -1), padding=(0, rad), groups=b)
    t = torch.nn.functional.conv2d(t, k.view(b, 1, -1, 1), padding=(rad, 0), groups=b)
    return t.squeeze(0)


def _ring_index(r_pix: Tensor, n_rings: int) -> Tensor:
    """Ring of a (deprojected) radius in pixels: floor(8 log2(1 + r)), clamped to n_rings - 1
    (rings about 1 pixel wide at r = 10, widening outwards)."""
    return torch.floor(8.0 * torch.log2(1.0 + r_pix)).long().clamp(0, n_rings - 1)


def _mass_weighted_map(
    mass: Tensor, mass_q: Tensor, count: Tensor, ring: Tensor, global_q: Tensor, min_count: int
) -> Tensor:
    """Mass-weighted mean of a particle quantity q per pixel, sum(m q) / sum(m), (B, H, W).

    Pixels without particles take the radial profile: the mass-weighted mean over rings of
    deprojected radius (``ring``, (B, H, W) integer), each pooled with its two neighbours on
    either side; rings whose pool holds fewer than ``min_count`` particles (``count`` is the
    binned particle number) take the value of the nearest sufficient ring inwards (outwards for
    the innermost), and a galaxy without any takes ``global_q`` (B,).  Every value is a
    mass-weighted average of particle values, so the map stays within their range.
    """
    b, h, w = mass.shape
    out = torch.where(mass > 0, mass_q / mass.clamp_min(1e-30), torch.nan)
    n_rings = int(ring.max()) + 1
    flat = ring.reshape(b, -1)

    def ring_sum(x: Tensor) -> Tensor:
        r = torch.zeros(b, 1, n_rings, dtype=x.dtype, device=x.device)
        r[:, 0].scatter_add_(1, flat, x.reshape(b, -1))
        box = torch.ones(1, 1, 5, dtype=x.dtype, device=x.device)
        return torch.nn.functional.conv1d(r, box, padding=2)[:, 0]  # pooled over +-2 rings

    m_ring, mq_ring, n_ring = ring_sum(mass), ring_sum(mass_q), ring_sum(count)
    valid = (n_ring >= min_count) & (m_ring > 0)
    idx = torch.arange(n_rings, device=mass.device).expand(b, n_rings)
    last = torch.cummax(torch.where(valid, idx, -1), dim=1).values  # last valid ring <= i
    first = torch.where(valid, idx, n_rings).min(1, keepdim=True).values.clamp_max(n_rings - 1)
    src = torch.where(last >= 0, last, first)
    prof = torch.gather(mq_ring, 1, src) / torch.gather(m_ring, 1, src).clamp_min(1e-30)
    prof = torch.where(torch.gather(valid, 1, src), prof, global_q.view(b, 1))
    ring_val = torch.gather(prof, 1, flat).view(b, h, w)
    return torch.where(torch.isnan(out), ring_val, out)


def weighted_half_radius(radius: Tensor, weights: Tensor, fraction: float = 0.5) -> Tensor:
    """Radius enclosing ``fraction`` of the weight, linearly interpolated between particles.

    Args:
        radius: (B, P) distances (>= 0).
        weights: (B, K, P) non-negative weights (K quantities, e.g. mass and band fluxes).

    Returns:
        (B, K) radius (same unit as ``radius``).
    """
    b, k, p = weights.shape
    r_sorted, order = torch.sort(radius, dim=-1)
    w = torch.gather(weights, 2, order.unsqueeze(1).expand(b, k, p))
    cw = torch.cumsum(w, -1)
    target = fraction * cw[..., -1:]
    idx = torch.searchsorted(cw.contiguous(), target.contiguous()).clamp(0, p - 1)  # (B, K, 1)
    rs = r_sorted.unsqueeze(1).expand(b, k, p)
    r_hi = torch.gather(rs, 2, idx)
    r_lo = torch.gather(rs, 2, (idx - 1).clamp_min(0))
    c_hi = torch.gather(cw, 2, idx)
    c_lo = torch.where(idx > 0, torch.gather(cw, 2, (idx - 1).clamp_min(0)), 0.0)
    f = ((target - c_lo) / (c_hi - c_lo).clamp_min(1e-30)).clamp(0.0, 1.0)
    return (r_lo + f * (r_hi - r_lo)).squeeze(-1)


# ------------------------------------------------------------------------------------------
# Maps
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParticleMaps:
    """Maps of B galaxies on the working grid (the stamp plus ``margin_pix`` on every side).

    All (B, Hw, Ww) unless said otherwise; per-pixel masses and SFRs are pixel sums.

    Attributes:
        mstar_msun: stellar mass per pixel (nearest-pixel binning of all particles).
        sfr_msun_per_yr: SFR per pixel (young particles' mass / 100 Myr).
        mass_weighted_zstar_zsun: mass-weighted Z/Zsun (linear), empty pixels filled.
        age_gyr: mass-weighted age, Gyr, empty pixels filled.
        sigma_sfr_smooth_msun_per_yr_per_kpc2: SFR surface density smoothed over
            ``gas_smoothing_kpc`` (sky-projected), the input of the gas maps.
        sigma_gas_msun_per_pc2, sigma_hi_msun_per_pc2: from :mod:`galae.physics.gas`.
        oh12_gas: gas-phase 12 + log(O/H).
        av_face_on_mag: local face-on V-band attenuation.
        av_mag: effective V attenuation of the disk stars at the inclination (slab).
        n_particles: star particles per pixel, all ages.
        n_young_particles: star particles younger than 100 Myr per pixel.
        pixel_area_kpc2: (B,).
    """

    mstar_msun: Tensor
    sfr_msun_per_yr: Tensor
    mass_weighted_zstar_zsun: Tensor
    age_gyr: Tensor
    sigma_sfr_smooth_msun_per_yr_per_kpc2: Tensor
    sigma_gas_msun_per_pc2: Tensor
    sigma_hi_msun_per_pc2: Tensor
    oh12_gas: Tensor
    av_face_on_mag: Tensor
    av_mag: Tensor
    n_particles: Tensor
    n_young_particles: Tensor
    pixel_area_kpc2: Tensor

    def named(self, margin: int = 0) -> dict[str, Tensor]:
        """Maps ``{name: (B, H, W)}`` with the names of :data:`MAP_UNITS` and
        :data:`EXTRA_MAP_UNITS`, cropped by ``margin`` pixels on every side, with the floors of
        :meth:`galae.physics.maps.GalaxyMaps.named`."""
        area = self.pixel_area_kpc2.view(-1, 1, 1)
        out = named_maps(
            sigma_mstar_msun_per_kpc2=self.mstar_msun / area,
            sigma_sfr_msun_per_yr_per_kpc2=self.sfr_msun_per_yr / area,
            lg_zstar_zsun=torch.log10(self.mass_weighted_zstar_zsun),
            oh12_gas=self.oh12_gas,
            age_gyr=self.age_gyr,
            sigma_gas_msun_per_pc2=self.sigma_gas_msun_per_pc2,
            sigma_hi_msun_per_pc2=self.sigma_hi_msun_per_pc2,
            av_mag=self.av_mag,
        )
        out.update(
            {
                "mstar_msun": self.mstar_msun,
                "sfr_msun_per_yr": self.sfr_msun_per_yr,
                "n_particles": self.n_particles,
                "n_young_particles": self.n_young_particles,
            }
        )
        if margin > 0:
            out = {k: v[:, margin:-margin, margin:-margin] for k, v in out.items()}
        return out


# ------------------------------------------------------------------------------------------
# Contaminants
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Contaminants:
    """Foreground stars and neighbouring galaxies of B stamps.

    Attributes:
        light_nmgy: (B, C, Hw, Ww) their light before the PSF on the working grid, nmgy/pixel.
        n_stars: (B,) number of foreground stars.
        n_neighbours: (B,) number of neighbouring galaxies.
    """

    light_nmgy: Tensor
    n_stars: Tensor
    n_neighbours: Tensor

    @property
    def contaminated(self) -> Tensor:
        """(B,) bool: any contaminant in the stamp."""
        return (self.n_stars + self.n_neighbours) > 0


def _band_wavelengths_angstrom(bands: tuple[str, ...]) -> list[float]:
    """Effective wavelengths of SDSS bands (names 'u'...'z', optionally with a survey prefix)."""
    out = []
    for band in bands:
        key = band.split("-")[-1].strip()
        if key not in SDSS_BAND_MODELS:
            raise ValueError(
                f"band {band!r}: contaminant colours need an SDSS band (one of "
                f"{tuple(SDSS_BAND_MODELS)})"
            )
        out.append(SDSS_BAND_MODELS[key].effective_wavelength_angstrom)
    return out


def _positions_in_annulus(
    rng: _Rng, b: int, s: int, r_min_pix: float, r_max_pix: float
) -> tuple[Tensor, Tensor]:
    """(B, S) offsets uniform in area within r_min <= r <= r_max pixels."""
    r2 = r_min_pix**2 + (r_max_pix**2 - r_min_pix**2) * rng.u(b, s)
    theta = 2.0 * math.pi * rng.u(b, s)
    r = torch.sqrt(r2)
    return r * torch.cos(theta), r * torch.sin(theta)


def _counts(rng: _Rng, b: int, fraction: float, max_n: int) -> Tensor:
    """(B,) counts: 0 with probability 1 - fraction, else uniform in 1..max_n."""
    if max_n == 0:
        return torch.zeros(b, dtype=torch.long, device=rng.device)
    present = rng.u(b) < fraction
    return torch.where(present, rng.int_range(1, max_n, b), 0)


def sample_contaminants(
    b: int,
    work_shape: tuple[int, int],
    margin: int,
    config: ParticleMockConfig,
    sps: SPSTable,
    generator: torch.Generator,
    dtype: torch.dtype,
    settings: RenderSettings,
) -> Contaminants:
    """Foreground stars and neighbouring galaxies for B stamps (light before the PSF).

    Stars: point sources (cloud-in-cell deposited, so that the PSF convolution makes them PSF
    images) with a Planck spectrum B_nu(T) evaluated at the bands' effective wavelengths,
    normalised to a magnitude in the band nearest 6200 A.  Neighbours: Sersic profiles from
    :func:`galae.render.raster.sersic_image` times the colour of a single stellar population
    (``sps.ssp_flux_nmgy_per_msun``) at a random redshift, age and metallicity, normalised the
    same way.  Positions are uniform in area at least ``contaminant_min_distance_arcsec`` from
    the stamp centre, out to the stamp's corners.
    """
    rng = _Rng(generator, dtype)
    hw_, ww_ = work_shape
    h, w = hw_ - 2 * margin, ww_ - 2 * margin
    bands = tuple(sps.bands)
    lam = torch.tensor(_band_wavelengths_angstrom(bands), dtype=dtype, device=rng.device)
    ref = int(torch.argmin((lam - SDSS_BAND_MODELS["r"].effective_wavelength_angstrom).abs()))
    n_c = len(bands)
    cx0, cy0 = (ww_ - 1) / 2.0, (hw_ - 1) / 2.0
    r_min = config.contaminant_min_distance_arcsec / config.pixel_scale_arcsec
    r_max = max(r_min + 1.0, 0.5 * math.hypot(h, w))
    light = torch.zeros(b, n_c, hw_, ww_, dtype=dtype, device=rng.device)

    n_stars = _counts(rng, b, config.star_fraction, config.max_stars)
    if config.max_stars > 0:
        s = config.max_stars
        active = torch.arange(s, device=rng.device).view(1, s) < _col(n_stars)
        ox, oy = _positions_in_annulus(rng, b, s, r_min, r_max)
        temp = rng.range(config.star_temperature_k, b, s)
        mag = rng.range(config.star_mag_r, b, s)
        # Planck: B_nu ~ nu^3 / (exp(h nu / k T) - 1) ~ lambda^-3 / expm1(c2 / (lambda T))
        x = _PLANCK_C2_ANGSTROM_K / (lam.view(1, n_c, 1) * temp.unsqueeze(1))
        bnu = lam.view(1, n_c, 1) ** -3 / torch.expm1(x)
        colour = bnu / bnu[:, ref : ref + 1]
        flux = 10.0 ** (-0.4 * (mag - 22.5)).unsqueeze(1) * colour * active.unsqueeze(1)
        light = light + _deposit_cic(cx0 + ox, cy0 + oy, flux, work_shape)

    n_nb = _counts(rng, b, config.neighbour_fraction, config.max_neighbours)
    if config.max_neighbours > 0:
        s = config.max_neighbours
        active = torch.arange(s, device=rng.device).view(1, s) < _col(n_nb)
        ox, oy = _positions_in_annulus(rng, b, s, r_min, r_max)
        r_half = rng.range(config.neighbour_r_half_arcsec, b, s) / config.pixel_scale_arcsec
        n_s = rng.range(config.neighbour_sersic_n, b, s).clamp(
            settings.sersic_n_min, settings.sersic_n_max
        )
        q = rng.range(config.neighbour_q, b, s)
        pa = math.pi * rng.u(b, s)
        z_nb = rng.range(config.neighbour_redshift, b * s)
        lg_age = rng.range(config.neighbour_lg_age_gyr, b * s, 1)
        lg_z = rng.range(config.neighbour_lg_z_zsun, b * s, 1)
        mag = rng.range(config.neighbour_mag_r, b, s)
        sed = sps.ssp_flux_nmgy_per_msun(z_nb, lg_age, lg_z)[..., 0].reshape(b, s, n_c)
        sed = sed / sed[..., ref : ref + 1]
        flux = 10.0 ** (-0.4 * (mag - 22.5)).unsqueeze(-1) * sed * active.unsqueeze(-1)
        prof = sersic_image(
            r_half.reshape(-1),
            n_s.reshape(-1),
            q.reshape(-1),
            pa.reshape(-1),
            (cx0 + ox).reshape(-1),
            (cy0 + oy).reshape(-1),
            work_shape,
            settings,
        ).reshape(b, s, 1, hw_, ww_)
        light = light + (flux.unsqueeze(-1).unsqueeze(-1) * prof).sum(1)
    return Contaminants(light_nmgy=light, n_stars=n_stars, n_neighbours=n_nb)


# ------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------


def _batch_seed(seed: int, index: int) -> int:
    """An independent 63-bit seed for batch ``index`` of run ``seed``."""
    state = np.random.SeedSequence([int(seed), 7, int(index)]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def _check_conditions(cond: ObservingConditions, n: int, config: ParticleMockConfig) -> None:
    if cond.n != n:
        raise ValueError(f"conditions are for {cond.n} galaxies, n is {n}")
    if tuple(cond.bands) != tuple(config.bands):
        raise ValueError(f"conditions bands {cond.bands} differ from config bands {config.bands}")
    if not math.isclose(cond.pixel_scale_arcsec, config.pixel_scale_arcsec, rel_tol=1e-6):
        raise ValueError(
            f"conditions pixel scale {cond.pixel_scale_arcsec} differs from config "
            f"pixel_scale_arcsec {config.pixel_scale_arcsec}"
        )
    for name in ("psf_fwhm_arcsec", "sky_sigma_nmgy", "gain_e_per_nmgy", "redshift"):
        arr = np.asarray(getattr(cond, name))
        if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
            raise ValueError(f"conditions.{name} must be finite and > 0")


def _render_batch(
    params: dict[str, Tensor],
    cond: ObservingConditions,
    config: ParticleMockConfig,
    sps: SPSTable,
    generator: torch.Generator,
    settings: RenderSettings,
) -> dict[str, Any]:
    """Particles -> maps, light, images and truths of one batch of B galaxies (tensors)."""
    ref = params["r_d_kpc"]
    dtype, device = ref.dtype, ref.device
    rng = _Rng(generator, dtype)
    b = ref.shape[0]
    h, w = config.shape
    m = config.margin_pix
    work = (h + 2 * m, w + 2 * m)
    ps = config.pixel_scale_arcsec

    def t(x: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

    z = t(cond.redshift)
    fwhm = t(cond.psf_fwhm_arcsec)
    geom = galaxy_geometry(params, z, ps, work, settings)
    kpc_pix = geom.kpc_per_pix
    area = geom.pixel_area_kpc2
    cos_i = geom.cos_inclination
    t_univ = cosmology.age_of_universe_gyr(z)

    parts = sample_particles(params, t_univ, config, generator)
    x_pix = _col(geom.center_x_pix) + parts.dx_kpc / _col(kpc_pix)
    y_pix = _col(geom.center_y_pix) + parts.dy_kpc / _col(kpc_pix)
    p_y = parts.n_young

    # ---- gas metallicity map and the young particles' metallicity ----------------------
    field = _random_field(rng, b, work, config.oh12_correlation_kpc / kpc_pix)
    oh12_map = (
        gas.oh12_profile(params["oh12_gas"], params["oh12_grad_dex_per_kpc"], geom.r_disk_kpc)
        + config.oh12_scatter_dex * field
    )
    oh12_map = oh12_map.clamp(7.0, 9.6)
    field_p = _gather_pixels(field.unsqueeze(1), x_pix[:, :p_y], y_pix[:, :p_y])[:, 0]
    oh12_young = (
        gas.oh12_profile(
            params["oh12_gas"], params["oh12_grad_dex_per_kpc"], parts.r_plane_kpc[:, :p_y]
        )
        + config.oh12_scatter_dex * field_p
    )
    lgz_young = gas.oh12_to_lg_zgas_zsun(oh12_young.clamp(7.0, 9.6)).clamp(_LG_Z_MIN, _LG_Z_MAX)
    lg_z = torch.cat([lgz_young, parts.lg_zstar_zsun[:, p_y:]], -1)

    # ---- binned maps on the working grid -----------------------------------------------
    mass = parts.mass_msun
    sfr_p = parts.sfr_msun_per_yr
    z_lin = 10.0**lg_z
    binned = bin_particles(
        x_pix,
        y_pix,
        torch.stack(
            [
                mass,
                sfr_p,
                mass * z_lin,
                mass * parts.age_gyr,
                torch.ones_like(mass),
                (torch.arange(mass.shape[-1], device=mass.device) < p_y)
                .to(mass.dtype)
                .expand_as(mass),
            ],
            1,
        ),
        work,
    )
    mstar_map, sfr_map, mz_map, mage_map, count_map, young_count_map = binned.unbind(1)
    m_tot = mass.sum(-1)
    glob_z = (mass * z_lin).sum(-1) / m_tot
    glob_age = (mass * parts.age_gyr).sum(-1) / m_tot
    ring = _ring_index(geom.r_disk_kpc / kpc_pix.view(-1, 1, 1), _N_RINGS)
    nmin = config.fill_min_particles
    z_map = _mass_weighted_map(mstar_map, mz_map, count_map, ring, glob_z, nmin)
    age_map = _mass_weighted_map(mstar_map, mage_map, count_map, ring, glob_age, nmin)

    sigma_sfr = sfr_map / area.view(-1, 1, 1)
    sigma_sfr_smooth = _gaussian_blur(sigma_sfr, config.gas_smoothing_kpc / kpc_pix)
    # sky-plane gas of a disk whose face-on surface densities are q_disk times the sky's (the
    # renderer's deprojection, so that model and truth maps share it)
    q_d = geom.q_disk.view(-1, 1, 1)
    sigma_gas = gas.gas_surface_density_msun_per_pc2(sigma_sfr_smooth, q_d)
    sigma_hi = gas.hi_surface_density_msun_per_pc2(sigma_gas, q_d)

    # ---- dust: A_V,0 = kappa Sigma_gas,face-on Z_gas/Zsun; slab at the inclination -------
    # The dust keeps the normalisation the mocks were made with: Kennicutt's (1998) law read
    # with these (Kroupa) SFRs as if they were his Salpeter ones, which gives 0.12 dex less gas
    # than the gas maps above (galae.physics.gas), inside the 0.15 dex dust-to-gas scatter; so
    # particle data sets made before the gas maps' IMF correction are made again the same.
    gas_face_on = gas.gas_surface_density_msun_per_pc2(
        sigma_sfr_smooth * cos_i.view(-1, 1, 1) / gas.SALPETER_OVER_KROUPA_SFR
    )
    kappa = AV_PER_GAS_MSUN_PC2 * 10.0 ** (config.dust_to_gas_scatter_dex * rng.n(b))
    z_gas = 10.0 ** gas.oh12_to_lg_zgas_zsun(oh12_map)
    av0 = (kappa.view(-1, 1, 1) * gas_face_on * z_gas).clamp(0.0, config.av_face_on_max_mag)
    t_v = dust.slab_transmission(av0 / dust.MAG_PER_TAU, cos_i.view(-1, 1, 1))
    av_eff = (-2.5 * torch.log10(t_v)).clamp_min(0.0)

    maps = ParticleMaps(
        mstar_msun=mstar_map,
        sfr_msun_per_yr=sfr_map,
        mass_weighted_zstar_zsun=z_map,
        age_gyr=age_map,
        sigma_sfr_smooth_msun_per_yr_per_kpc2=sigma_sfr_smooth,
        sigma_gas_msun_per_pc2=sigma_gas,
        sigma_hi_msun_per_pc2=sigma_hi,
        oh12_gas=oh12_map,
        av_face_on_mag=av0,
        av_mag=av_eff,
        n_particles=count_map,
        n_young_particles=young_count_map,
        pixel_area_kpc2=area,
    )

    # ---- light ------------------------------------------------------------------------
    k_band = sps.calzetti_k_band(z).to(dtype)[..., None, None]  # (B, C, 1, 1)
    av0_c = av0.unsqueeze(1)
    cos_i_c = cos_i.view(-1, 1, 1, 1)
    t_slab = dust.slab_transmission(dust.av_to_tau_band(av0_c, k_band), cos_i_c)
    av_birth = dust.BIRTH_CLOUDS[config.birth_clouds](av0_c, cos_i_c)  # (B, 1, H, W)
    t_birth = dust.screen_transmission(dust.av_to_tau_band(av_birth, k_band))
    f_old = sps.ssp_flux_nmgy_per_msun(z, torch.log10(parts.age_gyr[:, p_y:]), lg_z[:, p_y:]).to(
        dtype
    )  # (B, C, P_o)
    f_young = sps.young_flux_nmgy_per_msun_yr(z, lg_z[:, :p_y]).to(dtype)  # (B, C, P_y)
    ts_p = _gather_pixels(t_slab, x_pix, y_pix)  # (B, C, P)
    tb_p = _gather_pixels(t_birth, x_pix[:, :p_y], y_pix[:, :p_y])
    light_old = mass[:, p_y:].unsqueeze(1) * f_old * ts_p[..., p_y:]
    light_young = sfr_p[:, :p_y].unsqueeze(1) * f_young * ts_p[..., :p_y] * tb_p
    light_p = torch.cat([light_young, light_old], -1)  # (B, C, P) attenuated, nmgy
    galaxy_light = deposit_particles(x_pix, y_pix, light_p, work, config.light_deposit)

    cont = sample_contaminants(b, work, m, config, sps, generator, dtype, settings)
    psf = psf_mod.GaussianPSF(fwhm)
    model_w = psf_mod.convolve(galaxy_light + cont.light_nmgy, psf, ps, settings)
    model = model_w[..., m : m + h, m : m + w].clamp_min(0.0)
    noisy, sigma = add_noise(
        model,
        sky_sigma_nmgy=t(cond.sky_sigma_nmgy),
        gain_e_per_nmgy=t(cond.gain_e_per_nmgy),
        generator=generator,
    )
    mask = torch.zeros_like(model, dtype=torch.bool)
    if config.contaminant_mask_nsigma > 0:
        cont_img = psf_mod.convolve(cont.light_nmgy, psf, ps, settings)[..., m : m + h, m : m + w]
        mask = cont_img > config.contaminant_mask_nsigma * sigma

    # ---- integrated truths --------------------------------------------------------------
    r_proj = torch.sqrt(parts.dx_kpc**2 + parts.dy_kpc**2)
    weights = torch.cat([mass.unsqueeze(1), light_p], 1)  # (B, 1 + C, P)
    r_half_kpc = weighted_half_radius(r_proj, weights)
    kpc_arcsec = kpc_pix / ps
    flux_tot = light_p.sum(-1)  # (B, C)
    bulge_flux = (light_p * parts.is_bulge.unsqueeze(1)).sum(-1)
    bands = tuple(sps.bands)
    lam = _band_wavelengths_angstrom(bands)
    ref = int(
        np.argmin([abs(x - SDSS_BAND_MODELS["r"].effective_wavelength_angstrom) for x in lam])
    )
    r_hl = r_half_kpc[:, 1 + ref]
    inside_2r = r_proj < 2.0 * _col(r_hl)
    sfr_tot = sfr_p.sum(-1)
    truth_params: dict[str, Tensor] = {name: params[name] for name in REGISTRY.names}
    truth_params.update(
        {
            "log10_mstar_msun": torch.log10(m_tot),
            "log10_sfr_msun_per_yr": torch.log10(sfr_tot),
            "r_half_mass_kpc": r_half_kpc[:, 0],
            "r_half_mass_arcsec": r_half_kpc[:, 0] / kpc_arcsec,
            "r_half_light_kpc": r_hl,
            "r_half_light_arcsec": r_hl / kpc_arcsec,
            "log10_mstar_2rhalf_msun": torch.log10((mass * inside_2r).sum(-1).clamp_min(1e-30)),
            "log10_sfr_2rhalf_msun_per_yr": torch.log10(
                (sfr_p * inside_2r).sum(-1).clamp_min(1e-30)
            ),
            "age_mass_weighted_gyr": glob_age,
            "log10_zstar_mass_weighted_zsun": torch.log10(glob_z),
            "kpc_per_arcsec": kpc_arcsec,
            "contaminated": cont.contaminated.to(dtype),
            "n_foreground_stars": cont.n_stars.to(dtype),
            "n_neighbours": cont.n_neighbours.to(dtype),
        }
    )
    for i, band in enumerate(bands):
        truth_params[f"mag_{band}"] = 22.5 - 2.5 * torch.log10(flux_tot[:, i].clamp_min(1e-30))
        truth_params[f"r_half_arcsec_{band}"] = r_half_kpc[:, 1 + i] / kpc_arcsec
        truth_params[f"bulge_to_total_{band}"] = bulge_flux[:, i] / flux_tot[:, i].clamp_min(1e-30)
    truth_params.update(parts.structure)

    return {
        "images": noisy,
        "sigma": sigma,
        "mask": mask,
        "psf_fwhm_arcsec": fwhm,
        "redshift": z,
        "model_images": model,
        "truth": {"params": truth_params, "maps": maps.named(margin=m)},
        "_particles": (parts, x_pix - m, y_pix - m),
    }


def _to_numpy(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    return x


def generate_particle_mocks(
    n: int,
    seed: int,
    config: ParticleMockConfig | Mapping[str, Any] | None = None,
    sps: SPSTable | None = None,
    conditions: ObservingConditions | None = None,
    device: str | torch.device = "cpu",
    settings: RenderSettings = DEFAULT_SETTINGS,
    return_particles: bool = False,
) -> dict[str, Any]:
    """Generate n particle mock galaxies.

    Global properties come from :func:`galae.physics.population.sample_population` (seeded by
    ``seed``), observing conditions from :func:`galae.data.conditions.sample_sdss_conditions`
    (``numpy.random.default_rng(seed)``) unless given; galaxies are then made in batches of
    ``config.batch_size``, each with its own ``torch.Generator`` on ``device`` seeded from
    (seed, batch index).  Same (n, seed, config, device) -> identical output.

    Args:
        n: number of galaxies (>= 1).
        seed: integer seed.
        config: :class:`ParticleMockConfig`, or a mapping for
            :meth:`ParticleMockConfig.from_dict`; default the defaults.
        sps: the population table (its bands must equal ``config.bands``); default
            ``SPSTable.load("sdss")``.
        conditions: observing conditions for the n galaxies; default drawn.
        device: where to compute.
        settings: numerical settings of the renderer pieces (PSF convolution, Sersic neighbours).
        return_particles: also return the particles of each galaxy under "particles" (a list of
            per-batch dicts of numpy arrays; for tests and plots).

    Returns:
        The batch layout of :class:`galae.data.hdf5.H5Writer` (numpy arrays in the config's
        dtype, the mask bool): ``images``, ``sigma``, ``mask`` (all False unless
        ``contaminant_mask_nsigma`` > 0; True = ignored), ``model_images`` (noiseless, with
        contaminants), ``psf_fwhm_arcsec`` (n, C), ``redshift`` (n,), and ``truth`` =
        {"params": {name: (n,)}, "maps": {name: (n, H, W)}} (maps: the names of
        :data:`galae.physics.maps.MAP_UNITS` and :data:`EXTRA_MAP_UNITS`).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if config is None:
        config = ParticleMockConfig()
    elif not isinstance(config, ParticleMockConfig):
        config = ParticleMockConfig.from_dict(config)
    if sps is None:
        from galae.physics.sps import SPSTable

        sps = SPSTable.load("sdss")
    if tuple(sps.bands) != tuple(config.bands):
        raise ValueError(
            f"population table bands {tuple(sps.bands)} differ from config bands {config.bands}"
        )
    _band_wavelengths_angstrom(tuple(config.bands))
    device = checked_device(device)
    dtype = config.torch_dtype

    if conditions is None:
        cond_cfg = ConditionsConfig(
            redshift_min=config.redshift_min,
            redshift_max=config.redshift_max,
            redshift_distribution=config.redshift_distribution,
            pixel_scale_arcsec=config.pixel_scale_arcsec,
        )
        conditions = sample_sdss_conditions(
            n, np.random.default_rng(int(seed)), bands=config.bands, config=cond_cfg
        )
    _check_conditions(conditions, n, config)

    pop = sample_population(
        n,
        torch.Generator().manual_seed(int(seed)),
        dtype=torch.float64,
        log10_mstar_range=(config.log10_mstar_min, config.log10_mstar_max),
        max_offset_arcsec=config.max_offset_arcsec,
    )
    pieces: list[dict[str, Any]] = []
    particles: list[dict[str, Any]] = []
    for k, start in enumerate(range(0, n, config.batch_size)):
        stop = min(n, start + config.batch_size)
        params = {name: v[start:stop].to(device=device, dtype=dtype) for name, v in pop.items()}
        gen = torch.Generator(device=device).manual_seed(_batch_seed(seed, k))
        with torch.no_grad():
            out = _render_batch(
                params, conditions.subset(slice(start, stop)), config, sps, gen, settings
            )
        parts, xs, ys = out.pop("_particles")
        if return_particles:
            particles.append(
                _to_numpy(
                    {
                        "x_pix": xs,
                        "y_pix": ys,
                        "mass_msun": parts.mass_msun,
                        "age_gyr": parts.age_gyr,
                        "is_bulge": parts.is_bulge,
                        "is_young": parts.is_young,
                        "sfr_msun_per_yr": parts.sfr_msun_per_yr,
                    }
                )
            )
        pieces.append(_to_numpy(out))

    def cat(get: Callable[[dict[str, Any]], np.ndarray]) -> np.ndarray:
        return np.concatenate([get(p) for p in pieces], 0)

    result: dict[str, Any] = {
        key: cat(lambda p, key=key: p[key])
        for key in ("images", "sigma", "mask", "psf_fwhm_arcsec", "redshift", "model_images")
    }
    result["truth"] = {
        group: {
            name: cat(lambda p, g=group, nm=name: p["truth"][g][nm])
            for name in pieces[0]["truth"][group]
        }
        for group in ("params", "maps")
    }
    if return_particles:
        result["particles"] = particles
    return result
