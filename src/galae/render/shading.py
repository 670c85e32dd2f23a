"""Stage 3: physical maps -> band light per pixel before the PSF (the "shader").

Each pixel's band flux is its stellar mass times the flux per unit mass of its population,
attenuated by dust, at the galaxy's redshift (DESIGN.md, "Light"):

    F_band = [M_b f_ssp(age_b, Z_b) + M_d f_ssp(age_d, Z_d(r))] T_slab
             + SFR f_young(Z_gas(r)) T_slab T_birth

with ``T_slab`` the inclined mixed-slab transmission of the local face-on optical depth and
``T_birth`` the extra screen of birth clouds around stars younger than 100 Myr (nebular emission
included).  Calzetti et al. (2000, ApJ 533, 682, sect. 3) measure E(B-V)_stars = 0.44
E(B-V)_gas, i.e. ionised gas (and the young stars that excite it) sees 1/0.44 times the
attenuation of the bulk of the stars; the birth-cloud screen supplies the difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from galae.physics import dust, gas
from galae.physics.maps import GalaxyMaps
from galae.physics.sps import SPSTable

__all__ = ["BandLight", "shade", "BIRTH_CLOUD_EXTRA"]

#: Extra attenuation of young stars relative to the diffuse face-on A_V (1/0.44 - 1).
BIRTH_CLOUD_EXTRA: float = 1.0 / 0.44 - 1.0


@dataclass(frozen=True)
class BandLight:
    """Pixel-integrated band fluxes before the PSF, nanomaggies per pixel, each (B, C, H, W)."""

    bulge_nmgy: Tensor
    disk_nmgy: Tensor
    young_nmgy: Tensor

    @property
    def total_nmgy(self) -> Tensor:
        return self.bulge_nmgy + self.disk_nmgy + self.young_nmgy


def shade(
    maps: GalaxyMaps,
    redshift: Tensor,
    cos_inclination: Tensor,
    sps: SPSTable,
) -> BandLight:
    """Band light of every pixel.

    Args:
        maps: physical maps of B galaxies on (H, W).
        redshift: (B,).
        cos_inclination: (B,).
        sps: the stellar-population table (its bands set C).
    """
    lg_age_b = torch.log10(maps.age_bulge_gyr)
    lg_age_d = torch.log10(maps.age_disk_gyr)
    f_b = sps.ssp_flux_nmgy_per_msun(redshift, lg_age_b, maps.lg_zstar_bulge_zsun)  # (B, C)
    f_d = sps.ssp_flux_nmgy_per_msun(redshift, lg_age_d, maps.lg_zstar_disk_zsun)  # (B,C,H,W)
    # BC03 5 Zsun spectra have almost no ionising photons (their nebular emission vanishes), so the
    # young population stops at the 2.5 Zsun column.
    lg_zgas = gas.oh12_to_lg_zgas_zsun(maps.oh12_gas).clamp(-2.3, 0.398)
    f_y = sps.young_flux_nmgy_per_msun_yr(redshift, lg_zgas)  # (B, C, H, W)

    k_band = sps.calzetti_k_band(redshift)[..., None, None]  # (B, C, 1, 1)
    av0 = maps.av_face_on_mag.unsqueeze(1)  # (B, 1, H, W)
    t_slab = dust.slab_transmission(
        dust.av_to_tau_band(av0, k_band), cos_inclination.view(-1, 1, 1, 1)
    )
    t_birth = dust.screen_transmission(dust.av_to_tau_band(BIRTH_CLOUD_EXTRA * av0, k_band))

    bulge = maps.mstar_bulge_msun.unsqueeze(1) * f_b[..., None, None] * t_slab
    disk = maps.mstar_disk_msun.unsqueeze(1) * f_d * t_slab
    young = maps.sfr_msun_per_yr.unsqueeze(1) * f_y * t_slab * t_birth
    return BandLight(bulge_nmgy=bulge, disk_nmgy=disk, young_nmgy=young)
