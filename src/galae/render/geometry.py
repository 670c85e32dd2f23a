"""Stage 1: latent geometry -> pixel-space geometry of each galaxy component.

Pure function :func:`galaxy_geometry`; output :class:`GalaxyGeometry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from galae.physics import cosmology
from galae.settings import RenderSettings

__all__ = ["GalaxyGeometry", "galaxy_geometry", "disk_axis_ratio", "EXP_RHALF_OVER_RSCALE"]

#: Half-light radius of an exponential in units of its scale length (root of
#: 1 - (1 + x) e^-x = 1/2; e.g. Graham & Driver 2005, PASA 22, 118).
EXP_RHALF_OVER_RSCALE: float = 1.6783469900166612


def disk_axis_ratio(inclination_deg: Tensor, q0: float) -> Tensor:
    """Projected axis ratio of an oblate disk of intrinsic thickness q0 (Hubble 1926):
    q^2 = cos^2 i + q0^2 sin^2 i."""
    inc = torch.deg2rad(inclination_deg)
    return torch.sqrt(torch.cos(inc) ** 2 + (q0 * torch.sin(inc)) ** 2)


@dataclass(frozen=True)
class GalaxyGeometry:
    """Pixel-space geometry of a batch of B galaxies.

    Attributes:
        center_x_pix, center_y_pix: (B,) centre, pixel centres at integer coordinates.
        pa_rad: (B,) position angle, counter-clockwise from +x to the major axis.
        q_disk: (B,) projected axis ratio of the disk (inclination and thickness).
        cos_inclination: (B,) cosine of the disk inclination.
        kpc_per_pix: (B,) physical size of a pixel side at the galaxy's redshift.
        r_half_bulge_pix, r_half_disk_pix, r_half_sfr_pix: (B,) major-axis half-light radii.
        r_disk_kpc: (B, H, W) in-plane (deprojected) radius of each pixel centre in kpc.
        pixel_area_kpc2: (B,) pixel area in kpc^2.
    """

    center_x_pix: Tensor
    center_y_pix: Tensor
    pa_rad: Tensor
    q_disk: Tensor
    cos_inclination: Tensor
    kpc_per_pix: Tensor
    r_half_bulge_pix: Tensor
    r_half_disk_pix: Tensor
    r_half_sfr_pix: Tensor
    r_disk_kpc: Tensor

    @property
    def pixel_area_kpc2(self) -> Tensor:
        return self.kpc_per_pix**2


def pixel_grid(shape: tuple[int, int], like: Tensor) -> tuple[Tensor, Tensor]:
    """(x, y) coordinates of pixel centres, each (H, W), x along columns."""
    h, w = shape
    y = torch.arange(h, dtype=like.dtype, device=like.device)
    x = torch.arange(w, dtype=like.dtype, device=like.device)
    return x.view(1, w).expand(h, w), y.view(h, 1).expand(h, w)


def galaxy_geometry(
    params: Mapping[str, Tensor],
    redshift: Tensor,
    pixel_scale_arcsec: float,
    shape: tuple[int, int],
    settings: RenderSettings,
) -> GalaxyGeometry:
    """Place each galaxy on the stamp.

    Args:
        params: physical latents ``{name: (B,)}`` (see :mod:`galae.latent`).
        redshift: (B,).
        pixel_scale_arcsec: pixel side.
        shape: (H, W).
        settings: uses ``disk_thickness_q0``.
    """
    h, w = shape
    kpc_per_pix = cosmology.kpc_per_arcsec(redshift) * pixel_scale_arcsec
    cx = (w - 1) / 2.0 + params["dx_arcsec"] / pixel_scale_arcsec
    cy = (h - 1) / 2.0 + params["dy_arcsec"] / pixel_scale_arcsec
    pa = torch.deg2rad(params["pa_deg"])
    q_d = disk_axis_ratio(params["inclination_deg"], settings.disk_thickness_q0)
    cos_i = torch.cos(torch.deg2rad(params["inclination_deg"]))

    x, y = pixel_grid(shape, cx)
    dx = x.unsqueeze(0) - cx.view(-1, 1, 1)
    dy = y.unsqueeze(0) - cy.view(-1, 1, 1)
    c, s = torch.cos(pa).view(-1, 1, 1), torch.sin(pa).view(-1, 1, 1)
    x_maj = dx * c + dy * s
    y_min = -dx * s + dy * c
    r_pix = torch.sqrt(x_maj**2 + (y_min / q_d.view(-1, 1, 1)) ** 2)
    r_kpc = r_pix * kpc_per_pix.view(-1, 1, 1)

    return GalaxyGeometry(
        center_x_pix=cx,
        center_y_pix=cy,
        pa_rad=pa,
        q_disk=q_d,
        cos_inclination=cos_i,
        kpc_per_pix=kpc_per_pix,
        r_half_bulge_pix=params["r_eff_bulge_kpc"] / kpc_per_pix,
        r_half_disk_pix=EXP_RHALF_OVER_RSCALE * params["r_d_kpc"] / kpc_per_pix,
        r_half_sfr_pix=EXP_RHALF_OVER_RSCALE * params["r_sfr_kpc"] / kpc_per_pix,
        r_disk_kpc=r_kpc,
    )
