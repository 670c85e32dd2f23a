"""The galae HDF5 data-set format: N multi-band galaxy stamps with noise, mask, PSF and truth.

Layout of one file (N galaxies, C bands, H x W pixels)::

    images            (N, C, H, W) float32   nanomaggies per pixel
    sigma             (N, C, H, W) float32   1-sigma noise per pixel (nmgy), > 0 where unmasked
    mask              (N, C, H, W) bool      True = pixel ignored (numpy.ma convention)
    psf_fwhm_arcsec   (N, C)       float32   Gaussian PSF FWHM            } at least one
    psf_image         (N, C, h, w) float32   PSF image, sums to 1         } of the two
    redshift          (N,)         float32   NaN = unknown
    model_images      (N, C, H, W) float32   optional noiseless truth (nmgy)
    truth/params/<name> (N,)       float32   optional truth of a latent / integrated quantity
    truth/maps/<name>   (N, H, W)  float32   optional truth map

    attributes: bands ("u,g,r,i,z"), pixel_scale_arcsec, zero_point_mag (22.5 for nmgy),
    flux_unit ("nanomaggy"), generator, generator_config (YAML/JSON text), galae_version,
    schema_version, n_galaxies, complete (True only once a writer closed cleanly).

Datasets are chunked along N (a few galaxies per chunk) and compressed, so that random
access to one galaxy reads one chunk.  :class:`H5Writer` appends batches without holding the
data set in memory; :class:`GalaxyH5Dataset` reads it lazily (one h5py handle per process,
safe with ``DataLoader(num_workers > 0)``); :func:`read_h5` reads a small file at once.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "SCHEMA_VERSION",
    "H5Info",
    "H5Writer",
    "GalaxyH5Dataset",
    "inspect_h5",
    "read_h5",
    "sanitize_pixels",
]

SCHEMA_VERSION = 1

PathLike = str | os.PathLike

# Top-level arrays: name -> (per-galaxy axes, numpy dtype).  "C", "H", "W" must agree across
# arrays and with the bands; "h", "w" (PSF stamp) are free.
_ARRAY_SPECS: dict[str, tuple[tuple[str, ...], type]] = {
    "images": (("C", "H", "W"), np.float32),
    "sigma": (("C", "H", "W"), np.float32),
    "mask": (("C", "H", "W"), np.bool_),
    "psf_fwhm_arcsec": (("C",), np.float32),
    "psf_image": (("C", "h", "w"), np.float32),
    "redshift": ((), np.float32),
    "model_images": (("C", "H", "W"), np.float32),
}
_REQUIRED = ("images", "sigma", "mask", "redshift")
_PSF_KEYS = ("psf_fwhm_arcsec", "psf_image")
_PARAM_AXES: tuple[str, ...] = ()
_MAP_AXES: tuple[str, ...] = ("H", "W")
_TRUTH_GROUPS: dict[str, tuple[str, ...]] = {"params": _PARAM_AXES, "maps": _MAP_AXES}


def _galae_version() -> str:
    """Installed galae version, or "unknown"."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("galae")
    except PackageNotFoundError:
        return "unknown"


