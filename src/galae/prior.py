"""Population priors over the unconstrained latent u (event shape (D,)).

* :class:`BroadPrior` - the registry's broad prior: each coordinate standard logistic, which is
  the uniform distribution over each parameter's range in its (linear or log) scale.
* :class:`FlowPrior` - a learned population prior: a normalizing flow (rational-quadratic spline
  couplings, Durkan et al. 2019, with fixed permutations) over u, fitted to the aggregate
  posterior of a training set (:func:`fit_flow_prior`).  Saved with the model.

Both expose ``dist(n) -> Distribution`` with batch shape (n,) and event shape (D,).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pyro.distributions as dist
import pyro.distributions.transforms as T
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = [
    "BroadPrior",
    "FlowPrior",
    "MixturePrior",
    "PopulationPrior",
    "fit_flow_prior",
    "PRIORS",
]


class BroadPrior(nn.Module):
    """Independent standard logistic in every unconstrained coordinate."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("_zero", torch.zeros(()))

    def dist(self, n: int) -> dist.Distribution:
        z = self._zero.expand(n, self.dim)
        return dist.Logistic(z, torch.ones_like(z)).to_event(1)

    def log_prob(self, u: Tensor) -> Tensor:
        return self.dist(u.shape[0]).log_prob(u)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        s = torch.rand(n, self.dim, generator=generator, device=self._zero.device)
        s = s.to(self._zero.dtype).clamp(1e-6, 1 - 1e-6)
        return torch.logit(s)


class FlowPrior(nn.Module):
    """Spline-coupling normalizing flow over the unconstrained latent.

    u = A(f_K o ... o f_1(eps)),  eps ~ N(0, I_D),  A an affine standardisation fixed at fit time.

    Args:
        dim: D.
        n_layers: number of coupling layers (a permutation follows each).
        count_bins: spline bins per coordinate.
        hidden: hidden width of each conditioner.
        seed: seed of the fixed permutations (part of the architecture, saved in state).
    """

    def __init__(
        self, dim: int, n_layers: int = 4, count_bins: int = 8, hidden: int = 64, seed: int = 0
    ) -> None:
        super().__init__()
        self.dim = dim
        self.hparams = {
            "n_layers": n_layers,
            "count_bins": count_bins,
            "hidden": hidden,
            "seed": seed,
        }
        g = torch.Generator().manual_seed(seed)
        self.couplings = nn.ModuleList(
            [
                T.spline_coupling(
                    dim, hidden_dims=[hidden, hidden], count_bins=count_bins, bound=5.0
                )
                for _ in range(n_layers)
            ]
        )
        for i in range(n_layers):
            self.register_buffer(f"perm_{i}", torch.randperm(dim, generator=g))
        self.register_buffer("shift", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(dim))
        self.register_buffer("_zero", torch.zeros(()))

    def _transforms(self) -> list:
        ts: list = []
        for i, c in enumerate(self.couplings):
            ts.append(c)
            ts.append(T.Permute(getattr(self, f"perm_{i}")))
        ts.append(T.AffineTransform(self.shift, self.scale))
        return ts

    def dist(self, n: int) -> dist.Distribution:
        z = self._zero.expand(n, self.dim)
        base = dist.Normal(z, torch.ones_like(z)).to_event(1)
        return dist.TransformedDistribution(base, self._transforms())

    def log_prob(self, u: Tensor) -> Tensor:
        return self.dist(u.shape[0]).log_prob(u)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        eps = torch.randn(n, self.dim, generator=generator, device=self._zero.device)
        x = eps.to(self._zero.dtype)
        for t in self._transforms():
            x = t(x)
        return x


