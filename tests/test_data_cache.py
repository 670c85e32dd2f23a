"""The in-memory training cache (TrainConfig.data_cache): the same galaxies as the file, shuffled
per epoch, split between processes, refused when it would not fit, and trained on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

import galae.data.loader as loader_mod
from galae.data.hdf5 import GalaxyH5Dataset
from galae.data.loader import BatchCollator, CachedBatches, collate_batch
from galae.mock import MockConfig, run_mock
from galae.train import TrainConfig, train

N = 14


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cache") / "d.h5"
    run_mock(MockConfig(n=N, seed=4, shape=(16, 16), chunk=N), out=path, progress=False)
    return path


def _cache(path: Path, **kw: object) -> tuple[GalaxyH5Dataset, CachedBatches]:
    ds = GalaxyH5Dataset(path)
    collate = BatchCollator(ds.bands, ds.pixel_scale_arcsec)
    opts: dict[str, object] = {"batch_size": 4, "drop_last": False, "progress": False}
    opts.update(kw)
    return ds, CachedBatches(ds, collate, **opts)  # type: ignore[arg-type]


def test_an_epoch_holds_every_galaxy_once_with_the_file_values(data: Path) -> None:
    ds, cache = _cache(data)
    batches = list(cache)
    assert len(batches) == len(cache) == 4  # 14 galaxies in batches of 4, the last of 2
    index = torch.cat([b.index for b in batches])
    assert sorted(index.tolist()) == list(range(N))
    b = batches[0]
    ref = collate_batch([ds[int(i)] for i in b.index], ds.bands, ds.pixel_scale_arcsec)
    for name in ("images", "sigma", "mask", "psf_fwhm_arcsec", "redshift"):
        assert torch.equal(getattr(b, name), getattr(ref, name)), name
    assert b.truth_u is not None and torch.equal(b.truth_u, ref.truth_u)
    assert b.bands == ds.bands and b.pixel_scale_arcsec == ds.pixel_scale_arcsec


def test_epochs_are_reshuffled_and_reproducible(data: Path) -> None:
    _, cache = _cache(data)
    first = torch.cat([b.index for b in cache])
    second = torch.cat([b.index for b in cache])  # the next epoch, without set_epoch
    assert not torch.equal(first, second)
    cache.set_epoch(0)
    assert torch.equal(torch.cat([b.index for b in cache]), first)


def test_drop_last_and_process_split(data: Path) -> None:
    _, whole = _cache(data, drop_last=True)
    assert [b.size for b in whole] == [4, 4, 4]
    _, r0 = _cache(data, rank=0, world=2)
    _, r1 = _cache(data, rank=1, world=2)
    i0 = torch.cat([b.index for b in r0]).tolist()
    i1 = torch.cat([b.index for b in r1]).tolist()
    assert not set(i0) & set(i1) and sorted(i0 + i1) == list(range(N))


def test_a_cache_that_does_not_fit_is_refused(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader_mod, "_free_bytes", lambda device: 1000)
    with pytest.raises(MemoryError, match="data_cache"):
        _cache(data)


def test_unknown_cache_is_refused() -> None:
    with pytest.raises(ValueError, match="data_cache"):
        TrainConfig(data_cache="gpu")
    with pytest.raises(ValueError, match="U-Net"):
        TrainConfig(model="unet", data_cache="ram")


def test_training_from_the_ram_cache(data: Path, tmp_path: Path) -> None:
    cfg = TrainConfig(
        data=str(data),
        data_cache="ram",
        widths=(8, 16),
        hidden=32,
        batch_size=4,
        max_steps=3,
        warmup_steps=1,
        val_fraction=0.25,
        fit_prior=False,
        out_dir=str(tmp_path / "run"),
        device="cpu",
        tensorboard=False,
        progress=False,
    )
    final = train(cfg)
    state = torch.load(final, map_location="cpu", weights_only=False)
    assert state["step"] == 3 and state["config"]["data_cache"] == "ram"
    # resuming from the file instead of the cache is the same run (data_cache is no
    # architecture key)
    assert train(replace(cfg, data_cache="none", max_steps=4)).is_file()
