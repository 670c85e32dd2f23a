"""Photometric bands: AB magnitudes <-> nanomaggies, and filter convolution through speclite.

Fluxes in galae are AB nanomaggies (SDSS convention, https://www.sdss.org/dr12/algorithms/magnitudes/)::

    f_nmgy = 10^(-0.4 (m_AB - 22.5)),    m_AB = 22.5 - 2.5 log10(f_nmgy),

so 1 nmgy = 3.631 micro-Jansky (m_AB = 0 is 3631 Jy, Oke & Gunn 1983).  Filter curves and the
AB photon-counting convolution come from ``speclite`` (``FilterSequence.get_ab_maggies``);
speclite is needed only to build stellar-population tables, so it is imported lazily.

Band sets are named by a survey key (registry :data:`SURVEY_FILTERS`) or directly by a speclite
name pattern such as ``"sdss2010-*"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np
from torch import Tensor

if TYPE_CHECKING:  # pragma: no cover
    from speclite.filters import FilterSequence

__all__ = [
    "NMGY_ZEROPOINT_MAG",
    "SURVEY_FILTERS",
    "ab_mag_to_nmgy",
    "nmgy_to_ab_mag",
    "filter_pattern",
    "load_filters",
    "band_names",
    "ab_flux_nmgy",
]

#: AB magnitude of a 1-nanomaggie source.
NMGY_ZEROPOINT_MAG: float = 22.5
_NMGY_PER_MAGGY: float = 1e9

#: Survey key -> speclite filter-name pattern.
SURVEY_FILTERS: dict[str, str] = {
    "sdss": "sdss2010-*",
    "decam": "decam2014-*",
    "hsc": "hsc2017-*",
    "lsst": "lsst2023-*",
    "panstarrs": "panstarrs-*",
}

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def ab_mag_to_nmgy(mag_ab: ArrayT) -> ArrayT:
    """AB magnitude -> flux in nanomaggies, f = 10^(-0.4 (m - 22.5)) (numpy or torch)."""
    return 10.0 ** (-0.4 * (mag_ab - NMGY_ZEROPOINT_MAG))


def nmgy_to_ab_mag(flux_nmgy: ArrayT) -> ArrayT:
    """Flux in nanomaggies (> 0) -> AB magnitude, m = 22.5 - 2.5 log10(f) (numpy or torch)."""
    if isinstance(flux_nmgy, Tensor):
        bad = bool((flux_nmgy <= 0).any())
        log10 = flux_nmgy.log10()
    else:
        flux_nmgy = np.asarray(flux_nmgy, dtype=np.float64)
        bad = bool((flux_nmgy <= 0).any())
        log10 = np.log10(flux_nmgy) if not bad else None
    if bad:
        raise ValueError("flux_nmgy must be > 0 to have an AB magnitude")
    return NMGY_ZEROPOINT_MAG - 2.5 * log10


def filter_pattern(survey: str | None = None, bands: str | Sequence[str] | None = None) -> str:
    """The speclite filter pattern/names for a survey key or an explicit band specification.

    Exactly one of ``survey`` (a key of :data:`SURVEY_FILTERS`) and ``bands`` (a speclite name
    pattern like ``"sdss2010-*"`` or a comma-separated list of speclite names) must be given.
    """
    if (survey is None) == (bands is None):
        raise ValueError("give exactly one of survey= and bands=")
    if survey is not None:
        if survey not in SURVEY_FILTERS:
            raise ValueError(f"unknown survey {survey!r}; known: {sorted(SURVEY_FILTERS)}")
        return SURVEY_FILTERS[survey]
    if isinstance(bands, str):
        return bands
    return ",".join(bands)


def load_filters(spec: str | Sequence[str]) -> FilterSequence:
    """Load speclite filter curves by pattern (``"sdss2010-*"``) or names (comma-separated/list).

    Raises:
        ValueError: when speclite does not know a name.
    """
    import speclite.filters

    names: str | list[str] = spec
    if isinstance(spec, str) and "," in spec:
        names = [s.strip() for s in spec.split(",") if s.strip()]
    try:
        filters = speclite.filters.load_filters(*([names] if isinstance(names, str) else names))
    except (ValueError, OSError) as err:
        raise ValueError(f"speclite cannot load filters {spec!r}: {err}") from err
    if len(filters) == 0:
        raise ValueError(f"no speclite filters match {spec!r}")
    return filters


def band_names(filters: FilterSequence) -> tuple[str, ...]:
    """Short band names (speclite's ``band_name`` metadata), e.g. ("u", "g", "r", "i", "z")."""
    return tuple(str(f.meta["band_name"]) for f in filters)


def ab_flux_nmgy(
    filters: FilterSequence, wavelength_aa: np.ndarray, flux_erg_s_cm2_aa: np.ndarray
) -> np.ndarray:
    """AB band fluxes in nanomaggies of tabulated spectra (photon-counting, speclite).

    maggies = int f_lambda R lambda dlambda / int f_lambda^AB R lambda dlambda with
    f_nu^AB = 3631 Jy (speclite ``get_ab_maggies``); nmgy = 1e9 maggies.

    Args:
        filters: speclite FilterSequence with n_bands filters.
        wavelength_aa: (n_wave,) increasing wavelengths, Angstrom; must cover every filter.
        flux_erg_s_cm2_aa: (..., n_wave) flux densities f_lambda, erg/s/cm^2/Angstrom.

    Returns:
        (..., n_bands) float64 fluxes in nanomaggies.
    """
    wavelength_aa = np.asarray(wavelength_aa, dtype=np.float64)
    flux = np.asarray(flux_erg_s_cm2_aa, dtype=np.float64)
    if wavelength_aa.ndim != 1 or flux.shape[-1] != wavelength_aa.shape[0]:
        raise ValueError(
            f"flux shape {flux.shape} does not end with the wavelength length {wavelength_aa.shape}"
        )
    if not (np.isfinite(flux).all() and np.isfinite(wavelength_aa).all()):
        raise ValueError("wavelength or flux contains NaN or inf")
    out = np.empty(flux.shape[:-1] + (len(filters),))
    for b, response in enumerate(filters):
        out[..., b] = response.get_ab_maggies(flux, wavelength_aa, axis=-1)
    return out * _NMGY_PER_MAGGY
