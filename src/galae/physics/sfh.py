"""Star-formation history of the disk's older-than-100 Myr stars: a truncated tau model.

The disk's stars fall into two populations (DESIGN.md, "Light"): those formed over the last
100 Myr, carried by the current SFR
(:meth:`galae.physics.sps.SPSTable.young_flux_nmgy_per_msun_yr`), and the older ones, whose
mass-weighted mean age is the latent ``age_disk_gyr``.  The older
stars are not one simple stellar population: they formed over the galaxy's whole life, and
their 0.1-2 Gyr-old members dominate the blue light of a disk that has stopped forming stars.
A single-age disk has to explain that light with current star formation, and overestimates
the SFR of quenched and green-valley disks (measured on the particle mocks, whose disks have
non-parametric histories; see :mod:`galae.data.particles`).

Their history is the classic exponential ("tau") model in cosmic time (e.g. Bruzual & Charlot
2003, MNRAS 344, 1000, sect. 5), truncated to the lookback ages t_0 = 0.1 Gyr ... T, with T
the age of the universe at the galaxy's redshift.  In u = (t - t_0) / (T - t_0) in [0, 1]
(lookback age, so kappa > 0 is a declining history, kappa < 0 a rising one, kappa = 0
constant star formation), the current-mass density and its CDF are

    p(u) = kappa e^(kappa u) / (e^kappa - 1),    F(u) = (e^(kappa u) - 1) / (e^kappa - 1),

and the mean of u is

    m(kappa) = 1 / (1 - e^-kappa) - 1 / kappa       (1/2 at kappa = 0; dm/dkappa > 0).

The shape kappa is fixed by the mean age, m(kappa) = (age_disk - t_0) / (T - t_0), solved by
interpolation in a table and Newton steps, the last one differentiable (so
d kappa / d age = 1 / (m'(kappa) (T - t_0))).
Mean ages outside the reachable range are clamped to u-means in [``MEAN_FRACTION_MIN``,
``MEAN_FRACTION_MAX``] (a burst at the oldest or the youngest edge).

The density is in current stellar mass (living stars and remnants), as are the population
table's fluxes, so a composite's flux per unit mass is the p-weighted mean of the SSP fluxes
(:func:`age_grid_mass_fractions` gives the weights on the table's age grid).

Real histories are not smooth: their SFR goes up and down from one epoch to the next, by about
0.3 dex between adjacent log-spaced bins in the "continuity" prior of Leja et al. (2019, ApJ
876, 3; a Student-t of 2 degrees of freedom).  The ups and downs of the last Gyr put A-star light
into the blue bands that no tau model makes, and an encoder trained on smooth histories reads it
as current star formation.  :class:`HistoryVariability` draws such ups and downs, and
:func:`history_variability` applies them to every tau-model history rendered inside it, as a
nuisance of the simulations the encoder learns from (``sleep_history_scale_dex`` in
:mod:`galae.train`): the latents keep their meaning (``age_disk_gyr`` is the mean age of the
smooth trend) and inference renders the smooth model.
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from galae.physics import check_choice, cosmology
from galae.physics.sps import SPSTable

__all__ = [
    "OLD_MIN_AGE_GYR",
    "MEAN_FRACTION_MIN",
    "MEAN_FRACTION_MAX",
    "TauHistory",
    "tau_mean_fraction",
    "tau_shape_from_mean_fraction",
    "tau_cdf",
    "tau_history",
    "age_grid_mass_fractions",
    "single_age_disk_flux_nmgy_per_msun",
    "tau_disk_flux_nmgy_per_msun",
    "HistoryVariability",
    "history_variability",
    "DISK_HISTORIES",
    "DEFAULT_DISK_HISTORY",
    "LEGACY_DISK_HISTORY",
    "check_disk_history",
]

#: Youngest lookback age of the older disk population (the end of the young SFR window), Gyr.
OLD_MIN_AGE_GYR: float = 0.1
#: Reachable mean of u = (t - t_0) / (T - t_0): kappa within about +-400.
MEAN_FRACTION_MIN: float = 0.0025
MEAN_FRACTION_MAX: float = 1.0 - MEAN_FRACTION_MIN
_KAPPA_MAX: float = 1000.0
_KAPPA_SMALL: float = 1e-3
_KAPPA_SERIES: float = 0.5
_TABLE_NODES: int = 1201
_LOGIT_MAX: float = math.log(MEAN_FRACTION_MAX / MEAN_FRACTION_MIN)
_KAPPA_TABLES: dict[tuple[str, torch.dtype], tuple[Tensor, Tensor]] = {}
_BISECTION_STEPS: int = 60


@dataclass(frozen=True)
class TauHistory:
    """Truncated tau-model histories of B galaxies, each field (B,).

    Attributes:
        kappa: shape (dimensionless); > 0 declining, < 0 rising, 0 constant.
        min_age_gyr: youngest lookback age t_0 (0.1 Gyr).
        max_age_gyr: oldest lookback age T (the age of the universe at the redshift).
    """

    kappa: Tensor
    min_age_gyr: Tensor
    max_age_gyr: Tensor

    def cdf(self, age_gyr: Tensor) -> Tensor:
        """Fraction of the current mass younger than ``age_gyr`` (B, N) -> (B, N)."""
        span = (self.max_age_gyr - self.min_age_gyr).unsqueeze(-1)
        u = ((age_gyr - self.min_age_gyr.unsqueeze(-1)) / span).clamp(0.0, 1.0)
        return tau_cdf(self.kappa.unsqueeze(-1), u)

    @property
    def mean_age_gyr(self) -> Tensor:
        """(B,) mass-weighted mean lookback age."""
        return self.min_age_gyr + (self.max_age_gyr - self.min_age_gyr) * tau_mean_fraction(
            self.kappa
        )


def tau_mean_fraction(kappa: Tensor) -> Tensor:
    """m(kappa) = 1 / (1 - e^-kappa) - 1 / kappa, the mean of u; (any shape) -> same shape.

    Uses the Taylor series 1/2 + kappa / 12 - kappa^3 / 720 + kappa^5 / 30240 - kappa^7 / 1209600
    for |kappa| < 0.5 (the closed form cancels there in float32; the series is good to 1e-10).
    """
    small = kappa.abs() < _KAPPA_SERIES
    k = torch.where(small, torch.ones_like(kappa), kappa)
    # 1 / (1 - e^-k), written per sign so that neither branch overflows (nor its gradient)
    kp, kn = k.clamp_min(_KAPPA_SMALL), k.clamp_max(-_KAPPA_SMALL)
    first = torch.where(k > 0, -1.0 / torch.expm1(-kp), torch.exp(kn) / torch.expm1(kn))
    exact = first - 1.0 / k
    series = 0.5 + kappa / 12.0 - kappa**3 / 720.0 + kappa**5 / 30240.0 - kappa**7 / 1209600.0
    return torch.where(small, series, exact)


def _tau_mean_fraction_slope(kappa: Tensor) -> Tensor:
    """dm/dkappa = 1 / kappa^2 - 1 / (4 sinh^2(kappa / 2)); its Taylor series
    1/12 - kappa^2 / 240 + kappa^4 / 6048 for |kappa| < 0.5."""
    small = kappa.abs() < _KAPPA_SERIES
    k = torch.where(small, torch.ones_like(kappa), kappa)
    # 1 / (4 sinh^2(k / 2)) = e^-|k| / (1 - e^-|k|)^2
    e = torch.exp(-k.abs())
    exact = 1.0 / k**2 - e / torch.expm1(-k.abs()) ** 2
    series = 1.0 / 12.0 - kappa**2 / 240.0 + kappa**4 / 6048.0
    return torch.where(small, series, exact).clamp_min(torch.finfo(kappa.dtype).tiny)


def _kappa_table(device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """kappa on a grid of logit(mean fraction) (``_TABLE_NODES`` nodes over the reachable
    range), solved once in float64 by bisection and cached per device and dtype."""
    key = (str(device), dtype)
    if key not in _KAPPA_TABLES:
        x = torch.linspace(-_LOGIT_MAX, _LOGIT_MAX, _TABLE_NODES, dtype=torch.float64)
        f = torch.sigmoid(x)
        lo = torch.full_like(f, -_KAPPA_MAX)
        hi = torch.full_like(f, _KAPPA_MAX)
        for _ in range(_BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            above = tau_mean_fraction(mid) > f
            hi = torch.where(above, mid, hi)
            lo = torch.where(above, lo, mid)
        kappa = 0.5 * (lo + hi)
        _KAPPA_TABLES[key] = (x.to(device, dtype), kappa.to(device, dtype))
    return _KAPPA_TABLES[key]


def tau_shape_from_mean_fraction(mean_fraction: Tensor) -> Tensor:
    """kappa with m(kappa) = ``mean_fraction`` (clamped to [MEAN_FRACTION_MIN, MAX]).

    Linear interpolation in a table of kappa against logit(m) and two Newton steps, without
    gradient; then one Newton step with it, so the value is the root and the gradient is the
    implicit one, 1 / m'(kappa).
    """
    f = mean_fraction.clamp(MEAN_FRACTION_MIN, MEAN_FRACTION_MAX)
    with torch.no_grad():
        x_axis, k_axis = _kappa_table(f.device, f.dtype)
        x = torch.logit(f).clamp(-_LOGIT_MAX, _LOGIT_MAX)  # Python bounds: no device sync
        i = (torch.searchsorted(x_axis, x.contiguous()) - 1).clamp(0, x_axis.shape[0] - 2)
        w = (x - x_axis[i]) / (x_axis[i + 1] - x_axis[i])
        k0 = torch.lerp(k_axis[i], k_axis[i + 1], w)
        for _ in range(2):
            k0 = k0 - (tau_mean_fraction(k0) - f) / _tau_mean_fraction_slope(k0)
    return k0 - (tau_mean_fraction(k0) - f) / _tau_mean_fraction_slope(k0)


def tau_cdf(kappa: Tensor, u: Tensor) -> Tensor:
    """F(u) = (e^(kappa u) - 1) / (e^kappa - 1) for u in [0, 1], without overflow.

    kappa > 0 uses e^(kappa (u - 1)) (1 - e^(-kappa u)) / (1 - e^-kappa).  For |kappa| < 1e-3
    the Taylor series u [1 + kappa (u - 1) / 2 + kappa^2 (u - 1)(2u - 1) / 12] is used, so the
    gradient in kappa stays right through kappa = 0; the exact branches see a kappa kept away
    from 0, so neither makes inf or NaN gradients.
    """
    small = kappa.abs() < _KAPPA_SMALL
    kp = kappa.clamp_min(_KAPPA_SMALL)
    kn = kappa.clamp_max(-_KAPPA_SMALL)
    pos = torch.exp(kp * (u - 1.0)) * torch.expm1(-kp * u) / torch.expm1(-kp)
    neg = torch.expm1(kn * u) / torch.expm1(kn)
    series = u * (1.0 + kappa * (u - 1.0) / 2.0 + kappa**2 * (u - 1.0) * (2.0 * u - 1.0) / 12.0)
    return torch.where(small, series, torch.where(kappa > 0, pos, neg))


def tau_history(mean_age_gyr: Tensor, max_age_gyr: Tensor) -> TauHistory:
    """The truncated tau model of mean lookback age ``mean_age_gyr`` on [0.1 Gyr, T].

    Args:
        mean_age_gyr: (B,) mass-weighted mean age of the older-than-100 Myr stars, Gyr.
        max_age_gyr: (B,) the oldest age T (the age of the universe at the redshift), > 0.1 Gyr.
    """
    t0 = torch.full_like(max_age_gyr, OLD_MIN_AGE_GYR)
    frac = (mean_age_gyr - t0) / (max_age_gyr - t0)
    return TauHistory(tau_shape_from_mean_fraction(frac), t0, max_age_gyr)


def age_grid_mass_fractions(history: TauHistory, lg_age_grid_gyr: Tensor) -> Tensor:
    """Current-mass fraction of each node of a log-age grid, (B, n_age).

    Node a stands for the ages between the log-midpoints to its neighbours (the first and the
    last node extend by half a step), intersected with [t_0, T]; its weight is the history's
    mass in that cell, so the weights sum to 1 and a composite's flux per unit mass is
    sum_a w_a f_ssp(t_a).  On the population table's 0.05 dex grid the composite's mean age is
    within 0.3% of the history's.

    Args:
        history: B histories.
        lg_age_grid_gyr: (n_age,) increasing log10 ages (Gyr), n_age >= 2.
    """
    g = lg_age_grid_gyr
    mids = 0.5 * (g[1:] + g[:-1])
    edges_lg = torch.cat([g[:1] - (mids[:1] - g[:1]), mids, g[-1:] + (g[-1:] - mids[-1:])])
    edges = (10.0**edges_lg).to(history.kappa.dtype)
    c = history.cdf(edges.unsqueeze(0).expand(history.kappa.shape[0], -1))
    return (c[:, 1:] - c[:, :-1]).clamp_min(0.0)


@dataclass(frozen=True)
class HistoryVariability:
    """Epoch-to-epoch ups and downs of B galaxies' older-disk histories.

    The ages 0.1 Gyr ... T of each galaxy are cut into ``n_bins`` bins equal in log age; the SFR
    of bin k is the smooth history's times 10^offset_k, a random walk from the youngest bin,
    offset_k - offset_(k-1) ~ ``scale_dex`` x Student-t(2) (the continuity prior of Leja et al.
    2019), each step clipped to +-``STEP_CLIP_DEX``.

    Attributes:
        log10_offsets: (B, n_bins) the offsets, dex; bin 0 holds the youngest ages.
    """

    log10_offsets: Tensor

    #: a step's bound, dex (the Student-t of 2 degrees of freedom has no variance)
    STEP_CLIP_DEX = 1.0
    #: the tilt's power of age lies in +-this (per dex of age, in dex of SFR) ...
    TILT_BOUND = 6.0
    #: ... found by this many bisections
    TILT_BISECTIONS = 40

    @classmethod
    def draw(
        cls,
        n: int,
        scale_dex: float,
        n_bins: int = 8,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> HistoryVariability:
        """Offsets of ``n`` galaxies: Student-t(2) steps, N / sqrt(chi2_2 / 2), chi2_2 = -2 ln U."""
        if scale_dex < 0 or n_bins < 1:
            raise ValueError(f"need scale_dex >= 0 and n_bins >= 1, got {scale_dex}, {n_bins}")
        shape = (n, n_bins)
        normal = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        uniform = torch.rand(shape, generator=generator, device=device, dtype=dtype)
        steps = normal / torch.sqrt(-torch.log(uniform.clamp_min(1e-12)))
        steps = (scale_dex * steps).clamp(-cls.STEP_CLIP_DEX, cls.STEP_CLIP_DEX)
        steps[:, 0] = 0.0
        return cls(torch.cumsum(steps, dim=1))

    def reweight(self, weights: Tensor, lg_ages_gyr: Tensor, max_age_gyr: Tensor) -> Tensor:
        """Mass fractions (B, n_age) on the ages (n_age,), given as log10 Gyr, with the ups and
        downs applied.

        The perturbed history is then tilted by a power of age, w_a -> w_a t_a^beta, with beta
        found per galaxy by bisection so that its mass-weighted mean age is the smooth one's
        (the latent ``age_disk_gyr`` keeps its meaning, as in the particle mocks), and each row
        is renormalised to its original sum.  Without gradient (a simulation nuisance).
        """
        b, n_bins = self.log10_offsets.shape
        if weights.shape[0] != b:
            raise ValueError(f"variability drawn for {b} galaxies, rendering {weights.shape[0]}")
        lo = math.log10(OLD_MIN_AGE_GYR)
        lg_t = lg_ages_gyr.to(weights).unsqueeze(0)  # (1, n_age)
        span = (torch.log10(max_age_gyr) - lo).clamp_min(1e-6).unsqueeze(-1)  # (B, 1)
        k = ((lg_t - lo) / span * n_bins).floor().clamp(0, n_bins - 1).long()
        off = torch.gather(self.log10_offsets.to(weights).detach(), 1, k)
        w0 = weights.detach()
        t = 10.0**lg_t
        total = w0.sum(-1, keepdim=True).clamp_min(1e-30)
        target = (w0 * t).sum(-1, keepdim=True) / total
        w = w0 * 10.0**off
        beta_lo = torch.full_like(target, -self.TILT_BOUND)
        beta_hi = torch.full_like(target, self.TILT_BOUND)
        for _ in range(self.TILT_BISECTIONS):  # the mean age rises with beta
            beta = 0.5 * (beta_lo + beta_hi)
            wt = w * 10.0 ** (beta * lg_t)
            older = (wt * t).sum(-1, keepdim=True) / wt.sum(-1, keepdim=True) > target
            beta_hi = torch.where(older, beta, beta_hi)
            beta_lo = torch.where(older, beta_lo, beta)
        w = w * 10.0 ** (0.5 * (beta_lo + beta_hi) * lg_t)
        return w * (total / w.sum(-1, keepdim=True).clamp_min(1e-30))


_VARIABILITY: contextvars.ContextVar[HistoryVariability | None] = contextvars.ContextVar(
    "galae_history_variability", default=None
)


@contextmanager
def history_variability(variability: HistoryVariability | None) -> Iterator[None]:
    """Render every tau-model disk inside the block with ``variability`` (None: smooth).

    One draw serves every evaluation of the history within one render (the radial nodes and the
    unresolved centre see the same history).
    """
    token = _VARIABILITY.set(variability)
    try:
        yield
    finally:
        _VARIABILITY.reset(token)


# ------------------------------------------------------------------------------------------
# The disk's older stars' light per unit mass, by history
# ------------------------------------------------------------------------------------------


def single_age_disk_flux_nmgy_per_msun(
    sps: SPSTable, redshift: Tensor, age_disk_gyr: Tensor, lg_zstar_zsun: Tensor
) -> Tensor:
    """One simple stellar population of age ``age_disk_gyr`` (galae before the tau model).

    Args:
        sps: the population table.
        redshift, age_disk_gyr: (B,).
        lg_zstar_zsun: (B, *S) metallicity where the light is wanted.
    Returns:
        (B, n_bands, *S) observed flux per M_sun of current mass, nanomaggies.
    """
    extra = (1,) * (lg_zstar_zsun.dim() - 1)
    return sps.ssp_flux_nmgy_per_msun(
        redshift, torch.log10(age_disk_gyr).view(-1, *extra), lg_zstar_zsun
    )


def tau_disk_flux_nmgy_per_msun(
    sps: SPSTable, redshift: Tensor, age_disk_gyr: Tensor, lg_zstar_zsun: Tensor
) -> Tensor:
    """Stars spread over 0.1 Gyr ... the age of the universe at ``redshift`` by the truncated
    tau model of mean age ``age_disk_gyr`` (:func:`tau_history`).  Arguments and result as
    :func:`single_age_disk_flux_nmgy_per_msun`."""
    t_max = cosmology.age_of_universe_gyr(redshift)
    history = tau_history(age_disk_gyr, t_max)
    # only the table's ages from the node whose cell holds 0.1 Gyr (and one below) get mass
    first = max(sps.age_index_of(math.log10(OLD_MIN_AGE_GYR)) - 1, 0)
    grid = sps.lg_age_gyr_grid[first:].to(device=redshift.device, dtype=redshift.dtype)
    weights = age_grid_mass_fractions(history, grid)
    variability = _VARIABILITY.get()
    if variability is not None:  # a simulation nuisance (history_variability)
        weights = variability.reweight(weights, grid, t_max)
    return sps.composite_flux_nmgy_per_msun(redshift, weights, lg_zstar_zsun)


#: The disk's older-than-100 Myr population, by name -> its flux per unit mass
#: ``f(sps, redshift (B,), age_disk_gyr (B,), lg_zstar_zsun (B, *S)) -> (B, n_bands, *S)``.
#: "tau" is galae's model; "single" is what checkpoints made before it were trained with.
DISK_HISTORIES: dict[str, Callable[[SPSTable, Tensor, Tensor, Tensor], Tensor]] = {
    "tau": tau_disk_flux_nmgy_per_msun,
    "single": single_age_disk_flux_nmgy_per_msun,
}
#: The history new models and mocks use.
DEFAULT_DISK_HISTORY: str = "tau"
#: The history of checkpoints and mock files written before the choice existed.
LEGACY_DISK_HISTORY: str = "single"


def check_disk_history(name: str) -> str:
    """``name`` if it is a key of :data:`DISK_HISTORIES`, else a ValueError naming them."""
    return check_choice("disk_history", name, DISK_HISTORIES)
