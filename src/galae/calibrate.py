"""Simulation-based calibration of the amortized posterior's widths, without labels.

After training, q(u | x) can be too wide or too narrow: the sleep term fits q on simulated
galaxies, but a finite network, a finite number of steps and the balance of the loss terms
leave each latent's width off by some factor.  That factor is measured the way the encoder was
trained, by simulation: galaxies are drawn from a simulation prior (by default the published
scaling relations the sleep term trains on, :class:`galae.prior.PopulationPrior`), rendered
under the observing conditions (sigma, mask, PSF, redshift) of a data set's images and given
noise; for each latent j the standardised errors z_j = (u_j - mean_j) / sd_j of q on them
give the scale

    s_j = quantile(|z_j|, 0.6827),

which makes q's central 68% interval (+- sd) cover 68% of the simulated truths.  The encoder
stores s (``GalaxyEncoder.posterior_scale``) and returns S (W W^T + diag) S with S = diag(s);
the posterior means are unchanged.  No truth from the data set is read: its images supply only
the observing conditions, exactly as in training (Cranmer, Brehmer & Louppe 2020, PNAS 117,
30055, on simulation-based inference; Talts et al. 2018, arXiv:1804.06788, on calibration by
simulation).

The simulation prior should be the population the data come from, as nearly as it is known:
``--prior population`` (the default), ``learned`` (the model's flow prior, fitted to the
aggregate posterior: broader than the population, since it is not deconvolved from q's widths,
so it calibrates too wide), or ``broad`` (the registry's ranges); ``--broad-fraction f`` mixes
in f of the broad prior, as training does (``sleep_broad_fraction``).

    python -m galae.calibrate --checkpoint runs/quickstart/model.pt --data data/quickstart_train.h5
"""

from __future__ import annotations

import argparse
import json
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from galae.checkpoint import load_checkpoint, modules_from_state
from galae.data.hdf5 import inspect_h5, read_h5
from galae.latent import REGISTRY
from galae.physics.population import LEGACY_POPULATION_DUST
from galae.prior import BroadPrior, PopulationPrior, with_broad
from galae.refine import REFINED_WIDTH_CEILING, REFINED_WIDTH_CEILING_FALLBACK
from galae.runtime import checked_device, checked_integer, cli_errors, tune_cpu_allocator

__all__ = [
    "SIMULATION_PRIORS",
    "posterior_scales",
    "simulation_prior",
    "calibrate_checkpoint",
    "main",
]

#: P(|z| < 1) for a standard normal: the central 68% interval is +- 1 sd.
ONE_SIGMA_MASS: float = math.erf(1.0 / math.sqrt(2.0))
#: the fewest simulated galaxies a calibration accepts: each latent's 68% coverage is then known
#: to about +-5% (binomial), a tenth of the widths' typical miscalibration before calibrating
MIN_SIMULATED: int = 100


