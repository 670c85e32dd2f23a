"""The supervised U-Net baseline: ugriz images -> resolved physical maps, pixel by pixel.

This is the baseline of Buck & Wolf (2021, arXiv:2111.01154): a U-Net trained on SDSS ugriz
mocks with truth maps reconstructs 2-d maps of stellar mass, metallicity and age, gas mass and
metallicity, and star-formation rate (their abstract).
galae keeps it beside the autoencoder so that the two can be compared on the same galaxies.

Input: the noise-aware scaling of the autoencoder (:func:`galae.encoder.prepare_inputs`):
``asinh(image / s) / 3`` per band (s = the band's median pixel sigma), a "masked in any band"
channel and x, y coordinate channels, plus a conditioning vector (log10 s per band, PSF FWHM per
band, redshift and whether it is known).  The conditioning vector modulates every residual block
by FiLM (Perez et al. 2018, AAAI, "FiLM": ``h -> h (1 + gamma(c)) + beta(c)`` after GroupNorm).

Targets: the maps of :data:`galae.physics.maps.MAP_NAMES` that a data set holds.  Each is
transformed (``age_gyr`` is learned as log10 of the age in Gyr, every other map as stored) and
normalised by a fixed range declared once in :data:`TARGET_SPECS`::

    t = clip((transform(y) - low) / (high - low), 0, 1)

Heads (chosen by :attr:`UNetConfig.head`, a registry, see :data:`HEADS`):

* ``"quantized"`` - quantized regression (Guler et al. 2017, "DenseReg", CVPR, sect. 3): the
  range [0, 1] is cut into K bins of width 1/K; per pixel and map the network gives K logits
  and K residuals.  With the true bin k* = floor(t K) and residual r* = t K - k* - 1/2 in
  [-1/2, 1/2] (bin widths), the per-pixel loss is
  ``CE(softmax(logits), k*) + w_res |r_k* - r*|`` (or the squared residual error).
  Prediction (``decode="argmax"``, as DenseReg): ``t = (k + 1/2 + r_k) / K`` of the most
  probable bin k, residual clipped to its bin; ``decode="expectation"``: the
  probability-weighted mean of the K bin estimates.
* ``"l2"`` - plain regression of t with a squared-error loss.

Masked loss: a pixel counts for a map only where it is valid: finite truth, not masked in any
band of the image, with stellar mass (the stellar-mass truth above its floor ``FLOOR_MSTAR``
of :mod:`galae.physics.maps`, when the data set has that map), and above the map's own floor
(SFR and HI).  Each map's loss is its mean over its valid pixels; the total is the mean over
maps.  Outside valid pixels the predictions are unconstrained.

Training (:func:`train_unet`) follows the autoencoder's conventions: HDF5 data, CSV log (and
TensorBoard when importable), atomic resumable ``last.pt`` and a final ``model.pt`` of kind
``"galae-unet"``; :func:`load_unet` returns a :class:`UNetPredictor`.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from galae.config import config_to_dict
from galae.data.hdf5 import GalaxyH5Dataset
from galae.encoder import prepare_inputs
from galae.physics.maps import FLOOR_GAS, FLOOR_MSTAR, FLOOR_SFR, MAP_UNITS

if TYPE_CHECKING:
    from galae.train import TrainConfig

__all__ = [
    "MapSpec",
    "TARGET_SPECS",
    "DEFAULT_TARGETS",
    "MSTAR_MAP",
    "UNetConfig",
    "EncodedTargets",
    "QuantizedTarget",
    "MapLoss",
    "MapBatch",
    "QuantizedHead",
    "L2Head",
    "HEADS",
    "UNet",
    "UNetPredictor",
    "quantize",
    "dequantize",
    "resolve_targets",
    "encode_targets",
    "decode_targets",
    "map_loss",
    "lr_factor",
    "unet_config_from_train",
    "train_unet",
    "load_unet",
]

CHECKPOINT_KIND = "galae-unet"
#: The stellar-mass map that decides whether a pixel holds a galaxy at all.
MSTAR_MAP = "log10_sigma_mstar_msun_per_kpc2"
#: A stored log map within this many dex of its floor counts as "at the floor" (float32 storage).
FLOOR_TOL_DEX: float = 1e-4


# ----------------------------------------------------------------------------------------------
# targets: one declaration of every map's transform, range and floor
# ----------------------------------------------------------------------------------------------
def _identity(x: Tensor) -> Tensor:
    return x


def _pow10(x: Tensor) -> Tensor:
    return torch.pow(10.0, x)


#: transform name -> (stored map -> network quantity, network quantity -> stored map).
_TRANSFORMS: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "identity": (_identity, _identity),
    "log10": (torch.log10, _pow10),
}


@dataclass(frozen=True)
class MapSpec:
    """How one truth map is learned.

    Attributes:
        unit: unit of the stored truth map (as in :data:`galae.physics.maps.MAP_UNITS`).
        transform: key of ``_TRANSFORMS``; the network predicts ``transform(map)``.
        low, high: fixed range of ``transform(map)``, in ``net_unit``; the normalised target
            is ``(transform(map) - low) / (high - low)`` clipped to [0, 1].
        net_unit: unit of ``transform(map)``.
        floor: stored value at or below which a pixel is empty (None: the map has no floor).
        extensive: the map is log10 of a surface density, so sum(10**map) over pixels is
            proportional to the galaxy's total (used for the integrated-property metrics).
    """

    unit: str
    transform: str
    low: float
    high: float
    net_unit: str
    floor: float | None = None
    extensive: bool = False

    def __post_init__(self) -> None:
        if self.transform not in _TRANSFORMS:
            raise ValueError(f"unknown transform {self.transform!r}; known: {sorted(_TRANSFORMS)}")
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low < self.high):
            raise ValueError(f"map range must be finite with low < high, got {self.low, self.high}")

    def to_net(self, y: Tensor) -> Tensor:
        """Stored map (any shape) -> network quantity, in ``net_unit``."""
        return _TRANSFORMS[self.transform][0](y)

    def from_net(self, z: Tensor) -> Tensor:
        """Network quantity (any shape) -> stored map, in ``unit``."""
        return _TRANSFORMS[self.transform][1](z)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: Every learnable map: transform, fixed range and floor.  Ranges bracket the values that
#: galae's mocks produce, with a margin.
TARGET_SPECS: dict[str, MapSpec] = {
    # floor 1e3 Msun/kpc^2 (maps.FLOOR_MSTAR); the densest stellar systems reach
    # ~1e5 Msun/pc^2 = 1e11 Msun/kpc^2 (Hopkins et al. 2010, MNRAS 401, L19, abstract).
    MSTAR_MAP: MapSpec(
        unit=MAP_UNITS[MSTAR_MAP],
        transform="identity",
        low=3.0,
        high=12.0,
        net_unit="dex(Msun/kpc2)",
        floor=math.log10(FLOOR_MSTAR),
        extensive=True,
    ),
    # floor 1e-7 Msun/yr/kpc^2 (maps.FLOOR_SFR); circumnuclear starbursts reach
    # ~1e3 Msun/yr/kpc^2 (Kennicutt 1998, ApJ 498, 541, fig. 6).
    "log10_sigma_sfr_msun_per_yr_per_kpc2": MapSpec(
        unit=MAP_UNITS["log10_sigma_sfr_msun_per_yr_per_kpc2"],
        transform="identity",
        low=-7.0,
        high=3.0,
        net_unit="dex(Msun/yr/kpc2)",
        floor=math.log10(FLOOR_SFR),
        extensive=True,
    ),
    # the maps clamp the disk's log Z/Zsun to [-2.3, 0.69], the span of the population grid.
    "log10_zstar_zsun": MapSpec(
        unit=MAP_UNITS["log10_zstar_zsun"],
        transform="identity",
        low=-2.5,
        high=0.8,
        net_unit="dex(Zsun)",
    ),
    # gas.oh12_profile clamps 12 + log(O/H) to [7.0, 9.6].
    "oh12_gas": MapSpec(
        unit=MAP_UNITS["oh12_gas"],
        transform="identity",
        low=7.0,
        high=9.6,
        net_unit="12+log(O/H)",
    ),
    # learned as log10(age / Gyr): ages span 10 Myr .. the age of the Universe, 13.8 Gyr
    # (Planck Collaboration 2020, A&A 641, A6, table 2), and a log makes the error relative.
    "age_gyr": MapSpec(
        unit=MAP_UNITS["age_gyr"], transform="log10", low=-2.0, high=1.2, net_unit="dex(Gyr)"
    ),
    # floor 1e-3 Msun/pc^2 (maps.FLOOR_GAS); the Kennicutt-Schmidt inversion of 1e3
    # Msun/yr/kpc^2 gives ~1e4.7 Msun/pc^2 of gas (gas.py).
    "log10_sigma_gas_msun_per_pc2": MapSpec(
        unit=MAP_UNITS["log10_sigma_gas_msun_per_pc2"],
        transform="identity",
        low=-3.0,
        high=5.0,
        net_unit="dex(Msun/pc2)",
        floor=math.log10(FLOOR_GAS),
        extensive=True,
    ),
    # floor 1e-3 Msun/pc^2; HI saturates near 9 Msun/pc^2 (Bigiel et al. 2008, AJ 136, 2846,
    # sect. 4.2).
    "log10_sigma_hi_msun_per_pc2": MapSpec(
        unit=MAP_UNITS["log10_sigma_hi_msun_per_pc2"],
        transform="identity",
        low=-3.0,
        high=1.5,
        net_unit="dex(Msun/pc2)",
        floor=math.log10(FLOOR_GAS),
        extensive=True,
    ),
    "av_mag": MapSpec(
        unit=MAP_UNITS["av_mag"], transform="identity", low=0.0, high=5.0, net_unit="mag"
    ),
}

#: The maps learned by default (those present in the data set): the stellar and gas maps of
#: Buck & Wolf (2021), with HI standing for their gas mass.
DEFAULT_TARGETS: tuple[str, ...] = (
    MSTAR_MAP,
    "log10_sigma_sfr_msun_per_yr_per_kpc2",
    "log10_zstar_zsun",
    "oh12_gas",
    "age_gyr",
    "log10_sigma_hi_msun_per_pc2",
)


def resolve_targets(available: Sequence[str], requested: Sequence[str]) -> tuple[str, ...]:
    """The requested maps that a data set holds, in requested order.

    Raises:
        ValueError: a requested name has no :data:`TARGET_SPECS` entry, or none of the
            requested maps is in the data set (the message names the missing maps).
    """
    unknown = [n for n in requested if n not in TARGET_SPECS]
    if unknown:
        raise ValueError(f"unknown target map(s) {unknown}; known: {sorted(TARGET_SPECS)}")
    found = tuple(n for n in requested if n in set(available))
    if not found:
        raise ValueError(
            f"the data set has none of the truth maps the U-Net learns; missing: {list(requested)}"
            f" (it has truth maps {sorted(available) or 'none'})"
        )
    return found


# ----------------------------------------------------------------------------------------------
# config
# ----------------------------------------------------------------------------------------------
_RESIDUAL_LOSSES: dict[str, Callable[[Tensor], Tensor]] = {
    "l1": torch.abs,
    "l2": torch.square,
}


@dataclass(frozen=True)
class UNetConfig:
    """Architecture and head of :class:`UNet` (defaults used by :func:`train_unet`).

    Attributes:
        n_bands: number of image bands C.
        targets: names of the predicted maps (keys of :data:`TARGET_SPECS`), M of them.
        widths: channels per level; level i works at 1 / 2**i of the stamp resolution, the
            last is the bottleneck (4 levels by default).
        blocks_per_level: FiLM residual blocks per level on the way down and up.
        groups: GroupNorm groups (reduced to a divisor of each width).
        cond_dim: width of the conditioning embedding fed to FiLM.
        head: key of :data:`HEADS`: "quantized" (DenseReg) or "l2".
        n_bins: K, bins of the quantized head.
        residual_loss: "l1" or "l2" loss on the residual of the true bin.
        residual_weight: weight of the residual loss against the bin cross-entropy.
        decode: quantized prediction rule, "argmax" (DenseReg) or "expectation".
        augment: random flips / 90-degree rotations of each training batch (images and maps
            together; a rotation needs H == W).
    """

    n_bands: int = 5
    targets: tuple[str, ...] = DEFAULT_TARGETS
    widths: tuple[int, ...] = (32, 64, 96, 128)
    blocks_per_level: int = 1
    groups: int = 8
    cond_dim: int = 64
    head: str = "quantized"
    n_bins: int = 32
    residual_loss: str = "l1"
    residual_weight: float = 1.0
    decode: str = "argmax"
    augment: bool = True

    def __post_init__(self) -> None:
        if self.n_bands < 1:
            raise ValueError(f"n_bands must be >= 1, got {self.n_bands}")
        if not self.targets:
            raise ValueError("targets must name at least one map")
        unknown = [n for n in self.targets if n not in TARGET_SPECS]
        if unknown:
            raise ValueError(f"unknown target map(s) {unknown}; known: {sorted(TARGET_SPECS)}")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError(f"duplicate target maps in {list(self.targets)}")
        if len(self.widths) < 2 or min(self.widths) < 1:
            raise ValueError(f"widths needs >= 2 positive levels, got {list(self.widths)}")
        if self.blocks_per_level < 1 or self.groups < 1 or self.cond_dim < 1:
            raise ValueError("blocks_per_level, groups and cond_dim must be >= 1")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; known: {sorted(HEADS)}")
        if self.n_bins < 2:
            raise ValueError(f"n_bins must be >= 2, got {self.n_bins}")
        if self.residual_loss not in _RESIDUAL_LOSSES:
            raise ValueError(
                f"unknown residual_loss {self.residual_loss!r}; known: {sorted(_RESIDUAL_LOSSES)}"
            )
        if not (math.isfinite(self.residual_weight) and self.residual_weight >= 0):
            raise ValueError(f"residual_weight must be >= 0, got {self.residual_weight}")
        if self.decode not in _DECODERS:
            raise ValueError(f"unknown decode {self.decode!r}; known: {sorted(_DECODERS)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UNetConfig:
        d = dict(d)
        d["targets"] = tuple(d["targets"])
        d["widths"] = tuple(d["widths"])
        return cls(**d)


#: TrainConfig key -> UNetConfig field; used when TrainConfig has the key, else the default.
_TRAIN_KEYS: dict[str, str] = {
    "unet_targets": "targets",
    "unet_head": "head",
    "unet_bins": "n_bins",
    "unet_residual_loss": "residual_loss",
    "unet_residual_weight": "residual_weight",
    "unet_decode": "decode",
    "unet_augment": "augment",
    "unet_blocks_per_level": "blocks_per_level",
    "unet_cond_dim": "cond_dim",
}


def unet_config_from_train(cfg: Any, n_bands: int, targets: Sequence[str]) -> UNetConfig:
    """:class:`UNetConfig` for a training config: ``widths`` from ``cfg``, the listed ``unet_*``
    keys where ``cfg`` has them, the defaults otherwise; ``targets`` as resolved on the data."""
    extra: dict[str, Any] = {
        field: getattr(cfg, key) for key, field in _TRAIN_KEYS.items() if hasattr(cfg, key)
    }
    extra.pop("targets", None)  # the resolved targets win over the requested ones
    return UNetConfig(n_bands=n_bands, targets=tuple(targets), widths=tuple(cfg.widths), **extra)


def requested_targets(cfg: Any) -> tuple[str, ...]:
    """Target maps asked for by a training config (``unet_targets`` if it has the key)."""
    value = getattr(cfg, "unet_targets", None)
    return DEFAULT_TARGETS if value is None else tuple(value)


# ----------------------------------------------------------------------------------------------
# target encoding
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedTargets:
    """Normalised targets and their validity.

    Attributes:
        t: (B, M, H, W) normalised targets in [0, 1] (dimensionless); 0 where invalid.
        valid: (B, M, H, W) bool, True where the pixel counts for that map's loss.
    """

    t: Tensor
    valid: Tensor


def _ordered_specs(
    targets: Sequence[str], specs: Mapping[str, MapSpec] | None
) -> list[tuple[str, MapSpec]]:
    table = TARGET_SPECS if specs is None else specs
    missing = [n for n in targets if n not in table]
    if missing:
        raise ValueError(f"no normalisation declared for map(s) {missing}")
    return [(n, table[n]) for n in targets]


def encode_targets(
    maps: Mapping[str, Tensor],
    targets: Sequence[str],
    image_mask: Tensor | None = None,
    specs: Mapping[str, MapSpec] | None = None,
) -> EncodedTargets:
    """Truth maps -> normalised targets and per-map validity masks.

    Args:
        maps: {name: (B, H, W)} stored truth maps; must hold every name in ``targets`` and may
            hold :data:`MSTAR_MAP` (used for the "has stars" mask even if not a target).
        targets: the M map names, in output order.
        image_mask: (B, C, H, W) bool, True = masked pixel; a pixel masked in any band is
            invalid for every map.
        specs: normalisation per map (default :data:`TARGET_SPECS`).

    Returns:
        :class:`EncodedTargets` with ``t`` (B, M, H, W) and ``valid`` (B, M, H, W).

    Raises:
        ValueError: a target map is missing or the shapes disagree.
    """
    missing = [n for n in targets if n not in maps]
    if missing:
        raise ValueError(f"truth maps missing: {missing}")
    pairs = _ordered_specs(targets, specs)
    ref = maps[targets[0]]
    if ref.dim() != 3:
        raise ValueError(f"truth maps must be (B, H, W), got {tuple(ref.shape)}")
    base = torch.ones_like(ref, dtype=torch.bool)
    if image_mask is not None:
        if image_mask.dim() != 4 or image_mask.shape[-2:] != ref.shape[-2:]:
            raise ValueError(
                f"image_mask must be (B, C, H, W) matching maps {tuple(ref.shape)}, "
                f"got {tuple(image_mask.shape)}"
            )
        base = base & ~image_mask.bool().any(1)
    if MSTAR_MAP in maps:
        mstar_spec = (specs or TARGET_SPECS).get(MSTAR_MAP, TARGET_SPECS[MSTAR_MAP])
        m = maps[MSTAR_MAP]
        has_stars = torch.isfinite(m)
        if mstar_spec.floor is not None:
            has_stars = has_stars & (m > mstar_spec.floor + FLOOR_TOL_DEX)
        base = base & has_stars
    ts: list[Tensor] = []
    oks: list[Tensor] = []
    for name, spec in pairs:
        y = maps[name]
        if y.shape != ref.shape:
            raise ValueError(
                f"truth map {name} has shape {tuple(y.shape)}, expected {tuple(ref.shape)}"
            )
        ok = base & torch.isfinite(y)
        if spec.floor is not None:
            ok = ok & (y > spec.floor + FLOOR_TOL_DEX)
        safe = torch.where(ok, y, torch.ones_like(y))
        z = spec.to_net(safe)
        ok = ok & torch.isfinite(z)
        t = ((z - spec.low) / (spec.high - spec.low)).clamp(0.0, 1.0)
        ts.append(torch.where(ok, t, torch.zeros_like(t)))
        oks.append(ok)
    return EncodedTargets(t=torch.stack(ts, 1), valid=torch.stack(oks, 1))


def decode_targets(
    t: Tensor, targets: Sequence[str], specs: Mapping[str, MapSpec] | None = None
) -> dict[str, Tensor]:
    """Normalised predictions (B, M, H, W) -> {name: (B, H, W)} in the stored maps' units."""
    if t.dim() != 4 or t.shape[1] != len(targets):
        raise ValueError(
            f"expected (B, {len(targets)}, H, W) normalised maps, got {tuple(t.shape)}"
        )
    return {
        name: spec.from_net(spec.low + t[:, i] * (spec.high - spec.low))
        for i, (name, spec) in enumerate(_ordered_specs(targets, specs))
    }


