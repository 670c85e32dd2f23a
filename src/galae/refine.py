"""Semi-amortized inference: refine the encoder's posterior of each galaxy on its own image.

The amortized posterior q(u | x) of the encoder is the starting point.  For each galaxy,

1. **mean**: ``steps`` Adam steps move u from q's mean to the mode of

       L(u) = -log p(x | u) - log q(u | x),

   the likelihood through the renderer with the amortized posterior as the prior (it keeps the
   optimisation in the region the encoder trusts and breaks the degeneracies the image alone
   leaves open).  Since q(u | x) already holds the image, the image counts twice; the
   textbook objective -log p(x | u) - log p(u), with the model's population prior, was
   measured against it on 400 analytic mocks, both calibrated the same way
   (``benchmarks/refine_prior.py``): its r-band r_half error grew from 3.9% to 4.6% (paired
   95% interval of the difference +0.1 to +1.5 points), its log M* scatter from 0.092 to 0.099
   dex, and neither its per-latent coverage (0.66-0.78 at 68%) nor that of the latent
   combinations (total mass, sSFR, B/T) came closer to nominal.  The widths' remaining
   miscalibration is carried by step 3;
2. **covariance**: the Laplace approximation of L at that point, with the likelihood's Hessian
   in the Gauss-Newton form (the Fisher information of the pixels)

       Sigma^-1 = J^T W J + Sigma_q^-1,   J = d(model image) / du,

   W = 1/sigma^2 on unmasked pixels for the Gaussian likelihood, (nu + 1) / ((nu + 3) sigma^2)
   for the Student-t (its Fisher information).  J is taken by central differences of the
   renderer (2 D forward renders per galaxy, no second derivatives), and Sigma is inverted in
   float64.
3. **width floor**: no latent's Laplace width may fall below ``width_floor`` times its
   amortized width (:data:`REFINED_WIDTH_FLOOR`): the rows and columns of Sigma of the
   latents under it are scaled up, which keeps its correlations.  Where the Laplace width came
   out under 0.3 of the amortized one (10% of the galaxy-latent pairs of the analytic mocks),
   56% of the truths lay beyond 1.96 sigma, against 6.4% elsewhere: the local curvature is
   overconfident there (``benchmarks/refined_tails.py``, ``docs/results.md``).  The floor, 0.5,
   was chosen among 0, 0.3, 0.5 and 0.8 on validation mocks (``benchmarks/width_floor.py``): on
   the analytic test mocks it brings the 95% coverage per latent from 0.82-0.99 to 0.85-0.99
   (mean distance from 0.95: 0.069 to 0.039) and keeps the 68% coverage at 0.62-0.73;
4. **calibration**: the Laplace widths are scaled per latent by the encoder's
   ``refined_posterior_scale`` S = diag(s), S Sigma S, fitted by simulation with the same
   refinement (``python -m galae.calibrate --refine-steps N``), since a finite number of steps
   does not reach the mode exactly and the posterior is not exactly Gaussian (``scale_form``
   "covariance", :data:`REFINED_SCALE_FORM`).  This widens the latents the image leaves to q as
   well: for the nineteenth release's encoder a bulge mass the image leaves open gets about
   1.9 times q's width, and for 10% of the analytic test mocks the posterior mean of the total
   stellar mass over such draws lies 0.46 dex above the truth (the mode: 0.03 dex).  The
   alternative, ``scale_form`` "likelihood", tempers the pixels' information per latent
   instead, Sigma^-1 = S^-1 J^T W J S^-1 + Sigma_q^-1, which keeps q's width where the image
   says nothing; measured, it cannot be calibrated: with the pixels' information divided by
   400 (s at its bound, 20) most latents still cover only 0.57-0.68 of the simulated truths,
   since the refined mode moves away from q's mean by more than q's width allows
   (``python -m galae.calibrate --scale-form likelihood``; ``docs/results.md``, "Nineteenth
   submission").  So "covariance" stays.  The floor of step 3 is applied before the scaling
   ("covariance") or after the tempering ("likelihood").
5. **width ceiling**: no latent's calibrated width may exceed ``width_ceiling`` times its
   amortized width (:data:`REFINED_WIDTH_CEILING`): refining on the image adds information to
   q, so a refined width above q's is the single scale of step 4 widening a latent the image
   leaves to q.  The rows and columns of the latents over it are scaled down, keeping the
   correlations, after the scaling; the calibration counts a simulated truth beyond the
   ceiling as uncovered at any scale (:func:`galae.calibrate.posterior_scales`), so that the
   scales are fitted with the ceiling in place; a latent for which the ceiling cannot be
   calibrated gets the higher :data:`REFINED_WIDTH_CEILING_FALLBACK` if it can be calibrated
   under that, and none otherwise (a warning names it).  Measured on the twentieth release's
   encoder (``benchmarks/refined_ceiling.py``): 1 cannot be calibrated (within q's width of
   the refined mode lie only 56-64% of the simulated truths of the metallicity and gas
   gradients, r_sfr and the bulge mass), 2 never binds (no width exceeds 1.76 q's); on 400
   validation mocks 1.5 brings the refined log M* standard deviation from 0.096 to 0.086 dex
   and the total masses beyond 0.3 dex from 4% to 2% at unchanged per-latent coverage; 1.25
   goes further (0.078 dex, 1%) but leaves the stellar-metallicity gradient without a ceiling
   (``docs/results.md``, "Twenty-first submission").  On the twenty-second release's encoder
   the same choice gave 1.5 again, with 4.75% of the validation masses beyond 0.3 dex against
   2.0% under 1.25, which again left the stellar-metallicity gradient without a ceiling (66.7%
   of its truths within 1.25 q's widths).  The fallback resolves that: 1.25, with 1.5 for the
   latents that cannot be calibrated under it, gives 1.25's figures (validation log M* standard
   deviation 0.091 dex, 2.0% beyond 0.3 dex; test 0.097 and 3.0%, against 0.113 and 4.75%
   under 1.5) and leaves no latent without a ceiling, so the unchanged rule chose it
   (``benchmarks/refined_ceiling.py --fallback 1.5``; ``docs/results.md``, "Twenty-third
   submission").

The result is returned as an :class:`~galae.encoder.EncoderOutput` of full rank D: a factor
W = V (Lambda - m)^(1/2) and diagonal m = min(Lambda) / 2 from Sigma's eigen-decomposition
V Lambda V^T.  Draws use it directly (:func:`galae.sampling._draw`); for float32 log densities
of strongly degenerate galaxies build the distribution in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from galae.encoder import EncoderOutput
from galae.likelihood import log_likelihood

__all__ = [
    "refine_mean",
    "laplace_covariance",
    "floor_widths",
    "floor_widths_sd",
    "checked_scale_form",
    "laplace_terms",
    "tempered_covariance",
    "refine_posterior",
    "SCALE_FORMS",
    "REFINED_SCALE_FORM",
    "FD_STEP",
    "REFINE_LR",
    "REFINED_WIDTH_FLOOR",
    "REFINED_WIDTH_CEILING",
    "REFINED_WIDTH_CEILING_FALLBACK",
    "ceil_widths_sd",
    "checked_width_ceiling",
    "checked_width_ceiling_fallback",
]

#: Default of :func:`refine_posterior`'s ``width_floor``: the smallest refined width, as a
#: fraction of the amortized width of the same latent (``benchmarks/width_floor.py``).
REFINED_WIDTH_FLOOR: float = 0.5

#: Default of :func:`refine_posterior`'s ``width_ceiling``: the largest calibrated refined width,
#: as a multiple of the amortized width of the same latent (``benchmarks/refined_ceiling.py``).
REFINED_WIDTH_CEILING: float = 1.25

#: The ceiling of the latents that cannot be calibrated under :data:`REFINED_WIDTH_CEILING`
#: (fewer than 68% of the simulated truths within it of the refined mode); None: those get
#: none (:func:`galae.calibrate.posterior_scales`, ``benchmarks/refined_ceiling.py``).
REFINED_WIDTH_CEILING_FALLBACK: float | None = 1.5

#: How ``refined_posterior_scale`` enters the refined covariance (module docstring, step 4):
#: "covariance" scales the whole covariance; "likelihood" tempers the pixels' information per
#: latent (measured, not kept).
SCALE_FORMS: tuple[str, ...] = ("covariance", "likelihood")

#: The form new calibrations use; a checkpoint's calibration records its own (those made
#: before the form was recorded: "covariance").
REFINED_SCALE_FORM: str = "covariance"

#: Learning rate of the refinement's Adam steps (:func:`refine_posterior`, ``encode``'s
#: ``refine_lr``, and the calibration, which must refine as ``encode`` does).
REFINE_LR: float = 0.05

#: Central-difference step in the unconstrained latent (whose posterior widths are ~0.01-1).
FD_STEP: float = 1e-2


def refine_mean(
    model: Any,
    guide: Any,
    out: EncoderOutput,
    batch: Any,
    steps: int,
    lr: float,
    redshift: Tensor,
    log_prior: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """(B, D): the mode of -log p(x | u) - log q(u | x) after ``steps`` Adam steps from q's mean.

    ``log_prior`` (u (B, D) -> (B,)) replaces log q(u | x) as the second term (for experiments
    such as ``benchmarks/refine_prior.py``).
    """
    if log_prior is None:
        log_prior = guide.posterior_dist(out).log_prob
    u = out.loc.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            img = model.render_images(u, batch, redshift)
            lik = log_likelihood(
                img, batch.images, batch.sigma, batch.mask, model.likelihood, model.df
            )
            nll = -lik.sum() - log_prior(u).sum()
            opt.zero_grad()
            nll.backward()
            opt.step()
    return u.detach()


@torch.no_grad()
def laplace_terms(
    model: Any,
    out: EncoderOutput,
    u: Tensor,
    batch: Any,
    redshift: Tensor,
    step: float = FD_STEP,
    prior_precision: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The two terms of the Laplace precision at u, each (B, D, D) float64: the pixels' Fisher
    information J^T W J and the prior's precision Sigma_q^-1 (see the module docstring).

    Args:
        model: :class:`galae.model.GalaxyModel` (renderer, likelihood and its df).
        out: the amortized posterior (its covariance is the prior term).
        u: (B, D) the refined latent; batch: the images' :class:`galae.model.Batch`.
        redshift: (B,) the redshift the images are rendered at.
        prior_precision: (B, D, D) a prior term to use in place of Sigma_q^-1 (the partner of
            :func:`refine_mean`'s ``log_prior``).
    """
    d = u.shape[-1]
    fisher = 1.0
    if model.likelihood == "student_t":
        fisher = (model.df + 1.0) / (model.df + 3.0)
    w = torch.where(batch.mask, 0.0, fisher / batch.sigma**2).flatten(1).double()  # (B, P)
    eye = torch.eye(d, dtype=u.dtype, device=u.device)
    cols = []
    for i in range(d):
        up = model.render_images(u + step * eye[i], batch, redshift)
        dn = model.render_images(u - step * eye[i], batch, redshift)
        cols.append(((up - dn) / (2.0 * step)).flatten(1).double())
    jac = torch.stack(cols, -1)  # (B, P, D)
    fisher_info = torch.einsum("bpi,bp,bpj->bij", jac, w, jac)
    if prior_precision is None:
        prior_cov = out.cov_factor.double() @ out.cov_factor.double().transpose(-1, -2)
        prior_cov = prior_cov + torch.diag_embed(out.cov_diag.double())
        prior_precision = torch.linalg.inv(prior_cov)
    return fisher_info, prior_precision.double()


