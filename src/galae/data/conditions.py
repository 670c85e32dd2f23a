"""SDSS-like observing conditions for mock images, and the noise they imply.

:func:`sample_sdss_conditions` draws, per mock galaxy, the seeing (PSF FWHM per band), the
sky noise per pixel, the electrons per nanomaggy that set the source Poisson noise, and a
redshift.  :func:`add_noise` turns a noiseless model image into a noisy one with that noise.

The numbers, all for single-epoch SDSS imaging (2.5 m telescope, drift scan, 0.396"/pixel):

* **Seeing.** The r-band "PSF width" (SDSS's seeing: the FWHM of the Gaussian with the same
  effective area as the PSF; Stoughton et al. 2002, sec. 4.3) is log-normal.  Median 1.32"
  (SDSS DR17 image-quality page, sdss4.org/dr17/imaging/other_info).  The log-width comes
  from the r-band quartiles 1.30" / 1.43" / 1.58" of the DR1 fields (SDSS DR7 "Seeing and
  sky brightness" page, sdss.org/DR7/products/general/seeing.html):
  sigma_ln = ln(1.58 / 1.30) / (2 * 0.6745) = 0.145.  Other bands follow the Kolmogorov
  law FWHM ~ lambda^(-1/5) (Roddier 1981, Prog. Opt. 19, 281: FWHM = 0.98 lambda / r0
  with r0 ~ lambda^(6/5)), at the effective wavelengths of the SDSS response curves
  (Doi et al. 2010, as shipped in ``speclite`` as ``sdss2010``).  One field's bands are
  therefore fully correlated, except for a small per-band jitter (5 %, 1 sigma) that
  stands for the up-to-15 % variation of the delivered FWHM across a CCD
  (Stoughton et al. 2002, sec. 4.3).
* **Sky.** Median moon-down sky brightness 22.01, 21.84, 20.84, 20.16, 18.96 mag/arcsec^2
  in u, g, r, i, z (SDSS DR17 image-quality page, as tabulated in LSSTDESC surveycodex's
  ``SDSS.yaml``).  Per-field scatter 0.245 mag (1 sigma, shared by the bands) from the DR1
  r-band sky quartiles 20.70 / 20.86 / 21.03 mag/arcsec^2 (SDSS DR7 seeing page):
  (21.03 - 20.70) / (2 * 0.6745) = 0.245.
* **Detector.** Electrons per nanomaggy (GAIN / NMGY of the frame headers: e-/DN divided by
  nMgy/DN) and dark variance (DARKVAR * GAIN^2, read noise plus dark current) are the medians
  over the 17 Stripe-82 epochs (camcol 4) of the SDSS stamps in Celeste.jl's test data
  (Regier et al. 2019; ``shared/real/celeste_sdss``).  The gains and dark variances equal the
  camcol-4 entries of the SDSS frame data model's gain / dark-variance table.  The electron
  rates agree within 15 % with 53.9 s x 2.5 m mirror (27 % obscured; Gunn et al. 1998) x the
  Doi et al. (2010) response curves; ``tests/test_conditions.py`` checks both.

From these the per-pixel sky noise is

    sigma_sky^2 [nmgy^2] = (S_pix * g + V_dark) / g^2,   S_pix = 10^(-0.4 (mu - 22.5)) p^2

with mu the sky surface brightness (mag/arcsec^2), p the pixel scale (arcsec), g the
electrons per nanomaggy and V_dark the dark variance (e^2).  The resulting 5-sigma
point-source depths (:func:`point_source_depth_mag`, medians over sampled conditions) are
u 22.01, g 23.35, r 22.87, i 22.37, z 20.68, within 0.3 mag of SDSS's 5-sigma limiting
magnitudes u 22.3, g 23.3, r 23.1, i 22.3, z 20.8 (York et al. 2000; SDSSConstants table of
the SDSS CAS, ``limitingMagnitudes_*``), and within 0.15 mag of the depths measured on the 17
real Stripe-82 epochs above (u 22.04, g 23.30, r 22.80, i 22.30, z 20.55 from their inverse
variance and PSF).  The shallower numbers u 22.0, g 22.2, r 22.2, i 21.3, z 20.5
often quoted for SDSS are 95 %-completeness limits (Abazajian et al. 2009, Table 1), not
5-sigma depths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "SDSS_BANDS",
    "SDSS_PIXEL_SCALE_ARCSEC",
    "SDSS_EXPOSURE_S",
    "SDSS_LIMITING_MAG_5SIGMA",
    "SDSS_COMPLETENESS_95_MAG",
    "BandNoiseModel",
    "SDSS_BAND_MODELS",
    "ConditionsConfig",
    "DEFAULT_CONDITIONS_CONFIG",
    "ObservingConditions",
    "sample_sdss_conditions",
    "median_psf_fwhm_arcsec",
    "sample_redshifts",
    "sky_sigma_nmgy_from_brightness",
    "point_source_depth_mag",
    "add_noise",
]

SDSS_BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")

# 0.396 arcsec per 24 micron pixel (Gunn et al. 1998, AJ 116, 3040, sec. 3; Stoughton et al.
# 2002, AJ 123, 485, sec. 3).
SDSS_PIXEL_SCALE_ARCSEC: float = 0.396

# Effective exposure time of one drift-scan pass, EXPTIME of SDSS frame headers
# (Stoughton et al. 2002, sec. 3: 53.9 s).
SDSS_EXPOSURE_S: float = 53.907456

# 5-sigma point-source limiting magnitudes (York et al. 2000, AJ 120, 1579; SDSS CAS
# SDSSConstants table, limitingMagnitudes_u..z).
SDSS_LIMITING_MAG_5SIGMA: dict[str, float] = {"u": 22.3, "g": 23.3, "r": 23.1, "i": 22.3, "z": 20.8}

# 95 % completeness limits for point sources (Abazajian et al. 2009, ApJS 182, 543, Table 1).
SDSS_COMPLETENESS_95_MAG: dict[str, float] = {"u": 22.0, "g": 22.2, "r": 22.2, "i": 21.3, "z": 20.5}

# 1 sigma of a normal distribution in units of its interquartile half-width: the quartiles
# of N(0, 1) are at +-0.6745.
_QUARTILE_Z = 0.6744897501960817


@dataclass(frozen=True)
class BandNoiseModel:
    """Median single-epoch SDSS observing properties of one band (see module docstring).

    Attributes:
        effective_wavelength_angstrom: effective wavelength of the band's response (Angstrom).
        sky_mag_per_arcsec2: median moon-down sky surface brightness (AB mag / arcsec^2).
        electrons_per_nmgy: photo-electrons collected in one exposure per nanomaggy of
            source flux (e- / nmgy).
        dark_variance_e2: read-noise plus dark-current variance per pixel (e-^2).
    """

    effective_wavelength_angstrom: float
    sky_mag_per_arcsec2: float
    electrons_per_nmgy: float
    dark_variance_e2: float


# Effective wavelengths: Doi et al. 2010 response curves (speclite "sdss2010").
# Sky: SDSS DR17 image-quality page (median, moon-down).
# Electrons per nmgy, dark variance: medians of GAIN/NMGY and DARKVAR*GAIN^2 over the 17
# Stripe-82 epochs of the Celeste.jl stamps (SDSS frame headers, camcol 4).
SDSS_BAND_MODELS: dict[str, BandNoiseModel] = {
    "u": BandNoiseModel(3614.4, 22.01, 159.8, 32.26),
    "g": BandNoiseModel(4749.2, 21.84, 1111.5, 31.28),
    "r": BandNoiseModel(6205.8, 20.84, 968.1, 29.96),
    "i": BandNoiseModel(7525.6, 20.16, 758.8, 180.47),
    "z": BandNoiseModel(8947.4, 18.96, 125.7, 287.29),
}


def _uniform_redshift(n: int, rng: np.random.Generator, z_min: float, z_max: float) -> np.ndarray:
    """n redshifts uniform in [z_min, z_max]."""
    return rng.uniform(z_min, z_max, size=n)


def _volume_redshift(n: int, rng: np.random.Generator, z_min: float, z_max: float) -> np.ndarray:
    """n redshifts with density proportional to the comoving volume element dV_c/dz.

    Planck 2018 cosmology (Planck Collaboration 2020, A&A 641, A6, Table 2, via astropy's
    ``Planck18``); inverse-CDF sampling on a 2049-point grid (trapezoidal CDF).
    """
    from astropy.cosmology import Planck18

    z_grid = np.linspace(z_min, z_max, 2049)
    dv_dz = Planck18.differential_comoving_volume(z_grid).value
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dv_dz[1:] + dv_dz[:-1]) * np.diff(z_grid))])
    cdf /= cdf[-1]
    return np.interp(rng.uniform(0.0, 1.0, size=n), cdf, z_grid)


_REDSHIFT_SAMPLERS: dict[str, Callable[[int, np.random.Generator, float, float], np.ndarray]] = {
    "uniform": _uniform_redshift,
    "volume": _volume_redshift,
}


@dataclass(frozen=True)
class ConditionsConfig:
    """Distribution of observing conditions (defaults: SDSS single epoch; see module docstring).

    Attributes:
        seeing_r_median_arcsec: median r-band PSF FWHM (arcsec).
        seeing_sigma_ln: 1-sigma width of ln(FWHM) across fields.
        seeing_band_jitter_ln: independent per-band 1-sigma jitter of ln(FWHM).
        seeing_min_arcsec, seeing_max_arcsec: FWHM is clipped to this range (arcsec).
        sky_sigma_mag: 1-sigma field-to-field scatter of the sky brightness (mag/arcsec^2),
            shared by all bands of one field.
        redshift_min, redshift_max: redshift range.
        redshift_distribution: "uniform" or "volume" (density ~ comoving volume dV/dz).
        pixel_scale_arcsec: pixel scale (arcsec / pixel).
    """

    seeing_r_median_arcsec: float = 1.32
    seeing_sigma_ln: float = 0.145
    seeing_band_jitter_ln: float = 0.05
    seeing_min_arcsec: float = 0.6
    seeing_max_arcsec: float = 3.5
    sky_sigma_mag: float = 0.245
    redshift_min: float = 0.01
    redshift_max: float = 0.25
    redshift_distribution: str = "uniform"
    pixel_scale_arcsec: float = SDSS_PIXEL_SCALE_ARCSEC

    def __post_init__(self) -> None:
        if not (0.0 < self.seeing_min_arcsec <= self.seeing_r_median_arcsec):
            raise ValueError("need 0 < seeing_min_arcsec <= seeing_r_median_arcsec")
        if self.seeing_max_arcsec < self.seeing_r_median_arcsec:
            raise ValueError("need seeing_max_arcsec >= seeing_r_median_arcsec")
        for name in ("seeing_sigma_ln", "seeing_band_jitter_ln", "sky_sigma_mag"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not (0.0 <= self.redshift_min < self.redshift_max):
            raise ValueError(
                f"need 0 <= redshift_min < redshift_max, got {self.redshift_min}, "
                f"{self.redshift_max}"
            )
        if self.redshift_distribution not in _REDSHIFT_SAMPLERS:
            raise ValueError(
                f"unknown redshift_distribution {self.redshift_distribution!r}; "
                f"known: {sorted(_REDSHIFT_SAMPLERS)}"
            )
        if not self.pixel_scale_arcsec > 0.0:
            raise ValueError(f"pixel_scale_arcsec must be > 0, got {self.pixel_scale_arcsec}")


DEFAULT_CONDITIONS_CONFIG = ConditionsConfig()


@dataclass(frozen=True)
class ObservingConditions:
    """Observing conditions of n mock galaxies in C bands (numpy, float64).

    Attributes:
        bands: band names, length C.
        psf_fwhm_arcsec: (n, C) FWHM of the (Gaussian) PSF, arcsec.
        sky_mag_per_arcsec2: (n, C) sky surface brightness, AB mag / arcsec^2.
        sky_sigma_nmgy: (n, C) 1-sigma sky (+ read/dark) noise per pixel, nanomaggies.
        gain_e_per_nmgy: (n, C) electrons per nanomaggy; source Poisson variance in nmgy^2
            is flux_nmgy / gain_e_per_nmgy.
        redshift: (n,) redshift.
        pixel_scale_arcsec: pixel scale, arcsec / pixel.
    """

    bands: tuple[str, ...]
    psf_fwhm_arcsec: np.ndarray
    sky_mag_per_arcsec2: np.ndarray
    sky_sigma_nmgy: np.ndarray
    gain_e_per_nmgy: np.ndarray
    redshift: np.ndarray
    pixel_scale_arcsec: float

    @property
    def n(self) -> int:
        """Number of galaxies."""
        return int(self.redshift.shape[0])

    def subset(self, index: slice | np.ndarray | Sequence[int]) -> ObservingConditions:
        """The conditions of a subset of the galaxies (index along the first axis)."""
        idx = index if isinstance(index, slice) else np.asarray(index)
        return ObservingConditions(
            bands=self.bands,
            psf_fwhm_arcsec=self.psf_fwhm_arcsec[idx],
            sky_mag_per_arcsec2=self.sky_mag_per_arcsec2[idx],
            sky_sigma_nmgy=self.sky_sigma_nmgy[idx],
            gain_e_per_nmgy=self.gain_e_per_nmgy[idx],
            redshift=self.redshift[idx],
            pixel_scale_arcsec=self.pixel_scale_arcsec,
        )


def sky_sigma_nmgy_from_brightness(
    sky_mag_per_arcsec2: np.ndarray | float,
    electrons_per_nmgy: np.ndarray | float,
    dark_variance_e2: np.ndarray | float,
    pixel_scale_arcsec: float,
) -> np.ndarray:
    """Per-pixel 1-sigma sky noise in nanomaggies (sky photons plus read/dark noise).

    sigma^2 = (S g + V_dark) / g^2 with S = 10^(-0.4 (mu - 22.5)) p^2 the sky flux per pixel
    (nmgy), g electrons per nmgy, V_dark the dark variance (e^2), p the pixel scale (arcsec).
    All array arguments broadcast together; returns their broadcast shape.
    """
    mu = np.asarray(sky_mag_per_arcsec2, dtype=np.float64)
    gain = np.asarray(electrons_per_nmgy, dtype=np.float64)
    dark = np.asarray(dark_variance_e2, dtype=np.float64)
    if not pixel_scale_arcsec > 0.0:
        raise ValueError(f"pixel_scale_arcsec must be > 0, got {pixel_scale_arcsec}")
    if np.any(~np.isfinite(mu)):
        raise ValueError("sky_mag_per_arcsec2 has NaN/inf")
    if np.any(~(gain > 0.0)):
        raise ValueError("electrons_per_nmgy must be > 0 and finite")
    if np.any(~(dark >= 0.0)):
        raise ValueError("dark_variance_e2 must be >= 0 and finite")
    sky_nmgy_per_pix = 10.0 ** (-0.4 * (mu - 22.5)) * pixel_scale_arcsec**2
    return np.sqrt((sky_nmgy_per_pix * gain + dark) / gain**2)


def point_source_depth_mag(
    sky_sigma_nmgy: np.ndarray | float,
    psf_fwhm_arcsec: np.ndarray | float,
    pixel_scale_arcsec: float,
    gain_e_per_nmgy: np.ndarray | float | None = None,
    snr: float = 5.0,
) -> np.ndarray:
    """AB magnitude of a point source detected at signal-to-noise ``snr`` with PSF weighting.

    For a Gaussian PSF of standard deviation s (pixels) the optimal (PSF-weighted) flux has
    variance sigma_sky^2 N_eff + F / g with N_eff = 4 pi s^2 the noise-equivalent number of
    pixels of a Gaussian PSF (King 1983, PASP 95, 163).
    Solving F = snr sqrt(sigma_sky^2 N_eff + F / g) for F gives
    F = (snr^2 / g + sqrt(snr^4 / g^2 + 4 snr^2 sigma_sky^2 N_eff)) / 2, and
    m = 22.5 - 2.5 log10(F).  Without ``gain_e_per_nmgy`` the source noise is neglected.
    """
    sigma = np.asarray(sky_sigma_nmgy, dtype=np.float64)
    fwhm = np.asarray(psf_fwhm_arcsec, dtype=np.float64)
    if np.any(~(sigma > 0.0)):
        raise ValueError("sky_sigma_nmgy must be > 0 and finite")
    if np.any(~(fwhm > 0.0)) or np.any(~np.isfinite(fwhm)):
        raise ValueError("psf_fwhm_arcsec must be > 0 and finite")
    if not pixel_scale_arcsec > 0.0 or not snr > 0.0:
        raise ValueError("pixel_scale_arcsec and snr must be > 0")
    s_pix = fwhm / (2.0 * math.sqrt(2.0 * math.log(2.0))) / pixel_scale_arcsec
    n_eff = 4.0 * math.pi * s_pix**2
    background_var = sigma**2 * n_eff
    if gain_e_per_nmgy is None:
        flux = snr * np.sqrt(background_var)
    else:
        inv_gain = 1.0 / np.asarray(gain_e_per_nmgy, dtype=np.float64)
        a = snr**2 * inv_gain
        flux = 0.5 * (a + np.sqrt(a**2 + 4.0 * snr**2 * background_var))
    return 22.5 - 2.5 * np.log10(flux)


def sample_redshifts(
    n: int, rng: np.random.Generator, config: ConditionsConfig = DEFAULT_CONDITIONS_CONFIG
) -> np.ndarray:
    """(n,) redshifts from ``config.redshift_distribution`` in [redshift_min, redshift_max]."""
    sampler = _REDSHIFT_SAMPLERS[config.redshift_distribution]
    return sampler(n, rng, config.redshift_min, config.redshift_max)


def _sdss_bands(bands: Sequence[str]) -> tuple[str, ...]:
    """``bands`` as a tuple, or a ValueError naming those that are not SDSS's (or none given)."""
    bands = tuple(bands)
    unknown = [b for b in bands if b not in SDSS_BAND_MODELS]
    if unknown or not bands:
        raise ValueError(
            f"unknown SDSS bands {unknown} in {bands}; known: {tuple(SDSS_BAND_MODELS)}"
        )
    return bands


