"""Data: the galae HDF5 data-set format, FITS cutouts of real galaxies, observing conditions.

Submodules (imported on first use, so that ``import galae.data`` stays light):

* :mod:`galae.data.hdf5` -- :class:`H5Writer`, :class:`GalaxyH5Dataset`, :func:`read_h5`,
  :func:`inspect_h5`;
* :mod:`galae.data.fits` -- :func:`load_fits_cutouts`, :class:`Cutout`, :func:`cutouts_to_h5`,
  :func:`crop_cutout`;
* :mod:`galae.data.conditions` -- :func:`sample_sdss_conditions`, :class:`ObservingConditions`,
  :func:`add_noise`, :func:`point_source_depth_mag`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "H5Writer": "hdf5",
    "H5Info": "hdf5",
    "GalaxyH5Dataset": "hdf5",
    "read_h5": "hdf5",
    "inspect_h5": "hdf5",
    "sanitize_pixels": "hdf5",
    "SCHEMA_VERSION": "hdf5",
    "Cutout": "fits",
    "GaussianMixturePSF": "fits",
    "load_fits_cutouts": "fits",
    "cutouts_to_h5": "fits",
    "crop_cutout": "fits",
    "ObservingConditions": "conditions",
    "ConditionsConfig": "conditions",
    "sample_sdss_conditions": "conditions",
    "sample_redshifts": "conditions",
    "add_noise": "conditions",
    "point_source_depth_mag": "conditions",
    "sky_sigma_nmgy_from_brightness": "conditions",
    "SDSS_BANDS": "conditions",
    "SDSS_PIXEL_SCALE_ARCSEC": "conditions",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the submodule that defines ``name`` on first access (PEP 562)."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'galae.data' has no attribute {name!r}")
    module = importlib.import_module(f"galae.data.{_EXPORTS[name]}")
    return getattr(module, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
