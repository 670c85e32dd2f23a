"""Stellar-population fluxes per unit mass in each band, interpolated from the packaged table.

The table (built by ``python -m galae.sps build``, see :mod:`galae.physics.sps_build` for every
definition) holds, for the bands of one survey:

* ``lg_ssp_flux10pc_nmgy_per_msun[band, z, age, Z]``: log10 AB flux (nanomaggies) of a simple
  stellar population per M_sun of current stellar mass (living stars + remnants), redshifted
  by z but placed at 10 pc (BC03 2016/MILES, Kroupa IMF);
* ``lg_young_flux10pc_nmgy_per_msun_yr[band, z, Z]``: the same for 100 Myr of constant star
  formation, nebular continuum and lines included (Cloudy, log U = -3), per M_sun/yr;
* ``calzetti_k_band[band, z]``: effective Calzetti (2000) k = A_band / E(B-V).

Observed flux at redshift z (z > 0)::

    F_obs = 10^(lg_flux10pc(z, ...)) * 10^(-0.4 DM(z))

with DM the Planck18 distance modulus (:func:`galae.physics.cosmology.distance_modulus_mag`).

Interpolation is linear in log10 flux over (z, log10 age, log10 Z), hence differentiable in all
three (piecewise-constant gradients).  Outside the grid, age and metallicity are clamped to the
edges (the gradient there is zero); a redshift outside the grid raises ``ValueError``.

Shapes: ``redshift`` is (B,).  Population fields (``lg_age_gyr``, ``lg_zstar_zsun``) have the
galaxy axis first: shape (B,) (one value per galaxy), (B, *S) (e.g. a pixel grid (H, W) or
particles (P,)), or 0-d (the same for all galaxies); their trailing shapes broadcast to S.
Results are (B, n_bands, *S).  When the age is per galaxy, z and age are interpolated first,
to (B, n_bands, n_Z), and only the metallicity is gathered per pixel.
"""

from __future__ import annotations

import importlib.resources
import json
import math
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from galae.physics import cosmology

__all__ = [
    "PACKAGED_TABLES",
    "AxisBracket",
    "bracket",
    "interp_ssp_lg_flux",
    "interp_young_lg_flux",
    "interp_band_table",
    "SPSTable",
]

#: Tables shipped in the ``galae/tables`` package directory (as ``sps_<name>.npz``); tables
#: built with ``python -m galae.sps build --survey X`` are found there by the same rule.
PACKAGED_TABLES: tuple[str, ...] = ("sdss",)

_REQUIRED_ARRAYS: tuple[str, ...] = (
    "bands",
    "redshift",
    "lg_age_gyr",
    "lg_zstar_zsun",
    "lg_ssp_flux10pc_nmgy_per_msun",
    "lg_young_flux10pc_nmgy_per_msun_yr",
    "calzetti_k_band",
    "metadata_json",
)
_OPTIONAL_ARRAYS: tuple[str, ...] = (
    "ssp_live_frac",
    "ssp_mstar_frac",
    "lg_young_mstar_msun_per_msun_yr",
    "lg_young_halpha_erg_s_per_msun_yr",
)
_MAG_PER_DEX: float = 2.5


@dataclass(frozen=True)
class AxisBracket:
    """Where values fall on a grid axis: x ~ (1 - weight) axis[index] + weight axis[index + 1].

    Attributes:
        index: integer tensor, the lower node, in [0, n - 2]; same shape as the values.
        weight: float tensor in [0, 1], differentiable in the values; same shape.
    """

    index: Tensor
    weight: Tensor


def bracket(axis: Tensor, x: Tensor) -> AxisBracket:
    """Lower node and linear weight of ``x`` on the increasing 1-D ``axis`` (x within range).

    Args:
        axis: (n,) increasing nodes, n >= 2.
        x: any shape, same dtype/device; values outside the axis give weights outside [0, 1]
            (callers clamp or check first).
    """
    n = axis.shape[0]
    i = torch.searchsorted(axis, x.detach().contiguous(), right=True) - 1
    i = i.clamp(0, n - 2)
    lo = axis[i]
    return AxisBracket(index=i, weight=(x - lo) / (axis[i + 1] - lo))


