"""galae.refine: the semi-amortized posterior (refined mode + Laplace widths).

The Laplace covariance is checked against its closed form for a linear renderer, where the
central differences are exact: (A^T W A + Sigma_q^-1)^-1 with W the pixels' Fisher weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from galae.encoder import EncoderOutput
from galae.refine import _low_rank_form, laplace_covariance, refine_posterior
from galae.sampling import _draw

B, D, R, C, H, W = 2, 4, 2, 3, 5, 5


@dataclass
class _Batch:
    images: torch.Tensor
    sigma: torch.Tensor
    mask: torch.Tensor
    redshift: torch.Tensor


class _LinearModel:
    """render_images(u) = A u + c: a linear stand-in for the renderer."""

    def __init__(self, likelihood: str = "gaussian", df: float = 4.0) -> None:
        g = torch.Generator().manual_seed(0)
        self.a = torch.randn(C * H * W, D, generator=g, dtype=torch.float64)
        self.c = torch.randn(C * H * W, generator=g, dtype=torch.float64)
        self.likelihood, self.df = likelihood, df

    def render_images(self, u: torch.Tensor, batch: _Batch, z: torch.Tensor) -> torch.Tensor:
        return (u.double() @ self.a.T + self.c).to(u.dtype).view(-1, C, H, W)


class _Encoder:
    def __init__(self) -> None:
        self.refined_posterior_scale = torch.ones(D)


class _Guide:
    def __init__(self) -> None:
        self.encoder = _Encoder()

    @staticmethod
    def posterior_dist(out: EncoderOutput) -> torch.distributions.Distribution:
        return torch.distributions.LowRankMultivariateNormal(out.loc, out.cov_factor, out.cov_diag)


def _setup(likelihood: str = "gaussian") -> tuple[_LinearModel, EncoderOutput, _Batch]:
    g = torch.Generator().manual_seed(1)
    model = _LinearModel(likelihood)
    out = EncoderOutput(
        loc=torch.randn(B, D, generator=g, dtype=torch.float64),
        cov_factor=0.3 * torch.randn(B, D, R, generator=g, dtype=torch.float64),
        cov_diag=0.05 + 0.1 * torch.rand(B, D, generator=g, dtype=torch.float64),
        z_loc=torch.zeros(B),
        z_scale=torch.ones(B),
    )
    sigma = 0.5 + torch.rand(B, C, H, W, generator=g, dtype=torch.float64)
    mask = torch.rand(B, C, H, W, generator=g) < 0.2
    u_true = torch.randn(B, D, generator=g, dtype=torch.float64)
    images = model.render_images(u_true, None, None) + sigma * torch.randn(  # type: ignore[arg-type]
        B, C, H, W, generator=g, dtype=torch.float64
    )
    return model, out, _Batch(images, sigma, mask, torch.full((B,), 0.1))


@pytest.mark.parametrize("likelihood", ["gaussian", "student_t"])
def test_laplace_covariance_of_a_linear_renderer(likelihood: str) -> None:
    model, out, batch = _setup(likelihood)
    cov = laplace_covariance(model, out, out.loc, batch, batch.redshift)
    fisher = 1.0 if likelihood == "gaussian" else (model.df + 1) / (model.df + 3)
    w = torch.where(batch.mask, 0.0, fisher / batch.sigma**2).flatten(1)
    prior = out.cov_factor @ out.cov_factor.transpose(-1, -2) + torch.diag_embed(out.cov_diag)
    expect = torch.linalg.inv(
        torch.einsum("pi,bp,pj->bij", model.a, w, model.a) + torch.linalg.inv(prior)
    )
    torch.testing.assert_close(cov, expect, rtol=1e-8, atol=1e-12)


def test_low_rank_form_is_exact_and_scaled() -> None:
    model, out, batch = _setup()
    cov = laplace_covariance(model, out, out.loc, batch, batch.redshift)
    scale = torch.tensor([1.0, 2.0, 0.5, 1.5])
    fac, diag = _low_rank_form(cov, scale)
    assert fac.shape == (B, D, D) and diag.shape == (B, D) and bool((diag > 0).all())
    rebuilt = fac.double() @ fac.double().transpose(-1, -2) + torch.diag_embed(diag.double())
    s = scale.double()
    torch.testing.assert_close(rebuilt, cov * s[:, None] * s[None, :], rtol=1e-5, atol=1e-7)


def test_refined_posterior_is_the_gaussian_posterior_of_a_linear_renderer() -> None:
    # objective -log N(x; A u + c, sigma) - log q(u): quadratic, so Adam reaches its exact mode
    model, out, batch = _setup()
    out32 = EncoderOutput(
        *(t.float() for t in (out.loc, out.cov_factor, out.cov_diag)), out.z_loc, out.z_scale
    )
    batch32 = _Batch(batch.images.float(), batch.sigma.float(), batch.mask, batch.redshift)
    # without the width floor (tested below), which would widen latents narrower than q by 2x
    ref = refine_posterior(model, _Guide(), out32, batch32, steps=600, lr=0.03, width_floor=0.0)
    prior = out.cov_factor @ out.cov_factor.transpose(-1, -2) + torch.diag_embed(out.cov_diag)
    w = torch.where(batch.mask, 0.0, 1.0 / batch.sigma**2).flatten(1)
    prec = torch.einsum("pi,bp,pj->bij", model.a, w, model.a) + torch.linalg.inv(prior)
    resid = (batch.images.flatten(1) - model.c) * w
    rhs = resid @ model.a + (torch.linalg.inv(prior) @ out.loc.unsqueeze(-1)).squeeze(-1)
    mode = torch.linalg.solve(prec, rhs.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(ref.loc.double(), mode, atol=2e-3, rtol=0)
    # draws have the Laplace covariance (full rank), from the refined mode
    u = _draw(ref, 20_000, torch.Generator().manual_seed(0), antithetic=True).double()
    emp = torch.einsum("kbi,kbj->bij", u - ref.loc.double(), u - ref.loc.double()) / u.shape[0]
    expect = torch.linalg.inv(prec)
    sd_e, sd_x = emp.diagonal(0, -2, -1).sqrt(), expect.diagonal(0, -2, -1).sqrt()
    torch.testing.assert_close(sd_e, sd_x, rtol=0.02, atol=0)  # 2e4 draws: 0.5% standard error
    corr_e = emp / (sd_e[..., :, None] * sd_e[..., None, :])
    corr_x = expect / (sd_x[..., :, None] * sd_x[..., None, :])
    torch.testing.assert_close(corr_e, corr_x, rtol=0, atol=0.03)  # 0.7% standard error
    with pytest.raises(ValueError, match="refine steps must be > 0"):
        refine_posterior(model, _Guide(), out32, batch32, steps=0)


def test_a_prior_in_place_of_q_gives_that_posterior() -> None:
    # refine_mean's log_prior and laplace_covariance's prior_precision replace q's terms: with a
    # Gaussian prior N(m0, P0^-1) the mode and covariance are the linear-Gaussian posterior's
    from galae.refine import refine_mean

    model, out, batch = _setup()
    g = torch.Generator().manual_seed(7)
    m0 = torch.randn(D, generator=g, dtype=torch.float64)
    root = torch.randn(D, D, generator=g, dtype=torch.float64)
    p0 = root @ root.T / D + 0.5 * torch.eye(D, dtype=torch.float64)
    prior = torch.distributions.MultivariateNormal(m0.float(), precision_matrix=p0.float())
    out32 = EncoderOutput(
        *(t.float() for t in (out.loc, out.cov_factor, out.cov_diag)), out.z_loc, out.z_scale
    )
    batch32 = _Batch(batch.images.float(), batch.sigma.float(), batch.mask, batch.redshift)
    u = refine_mean(model, _Guide(), out32, batch32, 600, 0.03, batch.redshift, prior.log_prob)
    w = torch.where(batch.mask, 0.0, 1.0 / batch.sigma**2).flatten(1)
    prec = torch.einsum("pi,bp,pj->bij", model.a, w, model.a) + p0
    rhs = ((batch.images.flatten(1) - model.c) * w) @ model.a + p0 @ m0
    mode = torch.linalg.solve(prec, rhs.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(u.double(), mode, atol=2e-3, rtol=0)
    cov = laplace_covariance(
        model, out, out.loc, batch, batch.redshift, prior_precision=p0.expand(B, D, D)
    )
    torch.testing.assert_close(cov, torch.linalg.inv(prec), rtol=1e-8, atol=1e-12)


def test_floor_widths_raises_narrow_widths_and_keeps_correlations() -> None:
    from galae.refine import floor_widths

    model, out, batch = _setup()
    cov = laplace_covariance(model, out, out.loc, batch, batch.redshift)
    amortized = ((out.cov_factor**2).sum(-1) + out.cov_diag).sqrt()
    refined = cov.diagonal(0, -2, -1).sqrt()
    f = float((refined / amortized).median())  # half the latents under the floor
    floored = floor_widths(cov, out, f)
    sd = floored.diagonal(0, -2, -1).sqrt()
    torch.testing.assert_close(sd, torch.maximum(refined, f * amortized), rtol=1e-12, atol=0)
    corr = cov / (refined[..., :, None] * refined[..., None, :])
    corr_f = floored / (sd[..., :, None] * sd[..., None, :])
    torch.testing.assert_close(corr_f, corr, rtol=1e-12, atol=1e-14)
    assert torch.equal(floor_widths(cov, out, 0.0), cov)
    with pytest.raises(ValueError, match="width_floor must be in"):
        refine_posterior(model, _Guide(), out, batch, steps=1, width_floor=1.5)


def test_tempered_covariance_limits() -> None:
    """Tempering the pixels' information by s: s = 1 is the Laplace covariance; where the image
    alone sets the widths they scale by s; where the prior alone does they stay the prior's."""
    from galae.refine import laplace_terms, tempered_covariance

    model, out, batch = _setup()
    fisher, prior = laplace_terms(model, out, out.loc, batch, batch.redshift)
    cov = laplace_covariance(model, out, out.loc, batch, batch.redshift)
    torch.testing.assert_close(tempered_covariance(fisher, prior), cov, rtol=1e-12, atol=0)
    s = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=torch.float64)
    tiny = 1e-9 * prior
    image_only = tempered_covariance(fisher, tiny, s)
    expect = torch.linalg.inv(fisher) * s[:, None] * s[None, :]
    torch.testing.assert_close(image_only, expect, rtol=1e-6, atol=1e-10)
    prior_only = tempered_covariance(1e-9 * fisher, prior, s)
    torch.testing.assert_close(prior_only, torch.linalg.inv(prior), rtol=1e-6, atol=1e-10)
    # in between, every width lies between the untempered one and max(s) (or min(s)) times it
    sd0 = cov.diagonal(0, -2, -1).sqrt()
    sd = tempered_covariance(fisher, prior, s).diagonal(0, -2, -1).sqrt()
    assert bool(
        (sd <= sd0 * s.max() * (1 + 1e-9)).all() and (sd >= sd0 * s.min() * (1 - 1e-9)).all()
    )


