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

Clumpy dust (a simulation nuisance, twenty-fourth session).  Real disks' dust is not smooth:
it lies in lanes along the spiral arms and in clouds, and the column densities of a turbulent
medium are close to log-normal (Vazquez-Semadeni 1994, ApJ 423, 681).  Light seen through a
patchy medium is attenuated more greyly than through a smooth one of the same mean column
(Witt & Gordon 2000, ApJ 528, 799; Fischera, Dopita & Sutherland 2003, ApJ 599, L21): the
opaque patches remove light at every wavelength, the thin ones redden little.
:func:`clumpy_slab_transmission` averages the slab over a log-normal spread of the face-on
optical depth at fixed mean, tau' = tau exp(s g - s^2 / 2), g ~ N(0, 1), by Gauss-Hermite
quadrature; stars that lie where the dust is (young stars form where the gas is, Sigma_SFR
~ Sigma_gas^1.4, Kennicutt 1998, ApJ 498, 541) weight the patches by tau'^gamma, which shifts
the log-normal: tau' = tau exp(s g + (gamma - 1/2) s^2).  :class:`DustClumping` draws one
spread s per galaxy and :func:`dust_clumping` applies it to every slab shaded inside it
(``sleep_dust_clumping_max`` in :mod:`galae.train`): the latents keep their meaning
(``av_face_on_mag`` is the mean column) and inference renders the smooth slab.  Measured on
the particle mocks, it did not help (docs/results.md, twenty-fourth submission); it is off by
default.
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    "AV_PER_GAS_MSUN_PC2",
    "birth_cloud_av_effective_mag",
    "birth_cloud_av_face_on_mag",
    "BIRTH_CLOUDS",
    "DEFAULT_BIRTH_CLOUDS",
    "LEGACY_BIRTH_CLOUDS",
    "check_birth_clouds",
    "clumpy_slab_transmission",
    "DustClumping",
    "dust_clumping",
    "active_dust_clumping",
]

#: Total-to-selective attenuation of the starburst curve (Calzetti et al. 2000, eq. 5).
CALZETTI_R_V: float = 4.05
#: Magnitudes per unit optical depth, 2.5 log10(e) = 1.0857.
MAG_PER_TAU: float = 2.5 * math.log10(math.e)
#: E(B-V)_stars / E(B-V)_gas (Calzetti et al. 2000, sect. 3).
CALZETTI_STARS_OVER_GAS: float = 0.44
#: Extra attenuation of the young stars relative to the bulk's, 1/0.44 - 1 = 1.27.
BIRTH_CLOUD_EXTRA: float = 1.0 / CALZETTI_STARS_OVER_GAS - 1.0
#: Face-on V-band attenuation per unit total gas surface density at solar metallicity,
#: mag / (Msun pc^-2).  N_H / E(B-V) = 5.8e21 cm^-2 mag^-1 (Bohlin, Savage & Drake 1978, ApJ 224,
#: 132) with R_V = 3.1 gives A_V / N_H = 5.3e-22 mag cm^2; 1 Msun/pc^2 of gas with a
#: hydrogen mass fraction 1/1.36 (helium correction) is 9.2e19 H atoms cm^-2.
AV_PER_GAS_MSUN_PC2: float = 3.1 / 5.8e21 * (1.989e33 / 3.0857e18**2 / 1.6735e-24 / 1.36)

# Calzetti et al. (2000) eq. 4: range of validity and coefficients, x = 1 / lambda[um].
_CALZ_SCALE: float = 2.659
_CALZ_UV_COEFFS: tuple[float, float, float, float] = (-2.156, 1.509, -0.198, 0.011)
_CALZ_RED_COEFFS: tuple[float, float] = (-1.857, 1.040)
_CALZ_LAMBDA_MIN_UM: float = 0.12
_CALZ_LAMBDA_SPLIT_UM: float = 0.63

# Below this x = tau / cos(i) the slab transmission uses its Taylor series.
_SLAB_SERIES_X: float = 1e-4
#: Gauss-Hermite nodes of the log-normal average in :func:`clumpy_slab_transmission`.
CLUMPY_NODES: int = 24

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


