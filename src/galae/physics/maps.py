"""Stage 2: latent + geometry + unit profile images -> resolved physical maps.

These are the maps the seed work predicted pixel by pixel (Buck & Wolf 2021): stellar mass,
SFR, stellar and gas metallicity, age, gas and HI, dust.  Here they are rendered from the latent.

Model (DESIGN.md, "The physical model"):

* bulge: mass ``M_b`` with a Sersic profile, one old population (age_b, Z_b);
* disk: mass ``M_d`` (stars older than 100 Myr) with an exponential profile, one population of
  age ``age_d`` whose metallicity has a linear radial gradient in dex/kpc;
* young stars: formed at the current SFR over the last ``YOUNG_AGE_GYR`` with an exponential SFR
  profile of its own scale length (inside-out growth), metallicity of the local gas;
* gas from the inverted Kennicutt-Schmidt law, HI saturating (see :mod:`galae.physics.gas`);
* dust: face-on V-band optical depth ``A_V,0 exp(-r / (N_KS r_SFR)) 10^(grad_OH r)`` - dust
  follows the gas (Sigma_gas ~ Sigma_SFR^(1/N_KS) has scale length N_KS r_SFR) times its
  metallicity (dust-to-gas ratio ~ Z; Remy-Ruyer et al. 2014) - seen through an inclined mixed
  slab (:func:`galae.physics.dust.slab_transmission`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from galae.physics import dust, gas

__all__ = [
    "GalaxyMaps",
    "RadialPopulation",
    "physical_maps",
    "radial_population",
    "YOUNG_AGE_GYR",
    "MAP_NAMES",
    "MAP_UNITS",
    "FLOOR_MSTAR",
    "FLOOR_SFR",
    "FLOOR_GAS",
    "named_maps",
]

#: The young population covers the last 100 Myr (the SFR averaging time of the table).
YOUNG_AGE_GYR: float = 0.1
#: Mass-weighted age assigned to the young population (constant SFR over 100 Myr).
YOUNG_MEAN_AGE_GYR: float = 0.05
_MAG_PER_TAU: float = 2.5 * math.log10(math.e)

#: name -> unit of the maps returned by :meth:`GalaxyMaps.named`.
MAP_UNITS: dict[str, str] = {
    "log10_sigma_mstar_msun_per_kpc2": "dex(Msun/kpc2)",
    "log10_sigma_sfr_msun_per_yr_per_kpc2": "dex(Msun/yr/kpc2)",
    "log10_zstar_zsun": "dex(Zsun), mass-weighted",
    "oh12_gas": "12+log(O/H)",
    "age_gyr": "Gyr, mass-weighted",
    "log10_sigma_gas_msun_per_pc2": "dex(Msun/pc2)",
    "log10_sigma_hi_msun_per_pc2": "dex(Msun/pc2)",
    "av_mag": "mag, effective for disk stars at the inclination",
}
MAP_NAMES: tuple[str, ...] = tuple(MAP_UNITS)

# Floors for log maps (below them a pixel is empty for practical purposes).
FLOOR_MSTAR = 1e3  # Msun/kpc^2
FLOOR_SFR = 1e-7  # Msun/yr/kpc^2
FLOOR_GAS = 1e-3  # Msun/pc^2
_TINY_MASS = 1e-20  # Msun per pixel; weight that gives empty pixels the disk's population


@dataclass(frozen=True)
class GalaxyMaps:
    """Resolved physical maps of B galaxies on the (H, W) stamp.

    All per-pixel quantities are (B, H, W); per-pixel masses and SFRs are pixel-integrated.

    Attributes:
        mstar_bulge_msun: bulge stellar mass in each pixel.
        mstar_disk_msun: disk (older than 100 Myr) stellar mass in each pixel.
        sfr_msun_per_yr: star-formation rate in each pixel.
        lg_zstar_disk_zsun: disk stellar metallicity at each pixel centre.
        oh12_gas: gas-phase 12 + log(O/H) at each pixel centre.
        av_face_on_mag: local face-on V-band attenuation (total through the disk).
        av_mag: effective V-band attenuation of the disk stars at the galaxy's inclination.
        pixel_area_kpc2: (B,) pixel area.
        age_bulge_gyr, age_disk_gyr, lg_zstar_bulge_zsun: (B,) per-galaxy population values.
        q_disk: (B,) the disk's projected axis ratio (its thickness included): a face-on
            surface density is q_disk times the sky's, and the gas laws hold face-on.
    """

    mstar_bulge_msun: Tensor
    mstar_disk_msun: Tensor
    sfr_msun_per_yr: Tensor
    lg_zstar_disk_zsun: Tensor
    oh12_gas: Tensor
    av_face_on_mag: Tensor
    av_mag: Tensor
    pixel_area_kpc2: Tensor
    age_bulge_gyr: Tensor
    age_disk_gyr: Tensor
    lg_zstar_bulge_zsun: Tensor
    q_disk: Tensor

    def _per_kpc2(self, x: Tensor) -> Tensor:
        return x / self.pixel_area_kpc2.view(-1, 1, 1)

    @property
    def mstar_young_msun(self) -> Tensor:
        """Mass formed in the last 100 Myr in each pixel."""
        return self.sfr_msun_per_yr * (YOUNG_AGE_GYR * 1e9)

    @property
    def mstar_msun(self) -> Tensor:
        """Total stellar mass in each pixel (bulge + disk + young)."""
        return self.mstar_bulge_msun + self.mstar_disk_msun + self.mstar_young_msun

    @property
    def sigma_mstar_msun_per_kpc2(self) -> Tensor:
        return self._per_kpc2(self.mstar_msun)

    @property
    def sigma_sfr_msun_per_yr_per_kpc2(self) -> Tensor:
        return self._per_kpc2(self.sfr_msun_per_yr)

    @property
    def sigma_gas_msun_per_pc2(self) -> Tensor:
        return gas.gas_surface_density_msun_per_pc2(
            self.sigma_sfr_msun_per_yr_per_kpc2, _col(self.q_disk)
        )

    @property
    def sigma_hi_msun_per_pc2(self) -> Tensor:
        return gas.hi_surface_density_msun_per_pc2(self.sigma_gas_msun_per_pc2, _col(self.q_disk))

    @property
    def lg_zstar_mass_weighted_zsun(self) -> Tensor:
        """log10 of the mass-weighted stellar Z/Zsun (young stars at the gas metallicity)."""
        zb = 10.0 ** self.lg_zstar_bulge_zsun.view(-1, 1, 1)
        zd = 10.0**self.lg_zstar_disk_zsun
        zy = 10.0 ** gas.oh12_to_lg_zgas_zsun(self.oh12_gas)
        # weights clipped at 0 (float32 rounding leaves ~1e-6 relative negative pixels), and a
        # tiny disk-like weight keeps empty pixels finite (they take the disk's value)
        mb, md, my = self._weights()
        mz = mb * zb + md * zd + my * zy
        return torch.log10(mz / (mb + md + my))

    def _weights(self) -> tuple[Tensor, Tensor, Tensor]:
        return (
            self.mstar_bulge_msun.clamp_min(0.0),
            self.mstar_disk_msun.clamp_min(0.0) + _TINY_MASS,
            self.mstar_young_msun.clamp_min(0.0),
        )

    @property
    def age_mass_weighted_gyr(self) -> Tensor:
        mb, md, my = self._weights()
        ma = (
            mb * self.age_bulge_gyr.view(-1, 1, 1)
            + md * self.age_disk_gyr.view(-1, 1, 1)
            + my * YOUNG_MEAN_AGE_GYR
        )
        return ma / (mb + md + my)

    def named(self) -> dict[str, Tensor]:
        """The public maps ``{name: (B, H, W)}`` listed in :data:`MAP_UNITS`."""
        return named_maps(
            sigma_mstar_msun_per_kpc2=self.sigma_mstar_msun_per_kpc2,
            sigma_sfr_msun_per_yr_per_kpc2=self.sigma_sfr_msun_per_yr_per_kpc2,
            lg_zstar_zsun=self.lg_zstar_mass_weighted_zsun,
            oh12_gas=self.oh12_gas,
            age_gyr=self.age_mass_weighted_gyr,
            sigma_gas_msun_per_pc2=self.sigma_gas_msun_per_pc2,
            sigma_hi_msun_per_pc2=self.sigma_hi_msun_per_pc2,
            av_mag=self.av_mag,
        )


def named_maps(
    *,
    sigma_mstar_msun_per_kpc2: Tensor,
    sigma_sfr_msun_per_yr_per_kpc2: Tensor,
    lg_zstar_zsun: Tensor,
    oh12_gas: Tensor,
    age_gyr: Tensor,
    sigma_gas_msun_per_pc2: Tensor,
    sigma_hi_msun_per_pc2: Tensor,
    av_mag: Tensor,
) -> dict[str, Tensor]:
    """The public map dictionary (names and units of :data:`MAP_UNITS`, log maps floored).

    Shared by the renderer's maps and the particle mocks' truth maps, so both always carry the
    same names, units and floors.  Every argument is (B, H, W).
    """
    return {
        "log10_sigma_mstar_msun_per_kpc2": torch.log10(
            sigma_mstar_msun_per_kpc2.clamp_min(FLOOR_MSTAR)
        ),
        "log10_sigma_sfr_msun_per_yr_per_kpc2": torch.log10(
            sigma_sfr_msun_per_yr_per_kpc2.clamp_min(FLOOR_SFR)
        ),
        "log10_zstar_zsun": lg_zstar_zsun,
        "oh12_gas": oh12_gas,
        "age_gyr": age_gyr,
        "log10_sigma_gas_msun_per_pc2": torch.log10(sigma_gas_msun_per_pc2.clamp_min(FLOOR_GAS)),
        "log10_sigma_hi_msun_per_pc2": torch.log10(sigma_hi_msun_per_pc2.clamp_min(FLOOR_GAS)),
        "av_mag": av_mag,
    }


def _col(x: Tensor) -> Tensor:
    return x.view(-1, 1, 1)


def physical_maps(
    params: Mapping[str, Tensor],
    r_disk_kpc: Tensor,
    cos_inclination: Tensor,
    q_disk: Tensor,
    pixel_area_kpc2: Tensor,
    unit_bulge: Tensor,
    unit_disk: Tensor,
    unit_sfr: Tensor,
) -> GalaxyMaps:
    """Resolved maps from the latent.

    Args:
        params: physical latents ``{name: (B,)}``.
        r_disk_kpc: (B, H, W) in-plane radius of each pixel centre.
        cos_inclination: (B,) of the disk's inclination (the dust slab's path).
        q_disk: (B,) the disk's projected axis ratio (the gas laws' deprojection).
        pixel_area_kpc2: (B,).
        unit_bulge, unit_disk, unit_sfr: (B, H, W) pixel-integrated unit-flux profiles of the
            bulge mass, disk mass and star formation.
    """
    m_b = 10.0 ** params["log10_mstar_bulge_msun"]
    m_d = 10.0 ** params["log10_mstar_disk_msun"]
    sfr = 10.0 ** params["log10_sfr_msun_per_yr"]
    pop = radial_population(params, r_disk_kpc)
    t_v = dust.slab_transmission(pop.av_face_on_mag / _MAG_PER_TAU, _col(cos_inclination))
    av_eff = -2.5 * torch.log10(t_v)

    return GalaxyMaps(
        mstar_bulge_msun=_col(m_b) * unit_bulge,
        mstar_disk_msun=_col(m_d) * unit_disk,
        sfr_msun_per_yr=_col(sfr) * unit_sfr,
        lg_zstar_disk_zsun=pop.lg_zstar_disk_zsun,
        oh12_gas=pop.oh12_gas,
        av_face_on_mag=pop.av_face_on_mag,
        av_mag=av_eff,
        pixel_area_kpc2=pixel_area_kpc2,
        age_bulge_gyr=params["age_bulge_gyr"],
        age_disk_gyr=params["age_disk_gyr"],
        lg_zstar_bulge_zsun=params["log10_zstar_bulge_zsun"],
        q_disk=q_disk,
    )


@dataclass(frozen=True)
class RadialPopulation:
    """The radially varying population of the disk plane, each (B, *S) at radii (B, *S).

    Attributes:
        lg_zstar_disk_zsun: disk stellar metallicity, within the BC03 grid.
        oh12_gas: gas-phase 12 + log(O/H).
        av_face_on_mag: face-on V-band attenuation through the disk.
    """

    lg_zstar_disk_zsun: Tensor
    oh12_gas: Tensor
    av_face_on_mag: Tensor


def radial_population(params: Mapping[str, Tensor], r_kpc: Tensor) -> RadialPopulation:
    """Metallicities and dust at in-plane radii ``r_kpc`` (B, *S) (any trailing shape).

    Everything in a galaxy's stellar populations and dust that varies across the image is a
    function of the in-plane radius alone; the renderer uses this to tabulate the light per
    unit mass on radial nodes (:mod:`galae.render.shading`).
    """

    def col(x: Tensor) -> Tensor:
        return x.view((-1,) + (1,) * (r_kpc.dim() - 1))

    lg_z_disk = col(params["log10_zstar_disk_zsun"]) + col(params["zstar_grad_dex_per_kpc"]) * r_kpc
    # keep within the stellar-population grid (BC03: 0.005-5 Zsun)
    lg_z_disk = lg_z_disk.clamp(-2.3, 0.69)
    oh12 = gas.oh12_profile(params["oh12_gas"], params["oh12_grad_dex_per_kpc"], r_kpc)
    r_dust_kpc = gas.KS_N * col(params["r_sfr_kpc"])
    z_rel = 10.0 ** (oh12 - col(params["oh12_gas"]))
    av_face_on = col(params["av_face_on_mag"]) * torch.exp(-r_kpc / r_dust_kpc) * z_rel
    return RadialPopulation(lg_zstar_disk_zsun=lg_z_disk, oh12_gas=oh12, av_face_on_mag=av_face_on)