def _parse_bands(value: Any, where: str) -> tuple[str, ...]:
    """Band names from a "u,g,r,i,z" attribute (str, bytes or sequence)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        bands = tuple(b.strip() for b in value.split(","))
    else:
        bands = tuple(str(b.decode() if isinstance(b, bytes) else b).strip() for b in value)
    if not bands or any(not b for b in bands):
        raise ValueError(f"{where}: bands attribute {value!r} has empty band names")
    if len(set(bands)) != len(bands):
        raise ValueError(f"{where}: bands attribute {value!r} has duplicate band names")
    return bands


def _check_shape(
    name: str, shape: tuple[int, ...], axes: tuple[str, ...], dims: dict[str, int], where: str
) -> None:
    """Check that ``shape`` (without the leading N) matches ``axes``; record new axis sizes."""
    if len(shape) != len(axes):
        raise ValueError(
            f"{where}: {name} must have per-galaxy shape ({', '.join(axes)}), got {shape}"
        )
    for axis, size in zip(axes, shape, strict=True):
        if axis.islower():
            continue
        if axis in dims and dims[axis] != size:
            raise ValueError(
                f"{where}: {name} has {axis}={size} but other arrays have {axis}={dims[axis]}"
            )
        dims.setdefault(axis, size)


# --------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------


def _flatten_batch(batch: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Batch dict -> {h5 path: array}; truth may be nested ({"truth": {"params": {...}}})."""
    flat: dict[str, np.ndarray] = {}
    for key, value in batch.items():
        if key == "truth":
            if not isinstance(value, Mapping):
                raise ValueError("batch['truth'] must be a dict {'params': {...}, 'maps': {...}}")
            for group, entries in value.items():
                if group not in _TRUTH_GROUPS:
                    raise ValueError(
                        f"unknown truth group {group!r}; known: {sorted(_TRUTH_GROUPS)}"
                    )
                for name, arr in entries.items():
                    if "/" in name or not name:
                        raise ValueError(f"invalid truth name {name!r}")
                    flat[f"truth/{group}/{name}"] = np.asarray(arr)
        elif key.startswith("truth/"):
            parts = key.split("/")
            if len(parts) != 3 or parts[1] not in _TRUTH_GROUPS or not parts[2]:
                raise ValueError(f"invalid truth key {key!r}; use truth/params/<name>")
            flat[key] = np.asarray(value)
        elif key in _ARRAY_SPECS:
            flat[key] = np.asarray(value)
        else:
            raise ValueError(
                f"unknown batch key {key!r}; known: {sorted(_ARRAY_SPECS)} and 'truth'"
            )
    return flat


def _spec_of(key: str) -> tuple[tuple[str, ...], type]:
    """(per-galaxy axes, dtype) of an h5 path."""
    if key.startswith("truth/"):
        return _TRUTH_GROUPS[key.split("/")[1]], np.float32
    return _ARRAY_SPECS[key]