def _lerp(lo: Tensor, hi: Tensor, w: Tensor) -> Tensor:
    return lo + w * (hi - lo)


def _interp_over_z(table: Tensor, z: AxisBracket) -> Tensor:
    """Interpolate ``table`` (n_bands, n_z, ...) in redshift -> (B, n_bands, ...)."""
    lo = table[:, z.index].movedim(1, 0)
    hi = table[:, z.index + 1].movedim(1, 0)
    w = z.weight.reshape((-1,) + (1,) * (lo.dim() - 1))
    return _lerp(lo, hi, w)


def _gather_last(values: Tensor, index: Tensor) -> Tensor:
    """values (B, C, K), index (B, N) -> values[b, c, index[b, n]] as (B, C, N)."""
    b, c, _ = values.shape
    return torch.gather(values, 2, index.unsqueeze(1).expand(b, c, index.shape[1]))


def _interp_over_met(table: Tensor, met: AxisBracket) -> Tensor:
    """Interpolate ``table`` (B, C, n_Z) linearly at the bracketed metallicities (B, N)
    -> (B, C, N)."""
    lo = _gather_last(table, met.index)
    return _lerp(lo, _gather_last(table, met.index + 1), met.weight.unsqueeze(1))


def interp_band_table(table: Tensor, redshift_axis: Tensor, redshift: Tensor) -> Tensor:
    """Interpolate a (n_bands, n_z) table linearly in redshift -> (B, n_bands).

    Args:
        table: (n_bands, n_z).
        redshift_axis: (n_z,).
        redshift: (B,), within the axis.
    """
    return _interp_over_z(table, bracket(redshift_axis, redshift))


def interp_young_lg_flux(
    lg_table: Tensor,
    redshift_axis: Tensor,
    met_axis: Tensor,
    redshift: Tensor,
    lg_met: Tensor,
) -> Tensor:
    """Bilinear interpolation of a (n_bands, n_z, n_Z) log-flux table.

    Args:
        lg_table: (n_bands, n_z, n_Z).
        redshift_axis: (n_z,); met_axis: (n_Z,) increasing.
        redshift: (B,), within the redshift axis.
        lg_met: (B, N), already clamped to the metallicity axis.

    Returns:
        (B, n_bands, N) log10 flux.
    """
    t_z = _interp_over_z(lg_table, bracket(redshift_axis, redshift))  # (B, C, nZ)
    return _interp_over_met(t_z, bracket(met_axis, lg_met))


def interp_ssp_lg_flux(
    lg_table: Tensor,
    redshift_axis: Tensor,
    age_axis: Tensor,
    met_axis: Tensor,
    redshift: Tensor,
    lg_age: Tensor,
    lg_met: Tensor,
) -> Tensor:
    """Trilinear interpolation of the (n_bands, n_z, n_age, n_Z) SSP log-flux table.

    Args:
        lg_table: (n_bands, n_z, n_age, n_Z).
        redshift_axis, age_axis, met_axis: the increasing axes.
        redshift: (B,), within the redshift axis.
        lg_age: (B, 1) (one age per galaxy: the fast path) or (B, N), clamped to the age axis.
        lg_met: (B, 1) or (B, N), clamped to the metallicity axis.

    Returns:
        (B, n_bands, N) log10 flux, N the larger of the two trailing sizes.
    """
    t_z = _interp_over_z(lg_table, bracket(redshift_axis, redshift))  # (B, C, nA, nZ)
    bsz, n_c, n_a, n_m = t_z.shape
    a = bracket(age_axis, lg_age)
    m = bracket(met_axis, lg_met)
    if lg_age.shape[1] == 1:
        rows = torch.arange(bsz, device=t_z.device)
        lo = t_z[rows, :, a.index[:, 0]]  # (B, C, nZ)
        hi = t_z[rows, :, a.index[:, 0] + 1]
        return _interp_over_met(_lerp(lo, hi, a.weight.reshape(bsz, 1, 1)), m)
    n = max(lg_age.shape[1], lg_met.shape[1])
    ia, wa = a.index.expand(bsz, n), a.weight.expand(bsz, n).unsqueeze(1)
    im, wm = m.index.expand(bsz, n), m.weight.expand(bsz, n).unsqueeze(1)
    flat = t_z.reshape(bsz, n_c, n_a * n_m)

    def corner(da: int, dm: int) -> Tensor:
        return _gather_last(flat, (ia + da) * n_m + (im + dm))

    return _lerp(
        _lerp(corner(0, 0), corner(0, 1), wm),
        _lerp(corner(1, 0), corner(1, 1), wm),
        wa,
    )


