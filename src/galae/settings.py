"""Numerical accuracy settings, kept apart from the physics (as GalSim's GSParams).

Every knob that trades accuracy for speed lives here, in one immutable object.  Physics
modules never hard-code these numbers; they take a :class:`RenderSettings` argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["RenderSettings", "DEFAULT_SETTINGS"]


@dataclass(frozen=True)
class RenderSettings:
    """Accuracy settings of the renderer.

    Attributes:
        oversample: sub-pixels per pixel side used to integrate smooth profiles over pixels.
        cusp_oversample: sub-pixels per pixel side in the central pixels of a profile, where
            a high-index Sersic profile is too steep for ``oversample``.
        cusp_radius_pix: half-width (pixels) of the central box sampled at ``cusp_oversample``.
        fft_pad_factor: the FFT grid is at least this many times the stamp size, so that
            PSF convolution never wraps light from one edge onto the other.
        sersic_n_min, sersic_n_max: range of Sersic index the profile code is accurate for.
        disk_thickness_q0: intrinsic axis ratio of an edge-on disk (Hubble 1926 oblate
            spheroid: q^2 = cos^2 i + q0^2 sin^2 i).  Physics, but a fixed model choice, so
            not a latent.
        psf_kernel_fwhm_extent: analytic PSFs are evaluated out to this many FWHM.
    """

    oversample: int = 3
    cusp_oversample: int = 15
    cusp_radius_pix: int = 2
    fft_pad_factor: float = 1.5
    sersic_n_min: float = 0.5
    sersic_n_max: float = 6.5
    disk_thickness_q0: float = 0.2
    psf_kernel_fwhm_extent: float = 6.0

    def __post_init__(self) -> None:
        if self.oversample < 1 or self.cusp_oversample < 1:
            raise ValueError("oversample and cusp_oversample must be >= 1")
        if self.fft_pad_factor < 1.0:
            raise ValueError("fft_pad_factor must be >= 1")
        if not 0.0 < self.disk_thickness_q0 < 1.0:
            raise ValueError("disk_thickness_q0 must be in (0, 1)")

    def with_(self, **changes: object) -> RenderSettings:
        """A copy with some fields changed (the object itself is immutable)."""
        return replace(self, **changes)


DEFAULT_SETTINGS = RenderSettings()
