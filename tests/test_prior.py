"""Population priors: the broad prior, the flow and the wake-sleep mixture of the two."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from galae.checkpoint import load_checkpoint
from galae.mock import MockConfig, run_mock
from galae.prior import BroadPrior, FlowPrior, MixturePrior, fit_flow_prior
from galae.train import TrainConfig, _refit_due, train

D = 5


def test_broad_prior_is_uniform_over_each_range() -> None:
    # a standard logistic in u is uniform in sigmoid(u): its CDF is the sigmoid itself
    u = BroadPrior(D).sample(20000, generator=torch.Generator().manual_seed(0))
    s = torch.sigmoid(u)
    for q in (0.1, 0.5, 0.9):
        assert float((s < q).double().mean()) == pytest.approx(q, abs=0.01)


def test_mixture_log_prob_is_the_weighted_sum_of_densities() -> None:
    torch.manual_seed(0)
    broad, flow = BroadPrior(D), FlowPrior(D, n_layers=2)
    mix = MixturePrior(broad, flow, 0.3)
    u = torch.randn(64, D) * 2
    expect = torch.log(0.3 * broad.log_prob(u).exp() + 0.7 * flow.log_prob(u).exp())
    torch.testing.assert_close(mix.log_prob(u), expect, rtol=1e-5, atol=1e-5)


def test_mixture_samples_from_both_components_in_proportion() -> None:
    # a learned component far from the broad one: the fraction of draws near it is 1 - f
    class Spike(torch.nn.Module):
        def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
            return torch.full((n, D), 100.0)

    mix = MixturePrior(BroadPrior(D), Spike(), 0.25)
    u = mix.sample(40000, generator=torch.Generator().manual_seed(1))
    frac_broad = float((u[:, 0] < 50).double().mean())
    assert frac_broad == pytest.approx(0.25, abs=0.01)  # binomial sd 0.002


def test_mixture_rejects_a_fraction_outside_0_1() -> None:
    with pytest.raises(ValueError, match="broad_fraction"):
        MixturePrior(BroadPrior(D), FlowPrior(D), 1.5)


def test_flow_fits_a_correlated_gaussian() -> None:
    # maximum likelihood on a correlated Gaussian: the fitted NLL approaches its entropy
    torch.manual_seed(0)  # the flow's initial weights
    g = torch.Generator().manual_seed(2)
    cov = torch.eye(D) + 0.8 * (torch.ones(D, D) - torch.eye(D))
    chol = torch.linalg.cholesky(cov)
    data = (chol @ torch.randn(D, 2048, generator=g)).T
    flow = FlowPrior(D, n_layers=2, hidden=16)
    hist = fit_flow_prior(flow, lambda: data.split(128), epochs=25, lr=1e-2, progress=False)
    entropy = 0.5 * D * (1 + math.log(2 * math.pi)) + 0.5 * torch.logdet(cov).item()  # 4.59
    independent = 0.5 * D * (1 + math.log(2 * math.pi))  # 7.09: a fit that misses correlations
    assert hist[-1] == pytest.approx(entropy, abs=0.3)
    assert hist[-1] < independent - 2.0
    with torch.no_grad():
        s = flow.sample(8000, generator=g)
    # the correlations, and the widths from the quartiles (the variances of 8000 draws ride on
    # the flow's extrapolated tails: over eight initial seeds up to 1.14**2, the correlations
    # within 0.05 and the quartile widths within 0.10 of the truth)
    torch.testing.assert_close(torch.corrcoef(s.T), cov, atol=0.1, rtol=0.0)
    quartiles = torch.quantile(s, torch.tensor([0.25, 0.75]), dim=0)
    widths = (quartiles[1] - quartiles[0]) / 1.349  # 1.349 sigma between a Gaussian's quartiles
    torch.testing.assert_close(widths, torch.ones(D), atol=0.15, rtol=0.0)


def test_refit_schedule() -> None:
    cfg = TrainConfig(sleep_prior_refit_every=10, sleep_prior_start_step=20)
    due = [s for s in range(45) if _refit_due(cfg, s, never_fitted=s < 20)]
    assert due == [20, 30, 40]
    assert _refit_due(cfg, 27, never_fitted=True)  # right after a resume
    assert not _refit_due(TrainConfig(), 1000, never_fitted=True)  # off by default


def test_training_with_the_wake_sleep_prior_update(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "train.h5"
    run_mock(MockConfig(n=16, seed=4, shape=(32, 32), chunk=16, out=str(data)), progress=False)
    cfg = TrainConfig(
        data=str(data),
        widths=(8, 16),
        hidden=32,
        batch_size=8,
        max_steps=3,
        warmup_steps=1,
        wake_weight=0.0,
        sleep_prior_refit_every=1,
        sleep_prior_start_step=1,
        sleep_prior_epochs=1,
        prior_epochs=1,
        val_fraction=0.25,
        out_dir=str(tmp_path / "run"),
        device="cpu",
        tensorboard=False,
        progress=False,
    )
    first = train(cfg)
    state = load_checkpoint(first)
    assert state["prior_kind"] == "flow"
    assert state["config"]["sleep_prior_refit_every"] == 1
    assert all(torch.isfinite(v).all() for v in state["prior_state"].values())

    # a second run starts from the first one's encoder and prior (the ELBO's p(u) is the flow)
    follow = replace(
        cfg,
        init_from=str(first),
        wake_weight=1.0,
        sleep_prior_refit_every=0,
        max_steps=1,
        fit_prior=False,
        out_dir=str(tmp_path / "follow"),
    )
    state2 = load_checkpoint(train(follow))
    assert "is calibrated" not in capsys.readouterr().out
    assert state2["prior_kind"] == "flow"
    for k, v in state["prior_state"].items():
        torch.testing.assert_close(state2["prior_state"][k], v)
    with pytest.raises(ValueError, match="another encoder architecture"):
        train(replace(follow, widths=(8, 8), out_dir=str(tmp_path / "other")))

    # max_steps=0: no step, only the learned prior fitted again on init_from's encoder (how a
    # GPU-trained encoder gets its prior on the CPU); the encoder and its step count are kept
    refit = replace(
        follow, max_steps=0, fit_prior=True, prior_epochs=1, out_dir=str(tmp_path / "refit")
    )
    state3 = load_checkpoint(train(refit))
    assert state3["step"] == state["step"] and state3["prior_kind"] == "flow"
    # trained by its init's terms (simulation only), not this run's (which name the ELBO)
    assert state3["loss_terms"] == state["loss_terms"] != refit.loss_terms
    for k, v in state["encoder_state"].items():
        torch.testing.assert_close(state3["encoder_state"][k], v)
    assert any(
        not torch.equal(state3["prior_state"][k], v) for k, v in state["prior_state"].items()
    )

    # a calibrated init: its width scales are buffers the run carries, which it says
    calibrated = dict(state, encoder_state=dict(state["encoder_state"]))
    calibrated["encoder_state"]["posterior_scale"] = 0.5 * state["encoder_state"]["posterior_scale"]
    torch.save(calibrated, tmp_path / "calibrated.pt")
    capsys.readouterr()
    state4 = load_checkpoint(
        train(
            replace(refit, init_from=str(tmp_path / "calibrated.pt"), out_dir=str(tmp_path / "c"))
        )
    )
    assert "is calibrated: its width scales stay applied" in capsys.readouterr().out
    torch.testing.assert_close(
        state4["encoder_state"]["posterior_scale"], calibrated["encoder_state"]["posterior_scale"]
    )


def test_population_prior_draws_physical_galaxies() -> None:
    from galae.latent import REGISTRY
    from galae.prior import PopulationPrior

    prior = PopulationPrior(REGISTRY.dim)
    u = prior.sample(256, generator=torch.Generator().manual_seed(0))
    assert u.shape == (256, REGISTRY.dim) and bool(torch.isfinite(u).all())
    params = REGISTRY.from_unconstrained(u)
    REGISTRY.check(params)  # inside every range
    again = PopulationPrior(REGISTRY.dim).sample(256, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(u, again)  # deterministic per generator
    with pytest.raises(NotImplementedError, match="density"):
        prior.log_prob(u)
    # the dust law: the same galaxies, dustier from their gas; an unknown law is named
    gas = PopulationPrior(REGISTRY.dim, "gas").sample(
        256, generator=torch.Generator().manual_seed(0)
    )
    i = REGISTRY.index("av_face_on_mag")
    keep = [j for j in range(REGISTRY.dim) if j != i]
    torch.testing.assert_close(gas[:, keep], u[:, keep])
    assert float(gas[:, i].median()) > float(u[:, i].median())
    with pytest.raises(ValueError, match="unknown population_dust"):
        PopulationPrior(REGISTRY.dim, "smooth")
    # two laws joined by "+": each galaxy is one of the two populations' galaxies, with even odds
    both = PopulationPrior(REGISTRY.dim, "empirical+gas")
    mixed = both.sample(512, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    first = PopulationPrior(REGISTRY.dim).sample(512, generator=g)
    second = PopulationPrior(REGISTRY.dim, "gas").sample(512, generator=g)
    is_first = (mixed == first).all(-1)
    assert bool((is_first | (mixed == second).all(-1)).all())
    assert 0.4 < float(is_first.double().mean()) < 0.6
    with pytest.raises(ValueError, match="unknown population_dust 'dusty'"):
        PopulationPrior(REGISTRY.dim, "gas+dusty")


def test_sleep_prior_choices() -> None:
    from galae.prior import MixturePrior, PopulationPrior
    from galae.train import _initial_sleep_prior

    assert _initial_sleep_prior(TrainConfig(), torch.device("cpu")) is None
    mix = _initial_sleep_prior(TrainConfig(sleep_prior="population"), torch.device("cpu"))
    assert isinstance(mix, MixturePrior) and isinstance(mix.learned, PopulationPrior)
    with pytest.raises(ValueError, match="sleep_prior"):
        TrainConfig(sleep_prior="flat")
