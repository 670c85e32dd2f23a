"""Data loaders for training: HDF5 items -> :class:`galae.model.Batch`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from galae.data.hdf5 import GalaxyH5Dataset
from galae.latent import REGISTRY
from galae.model import Batch
from galae.render.psf import gaussian_equivalent_fwhm_arcsec

__all__ = [
    "collate_batch",
    "BatchCollator",
    "CachedBatches",
    "DATA_CACHES",
    "check_data_cache",
    "make_loaders",
    "ensure_data",
]

#: Where the training stamps are kept (TrainConfig.data_cache): "none" reads each batch from
#: the HDF5 file through DataLoader workers; "ram" decompresses the training set into memory
#: once and gathers batches in the main process; "device" keeps it on the training device
#: (a GPU with room for it: no decompression nor host-to-device copy per step).
DATA_CACHES: tuple[str, ...] = ("none", "ram", "device")


def check_data_cache(name: str) -> str:
    """``name`` if it is one of :data:`DATA_CACHES`, else a ValueError naming them."""
    if name not in DATA_CACHES:
        raise ValueError(f"data_cache must be one of {DATA_CACHES}, got {name!r}")
    return name


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
    psf_image = None
    if "psf_image" in items[0]:
        # the likelihood convolves with the image; the encoder is told its Gaussian equivalent
        psf_image = torch.stack([it["psf_image"] for it in items])
        psf_image = psf_image / psf_image.sum((-2, -1), keepdim=True)
        psf_fwhm = gaussian_equivalent_fwhm_arcsec(psf_image, pixel_scale_arcsec).to(
            psf_image.dtype
        )
    elif "psf_fwhm_arcsec" in items[0]:
        psf_fwhm = torch.stack([it["psf_fwhm_arcsec"] for it in items])
    else:
        raise ValueError(
            "the autoencoder needs psf_fwhm_arcsec or psf_image per galaxy and band in the data set"
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
        psf_fwhm_arcsec=psf_fwhm,
        redshift=torch.stack([it["redshift"] for it in items]).reshape(-1),
        pixel_scale_arcsec=pixel_scale_arcsec,
        bands=tuple(bands),
        index=torch.stack([it["index"] for it in items]),
        truth_u=truth_u,
        psf_image=psf_image,
    )


class CachedBatches:
    """Shuffled batches of a data set held whole in memory (RAM or a device).

    Built once from ``dataset`` (read in chunks of ``chunk`` stamps, through ``num_workers``
    DataLoader workers, with a progress bar); then each pass draws a new permutation (seeded by
    ``seed`` and the epoch) and yields :class:`Batch` objects of ``batch_size`` galaxies,
    gathered with one indexing per tensor.  With ``world`` > 1 each process takes every
    ``world``-th galaxy of the permutation (offset ``rank``), as ``DistributedSampler`` does.
    Iterating it is what iterating the equivalent ``DataLoader`` gives, with the truth latents
    kept when the data set has them.

    Memory: images and sigma (float32) and mask (bool), 9 bytes per pixel and band; checked
    against what is free on ``device`` before anything is read.  Under ``torchrun`` each
    process holds the whole set (and uses its share of every permutation).
    """

    def __init__(
        self,
        dataset: Any,
        collate: BatchCollator,
        batch_size: int,
        device: torch.device | str = "cpu",
        drop_last: bool = True,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        num_workers: int = 0,
        chunk: int = 256,
        progress: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.seed, self.rank, self.world = int(seed), int(rank), int(world)
        self.epoch = 0
        n = len(dataset)
        if n == 0:
            raise ValueError("CachedBatches: the data set is empty")
        c = len(collate.bands)
        h, w = dataset.image_shape
        need = n * c * h * w * 9
        free = _free_bytes(self.device)
        if free is not None and need > 0.8 * free:
            raise MemoryError(
                f"data_cache: the {n} training stamps need {need / 2**30:.1f} GiB on "
                f"{self.device}, more than 80% of the {free / 2**30:.1f} GiB free there; "
                "use data_cache=ram or none"
            )
        self.bands = collate.bands
        self.pixel_scale_arcsec = collate.pixel_scale_arcsec
        loader = DataLoader(
            dataset, batch_size=chunk, shuffle=False, num_workers=num_workers, collate_fn=collate
        )
        parts: dict[str, list[torch.Tensor]] = {}
        bar = tqdm(
            total=n, desc=f"caching stamps on {self.device}", unit="gal", disable=not progress
        )
        for b in loader:
            fields = {
                "images": b.images,
                "sigma": b.sigma,
                "mask": b.mask,
                "psf_fwhm_arcsec": b.psf_fwhm_arcsec,
                "redshift": b.redshift,
                "index": b.index,
            }
            if b.truth_u is not None:
                fields["truth_u"] = b.truth_u
            if b.psf_image is not None:
                fields["psf_image"] = b.psf_image
            for k, v in fields.items():
                parts.setdefault(k, []).append(v.to(self.device))
            bar.update(b.size)
        bar.close()
        self.tensors = {k: torch.cat(v) for k, v in parts.items()}
        self.n = n

    def set_epoch(self, epoch: int) -> None:
        """The permutation of the next pass is drawn for ``epoch`` (as DistributedSampler's)."""
        self.epoch = int(epoch)

    def _order(self) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        return perm[self.rank :: self.world]

    def __len__(self) -> int:
        m = len(range(self.rank, self.n, self.world))
        return (
            m // self.batch_size
            if self.drop_last and m >= self.batch_size
            else -(-m // self.batch_size)
        )

    def __iter__(self) -> Iterator[Batch]:
        order = self._order().to(self.device)
        self.epoch += 1  # a pass without set_epoch still gets a new permutation
        m = len(order)
        stop = m - m % self.batch_size if self.drop_last and m >= self.batch_size else m
        for i in range(0, stop, self.batch_size):
            idx = order[i : i + self.batch_size]
            t = {k: v.index_select(0, idx) for k, v in self.tensors.items()}
            yield Batch(
                images=t["images"],
                sigma=t["sigma"],
                mask=t["mask"],
                psf_fwhm_arcsec=t["psf_fwhm_arcsec"],
                redshift=t["redshift"],
                pixel_scale_arcsec=self.pixel_scale_arcsec,
                bands=self.bands,
                index=t["index"],
                truth_u=t.get("truth_u"),
                psf_image=t.get("psf_image"),
            )


def _free_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes (None where it cannot be told)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu":
        try:
            return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
            return None
    return None


def ensure_data(
    path: str | Path,
    mock_config: str | None,
    mock_n: int | None,
    seed: int,
    disk_history: str | None = None,
    birth_clouds: str | None = None,
) -> Path:
    """Return ``path``; if it does not exist and a mock config is given, generate it first
    (mocks rendered with ``disk_history`` and ``birth_clouds`` when given: the physics of the
    model that will train on them)."""
    p = Path(path)
    if p.exists():
        return p
    if mock_config is None:
        raise FileNotFoundError(
            f"data set {p} not found (set mock_config to generate it, or run "
            f"`python -m galae.mock --config configs/mock_analytic.yaml --out {p}`)"
        )
    from galae.mock import run_mock

    physics = {"disk_history": disk_history, "birth_clouds": birth_clouds}
    extra = {k: v for k, v in physics.items() if v is not None}
    run_mock(mock_config, out=p, n=mock_n, seed=seed, **extra)
    return p


def make_loaders(
    cfg: Any, rank: int = 0, world: int = 1, device: torch.device | str = "cpu"
) -> tuple[DataLoader | CachedBatches, DataLoader | None, dict[str, Any]]:
    """Train and validation loaders plus the data description saved in checkpoints.

    ``cfg.data_cache`` (:data:`DATA_CACHES`) picks a ``DataLoader`` over the file or a
    :class:`CachedBatches` in RAM or on ``device`` (the training device).
    """
    if rank == 0:
        path = ensure_data(
            cfg.data, cfg.mock_config, cfg.mock_n, cfg.seed, cfg.disk_history, cfg.birth_clouds
        )
    if world > 1:
        torch.distributed.barrier()
    path = Path(cfg.data)
    full = GalaxyH5Dataset(path)
    if rank == 0:  # analytic mocks of other physics than the model's (cfg's): say so
        from galae.mock import warn_physics_mismatch

        warn_physics_mismatch(full.info.attrs, cfg, str(path))
    if cfg.val_fraction > 0:
        train_ds, val_ds = full.split((1.0 - cfg.val_fraction, cfg.val_fraction), seed=cfg.seed)
    else:
        train_ds, val_ds = full, None
    collate = BatchCollator(full.bands, full.pixel_scale_arcsec)
    cache = check_data_cache(getattr(cfg, "data_cache", "none"))
    drop_last = len(train_ds) >= cfg.batch_size * max(world, 1)
    train_loader: DataLoader | CachedBatches
    if cache != "none":
        train_loader = CachedBatches(
            train_ds,
            collate,
            cfg.batch_size,
            device=device if cache == "device" else "cpu",
            drop_last=drop_last,
            seed=cfg.seed,
            rank=rank,
            world=world,
            num_workers=cfg.num_workers,
            progress=rank == 0 and getattr(cfg, "progress", True),
        )
    else:
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
            drop_last=drop_last,
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