# ----------------------------------------------------------------------------------------------
# heads
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QuantizedTarget:
    """A normalised value as (bin, residual).

    Attributes:
        bin_index: (...) int64 bin k in [0, K).
        residual: (...) offset from the bin centre in bin widths, in [-1/2, 1/2].
    """

    bin_index: Tensor
    residual: Tensor


def quantize(t: Tensor, n_bins: int) -> QuantizedTarget:
    """t in [0, 1] (any shape) -> bin ``k = min(floor(t K), K - 1)``, residual ``t K - k - 1/2``."""
    scaled = t.clamp(0.0, 1.0) * n_bins
    k = scaled.floor().clamp(0, n_bins - 1)
    return QuantizedTarget(bin_index=k.long(), residual=scaled - k - 0.5)


def dequantize(bin_index: Tensor, residual: Tensor, n_bins: int) -> Tensor:
    """(bin k, residual r in bin widths) -> t = (k + 1/2 + r) / K."""
    return (bin_index.to(residual.dtype) + 0.5 + residual) / n_bins


def _decode_argmax(logits: Tensor, residual: Tensor, n_bins: int) -> Tensor:
    k = logits.argmax(2, keepdim=True)
    r = residual.gather(2, k).clamp(-0.5, 0.5)
    return dequantize(k, r, n_bins).squeeze(2)


