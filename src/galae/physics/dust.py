"""Dust attenuation: the Calzetti (2000) curve and slab / screen transmissions.

Calzetti et al. (2000, ApJ 533, 682), eq. 4, with x = 1 / lambda [um^-1]::

    k = 2.659 (-2.156 + 1.509 x - 0.198 x^2 + 0.011 x^3) + R_V    0.12 um <= lambda <= 0.63 um
    k = 2.659 (-1.857 + 1.040 x) + R_V                           0.63 um <  lambda <= 2.20 um

with R_V = 4.05 (their eq. 5), k = A_lambda / E(B-V)_star.  The two branches do not meet
exactly at 0.63 um (3.48 vs 3.50); we keep the published formula (blue branch up to and
including 0.63 um).

Outside 0.12-2.2 um the formula is extended as follows (a choice, stated so it can be changed):

* lambda < 0.12 um: the tangent of the UV branch at 0.12 um, i.e. linear in x = 1/lambda with
  slope dk/dx(0.12 um) = 1.331 um (k keeps rising smoothly into the far UV);
* lambda > 2.2 um: the red branch continued (linear in 1/lambda), floored at zero, which it
  reaches at lambda = 3.11 um (no negative attenuation).

For galae's ugriz bands at z <= 0.6 the rest wavelengths stay within 0.18-1.12 um, inside the
published range.

Transmissions (all differentiable torch functions):

* :func:`screen_transmission`: a foreground screen, T = exp(-tau).
* :func:`slab_transmission`: stars and dust uniformly mixed in a slab seen at inclination i
  (Disney, Davies & Phillipps 1989, MNRAS 239, 939, sect. 2), T = (1 - exp(-x)) / x with
  x = tau / cos(i), which tends to 1 - x/2 for x -> 0.
* :func:`av_to_tau_band`: tau_band = A_band / (2.5 log10 e) with A_band = A_V k_band / R_V.
* :func:`slab_effective_av_mag`: the V attenuation of the slab as seen, -2.5 log10 T_V.

Birth clouds.  Calzetti et al. (2000, ApJ 533, 682, sect. 3; Calzetti 1997) measure
E(B-V)_stars = 0.44 E(B-V)_gas: the ionised gas, and the stars younger than about 100 Myr
that excite it, see 1/0.44 times the attenuation of the bulk of the stars.  The young stars
therefore get, on top of the slab, a screen of V attenuation

    A_V,birth = (1/0.44 - 1) A_V,eff,    A_V,eff = -2.5 log10 T_slab(V, i),

so that their total V attenuation is A_V,eff / 0.44 at every inclination and optical depth.
:data:`BIRTH_CLOUDS` names this reference ("effective", the default) and the one galae used
before (``"face_on"``: (1/0.44 - 1) A_V,0 with the face-on A_V,0, which puts the young/old
V attenuation ratio at 3.8 face-on and 1.7 at 80 degrees for A_V,0 = 1 instead of 2.27).
Checkpoints and mock files that do not name their birth clouds were made with "face_on".
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch
from torch import Tensor

from galae.physics import check_choice

__all__ = [
    "CALZETTI_R_V",
    "MAG_PER_TAU",
    "calzetti2000_k",
    "screen_transmission",
    "slab_transmission",
    "av_to_tau_band",
    "slab_effective_av_mag",
    "BIRTH_CLOUD_EXTRA",
    "birth_cloud_av_effective_mag",
    "birth_cloud_av_face_on_mag",
    "BIRTH_CLOUDS",
    "DEFAULT_BIRTH_CLOUDS",
    "LEGACY_BIRTH_CLOUDS",
    "check_birth_clouds",
]

#: Total-to-selective attenuation of the starburst curve (Calzetti et al. 2000, eq. 5).
CALZETTI_R_V: float = 4.05
#: Magnitudes per unit optical depth, 2.5 log10(e) = 1.0857.
MAG_PER_TAU: float = 2.5 * math.log10(math.e)
#: E(B-V)_stars / E(B-V)_gas (Calzetti et al. 2000, sect. 3).
CALZETTI_STARS_OVER_GAS: float = 0.44
#: Extra attenuation of the young stars relative to the bulk's, 1/0.44 - 1 = 1.27.
BIRTH_CLOUD_EXTRA: float = 1.0 / CALZETTI_STARS_OVER_GAS - 1.0

# Calzetti et al. (2000) eq. 4: range of validity and coefficients, x = 1 / lambda[um].
_CALZ_SCALE: float = 2.659
_CALZ_UV_COEFFS: tuple[float, float, float, float] = (-2.156, 1.509, -0.198, 0.011)
_CALZ_RED_COEFFS: tuple[float, float] = (-1.857, 1.040)
_CALZ_LAMBDA_MIN_UM: float = 0.12
_CALZ_LAMBDA_SPLIT_UM: float = 0.63

# Below this x = tau / cos(i) the slab transmission uses its Taylor series.
_SLAB_SERIES_X: float = 1e-4

ArrayT = TypeVar("ArrayT", np.ndarray, Tensor)


def _calzetti_uv(x: ArrayT) -> ArrayT:
    """UV/optical branch of Calzetti (2000) eq. 4 at x = 1/lambda [um^-1] (no range check)."""
    c0, c1, c2, c3 = _CALZ_UV_COEFFS
    return _CALZ_SCALE * (c0 + x * (c1 + x * (c2 + x * c3))) + CALZETTI_R_V


def _calzetti_uv_slope() -> float:
    """dk/dx of the UV branch at lambda = 0.12 um, in um (used for the far-UV extension)."""
    _, c1, c2, c3 = _CALZ_UV_COEFFS
    x = 1.0 / _CALZ_LAMBDA_MIN_UM
    return _CALZ_SCALE * (c1 + 2.0 * c2 * x + 3.0 * c3 * x * x)


def _calzetti_red(x: ArrayT) -> ArrayT:
    """Red/near-IR branch of Calzetti (2000) eq. 4 at x = 1/lambda [um^-1] (no range check)."""
    c0, c1 = _CALZ_RED_COEFFS
    return _CALZ_SCALE * (c0 + c1 * x) + CALZETTI_R_V


def _check_finite(name: str, value: np.ndarray | Tensor) -> None:
    bad = (~torch.isfinite(value)).any() if isinstance(value, Tensor) else ~np.isfinite(value).all()
    if bool(bad):
        raise ValueError(f"{name} contains NaN or inf")


def calzetti2000_k(wavelength_um: ArrayT) -> ArrayT:
    """Calzetti et al. (2000) starburst attenuation curve k(lambda) = A_lambda / E(B-V)_star.

    Works elementwise on a numpy array (returns float64 numpy) or a torch tensor (returns a
    tensor of the same dtype and device, differentiable).  See the module docstring for the
    formula (eq. 4, R_V = 4.05) and the extension outside 0.12-2.2 um.

    Args:
        wavelength_um: rest-frame wavelength in micrometres, any shape, > 0.

    Returns:
        k, same shape, dimensionless (k(0.55 um) = 4.05, k(0.15 um) = 10.33).

    Raises:
        ValueError: for NaN/inf or non-positive wavelengths.
    """
    if isinstance(wavelength_um, Tensor):
        lam = wavelength_um
        where, floor0 = torch.where, (lambda v: v.clamp(min=0.0))
        non_positive = bool((lam <= 0).any())
    else:
        lam = np.asarray(wavelength_um, dtype=np.float64)
        where, floor0 = np.where, (lambda v: np.maximum(v, 0.0))
        non_positive = bool((lam <= 0).any())
    _check_finite("wavelength_um", lam)
    if non_positive:
        raise ValueError("wavelength_um must be > 0")

    x = 1.0 / lam
    x_uv_edge = 1.0 / _CALZ_LAMBDA_MIN_UM
    k_far_uv = _calzetti_uv(x_uv_edge) + _calzetti_uv_slope() * (x - x_uv_edge)
    k_uv = _calzetti_uv(x)
    k_red = floor0(_calzetti_red(x))
    return where(
        lam < _CALZ_LAMBDA_MIN_UM, k_far_uv, where(lam <= _CALZ_LAMBDA_SPLIT_UM, k_uv, k_red)
    )


def screen_transmission(tau_band: Tensor) -> Tensor:
    """Transmission of a foreground dust screen, T = exp(-tau).

    Args:
        tau_band: optical depth in the band, any shape, >= 0.

    Returns:
        T in (0, 1], same shape.
    """
    _check_finite("tau_band", tau_band)
    if bool((tau_band < 0).any()):
        raise ValueError("tau_band must be >= 0")
    return torch.exp(-tau_band)


def slab_transmission(tau_band: Tensor, cos_inclination: Tensor) -> Tensor:
    """Transmission of a uniformly mixed star + dust slab seen at inclination i.

    Disney, Davies & Phillipps (1989, MNRAS 239, 939, sect. 2): for emitters mixed uniformly
    with dust of face-on optical depth tau, the escaping fraction along a line of sight at
    inclination i is::

        T = (1 - exp(-x)) / x,    x = tau / cos(i),

    evaluated as -expm1(-x) / x, and as the series 1 - x/2 + x^2/6 for x < 1e-4 (so that
    T and dT/dx are exact and finite at x = 0).

    Args:
        tau_band: face-on optical depth in the band, >= 0.
        cos_inclination: cos(i) in (0, 1]; broadcast against ``tau_band`` with the usual rules
            (e.g. (B, 1, 1, 1) against (B, C, H, W)).

    Returns:
        T in (0, 1], the broadcast shape.
    """
    _check_finite("tau_band", tau_band)
    _check_finite("cos_inclination", cos_inclination)
    if bool((tau_band < 0).any()):
        raise ValueError("tau_band must be >= 0")
    if bool(((cos_inclination <= 0) | (cos_inclination > 1)).any()):
        raise ValueError("cos_inclination must be in (0, 1]")
    x = tau_band / cos_inclination
    small = x < _SLAB_SERIES_X
    x_safe = torch.where(small, torch.ones_like(x), x)
    exact = -torch.expm1(-x_safe) / x_safe
    series = 1.0 - x / 2.0 + x * x / 6.0
    return torch.where(small, series, exact)


def av_to_tau_band(av_mag: Tensor, k_band: Tensor, r_v: float = CALZETTI_R_V) -> Tensor:
    """Optical depth in a band from the V-band attenuation.

    A_band = A_V k_band / R_V (k = A / E(B-V), R_V = A_V / E(B-V)), and tau = A / (2.5 log10 e)::

        tau_band = (A_V k_band / R_V) / 1.0857

    Args:
        av_mag: V-band attenuation A_V in magnitudes (>= 0), broadcastable with ``k_band``.
        k_band: effective k of the band (e.g. :meth:`SPSTable.calzetti_k_band`).
        r_v: R_V of the curve (4.05 for Calzetti 2000).

    Returns:
        tau_band, the broadcast shape.
    """
    _check_finite("av_mag", av_mag)
    _check_finite("k_band", k_band)
    if bool((av_mag < 0).any()):
        raise ValueError("av_mag must be >= 0")
    if not (math.isfinite(r_v) and r_v > 0):
        raise ValueError(f"r_v must be a positive finite number, got {r_v}")
    return av_mag * k_band / (r_v * MAG_PER_TAU)


def slab_effective_av_mag(av_face_on_mag: Tensor, cos_inclination: Tensor) -> Tensor:
    """V attenuation of a mixed slab as seen at inclination i, A_V,eff = -2.5 log10 T_slab(V).

    A_V,eff -> A_V,0 / (2 cos i) for a thin slab (T -> 1 - x/2) and grows as 2.5 log10(x) for
    a thick one (T -> 1/x), x = A_V,0 / (1.0857 cos i).

    Args:
        av_face_on_mag: face-on A_V,0 (>= 0, magnitudes), any shape.
        cos_inclination: cos(i) in (0, 1], broadcastable against it.

    Returns:
        A_V,eff >= 0 in magnitudes, the broadcast shape.
    """
    t_v = slab_transmission(av_face_on_mag / MAG_PER_TAU, cos_inclination)
    return (-MAG_PER_TAU * torch.log(t_v)).clamp_min(0.0)


def birth_cloud_av_effective_mag(av_face_on_mag: Tensor, cos_inclination: Tensor) -> Tensor:
    """Birth-cloud screen A_V = (1/0.44 - 1) A_V,eff: the young stars' total V attenuation is
    the slab's effective one over 0.44 (Calzetti et al. 2000).  Shapes as
    :func:`slab_effective_av_mag`."""
    return BIRTH_CLOUD_EXTRA * slab_effective_av_mag(av_face_on_mag, cos_inclination)


def birth_cloud_av_face_on_mag(av_face_on_mag: Tensor, cos_inclination: Tensor) -> Tensor:
    """Birth-cloud screen A_V = (1/0.44 - 1) A_V,0 with the face-on A_V,0 (galae before the
    twenty-second release; kept for the checkpoints and mocks made with it).  ``cos_inclination``
    only sets the broadcast shape."""
    _check_finite("av_face_on_mag", av_face_on_mag)
    return BIRTH_CLOUD_EXTRA * av_face_on_mag * torch.ones_like(cos_inclination)


#: Birth-cloud screens by name: (A_V,0, cos i) -> the screen's V attenuation in magnitudes.
BIRTH_CLOUDS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "effective": birth_cloud_av_effective_mag,
    "face_on": birth_cloud_av_face_on_mag,
}
#: The birth clouds new models and mocks use.
DEFAULT_BIRTH_CLOUDS: str = "effective"
#: The birth clouds of checkpoints and mock files written before the choice existed.
LEGACY_BIRTH_CLOUDS: str = "face_on"


def check_birth_clouds(name: str) -> str:
    """``name`` if it is a key of :data:`BIRTH_CLOUDS`, else a ValueError naming them."""
    return check_choice("birth_clouds", name, BIRTH_CLOUDS)
