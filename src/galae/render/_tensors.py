"""Turning user input (numbers, numpy arrays, tensors) into tensors, with clear errors.

Besides plain numbers and arrays this takes what astronomers' tools hand over:

* big-endian arrays (``astropy.io.fits`` data), flipped or otherwise negatively strided views
  (``img[::-1]``, ``np.flipud``), which ``torch.as_tensor`` refuses;
* numpy masked arrays: a masked entry becomes NaN, which galae masks where masking is the
  physics (images, sigma) and refuses elsewhere; a masked boolean array is refused;
* ``astropy.units.Quantity``: converted to the unit that the name's suffix carries
  (``*_arcsec``, ``*_deg``, ``*_kpc``, ``*_gyr``; ``images``/``sigma``/``flux`` to nanomaggies,
  AB, so Jansky works too); a Quantity whose unit the name does not fix is refused rather than
  read as a bare number in an unknown unit.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["to_tensor", "quantity_unit_for"]

#: Name suffix -> the astropy unit string that a Quantity passed under that name converts to.
_SUFFIX_UNITS: tuple[tuple[str, str], ...] = (
    ("_arcsec", "arcsec"),
    ("_deg", "deg"),
    ("_kpc", "kpc"),
    ("_gyr", "Gyr"),
)
#: Names whose values are fluxes in nanomaggies (AB: 1 nmgy = 3631e-9 Jy).
_FLUX_NAMES: frozenset[str] = frozenset({"images", "image", "sigma", "flux", "flux_nmgy"})
_AB_ZERO_POINT_JY: float = 3631.0


def quantity_unit_for(name: str) -> str | None:
    """The unit (astropy string) that a Quantity passed as ``name`` is converted to, or None."""
    if name in _FLUX_NAMES or name.endswith("_nmgy"):
        return "nanomaggy"
    for suffix, unit in _SUFFIX_UNITS:
        if name.endswith(suffix):
            return unit
    return None


def _strip_quantity(value: object, name: str) -> object:
    """A Quantity's values in the unit ``name`` implies (module check keeps astropy lazy)."""
    if not type(value).__module__.startswith("astropy") or not hasattr(value, "unit"):
        return value
    import astropy.units as u

    target = quantity_unit_for(name)
    try:
        if target is None:
            return value.to_value(u.dimensionless_unscaled)  # type: ignore[attr-defined]
        equiv = u.zero_point_flux(_AB_ZERO_POINT_JY * u.Jy) if target == "nanomaggy" else []
        return value.to_value(u.Unit(target), equivalencies=equiv)  # type: ignore[attr-defined]
    except u.UnitsError as err:
        want = "a plain number" if target is None else f"a quantity in {target}"
        raise ValueError(
            f"{name}: got a Quantity in {value.unit}; pass {want}"  # type: ignore[attr-defined]
        ) from err


def _unmask(value: np.ma.MaskedArray, name: str) -> np.ndarray:
    """A masked array's data with its masked entries as NaN (refused for booleans)."""
    if not np.ma.is_masked(value):
        return np.ma.getdata(value)
    if value.dtype.kind not in "iuf":
        raise ValueError(
            f"{name}: a masked {value.dtype} array has no value for its masked entries; "
            "fill it first (np.ma.filled)"
        )
    return np.ma.filled(
        value.astype(np.float64 if value.dtype.kind != "f" else value.dtype), np.nan
    )


def to_tensor(value: object, name: str) -> Tensor:
    """A tensor from a number, array or tensor (tensors pass through, keeping their graph).

    Raises:
        ValueError: naming ``name``, when the value is not numeric.
    """
    if isinstance(value, Tensor):
        if value.is_complex():
            raise ValueError(f"{name} must be real, got a complex tensor")
        return value
    value = _strip_quantity(value, name)
    if isinstance(value, np.ma.MaskedArray):
        value = _unmask(value, name)
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot convert {type(value).__name__} to a tensor") from err
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real, got complex values")
    if not arr.dtype.isnative:
        # big-endian data as astropy.io.fits returns it: the same values in native byte order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if any(stride < 0 for stride in arr.strides):
        # a flipped view (img[::-1], np.flipud): torch takes only non-negative strides
        arr = np.ascontiguousarray(arr)
    try:
        return torch.as_tensor(arr)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot convert {arr.dtype} data to a tensor") from err