def _decode_expectation(logits: Tensor, residual: Tensor, n_bins: int) -> Tensor:
    p = logits.softmax(2)
    centres = torch.arange(n_bins, dtype=logits.dtype, device=logits.device).view(1, 1, -1, 1, 1)
    return (p * dequantize(centres, residual.clamp(-0.5, 0.5), n_bins)).sum(2)


#: quantized prediction rule -> (logits (B, M, K, H, W), residuals (B, M, K, H, W), K) -> t.
_DECODERS: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "argmax": _decode_argmax,
    "expectation": _decode_expectation,
}


@dataclass(frozen=True)
class QuantizedHead:
    """DenseReg quantized regression (Guler et al. 2017): K bin logits + K residuals per map.

    Network output per map: ``out[:, m, :K]`` logits, ``out[:, m, K:]`` residuals (bin widths).
    """

    n_bins: int
    residual_loss: str = "l1"
    residual_weight: float = 1.0
    decode_rule: str = "argmax"

    @property
    def channels(self) -> int:
        return 2 * self.n_bins

    def pixel_loss(self, out: Tensor, t: Tensor) -> Tensor:
        """out (B, M, 2K, H, W), t (B, M, H, W) in [0, 1] -> loss (B, M, H, W):
        ``-log p_k* + w |r_k* - r*|`` (or squared)."""
        k = self.n_bins
        logits, resid = out[:, :, :k], out[:, :, k:]
        q = quantize(t, k)
        idx = q.bin_index.unsqueeze(2)
        ce = -logits.log_softmax(2).gather(2, idx).squeeze(2)
        r_err = resid.gather(2, idx).squeeze(2) - q.residual
        return ce + self.residual_weight * _RESIDUAL_LOSSES[self.residual_loss](r_err)

    def decode(self, out: Tensor) -> Tensor:
        """out (B, M, 2K, H, W) -> predicted t (B, M, H, W)."""
        k = self.n_bins
        return _DECODERS[self.decode_rule](out[:, :, :k], out[:, :, k:], k)