def tempered_covariance(
    fisher_info: Tensor, prior_precision: Tensor, likelihood_scale: Tensor | None = None
) -> Tensor:
    """(B, D, D) float64: (S^-1 F S^-1 + P)^-1 with S = diag(``likelihood_scale``) ((D,) or
    (B, D); None: S = 1), F the pixels' Fisher information and P the prior's precision.

    Where F dominates a latent its width is s times the untempered one; where P does, it stays
    P's: for s >= 1 every width lies between the untempered one and s_max times it.
    """
    if likelihood_scale is not None:
        inv = 1.0 / likelihood_scale.double()
        fisher_info = fisher_info * inv[..., :, None] * inv[..., None, :]
    precision = fisher_info + prior_precision
    cov = torch.linalg.inv(0.5 * (precision + precision.transpose(-1, -2)))
    return 0.5 * (cov + cov.transpose(-1, -2))


def laplace_covariance(
    model: Any,
    out: EncoderOutput,
    u: Tensor,
    batch: Any,
    redshift: Tensor,
    step: float = FD_STEP,
    prior_precision: Tensor | None = None,
) -> Tensor:
    """(B, D, D) float64: (J^T W J + Sigma_q^-1)^-1 at u (see the module docstring); the
    arguments as in :func:`laplace_terms`."""
    return tempered_covariance(
        *laplace_terms(model, out, u, batch, redshift, step, prior_precision)
    )


