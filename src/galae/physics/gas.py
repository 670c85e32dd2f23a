"""Gas, HI and gas-phase metallicity from the star-formation map (pure torch functions).

The gas surface density follows from the SFR surface density by inverting the
Kennicutt-Schmidt relation (Kennicutt 1998, ApJ 498, 541, eq. 4; total gas incl. helium):

    Sigma_SFR [Msun/yr/kpc^2] = A (Sigma_gas [Msun/pc^2])^N,   A = 2.5e-4,  N = 1.4.

Kennicutt's SFRs assume a Salpeter IMF (0.1-100 Msun); galae's SFRs are Kroupa-IMF ones (its
BC03 table), 0.17 dex lower for the same light (Kennicutt & Evans 2012, ARA&A 50, 531, table
1: H-alpha calibrations log C = 41.27 for Kroupa against 41.10 in Kennicutt 1998), so the SFR
is put on Kennicutt's scale before the law is inverted.

Both laws hold for face-on surface densities, and the law is not linear: for a disk of projected
axis ratio q (cos i for a thin one) the sky-plane surface densities are the face-on ones over q,
so ``Sigma_gas,sky = KS^-1(q Sigma_SFR,sky) / q``, and HI saturates face-on.

Atomic gas saturates at high surface density, where the gas turns molecular: Sigma_HI rarely
exceeds ~9 Msun/pc^2 (Bigiel et al. 2008, AJ 136, 2846, sect. 4.2; Leroy et al. 2008).  We use a
smooth minimum ``Sigma_HI = Sigma_gas / (1 + (Sigma_gas / Sigma_sat)^k)^(1/k)``.
"""

from __future__ import annotations

from torch import Tensor

__all__ = [
    "KS_A_MSUN_PER_YR_PER_KPC2",
    "KS_N",
    "SALPETER_OVER_KROUPA_SFR",
    "HI_SATURATION_MSUN_PER_PC2",
    "SOLAR_OH12",
    "gas_surface_density_msun_per_pc2",
    "hi_surface_density_msun_per_pc2",
    "oh12_profile",
    "oh12_to_lg_zgas_zsun",
]

#: Kennicutt (1998) eq. 4 normalisation and slope.
KS_A_MSUN_PER_YR_PER_KPC2: float = 2.5e-4
KS_N: float = 1.4
#: A Salpeter-IMF SFR over the Kroupa-IMF SFR of the same light (Kennicutt & Evans 2012, table 1:
#: 10^(41.27 - 41.10)); galae's SFRs are Kroupa ones, Kennicutt's (1998) Salpeter ones.
SALPETER_OVER_KROUPA_SFR: float = 10.0**0.17
#: HI saturation surface density (Bigiel et al. 2008).
HI_SATURATION_MSUN_PER_PC2: float = 9.0
#: Sharpness of the smooth saturation (a model choice).
HI_SATURATION_SHARPNESS: float = 3.0
#: Solar oxygen abundance 12 + log(O/H) (Asplund et al. 2009, ARA&A 47, 481, table 1).
SOLAR_OH12: float = 8.69


def gas_surface_density_msun_per_pc2(
    sigma_sfr_msun_per_yr_per_kpc2: Tensor, q_disk: Tensor | float = 1.0
) -> Tensor:
    """Total gas surface density from the inverted Kennicutt-Schmidt law (any shape).

    ``sigma_sfr_msun_per_yr_per_kpc2``: the (Kroupa-IMF) SFR surface density on the sky;
    ``q_disk``: the disk's projected axis ratio, broadcastable to it (1: face-on).
    Returns the gas surface density on the sky (the face-on one over ``q_disk``).
    """
    s = sigma_sfr_msun_per_yr_per_kpc2.clamp_min(0.0) * q_disk
    s = s * SALPETER_OVER_KROUPA_SFR
    # s^(1/N) has an infinite derivative at 0; a tiny floor keeps gradients finite.
    face_on = ((s + 1e-30) / KS_A_MSUN_PER_YR_PER_KPC2) ** (1.0 / KS_N)
    return face_on / q_disk


def hi_surface_density_msun_per_pc2(
    sigma_gas_msun_per_pc2: Tensor, q_disk: Tensor | float = 1.0
) -> Tensor:
    """Atomic gas surface density: total gas, smoothly saturated at HI_SATURATION_MSUN_PER_PC2
    face-on.  Both surface densities are on the sky for a disk of projected axis ratio
    ``q_disk`` (1: face-on), so the sky-plane HI saturates at the saturation value over
    ``q_disk``."""
    k = HI_SATURATION_SHARPNESS
    face_on = sigma_gas_msun_per_pc2 * q_disk
    x = face_on / HI_SATURATION_MSUN_PER_PC2
    return face_on / (1.0 + x**k) ** (1.0 / k) / q_disk


def oh12_profile(oh12_center: Tensor, grad_dex_per_kpc: Tensor, r_kpc: Tensor) -> Tensor:
    """Gas-phase 12 + log(O/H) on radius ``r_kpc`` (B, *S) for per-galaxy (B,) centre/gradient.

    A linear gradient in dex/kpc (Sanchez et al. 2014, A&A 563, A49), clamped to [7.0, 9.6] so
    that steep gradients at large radius stay physical.
    """
    extra = (1,) * (r_kpc.dim() - 1)
    oh = oh12_center.view(-1, *extra) + grad_dex_per_kpc.view(-1, *extra) * r_kpc
    return oh.clamp(7.0, 9.6)


def oh12_to_lg_zgas_zsun(oh12: Tensor) -> Tensor:
    """log10 Z_gas/Z_sun assuming solar abundance ratios: 12+log(O/H) - 8.69."""
    return oh12 - SOLAR_OH12
