"""Train galae: ``python -m galae.train --config configs/quickstart.yaml [key=value ...]``.

Self-supervised by default: the loss is the negative ELBO of the Pyro model on the images
("wake"), plus a simulation term ("sleep", Hinton et al. 1995; Le et al. 2019) in which the
encoder learns to invert the renderer on images the model itself draws from its prior under the
batch's observing conditions.  Neither uses any truth stored with the data.  An optional
supervised term (``supervised_weight > 0``) uses the data set's truth latents; it is off by
default and every checkpoint and report records which terms were used.

Defaults live in :class:`TrainConfig` - one visible place, checked as a whole before anything
is written (a refused run leaves no out_dir behind).  The resolved config and package versions
are saved in every checkpoint; training resumes from ``<out_dir>/last.pt``, and an out_dir that
holds a run is only started afresh with ``resume=false overwrite=true``.
Multi-GPU / multi-node through ``torchrun`` (data parallel with all-reduced gradients; gloo on
CPU, NCCL on GPUs).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import pyro
import torch
import torch.distributed as torch_dist
from pyro.infer import Trace_ELBO
from torch import Tensor
from tqdm.auto import tqdm

from galae import runtime
from galae.checkpoint import (
    build_modules,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from galae.config import config_to_dict, load_config, parse_overrides
from galae.data.loader import make_loaders
from galae.encoder import EncoderOutput
from galae.latent import REDSHIFT_FALLBACK_RANGE, REGISTRY
from galae.likelihood import chi2_per_pixel, log_likelihood
from galae.model import Batch, GalaxyGuide, GalaxyModel, redshift_transform
from galae.physics import dust, sfh
from galae.runtime import cli_errors, tune_cpu_allocator

__all__ = ["TrainConfig", "train", "main", "sleep_loss", "wake_loss"]

#: consecutive steps with a non-finite gradient after which training stops with an error
MAX_NONFINITE_STEPS: int = 50


#: The largest redshift ``sleep_redshift_range`` may reach: that of the packaged population
#: table (``python -m galae.sps build``'s default ``--z-max``).
SLEEP_REDSHIFT_MAX: float = 0.6


#: The models ``python -m galae.train`` trains (TrainConfig.model).
MODELS: tuple[str, ...] = ("autoencoder", "unet")

#: The files of a training run in its out_dir; one of them there means out_dir holds a run.
RUN_FILES: tuple[str, ...] = ("last.pt", "model.pt", "log.csv")


def _finite_at_least(value: float, low: float) -> bool:
    """``value`` is a finite number >= ``low`` (False for NaN and inf)."""
    return math.isfinite(value) and value >= low


def _check_widths(widths: object, model: str) -> None:
    """``widths``: a non-empty list of positive integers; for the autoencoder each a multiple of
    the encoder's GroupNorm groups (or below it), for the U-Net at least two levels."""
    from galae.encoder import EncoderConfig

    ok = isinstance(widths, tuple | list) and len(widths) > 0
    ok = ok and all(isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths)
    if not ok:
        raise ValueError(
            f"widths must be a non-empty list of positive integers like [32, 64, 96, 128], "
            f"got {list(widths) if isinstance(widths, tuple) else widths!r}"
        )
    groups = EncoderConfig.groups
    if model == "autoencoder":
        bad = [w for w in widths if w % min(groups, w)]
        if bad:
            raise ValueError(
                f"widths must be multiples of {groups} (or below {groups}): the encoder's "
                f"GroupNorm splits each stage's channels into {groups} groups; got {list(widths)} "
                f"({', '.join(map(str, bad))} not)"
            )
    elif len(widths) < 2:
        raise ValueError(f"widths needs >= 2 levels for the U-Net, got {list(widths)}")


def parse_device(name: str) -> torch.device | None:
    """``name`` as a device ("cpu", "cuda", "cuda:1", "mps"), None for "auto"; ValueError for
    anything else.  Whether the machine has that device is :func:`resolve_device`'s check."""
    return runtime.parse_device(name, allow_auto=True)


