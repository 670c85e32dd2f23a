"""The refined posterior with the population prior p(u) in place of the amortized q(u | x).

``galae.refine`` moves each galaxy's latent towards the mode of -log p(x | u) - log q(u | x)
and takes the Laplace widths there: q already holds the image's information, so the image
counts twice (the seventeenth submission's statistics review).  This benchmark measures the
textbook alternative, -log p(x | u) - log p(u) with the model's learned population prior (the
packaged flow), its Laplace precision J^T W J + H_prior with H_prior = -Hessian of log p(u)
(automatic differentiation, eigenvalues floored at 0.01), each variant calibrated by simulation
the same way (``galae.calibrate --refine-steps 60`` on 1024 simulated galaxies), on the 400
analytic test mocks.  Scored: the issue-4 figures, the coverage of every latent and of three
combinations of latents (``metrics["coverage_combinations"]``: total stellar mass, specific
SFR, bulge-to-total), and a paired bootstrap of the r_half error and the log M* scatter.

    python benchmarks/refine_prior.py [--checkpoint runs/pa_cal/model_refcal.pt]

Needs ``runs/pa_cal/model_refcal.pt`` (the packaged model, made as
``src/galae/default_model/README.md`` says) and the analytic mocks of
``benchmarks/deep_data.sh``.

About 15 minutes on 2 CPU cores (reports already in ``--runs`` are reused).  Results:
``results/refine_prior.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from _common import (
    calibration_parser,
    evaluate_summary,
    mad,
    per_galaxy,
    use_width_floor,
    write_result,
)
from torch import Tensor

import galae.refine
from galae.calibrate import calibrate_checkpoint
from galae.evaluate import evaluate

#: galae's own, before :func:`_use_population_prior` patches the module.
_REFINE_MEAN, _LAPLACE = galae.refine.refine_mean, galae.refine.laplace_covariance

#: Smallest eigenvalue of the population prior's curvature in the Laplace precision.
PRIOR_CURVATURE_FLOOR = 1e-2


def refine_mean_population(
    model: Any, guide: Any, out: Any, batch: Any, steps: int, lr: float, redshift: Tensor
) -> Tensor:
    """(B, D): Adam steps from q's mean down -log p(x | u) - log p(u) (q only starts it)."""
    return _REFINE_MEAN(model, guide, out, batch, steps, lr, redshift, model.prior.log_prob)


def prior_precision(prior: Any, u: Tensor, floor: float = PRIOR_CURVATURE_FLOOR) -> Tensor:
    """(B, D, D) float64: -d2 log p(u) / du2 at u (one backward pass per latent, the galaxies
    being independent), its eigenvalues floored at ``floor``."""
    d = u.shape[-1]
    with torch.enable_grad():
        x = u.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(prior.log_prob(x).sum(), x, create_graph=True)
        rows = [
            torch.autograd.grad(grad[:, i].sum(), x, retain_graph=i < d - 1)[0] for i in range(d)
        ]
    h = -torch.stack(rows, -2).detach().double()
    ev, vec = torch.linalg.eigh(0.5 * (h + h.transpose(-1, -2)))
    return (vec * ev.clamp_min(floor).unsqueeze(-2)) @ vec.transpose(-1, -2)


def laplace_covariance_population(
    model: Any, out: Any, u: Tensor, batch: Any, redshift: Tensor
) -> Tensor:
    """(B, D, D) float64: (J^T W J + H_prior)^-1 at u (galae.refine's, whose prior term is q's
    precision instead)."""
    return _LAPLACE(model, out, u, batch, redshift, prior_precision=prior_precision(model.prior, u))


def _use_population_prior() -> None:
    galae.refine.refine_mean = refine_mean_population
    galae.refine.laplace_covariance = laplace_covariance_population


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = calibration_parser(__doc__)
    ap.add_argument("--n-calibrate", type=int, default=1024, help="simulated galaxies")
    ap.add_argument("--runs", default="runs/popref")
    ap.add_argument("--name", default="refine_prior", help="results/<name>.json")
    a = ap.parse_args(argv)
    use_width_floor(0.0)  # measured before the width floor (galae.refine.floor_widths)
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    ckpt = Path(a.checkpoint)
    kw = {"data": a.test, "n": a.n, "figures": False}
    amortized, q_refined = runs / "amortized_400", runs / "refined_q_400"
    pop_ckpt, pop_refined = runs / "model_population_refcal.pt", runs / "refined_population_400"
    # the shipped refinement first (before the module is patched), then the population prior
    if not (amortized / "metrics.json").exists():
        evaluate(ckpt, out=amortized, **kw)
    if not (q_refined / "metrics.json").exists():
        evaluate(ckpt, out=q_refined, refine_steps=a.steps, **kw)
    _use_population_prior()
    if not pop_ckpt.exists():
        calibrate_checkpoint(ckpt, a.train, out=pop_ckpt, n=a.n_calibrate, refine_steps=a.steps)
    if not (pop_refined / "metrics.json").exists():
        evaluate(pop_ckpt, out=pop_refined, refine_steps=a.steps, **kw)

    stats = {k: per_galaxy(v) for k, v in (("q", q_refined), ("population", pop_refined))}
    with h5py.File(a.test, "r") as f:
        true_r = np.asarray(f["truth/params/r_half_arcsec_r"][: a.n], np.float64)
    frac = {
        k: np.abs(v["params/r_half_arcsec_r/pred_minus_true"] / true_r) for k, v in stats.items()
    }
    mstar = {k: v["params/log10_mstar_msun/pred_minus_true"] for k, v in stats.items()}
    idx = np.random.default_rng(0).integers(0, a.n, (2000, a.n))
    d_rhalf = np.median(frac["population"][idx], 1) - np.median(frac["q"][idx], 1)
    d_mstar = [mad(mstar["population"][i]) - mad(mstar["q"][i]) for i in idx[:500]]

    def ci(x: Any) -> list[float]:
        return [float(v) for v in np.percentile(x, [2.5, 97.5])]

    payload = {
        "checkpoint": str(ckpt),
        "data": a.test,
        "n_galaxies": a.n,
        "refine_steps": a.steps,
        "prior_curvature_floor": PRIOR_CURVATURE_FLOOR,
        "amortized": evaluate_summary(amortized, ckpt),
        "refined_q_as_prior": evaluate_summary(q_refined, ckpt),
        "refined_population_prior": evaluate_summary(pop_refined, pop_ckpt),
        "population_minus_q_ci95": {
            "r_half_r_median_abs_frac_error": ci(d_rhalf),
            "log10_mstar_scatter_mad_dex": ci(d_mstar),
        },
    }
    write_result(a.name, payload)
    return payload


if __name__ == "__main__":
    main()
