"""The galaxy renderer: latent -> physical maps -> band light -> PSF-convolved images.

Stages (each a pure function returning a frozen dataclass):

1. :func:`galae.render.geometry.galaxy_geometry` - placement, projection, radii in pixels;
2. :func:`rasterize_components` - pixel-integrated unit profiles of bulge mass, disk mass, SFR;
3. :func:`galae.physics.maps.physical_maps` - resolved physical maps;
4. :func:`galae.render.shading.shade` - band light through the population table and dust;
5. :func:`galae.render.psf.convolve` - PSF convolution (FFT, padded).

:class:`GalaxyRenderer` only wires them and holds the population table as buffers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor, nn

from galae.latent import REGISTRY, LatentRegistry
from galae.physics import cosmology, dust, sfh
from galae.physics.maps import YOUNG_AGE_GYR, GalaxyMaps, physical_maps, radial_population
from galae.physics.sps import SPSTable
from galae.render import psf as psf_mod
from galae.render.geometry import GalaxyGeometry, galaxy_geometry
from galae.render.observation import Observation
from galae.render.raster import (
    sersic_central_moments,
    sersic_image,
    sersic_image_and_central_moments,
    sersic_pixel_geometry,
    sersic_pixel_moments,
    smooth_moment_deviations,
)
from galae.render.regrid import overlap_matrix
from galae.render.shading import BandLight, BulkPopulation, radial_table, shade, unit_light
from galae.settings import DEFAULT_SETTINGS, RenderSettings

__all__ = [
    "ComponentImages",
    "Rendering",
    "GalaxyRenderer",
    "rasterize_components",
    "half_light_radius_pix",
]


@dataclass(frozen=True)
class ComponentImages:
    """Pixel-integrated unit-total-flux profiles, each (B, H, W)."""

    bulge: Tensor
    disk: Tensor
    sfr: Tensor


@dataclass(frozen=True)
class Rendering:
    """Everything one render produces.

    Attributes:
        images: (B, C, H, W) PSF-convolved model images, nanomaggies per pixel (noiseless).
        light: band light before the PSF, by component.
        maps: resolved physical maps.
        geometry: pixel-space geometry.
    """

    images: Tensor
    light: BandLight
    maps: GalaxyMaps
    geometry: GalaxyGeometry


def rasterize_components(
    params: Mapping[str, Tensor],
    geom: GalaxyGeometry,
    shape: tuple[int, int],
    settings: RenderSettings,
    moments: bool = False,
    central: bool = False,
) -> tuple[ComponentImages, tuple[Tensor, Tensor, Tensor] | None]:
    """Draw the three structural profiles (the bulges in one call of the Sersic rasterizer,
    the two exponential disks in another).

    Returns the unit-flux images and, when ``moments``, each profile's intra-pixel moments
    (bulge, disk, SFR), each (B, 6, H, W) in MOMENT_NAMES order; when ``central`` instead,
    the moments of the central box with its ring, (3B, 6, K + 2, K + 2) (bulges, disks,
    SFR), and the (B,) row and column of the box's first pixel
    (:func:`galae.render.raster.sersic_image_and_central_moments`).
    """
    n_b = geom.center_x_pix.shape[0]
    bulge, disks = _component_profiles(params, geom)
    if central:
        outs = [sersic_image_and_central_moments(*p, shape, settings) for p in (bulge, disks)]
        img = torch.cat([o[0] for o in outs])
        units = ComponentImages(bulge=img[:n_b], disk=img[n_b : 2 * n_b], sfr=img[2 * n_b :])
        return units, (torch.cat([o[1] for o in outs]), outs[0][2], outs[0][3])
    if moments:
        mom = torch.cat([sersic_pixel_moments(*p, shape, settings).stack() for p in (bulge, disks)])
        parts = (mom[:n_b], mom[n_b : 2 * n_b], mom[2 * n_b :])
        return ComponentImages(*(p[:, 0] for p in parts)), parts
    img = torch.cat([sersic_image(*p, shape, settings) for p in (bulge, disks)])
    return ComponentImages(bulge=img[:n_b], disk=img[n_b : 2 * n_b], sfr=img[2 * n_b :]), None


def _component_profiles(
    params: Mapping[str, Tensor], geom: GalaxyGeometry
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Sersic arguments (r_half, n, q, pa, cx, cy) of the bulges (B,) and of the two
    exponential disks, stellar and star-forming, batched together (2B,): kept apart so that
    the exponentials get the integer-index incomplete gamma functions of the raster's exact
    central pixels."""
    one = torch.ones_like(geom.q_disk)
    bulge = (
        geom.r_half_bulge_pix,
        params["sersic_n_bulge"],
        params["q_bulge"],
        geom.pa_rad,
        geom.center_x_pix,
        geom.center_y_pix,
    )
    disks = (
        torch.cat([geom.r_half_disk_pix, geom.r_half_sfr_pix]),
        torch.cat([one, one]),
        torch.cat([geom.q_disk, geom.q_disk]),
        geom.pa_rad.repeat(2),
        geom.center_x_pix.repeat(2),
        geom.center_y_pix.repeat(2),
    )
    return bulge, disks