def _seeing_band_ratio(bands: Sequence[str]) -> np.ndarray:
    """PSF FWHM of each band relative to r for Kolmogorov seeing, FWHM ~ lambda^(-1/5)
    (Roddier 1981, Progress in Optics 19, 281).  (C,)"""
    lam = np.array([SDSS_BAND_MODELS[b].effective_wavelength_angstrom for b in bands])
    return (lam / SDSS_BAND_MODELS["r"].effective_wavelength_angstrom) ** (-0.2)


def median_psf_fwhm_arcsec(
    bands: Sequence[str] = SDSS_BANDS, config: ConditionsConfig = DEFAULT_CONDITIONS_CONFIG
) -> np.ndarray:
    """The median PSF FWHM (arcsec) of each band under ``config``'s seeing, (C,).

    The r-band median, scaled to each band as :func:`sample_sdss_conditions` scales it (the band
    jitter has median 1).  It is what an encoder assumes when it is not told the PSF.

    Raises:
        ValueError: a band that is not one of "ugriz", or none.
    """
    bands = _sdss_bands(bands)
    fwhm = config.seeing_r_median_arcsec * _seeing_band_ratio(bands)
    return np.clip(fwhm, config.seeing_min_arcsec, config.seeing_max_arcsec)


def sample_sdss_conditions(
    n: int,
    rng: np.random.Generator,
    bands: Sequence[str] = SDSS_BANDS,
    config: ConditionsConfig = DEFAULT_CONDITIONS_CONFIG,
) -> ObservingConditions:
    """Draw SDSS-like observing conditions for n galaxies (one field each).

    Per galaxy: ln FWHM_r ~ N(ln median, sigma_ln); FWHM_b = FWHM_r (lambda_b / lambda_r)^(-1/5)
    times exp(N(0, jitter)), clipped to [seeing_min, seeing_max]; sky brightness
    mu_b = median_b + dmu with one dmu ~ N(0, sky_sigma_mag) per galaxy; sky noise from
    :func:`sky_sigma_nmgy_from_brightness`; redshift from :func:`sample_redshifts`.

    Deterministic given the state of ``rng`` (a ``numpy.random.Generator``): the same seed
    gives the same conditions.  Draw order: r-band seeing, band jitter, sky offset, redshift.

    Args:
        n: number of galaxies (>= 0).
        rng: numpy random generator.
        bands: any subset of "ugriz", in the order of the output columns.
        config: the distribution (defaults from the module docstring).

    Returns:
        :class:`ObservingConditions` with (n, C) arrays.
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    bands = _sdss_bands(bands)
    if len(set(bands)) != len(bands):
        raise ValueError(f"duplicate bands in {bands}")
    models = [SDSS_BAND_MODELS[b] for b in bands]
    band_ratio = _seeing_band_ratio(bands)

    ln_median = math.log(config.seeing_r_median_arcsec)
    ln_fwhm_r = ln_median + config.seeing_sigma_ln * rng.standard_normal(n)
    jitter = config.seeing_band_jitter_ln * rng.standard_normal((n, len(bands)))
    fwhm = np.exp(ln_fwhm_r[:, None] + jitter) * band_ratio[None, :]
    fwhm = np.clip(fwhm, config.seeing_min_arcsec, config.seeing_max_arcsec)

    sky_offset = config.sky_sigma_mag * rng.standard_normal(n)
    sky_median = np.array([m.sky_mag_per_arcsec2 for m in models])
    sky_mag = sky_median[None, :] + sky_offset[:, None]
    gain = np.broadcast_to(
        np.array([m.electrons_per_nmgy for m in models])[None, :], (n, len(bands))
    ).copy()
    dark = np.array([m.dark_variance_e2 for m in models])[None, :]
    sky_sigma = sky_sigma_nmgy_from_brightness(sky_mag, gain, dark, config.pixel_scale_arcsec)
    redshift = sample_redshifts(n, rng, config)
    return ObservingConditions(
        bands=bands,
        psf_fwhm_arcsec=fwhm,
        sky_mag_per_arcsec2=sky_mag,
        sky_sigma_nmgy=sky_sigma,
        gain_e_per_nmgy=gain,
        redshift=redshift,
        pixel_scale_arcsec=float(config.pixel_scale_arcsec),
    )


def _as_band_tensor(value: Tensor | np.ndarray | float, like: Tensor, name: str) -> Tensor:
    """``value`` as a tensor on like's device/dtype, shaped (..., C, 1, 1) to broadcast."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    if t.ndim == 0:
        return t
    if t.shape[-1] != like.shape[-3]:
        raise ValueError(
            f"{name} has {t.shape[-1]} bands in its last axis, model_nmgy has {like.shape[-3]}"
        )
    return t[..., None, None]


