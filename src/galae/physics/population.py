"""A broad physical population of galaxies built from published scaling relations.

This is the *mock* population (what the analytic mock generator draws from, and the reference
that the learned prior is compared with); it is not the prior of the Pyro model, which is the
registry's broad prior or the learned flow.  Every relation is cited; scatters are generous so
that the population is broad.  All draws are clipped into the registry's ranges.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from scipy.special import betaincinv
from torch import Tensor

from galae.latent import REGISTRY, LatentRegistry
from galae.physics import check_choice, dust, gas

__all__ = [
    "sample_population",
    "POPULATION_DUST",
    "DEFAULT_POPULATION_DUST",
    "LEGACY_POPULATION_DUST",
    "check_population_dust",
    "population_dust_laws",
    "gas_av_face_on_mag",
    "empirical_av_face_on_mag",
    "DustDraw",
    "log10_mstar_total_range",
    "check_log10_mstar_range",
    "shen03_r50_late_kpc",
    "shen03_r50_early_kpc",
]


def shen03_r50_late_kpc(log10_mstar: Tensor) -> Tensor:
    """Late-type half-light radius vs stellar mass (Shen et al. 2003, MNRAS 343, 978, eq. 18;
    alpha=0.14, beta=0.39, gamma=0.10, M0=3.98e10 Msun)."""
    m = 10.0**log10_mstar
    return 0.10 * m**0.14 * (1.0 + m / 3.98e10) ** (0.39 - 0.14)


def shen03_r50_early_kpc(log10_mstar: Tensor) -> Tensor:
    """Early-type half-light radius vs mass (Shen et al. 2003, eq. 17; a=0.56, b=2.88e-6)."""
    return 2.88e-6 * (10.0**log10_mstar) ** 0.56


def _tremonti04_oh12(log10_mstar: Tensor) -> Tensor:
    """Gas-phase mass-metallicity relation (Tremonti et al. 2004, ApJ 613, 898, eq. 3)."""
    x = log10_mstar.clamp(8.5, 11.5)
    return -1.492 + 1.847 * x - 0.08026 * x**2


def _gallazzi05_lg_zstar(log10_mstar: Tensor) -> Tensor:
    """Stellar mass-metallicity relation, a fit by eye to the medians of Gallazzi et al. 2005
    (MNRAS 362, 41, fig. 8): about -0.6 at 1e9, -0.25 at 1e10, +0.05 at 1e11 Msun."""
    return (0.05 - 0.32 * (11.0 - log10_mstar)).clamp(-1.0, 0.3)


@dataclass(frozen=True)
class DustDraw:
    """What a population dust law reads, each (n,).

    Attributes:
        quenched: bool, the galaxy is quenched.
        lg_sfr: log10 SFR / (Msun / yr).
        r_sfr_kpc: exponential scale length of the star formation, kpc.
        oh12: central gas-phase 12 + log(O/H).
        uniform: a U(0, 1) draw of the galaxy.
        normal: an N(0, 1) draw of the galaxy.
    """

    quenched: Tensor
    lg_sfr: Tensor
    r_sfr_kpc: Tensor
    oh12: Tensor
    uniform: Tensor
    normal: Tensor


def empirical_av_face_on_mag(d: DustDraw) -> Tensor:
    """galae's first central face-on A_V (a relation set by eye, not from the gas): uniform in
    0-0.15 mag for quenched galaxies, 0.4 + 0.35 (log SFR + 0.5) mag times 10^(0.2 N(0, 1))
    for star-forming ones."""
    lg_sfr = d.lg_sfr.clamp(-2, 1.5)
    sf = (0.4 + 0.35 * (lg_sfr + 0.5)).clamp_min(0.05) * 10.0 ** (0.2 * d.normal)
    return torch.where(d.quenched, 0.15 * d.uniform, sf)


#: Scatter of the dust-to-gas ratio at fixed metallicity, dex (the particle mocks' default).
DUST_TO_GAS_SCATTER_DEX: float = 0.15


def gas_av_face_on_mag(d: DustDraw) -> Tensor:
    """Central face-on A_V from the gas that forms the stars, the renderer's own dust law.

    The renderer's dust is A_V,0 exp(-r / (N r_SFR)) 10^(grad r): the Kennicutt-Schmidt gas of
    the exponential SFR disk, Sigma_gas ~ Sigma_SFR^(1/N), times a dust-to-gas ratio that goes
    with the gas metallicity (:mod:`galae.physics.maps`).  Its centre follows from the same
    physics: Sigma_SFR,0 = SFR / (2 pi r_SFR^2) (face on), Sigma_gas,0 from the inverted
    Kennicutt (1998) law (:func:`galae.physics.gas.gas_surface_density_msun_per_pc2`, Kroupa
    SFRs), and

        A_V,0 = kappa Sigma_gas,0 10^(12 + log(O/H) - 8.69) 10^(0.15 N(0, 1))

    with kappa the Galactic dust-to-gas ratio (:data:`galae.physics.dust.AV_PER_GAS_MSUN_PC2`,
    Bohlin, Savage & Drake 1978) and 0.15 dex of scatter in it, as the particle mocks draw
    their dust.  For galae's population it gives a median A_V,0 of about 2.3 mag for the
    star-forming galaxies (44% of them clipped to the registry's 3-mag ceiling), near the central
    face-on opacity of disks, tau_B = 3.8 +- 0.7 (A_V about 3; Driver et al. 2007, MNRAS 379,
    1022), and 0.7 mag for the quenched ones (sSFR < 1e-11.5 / yr), whose SFR, small as it is,
    lies in small disks; the first relation gives 0.23 mag overall.  (``d.quenched`` and
    ``d.uniform`` are not used: the gas sets the dust of every galaxy.)
    """
    sigma_sfr0 = 10.0**d.lg_sfr / (2.0 * math.pi * d.r_sfr_kpc**2)
    sigma_gas0 = gas.gas_surface_density_msun_per_pc2(sigma_sfr0)
    z_gas = 10.0 ** gas.oh12_to_lg_zgas_zsun(d.oh12)
    kappa = dust.AV_PER_GAS_MSUN_PC2 * 10.0 ** (DUST_TO_GAS_SCATTER_DEX * d.normal)
    return kappa * sigma_gas0 * z_gas


#: The population's central face-on A_V, by name -> ``f(DustDraw) -> A_V,0`` (n,); the draws
#: are the same for every law, so that the other latents of a seed do not depend on the choice.
POPULATION_DUST: dict[str, Callable[[DustDraw], Tensor]] = {
    "empirical": empirical_av_face_on_mag,
    "gas": gas_av_face_on_mag,
}
#: The dust of the population new mocks and simulations draw.
DEFAULT_POPULATION_DUST: str = "empirical"
#: The dust of data sets and checkpoints made before the choice existed.
LEGACY_POPULATION_DUST: str = "empirical"


def check_population_dust(name: str) -> str:
    """``name`` if it is a key of :data:`POPULATION_DUST`, else a ValueError naming them."""
    return check_choice("population_dust", name, POPULATION_DUST)


def population_dust_laws(spec: str) -> tuple[str, ...]:
    """The laws of a simulation population's dust: one key of :data:`POPULATION_DUST`, or
    several joined by "+" (each galaxy then takes one of them, with equal odds,
    :class:`galae.prior.PopulationPrior`); a ValueError names an unknown one."""
    return tuple(check_population_dust(name) for name in spec.split("+"))


def log10_mstar_total_range(registry: LatentRegistry = REGISTRY) -> tuple[float, float]:
    """The total stellar masses (log10 Msun) that the registry's bulge and disk masses can hold.

    The lower end is both components at their lowest mass (a lighter galaxy cannot be
    represented: its components would be raised to the registry's floor); the upper end is the
    lower of the components' ceilings, so that neither component of a galaxy below it (bulge
    fractions 0.01-0.99) is clipped down to the registry's range.
    """
    b, d = registry["log10_mstar_bulge_msun"], registry["log10_mstar_disk_msun"]
    return math.log10(10.0**b.low + 10.0**d.low), min(b.high, d.high)


def check_log10_mstar_range(
    lo: float,
    hi: float,
    registry: LatentRegistry = REGISTRY,
    names: tuple[str, str] = ("log10_mstar_min", "log10_mstar_max"),
) -> None:
    """Raise ``ValueError`` (naming ``names``) unless ``lo < hi`` lie in the registry's range.

    Masses outside :func:`log10_mstar_total_range` would be clipped into it per component,
    silently: a request for 1e13-1e14 Msun would give every galaxy 2e12 Msun.
    """
    low, high = log10_mstar_total_range(registry)
    for name, value in zip(names, (lo, hi), strict=True):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        if not low - 1e-9 <= value <= high + 1e-9:
            raise ValueError(
                f"{name}={value:g} is outside [{low:.2f}, {high:g}], the total stellar masses "
                "(log10 Msun) the latent registry holds (bulge and disk masses each in "
                f"[{registry['log10_mstar_bulge_msun'].low:g}, "
                f"{registry['log10_mstar_bulge_msun'].high:g}])"
            )
    if not lo < hi:
        raise ValueError(f"need {names[0]} < {names[1]}, got {lo:g} and {hi:g}")


def sample_population(
    n: int,
    generator: torch.Generator | None = None,
    registry: LatentRegistry = REGISTRY,
    dtype: torch.dtype = torch.float32,
    log10_mstar_range: tuple[float, float] = (8.5, 11.7),
    max_offset_arcsec: float = 0.6,
    population_dust: str = DEFAULT_POPULATION_DUST,
) -> dict[str, Tensor]:
    """Draw n galaxies' physical latents ``{name: (n,)}``.

    Total stellar mass is uniform in log over ``log10_mstar_range``.  A galaxy is quenched with
    probability sigmoid((log M - 10.5)/0.25) (the quenched fraction rises through ~3e10 Msun;
    Peng et al. 2010, ApJ 721, 193).  Star-forming galaxies follow the main sequence
    log SFR = 0.76 log M - 7.64 with 0.3 dex scatter (Renzini & Peng 2015, ApJL 801, L29);
    quenched ones lie 1.8 dex below with 0.4 dex scatter.  The central face-on A_V follows
    ``population_dust`` (a key of :data:`POPULATION_DUST`).

    Raises:
        ValueError: ``log10_mstar_range`` is not (low, high) with low < high inside
            :func:`log10_mstar_total_range`.
    """
    check_log10_mstar_range(*(float(v) for v in log10_mstar_range), registry=registry)
    av_law = POPULATION_DUST[check_population_dust(population_dust)]
    g = generator

    def u(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=g, dtype=torch.float64)

    def nrm(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    lo, hi = log10_mstar_range
    log_m = lo + (hi - lo) * u(n)
    quenched = u(n) < torch.sigmoid((log_m - 10.5) / 0.25)

    # bulge-to-total mass ratio: Beta(1.2, 5) (disk-dominated) or Beta(4, 2) (bulge-dominated)
    # (inverse-CDF draws from the generator's uniforms, so the result is deterministic per seed)
    bt_sf = _beta_icdf(u(n), 1.2, 5.0)
    bt_q = _beta_icdf(u(n), 4.0, 2.0)
    bt = torch.where(quenched, bt_q, bt_sf).clamp(0.01, 0.99)
    m_tot = 10.0**log_m
    lg_mb = torch.log10(m_tot * bt)
    lg_md = torch.log10(m_tot * (1.0 - bt))

    ms = 0.76 * log_m - 7.64
    lg_sfr = torch.where(quenched, ms - 1.8 + 0.4 * nrm(n), ms + 0.3 * nrm(n))

    r50_d = shen03_r50_late_kpc(lg_md) * 10.0 ** (0.18 * nrm(n))
    r_d = r50_d / 1.6783469900166612
    r_sfr = r_d * 10.0 ** (0.06 + 0.1 * nrm(n))  # H-alpha a little larger (Nelson et al. 2016)
    r_b = shen03_r50_early_kpc(lg_mb.clamp_min(9.0)) * 10.0 ** (0.15 * nrm(n))
    r_b = torch.minimum(r_b, 1.5 * r50_d)

    n_b = torch.where(quenched, 4.0 * 10.0 ** (0.12 * nrm(n)), 1.8 * 10.0 ** (0.2 * nrm(n)))
    q_b = 0.5 + 0.5 * u(n)

    age_b = torch.where(quenched, 10.0 ** (0.85 + 0.12 * u(n)), 10.0 ** (0.55 + 0.4 * u(n)))
    age_d = torch.where(quenched, 10.0 ** (0.6 + 0.35 * u(n)), 10.0 ** (0.2 + 0.5 * u(n)))

    lz = _gallazzi05_lg_zstar(log_m)
    lg_zb = lz + 0.1 + 0.15 * nrm(n)
    lg_zd = lz + 0.15 * nrm(n)
    zgrad = -0.06 / r50_d.clamp_min(1.0) * (1.0 + 0.5 * nrm(n))  # ~ -0.06 dex/R_e
    oh = _tremonti04_oh12(log_m) + 0.1 * nrm(n)
    # Sanchez et al. 2014 (A&A 563, A49): common gradient -0.1 dex per effective radius
    ohgrad = -0.1 / r50_d.clamp_min(1.0) * (1.0 + 0.4 * nrm(n))
    av = av_law(DustDraw(quenched, lg_sfr, r_sfr, oh, u(n), nrm(n)))

    cos_lo = math.cos(math.radians(85.0))
    incl = torch.rad2deg(torch.arccos(cos_lo + (1.0 - cos_lo) * u(n)))
    out = {
        "dx_arcsec": (max_offset_arcsec / 2) * nrm(n),
        "dy_arcsec": (max_offset_arcsec / 2) * nrm(n),
        "pa_deg": 180.0 * u(n),
        "inclination_deg": incl,
        "log10_mstar_bulge_msun": lg_mb,
        "r_eff_bulge_kpc": r_b,
        "sersic_n_bulge": n_b,
        "q_bulge": q_b,
        "age_bulge_gyr": age_b,
        "log10_zstar_bulge_zsun": lg_zb,
        "log10_mstar_disk_msun": lg_md,
        "r_d_kpc": r_d,
        "log10_sfr_msun_per_yr": lg_sfr,
        "r_sfr_kpc": r_sfr,
        "age_disk_gyr": age_d,
        "log10_zstar_disk_zsun": lg_zd,
        "zstar_grad_dex_per_kpc": zgrad,
        "oh12_gas": oh,
        "oh12_grad_dex_per_kpc": ohgrad,
        "av_face_on_mag": av,
    }
    clipped = {}
    for p in registry:
        span = p.high - p.low
        x = out[p.name].clamp(p.low + 1e-4 * span, p.high - 1e-4 * span)
        clipped[p.name] = x.to(dtype)
    return clipped


def _beta_icdf(u: Tensor, a: float, b: float) -> Tensor:
    """Inverse CDF of Beta(a, b) (scipy's regularised incomplete beta inverse)."""
    return torch.from_numpy(betaincinv(a, b, u.numpy())).to(u.dtype)