def checked_scale_form(scale_form: str | None) -> str:
    """``scale_form`` (None: :data:`REFINED_SCALE_FORM`), or a ValueError unless it is one of
    :data:`SCALE_FORMS`."""
    form = REFINED_SCALE_FORM if scale_form is None else scale_form
    if form not in SCALE_FORMS:
        raise ValueError(f"scale_form must be one of {SCALE_FORMS}, got {form!r}")
    return form


def floor_widths(cov: Tensor, out: EncoderOutput, width_floor: float) -> Tensor:
    """(B, D, D) float64: ``cov`` with every latent's width raised to at least ``width_floor``
    times its amortized width in ``out``.

    The latents i under the floor get d_i = width_floor sigma_q,i / sigma_i (else d_i = 1), and
    Sigma_ij becomes d_i d_j Sigma_ij, so that the correlations are kept.
    """
    return floor_widths_sd(cov, out.marginal_variance(torch.float64).sqrt(), width_floor)


def floor_widths_sd(cov: Tensor, amortized: Tensor, width_floor: float) -> Tensor:
    """:func:`floor_widths` with the amortized widths given, (B, D) float64."""
    if width_floor <= 0:
        return cov
    refined = cov.diagonal(0, -2, -1).sqrt()
    d = torch.clamp(width_floor * amortized / refined, min=1.0)
    return cov * d.unsqueeze(-1) * d.unsqueeze(-2)