def standardised_errors(u_true: torch.Tensor, loc: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """|u_true - loc| / sd per latent, (N, D) in unconstrained space.

    For a latent that is an angle (:attr:`galae.latent.Param.period`) the error is taken on the
    circle in physical units and divided by the physical width at ``loc`` (the bijection's
    slope there times ``sd``): the Gaussian in unconstrained space cannot wrap, so a truth at
    179 deg and an estimate at 1 deg would otherwise count as a 178-degree error and inflate
    the position angle's width for every galaxy.
    """
    z = ((u_true - loc) / sd).abs()
    for j, param in enumerate(REGISTRY):
        if param.period is None:
            continue
        x_true = param.from_unconstrained(u_true[:, j].double())
        x_loc = param.from_unconstrained(loc[:, j].double())
        slope = param.log_abs_det_jacobian(loc[:, j].double()).exp()
        d = (x_true - x_loc + param.period / 2) % param.period - param.period / 2
        z[:, j] = (d.abs() / (slope.abs() * sd[:, j].double()).clamp_min(1e-12)).to(z.dtype)
    return z


@torch.no_grad()
def posterior_scales(
    model: Any,
    guide: Any,
    batches: Any,
    generator: torch.Generator | None = None,
    simulator: torch.nn.Module | None = None,
    refine_steps: int = 0,
    history_scale_dex: float = 0.0,
    scale_form: str | None = None,
    width_ceiling: float | torch.Tensor | None = REFINED_WIDTH_CEILING,
    width_ceiling_fallback: float | None = REFINED_WIDTH_CEILING_FALLBACK,
    dust_clumping_max: float = 0.0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Per-latent scales of q's widths that calibrate its 68% intervals on simulated galaxies.

    With ``refine_steps`` > 0 the scales are those of the refined posterior
    (:func:`galae.refine.refine_posterior` with that many steps), for the encoder's
    ``refined_posterior_scale``; the amortized posterior it starts from keeps its own
    calibration.  In ``scale_form`` "covariance" (default:
    :data:`galae.refine.REFINED_SCALE_FORM`) they scale the Laplace widths (the 68% quantile of
    the unscaled standardised errors); in "likelihood" they temper the pixels' information,
    and are found by :func:`likelihood_scales`.

    The refined widths' ceiling (``width_ceiling`` times q's width, default
    :data:`galae.refine.REFINED_WIDTH_CEILING`, None for none) is fitted with: in "covariance" a
    truth further than the ceiling from the refined mode counts as uncovered at any scale, so
    that the scale is the 68% quantile of errors that are infinite there; a latent for which
    fewer than 68% of the truths lie within the ceiling cannot be calibrated under it: it gets
    the higher ``width_ceiling_fallback`` (default
    :data:`galae.refine.REFINED_WIDTH_CEILING_FALLBACK`) if it can be calibrated under that, and
    is left without a ceiling otherwise (a warning names it; the summary records the ceiling per
    latent).  A ceiling per latent ((D,), inf for none) is taken as given, the fallback applying
    to its latents as to a single ceiling's.  In "likelihood" the ceiling is applied as given
    (no fallback).

    Args:
        model, guide: :class:`galae.model.GalaxyModel` and :class:`galae.model.GalaxyGuide`
            (the guide's current ``posterior_scale`` is ignored: the scales are absolute).
        batches: iterable of :class:`galae.model.Batch` whose observing conditions the
            simulated galaxies take (their images are not used).
        generator: random generator for the draws and the noise.
        simulator: the prior the simulated galaxies are drawn from (default: the model's).
        history_scale_dex: the disks' history variability in the simulations
            (:func:`galae.train.simulate_like`), as the encoder was trained with.
        dust_clumping_max: the largest spread of the simulated disks' patchy dust
            (:func:`galae.train.simulate_like`), likewise.

    Returns:
        scales (D,) and a summary (number of galaxies, coverage before and after, per latent).
    """
    import galae.refine as gr
    from galae.train import simulate_like

    form = gr.checked_scale_form(scale_form)
    ceiling = gr.checked_width_ceiling(width_ceiling)
    fallback = gr.checked_width_ceiling_fallback(width_ceiling_fallback, ceiling)
    tempered = refine_steps > 0 and form == "likelihood"
    floor = gr.REFINED_WIDTH_FLOOR
    encoder = guide.encoder
    saved = encoder.posterior_scale.clone()
    if refine_steps <= 0:
        encoder.posterior_scale.fill_(1.0)
    errors, kept, in_q_widths = [], [], []
    try:
        for batch in batches:
            u, sim = simulate_like(
                model,
                batch,
                generator,
                simulator,
                history_scale_dex,
                dust_clumping_max=dust_clumping_max,
            )
            out = guide.encode(sim)
            amortized = out.marginal_variance(torch.float64).sqrt()  # floor and ceiling
            if tempered:  # the pieces of the Laplace covariance, to fit the tempering
                mode = gr.refine_mean(
                    model, guide, out, sim, refine_steps, gr.REFINE_LR, sim.redshift
                )
                terms = gr.laplace_terms(model, out, mode, sim, sim.redshift)
                kept.append([t.cpu() for t in (u, mode, *terms, amortized)])
                continue
            if refine_steps > 0:
                out = gr.refine_posterior(
                    model, guide, out, sim, refine_steps, calibrated=False, scale_form=form
                )
            sd = out.marginal_variance(torch.float64).sqrt()
            z = standardised_errors(u.double(), out.loc.double(), sd)
            if refine_steps > 0 and ceiling is not None:  # |error| / sigma_q, for the ceiling
                in_q_widths.append((z * sd / amortized).cpu())
            errors.append(z.cpu())
    finally:
        encoder.posterior_scale.copy_(saved)
    n_sim = sum(len(k[0]) for k in kept) if tempered else sum(len(e) for e in errors)
    if n_sim == 0:
        raise ValueError("no batches to calibrate on")
    if n_sim < MIN_SIMULATED:
        raise ValueError(
            f"calibration needs at least {MIN_SIMULATED} simulated galaxies, got {n_sim}"
        )
    extra: dict[str, Any] = {}
    if tempered:
        pieces = [torch.cat(p) for p in zip(*kept, strict=True)]
        scales, before, after, iterations = likelihood_scales(
            *pieces, width_floor=floor, width_ceiling=ceiling
        )
        extra["iterations"] = iterations
    else:
        z = torch.cat(errors).double()  # (N, D)
        if in_q_widths:
            z = _errors_under_ceiling(z, torch.cat(in_q_widths), ceiling, extra, fallback)
        scales = torch.quantile(z, ONE_SIGMA_MASS, dim=0).clamp(0.05, 20.0)
        before = (z < 1.0).double().mean(0)
        after = (z < scales).double().mean(0)
    names = REGISTRY.names
    summary = {
        "n_simulated": int(n_sim),
        "level": ONE_SIGMA_MASS,
        "scale": dict(zip(names, scales.tolist(), strict=True)),
        "coverage_68_before": dict(zip(names, before.tolist(), strict=True)),
        "coverage_68_after": dict(zip(names, after.tolist(), strict=True)),
    }
    if refine_steps > 0:
        summary["refine_steps"] = int(refine_steps)
        summary["width_floor"] = floor
        summary["scale_form"] = form
        if isinstance(ceiling, torch.Tensor):
            ceiling = dict(zip(names, ceiling.tolist(), strict=True))
        summary["width_ceiling"] = ceiling
        summary["width_ceiling_fallback"] = None if tempered else fallback  # see the docstring
        summary.update(extra)
    return scales.to(saved), summary


def _errors_under_ceiling(
    z: torch.Tensor,
    in_q_widths: torch.Tensor,
    ceiling: float | torch.Tensor,
    extra: dict[str, Any],
    fallback: float | None = None,
) -> torch.Tensor:
    """The standardised errors ``z`` (N, D) with those of the truths beyond the width ceiling
    (``in_q_widths``, the errors |u - mode| / sigma_q (N, D), at or above it) set to a stand-in
    for infinity: uncovered at any scale.

    A latent for which fewer than 68% of the truths lie inside cannot be calibrated under the
    ceiling; it gets the ``fallback`` ceiling if 68% lie within that, and no ceiling otherwise
    (a warning names each), and ``extra`` records the ceiling per latent
    (``width_ceiling_per_latent``, inf for none) and each latent's fraction inside the ceiling
    (and, for those that needed it, inside the fallback).
    """
    names = REGISTRY.names
    per_latent = (
        torch.as_tensor(ceiling, dtype=torch.float64, device=z.device).expand(z.shape[-1]).clone()
    )
    inside = in_q_widths < per_latent
    reach = inside.double().mean(0)
    extra["coverage_68_reachable_under_ceiling"] = dict(zip(names, reach.tolist(), strict=True))
    short = reach < ONE_SIGMA_MASS
    if fallback is not None and bool((short & (per_latent < fallback)).any()):
        tried = short & (per_latent < fallback)
        inside_f = in_q_widths < fallback
        reach_f = inside_f.double().mean(0)
        extra["coverage_68_reachable_under_fallback"] = {
            n: r for n, r, t in zip(names, reach_f.tolist(), tried.tolist(), strict=True) if t
        }
        moved = tried & (reach_f >= ONE_SIGMA_MASS)
        if bool(moved.any()):
            warnings.warn(
                f"within the refined width ceiling of the refined mode lie fewer than "
                f"{ONE_SIGMA_MASS:.0%} of the simulated truths of {_listed(moved, reach)}: those "
                f"latents are calibrated under the fallback ceiling {fallback:g}",
                RuntimeWarning,
                stacklevel=3,
            )
            per_latent[moved] = fallback
            inside = torch.where(moved, inside_f, inside)
            short = short & ~moved
    if bool(short.any()):
        warnings.warn(
            f"within the refined width ceiling of the refined mode lie fewer than "
            f"{ONE_SIGMA_MASS:.0%} of the simulated truths of {_listed(short, reach)}: those "
            "latents are calibrated without a ceiling",
            RuntimeWarning,
            stacklevel=3,
        )
        per_latent[short] = math.inf
        inside = inside | short
    extra["width_ceiling_per_latent"] = dict(zip(names, per_latent.tolist(), strict=True))
    # the truths beyond the ceiling sort last, fewer than 32% of them: the 68% quantile lies
    # among the finite errors (the stand-in keeps linear interpolation from reaching nan)
    return torch.where(inside, z, torch.full_like(z, 1e30))


def _listed(which: torch.Tensor, reach: torch.Tensor) -> str:
    """ "name (fraction), ..." of the latents ``which`` (D,) bool, with ``reach`` (D,)."""
    return ", ".join(
        f"{n} ({r:.2f})"
        for n, r, s in zip(REGISTRY.names, reach.tolist(), which.tolist(), strict=True)
        if s
    )


def likelihood_scales(
    u_true: torch.Tensor,
    mode: torch.Tensor,
    fisher_info: torch.Tensor,
    prior_precision: torch.Tensor,
    amortized_sd: torch.Tensor,
    width_floor: float = 0.0,
    width_ceiling: float | None = None,
    max_iterations: int = 50,
    tol: float = 1e-3,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The tempering s (D,) of the pixels' information that calibrates the refined 68%
    intervals: :func:`galae.refine.tempered_covariance` of each simulated galaxy's terms,
    floored (:func:`galae.refine.floor_widths_sd`), covers ``ONE_SIGMA_MASS`` of its truths.

    Found by the fixed point s <- s q, q the 68% quantile of the standardised errors at s: where
    the image sets a latent's width, the width is proportional to s and one step reaches it;
    where q's prior sets it, s has no hold and runs to its bounds [0.05, 20].

    Args:
        u_true, mode: (N, D) the simulated latents and the refined modes.
        fisher_info, prior_precision: (N, D, D) the Laplace terms
            (:func:`galae.refine.laplace_terms`).
        amortized_sd: (N, D) the amortized widths, for the floor and the ceiling
            (:func:`galae.refine.ceil_widths_sd`, applied after the tempering).
    Returns:
        s, the 68% coverage per latent before (s = 1) and after, and the iterations used.
    """
    from galae.refine import ceil_widths_sd, floor_widths_sd, tempered_covariance

    def errors(scale: torch.Tensor) -> torch.Tensor:
        cov = floor_widths_sd(
            tempered_covariance(fisher_info, prior_precision, scale), amortized_sd, width_floor
        )
        cov = ceil_widths_sd(cov, amortized_sd, width_ceiling)
        return standardised_errors(u_true, mode, cov.diagonal(0, -2, -1).sqrt()).double()

    scale = torch.ones(u_true.shape[-1], dtype=torch.float64)
    before = (errors(scale) < 1.0).double().mean(0)
    iterations = 0
    for it in range(1, max_iterations + 1):
        q = torch.quantile(errors(scale), ONE_SIGMA_MASS, dim=0)
        new = (scale * q).clamp(0.05, 20.0)
        done = bool(((new / scale - 1.0).abs() < tol).all())
        scale, iterations = new, it
        if done:
            break
    after = (errors(scale) < 1.0).double().mean(0)
    return scale, before, after, iterations


#: Simulation priors by name: (model, the population's dust law) -> prior module with
#: ``sample(n, generator)``.
SIMULATION_PRIORS: dict[str, Callable[[Any, str], torch.nn.Module]] = {
    "population": lambda model, dust_law: PopulationPrior(REGISTRY.dim, dust_law),
    "learned": lambda model, dust_law: model.prior,
    "broad": lambda model, dust_law: BroadPrior(REGISTRY.dim),
}


def simulation_prior(
    model: Any, name: str, broad_fraction: float = 0.0, population_dust: str = "empirical"
) -> torch.nn.Module:
    """The named simulation prior, mixed with ``broad_fraction`` of the broad prior; the
    population's galaxies have the dust of ``population_dust``
    (:data:`galae.physics.population.POPULATION_DUST`)."""
    if name not in SIMULATION_PRIORS:
        raise ValueError(f"unknown simulation prior {name!r}; known: {sorted(SIMULATION_PRIORS)}")
    if not 0.0 <= broad_fraction < 1.0:
        raise ValueError(f"broad_fraction must be in [0, 1), got {broad_fraction}")
    prior = SIMULATION_PRIORS[name](model, population_dust)
    if broad_fraction > 0.0:
        prior = with_broad(prior, broad_fraction, REGISTRY.dim)
    return prior


def calibrate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    n: int = 2048,
    batch_size: int = 64,
    seed: int = 0,
    device: str = "cpu",
    prior: str = "population",
    broad_fraction: float = 0.0,
    refine_steps: int = 0,
    history_scale_dex: float | None = None,
    scale_form: str | None = None,
    width_ceiling: float | None = REFINED_WIDTH_CEILING,
    width_ceiling_fallback: float | None = REFINED_WIDTH_CEILING_FALLBACK,
    dust_clumping_max: float | None = None,
) -> Path:
    """Calibrate the posterior widths of ``checkpoint`` by simulation; write the result.

    With ``refine_steps`` > 0 it calibrates the refined posterior instead (the encoder's
    ``refined_posterior_scale``, summary under ``refined_posterior_calibration``) and leaves the
    amortized calibration as it is: calibrate the amortized posterior first.

    The observing conditions come from the first ``n`` galaxies of ``data`` (cycled if it
    has fewer); the galaxies from ``prior`` (a name of :data:`SIMULATION_PRIORS`) mixed with
    ``broad_fraction`` of the broad prior.  Writes ``out`` (default:
    ``<checkpoint stem>_calibrated.pt`` beside it) with the encoder's ``posterior_scale`` set and
    the summary under ``posterior_calibration``.  The simulations have the disk-history
    variability ``history_scale_dex`` (default: the checkpoint's training value,
    ``sleep_history_scale_dex``, the bursty histories of real galaxies and particle mocks; 0 for
    data of smooth histories, such as the analytic mocks), and the patchy dust of spread up to
    ``dust_clumping_max`` (default likewise the checkpoint's ``sleep_dust_clumping_max``; 0 for
    none); the "population" prior draws the dust law the checkpoint was trained with
    (``sleep_population_dust``).  ``scale_form`` is the refined
    scales' form (:data:`galae.refine.SCALE_FORMS`; default the current one), recorded with them,
    and ``width_ceiling`` their ceiling with ``width_ceiling_fallback`` for the latents that
    cannot be calibrated under it (:func:`posterior_scales`; None: none), recorded too.
    """
    from galae.model import Batch

    # every argument checked before the simulations run, so that no work is lost to a typo
    if isinstance(n, bool) or not isinstance(n, int) or n < MIN_SIMULATED:
        raise ValueError(
            f"calibration needs at least {MIN_SIMULATED} simulated galaxies (n), got {n!r}"
        )
    batch_size = checked_integer(batch_size, "batch_size", 1)
    refine_steps = checked_integer(refine_steps, "refine_steps", 0)
    if history_scale_dex is not None and not (
        math.isfinite(history_scale_dex) and history_scale_dex >= 0
    ):
        raise ValueError(f"history_scale_dex must be a number >= 0, got {history_scale_dex}")
    if dust_clumping_max is not None and not (
        math.isfinite(dust_clumping_max) and dust_clumping_max >= 0
    ):
        raise ValueError(f"dust_clumping_max must be a number >= 0, got {dust_clumping_max}")
    from galae.refine import (
        checked_scale_form,
        checked_width_ceiling,
        checked_width_ceiling_fallback,
    )

    checked_scale_form(scale_form)
    checked_width_ceiling_fallback(width_ceiling_fallback, checked_width_ceiling(width_ceiling))
    dev = checked_device(device)
    checkpoint = Path(checkpoint)
    out = Path(out) if out else checkpoint.with_name(f"{checkpoint.stem}_calibrated.pt")
    if not out.parent.is_dir():
        raise FileNotFoundError(f"the output's folder {out.parent} does not exist")
    state = load_checkpoint(checkpoint)
    if state["kind"] != "galae-autoencoder":
        raise ValueError(f"{checkpoint} is not an autoencoder checkpoint")
    model, guide = modules_from_state(state, where=str(checkpoint))
    model, guide = model.to(dev).eval(), guide.to(dev).eval()
    # the population the encoder was trained on: its dust law too (a checkpoint made before
    # the choice existed was trained on the first one)
    population_dust = str(state["config"].get("sleep_population_dust", LEGACY_POPULATION_DUST))
    simulator = simulation_prior(model, prior, broad_fraction, population_dust).to(dev)
    bands = tuple(model.renderer.bands)
    info = inspect_h5(data, expected_bands=bands)
    generator = torch.Generator(device=dev).manual_seed(seed)

    def batches():
        done = 0
        with tqdm(total=n, desc="calibrate", unit="gal") as bar:
            while done < n:
                size = min(batch_size, n - done)
                rows = (np.arange(done, done + size) % info.n_galaxies).astype(np.int64)
                rows = np.sort(rows)
                d = read_h5(data, rows, expected_bands=bands)
                f32 = {k: torch.as_tensor(d[k]).to(dev) for k in ("images", "sigma", "mask")}
                mask = f32["mask"].bool() | ~torch.isfinite(f32["images"])
                yield Batch(
                    images=torch.where(mask, 0.0, f32["images"].float()),
                    sigma=torch.where(mask, 1.0, f32["sigma"].float()),
                    mask=mask,
                    psf_fwhm_arcsec=torch.as_tensor(d["psf_fwhm_arcsec"]).float().to(dev),
                    redshift=torch.as_tensor(d["redshift"]).float().to(dev),
                    pixel_scale_arcsec=float(d["pixel_scale_arcsec"]),
                    bands=bands,
                    index=torch.as_tensor(rows).to(dev),
                )
                done += size
                bar.update(size)

    # by default the simulations the encoder was trained on: its disks' history variability too
    history_scale = (
        float(state["config"].get("sleep_history_scale_dex", 0.0))
        if history_scale_dex is None
        else float(history_scale_dex)
    )
    clumping = (
        float(state["config"].get("sleep_dust_clumping_max", 0.0))
        if dust_clumping_max is None
        else float(dust_clumping_max)
    )
    scales, summary = posterior_scales(
        model,
        guide,
        batches(),
        generator,
        simulator,
        refine_steps=refine_steps,
        history_scale_dex=history_scale,
        scale_form=scale_form,
        width_ceiling=width_ceiling,
        width_ceiling_fallback=width_ceiling_fallback,
        dust_clumping_max=clumping,
    )
    summary.update(
        {
            "data": str(data),
            "seed": seed,
            "prior": prior,
            "broad_fraction": broad_fraction,
            "history_scale_dex": history_scale,
            "dust_clumping_max": clumping,
            "population_dust": population_dust,
        }
    )
    if refine_steps > 0:
        state["encoder_state"]["refined_posterior_scale"] = scales.cpu()
        state["refined_posterior_calibration"] = summary
    else:
        state["encoder_state"]["posterior_scale"] = scales.cpu()
        state["posterior_calibration"] = summary
    tmp = out.with_suffix(out.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(
        prog="python -m galae.calibrate", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--checkpoint", required=True, help="autoencoder checkpoint (.pt)")
    ap.add_argument("--data", required=True, help="HDF5 images whose observing conditions to use")
    ap.add_argument("--out", help="output checkpoint (default <stem>_calibrated.pt)")
    ap.add_argument("--n", type=int, default=2048, help="simulated galaxies")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--prior",
        default="population",
        choices=sorted(SIMULATION_PRIORS),
        help="simulation prior (default: the published scaling relations)",
    )
    ap.add_argument(
        "--broad-fraction", type=float, default=0.0, help="fraction drawn from the broad prior"
    )
    ap.add_argument(
        "--refine-steps",
        type=int,
        default=0,
        help="calibrate the refined posterior of this many steps (after the amortized one)",
    )
    ap.add_argument(
        "--history-scale-dex",
        type=float,
        default=None,
        help="disk-history variability of the simulations (default: the checkpoint's training "
        "value; 0 for smooth histories)",
    )
    ap.add_argument(
        "--dust-clumping-max",
        type=float,
        default=None,
        help="largest spread of the simulations' patchy dust, sigma of ln tau (default: the "
        "checkpoint's training value; 0 for smooth dust)",
    )
    ap.add_argument(
        "--scale-form",
        choices=("likelihood", "covariance"),
        default=None,
        help="how the refined scales enter: scaling the whole Laplace covariance (covariance, "
        "the default) or tempering the pixels' information per latent (likelihood: measured, "
        "not kept; galae.refine)",
    )
    ap.add_argument(
        "--width-ceiling",
        type=float,
        default=REFINED_WIDTH_CEILING,
        help="the largest refined width as a multiple of the amortized one (default "
        f"{REFINED_WIDTH_CEILING:g}; 0: none; galae.refine)",
    )
    fallback_default = REFINED_WIDTH_CEILING_FALLBACK or 0.0
    ap.add_argument(
        "--width-ceiling-fallback",
        type=float,
        default=fallback_default,
        help="the higher ceiling of the latents that cannot be calibrated under --width-ceiling "
        f"(default {fallback_default:g}; 0: none, they get no ceiling)",
    )
    a = ap.parse_args(argv)
    tune_cpu_allocator()
    torch.set_flush_denormal(True)
    out = calibrate_checkpoint(
        a.checkpoint,
        a.data,
        a.out,
        a.n,
        a.batch_size,
        a.seed,
        a.device,
        prior=a.prior,
        broad_fraction=a.broad_fraction,
        refine_steps=a.refine_steps,
        history_scale_dex=a.history_scale_dex,
        dust_clumping_max=a.dust_clumping_max,
        scale_form=a.scale_form,
        width_ceiling=a.width_ceiling or None,
        width_ceiling_fallback=a.width_ceiling_fallback or None,
    )
    key = "refined_posterior_calibration" if a.refine_steps > 0 else "posterior_calibration"
    summary = load_checkpoint(out)[key]
    print(json.dumps({k: summary[k] for k in ("n_simulated", "scale")}, indent=1))
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    with cli_errors("python -m galae.calibrate"):
        main()
