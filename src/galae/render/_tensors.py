"""Turning user input (numbers, numpy arrays, tensors) into tensors, with clear errors."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["to_tensor"]


def to_tensor(value: object, name: str) -> Tensor:
    """A tensor from a number, array or tensor (tensors pass through, keeping their graph).

    Raises:
        ValueError: naming ``name``, when the value is not numeric.
    """
    if isinstance(value, Tensor):
        if value.is_complex():
            raise ValueError(f"{name} must be real, got a complex tensor")
        return value
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot convert {type(value).__name__} to a tensor") from err
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real, got complex values")
    if not arr.dtype.isnative:
        # big-endian data as astropy.io.fits returns it: the same values in native byte order
        arr = arr.astype(arr.dtype.newbyteorder("="))
    try:
        return torch.as_tensor(arr)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot convert {arr.dtype} data to a tensor") from err