@dataclass(frozen=True)
class TrainConfig:
    """Every training knob and its default."""

    # ---- data -------------------------------------------------------------------------------
    data: str = "data/analytic_train.h5"  # HDF5 data set (relative to the working directory)
    mock_config: str | None = None  # if `data` is missing, make it with `python -m galae.mock`
    mock_n: int | None = None  # ... with this many galaxies (default: the mock config's n)
    val_fraction: float = 0.05
    num_workers: int = 0
    # where the training stamps live: "none" (read from the file each batch), "ram" or
    # "device" (decompressed once and held whole; "device" = on the GPU: for large batches,
    # where reading and copying each batch would starve the GPU; galae.data.loader.DATA_CACHES)
    data_cache: str = "none"
    # ---- model ------------------------------------------------------------------------------
    model: str = "autoencoder"  # "autoencoder" or "unet" (the supervised baseline)
    widths: tuple[int, ...] = (32, 64, 96, 128)
    blocks_per_stage: int = 1
    hidden: int = 256
    rank: int = 4
    render_preset: str = "accurate"  # "fast", "reference" (galae.settings.RENDER_PRESETS)
    # the disk's older stars' history (physics, saved in checkpoints): "tau" or "single"
    # (galae.physics.sfh.DISK_HISTORIES)
    disk_history: str = "tau"
    # the young stars' extra dust (physics, saved in checkpoints): "effective" (the packaged
    # model's since the twenty-second release) or "face_on" (galae.physics.dust.BIRTH_CLOUDS)
    birth_clouds: str = "effective"
    likelihood: str = "gaussian"  # or "student_t"
    student_df: float = 4.0
    # ---- losses -----------------------------------------------------------------------------
    wake_weight: float = 1.0  # data term: negative ELBO (or MAP objective, see wake_estimator)
    # "elbo": Monte-Carlo ELBO with draws from q; "map": the ELBO of a point-mass guide at q's
    # mean, -log p(x | u) - log p(u) at u = mean (MoFA's photometric loss plus the prior); stable
    # while q is still broad, and the sleep term keeps q's widths calibrated
    wake_estimator: str = "elbo"
    wake_start_step: int = 0  # simulation-only steps before the ELBO term is switched on
    wake_ramp_steps: int = 100  # ... after which its weight rises linearly to wake_weight
    sleep_weight: float = 1.0  # simulation term on the model's own draws
    # the simulation prior: "broad" (the model's prior) or "population" (published scaling
    # relations, galae.prior.PopulationPrior), mixed with sleep_broad_fraction of the broad prior
    sleep_prior: str = "broad"
    # wake-sleep prior update: every `sleep_prior_refit_every` steps from `sleep_prior_start_step`
    # on, fit a flow to the aggregate posterior of the training set and simulate from
    # sleep_broad_fraction * broad + (1 - sleep_broad_fraction) * flow (0 = broad prior only)
    sleep_prior_refit_every: int = 0
    sleep_prior_start_step: int = 500
    sleep_broad_fraction: float = 0.3
    sleep_prior_epochs: int = 8
    # fraction of the simulated stamps that get random masks like those of other sources
    # (discs off the centre, as galae.data.segmentation leaves) or of bad pixels (a rectangle in
    # one band), so that the encoder learns to read masked pixels (random_source_masks)
    sleep_mask_fraction: float = 0.0
    # fraction of the simulated stamps that lose one whole band, drawn uniformly (a band the
    # survey did not take, or lost): every pixel of it masked (random_source_masks)
    sleep_missing_band_fraction: float = 0.0
    # fraction of the simulated stamps on which the photometric-redshift head (what encode uses
    # when a redshift is unknown) is also trained: -log q(z_true | x), on features that carry
    # no gradient, so the latent posterior is unchanged by it (sleep_loss)
    sleep_photo_z_fraction: float = 0.0
    # epoch-to-epoch ups and downs of the simulated disks' histories (galae.physics.sfh.
    # HistoryVariability: a random walk of this many dex per step in log SFR over 8 log-age
    # bins, Student-t of 2 degrees of freedom, after Leja et al. 2019's 0.3), a nuisance the
    # encoder learns to marginalise; 0 = smooth tau-model histories
    sleep_history_scale_dex: float = 0.0
    # patchy dust in the simulated disks (galae.physics.dust.DustClumping): each galaxy's face-on
    # optical depth spreads log-normally across its disk by sigma_ln_tau ~ U(0, this), at fixed
    # mean, with the young stars where the dust is (weight tau^1.4, the Kennicutt-Schmidt law),
    # a nuisance the encoder learns to marginalise; 0 = the smooth slab
    sleep_dust_clumping_max: float = 0.0
    # the central face-on A_V of the population prior's galaxies (sleep_prior "population";
    # galae.physics.population.POPULATION_DUST): "empirical", galae's first relation, or "gas",
    # from the Kennicutt-Schmidt gas of the SFR disk and the Galactic dust-to-gas ratio;
    # "empirical+gas": each simulated galaxy takes one of the two, with equal odds
    sleep_population_dust: str = "empirical"
    # noise of the simulated stamps: a fraction `sleep_sigma_scale_fraction` of them get their
    # sigma map (from the data) times 10**U(low, high), so that the encoder also meets images
    # deeper (or shallower) than the data set's: Stripe 82 coadds are ~2 mag deeper than SDSS,
    # i.e. sigma x 0.16 (Annis et al. 2014).  (0, 0) = the data set's noise only
    sleep_sigma_scale_dex: tuple[float, float] = (0.0, 0.0)
    sleep_sigma_scale_fraction: float = 0.5
    # observing conditions beyond the data set's: a fraction `sleep_psf_scale_fraction` of the
    # simulated stamps get their PSF FWHM (every band alike) times 10**U(low, high), and a
    # fraction `sleep_redshift_fraction` are put at a redshift uniform in `sleep_redshift_range`,
    # so that the encoder also meets worse seeing and larger distances than the data set holds
    # (a simulation can change its conditions for free).  (0, 0) and 0 = the data set's only
    sleep_psf_scale_dex: tuple[float, float] = (0.0, 0.0)
    sleep_psf_scale_fraction: float = 0.0
    sleep_redshift_range: tuple[float, float] = (0.01, 0.45)
    sleep_redshift_fraction: float = 0.0
    supervised_weight: float = 0.0  # uses truth latents from the data set (off by default)
    # start from another run's encoder and population prior (same architecture), e.g. to add
    # the wake term to a simulation-trained model; the prior then is the ELBO's p(u)
    init_from: str | None = None
    # train only the guide's parameters whose names start with one of these prefixes (the others
    # are frozen), e.g. ("encoder.out_z",) to fit the photometric-redshift head of a trained
    # encoder without moving its latent posterior; () trains everything
    trainable: tuple[str, ...] = ()
    # ---- optimisation -----------------------------------------------------------------------
    batch_size: int = 32
    max_steps: int = 2000
    max_minutes: float | None = None  # stop (and checkpoint) after this wall time
    lr: float = 1e-3
    weight_decay: float = 1e-5
    warmup_steps: int = 100
    grad_clip: float = 5.0
    amp: bool = True  # bf16 autocast of the encoder on CUDA
    # ---- U-Net baseline (model: unet; see galae.unet.UNetConfig) -----------------------------
    unet_targets: tuple[str, ...] | None = None  # default: every map the data set has
    unet_head: str = "quantized"  # or "l2"
    unet_bins: int = 32
    unet_residual_loss: str = "l1"
    unet_residual_weight: float = 1.0
    unet_decode: str = "argmax"  # or "expectation"
    unet_augment: bool = True
    unet_blocks_per_level: int = 1
    unet_cond_dim: int = 64
    # ---- prior ------------------------------------------------------------------------------
    fit_prior: bool = True  # fit the learned population prior at the end
    prior_layers: int = 4
    prior_epochs: int = 30
    # ---- run --------------------------------------------------------------------------------
    out_dir: str = "runs/default"
    seed: int = 0
    device: str = "auto"  # "auto", "cpu", "cuda", "cuda:1", ...
    log_every: int = 10
    eval_every: int = 250
    ckpt_every: int = 250
    resume: bool = True
    # with resume=false, replace a run that out_dir already holds (its last.pt, model.pt,
    # log.csv and tb/ are deleted when the new run starts); without it such an out_dir is
    # refused, so that a run is never overwritten (or its log.csv appended to) by mistake
    overwrite: bool = False
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.max_steps < 0:
            raise ValueError("batch_size must be >= 1 and max_steps >= 0")
        for name in ("wake_weight", "sleep_weight", "supervised_weight"):
            if not _finite_at_least(getattr(self, name), 0.0):
                raise ValueError(
                    f"loss weights must be >= 0 and finite, got {name}={getattr(self, name)}"
                )
        if self.wake_weight + self.sleep_weight + self.supervised_weight == 0:
            raise ValueError("at least one loss term must have a positive weight")
        from galae.settings import RENDER_PRESETS

        if self.render_preset not in RENDER_PRESETS:
            raise ValueError(
                f"render_preset must be one of {sorted(RENDER_PRESETS)}, got {self.render_preset!r}"
            )
        from galae.physics.sfh import check_disk_history

        check_disk_history(self.disk_history)
        from galae.physics.dust import check_birth_clouds

        check_birth_clouds(self.birth_clouds)
        if self.sleep_prior not in ("broad", "population"):
            raise ValueError(
                f"sleep_prior must be 'broad' or 'population', got {self.sleep_prior!r}"
            )
        if self.wake_estimator not in WAKE_ESTIMATORS:
            raise ValueError(
                f"wake_estimator must be one of {sorted(WAKE_ESTIMATORS)}, "
                f"got {self.wake_estimator!r}"
            )
        for name in (
            "sleep_mask_fraction",
            "sleep_sigma_scale_fraction",
            "sleep_psf_scale_fraction",
            "sleep_redshift_fraction",
            "sleep_missing_band_fraction",
            "sleep_photo_z_fraction",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        span = tuple(float(v) for v in self.sleep_sigma_scale_dex)
        if not (len(span) == 2 and -2.0 <= span[0] <= span[1] <= 2.0):
            raise ValueError(
                "sleep_sigma_scale_dex must be (low, high) with -2 <= low <= high <= 2, "
                f"got {self.sleep_sigma_scale_dex}"
            )
        psf_span = tuple(float(v) for v in self.sleep_psf_scale_dex)
        if not (len(psf_span) == 2 and -1.0 <= psf_span[0] <= psf_span[1] <= 1.0):
            raise ValueError(
                "sleep_psf_scale_dex must be (low, high) with -1 <= low <= high <= 1, "
                f"got {self.sleep_psf_scale_dex}"
            )
        z_span = tuple(float(v) for v in self.sleep_redshift_range)
        if not (len(z_span) == 2 and 0.0 < z_span[0] < z_span[1] <= SLEEP_REDSHIFT_MAX):
            raise ValueError(
                f"sleep_redshift_range must be (low, high) with 0 < low < high <= "
                f"{SLEEP_REDSHIFT_MAX} (the population table's reach), "
                f"got {self.sleep_redshift_range}"
            )
        if not self.sleep_history_scale_dex >= 0.0:
            raise ValueError(
                f"sleep_history_scale_dex must be >= 0, got {self.sleep_history_scale_dex}"
            )
        if not (
            math.isfinite(self.sleep_dust_clumping_max) and self.sleep_dust_clumping_max >= 0.0
        ):
            raise ValueError(
                f"sleep_dust_clumping_max must be a number >= 0, got {self.sleep_dust_clumping_max}"
            )
        from galae.data.loader import check_data_cache
        from galae.physics.population import population_dust_laws

        population_dust_laws(self.sleep_population_dust)
        check_data_cache(self.data_cache)
        if self.model == "unet" and self.data_cache != "none":
            raise ValueError(
                "data_cache is for the autoencoder; the U-Net reads its stamps and truth maps "
                "from the file (set data_cache=none)"
            )
        if self.sleep_prior_refit_every < 0 or not 0.0 <= self.sleep_broad_fraction <= 1.0:
            raise ValueError("sleep_prior_refit_every must be >= 0, sleep_broad_fraction in [0, 1]")
        self._check_model()
        self._check_optimisation()
        self._check_run()

    def _check_model(self) -> None:
        """The architecture and likelihood keys (checked whatever the loss weights)."""
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {list(MODELS)}, got {self.model!r}")
        _check_widths(self.widths, self.model)
        for name in ("hidden", "rank", "blocks_per_stage"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        from galae.likelihood import LIKELIHOODS

        if self.likelihood not in LIKELIHOODS:
            raise ValueError(
                f"likelihood must be one of {list(LIKELIHOODS)}, got {self.likelihood!r}"
            )
        if not (_finite_at_least(self.student_df, 0.0) and self.student_df > 0):
            raise ValueError(f"student_df must be > 0 and finite, got {self.student_df}")
        if self.model == "autoencoder":
            set_unet = [
                f.name
                for f in dataclasses.fields(self)
                if f.name.startswith("unet_") and getattr(self, f.name) != f.default
            ]
            if set_unet:
                raise ValueError(
                    f"{', '.join(set_unet)}: settings of the U-Net baseline (model: unet), "
                    "which the autoencoder does not use; drop them or set model=unet"
                )
        if self.model == "unet":
            if self.init_from is not None:
                raise ValueError(
                    "init_from starts the autoencoder from another run; the U-Net baseline "
                    "(model: unet) cannot start from a checkpoint: drop init_from"
                )
            if self.trainable:
                raise ValueError(
                    "trainable selects autoencoder parameters; the U-Net baseline "
                    "(model: unet) trains all of its own: drop trainable"
                )
            if self.unet_targets is not None and not self.unet_targets:
                raise ValueError(
                    "unet_targets must name at least one map (or be null: every map the data "
                    "set has)"
                )
            from galae.unet import requested_targets, unet_config_from_train

            try:  # the U-Net's own checks, before any data is read
                unet_config_from_train(self, 1, requested_targets(self))
            except ValueError as err:
                raise ValueError(f"U-Net settings (unet_* keys, widths): {err}") from None

    def _check_optimisation(self) -> None:
        if not (_finite_at_least(self.lr, 0.0) and self.lr > 0):
            raise ValueError(f"lr must be > 0 and finite, got {self.lr}")
        if not _finite_at_least(self.weight_decay, 0.0):
            raise ValueError(f"weight_decay must be >= 0 and finite, got {self.weight_decay}")
        if not (_finite_at_least(self.grad_clip, 0.0) and self.grad_clip > 0):
            raise ValueError(
                "grad_clip must be > 0 and finite (the largest gradient norm of a loss term in "
                f"a step; <= 0 stops or reverses training), got {self.grad_clip}"
            )
        for name in (
            "warmup_steps",
            "wake_start_step",
            "wake_ramp_steps",
            "sleep_prior_start_step",
            "num_workers",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_minutes is not None and not _finite_at_least(self.max_minutes, 0.0):
            raise ValueError(f"max_minutes must be >= 0 (or null), got {self.max_minutes}")

    def _check_run(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(
                f"val_fraction must be in [0, 1) (the share of the data kept for validation), "
                f"got {self.val_fraction}"
            )
        if self.mock_n is not None and self.mock_n < 1:
            raise ValueError(f"mock_n must be >= 1 (or null), got {self.mock_n}")
        for name in ("log_every", "eval_every", "ckpt_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (steps), got {getattr(self, name)}")
        for name in ("prior_layers", "prior_epochs", "sleep_prior_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        parse_device(self.device)
        if self.overwrite and self.resume:
            raise ValueError(
                "overwrite=true replaces the run in out_dir and resume=true continues it: "
                "set resume=false with overwrite=true"
            )

    @property
    def loss_terms(self) -> str:
        terms = [
            name
            for name, w in (
                ("wake-ELBO", self.wake_weight),
                ("sleep-simulation", self.sleep_weight),
                ("supervised-truth", self.supervised_weight),
            )
            if w > 0
        ]
        if self.wake_weight > 0 and self.wake_estimator == "map":
            terms[0] = "wake-MAP"
        return "+".join(terms)


# ----------------------------------------------------------------------------------------------
# losses
# ----------------------------------------------------------------------------------------------
_ELBO = Trace_ELBO(num_particles=1)


def wake_elbo_loss(model: GalaxyModel, guide: GalaxyGuide, batch: Batch) -> Tensor:
    """Negative ELBO per galaxy per pixel-band (a scale-free number for logging and mixing)."""
    loss = _ELBO.differentiable_loss(model, guide, batch)
    return loss / (batch.size * batch.images[0].numel())


def wake_map_loss(model: GalaxyModel, guide: GalaxyGuide, batch: Batch) -> Tensor:
    """-[log p(x | u) + log p(u)] at u = the mean of q(u | x), per galaxy per pixel-band.

    The negative ELBO of a point-mass guide at q's mean (amortized MAP; with a unit-sigma
    Gaussian likelihood it is MoFA's photometric loss plus the prior).  Unknown redshifts take the
    mean of the photo-z head.
    """
    out, rec = posterior_mean_rendering(model, guide, batch)
    log_lik = log_likelihood(rec, batch.images, batch.sigma, batch.mask, model.likelihood, model.df)
    log_p = log_lik + model.prior_dist(batch.size).log_prob(out.loc)
    return -log_p.sum() / (batch.size * batch.images[0].numel())


def posterior_mean_rendering(
    model: GalaxyModel, guide: GalaxyGuide, batch: Batch
) -> tuple[EncoderOutput, Tensor]:
    """q's parameters and the model image (B, C, H, W) at q's mean (photo-z mean if unknown)."""
    out = guide.encode(batch)
    z = None if batch.redshift_known else guide.redshift_dist(out).mean
    return out, model.render_images(out.loc, batch, z)


WAKE_ESTIMATORS = {"elbo": wake_elbo_loss, "map": wake_map_loss}


def wake_loss(
    model: GalaxyModel, guide: GalaxyGuide, batch: Batch, estimator: str = "elbo"
) -> Tensor:
    """The data ("wake") term, by ``estimator`` (see :data:`WAKE_ESTIMATORS`)."""
    return WAKE_ESTIMATORS[estimator](model, guide, batch)


def _random_factors(
    b: int,
    fraction: float,
    span_dex: tuple[float, float],
    generator: torch.Generator | None,
    device: torch.device | str,
) -> Tensor | None:
    """(b,) factors 10**U(low, high) for a random ``fraction`` of b stamps, 1 for the others;
    None (and no random number drawn) when the fraction is 0 or the span is (0, 0)."""
    lo, hi = span_dex
    if not (fraction > 0 and (lo, hi) != (0.0, 0.0)):
        return None
    pick = torch.rand(b, generator=generator, device=device) < fraction
    dex = lo + (hi - lo) * torch.rand(b, generator=generator, device=device)
    return torch.where(pick, 10.0**dex, torch.ones_like(dex))


def simulate_like(
    model: GalaxyModel,
    batch: Batch,
    generator: torch.Generator | None = None,
    prior: torch.nn.Module | None = None,
    history_scale_dex: float = 0.0,
    sigma_scale_dex: tuple[float, float] = (0.0, 0.0),
    sigma_scale_fraction: float = 0.0,
    psf_scale_dex: tuple[float, float] = (0.0, 0.0),
    psf_scale_fraction: float = 0.0,
    redshift_range: tuple[float, float] = (0.01, 0.45),
    redshift_fraction: float = 0.0,
    dust_clumping_max: float = 0.0,
) -> tuple[Tensor, Batch]:
    """Draw u from the prior (default the model's), render under the batch's conditions, add noise.

    With ``history_scale_dex`` > 0 each disk's history gets random ups and downs of that scale
    (:class:`galae.physics.sfh.HistoryVariability`), a nuisance that the latents do not hold.
    With ``sigma_scale_fraction`` > 0 that fraction of the stamps (drawn at random) has its
    sigma map multiplied by 10**s, s uniform in ``sigma_scale_dex`` (dex),
    before the noise is drawn: deeper or shallower images than the batch's.  With
    ``psf_scale_fraction`` > 0 that fraction has its PSF FWHM (every band) times 10**s, s uniform
    in ``psf_scale_dex``; with ``redshift_fraction`` > 0 that fraction is put at a redshift
    uniform in ``redshift_range``: worse seeing and larger distances than the batch's.  With
    ``dust_clumping_max`` > 0 each disk's dust is patchy, sigma_ln_tau ~ U(0, max)
    (:class:`galae.physics.dust.DustClumping`), another nuisance.  None of these draws is made
    when its option is off, so the random stream is as without them.

    Returns the true unconstrained latents (B, D) and a :class:`Batch` of simulated stamps with the
    same mask, PSF and redshift as ``batch``, and its sigma (times those factors).
    """
    prior = model.prior if prior is None else prior
    with torch.no_grad():
        u = prior.sample(batch.size, generator=generator).to(batch.images)
        z = batch.redshift
        if not batch.redshift_known:
            lo_hi = model.redshift_prior_dist(z)
            z = lo_hi.sample()
        variability = None
        if history_scale_dex > 0:
            variability = sfh.HistoryVariability.draw(
                batch.size, history_scale_dex, generator=generator, device=u.device, dtype=u.dtype
            )
        conditions = batch
        b = batch.size
        dev = batch.images.device
        factor = _random_factors(b, psf_scale_fraction, psf_scale_dex, generator, dev)
        if factor is not None:
            psf = batch.psf_fwhm_arcsec * factor.to(batch.psf_fwhm_arcsec).view(b, 1)
            conditions = replace(conditions, psf_fwhm_arcsec=psf)
        if redshift_fraction > 0:
            pick = torch.rand(b, generator=generator, device=dev) < redshift_fraction
            lo_z, hi_z = redshift_range
            far = lo_z + (hi_z - lo_z) * torch.rand(b, generator=generator, device=dev)
            z = torch.where(pick, far.to(z), z)
        clumping = None
        if dust_clumping_max > 0:
            clumping = dust.DustClumping.draw(
                b, dust_clumping_max, generator=generator, device=u.device, dtype=u.dtype
            )
        with sfh.history_variability(variability), dust.dust_clumping(clumping):
            clean = model.render_images(u, conditions, z)
        sigma = batch.sigma
        factor = _random_factors(b, sigma_scale_fraction, sigma_scale_dex, generator, sigma.device)
        if factor is not None:
            sigma = sigma * factor.to(sigma).view(b, 1, 1, 1)
        noise = torch.randn(clean.shape, generator=generator, device=clean.device)
        noisy = clean + sigma * noise.to(clean)
    sim = Batch(
        images=noisy,
        sigma=sigma,
        mask=batch.mask,
        psf_fwhm_arcsec=conditions.psf_fwhm_arcsec,
        redshift=z,
        pixel_scale_arcsec=batch.pixel_scale_arcsec,
        bands=batch.bands,
        index=batch.index,
    )
    return u, sim


#: random_source_masks: up to this many discs per masked stamp ...
MASK_MAX_DISCS: int = 3
#: ... of radius uniform in this range (pixels) ...
MASK_RADIUS_PIX: tuple[float, float] = (2.0, 10.0)
#: ... centred at least this far from the stamp centre (pixels), where the galaxy is kept.
MASK_MIN_CENTRE_DISTANCE_PIX: float = 6.0


def random_source_masks(
    shape: tuple[int, int, int, int],
    fraction: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    missing_band_fraction: float = 0.0,
) -> Tensor:
    """Random masks (B, C, H, W) bool for simulated stamps, True = masked.

    A ``fraction`` of the stamps get 1 to :data:`MASK_MAX_DISCS` discs, the same in every band,
    of radius uniform in :data:`MASK_RADIUS_PIX`, centred uniformly in radius between
    :data:`MASK_MIN_CENTRE_DISTANCE_PIX` and the stamp's edge and in angle: the footprints that
    the segmentation of foreground stars and neighbours (:mod:`galae.data.segmentation`) leaves.
    Half of those stamps also lose a rectangle (1-4 pixels by up to the stamp) in one band: bad
    columns, saturation bleeds, NaN pixels.  The others are unmasked.

    Independently, a ``missing_band_fraction`` of the stamps lose one whole band (every pixel
    masked; the band drawn uniformly): a band the survey did not take or lost.
    """
    b, c, h, w = shape

    def u(*size: int) -> Tensor:
        return torch.rand(*size, generator=generator, device=device)

    def one_band() -> Tensor:  # (B, C, 1, 1) bool: one band per stamp, drawn uniformly
        band = (u(b) * c).long().clamp_max(c - 1)
        return torch.arange(c, device=device).view(1, c, 1, 1) == band.view(-1, 1, 1, 1)

    yy = torch.arange(h, device=device, dtype=torch.float32).view(1, 1, h, 1)
    xx = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, 1, w)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    on = u(b) < fraction  # (B,)
    k = MASK_MAX_DISCS
    n_discs = 1 + (u(b) * k).long().clamp_max(k - 1)  # 1..k
    active = on[:, None] & (torch.arange(k, device=device)[None] < n_discs[:, None])  # (B, k)
    r_max = min(h, w) / 2
    rad = MASK_MIN_CENTRE_DISTANCE_PIX + u(b, k) * (r_max - MASK_MIN_CENTRE_DISTANCE_PIX)
    ang = 2 * torch.pi * u(b, k)
    py, px = cy + rad * torch.sin(ang), cx + rad * torch.cos(ang)
    lo, hi = MASK_RADIUS_PIX
    # the central 2 pixels stay unmasked, as the segmentation keeps the galaxy's centre
    size = torch.minimum(lo + u(b, k) * (hi - lo), rad - 2.0)
    d2 = (yy - py[..., None, None]) ** 2 + (xx - px[..., None, None]) ** 2  # (B, k, H, W)
    discs = ((d2 <= size[..., None, None] ** 2) & active[..., None, None]).any(1)  # (B, H, W)
    mask = discs[:, None].expand(b, c, h, w).clone()
    # a bad rectangle in one band, in half of the masked stamps
    bad = on & (u(b) < 0.5)
    rect_band = one_band()
    vertical = u(b) < 0.5
    thick = 1 + (u(b) * 4).long().clamp_max(3)
    pos = u(b)
    length = u(b)
    row0 = (pos * (h - 1)).long()
    col0 = (pos * (w - 1)).long()
    iy = torch.arange(h, device=device).view(1, h, 1)
    ix = torch.arange(w, device=device).view(1, 1, w)
    across_v = (ix >= col0.view(-1, 1, 1)) & (ix < (col0 + thick).view(-1, 1, 1))
    along_v = iy < (length * h).ceil().long().view(-1, 1, 1)
    across_h = (iy >= row0.view(-1, 1, 1)) & (iy < (row0 + thick).view(-1, 1, 1))
    along_h = ix < (length * w).ceil().long().view(-1, 1, 1)
    rect = torch.where(vertical.view(-1, 1, 1), across_v & along_v, across_h & along_h)
    rect = rect & bad.view(-1, 1, 1)
    mask = mask | (rect[:, None] & rect_band)
    if missing_band_fraction > 0:
        gone = u(b) < missing_band_fraction
        mask = mask | (gone.view(-1, 1, 1, 1) & one_band())
    return mask


def sleep_loss(
    model: GalaxyModel,
    guide: GalaxyGuide,
    batch: Batch,
    generator: torch.Generator | None = None,
    prior: torch.nn.Module | None = None,
    mask_fraction: float = 0.0,
    photo_z_fraction: float = 0.0,
    missing_band_fraction: float = 0.0,
    history_scale_dex: float = 0.0,
    sigma_scale_dex: tuple[float, float] = (0.0, 0.0),
    sigma_scale_fraction: float = 0.0,
    psf_scale_dex: tuple[float, float] = (0.0, 0.0),
    psf_scale_fraction: float = 0.0,
    redshift_range: tuple[float, float] = (0.01, 0.45),
    redshift_fraction: float = 0.0,
    dust_clumping_max: float = 0.0,
) -> Tensor:
    """-log q(u_true | x_sim, z) / D, averaged over the simulated batch, plus a photo-z term.

    u_true comes from ``prior``; the stamps are rendered at the batch's redshifts (drawn from the
    fallback range where unknown) and the encoder is told them.  For a ``photo_z_fraction`` of
    the stamps (drawn at random) the photometric-redshift head is also scored:
    -log q(t_true | x), with t the logit of the scaled redshift (the head is normal in t,
    :meth:`GalaxyGuide.redshift_dist`), read from features that carry no gradient
    (:meth:`GalaxyEncoder.photo_z`, on the same CNN features).  It trains the head that
    ``encode`` uses when a redshift is unknown and leaves the latent posterior as it would be
    without it.  The sum is divided by
    B x D, so that a hidden stamp's term is -log q(u, z | x) / D.

    With ``mask_fraction`` > 0 that fraction of the simulated stamps is masked at random on top
    of the batch's own masks, and with ``missing_band_fraction`` > 0 that fraction loses one
    whole band (:func:`random_source_masks`); ``history_scale_dex``, ``sigma_scale_dex`` and
    ``sigma_scale_fraction``, ``psf_scale_dex``, ``psf_scale_fraction``, ``redshift_range``,
    ``redshift_fraction`` and ``dust_clumping_max`` as in :func:`simulate_like`; stamps put
    beyond the photo-z head's range (:data:`REDSHIFT_FALLBACK_RANGE`) do not score it.
    """
    u, sim = simulate_like(
        model,
        batch,
        generator,
        prior,
        history_scale_dex,
        sigma_scale_dex,
        sigma_scale_fraction,
        psf_scale_dex,
        psf_scale_fraction,
        redshift_range,
        redshift_fraction,
        dust_clumping_max,
    )
    if mask_fraction > 0 or missing_band_fraction > 0:
        shape = tuple(sim.images.shape)
        extra = random_source_masks(
            shape, mask_fraction, generator, sim.images.device, missing_band_fraction
        )
        sim = sim.with_mask(extra)
    enc = guide.encoder
    feat, cond = enc.trunk(sim.images, sim.sigma, sim.mask, sim.psf_fwhm_arcsec, sim.redshift)
    out = enc.head_outputs(feat, cond)  # = guide.encode(sim): the encoder is told z
    nll = -guide.posterior_dist(out).log_prob(u)
    if photo_z_fraction > 0:
        hide = torch.rand(sim.size, generator=generator, device=sim.images.device)
        lo, hi = REDSHIFT_FALLBACK_RANGE
        # the photo-z head's range ends at hi: stamps put further away do not score it
        hide = (hide < photo_z_fraction) & (sim.redshift <= hi)
        if bool(hide.any()):
            z_loc, z_scale = enc.photo_z(feat[hide], cond[hide])  # the same CNN features
            eps = 1e-4 * (hi - lo)  # keep the logit finite at the range's ends
            t = redshift_transform().inv(sim.redshift[hide].clamp(lo + eps, hi - eps))
            nll_z = -torch.distributions.Normal(z_loc, z_scale).log_prob(t)
            return (nll.sum() + nll_z.sum()) / (nll.numel() * u.shape[-1])
    return nll.mean() / u.shape[-1]


def supervised_loss(guide: GalaxyGuide, batch: Batch, truth_u: Tensor) -> Tensor:
    """-log q(u_truth | x) / D, from the data set's truth (optional, off by default)."""
    out = guide.encode(batch)
    return -guide.posterior_dist(out).log_prob(truth_u).mean() / truth_u.shape[-1]


def loss_terms(
    cfg: TrainConfig,
    model: GalaxyModel,
    guide: GalaxyGuide,
    batch: Batch,
    step: int,
    generator: torch.Generator | None = None,
    sleep_prior: torch.nn.Module | None = None,
) -> tuple[dict[str, Tensor], dict[str, float]]:
    """The loss terms of one training step on ``batch`` and their weights at ``step``.

    Returns ``(terms, weights)``: each term a scalar tensor with its own graph ("wake": the data
    term from ``step`` = ``wake_start_step`` on; "sleep": the simulation term; "supervised": the
    optional truth term), each weight a float (the wake weight ramps in, :func:`_wake_weight`).
    """
    terms: dict[str, Tensor] = {}
    wake_w = _wake_weight(cfg, step)
    if wake_w > 0:
        terms["wake"] = wake_loss(model, guide, batch, cfg.wake_estimator)
    if cfg.sleep_weight > 0:
        terms["sleep"] = sleep_loss(
            model,
            guide,
            batch,
            generator,
            sleep_prior,
            cfg.sleep_mask_fraction,
            cfg.sleep_photo_z_fraction,
            cfg.sleep_missing_band_fraction,
            cfg.sleep_history_scale_dex,
            cfg.sleep_sigma_scale_dex,
            cfg.sleep_sigma_scale_fraction,
            cfg.sleep_psf_scale_dex,
            cfg.sleep_psf_scale_fraction,
            cfg.sleep_redshift_range,
            cfg.sleep_redshift_fraction,
            cfg.sleep_dust_clumping_max,
        )
    if cfg.supervised_weight > 0:
        terms["supervised"] = supervised_loss(guide, batch, batch_truth_u(batch))
    weights = {"wake": wake_w, "sleep": cfg.sleep_weight, "supervised": cfg.supervised_weight}
    return terms, weights


def _check_terms_reach_parameters(cfg: TrainConfig, terms: dict[str, Tensor], step: int) -> None:
    """ValueError when no loss term depends on the trainable parameters (and no wake term is
    still to come): training would not move them (e.g. ``trainable=[encoder.out_z]``, the
    photo-z head, without ``sleep_photo_z_fraction`` > 0)."""
    if any(v.requires_grad for v in terms.values()):
        return
    if cfg.wake_weight > 0 and step < cfg.wake_start_step:
        return
    raise ValueError(
        f"no loss term ({', '.join(terms)}) depends on the parameters that trainable="
        f"{list(cfg.trainable)} selects, so training would not change them (the photo-z head "
        "encoder.out_z learns from sleep_photo_z_fraction > 0, or the wake term on stamps "
        "without a redshift)"
    )


def _wake_weight(cfg: TrainConfig, step: int) -> float:
    """Weight of the ELBO term at ``step``: 0 before ``wake_start_step``, then a linear ramp."""
    if step < cfg.wake_start_step:
        return 0.0
    ramp = (step - cfg.wake_start_step + 1) / max(cfg.wake_ramp_steps, 1)
    return cfg.wake_weight * min(1.0, ramp)


def _balanced_backward(
    terms: dict[str, Tensor], weights: dict[str, float], params: list[Tensor], clip: float
) -> tuple[float, list[str]]:
    """Back-propagate each loss term on its own and clip its gradient norm to ``clip`` before
    adding it (times its weight) to the others.

    The terms have independent graphs (data vs simulated batch), so this costs no extra
    backward pass.  It keeps the ELBO's early, very large per-pixel gradients from drowning the
    simulation term under one global clip.  A term whose gradient is not finite (a finite loss
    can still overflow in the backward pass) is left out of this step rather than clipped, since
    clipping cannot repair NaN.  Returns the norm of the summed gradient and the names of the
    terms left out.
    """
    total = [torch.zeros_like(p) for p in params]
    skipped: list[str] = []
    world = torch_dist.get_world_size() if torch_dist.is_initialized() else 1
    for name, value in terms.items():
        # a term that no trainable parameter reaches has a zero gradient (still all-reduced
        # below, so that every process makes the same collective calls)
        grads = (
            torch.autograd.grad(value, params, allow_unused=True)
            if value.requires_grad
            else [None] * len(params)
        )
        grads = [
            torch.zeros_like(p) if g is None else g for g, p in zip(grads, params, strict=True)
        ]
        if world > 1:  # average over processes before clipping, as DDP would
            for g in grads:
                torch_dist.all_reduce(g)
                g.div_(world)
        norm = float(torch.sqrt(sum((g.detach() ** 2).sum() for g in grads)))
        if not math.isfinite(norm):
            skipped.append(name)
            continue
        scale = weights[name] * min(1.0, clip / (norm + 1e-12))
        for t, g in zip(total, grads, strict=True):
            t.add_(g, alpha=scale)
    for p, t in zip(params, total, strict=True):
        p.grad = t
    return float(torch.sqrt(sum((t**2).sum() for t in total))), skipped


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------
def resolve_device(name: str) -> torch.device:
    """The device named by ``name`` ("auto": CUDA when available, else the CPU).

    Raises:
        ValueError: an unknown device name, or a device this machine does not have.
    """
    return runtime.checked_device(name, allow_auto=True)


def check_run_inputs(cfg: TrainConfig) -> torch.device:
    """What a training run needs of the machine and the file system, checked before anything
    is written: the device (returned), the data set or the mock config that makes it, and
    out_dir (:func:`check_out_dir`).  Used by :func:`train` and :func:`galae.unet.train_unet`.

    Raises:
        ValueError: a device this machine lacks, an out_dir that holds a run, a mock config
            that does not load.
        FileNotFoundError: no data set and no mock config to make it.
    """
    device = resolve_device(cfg.device)
    check_out_dir(cfg)
    check_data_source(cfg)
    return device


def check_out_dir(cfg: TrainConfig) -> None:
    """Refuse an out_dir that holds a run (:data:`RUN_FILES`) which this one would overwrite or
    append to: with resume=false (unless overwrite=true), or with resume=true but no last.pt to
    continue from while a model.pt is there."""
    out = Path(cfg.out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} is a file, not a directory")
    held = [name for name in RUN_FILES if (out / name).is_file()]
    if not held or cfg.overwrite:
        return
    if not cfg.resume:
        raise ValueError(
            f"out_dir {out} holds a run ({', '.join(held)}); resume=true continues it, "
            "resume=false overwrite=true replaces it, or choose another out_dir"
        )
    if not (out / "last.pt").is_file() and (out / "model.pt").is_file():
        raise ValueError(
            f"out_dir {out} holds a finished run (model.pt) but no last.pt to resume from; "
            "resume=false overwrite=true replaces it, or choose another out_dir"
        )


def set_aside_stale_log(out_dir: Path) -> None:
    """A ``log.csv`` without a ``last.pt`` beside it is the log of a run that stopped before
    its first checkpoint: nothing resumes it, so the new run starts a log of its own and that
    one is kept as ``log.csv.stale`` (numbered if that exists), instead of being appended to."""
    log = out_dir / "log.csv"
    if (out_dir / "last.pt").exists() or not log.is_file():
        return
    aside = out_dir / "log.csv.stale"
    k = 1
    while aside.exists():
        aside, k = out_dir / f"log.csv.stale{k}", k + 1
    log.rename(aside)
    print(f"{log} is from a run that stopped before its first checkpoint: kept as {aside}")


def clear_run(out_dir: Path) -> None:
    """Delete the run that ``out_dir`` holds (overwrite=true): :data:`RUN_FILES` and tb/."""
    import shutil

    removed = [name for name in RUN_FILES if (out_dir / name).is_file()]
    for name in removed:
        (out_dir / name).unlink()
    if (out_dir / "tb").is_dir():
        shutil.rmtree(out_dir / "tb")
        removed.append("tb/")
    if removed:
        print(f"overwrite=true: removed {', '.join(removed)} of the previous run in {out_dir}")


def check_data_source(cfg: TrainConfig) -> None:
    """The data set exists, or ``mock_config`` names a mock config that loads (it will be
    generated from it); errors say which of the two is missing."""
    data = Path(cfg.data)
    if data.exists():
        return
    if cfg.mock_config is None:
        raise FileNotFoundError(
            f"data set {data} not found (set mock_config to generate it, or run "
            f"`python -m galae.mock --config configs/mock_analytic.yaml --out {data}`)"
        )
    mock = Path(cfg.mock_config)
    if not mock.is_file():
        raise FileNotFoundError(
            f"data set {data} not found, and mock_config {mock}, the mock config it would be "
            f"generated from, is not found either (relative paths start at {Path.cwd()}); "
            "set data to an existing data set, or mock_config to a mock config file"
        )
    from galae.mock import MockConfig

    try:
        load_config(MockConfig, mock)
    except ValueError as err:
        raise ValueError(
            f"mock_config {mock} (to generate the missing data set {data}): {err}"
        ) from None


def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _lr_lambda(cfg: TrainConfig):
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / max(cfg.warmup_steps, 1)
        t = (step - cfg.warmup_steps) / max(cfg.max_steps - cfg.warmup_steps, 1)
        return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))

    return f


class _Logger:
    """CSV (always) and TensorBoard (when installed and enabled) scalars, rank 0 only."""

    FIELDS = (
        "step",
        "loss",
        "loss_wake",
        "loss_sleep",
        "loss_supervised",
        "grad_norm",
        "lr",
        "val_chi2_median",
        "val_post_std_u",
    )

    def __init__(self, out_dir: Path, enabled: bool, tensorboard: bool) -> None:
        self.enabled = enabled
        self.path = out_dir / "log.csv"
        self.tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"))
            except ImportError:
                print("tensorboard is not installed; logging to CSV only", file=sys.stderr)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": step, **scalars}
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=self.FIELDS, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


@torch.no_grad()
def evaluate_batch(model: GalaxyModel, guide: GalaxyGuide, batch: Batch) -> dict[str, float]:
    """chi2 per pixel of the posterior-mean reconstruction, and posterior width."""
    out, rec = posterior_mean_rendering(model, guide, batch)
    chi2 = chi2_per_pixel(rec, batch.images, batch.sigma, batch.mask)
    std = guide.posterior_dist(out).variance.sqrt().mean()
    return {"val_chi2_median": chi2.nanmedian().item(), "val_post_std_u": std.item()}


# ----------------------------------------------------------------------------------------------
# the loop
# ----------------------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> Path:
    """Train (or resume) and return the path of the final checkpoint."""
    if cfg.model != "autoencoder":
        from galae.unet import train_unet

        return train_unet(cfg)
    world, rank, local = _dist_info()
    distributed = world > 1
    # every input is checked before a process group is joined or anything is written
    device = check_run_inputs(cfg)
    init_state = _init_from_checkpoint(cfg) if cfg.init_from else None
    # subnormal floats (far-out profile tails, in forward and backward) are ~100x slower on CPUs
    # and carry no light; an application-level setting for the training process
    torch.set_flush_denormal(True)
    if distributed and not torch_dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch_dist.init_process_group(backend)
    if distributed and device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    main_proc = rank == 0
    out_dir = Path(cfg.out_dir)

    torch.manual_seed(cfg.seed + rank)
    pyro.set_rng_seed(cfg.seed + rank)
    train_loader, val_loader, data_info = make_loaders(cfg, rank=rank, world=world, device=device)

    model, guide = build_modules(cfg, data_info)
    if init_state is not None:
        _init_from(str(cfg.init_from), init_state, model, guide)
    model.to(device)
    guide.to(device)
    params = _trainable_parameters(guide, cfg.trainable)
    if main_proc:  # made only now, so that a run refused for its inputs leaves no out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        if cfg.overwrite:
            clear_run(out_dir)
        set_aside_stale_log(out_dir)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg))

    step = 0
    trained_with = cfg.loss_terms
    if cfg.max_steps == 0 and init_state is not None:
        # no training steps: the run only fits the learned prior of init_from's encoder, and the
        # model it saves is that encoder after init_from's steps, trained by init_from's terms
        step = int(init_state.get("step", 0))
        trained_with = str(init_state.get("loss_terms", trained_with))
    last = out_dir / "last.pt"
    if cfg.resume and last.exists():
        state = load_checkpoint(last, expect_config=cfg, map_location=device)
        guide.encoder.load_state_dict(state["encoder_state"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = int(state["step"])
        restore_rng_states(state)
        if main_proc:
            print(f"resumed from {last} at step {step}")

    if distributed:
        # every process starts from rank 0's weights; gradients are averaged in
        # _balanced_backward (an explicit all-reduce, since the loss terms are differentiated
        # one by one with torch.autograd.grad, which DDP's hooks do not see)
        for p in guide.parameters():
            torch_dist.broadcast(p.data, 0)

    logger = _Logger(out_dir, main_proc, cfg.tensorboard)
    # bf16 autocast of the encoder's CNN and head only: the renderer, the likelihood and q's
    # Cholesky factor stay float32 (bf16 matrix products in the PSF would cost ~1% of the peak)
    guide.encoder.autocast_dtype = torch.bfloat16 if (cfg.amp and device.type == "cuda") else None
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + rank + step)
    t_start = time.time()
    bar = tqdm(
        total=cfg.max_steps, initial=step, desc="train", disable=not (main_proc and cfg.progress)
    )
    val_batch = next(iter(val_loader)).to(device) if val_loader is not None else None
    sleep_flow = None
    sleep_prior = _initial_sleep_prior(cfg, device)
    stop = False
    epoch = 0
    bad_steps = 0  # consecutive steps with a non-finite gradient
    while step < cfg.max_steps and not stop:
        epoch_setter = getattr(train_loader, "sampler", train_loader)  # CachedBatches: itself
        if hasattr(epoch_setter, "set_epoch"):
            epoch_setter.set_epoch(epoch)
        for batch in train_loader:
            batch = batch.to(device)
            if _refit_due(cfg, step, sleep_flow is None):
                sleep_flow, sleep_prior = _refit_sleep_prior(
                    cfg, model, guide, train_loader, device, sleep_flow, distributed
                )
            terms, weights = loss_terms(cfg, model, guide, batch, step, gen, sleep_prior)
            _check_terms_reach_parameters(cfg, terms, step)
            loss = sum(weights[k] * v for k, v in terms.items())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite loss at step {step}: { {k: v.item() for k, v in terms.items()} }"
                )
            gnorm, skipped = _balanced_backward(terms, weights, params, cfg.grad_clip)
            if skipped:
                bad_steps += 1
                warnings.warn(
                    f"step {step}: non-finite gradient of {', '.join(skipped)}; "
                    "left out of this step",
                    stacklevel=1,
                )
                if bad_steps > MAX_NONFINITE_STEPS:
                    raise FloatingPointError(
                        f"{bad_steps} steps in a row with non-finite gradients (last: step "
                        f"{step}, {', '.join(skipped)}); lower lr or grad_clip, or delay the "
                        "ELBO term (wake_start_step)"
                    )
            else:
                bad_steps = 0
            if len(skipped) < len(terms):
                opt.step()
            sched.step()
            step += 1
            bar.update(1)
            scalars = {f"loss_{k}": v.item() for k, v in terms.items()}
            scalars["loss"] = float(loss.item())
            scalars["grad_norm"] = float(gnorm)
            scalars["lr"] = sched.get_last_lr()[0]
            if val_batch is not None and (step % cfg.eval_every == 0 or step == cfg.max_steps):
                guide.eval()
                scalars.update(evaluate_batch(model, guide, val_batch))
                guide.train()
            if step % cfg.log_every == 0 or "val_chi2_median" in scalars:
                logger.log(step, scalars)
                bar.set_postfix(
                    {k: f"{v:.3g}" for k, v in scalars.items() if k in ("loss", "val_chi2_median")}
                )
            minutes = (time.time() - t_start) / 60.0
            stop = cfg.max_minutes is not None and minutes >= cfg.max_minutes
            if main_proc and (step % cfg.ckpt_every == 0 or step >= cfg.max_steps or stop):
                save_checkpoint(last, cfg, data_info, model, guide, opt, sched, step)
            if step >= cfg.max_steps or stop:
                break
        epoch += 1
    bar.close()
    logger.close()

    final = out_dir / "model.pt"
    if main_proc:
        if cfg.fit_prior:
            from galae.sampling import fit_population_prior

            fit_population_prior(model, guide, train_loader, cfg, device, flow=sleep_flow)
        save_checkpoint(final, cfg, data_info, model, guide, None, None, step, True, trained_with)
        print(f"saved {final} (step {step}, loss terms: {trained_with})")
    if distributed:
        torch_dist.barrier()
        torch_dist.destroy_process_group()
    return final