def checked_width_ceiling(width_ceiling: Any) -> float | Tensor | None:
    """``width_ceiling`` checked: None (no ceiling), a finite number >= 1 (a refined width may
    always reach the amortized one), or one value per latent ((D,) sequence or tensor, each >= 1;
    inf: no ceiling for that latent), returned as float64; a ValueError otherwise."""
    if width_ceiling is None:
        return None
    if isinstance(width_ceiling, bool):
        raise ValueError(f"width_ceiling must be a number >= 1 or None, got {width_ceiling!r}")
    if isinstance(width_ceiling, (int, float)):
        if not (math.isfinite(width_ceiling) and width_ceiling >= 1.0):
            raise ValueError(
                f"width_ceiling must be a finite number >= 1 or None, got {width_ceiling}"
            )
        return float(width_ceiling)
    try:
        c = torch.as_tensor(width_ceiling, dtype=torch.float64, device="cpu")
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"width_ceiling must be a number >= 1, one per latent, or None: {err}"
        ) from None
    if c.dim() != 1 or bool(torch.isnan(c).any()) or bool((c < 1.0).any()):
        raise ValueError(
            "width_ceiling per latent must be a 1-d sequence of numbers >= 1 (inf: none), "
            f"got {width_ceiling!r}"
        )
    return c


def checked_width_ceiling_fallback(fallback: Any, ceiling: float | Tensor | None) -> float | None:
    """``fallback`` checked against the checked ``ceiling``: None, or a finite number above
    every finite ceiling (a latent moves up to it); a ValueError otherwise.  Without a ceiling
    there is nothing to fall back from: None (after the type check)."""
    if fallback is None:
        return None
    if isinstance(fallback, bool) or not isinstance(fallback, (int, float)):
        raise ValueError(f"width_ceiling_fallback must be a number or None, got {fallback!r}")
    if ceiling is None:
        return None
    c = torch.as_tensor(ceiling, dtype=torch.float64)
    top = float(c[torch.isfinite(c)].max()) if bool(torch.isfinite(c).any()) else 1.0
    if not (math.isfinite(fallback) and fallback > top):
        raise ValueError(
            f"width_ceiling_fallback must be a finite number above the ceiling ({top:g}), "
            f"got {fallback}"
        )
    return float(fallback)


