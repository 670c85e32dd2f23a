"""Data loaders for training: HDF5 items -> :class:`galae.model.Batch`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from galae.data.hdf5 import GalaxyH5Dataset
from galae.latent import REGISTRY
from galae.model import Batch

__all__ = ["collate_batch", "BatchCollator", "make_loaders", "ensure_data"]


class BatchCollator:
    """Collate dataset items (dicts) into a :class:`Batch` (picklable for worker processes)."""

    def __init__(self, bands: Sequence[str], pixel_scale_arcsec: float) -> None:
        self.bands = tuple(bands)
        self.pixel_scale_arcsec = float(pixel_scale_arcsec)

    def __call__(self, items: list[dict[str, Any]]) -> Batch:
        return collate_batch(items, self.bands, self.pixel_scale_arcsec)


def collate_batch(
    items: list[dict[str, Any]], bands: Sequence[str], pixel_scale_arcsec: float
) -> Batch:
    if "psf_fwhm_arcsec" not in items[0]:
        raise ValueError(
            "the autoencoder needs psf_fwhm_arcsec per galaxy and band in the data set"
        )
    truth_u = None
    params = items[0].get("params", {})
    if all(name in params for name in REGISTRY.names):
        truth = {n: torch.stack([it["params"][n] for it in items]) for n in REGISTRY.names}
        truth_u = REGISTRY.to_unconstrained(truth)
    return Batch(
        images=torch.stack([it["image"] for it in items]),
        sigma=torch.stack([it["sigma"] for it in items]),
        mask=torch.stack([it["mask"] for it in items]),
        psf_fwhm_arcsec=torch.stack([it["psf_fwhm_arcsec"] for it in items]),
        redshift=torch.stack([it["redshift"] for it in items]).reshape(-1),
        pixel_scale_arcsec=pixel_scale_arcsec,
        bands=tuple(bands),
        index=torch.stack([it["index"] for it in items]),
        truth_u=truth_u,
    )


def ensure_data(
    path: str | Path,
    mock_config: str | None,
    mock_n: int | None,
    seed: int,
    disk_history: str | None = None,
) -> Path:
    """Return ``path``; if it does not exist and a mock config is given, generate it first
    (analytic mocks rendered with ``disk_history`` when given: the physics of the model that
    will train on them)."""
    p = Path(path)
    if p.exists():
        return p
    if mock_config is None:
        raise FileNotFoundError(
            f"data set {p} not found (set mock_config to generate it, or run "
            "`python -m galae.mock --config configs/mock_analytic.yaml --out {p}`)"
        )
    from galae.mock import run_mock

    extra = {} if disk_history is None else {"disk_history": disk_history}
    run_mock(mock_config, out=p, n=mock_n, seed=seed, **extra)
    return p


def make_loaders(
    cfg: Any, rank: int = 0, world: int = 1
) -> tuple[DataLoader, DataLoader | None, dict[str, Any]]:
    """Train and validation loaders plus the data description saved in checkpoints."""
    if rank == 0:
        path = ensure_data(cfg.data, cfg.mock_config, cfg.mock_n, cfg.seed, cfg.disk_history)
    if world > 1:
        torch.distributed.barrier()
    path = Path(cfg.data)
    full = GalaxyH5Dataset(path)
    if cfg.val_fraction > 0:
        train_ds, val_ds = full.split((1.0 - cfg.val_fraction, cfg.val_fraction), seed=cfg.seed)
    else:
        train_ds, val_ds = full, None
    collate = BatchCollator(full.bands, full.pixel_scale_arcsec)
    sampler = (
        DistributedSampler(train_ds, world, rank, shuffle=True, seed=cfg.seed)
        if world > 1
        else None
    )
    train_loader = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=cfg.num_workers,
        collate_fn=collate,
        drop_last=len(train_ds) >= cfg.batch_size * max(world, 1),
        persistent_workers=cfg.num_workers > 0,
    )
    val_loader = None
    if val_ds is not None and len(val_ds) > 0:
        val_loader = DataLoader(
            val_ds,
            batch_size=min(cfg.batch_size * 2, len(val_ds)),
            shuffle=False,
            num_workers=0,
            collate_fn=collate,
        )
    info = {
        "bands": list(full.bands),
        "pixel_scale_arcsec": float(full.pixel_scale_arcsec),
        "shape": list(full.image_shape),
        "n_train": len(train_ds),
        "data": str(path),
        "sps_table": "sdss",
    }
    return train_loader, val_loader, info