def _trainable_parameters(guide: GalaxyGuide, prefixes: tuple[str, ...]) -> list[Tensor]:
    """The guide's parameters to train: all, or those named by ``prefixes`` (the others get
    ``requires_grad = False``).  A prefix that names no parameter is an error."""
    if not prefixes:
        return [p for p in guide.parameters() if p.requires_grad]
    named = dict(guide.named_parameters())
    for pre in prefixes:
        if not any(n.startswith(pre) for n in named):
            heads = sorted({n.rsplit(".", 1)[0] for n in named})
            raise ValueError(
                f"trainable prefix {pre!r} names no parameter of the guide; its modules are "
                f"{', '.join(heads)}"
            )
    out = []
    for n, p in named.items():
        p.requires_grad_(any(n.startswith(pre) for pre in prefixes))
        if p.requires_grad:
            out.append(p)
    return out


#: TrainConfig keys that shape the encoder, compared with an init_from checkpoint's.
_ENCODER_KEYS: tuple[str, ...] = ("widths", "blocks_per_stage", "hidden", "rank")


def _init_from_checkpoint(cfg: TrainConfig) -> dict:
    """The checkpoint ``cfg.init_from`` names, checked to be an autoencoder's with the
    encoder architecture ``cfg`` asks for (before any data is read).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not an autoencoder checkpoint, or another encoder architecture (the
            message lists the differing keys on one line).
    """
    from galae.checkpoint import CheckpointError

    path = str(cfg.init_from)
    state = load_checkpoint(Path(path))
    if state["kind"] != "galae-autoencoder":
        raise CheckpointError(
            f"init_from={path!r} is a {state['kind']} checkpoint; init_from needs an autoencoder "
            "checkpoint (galae-autoencoder, made with model: autoencoder)"
        )
    theirs = state.get("encoder_config", {})
    mine = {k: list(v) if isinstance(v, tuple) else v for k, v in _encoder_keys(cfg).items()}
    diffs = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
    if diffs:
        raise CheckpointError(
            f"init_from={path!r} has another encoder architecture; differing keys "
            f"(checkpoint, requested): {diffs}"
        )
    return state


