"""Every tensor the GPU paths create lands on the device of their inputs.

CI has no GPU, so a tensor made without ``device=`` (a CPU tensor that then meets CUDA ones)
would go unseen there.  These tests run the renderer, the training losses and the public
sampling and encoding API on the CPU under a function mode that sends every factory call without
an explicit device (``torch.tensor``, ``zeros``, ``arange``, ..., ``as_tensor`` of non-tensors)
to the ``meta`` device: any such tensor that meets the real inputs raises "not on the expected
device", exactly where it would meet CUDA tensors on a GPU.  (tests/test_cuda.py checks the same
paths numerically on a GPU when there is one.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

import galae
from galae.data.conditions import sample_sdss_conditions
from galae.latent import REGISTRY
from galae.physics.population import sample_population
from galae.render.observation import Observation
from galae.render.renderer import GalaxyRenderer
from galae.settings import RENDER_PRESETS

_FACTORIES: frozenset[Callable[..., Any]] = frozenset(
    {
        torch.tensor,
        torch.as_tensor,
        torch.zeros,
        torch.ones,
        torch.empty,
        torch.full,
        torch.arange,
        torch.linspace,
        torch.logspace,
        torch.eye,
        torch.rand,
        torch.randn,
        torch.randint,
        torch.scalar_tensor,
    }
)


class DevicelessTensorsOnMeta(TorchFunctionMode):
    """Factory calls with no device create ``meta`` tensors (``as_tensor`` of a tensor is kept)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = dict(kwargs or {})
        if func in _FACTORIES and kwargs.get("device") is None:
            keeps = func is torch.as_tensor and args and isinstance(args[0], torch.Tensor)
            if not keeps:
                kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _galaxies(n: int = 3) -> tuple[dict[str, torch.Tensor], Observation]:
    p = sample_population(n, torch.Generator().manual_seed(0))
    c = sample_sdss_conditions(n, np.random.default_rng(0))
    return p, Observation.create(c.redshift, c.psf_fwhm_arcsec, shape=(40, 40))


def test_the_mode_catches_a_deviceless_tensor() -> None:
    x = torch.rand(3)
    with pytest.raises(RuntimeError, match="device"), DevicelessTensorsOnMeta():
        torch.special.gammainc(torch.tensor(2.0), x)
    with DevicelessTensorsOnMeta():
        torch.special.gammainc(x.new_tensor(2.0), x)


@pytest.mark.parametrize("preset", list(RENDER_PRESETS))
@pytest.mark.parametrize("entry", ["forward", "images"])
def test_renderer_creates_no_deviceless_tensors(preset: str, entry: str) -> None:
    p, obs = _galaxies()
    ren = GalaxyRenderer(settings=RENDER_PRESETS[preset])
    ren(p, obs)  # build the cached tables outside the mode
    with DevicelessTensorsOnMeta():
        u = REGISTRY.to_unconstrained(p).requires_grad_(True)
        out = getattr(ren, entry)(REGISTRY.from_unconstrained(u), obs)
        images = out if entry == "images" else out.images
        images.square().sum().backward()
    assert images.device.type == "cpu" and torch.isfinite(u.grad).all()


def test_training_losses_create_no_deviceless_tensors() -> None:
    from galae.train import sleep_loss, wake_loss
    from test_train_losses import _batch, _modules

    model, guide = _modules()
    batch = _batch()
    model.render(guide.encode(batch).loc.detach(), batch)  # caches outside the mode
    gen = torch.Generator().manual_seed(0)
    with DevicelessTensorsOnMeta():
        loss = wake_loss(model, guide, batch, "elbo") + sleep_loss(
            model, guide, batch, gen, model.prior, mask_fraction=1.0
        )
        loss.backward()
    assert torch.isfinite(loss)


def test_sample_and_encode_create_no_deviceless_tensors() -> None:
    m = galae.load()
    s0 = m.sample(n=2, seed=0)  # caches outside the mode
    with DevicelessTensorsOnMeta():
        s = m.sample(n=2, seed=1)
        post = m.encode(
            s.images,
            s.sigma,
            psf_fwhm_arcsec=s.psf_fwhm_arcsec,
            redshift=s.redshift,
            n_mc=8,
            n_mc_derived=2,
        )
        refined = m.encode(
            s.images,
            s.sigma,
            psf_fwhm_arcsec=s.psf_fwhm_arcsec,
            redshift=None,
            n_mc=8,
            n_mc_derived=2,
            refine_steps=1,
            mask_neighbours=True,
        )
        grz = s.images.clone()
        grz[:, [0, 3]] = float("nan")  # the encoder's stand-ins (galae.data.stand_in)
        other = m.encode(
            grz,
            s.sigma,
            psf_fwhm_arcsec=s.psf_fwhm_arcsec,
            redshift=s.redshift,
            pixel_scale_arcsec=0.262,  # regridded for the encoder (galae.render.regrid)
            n_mc=8,
            n_mc_derived=2,
        )
    assert torch.isfinite(other.params["log10_mstar_msun"]).all()
    assert torch.isfinite(refined.params["log10_mstar_msun"]).all()
    assert s0.images.shape == s.images.shape
    assert torch.isfinite(post.params["log10_mstar_msun"]).all()