def central_band_moments(
    params: Mapping[str, Tensor],
    obs: Observation,
    geom: GalaxyGeometry,
    bulk: GalaxyMaps | BulkPopulation,
    sps: SPSTable,
    central_moments: tuple[Tensor, Tensor, Tensor],
    disk_history: str = sfh.DEFAULT_DISK_HISTORY,
    birth_clouds: str = dust.DEFAULT_BIRTH_CLOUDS,
) -> list[Tensor]:
    """Band light moments of each component in the central box, [bulge, disk, SFR], each
    (B, C, 6, K + 2, K + 2).

    The three profiles share a centre and hence a box of central pixels.  Their unit-flux
    moments there (``central_moments``, from :func:`rasterize_components`: (3B, 6, K+2, K+2)
    and the (B,) row and column of the box) are weighted by each component's total and light
    per unit mass at the box's pixels (populations and dust taken at each pixel centre, as
    ``shade`` does with moments).
    """
    n_b = geom.center_x_pix.shape[0]
    moments, row0, col0 = central_moments
    box = moments.shape[-1]  # the central box and its ring of neighbours
    ar = torch.arange(box, device=row0.device)
    rows, cols = row0[:, None] + ar, col0[:, None] + ar
    batch_index = torch.arange(n_b, device=row0.device)[:, None, None]
    r_box = geom.r_disk_kpc[batch_index, rows[:, :, None], cols[:, None, :]]  # (B, K+2, K+2)
    population = radial_population(params, r_box)
    unit = unit_light(
        population, bulk, obs.redshift, geom.cos_inclination, sps, disk_history, birth_clouds
    )
    per_unit = (unit.bulge_nmgy_per_msun, unit.disk_nmgy_per_msun, unit.young_nmgy_per_msun_yr)
    return [
        (t.view(-1, 1, 1, 1) * u).unsqueeze(2) * mom.unsqueeze(1)
        for t, u, mom in zip(_component_totals(params), per_unit, moments.split(n_b), strict=True)
    ]


