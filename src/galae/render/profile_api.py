"""``render_profile``: one analytic galaxy profile as a pixel-integrated image.

The contract (DESIGN.md)::

    img = galae.render_profile("sersic", flux=1.0, r_half_major_arcsec=2.0, sersic_n=4.0,
                               q=0.5, pa_deg=30.0, shape=(64, 64), pixel_scale_arcsec=0.396,
                               center_pix=None, psf_fwhm_arcsec=None)

returns an (H, W) tensor in nanomaggies per pixel whose untruncated total is ``flux``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from galae.render._tensors import to_tensor
from galae.render.psf import GaussianPSF, MoffatPSF, PixelPSF, convolve_moments
from galae.render.raster import sersic_image, sersic_pixel_moments
from galae.settings import DEFAULT_SETTINGS, RenderSettings

__all__ = ["ProfileSpec", "PROFILES", "DEFAULT_SERSIC_N", "render_profile", "noisy_disk_grid"]

# Sersic index of profile "sersic" when none is given.
DEFAULT_SERSIC_N = 4.0

# The pixel integration is exact in the central box and uses per-pixel nodes elsewhere, which
# resolve a profile down to a minor-axis half-light radius of a fraction of a pixel for round
# shapes, but not for thin ones that reach beyond the box: at q = 0.1 and a minor axis of 0.25
# pixel an exponential's total was 1.1% off, at q = 0.02 by -19% to +11% with negative pixels
# (tests/test_profiles.py).  Thinner profiles (q below THIN_Q) whose minor-axis half-light
# radius is below THIN_MINOR_PIX pixels are therefore drawn on a grid fine enough to bring it
# to THIN_MINOR_PIX and summed back into the pixels (flux conserved exactly by the sum), as
# long as that grid has at most MAX_SUPERSAMPLED_PIXELS pixels.
THIN_Q = 0.3
THIN_MINOR_PIX = 2.0
MAX_SUPERSAMPLED_PIXELS = 2**22


@dataclass(frozen=True)
class ProfileSpec:
    """A named profile family.

    Attributes:
        fixed_sersic_n: the Sersic index the name implies (then ``sersic_n`` must not be
            passed), or None when ``sersic_n`` is a free argument.
        description: one line for error messages and docs.
    """

    fixed_sersic_n: float | None
    description: str


# Registry of profile names.  Gaussian = Sersic n = 1/2, exponential = n = 1,
# de Vaucouleurs (1948) r^(1/4) law = n = 4.
PROFILES: dict[str, ProfileSpec] = {
    "sersic": ProfileSpec(None, "Sersic profile of index sersic_n"),
    "exponential": ProfileSpec(1.0, "exponential disk (Sersic n = 1)"),
    "devaucouleurs": ProfileSpec(4.0, "de Vaucouleurs r^1/4 law (Sersic n = 4)"),
    "gaussian": ProfileSpec(0.5, "Gaussian (Sersic n = 1/2, sigma = r_half / sqrt(2 ln 2))"),
}


def _scalar(value: object, name: str) -> Tensor:
    """A python/numpy number or 0-d tensor as a 0-d tensor (graph kept for tensors)."""
    tensor = to_tensor(value, name)
    if tensor.numel() != 1 or tensor.dim() > 1:
        raise ValueError(f"{name} must be a scalar, got shape {tuple(tensor.shape)}")
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must be a real number, got {tensor.dtype}")
    tensor = tensor.reshape(())
    if not bool(torch.isfinite(tensor.detach())):
        raise ValueError(f"{name} must be finite, got {float(tensor.detach())}")
    return tensor


def render_profile(
    profile: str,
    flux: float | Tensor = 1.0,
    r_half_major_arcsec: float | Tensor = 2.0,
    sersic_n: float | Tensor | None = None,
    q: float | Tensor = 0.5,
    pa_deg: float | Tensor = 30.0,
    shape: Sequence[int] = (64, 64),
    pixel_scale_arcsec: float = 0.396,
    center_pix: Sequence[float | Tensor] | None = None,
    psf_fwhm_arcsec: float | Tensor | None = None,
    settings: RenderSettings = DEFAULT_SETTINGS,
    psf: GaussianPSF | MoffatPSF | PixelPSF | None = None,
) -> Tensor:
    """Pixel-integrated image of one analytic profile, in nanomaggies per pixel.

    Args:
        profile: a name in :data:`PROFILES`: "sersic", "exponential", "devaucouleurs",
            "gaussian".
        flux: total untruncated flux, nanomaggies; any finite number.
        r_half_major_arcsec: half-light radius along the major axis, arcsec, > 0.
        sersic_n: Sersic index, only for "sersic" (default 4.0); the other names fix it
            and reject this argument.
        q: axis ratio minor/major in (0, 1].
        pa_deg: position angle of the major axis, degrees counter-clockwise from +x
            (the column axis).
        shape: (H, W) of the stamp.
        pixel_scale_arcsec: arcsec per pixel, > 0.
        center_pix: (x, y) of the centre in pixels, pixel centres at integers; default the
            stamp centre ((W - 1) / 2, (H - 1) / 2).
        psf_fwhm_arcsec: FWHM of a Gaussian PSF to convolve with, arcsec (> 0), or None.
            The PSF acts on the light inside each of ``settings.psf_supersample``^2
            sub-pixels to second order in the offset from the sub-pixel centre
            (:func:`galae.render.psf.convolve_moments`), on a stamp padded so that light
            from outside is scattered in; agrees with GalSim to < 0.15% of the peak pixel
            for FWHM >= 2 pixels (measured).
        settings: accuracy settings.
        psf: instead of ``psf_fwhm_arcsec``, any PSF model of :mod:`galae.render.psf` with
            one galaxy and one band (e.g. ``MoffatPSF(1.2, 3.5)``).  A ``PixelPSF`` is
            applied at the image pixel scale (no sub-pixels).

    Numbers may be python floats, numpy scalars or 0-d tensors (tensors keep their graph).

    Returns:
        (H, W) tensor, float32 unless a float64 tensor is passed (then float64), on the
        device of the tensor arguments (CPU by default).

    Raises:
        ValueError: unknown profile name (the known ones are listed), a sersic_n other than
            a fixed-index profile's own (equal to it, it is accepted), n out of range, q
            outside (0, 1], non-positive radius, pixel scale or FWHM, non-finite flux, bad
            shape or centre.
    """
    if not isinstance(profile, str) or profile not in PROFILES:
        known = ", ".join(f"{name!r} ({spec.description})" for name, spec in PROFILES.items())
        raise ValueError(f"unknown profile {profile!r}; known profiles: {known}")
    spec = PROFILES[profile]
    if spec.fixed_sersic_n is not None and sersic_n is not None:
        given = _scalar(sersic_n, "sersic_n").detach()
        if not bool(torch.isclose(given.double(), given.new_tensor(spec.fixed_sersic_n).double())):
            raise ValueError(
                f"profile {profile!r} has a fixed Sersic index n = {spec.fixed_sersic_n}, "
                f"got sersic_n = {float(given):g}; leave sersic_n out (or use profile='sersic' "
                "for a free index)"
            )
    if spec.fixed_sersic_n is not None:
        sersic_n = spec.fixed_sersic_n
    elif sersic_n is None:
        sersic_n = DEFAULT_SERSIC_N

    if (
        not isinstance(shape, Sequence)
        or len(shape) != 2
        or not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in shape)
        or min(shape) < 1
    ):
        raise ValueError(f"shape must be (H, W) with positive integers, got {shape!r}")
    height, width = int(shape[0]), int(shape[1])
    scale = float(pixel_scale_arcsec)
    if not (math.isfinite(scale) and scale > 0.0):
        raise ValueError(f"pixel_scale_arcsec must be finite and > 0, got {pixel_scale_arcsec}")
    if center_pix is None:
        center_pix = ((width - 1) / 2.0, (height - 1) / 2.0)
    if isinstance(center_pix, str) or len(center_pix) != 2:
        raise ValueError(f"center_pix must be (x, y), got {center_pix!r}")

    values = {
        "flux": _scalar(flux, "flux"),
        "r_half_major_arcsec": _scalar(r_half_major_arcsec, "r_half_major_arcsec"),
        "sersic_n": _scalar(sersic_n, "sersic_n"),
        "q": _scalar(q, "q"),
        "pa_deg": _scalar(pa_deg, "pa_deg"),
        "center_x_pix": _scalar(center_pix[0], "center_pix[0]"),
        "center_y_pix": _scalar(center_pix[1], "center_pix[1]"),
    }
    if psf_fwhm_arcsec is not None:
        if psf is not None:
            raise ValueError("give at most one of psf_fwhm_arcsec and psf")
        values["psf_fwhm_arcsec"] = _scalar(psf_fwhm_arcsec, "psf_fwhm_arcsec")
    if psf is not None and (
        not isinstance(psf, GaussianPSF | MoffatPSF | PixelPSF) or psf.batch_shape != (1, 1)
    ):
        raise ValueError(f"psf must be a PSF model with batch shape (1, 1), got {psf!r}")
    tensors = [
        v
        for v in (flux, r_half_major_arcsec, sersic_n, q, pa_deg, psf_fwhm_arcsec, *center_pix)
        if isinstance(v, Tensor)
    ]
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    device = tensors[0].device if tensors else torch.device("cpu")
    v = {k: t.to(dtype=dtype, device=device) for k, t in values.items()}

    number = {k: float(t.detach()) for k, t in v.items()}
    if number["r_half_major_arcsec"] <= 0.0:
        raise ValueError(f"r_half_major_arcsec must be > 0, got {number['r_half_major_arcsec']}")
    if not 0.0 < number["q"] <= 1.0:
        raise ValueError(f"q must lie in (0, 1], got {number['q']}")
    if not settings.sersic_n_min <= number["sersic_n"] <= settings.sersic_n_max:
        raise ValueError(
            f"sersic_n must lie in [{settings.sersic_n_min}, {settings.sersic_n_max}], "
            f"got {number['sersic_n']}"
        )
    if number.get("psf_fwhm_arcsec", 1.0) <= 0.0:
        raise ValueError(f"psf_fwhm_arcsec must be > 0, got {number['psf_fwhm_arcsec']}")

    minor_pix = number["q"] * number["r_half_major_arcsec"] / scale
    if number["q"] < THIN_Q and minor_pix < THIN_MINOR_PIX:
        factor = math.ceil(THIN_MINOR_PIX / minor_pix)
        if isinstance(psf, PixelPSF) or height * width * factor**2 > MAX_SUPERSAMPLED_PIXELS:
            raise ValueError(
                f"a profile this thin (q = {number['q']:g}, minor-axis half-light radius "
                f"{minor_pix:.3g} pixel) must be drawn {factor} times finer than the pixels "
                f"to integrate it accurately, "
                + (
                    "which a pixel-image PSF does not allow"
                    if isinstance(psf, PixelPSF)
                    else f"and a {height} x {width} stamp is too large for that"
                )
                + "; use a smaller stamp or a finer pixel scale"
            )
        fine = render_profile(
            profile,
            flux=v["flux"],
            r_half_major_arcsec=v["r_half_major_arcsec"],
            sersic_n=None if spec.fixed_sersic_n is not None else v["sersic_n"],
            q=v["q"],
            pa_deg=v["pa_deg"],
            shape=(height * factor, width * factor),
            pixel_scale_arcsec=scale / factor,
            center_pix=(
                factor * (v["center_x_pix"] + 0.5) - 0.5,
                factor * (v["center_y_pix"] + 0.5) - 0.5,
            ),
            psf_fwhm_arcsec=v.get("psf_fwhm_arcsec"),
            settings=settings,
            psf=None if "psf_fwhm_arcsec" in v else psf,
        )
        return fine.reshape(height, factor, width, factor).sum((1, 3))

    args = (
        (v["r_half_major_arcsec"] / scale).reshape(1),
        v["sersic_n"].reshape(1),
        v["q"].reshape(1),
        torch.deg2rad(v["pa_deg"]).reshape(1),
    )
    if "psf_fwhm_arcsec" in v:
        psf = GaussianPSF(v["psf_fwhm_arcsec"].reshape(1, 1))
    if psf is None:
        unit = sersic_image(
            *args,
            v["center_x_pix"].reshape(1),
            v["center_y_pix"].reshape(1),
            (height, width),
            settings,
        )
        return v["flux"] * unit[0]
    # PSF: render the intra-pixel moments on a sub-pixel grid (settings.psf_supersample per
    # side) with a margin (so light from outside the stamp is scattered in, as in a real
    # image), apply the sub-pixel response to second order in the intra-sub-pixel offsets,
    # sum the sub-pixels and crop.
    sub = 1 if isinstance(psf, PixelPSF) else settings.psf_supersample
    margin = math.ceil(psf.kernel_radius_pix(scale, settings)) + 1
    # pixel j spans [j - 1/2, j + 1/2]; its sub-pixels are sub * (j + margin) + 0..sub-1, so
    # x_sub = sub * (x + margin + 1/2) - 1/2
    centre_x = sub * (v["center_x_pix"] + margin + 0.5) - 0.5
    centre_y = sub * (v["center_y_pix"] + margin + 0.5) - 0.5
    padded = (height + 2 * margin, width + 2 * margin)
    moments = sersic_pixel_moments(
        args[0] * sub,
        *args[1:],
        centre_x.reshape(1),
        centre_y.reshape(1),
        (sub * padded[0], sub * padded[1]),
        settings,
    )
    fine = convolve_moments(moments.stack()[:, None], psf, scale / sub, settings)[0, 0]
    image = fine.reshape(padded[0], sub, padded[1], sub).sum((1, 3))
    return v["flux"] * image[margin : margin + height, margin : margin + width]


def noisy_disk_grid(
    r_half_arcsec: Sequence[float],
    r_flux_nmgy: Sequence[float],
    colours: Sequence[float],
    sky_sigma_nmgy: Sequence[float],
    depth: float = 1.0,
    seed: int = 0,
    shape: tuple[int, int] = (64, 64),
    pixel_scale_arcsec: float = 0.396,
    psf_fwhm_arcsec: float = 1.4,
) -> tuple[np.ndarray, np.ndarray]:
    """Exponential disks (q = 0.7, PA 20 deg) on a grid of sizes and fluxes, with sky noise.

    Galaxy ``i = len(r_flux_nmgy) * j + k`` has half-light radius ``r_half_arcsec[j]`` and
    flux ``r_flux_nmgy[k] * colours[c]`` in band c (the colours are flux ratios to the r band);
    every band is convolved with a Gaussian PSF of ``psf_fwhm_arcsec`` and gets Gaussian noise
    of ``sky_sigma_nmgy[c] * depth`` per pixel (``numpy.random.default_rng(seed)``).  Synthetic
    stamps for benchmarks and tests of how a model copes with depth.

    Returns:
        images and sigma, both (len(r_half) * len(r_flux), C, H, W) float32 nanomaggies.
    """
    rng = np.random.default_rng(seed)
    imgs = []
    for rh in r_half_arcsec:
        for flux in r_flux_nmgy:
            bands = [
                render_profile(
                    "exponential",
                    flux=float(flux * c),
                    r_half_major_arcsec=rh,
                    q=0.7,
                    pa_deg=20.0,
                    shape=shape,
                    pixel_scale_arcsec=pixel_scale_arcsec,
                    psf_fwhm_arcsec=psf_fwhm_arcsec,
                ).numpy()
                for c in colours
            ]
            imgs.append(np.stack(bands))
    x = np.stack(imgs).astype(np.float32)
    sky = np.asarray(sky_sigma_nmgy, np.float32)[None, :, None, None] * depth
    sigma = np.broadcast_to(sky, x.shape).copy()
    return x + sigma * rng.standard_normal(x.shape).astype(np.float32), sigma
