"""Checkpoints: what a trained galae model is on disk.

A checkpoint is a ``torch.save`` dict holding the resolved training config, the package versions,
the latent registry layout (names, units, ranges), the data description (bands, pixel scale,
stamp shape), the render settings, the encoder architecture and weights, the population prior,
and (for resumable ``last.pt``) optimizer, scheduler, step and RNG state.  Loading checks the
layout and refuses a checkpoint made for another registry, band set or format version with an
error that says what differs.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from galae.config import config_to_dict
from galae.encoder import EncoderConfig, GalaxyEncoder
from galae.latent import REGISTRY, LatentRegistry
from galae.model import GalaxyGuide, GalaxyModel
from galae.physics.dust import DEFAULT_BIRTH_CLOUDS, LEGACY_BIRTH_CLOUDS
from galae.physics.sfh import DEFAULT_DISK_HISTORY, LEGACY_DISK_HISTORY
from galae.physics.sps import SPSTable
from galae.prior import BroadPrior, FlowPrior
from galae.render.renderer import GalaxyRenderer
from galae.settings import RENDER_PRESETS, RenderSettings

__all__ = [
    "FORMAT_VERSION",
    "CheckpointError",
    "versions",
    "registry_layout",
    "build_modules",
    "save_checkpoint",
    "load_checkpoint",
    "rng_states",
    "restore_rng_states",
    "checkpoint_disk_history",
    "checkpoint_birth_clouds",
    "modules_from_state",
]

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here (wrong layout, version or config)."""


def galae_version() -> str:
    import galae

    return galae.__version__


