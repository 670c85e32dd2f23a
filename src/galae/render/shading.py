"""Stage 3: physical maps -> band light per pixel before the PSF (the "shader").

Each pixel's band flux is its stellar mass times the flux per unit mass of its population,
attenuated by dust, at the galaxy's redshift (DESIGN.md, "Light"):

    F_band = [M_b f_ssp(age_b, Z_b) + M_d f_tau(age_d, Z_d(r))] T_slab(r)
             + SFR f_young(Z_gas(r)) T_slab(r) T_birth(r)

with ``f_tau`` the flux per unit mass of the disk's older-than-100 Myr stars, spread over
ages 0.1 Gyr ... the age of the universe by the truncated tau model of mean age age_d
(:mod:`galae.physics.sfh`; ``disk_history="single"`` takes one population of age age_d, as
checkpoints made before the tau model were trained with), ``T_slab`` the inclined mixed-slab
transmission of the local face-on optical depth and
``T_birth`` the extra screen of birth clouds around stars younger than 100 Myr (nebular emission
included).  Calzetti et al. (2000, ApJ 533, 682, sect. 3) measure E(B-V)_stars = 0.44
E(B-V)_gas, i.e. ionised gas (and the young stars that excite it) sees 1/0.44 times the
attenuation of the bulk of the stars; the birth-cloud screen supplies the difference, (1/0.44 -
1) times the slab's effective A_V at the pixel's radius and the galaxy's inclination
(``birth_clouds="effective"``, :data:`galae.physics.dust.BIRTH_CLOUDS`; ``"face_on"``, the
face-on A_V instead, is what models made before the twenty-second release were trained with).

Everything that varies across a galaxy in the brackets is a function of the in-plane radius r
alone (:func:`galae.physics.maps.radial_population`).  The light per unit mass is therefore
evaluated either at every pixel (exact; ``RenderSettings.shading_radial_nodes = 0``) or on K
radial nodes per galaxy and interpolated to the pixels, linearly in log flux (the default,
K = 256: the population-table look-ups, dust and powers run on (B, C, K) instead of
(B, C, H, W)).  The nodes are uniform in s = r / (r + r_c) up to the stamp's largest radius,
with r_c the larger of the dust's and the disk's scale lengths: dense where dust and
metallicity change fastest, and smooth at r = 0 (finite gradients).  Log-linear interpolation
is exact for the metallicity gradients between the population grid's metallicities.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from galae.physics import dust, gas, sfh
from galae.physics.maps import GalaxyMaps, RadialPopulation, radial_population
from galae.physics.sps import SPSTable

__all__ = [
    "BandLight",
    "BulkPopulation",
    "UnitLight",
    "RadialTable",
    "radial_table",
    "unit_light",
    "shade",
]


@dataclass(frozen=True)
class BandLight:
    """Pixel-integrated band fluxes before the PSF, nanomaggies per pixel, each (B, C, H, W).

    ``moments_nmgy`` (B, C, 6, H, W), when the renderer asks for it, holds the total light with
    its first and second moments about each pixel centre (MOMENT_NAMES order of
    :mod:`galae.render.raster`), for :func:`galae.render.psf.convolve_moments`.
    """

    bulge_nmgy: Tensor
    disk_nmgy: Tensor
    young_nmgy: Tensor
    moments_nmgy: Tensor | None = None

    @property
    def total_nmgy(self) -> Tensor:
        return self.bulge_nmgy + self.disk_nmgy + self.young_nmgy


@dataclass(frozen=True)
class BulkPopulation:
    """The per-galaxy population values of :class:`galae.physics.maps.GalaxyMaps`, each (B,):
    what :func:`unit_light` reads besides the radial population."""

    age_bulge_gyr: Tensor
    age_disk_gyr: Tensor
    lg_zstar_bulge_zsun: Tensor

    @classmethod
    def from_params(cls, params: Mapping[str, Tensor]) -> BulkPopulation:
        return cls(
            params["age_bulge_gyr"], params["age_disk_gyr"], params["log10_zstar_bulge_zsun"]
        )


@dataclass(frozen=True)
class UnitLight:
    """Transmitted observed band flux per unit of each component, each (B, C, *S).

    Attributes:
        bulge_nmgy_per_msun: bulge stars (one population per galaxy) behind the disk's slab dust.
        disk_nmgy_per_msun: disk stars older than 100 Myr (a truncated tau-model history).
        young_nmgy_per_msun_yr: stars formed over the last 100 Myr per unit SFR, nebular
            emission included, behind slab and birth-cloud dust.
    """

    bulge_nmgy_per_msun: Tensor
    disk_nmgy_per_msun: Tensor
    young_nmgy_per_msun_yr: Tensor


@dataclass(frozen=True)
class RadialTable:
    """Radial nodes of B galaxies and each pixel's place between them.

    Attributes:
        population: the population at the nodes, each field (B, K).
        index: (B, H * W) lower node of each pixel.
        weight: (B, 1, H * W) linear weight of the upper node.
        radius_kpc: (B, K) in-plane radius of the nodes.
    """

    population: RadialPopulation
    index: Tensor
    weight: Tensor
    radius_kpc: Tensor

    def to_pixels(self, values: Tensor, shape: tuple[int, int]) -> Tensor:
        """Interpolate node values (B, N, K) to the pixels: (B, N, H, W).

        A row gather: the N values of a node are contiguous, so each pixel reads two short rows
        (several times faster on a CPU than gathering along the last axis per band).
        """
        b, n, k = values.shape
        rows = values.transpose(1, 2).reshape(b * k, n)
        offset = torch.arange(b, device=values.device).unsqueeze(1) * k
        flat = (self.index + offset).reshape(-1)
        lo = rows.index_select(0, flat)
        hi = rows.index_select(0, flat + 1)
        out = torch.lerp(lo, hi, self.weight.reshape(-1, 1))  # (B * H * W, N)
        return out.view(b, -1, n).transpose(1, 2).reshape(b, n, *shape)


def radial_table(params: Mapping[str, Tensor], r_disk_kpc: Tensor, n_nodes: int) -> RadialTable:
    """K = ``n_nodes`` radial nodes spanning each galaxy's pixels, and the population on them.

    Args:
        params: physical latents ``{name: (B,)}``.
        r_disk_kpc: (B, H, W) in-plane radius of each pixel centre.
        n_nodes: K >= 2.
    """
    if n_nodes < 2:
        raise ValueError(f"the radial table needs at least 2 nodes, got {n_nodes}")
    b = r_disk_kpc.shape[0]
    r = r_disk_kpc.reshape(b, -1)
    r_max = r.detach().amax(-1, keepdim=True).clamp_min(1e-6)
    # the nodes crowd within r_c: the larger of the dust's and the disk's scale lengths
    r_c = torch.maximum(gas.KS_N * params["r_sfr_kpc"], params["r_d_kpc"]).detach().view(b, 1)
    s_max = r_max / (r_max + r_c)
    frac = torch.linspace(0.0, 1.0, n_nodes, dtype=r.dtype, device=r.device)
    s_nodes = s_max * frac  # (B, K)
    r_nodes = r_c * s_nodes / (1.0 - s_nodes)
    t = (r / (r + r_c)) / s_max * (n_nodes - 1)
    index = t.detach().floor().clamp(0, n_nodes - 2).long()
    weight = (t - index.to(t.dtype)).unsqueeze(1)
    return RadialTable(radial_population(params, r_nodes), index, weight, r_nodes)


def unit_light(
    population: RadialPopulation,
    maps: GalaxyMaps | BulkPopulation,
    redshift: Tensor,
    cos_inclination: Tensor,
    sps: SPSTable,
    disk_history: str = sfh.DEFAULT_DISK_HISTORY,
    birth_clouds: str = dust.DEFAULT_BIRTH_CLOUDS,
) -> UnitLight:
    """Transmitted flux per unit mass (or SFR) of each component where ``population`` is given.

    Args:
        population: fields (B, *S): at the pixels or at radial nodes.
        maps: supplies the per-galaxy bulge and disk ages and the bulge metallicity (the maps
            or a :class:`BulkPopulation`).
        redshift, cos_inclination: (B,).
        sps: the stellar-population table (its bands set C).
        disk_history: the disk's older stars' history, a key of
            :data:`galae.physics.sfh.DISK_HISTORIES`.
        birth_clouds: the young stars' extra dust, a key of
            :data:`galae.physics.dust.BIRTH_CLOUDS`.
    Returns:
        :class:`UnitLight` with fields (B, C, *S).
    """
    extra = (1,) * (population.av_face_on_mag.dim() - 1)
    lg_age_b = torch.log10(maps.age_bulge_gyr)
    f_b = sps.ssp_flux_nmgy_per_msun(redshift, lg_age_b, maps.lg_zstar_bulge_zsun)  # (B, C)
    f_d = sfh.DISK_HISTORIES[disk_history](
        sps, redshift, maps.age_disk_gyr, population.lg_zstar_disk_zsun
    )  # (B, C, *S)
    # BC03 5 Zsun spectra have almost no ionising photons (their nebular emission vanishes), so the
    # young population stops at the 2.5 Zsun column.
    lg_zgas = gas.oh12_to_lg_zgas_zsun(population.oh12_gas).clamp(-2.3, 0.398)
    f_y = sps.young_flux_nmgy_per_msun_yr(redshift, lg_zgas)  # (B, C, *S)

    k_band = sps.calzetti_k_band(redshift).view(*f_b.shape, *extra)  # (B, C, 1...)
    av0 = population.av_face_on_mag.unsqueeze(1)  # (B, 1, *S)
    cos_i = cos_inclination.view(-1, 1, *extra)
    tau = dust.av_to_tau_band(av0, k_band)
    clumping = dust.active_dust_clumping()  # a simulation nuisance (dust.dust_clumping)
    if clumping is None:
        t_slab = t_young = dust.slab_transmission(tau, cos_i)
    else:  # old stars spread evenly; young ones where the gas is (Sigma_SFR ~ Sigma_gas^N)
        t_slab = clumping.transmission(tau, cos_i)
        t_young = clumping.transmission(tau, cos_i, gas.KS_N)
    av_birth = dust.BIRTH_CLOUDS[birth_clouds](av0, cos_i)  # (B, 1, *S)
    t_birth = dust.screen_transmission(dust.av_to_tau_band(av_birth, k_band))
    return UnitLight(
        bulge_nmgy_per_msun=f_b.view(*f_b.shape, *extra) * t_slab,
        disk_nmgy_per_msun=f_d * t_slab,
        young_nmgy_per_msun_yr=f_y * t_young * t_birth,
    )


def shade(
    maps: GalaxyMaps,
    redshift: Tensor,
    cos_inclination: Tensor,
    sps: SPSTable,
    table: RadialTable | None = None,
    mass_moments: tuple[Tensor, Tensor, Tensor] | None = None,
    disk_history: str = sfh.DEFAULT_DISK_HISTORY,
    birth_clouds: str = dust.DEFAULT_BIRTH_CLOUDS,
) -> BandLight:
    """Band light of every pixel.

    Args:
        maps: physical maps of B galaxies on (H, W).
        redshift: (B,).
        cos_inclination: (B,).
        sps: the stellar-population table (its bands set C).
        table: radial nodes (:func:`radial_table`) on which to evaluate the light per unit mass;
            None evaluates it at every pixel from the maps.
        mass_moments: bulge mass, disk mass and SFR of each pixel with their intra-pixel
            moments, each (B, 6, H, W) (units times 1, pix, pix^2); when given, the result
            carries the light's moments (population and dust taken at each pixel centre).
        disk_history, birth_clouds: as in :func:`unit_light`.
    """
    shape = tuple(maps.mstar_disk_msun.shape[-2:])
    if table is None:
        pixel_pop = RadialPopulation(maps.lg_zstar_disk_zsun, maps.oh12_gas, maps.av_face_on_mag)
        unit = unit_light(
            pixel_pop, maps, redshift, cos_inclination, sps, disk_history, birth_clouds
        )
        per_b, per_d, per_y = (
            unit.bulge_nmgy_per_msun,
            unit.disk_nmgy_per_msun,
            unit.young_nmgy_per_msun_yr,
        )
    else:
        unit = unit_light(
            table.population, maps, redshift, cos_inclination, sps, disk_history, birth_clouds
        )
        stacked = torch.cat(
            [unit.bulge_nmgy_per_msun, unit.disk_nmgy_per_msun, unit.young_nmgy_per_msun_yr], 1
        )  # (B, 3C, K)
        per_b, per_d, per_y = table.to_pixels(stacked, shape).chunk(3, 1)
    bulge = maps.mstar_bulge_msun.unsqueeze(1) * per_b
    disk = maps.mstar_disk_msun.unsqueeze(1) * per_d
    young = maps.sfr_msun_per_yr.unsqueeze(1) * per_y
    moments = None
    if mass_moments is not None:
        mb, md, ms = (m.unsqueeze(1) for m in mass_moments)  # (B, 1, 6, H, W)
        # one output buffer, two fused multiply-adds (no (B, C, 6, H, W) temporaries)
        moments = per_b.unsqueeze(2) * mb
        moments.addcmul_(per_d.unsqueeze(2), md).addcmul_(per_y.unsqueeze(2), ms)
    return BandLight(bulge_nmgy=bulge, disk_nmgy=disk, young_nmgy=young, moments_nmgy=moments)