def ceil_widths_sd(cov: Tensor, amortized: Tensor, width_ceiling: float | Tensor | None) -> Tensor:
    """(B, D, D) float64: ``cov`` with every latent's width lowered to at most ``width_ceiling``
    (a number, or (D,) one per latent, inf for none) times its amortized width ``amortized``
    (B, D) (None: ``cov`` unchanged).

    The latents i over the ceiling get d_i = c_i sigma_q,i / sigma_i (else d_i = 1), and
    Sigma_ij becomes d_i d_j Sigma_ij, so that the correlations are kept.
    """
    if width_ceiling is None:
        return cov
    if isinstance(width_ceiling, Tensor):
        width_ceiling = width_ceiling.to(cov)
    refined = cov.diagonal(0, -2, -1).sqrt()
    d = torch.clamp(width_ceiling * amortized.to(cov.dtype) / refined, max=1.0)
    return cov * d.unsqueeze(-1) * d.unsqueeze(-2)


def _low_rank_form(cov: Tensor, scale: Tensor) -> tuple[Tensor, Tensor]:
    """S cov S (S = diag(scale)) as (factor (B, D, D), diagonal (B, D)) in float32."""
    s = scale.double()
    cov = cov * s[:, None] * s[None, :]
    ev, vec = torch.linalg.eigh(cov)
    ev = ev.clamp_min(1e-12)
    m = 0.5 * ev[:, :1]
    factor = vec * (ev - m).sqrt().unsqueeze(-2)
    return factor.float(), m.expand_as(ev).float().contiguous()


def refine_posterior(
    model: Any,
    guide: Any,
    out: EncoderOutput,
    batch: Any,
    steps: int,
    lr: float = REFINE_LR,
    redshift: Tensor | None = None,
    calibrated: bool = True,
    width_floor: float = REFINED_WIDTH_FLOOR,
    scale_form: str = REFINED_SCALE_FORM,
    width_ceiling: float | Tensor | None = REFINED_WIDTH_CEILING,
) -> EncoderOutput:
    """The refined posterior: mode by :func:`refine_mean`, widths by :func:`laplace_covariance`
    floored by :func:`floor_widths`, scaled, and capped by :func:`ceil_widths_sd`.

    Args:
        steps: Adam steps (> 0); lr: their learning rate.
        redshift: (B,) render redshift (default the batch's; give the photo-z for unknown ones).
        calibrated: scale the widths by the encoder's ``refined_posterior_scale`` (False for
            the calibration itself, which measures them unscaled).
        width_floor: the smallest width as a fraction of the amortized one (0: none); the
            calibration must have used the same.
        scale_form: how ``refined_posterior_scale`` enters (:data:`SCALE_FORMS`): the form
            the checkpoint's calibration was made with.
        width_ceiling: the largest calibrated width as a multiple of the amortized one (a
            number, or (D,) one per latent with inf for none; None: none), applied after the
            scaling and only when ``calibrated`` (the calibration takes it into account
            through the errors it counts); the calibration must have used the same.
    Returns:
        an :class:`EncoderOutput` with the refined ``loc`` and full-rank covariance; the
        redshift posterior is the encoder's.
    """
    if steps <= 0:
        raise ValueError(f"refine steps must be > 0, got {steps}")
    if not 0.0 <= width_floor <= 1.0:
        raise ValueError(f"width_floor must be in [0, 1], got {width_floor}")
    scale_form = checked_scale_form(scale_form)
    width_ceiling = checked_width_ceiling(width_ceiling)
    z = batch.redshift if redshift is None else redshift
    u = refine_mean(model, guide, out, batch, steps, lr, z)
    scale = guide.encoder.refined_posterior_scale
    if not calibrated:
        scale = torch.ones_like(scale)
    terms = laplace_terms(model, out, u, batch, z)
    if scale_form == "likelihood":
        cov = floor_widths(tempered_covariance(*terms, scale), out, width_floor)
        scale = torch.ones_like(scale)
    else:
        cov = floor_widths(tempered_covariance(*terms), out, width_floor)
    if calibrated and width_ceiling is not None:
        s = scale.double()
        cov = cov * s[:, None] * s[None, :]
        amortized = out.marginal_variance(torch.float64).sqrt()
        cov, scale = ceil_widths_sd(cov, amortized, width_ceiling), torch.ones_like(scale)
    factor, diag = _low_rank_form(cov, scale)
    return replace(out, loc=u, cov_factor=factor, cov_diag=diag)