class PopulationPrior(nn.Module):
    """Galaxies from published scaling relations in unconstrained coordinates.

    :func:`galae.physics.population.sample_population`: mass function, star-forming main
    sequence, quenched fraction, mass-size and mass-metallicity relations.  A simulator only:
    it has no density, so it can drive the simulation ("sleep") term but not be the model's
    prior in an ELBO.
    """

    def __init__(self, dim: int, population_dust: str = "empirical") -> None:
        super().__init__()
        from galae.physics.population import population_dust_laws

        self.dim = dim
        #: the population's dust law (:data:`galae.physics.population.POPULATION_DUST`), or
        #: several joined by "+": each galaxy then takes one of them, with equal odds
        self.population_dust = population_dust
        self._dust_laws = population_dust_laws(population_dust)
        self.register_buffer("_zero", torch.zeros(()))

    def log_prob(self, u: Tensor) -> Tensor:
        raise NotImplementedError("the population prior is a simulator without a density")

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        from galae.latent import REGISTRY
        from galae.physics.population import sample_population

        g = None if generator is None else _cpu_generator(generator)
        draws = [sample_population(n, g, population_dust=law) for law in self._dust_laws]
        params = draws[0]
        if len(draws) > 1:  # one law per galaxy, each an independent population draw
            pick = torch.randint(len(draws), (n,), generator=g)
            params = {k: torch.stack([d[k] for d in draws])[pick, torch.arange(n)] for k in params}
        u = REGISTRY.to_unconstrained(params)
        if u.shape[-1] != self.dim:
            raise ValueError(f"population prior has {u.shape[-1]} latents, expected {self.dim}")
        return u.to(device=self._zero.device, dtype=self._zero.dtype)


def _cpu_generator(generator: torch.Generator) -> torch.Generator:
    """A CPU generator seeded from ``generator`` (the population sampler draws on the CPU)."""
    if generator.device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


class MixturePrior(nn.Module):
    """p(u) = f p_broad(u) + (1 - f) p_learned(u): the simulation prior of wake-sleep training.

    The learned component puts the simulations where the data are; the broad component keeps
    the encoder valid everywhere in the registry's ranges (so it never meets an image it was
    not trained to invert).

    Args:
        broad: the registry's broad prior.
        learned: a fitted population prior (a :class:`FlowPrior`).
        broad_fraction: f, in [0, 1].
    """

    def __init__(self, broad: nn.Module, learned: nn.Module, broad_fraction: float) -> None:
        super().__init__()
        if not 0.0 <= broad_fraction <= 1.0:
            raise ValueError(f"broad_fraction must be in [0, 1], got {broad_fraction}")
        self.broad = broad
        self.learned = learned
        self.broad_fraction = float(broad_fraction)

    def log_prob(self, u: Tensor) -> Tensor:
        f = torch.tensor(self.broad_fraction, dtype=u.dtype, device=u.device)
        return torch.logaddexp(
            torch.log(f) + self.broad.log_prob(u), torch.log1p(-f) + self.learned.log_prob(u)
        )

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        ub = self.broad.sample(n, generator=generator)
        ul = self.learned.sample(n, generator=generator).to(ub)
        pick = torch.rand(n, generator=generator, device=ub.device) < self.broad_fraction
        return torch.where(pick[:, None], ub, ul)


def with_broad(component: nn.Module, broad_fraction: float, dim: int) -> MixturePrior:
    """``broad_fraction`` x the broad prior over ``dim`` latents + the rest x ``component``
    (on the CPU: move the result with ``.to``)."""
    return MixturePrior(BroadPrior(dim), component, broad_fraction)


PRIORS: dict[str, Callable[..., nn.Module]] = {"broad": BroadPrior, "flow": FlowPrior}


def fit_flow_prior(
    flow: FlowPrior,
    draws: Callable[[], Iterable[Tensor]],
    epochs: int = 20,
    lr: float = 3e-3,
    progress: bool = True,
    standardise: bool = True,
) -> list[float]:
    """Fit ``flow`` by maximum likelihood to draws from the aggregate posterior.

    Args:
        flow: the flow to fit (its standardisation is set from the first pass of draws).
        draws: a callable returning an iterable of (n, D) batches of unconstrained posterior
            samples (called once per epoch, so it may draw fresh samples each time).
        epochs: passes over ``draws()``.
        standardise: set the flow's affine standardisation from the draws (False keeps the
            current one, to warm-start a refit of an already fitted flow).
    Returns:
        mean negative log-likelihood per epoch.
    """
    if standardise:
        with torch.no_grad():
            first = torch.cat(list(draws()))
            flow.shift.copy_(first.mean(0))
            flow.scale.copy_(first.std(0).clamp_min(1e-3))
    opt = torch.optim.Adam(flow.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    history: list[float] = []
    for _ in tqdm(range(epochs), desc="fit prior", disable=not progress):
        total, count = 0.0, 0
        for u in draws():
            loss = -flow.log_prob(u).mean()
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
            opt.step()
            total += loss.item() * u.shape[0]
            count += u.shape[0]
        sched.step()
        history.append(total / max(count, 1))
    return history