class H5Writer:
    """Write a galae HDF5 data set in batches (context manager).

    >>> with H5Writer("mocks.h5", bands="ugriz", pixel_scale_arcsec=0.396) as w:  # doctest: +SKIP
    ...     for batch in batches:
    ...         w.append(batch)   # {"images": (n, C, H, W), "sigma": ..., "mask": ...,
    ...                           #  "psf_fwhm_arcsec": (n, C), "redshift": (n,),
    ...                           #  "truth": {"params": {name: (n,)}, "maps": {name: (n, H, W)}}}

    Datasets are created at the first ``append`` with the shapes of that batch and are
    resizable along N; every later batch must carry the same keys and shapes.  The file
    attribute ``complete`` is False while writing and set True only by a clean close (leaving
    the ``with`` block without an exception, or ``close()``), so a reader can detect a file
    whose writer crashed.

    Args:
        path: output file; an existing file is an error unless ``overwrite``.
        bands: band names, as "u,g,r,i,z", "ugriz" (one-letter bands) or a sequence.
        pixel_scale_arcsec: pixel scale (arcsec / pixel).
        generator: what made the data (e.g. "galae.mock.analytic", "fits").
        generator_config: the generator's configuration, YAML/JSON text or a JSON-able dict.
        capacity: expected number of galaxies; datasets are allocated for it up front (and
            still grow if exceeded; the file is trimmed to the written number on close).
        chunk_galaxies: galaxies per HDF5 chunk of the image-like arrays.
        compression: "gzip" or "lzf".
        compression_opts: gzip level (0-9); ignored for lzf.
        zero_point_mag: AB zero point of the pixel unit (22.5 for nanomaggies).
        flux_unit: name of the pixel unit.
        overwrite: replace an existing file.
        extra_attrs: further file attributes (str, int, float or bool values).
    """

    def __init__(
        self,
        path: PathLike,
        *,
        bands: str | Sequence[str],
        pixel_scale_arcsec: float,
        generator: str = "unknown",
        generator_config: str | Mapping[str, Any] | None = None,
        capacity: int | None = None,
        chunk_galaxies: int = 1,
        compression: str = "gzip",
        compression_opts: int | None = 4,
        zero_point_mag: float = 22.5,
        flux_unit: str = "nanomaggy",
        overwrite: bool = False,
        extra_attrs: Mapping[str, str | int | float | bool] | None = None,
    ) -> None:
        self.path = Path(path)
        if isinstance(bands, str):
            bands = bands.split(",") if "," in bands else list(bands)
        self.bands = _parse_bands(list(bands), str(self.path))
        if not (math.isfinite(pixel_scale_arcsec) and pixel_scale_arcsec > 0.0):
            raise ValueError(
                f"{self.path}: pixel_scale_arcsec must be > 0, got {pixel_scale_arcsec}"
            )
        if compression not in ("gzip", "lzf"):
            raise ValueError(f"compression must be 'gzip' or 'lzf', got {compression!r}")
        if chunk_galaxies < 1:
            raise ValueError(f"chunk_galaxies must be >= 1, got {chunk_galaxies}")
        if capacity is not None and capacity < 0:
            raise ValueError(f"capacity must be >= 0, got {capacity}")
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path}: file exists (pass overwrite=True to replace it)")
        if isinstance(generator_config, Mapping):
            generator_config = json.dumps(dict(generator_config), sort_keys=True, default=str)
        self._attrs: dict[str, Any] = {
            "bands": ",".join(self.bands),
            "pixel_scale_arcsec": float(pixel_scale_arcsec),
            "zero_point_mag": float(zero_point_mag),
            "flux_unit": flux_unit,
            "generator": generator,
            "generator_config": generator_config or "",
            "galae_version": _galae_version(),
            "schema_version": SCHEMA_VERSION,
        }
        for key, value in (extra_attrs or {}).items():
            if key in self._attrs or key in ("n_galaxies", "complete"):
                raise ValueError(f"extra_attrs may not override the reserved attribute {key!r}")
            self._attrs[key] = value
        self._capacity = capacity
        self._chunk_galaxies = chunk_galaxies
        self._compression = compression
        self._compression_opts = compression_opts if compression == "gzip" else None
        self._file: h5py.File | None = None
        self._keys: tuple[str, ...] | None = None
        self._dims: dict[str, int] = {"C": len(self.bands)}
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._n = 0
        self._closed = False

    @property
    def n_written(self) -> int:
        """Number of galaxies appended so far."""
        return self._n

    def __enter__(self) -> H5Writer:
        self.open()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.close(complete=exc_type is None)

    def open(self) -> None:
        """Create the file (``complete=False``, ``n_galaxies=0``)."""
        if self._file is not None:
            return
        if self._closed:
            raise ValueError(f"{self.path}: writer already closed")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        for key, value in self._attrs.items():
            self._file.attrs[key] = value
        self._file.attrs["n_galaxies"] = 0
        self._file.attrs["complete"] = False
        self._file.flush()

    def _create(self, key: str, per_galaxy: tuple[int, ...], dtype: type) -> None:
        """Create one resizable, chunked, compressed dataset."""
        assert self._file is not None
        bytes_per = int(np.prod(per_galaxy, dtype=np.int64)) * np.dtype(dtype).itemsize
        # Image-like arrays: chunk_galaxies galaxies per chunk.  Small per-galaxy records
        # (redshift, params, psf_fwhm) get long chunks of >= 16 KiB.
        chunk_n = self._chunk_galaxies
        if len(per_galaxy) < 2:
            chunk_n = max(chunk_n, min(65536, -(-16384 // max(bytes_per, 1))))
        initial = self._capacity or 0
        self._file.create_dataset(
            key,
            shape=(initial, *per_galaxy),
            maxshape=(None, *per_galaxy),
            chunks=(chunk_n, *per_galaxy),
            dtype=dtype,
            compression=self._compression,
            compression_opts=self._compression_opts,
            shuffle=True,
        )

    def append(self, batch: Mapping[str, Any]) -> int:
        """Append a batch of galaxies; returns the number written so far.

        Args:
            batch: {"images": (n, C, H, W), "sigma": (n, C, H, W), "mask": (n, C, H, W) bool,
                "redshift": (n,), "psf_fwhm_arcsec": (n, C) and/or "psf_image": (n, C, h, w),
                optional "model_images": (n, C, H, W), optional "truth": {"params": {name: (n,)},
                "maps": {name: (n, H, W)}} (or flat keys "truth/params/<name>")}.  Arrays are
                cast to float32 (mask to bool).

        Raises:
            ValueError: missing or unknown keys, keys different from the first batch,
                inconsistent shapes, or sigma <= 0 / non-finite at an unmasked pixel.
        """
        if self._file is None:
            self.open()
        assert self._file is not None
        where = str(self.path)
        flat = _flatten_batch(batch)
        missing = [k for k in _REQUIRED if k not in flat]
        if missing:
            raise ValueError(f"{where}: batch lacks required arrays {missing}")
        if not any(k in flat for k in _PSF_KEYS):
            raise ValueError(f"{where}: batch needs psf_fwhm_arcsec and/or psf_image")
        keys = tuple(sorted(flat))
        if self._keys is not None and keys != self._keys:
            raise ValueError(
                f"{where}: batch keys {list(keys)} differ from the first batch's {list(self._keys)}"
            )
        if flat["images"].ndim != 4:
            raise ValueError(
                f"{where}: images must be (n, C, H, W), got shape {flat['images'].shape}"
            )
        if flat["images"].shape[1] != len(self.bands):
            raise ValueError(
                f"{where}: images has {flat['images'].shape[1]} bands but the writer's bands are "
                f"{','.join(self.bands)} ({len(self.bands)})"
            )
        n = int(flat["images"].shape[0])
        arrays: dict[str, np.ndarray] = {}
        dims = dict(self._dims)
        for key in keys:
            axes, dtype = _spec_of(key)
            arr = flat[key]
            if arr.ndim == 0 or arr.shape[0] != n:
                raise ValueError(
                    f"{where}: {key} has {arr.shape[0] if arr.ndim else 'no'} galaxies, "
                    f"images has {n}"
                )
            if dtype is np.bool_:
                if arr.dtype != np.bool_:
                    raise ValueError(f"{where}: {key} must be bool, got {arr.dtype}")
            elif not np.issubdtype(arr.dtype, np.number):
                raise ValueError(f"{where}: {key} must be numeric, got {arr.dtype}")
            _check_shape(key, tuple(arr.shape[1:]), axes, dims, where)
            if key in self._shapes and self._shapes[key] != tuple(arr.shape[1:]):
                raise ValueError(
                    f"{where}: {key} per-galaxy shape {tuple(arr.shape[1:])} differs from the "
                    f"first batch's {self._shapes[key]}"
                )
            arrays[key] = arr.astype(dtype, copy=False)
        bad_sigma = ~arrays["mask"] & ~(np.isfinite(arrays["sigma"]) & (arrays["sigma"] > 0))
        if bad_sigma.any():
            gal = int(np.nonzero(bad_sigma.reshape(n, -1).any(axis=1))[0][0])
            raise ValueError(
                f"{where}: sigma <= 0 or non-finite at {int(bad_sigma.sum())} unmasked pixels "
                f"(first in batch galaxy {gal}, data-set index {self._n + gal})"
            )
        if self._keys is None:
            for key in keys:
                self._create(key, tuple(arrays[key].shape[1:]), _spec_of(key)[1])
                self._shapes[key] = tuple(arrays[key].shape[1:])
            self._keys = keys
            self._dims = dims
        start, stop = self._n, self._n + n
        for key in keys:
            dset = self._file[key]
            if dset.shape[0] < stop:
                dset.resize(max(stop, 2 * dset.shape[0]) if self._capacity else stop, axis=0)
            dset[start:stop] = arrays[key]
        self._n = stop
        self._file.attrs["n_galaxies"] = self._n
        return self._n

    def close(self, complete: bool = True) -> None:
        """Trim datasets to the written length, set ``n_galaxies`` and ``complete``, close."""
        if self._closed:
            return
        if self._file is None:
            self.open()
        assert self._file is not None
        try:
            if self._keys is not None:
                for key in self._keys:
                    self._file[key].resize(self._n, axis=0)
            self._file.attrs["n_galaxies"] = self._n
            self._file.attrs["complete"] = bool(complete and self._keys is not None)
        finally:
            self._file.close()
            self._file = None
            self._closed = True


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class H5Info:
    """What a validated galae HDF5 file holds.

    Attributes:
        path: the file.
        n_galaxies: N.
        bands: band names, length C.
        image_shape: (H, W) pixels.
        pixel_scale_arcsec: arcsec / pixel.
        psf_image_shape: (h, w) of ``psf_image``, or None when absent.
        has_psf_fwhm: whether ``psf_fwhm_arcsec`` is present.
        has_model_images: whether ``model_images`` is present.
        truth_param_names: names under truth/params.
        truth_map_names: names under truth/maps.
        attrs: all file attributes (numpy scalars turned into Python values).
    """

    path: Path
    n_galaxies: int
    bands: tuple[str, ...]
    image_shape: tuple[int, int]
    pixel_scale_arcsec: float
    psf_image_shape: tuple[int, int] | None
    has_psf_fwhm: bool
    has_model_images: bool
    truth_param_names: tuple[str, ...]
    truth_map_names: tuple[str, ...]
    attrs: dict[str, Any]


def _open_h5(path: Path) -> h5py.File:
    """Open read-only, turning every failure into an OSError that names the file."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if not path.is_file():
        raise OSError(f"{path}: not a regular file")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError as err:
        raise OSError(f"{path}: cannot be read ({err})") from err
    if not is_hdf5:
        raise OSError(f"{path}: not an HDF5 file (no HDF5 signature)")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise OSError(f"{path}: cannot open HDF5 file, truncated or corrupt ({err})") from err


def _py(value: Any) -> Any:
    """numpy scalar / bytes attribute -> Python value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _validate(f: h5py.File, path: Path, expected_bands: Sequence[str] | None) -> H5Info:
    """Check the schema of an open file (cheap: metadata only)."""
    where = str(path)
    attrs = {k: _py(v) for k, v in f.attrs.items()}
    if "complete" not in attrs:
        raise ValueError(f"{where}: no 'complete' attribute; not a galae data set or incomplete")
    if not bool(attrs["complete"]):
        raise ValueError(
            f"{where}: incomplete data set (complete=False): its writer did not close cleanly"
        )
    if "bands" not in attrs:
        raise ValueError(f"{where}: missing 'bands' attribute")
    bands = _parse_bands(attrs["bands"], where)
    if expected_bands is not None and tuple(expected_bands) != bands:
        raise ValueError(
            f"{where}: bands {','.join(bands)} differ from the expected "
            f"{','.join(expected_bands)} (count and order must match)"
        )
    scale = attrs.get("pixel_scale_arcsec")
    if not isinstance(scale, int | float) or not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{where}: pixel_scale_arcsec attribute missing or not > 0: {scale!r}")
    missing = [k for k in _REQUIRED if k not in f]
    if missing:
        raise ValueError(f"{where}: missing required datasets {missing}")
    if not any(k in f for k in _PSF_KEYS):
        raise ValueError(f"{where}: needs dataset psf_fwhm_arcsec and/or psf_image")
    if f["images"].ndim != 4:
        raise ValueError(f"{where}: images must be (N, C, H, W), got shape {f['images'].shape}")
    if f["images"].shape[1] != len(bands):
        raise ValueError(
            f"{where}: images has {f['images'].shape[1]} bands but the bands attribute lists "
            f"{len(bands)} ({','.join(bands)})"
        )
    dims: dict[str, int] = {"C": len(bands)}
    n = f["images"].shape[0]
    names = [k for k in _ARRAY_SPECS if k in f]
    truth_names: dict[str, tuple[str, ...]] = {}
    for group in _TRUTH_GROUPS:
        grp = f.get(f"truth/{group}")
        truth_names[group] = tuple(sorted(grp.keys())) if grp is not None else ()
        names += [f"truth/{group}/{name}" for name in truth_names[group]]
    for key in names:
        dset = f[key]
        if not isinstance(dset, h5py.Dataset):
            raise ValueError(f"{where}: {key} is not a dataset")
        axes, dtype = _spec_of(key)
        if dset.ndim == 0 or dset.shape[0] != n:
            raise ValueError(f"{where}: {key} has shape {dset.shape}, expected {n} galaxies first")
        if dtype is np.bool_:
            if dset.dtype != np.bool_:
                raise ValueError(f"{where}: {key} must be bool, got {dset.dtype}")
        elif not np.issubdtype(dset.dtype, np.floating):
            raise ValueError(f"{where}: {key} must be floating point, got {dset.dtype}")
        _check_shape(key, tuple(dset.shape[1:]), axes, dims, where)
    if int(attrs.get("n_galaxies", -1)) != n:
        raise ValueError(
            f"{where}: n_galaxies attribute {attrs.get('n_galaxies')} != {n} rows of images"
        )
    psf_shape = tuple(f["psf_image"].shape[2:]) if "psf_image" in f else None
    return H5Info(
        path=path,
        n_galaxies=int(n),
        bands=bands,
        image_shape=(dims["H"], dims["W"]),
        pixel_scale_arcsec=float(scale),
        psf_image_shape=psf_shape,  # type: ignore[arg-type]
        has_psf_fwhm="psf_fwhm_arcsec" in f,
        has_model_images="model_images" in f,
        truth_param_names=truth_names["params"],
        truth_map_names=truth_names["maps"],
        attrs=attrs,
    )


def inspect_h5(path: PathLike, expected_bands: Sequence[str] | None = None) -> H5Info:
    """Validate a galae HDF5 file's schema and describe it (reads metadata only).

    Raises:
        FileNotFoundError / OSError: missing file, not HDF5, truncated or corrupt.
        ValueError: incomplete file, missing dataset, inconsistent shapes, wrong dtype,
            bands attribute inconsistent with the data or different from ``expected_bands``.
    """
    path = Path(path)
    with _open_h5(path) as f:
        return _validate(f, path, expected_bands)


def sanitize_pixels(
    images: np.ndarray,
    sigma: np.ndarray,
    mask: np.ndarray,
    indices: Sequence[int] | np.ndarray,
    where: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Make pixel data safe to use: mask bad pixels, check noise (in place where possible).

    * NaN/inf image or sigma pixels are masked (mask set True) and their image set to 0.
    * Masked pixels whose sigma is not positive and finite get the median of the valid sigma
      of their band (1.0 if none), so that sums over all pixels stay finite.
    * An unmasked pixel with sigma <= 0 is an error naming the galaxy.

    Args:
        images, sigma, mask: (n, C, H, W) arrays (mask bool, True = ignored).
        indices: (n,) data-set indices of the galaxies (for messages).
        where: file name for messages.

    Returns:
        (images, sigma, mask) after the fixes.

    Raises:
        ValueError: sigma <= 0 at an unmasked pixel.
    """
    bad = ~np.isfinite(images) | ~np.isfinite(sigma)
    if bad.any():
        mask = mask | bad
        images = np.where(bad, np.zeros((), images.dtype), images)
    bad_sigma = ~(sigma > 0)
    unmasked_bad = bad_sigma & ~mask
    if unmasked_bad.any():
        gal = int(np.nonzero(unmasked_bad.reshape(len(images), -1).any(axis=1))[0][0])
        raise ValueError(
            f"{where}: galaxy {int(indices[gal])} has sigma <= 0 at "
            f"{int(unmasked_bad[gal].sum())} unmasked pixels"
        )
    fill = bad_sigma | ~np.isfinite(sigma)
    if fill.any():
        valid = np.where(mask | ~np.isfinite(sigma) | bad_sigma, np.nan, sigma)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN band -> NaN, handled
            med = np.nanmedian(valid, axis=(-2, -1), keepdims=True)
        med = np.where(np.isfinite(med), med, np.ones((), sigma.dtype))
        sigma = np.where(fill, med.astype(sigma.dtype), sigma)
    return images, sigma, mask


def _read_rows(dset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """dset[rows] for any (unsorted, repeated) integer rows."""
    if rows.size == 0:
        return np.empty((0, *dset.shape[1:]), dtype=dset.dtype)
    uniq, inverse = np.unique(rows, return_inverse=True)
    try:
        if uniq.size == uniq[-1] - uniq[0] + 1:
            data = dset[int(uniq[0]) : int(uniq[-1]) + 1]
        else:
            data = dset[uniq]
    except OSError as err:  # a corrupt chunk: h5py's message names neither file nor data set
        raise OSError(
            f"{dset.file.filename}: cannot read {dset.name} rows {int(uniq[0])}-{int(uniq[-1])} "
            f"(corrupt or truncated file: {err})"
        ) from err
    return data[inverse]


class GalaxyH5Dataset(Dataset):
    """A galae HDF5 file as a ``torch.utils.data.Dataset`` of single galaxies.

    The schema is validated on construction (metadata only); the file is then closed and
    reopened lazily in whatever process first reads an item, so the object pickles without an
    h5py handle and each ``DataLoader`` worker has its own.

    Each item is a dict of tensors:

    * ``image`` (C, H, W), ``sigma`` (C, H, W) in nmgy (``dtype``), ``mask`` (C, H, W) bool
      (True = ignored), ``redshift`` () (NaN = unknown), ``index`` () int64 row in the file;
    * ``psf_fwhm_arcsec`` (C,) and/or ``psf_image`` (C, h, w), as present in the file;
    * ``params`` {name: ()} truth parameters (empty dict when the file has none);
    * ``maps`` {name: (H, W)} truth maps, only with ``with_maps=True``;
    * ``model_image`` (C, H, W), only with ``with_model_images=True`` (and in the file).

    Pixel data are sanitized on reading (:func:`sanitize_pixels`): NaN/inf image or sigma
    pixels are set to 0 and masked; a masked pixel's non-positive/non-finite sigma is replaced
    by the band's median sigma; an unmasked sigma <= 0 raises ``ValueError`` naming the galaxy.

    Args:
        path: the HDF5 file.
        indices: rows of the file this data set exposes (default all), e.g. a train split.
        with_maps: also return the truth maps.
        with_model_images: also return the noiseless model images.
        expected_bands: if given, the file's bands must equal these (count and order).
        dtype: floating dtype of the returned tensors.
    """

    def __init__(
        self,
        path: PathLike,
        *,
        indices: Sequence[int] | np.ndarray | None = None,
        with_maps: bool = False,
        with_model_images: bool = False,
        expected_bands: Sequence[str] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.path = Path(path)
        self.info = inspect_h5(self.path, expected_bands)
        if with_model_images and not self.info.has_model_images:
            raise ValueError(f"{self.path}: with_model_images=True but the file has none")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        n = self.info.n_galaxies
        if indices is None:
            idx = np.arange(n, dtype=np.int64)
        else:
            idx = np.asarray(indices)
            if idx.ndim != 1 or (idx.size > 0 and not np.issubdtype(idx.dtype, np.integer)):
                raise ValueError(f"{self.path}: indices must be a 1-d integer sequence")
            idx = idx.astype(np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(
                    f"{self.path}: indices out of range [0, {n}): min {idx.min()}, max {idx.max()}"
                )
        self.indices = idx
        self.with_maps = with_maps
        self.with_model_images = with_model_images
        self.dtype = dtype
        self._file: h5py.File | None = None
        self._pid: int | None = None
        self._dsets: dict[str, h5py.Dataset] = {}
        self._small: dict[str, np.ndarray] = {}

    # -- properties ------------------------------------------------------------------
    @property
    def bands(self) -> tuple[str, ...]:
        """Band names, in channel order."""
        return self.info.bands

    @property
    def pixel_scale_arcsec(self) -> float:
        """Pixel scale, arcsec / pixel."""
        return self.info.pixel_scale_arcsec

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W)."""
        return self.info.image_shape

    # -- pickling / handles ----------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_file"] = None
        state["_pid"] = None
        state["_dsets"] = {}
        state["_small"] = {}
        return state

    def _handle(self) -> h5py.File:
        """The h5py file of this process (opened on first use, reopened after a fork).

        On opening, the image-like datasets are looked up once and the small per-galaxy
        records (redshift, psf_fwhm_arcsec, truth params: a few bytes per galaxy) are read
        into memory, so an item costs only the chunk reads of its stamps.
        """
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            # A handle inherited through fork is not closed (it belongs to the parent).
            f = _open_h5(self.path)
            names = ["images", "sigma", "mask"]
            names += [k for k in ("psf_image", "model_images") if k in f]
            names += [f"truth/maps/{m}" for m in self.info.truth_map_names]
            self._dsets = {k: f[k] for k in names}
            small = ["redshift"] + [k for k in ("psf_fwhm_arcsec",) if k in f]
            small += [f"truth/params/{p}" for p in self.info.truth_param_names]
            self._small = {k: f[k][()] for k in small}
            self._file, self._pid = f, pid
        return self._file

    def close(self) -> None:
        """Close this process's file handle (it reopens on the next read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None
        self._pid = None
        self._dsets = {}
        self._small = {}

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= int(i) < n:
            raise IndexError(f"index {i} out of range for {n} galaxies")
        row = int(self.indices[int(i)])
        self._handle()
        d, small = self._dsets, self._small
        images = d["images"][row][None]
        sigma = d["sigma"][row][None]
        mask = d["mask"][row][None]
        images, sigma, mask = sanitize_pixels(images, sigma, mask, [row], str(self.path))

        def t(a: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(np.asarray(a), dtype=self.dtype)

        item: dict[str, Any] = {
            "image": t(images[0]),
            "sigma": t(sigma[0]),
            "mask": torch.as_tensor(mask[0]),
            "redshift": t(small["redshift"][row]),
            "index": torch.tensor(row, dtype=torch.int64),
        }
        if "psf_fwhm_arcsec" in small:
            item["psf_fwhm_arcsec"] = t(small["psf_fwhm_arcsec"][row])
        if "psf_image" in d:
            item["psf_image"] = t(d["psf_image"][row])
        item["params"] = {
            name: t(small[f"truth/params/{name}"][row]) for name in self.info.truth_param_names
        }
        if self.with_maps:
            item["maps"] = {
                name: t(d[f"truth/maps/{name}"][row]) for name in self.info.truth_map_names
            }
        if self.with_model_images:
            item["model_image"] = t(d["model_images"][row])
        return item

    def subset(self, indices: Sequence[int] | np.ndarray) -> GalaxyH5Dataset:
        """A data set over ``self.indices[indices]`` (positions within this data set)."""
        pos = np.asarray(indices, dtype=np.int64)
        return GalaxyH5Dataset(
            self.path,
            indices=self.indices[pos],
            with_maps=self.with_maps,
            with_model_images=self.with_model_images,
            dtype=self.dtype,
        )

    def split(self, fractions: Sequence[float], seed: int = 0) -> tuple[GalaxyH5Dataset, ...]:
        """Random disjoint subsets with the given fractions (e.g. (0.8, 0.1, 0.1)).

        The galaxies are permuted with ``numpy.random.default_rng(seed)``; subset k gets
        floor(f_k N) galaxies, and the rounding remainder goes to the first subsets, so all
        galaxies are used.  Deterministic given ``seed``.
        """
        fr = np.asarray(fractions, dtype=np.float64)
        if fr.ndim != 1 or fr.size == 0 or np.any(~(fr >= 0)) or abs(fr.sum() - 1.0) > 1e-6:
            raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
        n = len(self)
        counts = np.floor(fr * n).astype(np.int64)
        counts[: n - counts.sum()] += 1
        perm = np.random.default_rng(seed).permutation(n)
        bounds = np.concatenate([[0], np.cumsum(counts)])
        return tuple(
            self.subset(np.sort(perm[bounds[k] : bounds[k + 1]])) for k in range(len(counts))
        )


def read_h5(
    path: PathLike,
    indices: Sequence[int] | np.ndarray | None = None,
    *,
    with_maps: bool = True,
    expected_bands: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Read a (small) galae HDF5 file, or some of its rows, into numpy arrays.

    Pixel data are sanitized as in :class:`GalaxyH5Dataset` (NaN/inf pixels set to 0 and
    masked; unmasked sigma <= 0 raises).

    Returns:
        {"images", "sigma", "mask", "redshift", "psf_fwhm_arcsec" and/or "psf_image",
        "model_images" (if present), "truth": {"params": {name: (n,)}, "maps": {name:
        (n, H, W)}}, "index": (n,) rows read, "bands": tuple, "pixel_scale_arcsec": float,
        "attrs": dict of file attributes}.
    """
    path = Path(path)
    with _open_h5(path) as f:
        info = _validate(f, path, expected_bands)
        n = info.n_galaxies
        if indices is None:
            rows = np.arange(n)
        else:
            given = np.asarray(indices)
            if given.size and not np.issubdtype(given.dtype, np.integer):
                raise ValueError(f"{path}: indices must be integers, got {given.dtype} values")
            rows = given.astype(np.int64)
        if rows.ndim != 1 or (rows.size and (rows.min() < 0 or rows.max() >= n)):
            raise ValueError(f"{path}: indices must be 1-d and in [0, {n})")
        out: dict[str, Any] = {k: _read_rows(f[k], rows) for k in _ARRAY_SPECS if k in f}
        out["images"], out["sigma"], out["mask"] = sanitize_pixels(
            out["images"], out["sigma"], out["mask"], rows, str(path)
        )
        out["truth"] = {
            "params": {
                name: _read_rows(f[f"truth/params/{name}"], rows) for name in info.truth_param_names
            },
            "maps": (
                {name: _read_rows(f[f"truth/maps/{name}"], rows) for name in info.truth_map_names}
                if with_maps
                else {}
            ),
        }
        out["index"] = rows
        out["bands"] = info.bands
        out["pixel_scale_arcsec"] = info.pixel_scale_arcsec
        out["attrs"] = info.attrs
    return out
