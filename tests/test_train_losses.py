"""Training losses and config checks (the loop itself is exercised in tests/test_api.py)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from galae.checkpoint import _SETTINGS_BEFORE_THEY_EXISTED, build_modules
from galae.model import Batch
from galae.settings import FAST_SETTINGS, RenderSettings
from galae.train import TrainConfig, random_source_masks, sleep_loss, wake_loss

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


def test_mixed_precision_encoder_keeps_q_in_float32() -> None:
    """bf16 autocast covers the encoder's CNN and head only: q's parameters (and so its Cholesky
    factor, which cuSOLVER has no bf16 kernel for) and the wake loss stay float32, and the
    bf16 means are close to the float32 ones (bf16 keeps 8 bits of mantissa)."""
    model, guide = _modules()
    batch = _batch()
    with torch.no_grad():
        full = guide.encode(batch)
        guide.encoder.autocast_dtype = torch.bfloat16
        half = guide.encode(batch)
    for name in ("loc", "cov_factor", "cov_diag", "z_loc", "z_scale"):
        assert getattr(half, name).dtype == torch.float32, name
    torch.testing.assert_close(half.loc, full.loc, atol=0.05, rtol=0.05)
    loss = wake_loss(model, guide, batch, "elbo")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in guide.parameters() if p.grad is not None)


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
    # float32 sums of ~1e4 terms in another order: relative differences of a few 1e-6
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-4)


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
        ("sleep_mask_fraction", -0.1, "sleep_mask_fraction"),
        ("sleep_missing_band_fraction", 1.5, "sleep_missing_band_fraction"),
        ("sleep_photo_z_fraction", 1.2, "sleep_photo_z_fraction"),
        ("disk_history", "delayed", "disk_history"),
        ("sleep_history_scale_dex", -0.1, "sleep_history_scale_dex"),
        ("sleep_dust_clumping_max", -0.5, "sleep_dust_clumping_max"),
        ("sleep_dust_clumping_max", float("nan"), "sleep_dust_clumping_max"),
        ("sleep_population_dust", "smooth", "population_dust"),
        ("sleep_population_dust", "empirical+smooth", "population_dust"),
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


def test_a_non_finite_gradient_is_left_out_not_clipped() -> None:
    """A finite loss whose gradient overflows (NaN or inf) must not reach the weights."""
    from galae.train import _balanced_backward

    w = torch.tensor([1.0, 2.0], requires_grad=True)
    terms = {
        "good": (w**2).sum(),  # gradient 2w = (2, 4), norm 4.47: clipped to 1
        "bad": torch.sqrt(w - w.detach()).sum(),  # finite value 0, gradient inf at 0
    }
    assert torch.isfinite(sum(terms.values()))
    norm, skipped = _balanced_backward(terms, {"good": 1.0, "bad": 1.0}, [w], clip=1.0)
    assert skipped == ["bad"]
    torch.testing.assert_close(w.grad, torch.tensor([2.0, 4.0]) / 20.0**0.5)
    assert abs(norm - 1.0) < 1e-6


def test_random_source_masks() -> None:
    """Discs off the centre, the same in every band, in the requested fraction of stamps; a
    one-band rectangle in some; the central pixels never lose a disc."""
    g = torch.Generator().manual_seed(0)
    m = random_source_masks((400, 5, 32, 32), 0.5, g)
    assert m.shape == (400, 5, 32, 32) and m.dtype == torch.bool
    masked = m.flatten(1).any(1)
    assert 0.42 < float(masked.float().mean()) < 0.58  # binomial, 400 stamps: 4 sigma
    discs = m.all(1)  # masked in every band: the discs (a rectangle is in one band only)
    assert not bool(discs[:, 15:17, 15:17].any())
    one_band = m.any(1) & ~discs
    assert bool(one_band.flatten(1).any(1).any())  # some rectangles
    assert not bool(random_source_masks((8, 5, 32, 32), 0.0, g).any())
    assert bool(random_source_masks((8, 5, 32, 32), 1.0, g).flatten(1).any(1).all())


def test_random_source_masks_missing_band() -> None:
    """missing_band_fraction: that fraction of the stamps loses exactly one whole band, every band
    in turn; without it no band is ever wholly masked."""
    g = torch.Generator().manual_seed(1)
    m = random_source_masks((600, 5, 16, 16), 0.0, g, missing_band_fraction=0.4)
    whole = m.flatten(2).all(2)  # (B, C): band wholly masked
    assert int(whole.sum(1).max()) == 1
    frac = float(whole.any(1).float().mean())
    assert 0.34 < frac < 0.46  # binomial, 600 stamps: 3 sigma
    assert bool((m.flatten(2).any(2) == whole).all())  # nothing else is masked
    assert bool(whole.any(0).all())  # each band is the lost one for some stamps
    m = random_source_masks((200, 5, 16, 16), 1.0, g)
    assert not bool(m.flatten(2).all(2).any())


def test_sleep_with_missing_bands_masks_the_simulations() -> None:
    """sleep_loss with missing_band_fraction=1 scores stamps that each lack a whole band: the
    loss differs from the unmasked one under the same seed and stays finite with gradients."""
    model, guide = _modules()
    out = {}
    for fraction in (0.0, 1.0):
        guide.zero_grad()
        loss = sleep_loss(
            model, guide, _batch(), torch.Generator().manual_seed(2), None, 0.0, 0.0, fraction
        )
        loss.backward()
        grad = sum(float(p.grad.abs().sum()) for p in guide.parameters() if p.grad is not None)
        assert bool(torch.isfinite(loss)) and grad > 0
        out[fraction] = loss.item()
    assert out[0.0] != out[1.0]


def test_sleep_with_history_variability_renders_other_disks() -> None:
    """simulate_like with history_scale_dex > 0 draws the same galaxies (the latents) but
    renders their disks with other histories; the sleep loss stays finite with gradients."""
    from galae.train import simulate_like

    model, guide = _modules(disk_history="tau")
    u0, smooth = simulate_like(model, _batch(), torch.Generator().manual_seed(5))
    u1, varied = simulate_like(model, _batch(), torch.Generator().manual_seed(5), None, 0.3)
    torch.testing.assert_close(u0, u1)
    assert not torch.allclose(smooth.images, varied.images)
    guide.zero_grad()
    loss = sleep_loss(
        model, guide, _batch(), torch.Generator().manual_seed(2), None, 0.0, 0.0, 0.0, 0.3
    )
    loss.backward()
    grad = sum(float(p.grad.abs().sum()) for p in guide.parameters() if p.grad is not None)
    assert bool(torch.isfinite(loss)) and grad > 0


def test_sleep_with_dust_clumping_renders_other_dust() -> None:
    """simulate_like with dust_clumping_max > 0 draws the same galaxies (the latents) and
    renders them through patchy dust; with 0 it draws nothing (the stream is as without it);
    the sleep loss stays finite with gradients."""
    from galae.train import simulate_like

    model, guide = _modules()
    u0, smooth = simulate_like(model, _batch(), torch.Generator().manual_seed(5))
    u1, off = simulate_like(
        model, _batch(), torch.Generator().manual_seed(5), dust_clumping_max=0.0
    )
    torch.testing.assert_close(off.images, smooth.images)
    u2, clumpy = simulate_like(
        model, _batch(), torch.Generator().manual_seed(5), dust_clumping_max=1.0
    )
    torch.testing.assert_close(u0, u2)
    assert not torch.allclose(smooth.images, clumpy.images)
    guide.zero_grad()
    loss = sleep_loss(
        model, guide, _batch(), torch.Generator().manual_seed(2), dust_clumping_max=1.0
    )
    loss.backward()
    grad = sum(float(p.grad.abs().sum()) for p in guide.parameters() if p.grad is not None)
    assert bool(torch.isfinite(loss)) and grad > 0


def test_sleep_with_masks_trains_the_masked_channel() -> None:
    """With sleep_mask_fraction the masked-pixel input channel gets a gradient; without it (the
    data have no masks) it gets none."""
    model, guide = _modules()
    stem = next(p for p in guide.encoder.cnn.parameters() if p.dim() == 4)
    for fraction, expect in ((0.0, False), (1.0, True)):
        guide.zero_grad()
        loss = sleep_loss(model, guide, _batch(), torch.Generator().manual_seed(2), None, fraction)
        loss.backward()
        grad = stem.grad[:, 5].abs().sum()  # channels: 5 bands, then "masked in any band"
        assert bool(torch.isfinite(loss)) and bool(grad > 0) == expect


def test_sleep_photo_z_term_trains_the_photo_z_head_only() -> None:
    """With sleep_photo_z_fraction the photo-z head gets a gradient, every other parameter gets
    exactly the gradient it gets without it, and the loss is
    (sum -log q(u | x, z) + sum -log q(t | x)) / (B D), t the logit of the scaled redshift."""
    from galae.latent import REDSHIFT_FALLBACK_RANGE
    from galae.train import simulate_like

    model, guide = _modules()
    grads = {}
    for fraction in (0.0, 1.0):
        guide.zero_grad()
        loss = sleep_loss(
            model, guide, _batch(), torch.Generator().manual_seed(2), None, 0.0, fraction
        )
        loss.backward()
        assert bool(torch.isfinite(loss))
        grads[fraction] = {
            n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in guide.named_parameters()
        }
    for n in grads[0.0]:
        if n.startswith("encoder.out_z"):
            assert float(grads[0.0][n].abs().sum()) == 0.0
            assert float(grads[1.0][n].abs().sum()) > 0.0
        else:
            torch.testing.assert_close(grads[1.0][n], grads[0.0][n], msg=n)
    # the value: recompute from the same simulation (same seed)
    loss = sleep_loss(model, guide, _batch(), torch.Generator().manual_seed(5), None, 0.0, 1.0)
    u, sim = simulate_like(model, _batch(), torch.Generator().manual_seed(5))
    out = guide.encode(sim)
    z_loc, z_scale = guide.encoder.photo_z(
        *guide.encoder.trunk(sim.images, sim.sigma, sim.mask, sim.psf_fwhm_arcsec, sim.redshift)
    )
    unknown = guide.encoder(
        sim.images, sim.sigma, sim.mask, sim.psf_fwhm_arcsec, None
    )  # the same head as forward() with an unknown redshift
    torch.testing.assert_close(z_loc, unknown.z_loc)
    torch.testing.assert_close(z_scale, unknown.z_scale)
    lo, hi = REDSHIFT_FALLBACK_RANGE
    t = torch.logit((sim.redshift - lo) / (hi - lo))
    expect = (
        -guide.posterior_dist(out).log_prob(u)
        - torch.distributions.Normal(z_loc, z_scale).log_prob(t)
    ).mean() / u.shape[-1]
    torch.testing.assert_close(loss, expect, rtol=1e-5, atol=1e-6)


def test_trainable_prefixes_freeze_the_rest() -> None:
    from galae.train import _trainable_parameters

    _, guide = _modules()
    params = _trainable_parameters(guide, ("encoder.out_z",))
    names = [n for n, p in guide.named_parameters() if p.requires_grad]
    assert names == ["encoder.out_z.weight", "encoder.out_z.bias"]
    assert len(params) == 2
    _, guide = _modules()
    assert len(_trainable_parameters(guide, ())) == len(list(guide.parameters()))
    with pytest.raises(ValueError, match="'encoder.no_such_head' names no parameter"):
        _trainable_parameters(guide, ("encoder.no_such_head",))


def test_sleep_noise_scaling_draws_deeper_and_shallower_stamps() -> None:
    """simulate_like with sigma_scale_fraction = 1 and a one-point range multiplies every
    stamp's sigma by 10**dex and draws the noise at that sigma (same galaxies, same clean images
    for the same seed); with fraction 0 nothing changes; a range scatters the factors in it."""
    from galae.train import simulate_like

    model, _ = _modules()
    batch = _batch(64)
    u0, base = simulate_like(model, batch, torch.Generator().manual_seed(5))
    u1, deep = simulate_like(
        model, batch, torch.Generator().manual_seed(5), None, 0.0, (-1.0, -1.0), 1.0
    )
    torch.testing.assert_close(u0, u1)
    torch.testing.assert_close(deep.sigma, batch.sigma * 0.1)
    clean = model.render_images(u0, batch, batch.redshift)
    pulls = ((deep.images - clean) / deep.sigma)[~batch.mask]
    assert abs(float(pulls.std()) - 1.0) < 0.01  # about 1e6 pixels
    _, same = simulate_like(
        model, batch, torch.Generator().manual_seed(5), None, 0.0, (-1.0, 0.5), 0.0
    )
    torch.testing.assert_close(same.images, base.images)
    _, mixed = simulate_like(
        model, batch, torch.Generator().manual_seed(5), None, 0.0, (-1.0, 0.5), 0.5
    )
    factor = (mixed.sigma / batch.sigma).flatten(1)
    assert torch.allclose(factor, factor[:, :1])  # one factor per stamp
    lg = torch.log10(factor[:, 0])
    assert float(lg.min()) >= -1.0 - 1e-6 and float(lg.max()) <= 0.5 + 1e-6
    scaled = (lg.abs() > 1e-6).float().mean()
    assert 0.3 < float(scaled) < 0.7  # about half of 64


def test_sleep_seeing_and_redshift_beyond_the_data() -> None:
    """simulate_like with psf_scale_fraction = 1 and a one-point range renders every stamp with
    its PSF times 10**dex (and says so in the simulated batch); with redshift_fraction = 1 every
    stamp lies at a redshift in the range; off, neither draws a number (the same stream)."""
    from galae.train import simulate_like

    model, _ = _modules()
    batch = _batch(32)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    u0, base = simulate_like(model, batch, g())
    u1, same = simulate_like(model, batch, g(), None, 0.0, (0.0, 0.0), 0.0, (0.3, 0.3), 0.0)
    torch.testing.assert_close(same.images, base.images)
    u2, blurred = simulate_like(model, batch, g(), None, 0.0, (0.0, 0.0), 0.0, (0.3, 0.3), 1.0)
    torch.testing.assert_close(u2, u0)
    torch.testing.assert_close(blurred.psf_fwhm_arcsec, batch.psf_fwhm_arcsec * 10**0.3)
    torch.testing.assert_close(blurred.redshift, batch.redshift)
    wide = dataclasses.replace(batch, psf_fwhm_arcsec=batch.psf_fwhm_arcsec * 10**0.3)
    clean = model.render_images(u0, wide, batch.redshift)
    pulls = ((blurred.images - clean) / blurred.sigma)[~batch.mask]
    assert abs(float(pulls.std()) - 1.0) < 0.02
    _, far = simulate_like(
        model, batch, g(), None, 0.0, (0.0, 0.0), 0.0, (0.0, 0.0), 0.0, (0.3, 0.45), 1.0
    )
    assert bool(((far.redshift >= 0.3) & (far.redshift <= 0.45)).all())
    torch.testing.assert_close(far.psf_fwhm_arcsec, batch.psf_fwhm_arcsec)


@pytest.mark.parametrize(
    "bad",
    [
        {"sleep_sigma_scale_dex": (0.5, -1.0)},
        {"sleep_sigma_scale_dex": (-3.0, 0.0)},
        {"sleep_sigma_scale_dex": (-1.0, 0.0, 0.5)},
        {"sleep_sigma_scale_fraction": 1.5},
        {"sleep_psf_scale_dex": (0.0, 1.5)},
        {"sleep_psf_scale_fraction": -0.1},
        {"sleep_redshift_range": (0.3, 0.2)},
        {"sleep_redshift_range": (0.1, 0.9)},
        {"sleep_redshift_fraction": 2.0},
    ],
)
def test_bad_noise_scaling_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        TrainConfig(**bad)  # type: ignore[arg-type]