def _tables_dir() -> Path:
    return Path(str(importlib.resources.files("galae").joinpath("tables")))


def _resolve_table_path(name: str) -> Path:
    """``galae/tables/sps_<name>.npz``; a clear error when it is unknown or missing."""
    if not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise ValueError(f"SPS table name must be alphanumeric, got {name!r}")
    path = _tables_dir() / f"sps_{name}.npz"
    if path.is_file():
        return path
    if name in PACKAGED_TABLES:
        raise FileNotFoundError(
            f"packaged SPS table {name!r} is missing ({path}); rebuild it with "
            "python -m galae.sps build"
        )
    available = sorted(p.stem.removeprefix("sps_") for p in _tables_dir().glob("sps_*.npz"))
    raise ValueError(f"unknown SPS table {name!r}; available: {available}")


class SPSTable(torch.nn.Module):
    """Band fluxes per unit stellar mass / SFR from the packaged stellar-population table.

    The arrays are buffers, so ``.to(device)`` and ``.to(dtype)`` move them; computations run on
    the device and in the floating dtype of the ``redshift`` argument (the buffers are cast when
    they differ).

    Attributes:
        bands: short band names, e.g. ("u", "g", "r", "i", "z").
        filter_names: speclite names of the filter curves.
        metadata: provenance dictionary stored with the table.
    """

    redshift_grid: Tensor
    lg_age_gyr_grid: Tensor
    lg_zstar_zsun_grid: Tensor
    lg_ssp_flux10pc_nmgy_per_msun: Tensor
    lg_young_flux10pc_nmgy_per_msun_yr: Tensor
    calzetti_k: Tensor

    def __init__(self, arrays: dict[str, np.ndarray], dtype: torch.dtype = torch.float32) -> None:
        """Build from arrays as stored in the npz (see :mod:`galae.physics.sps_build`)."""
        super().__init__()
        missing = [k for k in _REQUIRED_ARRAYS if k not in arrays]
        if missing:
            raise ValueError(f"SPS table is missing arrays {missing}")
        self.bands: tuple[str, ...] = tuple(str(b) for b in arrays["bands"])
        self.filter_names: tuple[str, ...] = tuple(
            str(b) for b in arrays.get("filter_names", arrays["bands"])
        )
        self.metadata: dict[str, Any] = json.loads(str(arrays["metadata_json"]))
        n_b = len(self.bands)
        z, age, met = (np.asarray(arrays[k], np.float64) for k in _REQUIRED_ARRAYS[1:4])
        shapes = {
            "lg_ssp_flux10pc_nmgy_per_msun": (n_b, len(z), len(age), len(met)),
            "lg_young_flux10pc_nmgy_per_msun_yr": (n_b, len(z), len(met)),
            "calzetti_k_band": (n_b, len(z)),
        }
        for key, shape in shapes.items():
            if tuple(arrays[key].shape) != shape:
                raise ValueError(
                    f"SPS table array {key} has shape {arrays[key].shape}, not {shape}"
                )
            if not np.isfinite(arrays[key]).all():
                raise ValueError(f"SPS table array {key} contains NaN or inf")
        for key, axis in (("redshift", z), ("lg_age_gyr", age), ("lg_zstar_zsun", met)):
            if axis.ndim != 1 or len(axis) < 2 or not np.all(np.diff(axis) > 0):
                raise ValueError(f"SPS table axis {key} must be 1-D and increasing")
        if self.metadata.get("cosmology", cosmology.COSMOLOGY_NAME) != cosmology.COSMOLOGY_NAME:
            raise ValueError(
                f"table built for cosmology {self.metadata['cosmology']!r}, "
                f"galae uses {cosmology.COSMOLOGY_NAME!r}"
            )

        def buf(name: str, value: np.ndarray) -> None:
            self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=dtype))

        buf("redshift_grid", z)
        buf("lg_age_gyr_grid", age)
        self._lg_age_values: tuple[float, ...] = tuple(float(a) for a in age)
        buf("lg_zstar_zsun_grid", met)
        buf("lg_ssp_flux10pc_nmgy_per_msun", arrays["lg_ssp_flux10pc_nmgy_per_msun"])
        buf("lg_young_flux10pc_nmgy_per_msun_yr", arrays["lg_young_flux10pc_nmgy_per_msun_yr"])
        buf("calzetti_k", arrays["calzetti_k_band"])
        for key in _OPTIONAL_ARRAYS:
            if key in arrays:
                buf(key, arrays[key])

    # ----------------------------------------------------------------------------- loading
    @classmethod
    def from_file(cls, path: str | Path, dtype: torch.dtype = torch.float32) -> SPSTable:
        """Load a table written by :func:`galae.physics.sps_build.write_sps_table`.

        Raises:
            FileNotFoundError: missing file; ValueError: unreadable or inconsistent file.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"SPS table file not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
            raise ValueError(f"SPS table file {path} is corrupt or not an npz: {err}") from err
        return cls(arrays, dtype=dtype)

    @classmethod
    def load(cls, name: str = "sdss", dtype: torch.dtype = torch.float32) -> SPSTable:
        """Load a table from ``galae/tables/sps_<name>.npz`` (``"sdss"``: SDSS ugriz, shipped).

        Raises:
            ValueError: unknown name or corrupt file; FileNotFoundError: a packaged table missing.
        """
        return cls.from_file(_resolve_table_path(name), dtype=dtype)

    # ----------------------------------------------------------------------------- axes
    @property
    def n_bands(self) -> int:
        """Number of bands C."""
        return len(self.bands)

    @property
    def redshift_range(self) -> tuple[float, float]:
        """(z_min, z_max) of the table."""
        return float(self.redshift_grid[0]), float(self.redshift_grid[-1])

    # ----------------------------------------------------------------------------- helpers
    def _prepare(
        self, redshift: Tensor | float, fields: tuple[Tensor | float, ...]
    ) -> tuple[Tensor, list[Tensor], tuple[int, ...]]:
        """Validate inputs; return z (B,), fields as (B, N_i) and the trailing shape S."""
        if isinstance(redshift, Tensor):
            z = redshift
        else:
            z = torch.as_tensor(redshift, device=self.redshift_grid.device)
        if not z.is_floating_point():
            z = z.to(self.redshift_grid.dtype)
        if z.dim() != 1:
            raise ValueError(f"redshift must have shape (B,), got {tuple(z.shape)}")
        if bool((~torch.isfinite(z)).any()):
            raise ValueError("redshift contains NaN or inf")
        z_lo, z_hi = self.redshift_range
        tol = 1e-6
        if bool(((z < z_lo - tol) | (z > z_hi + tol)).any()):
            raise ValueError(f"redshift must lie within the table's range [{z_lo}, {z_hi}]")
        z = z.clamp(z_lo, z_hi)
        bsz = z.shape[0]
        tensors = []
        trailing = []
        for f in fields:
            t = torch.as_tensor(f, device=z.device, dtype=z.dtype)
            if t.dim() == 0:
                t = t.expand(bsz)
            if t.shape[0] not in (1, bsz):
                raise ValueError(
                    f"population field has leading size {t.shape[0]}, expected B = {bsz} (or 1)"
                )
            if bool((~torch.isfinite(t)).any()):
                raise ValueError("age or metallicity contains NaN or inf")
            tensors.append(t)
            trailing.append(tuple(t.shape[1:]))
        try:
            shape_s = tuple(torch.broadcast_shapes(*trailing)) if trailing else ()
        except RuntimeError as err:
            raise ValueError(f"population fields do not broadcast: {trailing}") from err
        flat = []
        for t in tensors:
            t = t.reshape(
                (t.shape[0],) + (1,) * (len(shape_s) - (t.dim() - 1)) + tuple(t.shape[1:])
            )
            if math.prod(t.shape[1:]) == 1:
                flat.append(t.reshape(t.shape[0], 1).expand(bsz, 1))
            else:
                flat.append(t.expand((bsz,) + shape_s).reshape(bsz, -1))
        return z, flat, shape_s

    def _buffer(self, t: Tensor, like: Tensor) -> Tensor:
        return t.to(device=like.device, dtype=like.dtype)

    def _finish(self, lg_flux: Tensor, shape_s: tuple[int, ...]) -> Tensor:
        bsz, n_c, n = lg_flux.shape
        if n == 1 and math.prod(shape_s) != 1:
            lg_flux = lg_flux.expand(bsz, n_c, math.prod(shape_s))
        return lg_flux.reshape((bsz, n_c) + shape_s)

    def _distance_dex(self, z: Tensor) -> Tensor:
        """-0.4 DM(z) as (B, 1), log10 of the 10 pc -> d_L dimming."""
        return (-cosmology.distance_modulus_mag(z) / _MAG_PER_DEX).unsqueeze(1)

    def _observed(self, lg_flux10pc: Tensor, redshift: Tensor | float) -> Tensor:
        """Observed flux from a log10 flux at 10 pc (B, n_bands, *S): times 10^(-0.4 DM(z))."""
        z = torch.as_tensor(redshift, device=lg_flux10pc.device, dtype=lg_flux10pc.dtype)
        dex = self._distance_dex(z).reshape((-1, 1) + (1,) * (lg_flux10pc.dim() - 2))
        return 10.0 ** (lg_flux10pc + dex)

    # ----------------------------------------------------------------------------- SSP
    def lg_ssp_flux10pc_nmgy_per_msun_at(
        self, redshift: Tensor, lg_age_gyr: Tensor | float, lg_zstar_zsun: Tensor | float
    ) -> Tensor:
        """log10 SSP flux at 10 pc per M_sun (current mass), (B, n_bands, *S).

        Args:
            redshift: (B,) within the table's redshift range.
            lg_age_gyr: log10(age / Gyr), (B,), (B, *S) or 0-d; clamped to the age grid.
            lg_zstar_zsun: log10(Z / Z_sun), same conventions; clamped to the metallicity grid.
        """
        z, (lg_age, lg_met), shape_s = self._prepare(redshift, (lg_age_gyr, lg_zstar_zsun))
        age_axis = self._buffer(self.lg_age_gyr_grid, z)
        met_axis = self._buffer(self.lg_zstar_zsun_grid, z)
        lg_age = lg_age.clamp(float(age_axis[0]), float(age_axis[-1]))
        lg_met = lg_met.clamp(float(met_axis[0]), float(met_axis[-1]))
        lg = interp_ssp_lg_flux(
            self._buffer(self.lg_ssp_flux10pc_nmgy_per_msun, z),
            self._buffer(self.redshift_grid, z),
            age_axis,
            met_axis,
            z,
            lg_age,
            lg_met,
        )
        return self._finish(lg, shape_s)

    def ssp_flux10pc_nmgy_per_msun(
        self, redshift: Tensor, lg_age_gyr: Tensor | float, lg_zstar_zsun: Tensor | float
    ) -> Tensor:
        """SSP flux per M_sun of current mass at 10 pc (absolute-magnitude scale at z = 0),
        nanomaggies, (B, n_bands, *S).  Arguments as :meth:`ssp_flux_nmgy_per_msun`."""
        return 10.0 ** self.lg_ssp_flux10pc_nmgy_per_msun_at(redshift, lg_age_gyr, lg_zstar_zsun)

    def ssp_flux_nmgy_per_msun(
        self, redshift: Tensor, lg_age_gyr: Tensor | float, lg_zstar_zsun: Tensor | float
    ) -> Tensor:
        """Observed SSP flux per M_sun of current stellar mass, nanomaggies, (B, n_bands, *S).

        The 10 pc table times 10^(-0.4 DM(z)) (Planck18).

        Args:
            redshift: (B,), 0 < z within the table's range.
            lg_age_gyr: log10(age / Gyr), (B,), (B, *S) or 0-d; clamped to the age grid.
            lg_zstar_zsun: log10(Z / Z_sun), same conventions; clamped to the metallicity grid.
        """
        lg = self.lg_ssp_flux10pc_nmgy_per_msun_at(redshift, lg_age_gyr, lg_zstar_zsun)
        return self._observed(lg, redshift)

    # ----------------------------------------------------------------------------- composite
    def age_index_of(self, lg_age_gyr: float) -> int:
        """Index of the age node whose cell (between the log-midpoints to its neighbours)
        holds ``lg_age_gyr`` (clamped to the grid); a Python int, no device sync."""
        g = self._lg_age_values
        for i in range(len(g) - 1):
            if lg_age_gyr < 0.5 * (g[i] + g[i + 1]):
                return i
        return len(g) - 1

    def lg_composite_flux10pc_nmgy_per_msun_at(
        self, redshift: Tensor, age_weights: Tensor, lg_zstar_zsun: Tensor | float
    ) -> Tensor:
        """log10 flux at 10 pc per M_sun (current mass) of a composite population whose mass is
        spread over the table's ages, (B, n_bands, *S).

        The table is interpolated in redshift (log-linearly, as for an SSP), the SSP fluxes
        at each grid metallicity are averaged with the weights, and the log of that average is
        interpolated linearly in log Z (the SSP's metallicity interpolation).

        Args:
            redshift: (B,) within the table's redshift range.
            age_weights: (B, n) current-mass fractions (summing to 1, e.g.
                :func:`galae.physics.sfh.age_grid_mass_fractions`) on the table's last n ages,
                ``lg_age_gyr_grid[-n:]`` (n <= n_age: younger ages get no mass and cost
                nothing).
            lg_zstar_zsun: log10(Z / Z_sun), (B,), (B, *S) or 0-d; clamped to the grid.
        """
        z, (lg_met,), shape_s = self._prepare(redshift, (lg_zstar_zsun,))
        n_all = self.lg_age_gyr_grid.shape[0]
        n_age = age_weights.shape[-1]
        if age_weights.dim() != 2 or not 1 <= n_age <= n_all:
            raise ValueError(
                f"age_weights must have shape (B, n) with n <= {n_all} (the table's last n "
                f"ages), got {tuple(age_weights.shape)}"
            )
        if age_weights.shape[0] not in (1, z.shape[0]):
            raise ValueError(
                f"age_weights has leading size {age_weights.shape[0]}, expected B = {z.shape[0]}"
            )
        met_axis = self._buffer(self.lg_zstar_zsun_grid, z)
        lg_met = lg_met.clamp(float(met_axis[0]), float(met_axis[-1]))
        t_z = _interp_over_z(
            self._buffer(self.lg_ssp_flux10pc_nmgy_per_msun[:, :, n_all - n_age :], z),
            bracket(self._buffer(self.redshift_grid, z), z),
        )  # (B, C, n, nZ)
        w = age_weights.to(t_z.dtype).expand(z.shape[0], n_age)
        lin = torch.einsum("bcam,ba->bcm", 10.0**t_z, w)  # (B, C, nZ)
        lg_c = torch.log10(lin.clamp_min(torch.finfo(lin.dtype).tiny))
        return self._finish(_interp_over_met(lg_c, bracket(met_axis, lg_met)), shape_s)

    def composite_flux_nmgy_per_msun(
        self, redshift: Tensor, age_weights: Tensor, lg_zstar_zsun: Tensor | float
    ) -> Tensor:
        """Observed flux per M_sun of current mass of a composite population, nanomaggies,
        (B, n_bands, *S): :meth:`lg_composite_flux10pc_nmgy_per_msun_at` times 10^(-0.4 DM(z))."""
        lg = self.lg_composite_flux10pc_nmgy_per_msun_at(redshift, age_weights, lg_zstar_zsun)
        return self._observed(lg, redshift)

    # ----------------------------------------------------------------------------- young
    def lg_young_flux10pc_nmgy_per_msun_yr_at(
        self, redshift: Tensor, lg_zstar_zsun: Tensor | float
    ) -> Tensor:
        """log10 flux at 10 pc of 100 Myr of constant SFR (with nebular emission) per M_sun/yr,
        (B, n_bands, *S).  Arguments as :meth:`young_flux_nmgy_per_msun_yr`."""
        z, (lg_met,), shape_s = self._prepare(redshift, (lg_zstar_zsun,))
        met_axis = self._buffer(self.lg_zstar_zsun_grid, z)
        lg_met = lg_met.clamp(float(met_axis[0]), float(met_axis[-1]))
        lg = interp_young_lg_flux(
            self._buffer(self.lg_young_flux10pc_nmgy_per_msun_yr, z),
            self._buffer(self.redshift_grid, z),
            met_axis,
            z,
            lg_met,
        )
        return self._finish(lg, shape_s)

    def young_flux10pc_nmgy_per_msun_yr(
        self, redshift: Tensor, lg_zstar_zsun: Tensor | float
    ) -> Tensor:
        """Young-population flux at 10 pc per M_sun/yr, nanomaggies, (B, n_bands, *S)."""
        return 10.0 ** self.lg_young_flux10pc_nmgy_per_msun_yr_at(redshift, lg_zstar_zsun)

    def young_flux_nmgy_per_msun_yr(
        self, redshift: Tensor, lg_zstar_zsun: Tensor | float
    ) -> Tensor:
        """Observed flux of stars formed at 1 M_sun/yr over the last 100 Myr, with their nebular
        continuum and lines, nanomaggies per (M_sun/yr), (B, n_bands, *S).

        Args:
            redshift: (B,), 0 < z within the table's range.
            lg_zstar_zsun: log10(Z / Z_sun) of stars and gas, (B,), (B, *S) or 0-d; clamped.
        """
        lg = self.lg_young_flux10pc_nmgy_per_msun_yr_at(redshift, lg_zstar_zsun)
        return self._observed(lg, redshift)

    # ----------------------------------------------------------------------------- dust
    def calzetti_k_band(self, redshift: Tensor) -> Tensor:
        """Effective Calzetti (2000) k = A_band / E(B-V) of each band at z, (B, n_bands)."""
        z, _, _ = self._prepare(redshift, ())
        return interp_band_table(
            self._buffer(self.calzetti_k, z), self._buffer(self.redshift_grid, z), z
        )

    def extra_repr(self) -> str:
        z_lo, z_hi = self.redshift_range
        return (
            f"bands={self.bands}, z=[{z_lo}, {z_hi}] ({self.redshift_grid.numel()}), "
            f"n_age={self.lg_age_gyr_grid.numel()}, n_Z={self.lg_zstar_zsun_grid.numel()}"
        )