@functools.lru_cache(maxsize=8)
def _hermite_nodes(n: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Nodes g_j and weights w_j with sum_j w_j f(g_j) ~ E[f(g)], g ~ N(0, 1) (probabilists'
    Gauss-Hermite rule, exact for polynomials of degree < 2n); computed once per n (immutable,
    so the cached rule cannot be changed by a caller)."""
    g, w = np.polynomial.hermite_e.hermegauss(n)
    return tuple(g.tolist()), tuple((w / w.sum()).tolist())


def clumpy_slab_transmission(
    tau_band: Tensor,
    cos_inclination: Tensor,
    sigma_ln_tau: Tensor,
    weight_exponent: float = 0.0,
    n_nodes: int = CLUMPY_NODES,
) -> Tensor:
    """Transmission of a mixed slab whose face-on optical depth varies log-normally across it.

    The disk is a mosaic of slabs (each :func:`slab_transmission`) whose optical depths are
    tau' = tau exp(s g - s^2 / 2), g ~ N(0, 1), so that their area-weighted mean is ``tau``
    and ln tau' spreads by s.  The emitters' surface density goes as tau'^gamma (gamma = 0:
    spread evenly; gamma > 0: concentrated where the dust is), so their light-weighted
    distribution of g is N(gamma s, 1), and the transmission is

        T = E_g[ T_slab(tau exp(s g + (gamma - 1/2) s^2), i) ],    g ~ N(0, 1),

    by ``n_nodes``-point Gauss-Hermite quadrature.  s = 0 is the smooth slab.  With gamma = 0,
    since T_slab is convex in tau, T >= T_slab(tau) (Jensen): a patchy medium lets more light
    through than a smooth one of the same mean column, and reddens it less per magnitude of
    attenuation; with gamma >= 1/2 the emitters see more than the mean column.

    Args:
        tau_band: face-on mean optical depth in the band, >= 0, any shape.
        cos_inclination: cos(i) in (0, 1], broadcastable against it.
        sigma_ln_tau: s >= 0, broadcastable against them (e.g. (B, 1, 1) per galaxy).
        weight_exponent: gamma, finite.
        n_nodes: quadrature nodes (24 agree with adaptive quadrature to 1e-6 for s <= 1 and
            to 1e-4 for s <= 2 at the optical depths of galaxies; see the tests).

    Returns:
        T in (0, 1], the broadcast shape.
    """
    if not math.isfinite(weight_exponent):
        raise ValueError(f"weight_exponent must be finite, got {weight_exponent}")
    _check_finite("sigma_ln_tau", sigma_ln_tau)
    if bool((sigma_ln_tau < 0).any()):
        raise ValueError("sigma_ln_tau must be >= 0")
    g, w = _hermite_nodes(n_nodes)
    shape = torch.broadcast_shapes(tau_band.shape, cos_inclination.shape, sigma_ln_tau.shape)
    nodes = torch.as_tensor(g, dtype=tau_band.dtype, device=tau_band.device)
    weights = torch.as_tensor(w, dtype=tau_band.dtype, device=tau_band.device)
    extra = (1,) * len(shape)
    s = sigma_ln_tau.unsqueeze(0)
    factor = torch.exp(s * nodes.view(-1, *extra) + (weight_exponent - 0.5) * s * s)  # (n, ...)
    t = slab_transmission(tau_band.unsqueeze(0) * factor, cos_inclination.unsqueeze(0))
    return (weights.view(-1, *extra) * t).sum(0).expand(shape)


@dataclass(frozen=True)
class DustClumping:
    """The spread of B galaxies' dust columns across their disks (a simulation nuisance).

    Attributes:
        sigma_ln_tau: (B,) the standard deviation of ln(face-on optical depth) across each
            disk at fixed mean (:func:`clumpy_slab_transmission`).
    """

    sigma_ln_tau: Tensor

    @classmethod
    def draw(
        cls,
        n: int,
        max_sigma_ln_tau: float,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> DustClumping:
        """Spreads of ``n`` galaxies, uniform in [0, ``max_sigma_ln_tau``]."""
        if not (math.isfinite(max_sigma_ln_tau) and max_sigma_ln_tau >= 0):
            raise ValueError(f"max_sigma_ln_tau must be a number >= 0, got {max_sigma_ln_tau}")
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        return cls(max_sigma_ln_tau * u)

    def transmission(
        self, tau_band: Tensor, cos_inclination: Tensor, weight_exponent: float = 0.0
    ) -> Tensor:
        """:func:`clumpy_slab_transmission` of B galaxies' slabs: ``tau_band`` (B, ...), their
        emitters weighted by tau'^``weight_exponent``."""
        b = self.sigma_ln_tau.shape[0]
        if tau_band.shape[0] != b:
            raise ValueError(f"dust clumping drawn for {b} galaxies, shading {tau_band.shape[0]}")
        s = self.sigma_ln_tau.detach().to(tau_band).view(b, *(1,) * (tau_band.dim() - 1))
        return clumpy_slab_transmission(tau_band, cos_inclination, s, weight_exponent)


_CLUMPING: contextvars.ContextVar[DustClumping | None] = contextvars.ContextVar(
    "galae_dust_clumping", default=None
)


@contextmanager
def dust_clumping(clumping: DustClumping | None) -> Iterator[None]:
    """Shade every disk slab inside the block with ``clumping`` (None: the smooth slab).

    One draw serves every shading within one render (the radial nodes and the unresolved
    centre see the same dust).
    """
    token = _CLUMPING.set(clumping)
    try:
        yield
    finally:
        _CLUMPING.reset(token)


def active_dust_clumping() -> DustClumping | None:
    """The clumping set by the enclosing :func:`dust_clumping` block, if any."""
    return _CLUMPING.get()