def _component_totals(params: Mapping[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Bulge mass, disk mass (M_sun) and SFR (M_sun / yr), each (B,)."""
    return (
        10.0 ** params["log10_mstar_bulge_msun"],
        10.0 ** params["log10_mstar_disk_msun"],
        10.0 ** params["log10_sfr_msun_per_yr"],
    )


def central_psf_convolution(
    totals: Tensor,
    band_moments: list[Tensor],
    central_moments: tuple[Tensor, Tensor, Tensor],
    obs: Observation,
    margin: int,
) -> Tensor:
    """PSF-convolved stamp from pixel totals and the moments of the central pixels.

    The band light's moments in the central box (:func:`central_band_moments`, summed over
    the components) less those of smooth light (:func:`galae.render.raster.
    smooth_moment_deviations`; differencing the band light, not the mass, keeps the identity
    behind them exact where dust varies across the centre) go with the band totals (B, C, H',
    W') through :func:`galae.render.psf.convolve_central_moments`.  The totals cover the drawn
    grid (stamp plus ``margin``); the result covers the stamp.
    """
    _, row0, col0 = central_moments
    central = smooth_moment_deviations(sum(band_moments))
    return psf_mod.convolve_central_moments(
        totals, central, row0 + 1, col0 + 1, obs.psf, obs.pixel_scale_arcsec, margin
    )


@contextmanager
def flush_subnormals() -> Iterator[None]:
    """Flush subnormal floats to zero on the CPU while the block runs, then restore the state.

    Far from a galaxy the profile, its moments and the PSF tails underflow through the
    subnormal range, where CPU arithmetic is one to two orders of magnitude slower; those values
    carry no light that matters (< 1e-38 of a unit-flux profile per pixel).
    """
    was_on = bool((torch.tensor([1e-39], dtype=torch.float32, device="cpu") * 1.0).item() == 0.0)
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not was_on:
            torch.set_flush_denormal(False)


def _crop(obj, margin: int, shape: tuple[int, int]):
    """A copy of a frozen dataclass with every field of >= 3 dims cropped to the stamp."""
    h, w = shape
    changes = {}
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, Tensor) and value.dim() >= 3:
            changes[f.name] = value[..., margin : margin + h, margin : margin + w]
    return replace(obj, **changes)


def half_light_radius_pix(
    light: Tensor,
    center_x_pix: Tensor,
    center_y_pix: Tensor,
    n_iter: int = 40,
    total: Tensor | None = None,
) -> Tensor:
    """Radius of the circle about the centre that encloses half of the light.

    Pixels are weighted by a linear ramp ``clip(R - d + 1/2, 0, 1)`` of their centre's distance
    ``d`` (a soft aperture that approximates the pixel's fractional overlap), and R is found by
    bisection.

    Args:
        light: (B, C, H, W) non-negative light (PSF-free).
        center_x_pix, center_y_pix: (B,).
        total: (B, C) total light whose half is sought (default: the stamp's sum).
    Returns:
        (B, C) radius in pixels (the bisection's upper end when the stamp holds less than half).
    """
    b, c, h, w = light.shape
    y = torch.arange(h, dtype=light.dtype, device=light.device).view(1, h, 1)
    x = torch.arange(w, dtype=light.dtype, device=light.device).view(1, 1, w)
    d = torch.sqrt((x - center_x_pix.view(-1, 1, 1)) ** 2 + (y - center_y_pix.view(-1, 1, 1)) ** 2)
    d = d.reshape(b, 1, h * w)
    f = light.reshape(b, c, h * w)
    half = 0.5 * (f.sum(-1, keepdim=True) if total is None else total.unsqueeze(-1))
    lo = torch.zeros(b, c, 1, dtype=light.dtype, device=light.device)
    hi = torch.full_like(lo, float(max(h, w)))
    for _ in range(n_iter):
        mid = 0.5 * (lo + hi)
        enclosed = (f * (mid - d + 0.5).clamp(0.0, 1.0)).sum(-1, keepdim=True)
        inside = enclosed >= half
        hi = torch.where(inside, mid, hi)
        lo = torch.where(inside, lo, mid)
    return (0.5 * (lo + hi)).squeeze(-1)


class GalaxyRenderer(nn.Module):
    """Differentiable analytic galaxy renderer (the decoder of galae).

    Args:
        sps: stellar-population table (bands); default the packaged SDSS ugriz table.
        settings: numerical accuracy settings.
        registry: the latent registry whose parameters the renderer reads.
        disk_history: the star-formation history of the disk's older-than-100 Myr stars (a key
            of :data:`galae.physics.sfh.DISK_HISTORIES`: "tau", the default, or "single",
            one population, which checkpoints made before the tau model were trained with).
            Physics, not accuracy: a model is trained for one and saves it.
        birth_clouds: the young stars' extra dust (a key of
            :data:`galae.physics.dust.BIRTH_CLOUDS`: "effective", the default, (1/0.44 - 1) times
            the slab's effective A_V, or "face_on", (1/0.44 - 1) times the face-on A_V, which
            checkpoints made before the choice were trained with).  Physics, saved likewise.
    """

    def __init__(
        self,
        sps: SPSTable | None = None,
        settings: RenderSettings = DEFAULT_SETTINGS,
        registry: LatentRegistry = REGISTRY,
        disk_history: str = sfh.DEFAULT_DISK_HISTORY,
        birth_clouds: str = dust.DEFAULT_BIRTH_CLOUDS,
    ) -> None:
        super().__init__()
        self.sps = sps if sps is not None else SPSTable.load("sdss")
        self.settings = settings
        self.registry = registry
        self.disk_history = sfh.check_disk_history(disk_history)
        self.birth_clouds = dust.check_birth_clouds(birth_clouds)
        # tabulate the cosmology now (astropy), so that torch.compile(renderer) traces only torch
        cosmology.kpc_per_arcsec(torch.tensor([0.1]))

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self.sps.bands)

    def _check(self, params: Mapping[str, Tensor], obs: Observation, validate: bool) -> None:
        if tuple(obs.bands) != self.bands:
            raise ValueError(
                f"observation bands {tuple(obs.bands)} do not match the renderer's population "
                f"table bands {self.bands} (order matters)"
            )
        if validate:
            self.registry.check(params)
        for name in self.registry.names:
            if not isinstance(params[name], Tensor):
                raise ValueError(
                    f"parameter {name!r} must be a torch.Tensor of shape (B,), got "
                    f"{type(params[name]).__name__} (galae.Latent converts numpy arrays)"
                )
            if params[name].shape != obs.redshift.shape:
                raise ValueError(
                    f"parameter {name!r} has shape {tuple(params[name].shape)}, "
                    f"expected (B,) = {tuple(obs.redshift.shape)}"
                )

    def light(
        self,
        params: Mapping[str, Tensor],
        obs: Observation,
        shape: tuple[int, int] | None = None,
        margin: int = 0,
        moments: bool = False,
        validate: bool = True,
    ) -> tuple[BandLight, GalaxyMaps, GalaxyGeometry]:
        """Stages 1-4: band light before the PSF.

        Args:
            params, obs, validate: as :meth:`forward`.
            shape: stamp (default the observation's).
            margin: pixels added on every side (the galaxy stays centred; the result covers
                (H + 2 margin, W + 2 margin)).
            moments: also return the light's intra-pixel moments (``BandLight.moments_nmgy``)
                for :func:`galae.render.psf.convolve_moments`.
        """
        self._check(params, obs, validate)
        return self._light(params, obs, shape, margin, moments)[:3]

    def _light(
        self,
        params: Mapping[str, Tensor],
        obs: Observation,
        shape: tuple[int, int] | None = None,
        margin: int = 0,
        moments: bool = False,
        central: bool = False,
    ) -> tuple[BandLight, GalaxyMaps, GalaxyGeometry, tuple[Tensor, Tensor, Tensor] | None]:
        """:meth:`light`, and with ``central`` the unit-flux moments of the central pixels
        (see :func:`rasterize_components`)."""
        shape = obs.shape if shape is None else shape
        shape = (shape[0] + 2 * margin, shape[1] + 2 * margin)
        geom = galaxy_geometry(params, obs.redshift, obs.pixel_scale_arcsec, shape, self.settings)
        units, unit_moments = rasterize_components(
            params, geom, shape, self.settings, moments, central
        )
        central_moments = unit_moments if central else None
        unit_moments = None if central else unit_moments
        maps = physical_maps(
            params,
            geom.r_disk_kpc,
            geom.cos_inclination,
            geom.q_disk,
            geom.pixel_area_kpc2,
            units.bulge,
            units.disk,
            units.sfr,
        )
        table = None
        if self.settings.shading_radial_nodes > 0:
            table = radial_table(params, geom.r_disk_kpc, self.settings.shading_radial_nodes)
        mass_moments = None
        if unit_moments is not None:
            totals = [
                10.0 ** params[name]
                for name in (
                    "log10_mstar_bulge_msun",
                    "log10_mstar_disk_msun",
                    "log10_sfr_msun_per_yr",
                )
            ]
            mass_moments = tuple(
                t.view(-1, 1, 1, 1) * m for t, m in zip(totals, unit_moments, strict=True)
            )
        light = shade(
            maps,
            obs.redshift,
            geom.cos_inclination,
            self.sps,
            table,
            mass_moments,
            self.disk_history,
            self.birth_clouds,
        )
        return light, maps, geom, central_moments

    def psf_margin_pix(self, obs: Observation) -> int:
        """Border (pixels) rendered around the stamp so that the PSF scatters light from
        outside into it: the PSF kernel radius (``settings.psf_wing_flux``) plus one."""
        if not self.settings.psf_margin:
            return 0
        radius = obs.psf.kernel_radius_pix(obs.pixel_scale_arcsec, self.settings)
        fwhm = getattr(obs.psf, "fwhm_arcsec", None)
        if self.settings.psf_margin_fwhm > 0.0 and fwhm is not None:
            widest = float(fwhm.detach().max()) / obs.pixel_scale_arcsec
            radius = min(radius, self.settings.psf_margin_fwhm * widest)
        return math.ceil(radius) + 1

    def forward(
        self, params: Mapping[str, Tensor], obs: Observation, validate: bool = True
    ) -> Rendering:
        """Render noiseless PSF-convolved images of B galaxies.

        The light is drawn on the stamp plus a border of :meth:`psf_margin_pix`, convolved
        (through its intra-pixel moments when ``settings.psf_moments``, so that profiles the
        pixels do not resolve come out right) and cropped.  ``light``, ``maps`` and
        ``geometry`` of the result cover the stamp.

        Args:
            params: physical latents ``{name: (B,)}`` (all of :data:`galae.latent.REGISTRY`).
            obs: observing conditions for the same B galaxies.
            validate: check names and ranges (turn off inside training loops where the values
                come from the bijection and are in range by construction).
        """
        self._check(params, obs, validate)
        with flush_subnormals():
            return self._render(params, obs)

    def _render(self, params: Mapping[str, Tensor], obs: Observation) -> Rendering:
        m = self.psf_margin_pix(obs)
        settings = self.settings
        # central moments need the separable (Gaussian) pixel response; other PSFs take the
        # moments of every pixel
        central = (
            settings.psf_moments
            and settings.psf_moments_central
            and isinstance(obs.psf, psf_mod.GaussianPSF)
        )
        every_pixel = settings.psf_moments and not central
        light, maps, geom, box = self._light(
            params, obs, margin=m, moments=every_pixel, central=central
        )
        scale = obs.pixel_scale_arcsec
        if box is not None:
            band = central_band_moments(
                params, obs, geom, maps, self.sps, box, self.disk_history, self.birth_clouds
            )
            images = central_psf_convolution(light.total_nmgy, band, box, obs, m)
        else:
            if every_pixel:
                images = psf_mod.convolve_moments(light.moments_nmgy, obs.psf, scale, settings)
            else:
                images = psf_mod.convolve(light.total_nmgy, obs.psf, scale, settings)
            if m > 0:
                images = images[..., m : m + obs.shape[0], m : m + obs.shape[1]]
        if m > 0:
            light, maps, geom = (
                _crop(light, m, obs.shape),
                _crop(maps, m, obs.shape),
                replace(
                    _crop(geom, m, obs.shape),
                    center_x_pix=geom.center_x_pix - m,
                    center_y_pix=geom.center_y_pix - m,
                ),
            )
        return Rendering(images=images, light=light, maps=maps, geometry=geom)

    def images(
        self, params: Mapping[str, Tensor], obs: Observation, validate: bool = True
    ) -> Tensor:
        """Noiseless PSF-convolved images alone, (B, C, H, W): ``forward(...).images``, faster.

        With one node per pixel (``settings.oversample == 1``), radial shading and central
        moments (the ``fast`` preset) under a Gaussian PSF, the stellar and star-forming disks
        are, pixel by pixel, exponentials in the disk-plane radius times a light per unit mass
        that depends on that radius alone.  Their band light is then tabulated on the radial
        nodes and interpolated to the pixels once per band; the exactly integrated central
        pixels replace the table there; no maps and no per-component light are made.
        Otherwise this is ``forward(...).images``.
        """
        self._check(params, obs, validate)
        s = self.settings
        radial = (
            s.oversample == 1
            and s.psf_moments
            and s.psf_moments_central
            and s.shading_radial_nodes > 0
            and isinstance(obs.psf, psf_mod.GaussianPSF)
        )
        with flush_subnormals():
            return self._radial_images(params, obs) if radial else self._render(params, obs).images

    def _radial_images(self, params: Mapping[str, Tensor], obs: Observation) -> Tensor:
        settings = self.settings
        m = self.psf_margin_pix(obs)
        shape = (obs.shape[0] + 2 * m, obs.shape[1] + 2 * m)
        geom = galaxy_geometry(params, obs.redshift, obs.pixel_scale_arcsec, shape, settings)
        table = radial_table(params, geom.r_disk_kpc, settings.shading_radial_nodes)
        bulk = BulkPopulation.from_params(params)
        unit = unit_light(
            table.population,
            bulk,
            obs.redshift,
            geom.cos_inclination,
            self.sps,
            self.disk_history,
            self.birth_clouds,
        )
        mass_bulge, mass_disk, sfr = _component_totals(params)
        rho = table.radius_kpc / geom.kpc_per_pix[:, None]  # (B, K) nodes, disk-plane pixels
        bulge, disks = _component_profiles(params, geom)
        # the rasterizer's unit-flux exponentials (stellar, then star-forming disk) at the nodes
        exp_geom = sersic_pixel_geometry(*disks, settings)
        n_b = rho.shape[0]
        log_i0 = exp_geom.log_central_intensity.view(2, n_b, 1)
        b_over_r = (exp_geom.sersic_b / exp_geom.r_half_major_pix).view(2, n_b, 1)
        surface = torch.exp(log_i0 - b_over_r * rho)  # (2, B, K), per pixel
        disks_nodes = (mass_disk[:, None] * surface[0])[:, None] * unit.disk_nmgy_per_msun + (
            sfr[:, None] * surface[1]
        )[:, None] * unit.young_nmgy_per_msun_yr  # (B, C, K)
        bulge_nodes = mass_bulge[:, None, None] * unit.bulge_nmgy_per_msun
        bands = bulge_nodes.shape[1]
        pixels = table.to_pixels(torch.cat([disks_nodes, bulge_nodes], 1), shape)
        bulge_img, bulge_mom, row0, col0 = sersic_image_and_central_moments(*bulge, shape, settings)
        disks_mom = sersic_central_moments(*disks, shape, settings)[0]
        box = (torch.cat([bulge_mom, disks_mom]), row0, col0)
        band = central_band_moments(
            params, obs, geom, bulk, self.sps, box, self.disk_history, self.birth_clouds
        )
        totals = pixels[:, :bands] + bulge_img[:, None] * pixels[:, bands:]
        # the disks' exactly integrated central pixels replace the table's values there
        side = bulge_mom.shape[-1]
        ar = torch.arange(side, device=row0.device)
        index = (row0[:, None] + ar)[:, :, None] * shape[1] + (col0[:, None] + ar)[:, None, :]
        index = index.reshape(n_b, 1, -1).expand(n_b, bands, side * side)
        flat_disks = pixels[:, :bands].reshape(n_b, bands, -1)
        exact = (band[1][:, :, 0] + band[2][:, :, 0]).reshape(n_b, bands, -1)
        totals = totals.reshape(n_b, bands, -1).scatter_add(
            2, index, exact - flat_disks.gather(2, index)
        )
        totals = totals.reshape(n_b, bands, *shape)
        return central_psf_convolution(totals, band, box, obs, m)

    @torch.no_grad()
    def derived(
        self,
        params: Mapping[str, Tensor],
        obs: Observation,
        grow: int = 4,
        validate: bool = True,
    ) -> dict[str, Tensor]:
        """Derived observables ``{name: (B,)}`` from the PSF-free model light
        (:meth:`derived_and_maps` without the maps)."""
        return self.derived_and_maps(params, obs, grow, validate)[0]

    @torch.no_grad()
    def derived_and_maps(
        self,
        params: Mapping[str, Tensor],
        obs: Observation,
        grow: int = 4,
        validate: bool = True,
    ) -> tuple[dict[str, Tensor], GalaxyMaps]:
        """Derived observables ``{name: (B,)}`` from the PSF-free model light, and the physical
        maps on the observation's stamp (the same maps as :meth:`forward`'s, which the stamp's
        light is drawn from anyway).

        Totals are the light on the stamp plus the light beyond it, which comes from a second
        drawing on a grid ``grow`` times coarser with the same number of pixels and centre (so
        it covers ``grow`` times the field; the rasterizer integrates exactly over the big
        pixels; the part of it inside the stamp is taken out by area); light beyond that grid
        is added per component from the analytic mass fraction outside it, at the component's
        mean mass-to-light ratio.
        Half-light radii come from the fine stamp when the half-light circle fits in it, else
        from the coarse grid.  Returns, per band ``<b>``: ``mag_<b>`` (total AB magnitude),
        ``r_half_arcsec_<b>`` (circle about the centre enclosing half the light),
        ``bulge_to_total_<b>``; and ``log10_mstar_msun`` (bulge + disk + young) and
        ``log10_sfr_msun_per_yr``.  ``validate`` as :meth:`forward`.
        """
        self._check(params, obs, validate)
        coarse_obs = replace(obs, pixel_scale_arcsec=obs.pixel_scale_arcsec * grow)
        light_c, maps_c, geom_c = self.light(params, coarse_obs, validate=False)
        light_f, maps_f, geom_f = self.light(params, obs, validate=False)

        # Light beyond even the coarse grid: scale each component by (its mass or SFR) / (the
        # part inside the grid), i.e. assume the light outside has the mean M/L of the inside.
        def outside(total_latent: Tensor, inside_map: Tensor) -> Tensor:
            inside = inside_map.sum((-1, -2)).clamp_min(1e-30)
            return (total_latent / inside).clamp(1.0, 10.0).unsqueeze(-1)

        bulge = light_c.bulge_nmgy.sum((-1, -2)) * outside(
            10.0 ** params["log10_mstar_bulge_msun"], maps_c.mstar_bulge_msun
        )
        disk = light_c.disk_nmgy.sum((-1, -2)) * outside(
            10.0 ** params["log10_mstar_disk_msun"], maps_c.mstar_disk_msun
        )
        young = light_c.young_nmgy.sum((-1, -2)) * outside(
            10.0 ** params["log10_sfr_msun_per_yr"], maps_c.sfr_msun_per_yr
        )
        # Inside the stamp, its own (finer) pixels: the light per unit mass (dust above all)
        # is taken at each pixel's centre, which the coarse grid's big pixels get wrong for
        # inclined disks (0.3 mag too bright in r for 5% of the analytic mocks; benchmarks/
        # derived_resolution.py).  The coarse grid gives only the light beyond the stamp.
        field = _field_weights(obs.shape, grow, light_c.bulge_nmgy)

        def beyond_stamp(coarse_total: Tensor, coarse_light: Tensor, fine_light: Tensor) -> Tensor:
            within = (coarse_light * field).sum((-1, -2))
            return fine_light.sum((-1, -2)) + (coarse_total - within).clamp_min(0.0)

        bulge = beyond_stamp(bulge, light_c.bulge_nmgy, light_f.bulge_nmgy)
        disk = beyond_stamp(disk, light_c.disk_nmgy, light_f.disk_nmgy)
        young = beyond_stamp(young, light_c.young_nmgy, light_f.young_nmgy)
        total = bulge + disk + young
        r_fine = half_light_radius_pix(
            light_f.total_nmgy, geom_f.center_x_pix, geom_f.center_y_pix, total=total
        )
        r_coarse = half_light_radius_pix(
            light_c.total_nmgy, geom_c.center_x_pix, geom_c.center_y_pix, total=total
        )
        fits = r_fine < 0.5 * min(obs.shape) - 1.0
        r_half_arcsec = torch.where(
            fits, r_fine * obs.pixel_scale_arcsec, r_coarse * coarse_obs.pixel_scale_arcsec
        )
        out: dict[str, Tensor] = {}
        for i, band in enumerate(self.bands):
            out[f"mag_{band}"] = 22.5 - 2.5 * torch.log10(total[:, i].clamp_min(1e-30))
            out[f"r_half_arcsec_{band}"] = r_half_arcsec[:, i]
            out[f"bulge_to_total_{band}"] = bulge[:, i] / total[:, i].clamp_min(1e-30)
        m_young = 10.0 ** params["log10_sfr_msun_per_yr"] * (YOUNG_AGE_GYR * 1e9)
        out["log10_mstar_msun"] = torch.log10(
            10.0 ** params["log10_mstar_bulge_msun"]
            + 10.0 ** params["log10_mstar_disk_msun"]
            + m_young
        )
        out["log10_sfr_msun_per_yr"] = params["log10_sfr_msun_per_yr"].clone()
        return out, maps_f


def _field_weights(shape: tuple[int, int], grow: int, like: Tensor) -> Tensor:
    """(H, W) fraction of each pixel of the ``grow`` times coarser grid (same pixel count and
    centre) that lies inside the stamp's own field."""
    h, w = shape
    wy = overlap_matrix(1, h, h / grow, like.dtype, like.device)[0]
    wx = overlap_matrix(1, w, w / grow, like.dtype, like.device)[0]
    return wy[:, None] * wx[None, :]
