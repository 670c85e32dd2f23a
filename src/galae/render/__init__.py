"""Observation stages: pixel integration, PSF convolution, the profile API."""

from galae.render.profile_api import PROFILES, render_profile
from galae.render.psf import (
    PSF_MODELS,
    GaussianPSF,
    MoffatPSF,
    PixelPSF,
    convolve,
    convolve_moments,
    make_psf,
)
from galae.render.raster import PixelMoments, sersic_image, sersic_pixel_moments

__all__ = [
    "PROFILES",
    "PSF_MODELS",
    "GaussianPSF",
    "MoffatPSF",
    "PixelMoments",
    "PixelPSF",
    "convolve",
    "convolve_moments",
    "make_psf",
    "render_profile",
    "sersic_image",
    "sersic_pixel_moments",
]
