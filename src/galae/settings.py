"""Numerical accuracy settings, kept apart from the physics (as GalSim's GSParams).

Every knob that trades accuracy for speed lives here, in one immutable object.  Physics
modules never hard-code these numbers; they take a :class:`RenderSettings` argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "RenderSettings",
    "DEFAULT_SETTINGS",
    "FAST_SETTINGS",
    "REFERENCE_SETTINGS",
    "RENDER_PRESETS",
]


@dataclass(frozen=True)
class RenderSettings:
    """Accuracy settings of the renderer.

    Attributes:
        shading_radial_nodes: the light per unit mass (populations and dust, which vary with
            the in-plane radius alone) is evaluated on this many radial nodes per galaxy and
            interpolated (in log) to the pixels; 0 evaluates it at every pixel (exact, slower).
            With 256 nodes the light differs from the exact shading by < 1e-4 of the peak
            pixel for mock-population galaxies and < 2e-3 for draws from the broad prior
            (measured, tests/test_renderer.py).
        psf_margin: the renderer draws the light on the stamp plus a border of the PSF's kernel
            radius (``psf_wing_flux``) and crops after the convolution, so that light from
            outside the stamp is scattered into it, as in a real image.
        psf_margin_fwhm: when > 0, the border is at most this many times the widest PSF FWHM of
            the batch (plus one pixel; PSFs with a FWHM).  Light from farther out that the PSF
            scatters into the stamp is a small part of a small part: with 1 FWHM the render
            benchmark's galaxies lose nothing measurable against the full kernel radius
            (benchmarks/render.py).
        psf_moments: the renderer applies the PSF through the intra-pixel moments of the light
            (as ``render_profile`` does), right for profiles the pixels do not resolve; off, it
            convolves pixel totals (a few % of the peak pixel off for bulges or disks with
            r_half <~ 1 pixel), about 2x faster.
        psf_moments_central: with ``psf_moments``, take the moments only where they matter: the
            light is convolved as pixel totals (with the PSF sampled at pixel centres, exact for
            light the pixels resolve) and corrected by the moments of the central box of
            (2 ``moment_radius_pix`` + 1)^2 pixels, less those of smooth light with the same
            totals (:func:`galae.render.raster.sersic_central_moment_deviations`).  Several
            times cheaper than moments of every pixel, and as accurate.
        oversample: Gauss-Legendre nodes per pixel side used to integrate smooth profiles
            over pixels (a product rule of oversample^2 nodes per pixel; 2 is exact for
            bicubic surfaces).
        cusp_oversample: Gauss-Legendre nodes per edge integral in the exact integration of
            the central pixels of a Sersic profile (galae.render.raster: each central pixel
            is integrated analytically in radius through the enclosed-flux function, and
            numerically only along its edges).
        cusp_table_nodes: 0: the exact central pixels of non-exponential profiles evaluate
            the incomplete gamma function at every edge node; > 0: through a per-galaxy
            cubic Hermite table of that many nodes in ln x (|error| < 1e-5 of the peak pixel
            with 64; several times cheaper).
        cusp_radius_pix: half-width (pixels) of the central box of pixels integrated exactly
            (a box of 2 * cusp_radius_pix + 1 pixels on a side around the profile centre).
        moment_radius_pix: half-width (pixels) of the central box in which the intra-pixel
            first and second moments of a Sersic profile (used to apply a PSF inside the
            pixels) are integrated exactly rather than by the Gauss-Legendre rule; with
            ``psf_moments_central``, the only pixels whose moments are taken.
        fft_pad_factor: the FFT grid is at least this many times the stamp size, so that
            PSF convolution never wraps light from one edge onto the other.
        sersic_n_min, sersic_n_max: range of Sersic index the profile code is accurate for
            (checked against GalSim, whose own Sersic class starts at n = 0.3).
        disk_thickness_q0: intrinsic axis ratio of an edge-on disk (Hubble 1926 oblate
            spheroid: q^2 = cos^2 i + q0^2 sin^2 i).  Physics, but a fixed model choice, so
            not a latent.
        psf_kernel_fwhm_extent: analytic PSFs are evaluated out to this many FWHM.
        psf_wing_flux: fraction of an analytic PSF's light that may lie outside its kernel;
            the kernel radius is the smaller of the radius enclosing 1 - psf_wing_flux and
            psf_kernel_fwhm_extent FWHM.  It sets the zero padding that keeps the FFT
            convolution from wrapping.
        separable_psf_convolution: convolve with separable PSFs (Gaussian) as two 1-D
            convolutions (batched matrix products) with the same kernel as the FFT route;
            identical result, ~8x faster than the FFT on this project's CPU.
        psf_supersample: sub-pixels per pixel side on which ``render_profile`` applies a PSF
            through intra-pixel moments (the neglected third-order term falls as
            psf_supersample^-3: < 0.15% of the peak at FWHM >= 2 px with 2; 1-2% at
            FWHM 2-2.5 px with 1).
    """

    shading_radial_nodes: int = 256
    psf_margin: bool = True
    psf_margin_fwhm: float = 0.0
    psf_moments: bool = True
    psf_moments_central: bool = False
    oversample: int = 2
    cusp_oversample: int = 8
    cusp_radius_pix: int = 3
    cusp_table_nodes: int = 0
    moment_radius_pix: int = 1
    fft_pad_factor: float = 1.5
    sersic_n_min: float = 0.3
    sersic_n_max: float = 6.5
    disk_thickness_q0: float = 0.2
    psf_kernel_fwhm_extent: float = 6.0
    psf_wing_flux: float = 1e-4
    separable_psf_convolution: bool = True
    psf_supersample: int = 2

    def __post_init__(self) -> None:
        if self.oversample < 1 or self.cusp_oversample < 1 or self.psf_supersample < 1:
            raise ValueError("oversample, cusp_oversample and psf_supersample must be >= 1")
        if self.cusp_table_nodes != 0 and self.cusp_table_nodes < 4:
            raise ValueError(
                f"cusp_table_nodes must be 0 (exact) or >= 4, got {self.cusp_table_nodes}"
            )
        if self.shading_radial_nodes < 0 or self.shading_radial_nodes == 1:
            raise ValueError("shading_radial_nodes must be 0 (per pixel) or >= 2")
        if self.cusp_radius_pix < 0 or self.moment_radius_pix < 0:
            raise ValueError("cusp_radius_pix and moment_radius_pix must be >= 0")
        if not 0.0 < self.psf_wing_flux < 1.0:
            raise ValueError("psf_wing_flux must be in (0, 1)")
        if self.psf_margin_fwhm < 0.0:
            raise ValueError("psf_margin_fwhm must be >= 0 (0: the PSF kernel radius)")
        if self.psf_kernel_fwhm_extent <= 0.0:
            raise ValueError("psf_kernel_fwhm_extent must be > 0")
        if self.fft_pad_factor < 1.0:
            raise ValueError("fft_pad_factor must be >= 1")
        if not 0.0 < self.disk_thickness_q0 < 1.0:
            raise ValueError("disk_thickness_q0 must be in (0, 1)")

    def with_(self, **changes: object) -> RenderSettings:
        """A copy with some fields changed (the object itself is immutable)."""
        return replace(self, **changes)


#: Reference: the moments of every pixel through the PSF, a border of the full PSF kernel radius.
REFERENCE_SETTINGS = RenderSettings()
#: Accurate (the default): pixel totals through the PSF with the moments of the central 5 x 5
#: pixels, a border of one PSF FWHM, the exact central pixels' incomplete gamma functions from
#: a 64-node table per galaxy (as accurate as their float32 evaluation, 1e-5 of the peak).
#: Within 0.5% of GalSim's peak pixel and 0.05% of its flux on the render benchmark's galaxies,
#: as the reference is, at a fraction of its cost.
DEFAULT_SETTINGS = REFERENCE_SETTINGS.with_(
    psf_moments_central=True, moment_radius_pix=2, psf_margin_fwhm=1.0, cusp_table_nodes=64
)
#: Fast: as accurate, with one node per pixel away from the exactly integrated centre and a
#: border of half a FWHM (within 0.5% of GalSim's peak pixel and 0.4% of its flux there).
FAST_SETTINGS = DEFAULT_SETTINGS.with_(oversample=1, psf_margin_fwhm=0.5)
#: Pixel totals through the PSF, no border (the "fast" preset before the central moments; a few %
#: of the peak pixel off for unresolved centres, ~1% of the flux for galaxies wider than the stamp).
#: Kept so that configs of models trained with it reproduce them.
TOTALS_SETTINGS = REFERENCE_SETTINGS.with_(psf_margin=False, psf_moments=False)
#: Named settings for configs (``render_preset`` of :class:`galae.train.TrainConfig`).
RENDER_PRESETS: dict[str, RenderSettings] = {
    "accurate": DEFAULT_SETTINGS,
    "fast": FAST_SETTINGS,
    "reference": REFERENCE_SETTINGS,
    "totals": TOTALS_SETTINGS,
}
