"""Tests of the galae HDF5 data-set format (galae.data.hdf5)."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from galae.data.hdf5 import (
    SCHEMA_VERSION,
    GalaxyH5Dataset,
    H5Writer,
    inspect_h5,
    read_h5,
    sanitize_pixels,
)

BANDS = ("u", "g", "r", "i", "z")
H, W = 8, 6


def make_batch(n: int, seed: int, *, psf_image: bool = False) -> dict:
    """A batch of n fake galaxies with every optional array."""
    rng = np.random.default_rng(seed)
    c = len(BANDS)
    batch = {
        "images": rng.normal(size=(n, c, H, W)).astype(np.float32),
        "sigma": rng.uniform(0.5, 2.0, size=(n, c, H, W)).astype(np.float32),
        "mask": rng.uniform(size=(n, c, H, W)) < 0.1,
        "psf_fwhm_arcsec": rng.uniform(1.0, 2.0, size=(n, c)).astype(np.float32),
        "redshift": rng.uniform(0.01, 0.25, size=n).astype(np.float32),
        "model_images": rng.normal(size=(n, c, H, W)).astype(np.float32),
        "truth": {
            "params": {
                "log10_mstar_msun": rng.uniform(9, 11, size=n),
                "sersic_n": rng.uniform(1, 4, size=n),
            },
            "maps": {"log10_sigma_mstar": rng.normal(size=(n, H, W))},
        },
    }
    batch["redshift"][0] = np.nan  # unknown redshift
    if psf_image:
        batch["psf_image"] = rng.uniform(size=(n, c, 5, 5)).astype(np.float32)
    return batch


def write(path: Path, batches: list[dict], **kwargs: object) -> Path:
    with H5Writer(path, bands=BANDS, pixel_scale_arcsec=0.396, **kwargs) as w:
        for b in batches:
            w.append(b)
    return path


def concat(batches: list[dict]) -> dict:
    out = {k: np.concatenate([b[k] for b in batches]) for k in batches[0] if k != "truth"}
    out["truth"] = {
        g: {
            name: np.concatenate([b["truth"][g][name] for b in batches])
            for name in batches[0]["truth"][g]
        }
        for g in ("params", "maps")
    }
    return out


@pytest.fixture()
def batches() -> list[dict]:
    return [make_batch(3, 1), make_batch(1, 2), make_batch(4, 3)]


@pytest.fixture()
def h5file(tmp_path: Path, batches: list[dict]) -> Path:
    return write(
        tmp_path / "d.h5",
        batches,
        generator="test",
        generator_config={"seed": 7, "n": 8},
        chunk_galaxies=2,
    )


def test_round_trip_several_appends(h5file: Path, batches: list[dict]) -> None:
    ref = concat(batches)
    got = read_h5(h5file)
    for key in ("images", "sigma", "mask", "psf_fwhm_arcsec", "model_images"):
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    np.testing.assert_array_equal(got["redshift"], ref["redshift"])  # NaN == NaN here
    assert np.isnan(got["redshift"][0])
    for group in ("params", "maps"):
        assert set(got["truth"][group]) == set(ref["truth"][group])
        for name, arr in ref["truth"][group].items():
            np.testing.assert_array_equal(got["truth"][group][name], arr.astype(np.float32))
    assert got["mask"].dtype == np.bool_ and got["images"].dtype == np.float32
    assert got["bands"] == BANDS and got["pixel_scale_arcsec"] == pytest.approx(0.396)
    attrs = got["attrs"]
    assert attrs["bands"] == "u,g,r,i,z"
    assert attrs["zero_point_mag"] == 22.5 and attrs["flux_unit"] == "nanomaggy"
    assert attrs["generator"] == "test" and '"seed": 7' in attrs["generator_config"]
    assert attrs["schema_version"] == SCHEMA_VERSION and attrs["galae_version"]
    assert attrs["n_galaxies"] == 8 and attrs["complete"] is True


def test_read_subset_unsorted_indices(h5file: Path, batches: list[dict]) -> None:
    ref = concat(batches)
    rows = [5, 0, 5, 2]
    got = read_h5(h5file, indices=rows, with_maps=False)
    np.testing.assert_array_equal(got["images"], ref["images"][rows])
    np.testing.assert_array_equal(got["index"], rows)
    assert got["truth"]["maps"] == {}


def test_chunking_and_compression(h5file: Path, tmp_path: Path) -> None:
    with h5py.File(h5file, "r") as f:
        for key in ("images", "sigma", "mask", "model_images", "truth/maps/log10_sigma_mstar"):
            assert f[key].chunks[0] == 2, key  # chunk_galaxies
            assert f[key].chunks[1:] == f[key].shape[1:], key
            assert f[key].compression == "gzip" and f[key].shuffle, key
            assert f[key].maxshape[0] is None, key  # resizable along N
        # scalar-per-galaxy records get long chunks (>= 16 KiB worth, capped)
        assert f["redshift"].chunks[0] >= 2048
    lzf = write(tmp_path / "lzf.h5", [make_batch(2, 0)], compression="lzf")
    with h5py.File(lzf, "r") as f:
        assert f["images"].compression == "lzf"


def test_capacity_trimmed_and_grown(tmp_path: Path) -> None:
    big = write(tmp_path / "big.h5", [make_batch(3, 0), make_batch(3, 1)], capacity=10)
    small = write(tmp_path / "small.h5", [make_batch(3, 0), make_batch(3, 1)], capacity=2)
    for p in (big, small):
        info = inspect_h5(p)
        assert info.n_galaxies == 6
        with h5py.File(p, "r") as f:
            assert all(f[k].shape[0] == 6 for k in ("images", "redshift", "truth/params/sersic_n"))
    np.testing.assert_array_equal(read_h5(big)["images"], read_h5(small)["images"])


def test_dataset_items(h5file: Path, batches: list[dict]) -> None:
    ref = concat(batches)
    ds = GalaxyH5Dataset(h5file, with_maps=True, with_model_images=True)
    assert ds._file is None  # lazy: nothing open until the first read
    assert len(ds) == 8 and ds.bands == BANDS and ds.pixel_scale_arcsec == pytest.approx(0.396)
    assert ds.image_shape == (H, W)
    item = ds[3]
    assert item["image"].shape == (5, H, W) and item["image"].dtype == torch.float32
    assert item["mask"].dtype == torch.bool and item["index"].item() == 3
    np.testing.assert_array_equal(item["image"].numpy(), ref["images"][3])
    np.testing.assert_array_equal(item["mask"].numpy(), ref["mask"][3])
    np.testing.assert_array_equal(item["psf_fwhm_arcsec"].numpy(), ref["psf_fwhm_arcsec"][3])
    assert item["redshift"].shape == ()
    assert ds[5]["redshift"].item() == pytest.approx(ref["redshift"][5])
    assert set(item["params"]) == {"log10_mstar_msun", "sersic_n"}
    assert item["maps"]["log10_sigma_mstar"].shape == (H, W)
    np.testing.assert_array_equal(item["model_image"].numpy(), ref["model_images"][3])
    assert torch.isnan(ds[0]["redshift"])
    assert "maps" not in GalaxyH5Dataset(h5file)[0]
    assert GalaxyH5Dataset(h5file, dtype=torch.float64)[1]["sigma"].dtype == torch.float64
    with pytest.raises(IndexError):
        ds[8]


def test_dataset_pickles_without_handle(h5file: Path) -> None:
    ds = GalaxyH5Dataset(h5file)
    first = ds[0]["image"]
    assert ds._file is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    torch.testing.assert_close(clone[0]["image"], first)
    ds.close()


def test_indices_and_split(h5file: Path) -> None:
    ds = GalaxyH5Dataset(h5file, indices=[7, 2, 4])
    assert len(ds) == 3 and ds[0]["index"].item() == 7
    parts = ds.split((0.5, 0.5), seed=3)
    assert sorted(len(p) for p in parts) == [1, 2]
    full = GalaxyH5Dataset(h5file)
    a = full.split((0.6, 0.2, 0.2), seed=1)
    b = full.split((0.6, 0.2, 0.2), seed=1)
    c = full.split((0.6, 0.2, 0.2), seed=2)
    idx = [set(p.indices.tolist()) for p in a]
    assert [len(s) for s in idx] == [5, 2, 1]  # floor(4.8, 1.6, 1.6) = (4, 1, 1) + remainder 2
    assert set().union(*idx) == set(range(8)) and sum(len(s) for s in idx) == 8
    assert all(np.array_equal(x.indices, y.indices) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x.indices, y.indices) for x, y in zip(a, c, strict=True))
    with pytest.raises(ValueError, match="sum to 1"):
        full.split((0.5, 0.2))
    with pytest.raises(ValueError, match="out of range"):
        GalaxyH5Dataset(h5file, indices=[0, 8])


def test_dataloader_two_workers(h5file: Path, batches: list[dict]) -> None:
    ref = concat(batches)
    ds = GalaxyH5Dataset(h5file, with_maps=True)
    ds[0]  # open a handle in the parent first: workers must not reuse it
    loader = DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    seen = []
    for batch in loader:
        assert batch["image"].shape[1:] == (5, H, W)
        for j, row in enumerate(batch["index"].tolist()):
            np.testing.assert_array_equal(batch["image"][j].numpy(), ref["images"][row])
            assert batch["params"]["sersic_n"][j].item() == pytest.approx(
                ref["truth"]["params"]["sersic_n"][row]
            )
        seen += batch["index"].tolist()
    assert seen == list(range(8))


def test_nan_pixels_are_masked(tmp_path: Path) -> None:
    b = make_batch(2, 0)
    b["mask"][:] = False
    b["images"][1, 2, 3, 4] = np.nan
    b["images"][1, 0, 0, 0] = np.inf
    b["sigma"][0, 1, 1, 1] = np.nan
    b["mask"][0, 1, 1, 1] = True  # the writer refuses bad sigma on unmasked pixels
    p = write(tmp_path / "nan.h5", [b])
    item = GalaxyH5Dataset(p)[1]
    assert item["mask"][2, 3, 4] and item["mask"][0, 0, 0]
    assert item["image"][2, 3, 4] == 0 and item["image"][0, 0, 0] == 0
    assert int(item["mask"].sum()) == 2
    assert torch.isfinite(item["image"]).all()
    item0 = GalaxyH5Dataset(p)[0]
    assert item0["mask"][1, 1, 1] and torch.isfinite(item0["sigma"]).all()
    assert (item0["sigma"] > 0).all()
    got = read_h5(p)
    assert got["mask"][1, 2, 3, 4] and got["images"][1, 2, 3, 4] == 0


def test_sanitize_pixels_fills_masked_sigma_with_band_median() -> None:
    images = np.zeros((1, 2, 2, 2), np.float32)
    sigma = np.array([[[[1.0, 3.0], [2.0, -1.0]], [[5.0, 5.0], [5.0, 0.0]]]], np.float32)
    mask = np.zeros_like(images, dtype=bool)
    mask[0, :, 1, 1] = True
    _, s, m = sanitize_pixels(images, sigma, mask, [0], "x")
    assert s[0, 0, 1, 1] == 2.0 and s[0, 1, 1, 1] == 5.0  # medians of the valid pixels
    np.testing.assert_array_equal(m, mask)


# -- errors ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        GalaxyH5Dataset(missing)


def test_not_hdf5(tmp_path: Path) -> None:
    p = tmp_path / "text.h5"
    p.write_text("not an hdf5 file\n" * 100)
    with pytest.raises(OSError, match=r"text\.h5.*not an HDF5 file"):
        GalaxyH5Dataset(p)


def test_truncated_file(h5file: Path) -> None:
    data = h5file.read_bytes()
    h5file.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match=r"d\.h5.*truncated or corrupt"):
        GalaxyH5Dataset(h5file)
    with pytest.raises(OSError, match="truncated"):
        read_h5(h5file)


def test_incomplete_file_from_crashed_writer(tmp_path: Path) -> None:
    p = tmp_path / "crash.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with H5Writer(p, bands=BANDS, pixel_scale_arcsec=0.396) as w:
            w.append(make_batch(2, 0))
            raise RuntimeError("boom")
    with h5py.File(p, "r") as f:
        assert not f.attrs["complete"]
    with pytest.raises(ValueError, match=r"crash\.h5.*incomplete"):
        GalaxyH5Dataset(p)


def test_incomplete_flag_false(h5file: Path) -> None:
    with h5py.File(h5file, "a") as f:
        f.attrs["complete"] = False
    with pytest.raises(ValueError, match="incomplete"):
        inspect_h5(h5file)


def test_missing_dataset(h5file: Path) -> None:
    with h5py.File(h5file, "a") as f:
        del f["sigma"]
    with pytest.raises(ValueError, match=r"d\.h5.*missing required datasets \['sigma'\]"):
        GalaxyH5Dataset(h5file)


def test_missing_psf(h5file: Path) -> None:
    with h5py.File(h5file, "a") as f:
        del f["psf_fwhm_arcsec"]
    with pytest.raises(ValueError, match="psf_fwhm_arcsec and/or psf_image"):
        GalaxyH5Dataset(h5file)


def test_mismatched_shapes(h5file: Path) -> None:
    with h5py.File(h5file, "a") as f:
        del f["sigma"]
        f.create_dataset("sigma", data=np.ones((8, 5, H + 1, W), np.float32))
    with pytest.raises(ValueError, match=r"sigma has H=9 but other arrays have H=8"):
        GalaxyH5Dataset(h5file)


def test_mismatched_n(h5file: Path) -> None:
    with h5py.File(h5file, "a") as f:
        del f["redshift"]
        f.create_dataset("redshift", data=np.ones(7, np.float32))
    with pytest.raises(ValueError, match="redshift has shape"):
        GalaxyH5Dataset(h5file)


def test_wrong_dtype(h5file: Path) -> None:
    with h5py.File(h5file, "a") as f:
        del f["mask"]
        f.create_dataset("mask", data=np.zeros((8, 5, H, W), np.uint8))
    with pytest.raises(ValueError, match="mask must be bool"):
        GalaxyH5Dataset(h5file)


def test_band_count_and_order(h5file: Path) -> None:
    with pytest.raises(ValueError, match=r"bands u,g,r,i,z differ from the expected g,r,i"):
        GalaxyH5Dataset(h5file, expected_bands=("g", "r", "i"))
    with pytest.raises(ValueError, match="differ from the expected"):
        GalaxyH5Dataset(h5file, expected_bands=("g", "u", "r", "i", "z"))
    assert GalaxyH5Dataset(h5file, expected_bands=BANDS).bands == BANDS
    with h5py.File(h5file, "a") as f:
        f.attrs["bands"] = "u,g,r,i"
    with pytest.raises(ValueError, match=r"images has 5 bands but the bands attribute lists 4"):
        GalaxyH5Dataset(h5file)
    with h5py.File(h5file, "a") as f:
        f.attrs["bands"] = "u,g,g,i,z"
    with pytest.raises(ValueError, match="duplicate band"):
        GalaxyH5Dataset(h5file)


def test_unmasked_sigma_nonpositive_names_galaxy(h5file: Path) -> None:
    with h5py.File(h5file, "a") as f:
        s = f["sigma"][5]
        m = f["mask"][5]
        s[~m] = 0.0
        f["sigma"][5] = s
    ds = GalaxyH5Dataset(h5file)
    ds[4]  # other galaxies are fine
    with pytest.raises(ValueError, match=r"d\.h5: galaxy 5 has sigma <= 0"):
        ds[5]
    with pytest.raises(ValueError, match="galaxy 5"):
        read_h5(h5file)


def test_writer_rejects_bad_batches(tmp_path: Path) -> None:
    p = tmp_path / "w.h5"
    with H5Writer(p, bands=BANDS, pixel_scale_arcsec=0.396) as w:
        good = make_batch(2, 0)
        bad = make_batch(2, 1)
        bad["sigma"][1, 0, 0, 0] = -1.0
        bad["mask"][1, 0, 0, 0] = False
        with pytest.raises(ValueError, match="sigma <= 0.*data-set index 1"):
            w.append(bad)
        no_psf = make_batch(2, 1)
        del no_psf["psf_fwhm_arcsec"]
        with pytest.raises(ValueError, match="psf_fwhm_arcsec and/or psf_image"):
            w.append(no_psf)
        four = make_batch(2, 1)
        four["images"] = four["images"][:, :4]
        with pytest.raises(ValueError, match="4 bands but the writer's bands are u,g,r,i,z"):
            w.append(four)
        ragged = make_batch(2, 1)
        ragged["redshift"] = ragged["redshift"][:1]
        with pytest.raises(ValueError, match="redshift has 1 galaxies, images has 2"):
            w.append(ragged)
        with pytest.raises(ValueError, match="unknown batch key"):
            w.append({**good, "stuff": np.zeros(2)})
        w.append(good)
        other = make_batch(2, 1, psf_image=True)
        with pytest.raises(ValueError, match="differ from the first batch"):
            w.append(other)
        small = make_batch(2, 1)
        small["truth"]["maps"]["log10_sigma_mstar"] = np.zeros((2, H, W + 1))
        with pytest.raises(ValueError, match="W=7"):
            w.append(small)
        assert w.n_written == 2
    assert inspect_h5(p).n_galaxies == 2
    with pytest.raises(FileExistsError, match="w.h5"):
        H5Writer(p, bands=BANDS, pixel_scale_arcsec=0.396)
    with pytest.raises(ValueError, match="pixel_scale_arcsec"):
        H5Writer(tmp_path / "x.h5", bands=BANDS, pixel_scale_arcsec=0.0)


def test_psf_image_only_and_band_string(tmp_path: Path) -> None:
    b = make_batch(3, 0, psf_image=True)
    del b["psf_fwhm_arcsec"]
    p = tmp_path / "psf.h5"
    with H5Writer(p, bands="ugriz", pixel_scale_arcsec=0.262) as w:
        w.append(b)
    info = inspect_h5(p)
    assert info.bands == BANDS and info.psf_image_shape == (5, 5) and not info.has_psf_fwhm
    item = GalaxyH5Dataset(p)[2]
    assert "psf_fwhm_arcsec" not in item and item["psf_image"].shape == (5, 5, 5)


def test_empty_writer_is_not_complete(tmp_path: Path) -> None:
    p = tmp_path / "empty.h5"
    with H5Writer(p, bands=BANDS, pixel_scale_arcsec=0.396):
        pass
    with pytest.raises(ValueError, match="incomplete"):
        inspect_h5(p)


def test_dataloader_spawned_workers(h5file: Path) -> None:
    """Workers started by spawn receive the data set by pickling (no h5py handle)."""
    ds = GalaxyH5Dataset(h5file)
    ds[0]
    loader = DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context="spawn")
    rows = torch.cat([b["index"] for b in loader]).tolist()
    assert rows == list(range(8))