@dataclass(frozen=True)
class L2Head:
    """Plain regression of the normalised target: one channel per map, squared error."""

    @property
    def channels(self) -> int:
        return 1

    def pixel_loss(self, out: Tensor, t: Tensor) -> Tensor:
        """out (B, M, 1, H, W), t (B, M, H, W) -> (out - t)^2 (B, M, H, W)."""
        return torch.square(out[:, :, 0] - t)

    def decode(self, out: Tensor) -> Tensor:
        """out (B, M, 1, H, W) -> t (B, M, H, W)."""
        return out[:, :, 0]


Head = QuantizedHead | L2Head

#: head name -> constructor from a :class:`UNetConfig`.
HEADS: dict[str, Callable[[UNetConfig], Head]] = {
    "quantized": lambda c: QuantizedHead(c.n_bins, c.residual_loss, c.residual_weight, c.decode),
    "l2": lambda c: L2Head(),
}


@dataclass(frozen=True)
class MapLoss:
    """Masked loss.

    Attributes:
        total: () mean of ``per_map`` (dimensionless).
        per_map: (M,) mean pixel loss of each map over its valid pixels (0 if it has none).
        n_valid: (M,) number of valid pixels per map.
    """

    total: Tensor
    per_map: Tensor
    n_valid: Tensor


def map_loss(head: Head, out: Tensor, targets: EncodedTargets) -> MapLoss:
    """Masked per-map loss; invalid pixels contribute exactly zero loss and zero gradient.

    ``per_map[m] = sum_{valid} loss / max(n_valid, 1)``, ``total = mean_m per_map[m]``.
    """
    pix = head.pixel_loss(out, targets.t)
    pix = torch.where(targets.valid, pix, torch.zeros_like(pix))
    n_valid = targets.valid.sum((0, 2, 3))
    per_map = pix.sum((0, 2, 3)) / n_valid.clamp_min(1).to(pix.dtype)
    return MapLoss(total=per_map.mean(), per_map=per_map, n_valid=n_valid)


# ----------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------
def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(groups, channels), channels)