def _encoder_keys(cfg: TrainConfig) -> dict:
    return {k: getattr(cfg, k) for k in _ENCODER_KEYS}


def _init_from(path: str, state: dict, model: GalaxyModel, guide: GalaxyGuide) -> None:
    """Load the encoder weights and the population prior of the checkpoint ``state`` (read
    from ``path`` by :func:`_init_from_checkpoint`)."""
    from galae.checkpoint import CheckpointError, modules_from_state

    theirs = state.get("encoder_config", {})
    mine = guide.encoder.config.to_dict()
    diffs = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
    if diffs:  # e.g. n_bands: a data set with other bands
        raise CheckpointError(
            f"init_from={path!r} has another encoder architecture; differing encoder settings "
            f"(checkpoint, this run): {diffs}"
        )
    theirs_w, mine_w = state["encoder_state"], guide.encoder.state_dict()
    problems = [f"missing {k}" for k in mine_w if k not in theirs_w]
    problems += [f"unexpected {k}" for k in theirs_w if k not in mine_w]
    problems += [
        f"{k} {tuple(theirs_w[k].shape)} vs {tuple(v.shape)}"
        for k, v in mine_w.items()
        if k in theirs_w and tuple(theirs_w[k].shape) != tuple(v.shape)
    ]
    if problems:  # a one-line summary, not torch's multi-line dump
        more = f" and {len(problems) - 4} more" if len(problems) > 4 else ""
        raise CheckpointError(
            f"init_from={path!r} has another encoder architecture: its weights do not fit "
            f"({'; '.join(problems[:4])}{more})"
        )
    guide.encoder.load_state_dict(theirs_w)
    model.prior = modules_from_state(state, where=f"init_from={path!r}")[0].prior
    enc = guide.encoder
    if not (
        bool((enc.posterior_scale == 1).all()) and bool((enc.refined_posterior_scale == 1).all())
    ):
        # the scales are buffers: the run trains q with them applied, and once q moves they are
        # no longer its calibration
        print(
            f"init_from={path!r} is calibrated: its width scales stay applied while this run "
            "trains; calibrate the trained model again (python -m galae.calibrate)"
        )


