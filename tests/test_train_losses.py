"""Training losses and config checks (the loop itself is exercised in tests/test_api.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from galae.checkpoint import _SETTINGS_BEFORE_THEY_EXISTED, build_modules
from galae.model import Batch
from galae.settings import FAST_SETTINGS, RenderSettings
from galae.train import TrainConfig, sleep_loss, wake_loss

SHAPE = (24, 24)


def _modules(**cfg):
    config = TrainConfig(widths=(8, 16), hidden=16, render_preset="fast", **cfg)
    info = {"bands": ("u", "g", "r", "i", "z"), "shape": SHAPE, "pixel_scale_arcsec": 0.396}
    return build_modules(config, info)


def _batch(b: int = 3) -> Batch:
    g = torch.Generator().manual_seed(0)
    sigma = torch.full((b, 5, *SHAPE), 0.01)
    return Batch(
        images=0.02 * torch.randn(b, 5, *SHAPE, generator=g) + 0.05,
        sigma=sigma,
        mask=torch.zeros(b, 5, *SHAPE, dtype=torch.bool),
        psf_fwhm_arcsec=torch.full((b, 5), 1.4),
        redshift=torch.full((b,), 0.08),
        pixel_scale_arcsec=0.396,
        bands=("u", "g", "r", "i", "z"),
        index=torch.arange(b),
    )


@pytest.mark.parametrize("estimator", ["elbo", "map"])
def test_wake_losses_are_finite_and_reach_the_encoder(estimator: str) -> None:
    model, guide = _modules()
    assert model.renderer.settings == FAST_SETTINGS
    loss = wake_loss(model, guide, _batch(), estimator)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in guide.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_map_wake_loss_is_the_point_mass_elbo() -> None:
    """-[log p(x | u) + log p(u)] at q's mean, per pixel-band: recompute it by hand."""
    model, guide = _modules()
    batch = _batch()
    with torch.no_grad():
        out = guide.encode(batch)
        rec = model.render(out.loc, batch).images
        log_lik = model.likelihood_dist(rec, batch).log_prob(batch.images)
        log_prior = model.prior_dist(batch.size).log_prob(out.loc)
        expect = -(log_lik + log_prior).sum() / (batch.size * batch.images[0].numel())
        got = wake_loss(model, guide, batch, "map")
    torch.testing.assert_close(got, expect)


def test_sleep_loss_uses_the_given_prior() -> None:
    class Fixed(torch.nn.Module):
        def sample(self, n, generator=None):
            return torch.zeros(n, 20)

    model, guide = _modules()
    batch = _batch()
    loss = sleep_loss(model, guide, batch, torch.Generator().manual_seed(1), Fixed())
    with torch.no_grad():
        # -log q(0 | x_sim) / D: the prior's draws are the targets
        assert torch.isfinite(loss) and float(loss) > -10


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("wake_estimator", "iwae", "wake_estimator"),
        ("render_preset", "ultra", "render_preset"),
        ("sleep_broad_fraction", 1.5, "sleep_broad_fraction"),
    ],
)
def test_bad_training_settings_are_named(key: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TrainConfig(**{key: value})


def test_old_checkpoint_settings_keep_their_renderer() -> None:
    names = {f.name for f in dataclasses.fields(RenderSettings)}
    assert set(_SETTINGS_BEFORE_THEY_EXISTED) <= names
    old = RenderSettings(**_SETTINGS_BEFORE_THEY_EXISTED)
    assert not old.psf_margin and not old.psf_moments and old.shading_radial_nodes == 0


def test_float_overrides_in_exponent_notation() -> None:
    from galae.config import load_config, parse_overrides

    cfg = load_config(TrainConfig, None, parse_overrides(["lr=3e-4", "max_minutes=2e1"]))
    assert cfg.lr == pytest.approx(3e-4) and cfg.max_minutes == pytest.approx(20.0)
    with pytest.raises(ValueError, match="'lr' must be float"):
        load_config(TrainConfig, None, parse_overrides(["lr=fast"]))