class _FiLMResBlock(nn.Module):
    """conv-GN-FiLM-SiLU-conv-GN + skip, SiLU.  FiLM starts as the identity (zero init)."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False)
        self.n1 = _norm(c_out, groups)
        self.film = nn.Linear(cond_dim, 2 * c_out)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.n2 = _norm(c_out, groups)
        self.skip: nn.Module = (
            nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        """x (B, c_in, h, w), emb (B, cond_dim) -> (B, c_out, h, w)."""
        gamma, beta = self.film(emb)[..., None, None].chunk(2, 1)
        y = F.silu(self.n1(self.conv1(x)) * (1.0 + gamma) + beta)
        y = self.n2(self.conv2(y))
        return F.silu(y + self.skip(x))


class _Level(nn.Module):
    """A sequence of FiLM residual blocks sharing the conditioning embedding."""

    def __init__(self, c_in: int, c_out: int, n: int, cond_dim: int, groups: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            _FiLMResBlock(c_in if i == 0 else c_out, c_out, cond_dim, groups) for i in range(n)
        )

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x, emb)
        return x


class UNet(nn.Module):
    """Residual U-Net with FiLM conditioning: images -> per-map head outputs.

    ``len(widths)`` levels (4 by default): level 0 at full resolution, each further level
    halves it (strided 3x3 convolution) and the last is the bottleneck; the way up doubles the
    resolution (nearest upsampling + 3x3 convolution), concatenates the skip of the same level
    and applies residual blocks.  Stamps whose size is not a multiple of 2**(levels-1) are
    zero-padded (bottom/right, marked as masked) and the output cropped back.
    """

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        cfg = config
        self.head: Head = HEADS[cfg.head](cfg)
        w = cfg.widths
        n_cond = 2 * cfg.n_bands + 2
        self.cond_mlp = nn.Sequential(
            nn.Linear(n_cond, cfg.cond_dim), nn.SiLU(), nn.Linear(cfg.cond_dim, cfg.cond_dim)
        )
        self.stem = nn.Conv2d(cfg.n_bands + 3, w[0], 3, 1, 1)
        nb, cd, g = cfg.blocks_per_level, cfg.cond_dim, cfg.groups
        self.down_levels = nn.ModuleList([_Level(w[0], w[0], nb, cd, g)])
        self.downsample = nn.ModuleList()
        for i in range(1, len(w)):
            self.downsample.append(nn.Conv2d(w[i - 1], w[i], 3, 2, 1))
            self.down_levels.append(_Level(w[i], w[i], nb, cd, g))
        self.upsample = nn.ModuleList()
        self.up_levels = nn.ModuleList()
        for i in range(len(w) - 2, -1, -1):
            self.upsample.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(w[i + 1], w[i], 3, 1, 1)
                )
            )
            self.up_levels.append(_Level(2 * w[i], w[i], nb, cd, g))
        self.out_norm = _norm(w[0], g)
        m = len(cfg.targets)
        self.out_conv = nn.Conv2d(w[0], m * self.head.channels, 1)
        self.out_conv.weight.data.mul_(0.1)
        nn.init.zeros_(self.out_conv.bias)

    @property
    def multiple(self) -> int:
        """Stamp sizes are padded to a multiple of this."""
        return 2 ** (len(self.config.widths) - 1)

    def forward(
        self,
        images: Tensor,
        sigma: Tensor,
        mask: Tensor | None,
        psf_fwhm_arcsec: Tensor,
        redshift: Tensor | None,
    ) -> Tensor:
        """Head outputs for every map.

        Args:
            images: (B, C, H, W) nmgy per pixel.
            sigma: (B, C, H, W) 1-sigma noise, nmgy.
            mask: (B, C, H, W) bool, True = ignored, or None.
            psf_fwhm_arcsec: (B, C).
            redshift: (B,) (NaN = unknown) or None.

        Returns:
            (B, M, head.channels, H, W) raw head outputs (see :attr:`head`).
        """
        if images.dim() != 4 or images.shape[1] != self.config.n_bands:
            raise ValueError(
                f"U-Net expects images (B, {self.config.n_bands}, H, W) "
                f"({self.config.n_bands} bands), got {tuple(images.shape)}"
            )
        b, c, h, w = images.shape
        x, cond = prepare_inputs(images, sigma, mask, psf_fwhm_arcsec, redshift)
        mult = self.multiple
        ph, pw = (-h) % mult, (-w) % mult
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
            pad = torch.ones(1, 1, h + ph, w + pw, dtype=x.dtype, device=x.device)
            pad[..., :h, :w] = 0.0
            x = torch.cat([x[:, :c], x[:, c : c + 1] + pad, x[:, c + 1 :]], 1)
        emb = self.cond_mlp(cond)
        y = self.down_levels[0](self.stem(x), emb)
        skips = [y]
        for down, level in zip(self.downsample, self.down_levels[1:], strict=True):
            y = level(down(y), emb)
            skips.append(y)
        skips.pop()  # the bottleneck output is not a skip
        for up, level in zip(self.upsample, self.up_levels, strict=True):
            y = level(torch.cat([up(y), skips.pop()], 1), emb)
        out = self.out_conv(F.silu(self.out_norm(y)))[..., :h, :w]
        return out.reshape(b, len(self.config.targets), self.head.channels, h, w)

    def predict_normalized(
        self,
        images: Tensor,
        sigma: Tensor,
        mask: Tensor | None,
        psf_fwhm_arcsec: Tensor,
        redshift: Tensor | None,
    ) -> Tensor:
        """Decoded normalised maps (B, M, H, W) (see :meth:`forward` for the arguments)."""
        return self.head.decode(self.forward(images, sigma, mask, psf_fwhm_arcsec, redshift))


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MapBatch:
    """A batch of B galaxies with truth maps.

    Attributes:
        images, sigma: (B, C, H, W) nmgy per pixel.
        mask: (B, C, H, W) bool, True = ignored.
        psf_fwhm_arcsec: (B, C).
        redshift: (B,), NaN = unknown.
        maps: {name: (B, H, W)} stored truth maps (targets and, when present, MSTAR_MAP).
        index: (B,) int64 rows of the data file.
    """

    images: Tensor
    sigma: Tensor
    mask: Tensor
    psf_fwhm_arcsec: Tensor
    redshift: Tensor
    maps: dict[str, Tensor]
    index: Tensor

    def to(self, device: torch.device | str) -> MapBatch:
        return MapBatch(
            images=self.images.to(device),
            sigma=self.sigma.to(device),
            mask=self.mask.to(device),
            psf_fwhm_arcsec=self.psf_fwhm_arcsec.to(device),
            redshift=self.redshift.to(device),
            maps={k: v.to(device) for k, v in self.maps.items()},
            index=self.index.to(device),
        )

    def transformed(self, k: int) -> MapBatch:
        """The dihedral transform k in [0, 8) of all pixel arrays: k % 4 quarter turns, then a
        left-right flip when k >= 4."""

        def f(x: Tensor) -> Tensor:
            y = torch.rot90(x, k % 4, dims=(-2, -1))
            return torch.flip(y, dims=(-1,)) if k >= 4 else y

        return dataclasses.replace(
            self,
            images=f(self.images),
            sigma=f(self.sigma),
            mask=f(self.mask),
            maps={n: f(v) for n, v in self.maps.items()},
        )


class MapCollator:
    """Collate :class:`GalaxyH5Dataset` items into a :class:`MapBatch` (picklable)."""

    def __init__(self, map_names: Sequence[str]) -> None:
        self.map_names = tuple(map_names)

    def __call__(self, items: list[dict[str, Any]]) -> MapBatch:
        return MapBatch(
            images=torch.stack([it["image"] for it in items]),
            sigma=torch.stack([it["sigma"] for it in items]),
            mask=torch.stack([it["mask"] for it in items]),
            psf_fwhm_arcsec=torch.stack([it["psf_fwhm_arcsec"] for it in items]),
            redshift=torch.stack([it["redshift"] for it in items]).reshape(-1),
            maps={n: torch.stack([it["maps"][n] for it in items]) for n in self.map_names},
            index=torch.stack([it["index"] for it in items]),
        )


def _check_dataset(ds: GalaxyH5Dataset, requested: Sequence[str]) -> tuple[str, ...]:
    """Targets present in ``ds``; clear errors for data the U-Net cannot learn from."""
    if not ds.info.has_psf_fwhm:
        raise ValueError(f"{ds.path}: the U-Net needs psf_fwhm_arcsec per galaxy and band")
    targets = resolve_targets(ds.info.truth_map_names, requested)
    skipped = [n for n in requested if n not in targets]
    if skipped:
        print(f"{ds.path}: no truth maps {skipped}; learning {list(targets)}", file=sys.stderr)
    return targets


# ----------------------------------------------------------------------------------------------
# training helpers
# ----------------------------------------------------------------------------------------------
def lr_factor(step: int, warmup_steps: int, max_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up to 1, then cosine decay to 0.05 at max_steps."""
    if step < warmup_steps:
        return (step + 1) / max(warmup_steps, 1)
    frac = min((step - warmup_steps) / max(max_steps - warmup_steps, 1), 1.0)
    return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * frac))