def versions() -> dict[str, str]:
    import pyro

    import galae

    return {
        "galae": galae.__version__,
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def registry_layout(registry: LatentRegistry = REGISTRY) -> list[dict[str, Any]]:
    return [
        {"name": p.name, "unit": p.unit, "low": p.low, "high": p.high, "scale": p.scale}
        for p in registry
    ]


def _encoder_config(cfg: Any, data_info: dict[str, Any]) -> EncoderConfig:
    return EncoderConfig(
        n_bands=len(data_info["bands"]),
        latent_dim=REGISTRY.dim,
        widths=tuple(cfg.widths),
        blocks_per_stage=cfg.blocks_per_stage,
        hidden=cfg.hidden,
        rank=cfg.rank,
    )


def build_modules(
    cfg: Any, data_info: dict[str, Any], settings: RenderSettings | None = None
) -> tuple[GalaxyModel, GalaxyGuide]:
    """Fresh model and guide for a training config and a data description.

    The renderer's settings are ``settings``, else the config's ``render_preset``."""
    if settings is None:
        preset = getattr(cfg, "render_preset", "accurate")
        try:
            settings = RENDER_PRESETS[preset]
        except KeyError:
            raise ValueError(
                f"unknown render_preset {preset!r}; choose one of {sorted(RENDER_PRESETS)}"
            ) from None
    sps = SPSTable.load(data_info.get("sps_table", "sdss"))
    if tuple(sps.bands) != tuple(data_info["bands"]):
        raise CheckpointError(
            f"data bands {tuple(data_info['bands'])} do not match the population table's "
            f"bands {tuple(sps.bands)}"
        )
    renderer = GalaxyRenderer(
        sps,
        settings,
        disk_history=getattr(cfg, "disk_history", DEFAULT_DISK_HISTORY),
        birth_clouds=getattr(cfg, "birth_clouds", DEFAULT_BIRTH_CLOUDS),
    )
    model = GalaxyModel(renderer, BroadPrior(REGISTRY.dim), cfg.likelihood, cfg.student_df)
    guide = GalaxyGuide(GalaxyEncoder(_encoder_config(cfg, data_info)))
    return model, guide


def save_checkpoint(
    path: Path,
    cfg: Any,
    data_info: dict[str, Any],
    model: GalaxyModel,
    guide: GalaxyGuide,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any,
    step: int,
    final: bool = False,
    loss_terms: str | None = None,
) -> None:
    """Write atomically (temporary file, then rename): an interruption never leaves half a file.

    ``loss_terms`` (default ``cfg.loss_terms``) names the terms that trained the encoder: a run
    that takes no step of its own (``max_steps=0`` with ``init_from``) records its init's.
    """
    prior = model.prior
    state: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": "galae-autoencoder",
        "config": config_to_dict(cfg),
        "loss_terms": cfg.loss_terms if loss_terms is None else loss_terms,
        "versions": versions(),
        "registry": registry_layout(model.registry),
        "data_info": dict(data_info),
        "render_settings": dataclasses.asdict(model.renderer.settings),
        "disk_history": model.renderer.disk_history,
        "birth_clouds": model.renderer.birth_clouds,
        "encoder_config": guide.encoder.config.to_dict(),
        "encoder_state": guide.encoder.state_dict(),
        "prior_kind": "flow" if isinstance(prior, FlowPrior) else "broad",
        "prior_hparams": getattr(prior, "hparams", {}),
        "prior_state": prior.state_dict(),
        "likelihood": model.likelihood,
        "student_df": model.df,
        "step": step,
        **rng_states(),
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
        state["scheduler"] = scheduler.state_dict()
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def rng_states() -> dict[str, Any]:
    """The random generators' states for a resumable checkpoint.

    ``rng_cpu`` is torch's CPU generator; ``rng_cuda`` the state of every CUDA device's generator
    (None without CUDA), so that a run resumed on a GPU draws what it would have drawn.
    """
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return {"rng_cpu": torch.get_rng_state(), "rng_cuda": cuda}


def restore_rng_states(state: dict[str, Any]) -> None:
    """Set the generators from :func:`rng_states`'s entries of a loaded checkpoint.

    A checkpoint loaded with ``map_location`` set to a GPU holds its states as CUDA tensors, which
    the generators refuse ("RNG state must be a torch.ByteTensor"): they are brought back to the
    CPU first.  The CUDA states are restored only when the run has as many CUDA devices as the one
    that saved them (a resume on other hardware draws afresh).
    """
    torch.set_rng_state(state["rng_cpu"].to("cpu", torch.uint8))
    cuda = state.get("rng_cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.to("cpu", torch.uint8) for s in cuda])


def load_checkpoint(
    path: str | Path, expect_config: Any | None = None, map_location: Any = "cpu"
) -> dict[str, Any]:
    """Read and check a checkpoint.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a galae checkpoint, truncated, another format version, another
            latent registry, or (with ``expect_config``) a different model architecture.
    """
    path = Path(path)
    if path.is_dir():
        inside = [p.name for p in (path / "model.pt", path / "last.pt") if p.is_file()]
        raise FileNotFoundError(
            f"{path} is a directory, not a checkpoint file"
            + (f" (it holds {' and '.join(inside)})" if inside else "")
        )
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # truncated / not a torch file
        raise CheckpointError(f"{path} is not a readable checkpoint ({err})") from err
    if not isinstance(state, dict) or state.get("kind") not in ("galae-autoencoder", "galae-unet"):
        raise CheckpointError(f"{path} is not a galae checkpoint")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {state.get('format_version')}, this galae reads "
            f"format {FORMAT_VERSION} (made with galae {state.get('versions', {}).get('galae')})"
        )
    if state["kind"] == "galae-autoencoder" and state["registry"] != registry_layout():
        theirs = [p["name"] for p in state["registry"]]
        ours = list(REGISTRY.names)
        diff = sorted(set(theirs) ^ set(ours)) or "ranges/units/order"
        raise CheckpointError(
            f"{path} was made for another latent registry (differs in: {diff}); "
            "it cannot be used with this version of galae"
        )
    if expect_config is not None:
        mine = config_to_dict(expect_config)
        arch_keys = ("model", "widths", "blocks_per_stage", "hidden", "rank", "likelihood")
        theirs = dict(state["config"])
        if state["kind"] == "galae-autoencoder":  # the renderer's physics, too
            arch_keys += ("disk_history", "birth_clouds")
            theirs["birth_clouds"] = checkpoint_birth_clouds(state)
        diffs = {k: (theirs.get(k), mine.get(k)) for k in arch_keys if theirs.get(k) != mine.get(k)}
        if diffs:
            raise CheckpointError(
                f"{path} comes from another config; differing keys (checkpoint, requested): "
                f"{diffs}. Use another out_dir or resume=false."
            )
    return state


def checkpoint_disk_history(state: dict[str, Any]) -> str:
    """The disk history an autoencoder checkpoint was trained with: its saved
    ``disk_history``, or "single" (one population) for checkpoints made before the choice
    existed."""
    return str(state.get("disk_history", LEGACY_DISK_HISTORY))


def checkpoint_birth_clouds(state: dict[str, Any]) -> str:
    """The birth clouds an autoencoder checkpoint was trained with: its saved
    ``birth_clouds``, or "face_on" for checkpoints made before the choice existed (every
    release up to the twenty-first)."""
    return str(state.get("birth_clouds", LEGACY_BIRTH_CLOUDS))


#: Renderer settings added after the first checkpoints, with the behaviour those were trained with.
_SETTINGS_BEFORE_THEY_EXISTED: dict[str, Any] = {
    "shading_radial_nodes": 0,
    "psf_margin": False,
    "psf_moments": False,
    "psf_moments_central": False,
    "psf_margin_fwhm": 0.0,
    "cusp_table_nodes": 0,
}


def modules_from_state(
    state: dict[str, Any], where: str = "the checkpoint"
) -> tuple[GalaxyModel, GalaxyGuide]:
    """Rebuild model and guide (with weights and prior) from a loaded checkpoint.

    Raises:
        CheckpointError: naming ``where``, when the checkpoint lacks an entry, holds settings
            this galae does not know (a newer version's), weights that do not fit its
            architecture, or bands other than its population table's.
    """
    try:
        return _modules_from_state(state)
    except CheckpointError as err:
        raise CheckpointError(f"{where}: {err}") from err
    except KeyError as err:
        raise CheckpointError(f"{where} lacks the entry {err}: not a complete checkpoint") from err
    except (TypeError, RuntimeError, ValueError) as err:
        raise CheckpointError(
            f"{where} does not fit this galae {galae_version()} (made with galae "
            f"{state.get('versions', {}).get('galae')}): {err}"
        ) from err


def _modules_from_state(state: dict[str, Any]) -> tuple[GalaxyModel, GalaxyGuide]:
    data_info = state["data_info"]
    sps = SPSTable.load(data_info.get("sps_table", "sdss"))
    if tuple(sps.bands) != tuple(data_info["bands"]):
        raise CheckpointError(
            f"its bands {tuple(data_info['bands'])} are not its population table's "
            f"{tuple(sps.bands)} (order matters)"
        )
    # checkpoints written before a setting existed were trained without it: keep their renderer
    saved = {**_SETTINGS_BEFORE_THEY_EXISTED, **state["render_settings"]}
    settings = RenderSettings(**saved)
    renderer = GalaxyRenderer(
        sps,
        settings,
        disk_history=checkpoint_disk_history(state),
        birth_clouds=checkpoint_birth_clouds(state),
    )
    if state["prior_kind"] == "flow":
        prior: torch.nn.Module = FlowPrior(REGISTRY.dim, **state["prior_hparams"])
    else:
        prior = BroadPrior(REGISTRY.dim)
    prior.load_state_dict(state["prior_state"])
    model = GalaxyModel(renderer, prior, state["likelihood"], state["student_df"])
    encoder = GalaxyEncoder(EncoderConfig.from_dict(state["encoder_config"]))
    encoder.load_state_dict(state["encoder_state"])
    guide = GalaxyGuide(encoder)
    model.eval()
    guide.eval()
    return model, guide
