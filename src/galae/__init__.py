"""galae: multi-band galaxy images <-> physical models, with a differentiable analytic renderer.

Quick use::

    import galae
    s = galae.sample(n=100, seed=0)          # galaxies from the packaged model's learned prior
    m = galae.load()                         # the packaged default model (or galae.load(path))
    post = m.encode(images, sigma, psf_fwhm_arcsec=psf, redshift=z)
    img = galae.render_profile("sersic", flux=1.0, r_half_major_arcsec=2.0, sersic_n=4.0)

Attributes are imported lazily, so ``import galae`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    "REGISTRY": "galae.latent",
    "Latent": "galae.latent",
    "Param": "galae.latent",
    "render_profile": "galae.render.profile_api",
    "GalaxyRenderer": "galae.render.renderer",
    "Observation": "galae.render.observation",
    "GalaeModel": "galae.sampling",
    "Posterior": "galae.sampling",
    "Samples": "galae.sampling",
    "load": "galae.sampling",
    "sample": "galae.sampling",
    "write_posterior_fits": "galae.export",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'galae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