class _CsvLog:
    """log.csv with a fixed header (blank where a value was not computed); TensorBoard too."""

    def __init__(self, out_dir: Path, fields: Sequence[str], tensorboard: bool) -> None:
        self.path = out_dir / "log.csv"
        self.fields = ["step", *fields]
        self.tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"))
            except ImportError:
                print("tensorboard is not installed; logging to CSV only", file=sys.stderr)

    def log(self, step: int, scalars: Mapping[str, float]) -> None:
        new = not self.path.exists()
        with self.path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({"step": step, **scalars})
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _train_fields(targets: Sequence[str]) -> list[str]:
    fields = ["loss", *(f"loss_{n}" for n in targets), "grad_norm", "lr", "val_loss"]
    fields += [f"val_mae_{n}" for n in targets]
    fields += [
        f"val_total_{s}_dex_{n}"
        for n in targets
        if TARGET_SPECS[n].extensive
        for s in ("bias", "scatter")
    ]
    return fields


@torch.no_grad()
def evaluate_maps(
    model: UNet, loader: DataLoader, device: torch.device, specs: Mapping[str, MapSpec]
) -> dict[str, float]:
    """Validation metrics over a loader.

    * ``val_loss``: the masked training loss, averaged over batches;
    * ``val_mae_<map>``: mean |prediction - truth| over valid pixels, in the map's network
      unit (dex for log maps and for age);
    * ``val_total_bias_dex_<map>``, ``val_total_scatter_dex_<map>`` (surface densities): mean
      and standard deviation over galaxies of log10(sum 10**pred / sum 10**truth) over the
      valid pixels - the integrated-property error that Buck & Wolf (2021) quote.
    """
    targets = model.config.targets
    was_training = model.training
    model.eval()
    abs_sum = torch.zeros(len(targets), dtype=torch.float64)
    count = torch.zeros(len(targets), dtype=torch.float64)
    totals: dict[str, list[Tensor]] = {n: [] for n in targets if specs[n].extensive}
    losses: list[float] = []
    for batch in loader:
        batch = batch.to(device)
        enc = encode_targets(batch.maps, targets, batch.mask, specs)
        out = model(batch.images, batch.sigma, batch.mask, batch.psf_fwhm_arcsec, batch.redshift)
        losses.append(map_loss(model.head, out.float(), enc).total.item())
        t_pred = model.head.decode(out.float())
        for i, (name, spec) in enumerate((n, specs[n]) for n in targets):
            scale = spec.high - spec.low
            ok = enc.valid[:, i]
            z_pred = spec.low + t_pred[:, i] * scale
            z_true = spec.to_net(torch.where(ok, batch.maps[name], torch.ones_like(z_pred)))
            err = torch.where(ok, (z_pred - z_true).abs(), torch.zeros_like(z_pred))
            abs_sum[i] += err.sum().double().cpu()
            count[i] += ok.sum().double().cpu()
            if spec.extensive:
                neg = torch.full_like(z_pred, -torch.inf)
                lt_pred = torch.logsumexp(torch.where(ok, z_pred, neg).flatten(1) * math.log(10), 1)
                lt_true = torch.logsumexp(torch.where(ok, z_true, neg).flatten(1) * math.log(10), 1)
                has = ok.flatten(1).any(1)
                totals[name].append(((lt_pred - lt_true) / math.log(10))[has].double().cpu())
    model.train(was_training)
    out_metrics: dict[str, float] = {"val_loss": float(np.mean(losses)) if losses else math.nan}
    for i, name in enumerate(targets):
        out_metrics[f"val_mae_{name}"] = (abs_sum[i] / count[i]).item() if count[i] else math.nan
    for name, diffs in totals.items():
        d = torch.cat(diffs) if diffs else torch.zeros(0, dtype=torch.float64)
        out_metrics[f"val_total_bias_dex_{name}"] = d.mean().item() if d.numel() else math.nan
        out_metrics[f"val_total_scatter_dex_{name}"] = (
            d.std(unbiased=False).item() if d.numel() else math.nan
        )
    return out_metrics


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch: a permutation seeded by (seed, epoch), full batches only."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=gen).tolist()
    n_batches = max(n // batch_size, 1)
    return [perm[i * batch_size : (i + 1) * batch_size] for i in range(n_batches)]


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary file, then rename (an interruption never leaves half a file)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _checkpoint_state(
    cfg: Any,
    ucfg: UNetConfig,
    data_info: Mapping[str, Any],
    model: UNet,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> dict[str, Any]:
    from galae.checkpoint import FORMAT_VERSION, rng_states, versions

    specs = {n: TARGET_SPECS[n].to_dict() for n in ucfg.targets}
    state: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": CHECKPOINT_KIND,
        "config": config_to_dict(cfg),
        "loss_terms": f"supervised-maps ({ucfg.head} head)",
        "versions": versions(),
        "data_info": dict(data_info),
        "unet_config": ucfg.to_dict(),
        "targets": list(ucfg.targets),
        "normalisation": specs,
        "model_state": model.state_dict(),
        "step": step,
        **rng_states(),
    }
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
        state["scheduler"] = scheduler.state_dict()
    return state


def train_unet(cfg: TrainConfig) -> Path:
    """Train (or resume) the map U-Net and return the path of the final ``model.pt``.

    Reads from ``cfg``: data, mock_config, mock_n, val_fraction, batch_size, max_steps,
    max_minutes, lr, weight_decay, warmup_steps, grad_clip, amp, out_dir, seed, device,
    log_every, eval_every, ckpt_every, resume, overwrite, tensorboard, progress, num_workers,
    widths; the rest of the U-Net comes from :class:`UNetConfig` (see
    :func:`unet_config_from_train`).

    Deterministic given the seed: epoch e visits the training galaxies in a permutation seeded
    by (seed, e), and step s uses the augmentation seeded by (seed, s), so a resumed run sees
    the same batches as an uninterrupted one.

    Raises:
        ValueError: the data set has no usable truth maps (the message names them) or no
            PSF FWHM; ``cfg.model`` is not "unet"; the run is launched on several processes.
        CheckpointError: ``last.pt`` in ``out_dir`` comes from another model or config.
    """
    from galae.checkpoint import CheckpointError, load_checkpoint, restore_rng_states
    from galae.data.loader import ensure_data
    from galae.train import check_run_inputs, clear_run, set_aside_stale_log

    if cfg.model != "unet":
        raise ValueError(f"train_unet trains model 'unet', the config asks for {cfg.model!r}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("the U-Net baseline trains in one process; run it without torchrun")
    device = check_run_inputs(cfg)  # device, data source, out_dir: before anything is written
    out_dir = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)

    path = ensure_data(cfg.data, cfg.mock_config, cfg.mock_n, cfg.seed)
    full = GalaxyH5Dataset(path, with_maps=True)
    targets = _check_dataset(full, requested_targets(cfg))
    ucfg = unet_config_from_train(cfg, len(full.bands), targets)
    specs = {n: TARGET_SPECS[n] for n in targets}
    if cfg.val_fraction > 0:
        train_ds, val_ds = full.split((1.0 - cfg.val_fraction, cfg.val_fraction), seed=cfg.seed)
    else:
        train_ds, val_ds = full, None
    if len(train_ds) == 0:
        raise ValueError(
            f"{path}: no training galaxies (N={len(full)}, val_fraction={cfg.val_fraction})"
        )
    map_names = targets + (
        (MSTAR_MAP,) if MSTAR_MAP in full.info.truth_map_names and MSTAR_MAP not in targets else ()
    )
    collate = MapCollator(map_names)
    batch_size = min(cfg.batch_size, len(train_ds))
    val_loader = None
    if val_ds is not None and len(val_ds) > 0:
        val_loader = DataLoader(val_ds, batch_size=batch_size, shuffle=False, collate_fn=collate)
    data_info = {
        "bands": list(full.bands),
        "pixel_scale_arcsec": float(full.pixel_scale_arcsec),
        "shape": list(full.image_shape),
        "n_train": len(train_ds),
        "data": str(path),
    }

    model = UNet(ucfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.max_steps)
    )
    # made only now, so that a run refused for its inputs (or its data) leaves no out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if getattr(cfg, "overwrite", False):
        clear_run(out_dir)
    set_aside_stale_log(out_dir)
    step = 0
    last = out_dir / "last.pt"
    if cfg.resume and last.exists():
        state = load_checkpoint(last, expect_config=cfg, map_location=device)
        if state["kind"] != CHECKPOINT_KIND:
            raise CheckpointError(
                f"{last} is a {state['kind']} checkpoint, not a {CHECKPOINT_KIND}"
            )
        if state["unet_config"] != ucfg.to_dict():
            theirs, mine = state["unet_config"], ucfg.to_dict()
            diffs = {k: (theirs.get(k), mine[k]) for k in mine if theirs.get(k) != mine[k]}
            raise CheckpointError(
                f"{last} comes from another U-Net config; differing (checkpoint, requested): "
                f"{diffs}. Use another out_dir or resume=false."
            )
        if state["normalisation"] != {n: s.to_dict() for n, s in specs.items()}:
            raise CheckpointError(
                f"{last} was trained with another target normalisation "
                f"({state['normalisation']}); use another out_dir or resume=false"
            )
        model.load_state_dict(state["model_state"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step = int(state["step"])
        restore_rng_states(state)
        print(f"resumed from {last} at step {step}")

    log = _CsvLog(out_dir, _train_fields(targets), cfg.tensorboard)
    amp_ctx = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if (cfg.amp and device.type == "cuda")
        else torch.autocast("cpu", enabled=False)
    )
    square = full.image_shape[0] == full.image_shape[1]
    steps_per_epoch = max(len(train_ds) // batch_size, 1)
    bar = tqdm(total=cfg.max_steps, initial=step, desc="train unet", disable=not cfg.progress)
    t_start = time.time()
    stop = step >= cfg.max_steps
    model.train()
    while not stop:
        epoch, skip = divmod(step, steps_per_epoch)
        batches = _epoch_batches(len(train_ds), batch_size, cfg.seed, epoch)[skip:]
        loader = DataLoader(
            train_ds, batch_sampler=batches, num_workers=cfg.num_workers, collate_fn=collate
        )
        for batch in loader:
            batch = batch.to(device)
            if ucfg.augment:
                gen = torch.Generator().manual_seed(cfg.seed * 7919 + step)
                k = int(torch.randint(0, 8, (), generator=gen))
                batch = batch.transformed(k if square else (k // 2) * 2)
            enc = encode_targets(batch.maps, targets, batch.mask, specs)
            with amp_ctx:
                out = model(
                    batch.images, batch.sigma, batch.mask, batch.psf_fwhm_arcsec, batch.redshift
                )
            loss = map_loss(model.head, out.float(), enc)
            if not torch.isfinite(loss.total):
                raise FloatingPointError(f"non-finite loss at step {step}: {loss.per_map.tolist()}")
            opt.zero_grad(set_to_none=True)
            loss.total.backward()
            gnorm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            scalars: dict[str, float] = {"loss": loss.total.item()}
            scalars.update(
                {f"loss_{n}": v for n, v in zip(targets, loss.per_map.tolist(), strict=True)}
            )
            scalars["grad_norm"] = float(gnorm)
            scalars["lr"] = sched.get_last_lr()[0]
            evaluated = val_loader is not None and (
                step % cfg.eval_every == 0 or step == cfg.max_steps
            )
            if evaluated:
                scalars.update(evaluate_maps(model, val_loader, device, specs))
            if step % cfg.log_every == 0 or evaluated:
                log.log(step, scalars)
                bar.set_postfix(
                    {k: f"{v:.3g}" for k, v in scalars.items() if k in ("loss", "val_loss")}
                )
            minutes = (time.time() - t_start) / 60.0
            stop = step >= cfg.max_steps or (
                cfg.max_minutes is not None and minutes >= cfg.max_minutes
            )
            if stop or step % cfg.ckpt_every == 0:
                _save_state(last, _checkpoint_state(cfg, ucfg, data_info, model, step, opt, sched))
            if stop:
                break
    bar.close()
    log.close()
    final = out_dir / "model.pt"
    _save_state(final, {**_checkpoint_state(cfg, ucfg, data_info, model, step), "final": True})
    print(f"saved {final} (step {step}, targets: {list(targets)})")
    return final


# ----------------------------------------------------------------------------------------------
# inference
# ----------------------------------------------------------------------------------------------
def _as_tensor(x: Any, name: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    t = x if isinstance(x, Tensor) else torch.as_tensor(np.asarray(x))
    if name != "mask" and not (t.dtype.is_floating_point or t.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must be numeric, got {t.dtype}")
    return t.to(device=device, dtype=torch.bool if name == "mask" else dtype)


class UNetPredictor:
    """A trained map U-Net with the normalisation it was trained with.

    Attributes:
        model: the :class:`UNet` (eval mode).
        targets: names of the predicted maps.
        specs: {name: :class:`MapSpec`} normalisation stored in the checkpoint.
        bands: band names the model was trained on.
        pixel_scale_arcsec: pixel scale of the training data.
        units: {name: unit} of the returned maps.
    """

    def __init__(
        self, model: UNet, specs: Mapping[str, MapSpec], data_info: Mapping[str, Any]
    ) -> None:
        self.model = model.eval()
        self.targets: tuple[str, ...] = tuple(model.config.targets)
        self.specs = dict(specs)
        self.bands: tuple[str, ...] = tuple(data_info.get("bands", ()))
        self.pixel_scale_arcsec = float(data_info.get("pixel_scale_arcsec", math.nan))
        self.units = {n: self.specs[n].unit for n in self.targets}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def predict_maps(
        self,
        images: Any,
        sigma: Any,
        mask: Any,
        psf_fwhm_arcsec: Any,
        redshift: Any = None,
        batch_size: int = 64,
    ) -> dict[str, Tensor]:
        """Predicted maps in the truth's units.

        Args:
            images: (N, C, H, W) nmgy per pixel (numpy or tensor).
            sigma: (N, C, H, W) or (N, C) 1-sigma noise, nmgy.
            mask: (N, C, H, W) bool, True = ignored, or None.
            psf_fwhm_arcsec: (N, C) or (C,) Gaussian PSF FWHM.
            redshift: (N,) (NaN = unknown) or None.
            batch_size: galaxies per forward pass.

        Returns:
            {name: (N, H, W)} on the model's device (tensor inputs move the model to theirs);
            ``age_gyr`` in Gyr, the others as stored in the data sets (see :attr:`units`).

        Raises:
            ValueError: wrong shapes or band count, non-finite unmasked pixels, sigma or PSF
                FWHM not positive, negative redshift, batch_size < 1.
        """
        if isinstance(images, Tensor) and images.device != self.device:
            self.model.to(images.device)
        dev = self.device
        dtype = next(self.model.parameters()).dtype
        img = _as_tensor(images, "images", dtype, dev)
        c = self.model.config.n_bands
        if img.dim() != 4 or img.shape[1] != c:
            raise ValueError(
                f"images must be (N, {c}, H, W) for bands {self.bands}, got {tuple(img.shape)}"
            )
        n, _, h, w = img.shape
        sig = _as_tensor(sigma, "sigma", dtype, dev)
        if sig.shape == (n, c):
            sig = sig[..., None, None].expand(n, c, h, w)
        if sig.shape != img.shape:
            raise ValueError(f"sigma must be (N, C, H, W) or (N, C), got {tuple(sig.shape)}")
        msk = (
            torch.zeros_like(img, dtype=torch.bool)
            if mask is None
            else _as_tensor(mask, "mask", dtype, dev)
        )
        if msk.shape != img.shape:
            raise ValueError(f"mask must be (N, C, H, W) like images, got {tuple(msk.shape)}")
        if not torch.isfinite(img[~msk]).all():
            raise ValueError("images has NaN/inf at unmasked pixels (mask them)")
        good_sig = torch.isfinite(sig) & (sig > 0)
        if not good_sig[~msk].all():
            raise ValueError("sigma must be finite and > 0 at unmasked pixels")
        img = torch.where(msk | ~torch.isfinite(img), torch.zeros_like(img), img)
        sig = torch.where(good_sig, sig, torch.ones_like(sig))
        psf = _as_tensor(psf_fwhm_arcsec, "psf_fwhm_arcsec", dtype, dev)
        if psf.shape == (c,):
            psf = psf.expand(n, c)
        if psf.shape != (n, c):
            raise ValueError(f"psf_fwhm_arcsec must be (N, C) or (C,), got {tuple(psf.shape)}")
        if not (torch.isfinite(psf).all() and (psf > 0).all()):
            raise ValueError("psf_fwhm_arcsec must be finite and > 0")
        z = None
        if redshift is not None:
            z = _as_tensor(redshift, "redshift", dtype, dev).reshape(-1)
            if z.shape != (n,):
                raise ValueError(f"redshift must be (N,) = ({n},), got {tuple(z.shape)}")
            if (z[~torch.isnan(z)] < 0).any() or torch.isinf(z).any():
                raise ValueError("redshift must be >= 0 and finite (NaN = unknown)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        parts: list[Tensor] = []
        for i in range(0, n, batch_size):
            sl = slice(i, i + batch_size)
            parts.append(
                self.model.predict_normalized(
                    img[sl], sig[sl], msk[sl], psf[sl], None if z is None else z[sl]
                )
            )
        t = (
            torch.cat(parts)
            if parts
            else torch.zeros(0, len(self.targets), h, w, dtype=dtype, device=dev)
        )
        return decode_targets(t, self.targets, self.specs)


def load_unet(path: str | Path, device: str | torch.device = "cpu") -> UNetPredictor:
    """Load a ``galae-unet`` checkpoint (``model.pt`` or ``last.pt``) for prediction.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: not a galae checkpoint, another format version, or an autoencoder.
        ValueError: ``device`` is not a device name, or this machine does not have it.
    """
    from galae.checkpoint import CheckpointError, load_checkpoint
    from galae.runtime import checked_device

    device = checked_device(device)
    state = load_checkpoint(path, map_location=device)
    if state["kind"] != CHECKPOINT_KIND:
        raise CheckpointError(
            f"{path} is a {state['kind']} checkpoint; load it with galae.load, not load_unet"
        )
    ucfg = UNetConfig.from_dict(state["unet_config"])
    specs = {n: MapSpec(**d) for n, d in state["normalisation"].items()}
    model = UNet(ucfg)
    model.load_state_dict(state["model_state"])
    model.to(device)
    return UNetPredictor(model, specs, state["data_info"])