def _initial_sleep_prior(cfg: TrainConfig, device: torch.device) -> torch.nn.Module | None:
    """The simulation prior before any refit: None (the model's own prior) or the population
    prior mixed with the broad one."""
    if cfg.sleep_prior == "broad":
        return None
    from galae.prior import PopulationPrior

    population = PopulationPrior(REGISTRY.dim, cfg.sleep_population_dust)
    return _with_broad(population.to(device), cfg, device)


def _with_broad(component: torch.nn.Module, cfg: TrainConfig, device: torch.device):
    """sleep_broad_fraction x the broad prior + the rest x ``component``."""
    from galae.prior import with_broad

    return with_broad(component, cfg.sleep_broad_fraction, REGISTRY.dim).to(device)


def _refit_due(cfg: TrainConfig, step: int, never_fitted: bool) -> bool:
    """Whether the sleep prior is refitted before ``step`` (also right after a resume)."""
    every = cfg.sleep_prior_refit_every
    if every <= 0 or step < cfg.sleep_prior_start_step or cfg.sleep_weight == 0:
        return False
    return never_fitted or (step - cfg.sleep_prior_start_step) % every == 0


def _refit_sleep_prior(
    cfg: TrainConfig,
    model: GalaxyModel,
    guide: GalaxyGuide,
    loader,
    device: torch.device,
    flow,
    distributed: bool,
):
    """Fit (or warm-refit) the flow to the aggregate posterior; return (flow, mixture prior).

    In distributed runs rank 0 fits and broadcasts, so every process simulates from one prior.
    """
    from galae.prior import FlowPrior
    from galae.sampling import fit_population_prior

    rank = torch_dist.get_rank() if distributed else 0
    if rank == 0:
        flow = fit_population_prior(
            model,
            guide,
            loader,
            cfg,
            device,
            flow=flow,
            epochs=cfg.sleep_prior_epochs,
            install=False,
        )
    elif flow is None:
        flow = FlowPrior(REGISTRY.dim, n_layers=cfg.prior_layers).to(device)
    if distributed:
        for t in list(flow.parameters()) + list(flow.buffers()):
            torch_dist.broadcast(t.data, 0)
    return flow, _with_broad(flow, cfg, device)


def batch_truth_u(batch: Batch) -> Tensor:
    if batch.truth_u is None:
        raise ValueError("supervised_weight > 0 needs truth latents in the data set")
    return batch.truth_u


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(prog="python -m galae.train", description=__doc__.split("\n")[0])
    ap.add_argument("--config", help="YAML config (keys of TrainConfig)")
    ap.add_argument("overrides", nargs="*", help="key=value overrides")
    args = ap.parse_args(argv)
    tune_cpu_allocator()
    cfg = load_config(TrainConfig, args.config, parse_overrides(args.overrides))
    if int(os.environ.get("RANK", "0")) == 0:
        print("config:", config_to_dict(cfg))
    return train(cfg)


if __name__ == "__main__":
    with cli_errors("python -m galae.train"):
        main()