def test_likelihood_scales_recover_an_overconfident_likelihood() -> None:
    """Truths drawn from a posterior whose pixel information is k^2 times smaller than the one
    the Laplace terms claim: the fixed point finds s = k for the latents the image sets, and
    the calibrated 68% intervals cover 68% of the truths."""
    from galae.calibrate import ONE_SIGMA_MASS, likelihood_scales
    from galae.latent import REGISTRY

    g = torch.Generator().manual_seed(3)
    n, d = 4000, REGISTRY.dim
    k = 0.6 + 2.0 * torch.rand(d, generator=g, dtype=torch.float64)
    root = torch.randn(d, d, generator=g, dtype=torch.float64)
    fisher = (root @ root.T / d + torch.eye(d, dtype=torch.float64)).expand(n, d, d)
    prior = (1e-4 * torch.eye(d, dtype=torch.float64)).expand(n, d, d)  # the image dominates
    true_cov = torch.linalg.inv(fisher[0] / (k[:, None] * k[None, :]) + prior[0])
    mode = 0.1 * torch.randn(n, d, generator=g, dtype=torch.float64)
    chol = torch.linalg.cholesky(true_cov)
    u_true = mode + torch.randn(n, d, generator=g, dtype=torch.float64) @ chol.T
    amortized = torch.full((n, d), 10.0, dtype=torch.float64)
    scale, before, after, iterations = likelihood_scales(u_true, mode, fisher, prior, amortized)
    linear = torch.tensor([p.period is None for p in REGISTRY])  # the angle's errors wrap
    torch.testing.assert_close(scale[linear], k[linear], rtol=0.05, atol=0)
    assert iterations < 50
    target = torch.full((int(linear.sum()),), ONE_SIGMA_MASS, dtype=torch.float64)
    torch.testing.assert_close(after[linear], target, atol=0.01, rtol=0)
    assert float((before - ONE_SIGMA_MASS).abs().max()) > 0.1  # it was miscalibrated