def add_noise(
    model_nmgy: Tensor,
    conditions: ObservingConditions | None = None,
    *,
    sky_sigma_nmgy: Tensor | np.ndarray | float | None = None,
    gain_e_per_nmgy: Tensor | np.ndarray | float | None = None,
    generator: torch.Generator | int | None = None,
) -> tuple[Tensor, Tensor]:
    """Add sky and source noise to noiseless model images (Gaussian approximation).

    variance = sky_sigma^2 + max(model, 0) / gain   [nmgy^2]
    noisy = model + sqrt(variance) * eps,  eps ~ N(0, 1) i.i.d. per pixel.

    The Gaussian approximation to the Poisson counts is accurate when a pixel holds more
    than a few tens of electrons, which SDSS sky levels guarantee (>= 40 e- in u).

    Args:
        model_nmgy: (..., C, H, W) noiseless images, nanomaggies per pixel.
        conditions: take ``sky_sigma_nmgy`` and ``gain_e_per_nmgy`` ((n, C) each) from here;
            then model_nmgy must be (n, C, H, W).
        sky_sigma_nmgy: instead of ``conditions``: (..., C) or scalar sky sigma per pixel (nmgy),
            broadcastable against model_nmgy.shape[:-2].
        gain_e_per_nmgy: (..., C) or scalar electrons per nmgy; None or inf = no source noise.
        generator: a ``torch.Generator`` on model_nmgy's device, or an int seed (a generator on
            that device is made from it), or None for torch's global RNG.  With the same
            generator state (or seed), device and dtype, the noise is identical; CPU and CUDA
            streams differ from each other.

    Returns:
        (noisy_nmgy, sigma_nmgy), both shaped like model_nmgy: the noisy image and the per-pixel
        1-sigma noise that was used (from the noiseless model).
    """
    if not isinstance(model_nmgy, Tensor):
        raise ValueError(f"model_nmgy must be a torch.Tensor, got {type(model_nmgy).__name__}")
    if model_nmgy.ndim < 3:
        raise ValueError(f"model_nmgy must be (..., C, H, W), got shape {tuple(model_nmgy.shape)}")
    if not torch.isfinite(model_nmgy).all():
        raise ValueError("model_nmgy has NaN/inf values")
    if conditions is not None:
        if sky_sigma_nmgy is not None or gain_e_per_nmgy is not None:
            raise ValueError("give either conditions or sky_sigma_nmgy/gain_e_per_nmgy, not both")
        if model_nmgy.ndim != 4 or model_nmgy.shape[0] != conditions.n:
            raise ValueError(
                f"with conditions for {conditions.n} galaxies model_nmgy must be "
                f"({conditions.n}, C, H, W), got {tuple(model_nmgy.shape)}"
            )
        sky_sigma_nmgy = conditions.sky_sigma_nmgy
        gain_e_per_nmgy = conditions.gain_e_per_nmgy
    if sky_sigma_nmgy is None:
        raise ValueError("sky_sigma_nmgy (or conditions) is required")
    sky = _as_band_tensor(sky_sigma_nmgy, model_nmgy, "sky_sigma_nmgy")
    if not (torch.isfinite(sky).all() and (sky >= 0).all()):
        raise ValueError("sky_sigma_nmgy must be finite and >= 0")
    variance = sky**2 + torch.zeros_like(model_nmgy)
    if gain_e_per_nmgy is not None:
        gain = _as_band_tensor(gain_e_per_nmgy, model_nmgy, "gain_e_per_nmgy")
        if not (gain > 0).all():
            raise ValueError("gain_e_per_nmgy must be > 0")
        variance = variance + model_nmgy.clamp(min=0.0) / gain
    sigma = variance.sqrt()
    if isinstance(generator, int):
        seed = generator
        generator = torch.Generator(device=model_nmgy.device)
        generator.manual_seed(seed)
    eps = torch.randn(
        model_nmgy.shape, generator=generator, device=model_nmgy.device, dtype=model_nmgy.dtype
    )
    return model_nmgy + sigma * eps, sigma
