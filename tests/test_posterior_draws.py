"""Antithetic posterior draws: each draw is distributed as q, and mirrored pairs cancel the
linear part of a function, so a mean over few rendered draws has a smaller Monte Carlo error."""

from __future__ import annotations

import torch

from galae.sampling import _draw


def _q(b: int = 3, d: int = 5, r: int = 2) -> torch.distributions.LowRankMultivariateNormal:
    g = torch.Generator().manual_seed(1)
    loc = torch.randn(b, d, generator=g)
    fac = 0.5 * torch.randn(b, d, r, generator=g)
    diag = 0.1 + torch.rand(b, d, generator=g)
    return torch.distributions.LowRankMultivariateNormal(loc, fac, diag)


def test_antithetic_draws_come_in_mirrored_pairs() -> None:
    q = _q()
    u = _draw(q, 7, torch.Generator().manual_seed(0), antithetic=True)
    assert u.shape == (7, 3, 5)
    # pairs (0, 1), (2, 3), (4, 5) mirror about the mean; draw 6 is unpaired
    for i in range(0, 6, 2):
        torch.testing.assert_close(u[i] + u[i + 1], 2 * q.loc, atol=1e-5, rtol=0)
    assert not torch.allclose(u[6], u[0])


def test_antithetic_draws_have_q_moments() -> None:
    # 200,000 draws: the sample mean and covariance match q's to a few standard errors
    q = _q()
    u = _draw(q, 200_000, torch.Generator().manual_seed(0), antithetic=True)
    torch.testing.assert_close(u.mean(0), q.loc, atol=1e-5, rtol=0)  # exact by construction
    c = torch.einsum("kbi,kbj->bij", u - q.loc, u - q.loc) / u.shape[0]
    torch.testing.assert_close(c, q.covariance_matrix, atol=0.02, rtol=0.02)


def test_antithetic_mean_of_a_smooth_function_is_more_precise() -> None:
    # f(u) = sum(u) + 0.1 sum(u^2): the linear part cancels within pairs, so over 50 repeats the
    # spread of an 8-draw mean is several times smaller than with independent draws
    q = _q(b=1)

    def spread(antithetic: bool) -> float:
        est = []
        for s in range(50):
            u = _draw(q, 8, torch.Generator().manual_seed(s), antithetic=antithetic)
            est.append((u.sum(-1) + 0.1 * (u**2).sum(-1)).mean(0))
        return float(torch.stack(est).std())

    assert spread(True) < 0.5 * spread(False)