def test_ceil_widths_lowers_wide_widths_and_keeps_correlations() -> None:
    from galae.refine import ceil_widths_sd

    model, out, batch = _setup()
    cov = laplace_covariance(model, out, out.loc, batch, batch.redshift) * 9.0  # 3x wider
    amortized = ((out.cov_factor**2).sum(-1) + out.cov_diag).sqrt()
    refined = cov.diagonal(0, -2, -1).sqrt()
    c = float((refined / amortized).median())  # half the latents over the ceiling
    capped = ceil_widths_sd(cov, amortized, c)
    sd = capped.diagonal(0, -2, -1).sqrt()
    torch.testing.assert_close(sd, torch.minimum(refined, c * amortized), rtol=1e-12, atol=0)
    corr = cov / (refined[..., :, None] * refined[..., None, :])
    corr_c = capped / (sd[..., :, None] * sd[..., None, :])
    torch.testing.assert_close(corr_c, corr, rtol=1e-12, atol=1e-14)
    assert torch.equal(ceil_widths_sd(cov, amortized, None), cov)
    # one ceiling per latent, inf for none: the latents without one keep their widths
    per = torch.tensor([c, float("inf"), c, float("inf")], dtype=torch.float64)
    sd_per = ceil_widths_sd(cov, amortized, per).diagonal(0, -2, -1).sqrt()
    torch.testing.assert_close(sd_per, torch.minimum(refined, per * amortized), rtol=1e-12, atol=0)


def test_refined_widths_are_capped_after_the_calibration_scale() -> None:
    """sigma_i = min(s_i sigma_Laplace,i, c sigma_q,i) when calibrated; the calibration's own
    (uncalibrated) widths are not capped; bad ceilings are named."""
    from galae.refine import checked_width_ceiling

    model, out, batch = _setup()
    out32 = EncoderOutput(
        *(t.float() for t in (out.loc, out.cov_factor, out.cov_diag)), out.z_loc, out.z_scale
    )
    batch32 = _Batch(batch.images.float(), batch.sigma.float(), batch.mask, batch.redshift)
    guide = _Guide()
    guide.encoder.refined_posterior_scale = torch.tensor([0.5, 4.0, 1.0, 8.0])
    kw = {"steps": 5, "width_floor": 0.0}

    def widths(ref: EncoderOutput) -> torch.Tensor:
        return ((ref.cov_factor.double() ** 2).sum(-1) + ref.cov_diag.double()).sqrt()

    raw = widths(refine_posterior(model, guide, out32, batch32, calibrated=False, **kw))
    free = widths(refine_posterior(model, guide, out32, batch32, width_ceiling=None, **kw))
    capped = widths(refine_posterior(model, guide, out32, batch32, width_ceiling=1.5, **kw))
    s = guide.encoder.refined_posterior_scale.double()
    amortized = ((out.cov_factor**2).sum(-1) + out.cov_diag).sqrt()
    torch.testing.assert_close(free, raw * s, rtol=1e-4, atol=0)
    torch.testing.assert_close(capped, torch.minimum(raw * s, 1.5 * amortized), rtol=1e-4, atol=0)
    assert bool((raw * s > 1.6 * amortized).any())  # the ceiling binds somewhere
    same = widths(refine_posterior(model, guide, out32, batch32, calibrated=False, **kw))
    torch.testing.assert_close(same, raw, rtol=1e-6, atol=0)  # uncalibrated: never capped
    assert checked_width_ceiling(None) is None and checked_width_ceiling(2) == 2.0
    torch.testing.assert_close(
        checked_width_ceiling([1.5, float("inf")]),
        torch.tensor([1.5, float("inf")], dtype=torch.float64),
    )
    for bad in (0.5, float("nan"), float("inf"), True, "x", [[1.5]], [0.9, 2.0]):
        with pytest.raises(ValueError, match="width_ceiling"):
            checked_width_ceiling(bad)
    with pytest.raises(ValueError, match="width_ceiling must be a finite number >= 1"):
        refine_posterior(model, guide, out32, batch32, width_ceiling=0.8, **kw)


def test_a_calibration_under_the_ceiling_covers_68_percent() -> None:
    """Truths N(mode, sigma_t) with Laplace widths sigma_t / k and amortized widths sigma_q: the
    scale fitted by counting the truths beyond c sigma_q as uncovered gives the capped intervals
    min(s sigma_L, c sigma_q) 68% coverage; a latent whose truths lie beyond c sigma_q for more
    than 32% is named and left without a ceiling."""
    import warnings

    from galae.calibrate import ONE_SIGMA_MASS, _errors_under_ceiling
    from galae.latent import REGISTRY

    g = torch.Generator().manual_seed(5)
    n, d, c = 20_000, REGISTRY.dim, 1.5
    sd_true = 0.2 + torch.rand(d, generator=g, dtype=torch.float64)
    # per galaxy, so that the errors' order in q's widths is not that in the Laplace widths
    sd_laplace = sd_true / (0.5 + 2.0 * torch.rand(n, d, generator=g, dtype=torch.float64))
    # q's widths: from well above the truths' (the ceiling never binds) to below them
    sd_q = sd_true * torch.linspace(3.0, 0.4, d, dtype=torch.float64)
    err = torch.randn(n, d, generator=g, dtype=torch.float64) * sd_true
    z = err.abs() / sd_laplace
    inside = err.abs() < c * sd_q
    in_q_widths = err.abs() / sd_q
    extra: dict = {}
    reach = inside.double().mean(0)
    short = reach < ONE_SIGMA_MASS
    assert bool(short.any() and (~short).any())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zc = _errors_under_ceiling(z, in_q_widths, c, extra)
    assert any("calibrated without a ceiling" in str(w.message) for w in caught)
    per = torch.tensor([extra["width_ceiling_per_latent"][name] for name in REGISTRY.names])
    assert torch.equal(torch.isinf(per), short) and bool((per[~short] == c).all())
    scale = torch.quantile(zc, ONE_SIGMA_MASS, dim=0)
    width = torch.minimum(scale * sd_laplace, per.double() * sd_q)
    coverage = (err.abs() < width).double().mean(0)
    torch.testing.assert_close(
        coverage, torch.full_like(coverage, ONE_SIGMA_MASS), atol=2e-3, rtol=0
    )
    # where the ceiling binds for some truths, the scale is wider than without it
    q0 = torch.quantile(z, ONE_SIGMA_MASS, dim=0)
    binds = ~short & (reach < 0.99)
    assert bool((scale >= q0).all() and (scale[binds] > q0[binds]).all())

    # with a fallback f: the latents short under c move up to f where 68% lie within it (their
    # capped intervals covering 68% again), the rest keep none; the others are untouched
    f = 2.5
    reach_f = (in_q_widths < f).double().mean(0)
    moved = short & (reach_f >= ONE_SIGMA_MASS)
    assert bool(moved.any() and (short & ~moved).any())
    extra_f: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zf = _errors_under_ceiling(z, in_q_widths, c, extra_f, fallback=f)
    said = " ".join(str(w.message) for w in caught)
    assert "fallback ceiling 2.5" in said and "calibrated without a ceiling" in said
    per_f = torch.tensor([extra_f["width_ceiling_per_latent"][name] for name in REGISTRY.names])
    expected = torch.where(moved, f, torch.where(short, math.inf, c)).to(per_f)
    assert torch.equal(per_f, expected)
    assert set(extra_f["coverage_68_reachable_under_fallback"]) == {
        name for name, s_ in zip(REGISTRY.names, short.tolist(), strict=True) if s_
    }
    torch.testing.assert_close(zf[:, ~moved], zc[:, ~moved])
    scale_f = torch.quantile(zf, ONE_SIGMA_MASS, dim=0)
    width_f = torch.minimum(scale_f * sd_laplace, per_f.double() * sd_q)
    coverage_f = (err.abs() < width_f).double().mean(0)
    torch.testing.assert_close(
        coverage_f, torch.full_like(coverage_f, ONE_SIGMA_MASS), atol=2e-3, rtol=0
    )


def test_the_width_ceiling_fallback_is_checked() -> None:
    """A fallback must lie above every finite ceiling; without a ceiling it is None."""
    from galae.refine import checked_width_ceiling_fallback

    assert checked_width_ceiling_fallback(None, None) is None
    assert checked_width_ceiling_fallback(1.5, None) is None  # no ceiling: nothing to fall from
    assert checked_width_ceiling_fallback(2, 1.25) == 2.0
    per = torch.tensor([1.25, math.inf], dtype=torch.float64)
    assert checked_width_ceiling_fallback(1.5, per) == 1.5
    for bad, ceiling, why in (
        (1.25, 1.25, "above the ceiling"),
        (1.0, 1.5, "above the ceiling"),
        (math.inf, 1.5, "finite number"),
        (float("nan"), 1.5, "finite number"),
        (True, 1.5, "a number or None"),
        ("2", 1.5, "a number or None"),
    ):
        with pytest.raises(ValueError, match=why):
            checked_width_ceiling_fallback(bad, ceiling)
