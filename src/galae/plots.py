"""Figures of galae: composites, galleries, latent traversals, reconstructions, maps, corners.

This is the only module of galae that imports matplotlib.  It never touches ``pyplot``: every
figure is a :class:`matplotlib.figure.Figure` with an explicit Agg canvas, so no window is ever
opened, the user's backend is left alone and figures need no closing (they are garbage
collected like any object).  Figure functions are pure functions of arrays (numpy or torch,
on any device) that return the Figure and, with ``out=``, also write it as a PNG.

Conventions: images are shown with ``origin="lower"`` (row 0 at the bottom, +y up, as in the
renderer, where position angles run counter-clockwise from +x); colour maps are
colour-blind-friendly (viridis, magma, cividis, inferno; RdBu_r for residuals); every colour
bar carries its unit.

Command line::

    python -m galae.plots mocks       --data X.h5 [--n 16] [--out figures/mocks.png]
    python -m galae.plots traverse    [--checkpoint C] [--params a,b] [--steps 7] [--out ...]
    python -m galae.plots gallery     [--checkpoint C] [--n 36] [--seed 0] [--out ...]
    python -m galae.plots reconstruct [--checkpoint C] --data X.h5 [--n 6] [--out ...]
    python -m galae.plots corner      [--checkpoint C] --data X.h5 [--index 0] [--out ...]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
import torch
from astropy.visualization import make_lupton_rgb
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Colormap
from matplotlib.figure import Figure, SubFigure
from scipy.ndimage import gaussian_filter

from galae.latent import REGISTRY, unit_of
from galae.physics.maps import MAP_UNITS

if TYPE_CHECKING:
    from galae.sampling import GalaeModel, Samples

__all__ = [
    "DEFAULT_STRETCH_NMGY",
    "DEFAULT_Q",
    "DPI",
    "MAP_STYLE",
    "Traversal",
    "gri_composite",
    "chi_residual",
    "azimuthal_profile",
    "param_label",
    "map_label",
    "save_figure",
    "mock_gallery",
    "traverse_latents",
    "traversal_figure",
    "traversal_maps_figure",
    "reconstruction_figure",
    "maps_comparison_figure",
    "radial_profiles_figure",
    "r_half_resolution_figure",
    "comparison_figure",
    "radial_residuals_comparison_figure",
    "shift_ratios_figure",
    "corner_figure",
    "sample_gallery",
    "analogues_figure",
    "DEFAULT_ANALOGUE_PARAMS",
    "build_parser",
    "main",
]

# ---------------------------------------------------------------------------------------------
# Display constants
# ---------------------------------------------------------------------------------------------

#: Linear stretch of the asinh composite, nanomaggies per pixel.  With the asinh law of
#: :func:`gri_composite` the display is linear (y ~ 1.09 I / stretch) up to I ~ stretch =
#: 0.5 nmgy/pixel, i.e. 10-30 sigma of SDSS single-epoch sky noise in g, r, i (0.017, 0.028,
#: 0.046 nmgy per 0.396" pixel at median conditions, :mod:`galae.data.conditions`), so the sky
#: noise is just visible as a faint grain and faint outskirts stay visible; it saturates at
#: I = stretch sinh(asinh(0.1 Q) / 0.1) / Q ~ 95 stretch ~ 48 nmgy/pixel (about 18.3 mag in a
#: pixel), brighter than the centre of most z > 0.02 galaxies at SDSS resolution.
DEFAULT_STRETCH_NMGY: float = 0.5
#: Asinh softening of the composite (Lupton et al. 2004, eq. 2; astropy's default).
DEFAULT_Q: float = 8.0
#: Bands mapped to (R, G, B) (Lupton et al. 2004, sec. 3: i, r, g for SDSS).
RGB_BANDS: tuple[str, str, str] = ("i", "r", "g")
#: Resolution of written PNGs.
DPI: int = 120
#: Where the command line writes figures by default (relative to the working directory).
FIGURE_DIR: Path = Path("figures")
#: Colour-blind-safe accent colours (Okabe & Ito 2008 palette): truth, prediction.
TRUTH_COLOR: str = "#0072B2"
PRED_COLOR: str = "#D55E00"
#: Colour map of signed residuals.
RESIDUAL_CMAP: str = "RdBu_r"

#: map name -> (plot label, colour map); units come from :data:`galae.physics.maps.MAP_UNITS`.
MAP_STYLE: dict[str, tuple[str, str]] = {
    "log10_sigma_mstar_msun_per_kpc2": (r"$\log\,\Sigma_*$", "viridis"),
    "log10_sigma_sfr_msun_per_yr_per_kpc2": (r"$\log\,\Sigma_{\rm SFR}$", "magma"),
    "log10_zstar_zsun": (r"$\log\,Z_*/Z_\odot$", "cividis"),
    "oh12_gas": (r"$12+\log({\rm O/H})$", "cividis"),
    "age_gyr": (r"age$_*$", "magma"),
    "log10_sigma_gas_msun_per_pc2": (r"$\log\,\Sigma_{\rm gas}$", "viridis"),
    "log10_sigma_hi_msun_per_pc2": (r"$\log\,\Sigma_{\rm HI}$", "viridis"),
    "av_mag": (r"$A_V$", "inferno"),
}
_DEFAULT_MAP_CMAP = "viridis"
#: Maps with this prefix are log10 of a surface density clipped at a floor (physics/maps.py).
_FLOORED_MAP_PREFIX = "log10_sigma_"

#: Labels of derived observables that are not latents (their units: galae.latent.unit_of).
_DERIVED_LABELS: dict[str, str] = {
    "log10_mstar_msun": r"$\log\,M_*$",
    "log10_sfr_msun_per_yr": r"$\log\,{\rm SFR}$",
    "redshift": r"$z$",
}
#: Per-band derived observables: name prefix -> label template with {band}.
_BAND_LABELS: dict[str, str] = {
    "mag_": r"$m_{{{band}}}$",
    "r_half_arcsec_": r"$r_{{1/2,{band}}}$",
    "bulge_to_total_": r"$B/T_{{{band}}}$",
}
#: Plain-text unit fragments -> mathtext (order matters: "kpc2" before "pc2").
_UNIT_TEX: dict[str, str] = {
    "Msun": r"M$_\odot$",
    "Zsun": r"Z$_\odot$",
    "kpc2": r"kpc$^2$",
    "pc2": r"pc$^2$",
}
#: Caption fields of the galleries: key -> format of the value.
_CAPTIONS: dict[str, str] = {
    "redshift": "z={:.3f}",
    "log10_mstar_msun": r"log M$_*$={:.2f}",
    "mag_r": "r={:.1f}",
    "log10_sfr_msun_per_yr": "log SFR={:.2f}",
}
_MOCK_CAPTION_KEYS: tuple[str, ...] = ("redshift", "log10_mstar_msun", "mag_r")
_SAMPLE_CAPTION_KEYS: tuple[str, ...] = ("redshift", "log10_mstar_msun", "log10_sfr_msun_per_yr")

#: Defaults of the maps traversal: which latents to sweep, which maps to show.
DEFAULT_MAP_TRAVERSAL_PARAMS: tuple[str, ...] = (
    "log10_mstar_disk_msun",
    "log10_sfr_msun_per_yr",
    "age_disk_gyr",
    "log10_zstar_disk_zsun",
)
DEFAULT_TRAVERSAL_MAPS: tuple[str, ...] = (
    "log10_sigma_mstar_msun_per_kpc2",
    "log10_sigma_sfr_msun_per_yr_per_kpc2",
    "log10_zstar_zsun",
    "age_gyr",
)
#: Default corner-plot quantities of the command line.
#: Latents only: derived observables (e.g. log10_mstar_msun) need one render per draw.
DEFAULT_CORNER_PARAMS: tuple[str, ...] = (
    "log10_mstar_bulge_msun",
    "log10_mstar_disk_msun",
    "log10_sfr_msun_per_yr",
    "age_disk_gyr",
    "log10_zstar_disk_zsun",
    "av_face_on_mag",
    "r_d_kpc",
    "inclination_deg",
)

# Spacing of swept values in the scale of a parameter (registry "scale").
_SPACING: dict[str, Callable[[float, float, int], np.ndarray]] = {
    "linear": lambda lo, hi, n: np.linspace(lo, hi, n),
    "log": lambda lo, hi, n: np.geomspace(lo, hi, n),
}

# Probability mass inside the 1- and 2-sigma contours of a 2-D Gaussian: 1 - exp(-k^2 / 2).
_CORNER_LEVELS: tuple[float, float] = (1.0 - math.exp(-0.5), 1.0 - math.exp(-2.0))


# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------


def _np(x: Any, name: str) -> np.ndarray:
    """Tensor (any device) / array / sequence -> float64 numpy array, with a clear error."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: cannot convert {type(x).__name__} to a float array") from err


def _new_figure(width_in: float, height_in: float) -> Figure:
    """A Figure with an Agg canvas and constrained layout (no pyplot, no window)."""
    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write ``fig`` as PNG (or the format of the suffix) to ``path``; parents are created."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    return p


def _finish(fig: Figure, out: str | Path | None) -> Figure:
    if out is not None:
        save_figure(fig, out)
    return fig


def _pretty_unit(unit: str) -> str:
    for plain, tex in _UNIT_TEX.items():
        unit = unit.replace(plain, tex)
    return unit


def _with_unit(label: str, unit: str) -> str:
    return f"{label} [{_pretty_unit(unit)}]" if unit and "[" not in label else label


def param_label(name: str, with_unit: bool = True) -> str:
    """Plot label of a latent (from the registry) or derived observable, with its unit.

    Unknown names fall back to the name itself.
    """
    if name in REGISTRY:
        p = REGISTRY[name]
        label, unit = p.label, p.unit
    elif name in _DERIVED_LABELS:
        label, unit = _DERIVED_LABELS[name], unit_of(name)
    else:
        prefix = next((k for k in _BAND_LABELS if name.startswith(k)), None)
        if prefix is None:
            return name
        label, unit = _BAND_LABELS[prefix].format(band=name[len(prefix) :]), unit_of(name)
    return _with_unit(label, unit) if with_unit else label


def map_label(name: str, with_unit: bool = True) -> str:
    """Plot label of a map (``MAP_STYLE``), with its unit from ``MAP_UNITS``."""
    label = MAP_STYLE.get(name, (name, _DEFAULT_MAP_CMAP))[0]
    return _with_unit(label, MAP_UNITS.get(name, "")) if with_unit else label


def _map_cmap(name: str) -> Colormap:
    cmap = matplotlib.colormaps[MAP_STYLE.get(name, (name, _DEFAULT_MAP_CMAP))[1]]
    return cmap.with_extremes(bad="0.85")


def _residual_cmap() -> Colormap:
    return matplotlib.colormaps[RESIDUAL_CMAP].with_extremes(bad="0.85")


def _robust_limits(
    values: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.5, skip_floor: bool = False
) -> tuple[float, float]:
    """Colour limits (vmin, vmax) from percentiles of the finite values.

    With ``skip_floor``, for log surface-density maps clipped at a floor where the galaxy is
    empty (:mod:`galae.physics.maps`): when more than 5 % of the pixels sit at the minimum,
    those pixels are left out so that the floor does not set the scale.
    """
    v = values[np.isfinite(values)]
    if v.size == 0:
        return 0.0, 1.0
    if skip_floor:
        above = v[v > v.min()]
        if above.size and (v.size - above.size) > 0.05 * v.size:
            v = above
    lo, hi = np.percentile(v, [lo_pct, hi_pct])
    if not hi > lo:
        pad = max(abs(float(lo)) * 1e-3, 1e-6)
        lo, hi = lo - pad, hi + pad
    return float(lo), float(hi)


def _map_limits(name: str, values: np.ndarray) -> tuple[float, float]:
    """Colour limits of a map: log surface densities skip their empty-pixel floor."""
    return _robust_limits(values, skip_floor=name.startswith(_FLOORED_MAP_PREFIX))


def _bare(ax: Axes) -> None:
    """No ticks, keep the frame (axis labels stay usable)."""
    ax.set_xticks([])
    ax.set_yticks([])


def _fmt(value: float) -> str:
    """Three significant figures, no trailing zeros."""
    return f"{value:.3g}"


def _stamp_text(ax: Axes, text: str, loc: str = "upper left", size: float = 6.5) -> None:
    """White text with a dark edge inside an image panel."""
    x, ha = (0.03, "left") if "left" in loc else (0.97, "right")
    y, va = (0.97, "top") if "upper" in loc else (0.03, "bottom")
    ax.text(
        x,
        y,
        text,
        transform=ax.transAxes,
        ha=ha,
        va=va,
        color="white",
        fontsize=size,
        bbox={"facecolor": "black", "alpha": 0.45, "pad": 1.0, "linewidth": 0},
    )


def _pick(x: np.ndarray, index: int, ndim: int, name: str) -> np.ndarray:
    """x[index] when x has a leading batch axis beyond ``ndim`` dims, else x."""
    if x.ndim == ndim + 1:
        if not -x.shape[0] <= index < x.shape[0]:
            raise ValueError(f"{name}: index {index} out of range for {x.shape[0]} galaxies")
        return x[index]
    if x.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} or {ndim + 1} dims, got shape {x.shape}")
    return x


def _ordered_map_names(names: Sequence[str]) -> list[str]:
    known = [n for n in MAP_UNITS if n in names]
    return known + sorted(n for n in names if n not in MAP_UNITS)


# ---------------------------------------------------------------------------------------------
# Composites and pure array functions
# ---------------------------------------------------------------------------------------------


def gri_composite(
    images: Any,
    bands: Sequence[str],
    *,
    rgb_bands: Sequence[str] = RGB_BANDS,
    stretch: float = DEFAULT_STRETCH_NMGY,
    q: float = DEFAULT_Q,
    minimum: float = 0.0,
    band_weights: Sequence[float] | None = None,
    mask: Any = None,
) -> np.ndarray:
    """Lupton et al. (2004) asinh colour composite of multi-band images (i, r, g -> R, G, B).

    Through :func:`astropy.visualization.make_lupton_rgb`: with the intensity
    ``I = (w_R x_R + w_G x_G + w_B x_B) / 3 - minimum`` (nmgy per pixel), each channel is
    ``w_c x_c f(I) / I`` with (astropy >= 7's ``LuptonAsinhStretch``)

        f(I) = asinh(Q I / stretch) * 0.1 / asinh(0.1 Q),

    clipped at 0, and pixels whose brightest channel exceeds 1 are scaled down to keep their
    colour (Lupton et al. 2004, sec. 3.2).  The mapping is absolute (no per-image
    normalisation), so stamps drawn with the same ``stretch`` and ``q`` compare directly.
    Defaults suit SDSS depth in nanomaggies: see :data:`DEFAULT_STRETCH_NMGY`.

    NaN/inf pixels and pixels masked in any of the three bands are drawn black.

    Args:
        images: (C, H, W) or (N, C, H, W), nanomaggies per pixel (numpy or torch).
        bands: the C band names, in the order of the band axis.
        rgb_bands: the bands mapped to red, green, blue.
        stretch: linear stretch, nmgy per pixel (> 0).
        q: asinh softening (> 0).
        minimum: flux shown as black, nmgy per pixel.
        band_weights: multipliers of the (R, G, B) bands before mixing (default 1, 1, 1:
            AB-flux-true colours).
        mask: optional bool array like ``images`` (True = ignored).

    Returns:
        uint8 RGB, (H, W, 3) or (N, H, W, 3).
    """
    x = _np(images, "images")
    if x.ndim not in (3, 4):
        raise ValueError(f"images must be (C, H, W) or (N, C, H, W), got shape {x.shape}")
    single = x.ndim == 3
    if single:
        x = x[None]
    bands = tuple(bands)
    if x.shape[1] != len(bands):
        raise ValueError(f"images have {x.shape[1]} bands but {len(bands)} band names {bands}")
    missing = [b for b in rgb_bands if b not in bands]
    if len(tuple(rgb_bands)) != 3 or missing:
        raise ValueError(
            f"rgb_bands must be 3 of the image bands {bands}; got {tuple(rgb_bands)}"
            + (f" (missing: {', '.join(missing)})" if missing else "")
        )
    if not (math.isfinite(stretch) and stretch > 0):
        raise ValueError(f"stretch must be finite and > 0 nmgy, got {stretch}")
    if not (math.isfinite(q) and q > 0):
        raise ValueError(f"q must be finite and > 0, got {q}")
    weights = np.ones(3) if band_weights is None else _np(band_weights, "band_weights")
    if weights.shape != (3,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ValueError(f"band_weights must be 3 finite positive numbers, got {band_weights}")
    idx = [bands.index(b) for b in rgb_bands]
    rgb = x[:, idx] * weights[None, :, None, None]
    bad = ~np.isfinite(rgb)
    if mask is not None:
        m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask, bool)
        m = m[None] if m.ndim == 3 else m
        if m.shape != x.shape:
            raise ValueError(f"mask shape {m.shape} does not match images {x.shape}")
        bad = bad | m[:, idx]
    bad_pix = bad.any(axis=1, keepdims=True)
    rgb = np.where(bad_pix, minimum, rgb)
    with np.errstate(invalid="ignore", divide="ignore"):  # astropy's f(I)/I at I = 0
        out = np.stack(
            [make_lupton_rgb(r, g, b, minimum=minimum, stretch=stretch, Q=q) for r, g, b in rgb]
        )
    return out[0] if single else out


def chi_residual(images: Any, model_images: Any, sigma: Any, mask: Any = None) -> np.ndarray:
    """Normalised residual ``(data - model) / sigma``; NaN where masked or not finite.

    Args:
        images, model_images: (N, C, H, W) nanomaggies.
        sigma: (N, C, H, W) or (N, C) 1-sigma noise, nanomaggies (> 0 where not masked).
        mask: optional (N, C, H, W) bool (True = ignored).

    Returns:
        (N, C, H, W) residual in units of sigma.
    """
    x, m = _np(images, "images"), _np(model_images, "model_images")
    s = _np(sigma, "sigma")
    if x.ndim != 4 or m.shape != x.shape:
        raise ValueError(
            f"images and model_images must both be (N, C, H, W); got {x.shape} and {m.shape}"
        )
    if s.ndim == 2 and s.shape == x.shape[:2]:
        s = np.broadcast_to(s[:, :, None, None], x.shape)
    if s.shape != x.shape:
        raise ValueError(
            f"sigma must be (N, C, H, W) or (N, C) for images {x.shape}, got {s.shape}"
        )
    ignore = ~np.isfinite(x) | ~np.isfinite(m) | ~np.isfinite(s)
    if mask is not None:
        mk = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask, bool)
        if mk.shape != x.shape:
            raise ValueError(f"mask shape {mk.shape} does not match images {x.shape}")
        ignore = ignore | mk
    if np.any(s[~ignore] <= 0):
        raise ValueError("sigma must be > 0 on every unmasked pixel (mask the others)")
    with np.errstate(invalid="ignore", divide="ignore"):
        chi = (x - m) / s
    return np.where(ignore, np.nan, chi)


def azimuthal_profile(
    image: Any, center_pix: tuple[float, float] | None, edges_pix: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Azimuthal mean of a map in circular annuli about a centre.

    Pixel (row y, column x) belongs to annulus k when its centre's distance
    ``d = sqrt((x - x0)^2 + (y - y0)^2)`` satisfies ``edges[k] <= d < edges[k+1]``; the
    profile is the mean of the finite pixel values in the annulus (NaN for an empty annulus),
    plotted at the mean distance of those pixels.

    Args:
        image: (H, W) map.
        center_pix: (x0, y0) in pixels with pixel centres at integers; None = stamp centre
            ((W - 1) / 2, (H - 1) / 2).
        edges_pix: (K + 1,) increasing annulus edges, pixels.

    Returns:
        (radius_pix (K,), mean (K,)).
    """
    img = _np(image, "image")
    if img.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {img.shape}")
    edges = _np(edges_pix, "edges_pix")
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges_pix must be 1-d, increasing, with at least 2 values")
    h, w = img.shape
    x0, y0 = ((w - 1) / 2.0, (h - 1) / 2.0) if center_pix is None else center_pix
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx - x0, yy - y0).ravel()
    v = img.ravel()
    k = np.digitize(d, edges) - 1
    ok = np.isfinite(v) & (k >= 0) & (k < edges.size - 1)
    nk = edges.size - 1
    count = np.bincount(k[ok], minlength=nk).astype(np.float64)
    total = np.bincount(k[ok], weights=v[ok], minlength=nk)
    rsum = np.bincount(k[ok], weights=d[ok], minlength=nk)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
        radius = np.where(count > 0, rsum / count, 0.5 * (edges[:-1] + edges[1:]))
    return radius, mean


# ---------------------------------------------------------------------------------------------
# Galleries
# ---------------------------------------------------------------------------------------------


def _caption(params: Mapping[str, np.ndarray], i: int, keys: Sequence[str]) -> str:
    parts = [
        _CAPTIONS[k].format(float(params[k][i]))
        for k in keys
        if k in params and np.isfinite(params[k][i])
    ]
    return "\n".join(parts)


def _composite_grid(
    fig: Figure | SubFigure,
    rgb: np.ndarray,
    captions: Sequence[str],
    ncols: int,
) -> list[Axes]:
    n = rgb.shape[0]
    nrows = math.ceil(n / ncols)
    axes: list[Axes] = []
    gs = fig.add_gridspec(nrows, ncols, wspace=0.02, hspace=0.02)
    for i in range(n):
        ax = fig.add_subplot(gs[i // ncols, i % ncols])
        ax.imshow(rgb[i], origin="lower", interpolation="nearest")
        _bare(ax)
        if captions[i]:
            _stamp_text(ax, captions[i])
        axes.append(ax)
    return axes


def mock_gallery(
    data: Mapping[str, Any],
    n: int = 16,
    *,
    n_maps: int = 3,
    map_names: Sequence[str] | None = None,
    ncols: int | None = None,
    stretch: float = DEFAULT_STRETCH_NMGY,
    q: float = DEFAULT_Q,
    out: str | Path | None = None,
) -> Figure:
    """Gallery of mock galaxies, with the truth maps of a few of them.

    Top: gri composites of the first ``n`` galaxies, captioned with redshift, log stellar mass
    and r magnitude when the data carry them.  Bottom (when the data have truth maps): for the
    first ``n_maps`` galaxies, the composite and one column per map (colour limits shared
    down a column; one colour bar per column, with its unit).

    Args:
        data: a galae data set as returned by :func:`galae.data.hdf5.read_h5`: ``images``
            (N, C, H, W) nmgy, ``bands``, optional ``mask``, ``redshift`` (N,),
            ``truth`` {"params": {name: (N,)}, "maps": {name: (N, H, W)}}.
        n: number of galaxies in the gallery (at most N).
        n_maps: number of galaxies whose maps are shown (0 = none).
        map_names: maps to show (default all in the data, in ``MAP_UNITS`` order).
        ncols: gallery columns (default ceil(sqrt(n))).
        stretch, q: composite settings (:func:`gri_composite`).
        out: optional path of a PNG to write.
    """
    if "images" not in data or "bands" not in data:
        raise ValueError("data must have 'images' (N, C, H, W) and 'bands'")
    images = _np(data["images"], "images")
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    n = min(int(n), images.shape[0])
    if n < 1:
        raise ValueError("n must be >= 1 and the data must hold at least one galaxy")
    truth = data.get("truth", {}) or {}
    params = {k: _np(v, k) for k, v in (truth.get("params", {}) or {}).items()}
    if "redshift" in data:
        params["redshift"] = _np(data["redshift"], "redshift")
    maps_all = truth.get("maps", {}) or {}
    if map_names is None:
        map_names = _ordered_map_names(list(maps_all))
    unknown = [m for m in map_names if m not in maps_all]
    if unknown:
        raise ValueError(
            f"maps {unknown} not in the data; available: {', '.join(maps_all) or 'none'}"
        )
    n_maps = min(max(int(n_maps), 0), images.shape[0]) if map_names else 0
    mask = data.get("mask")
    rgb = gri_composite(
        images[: max(n, n_maps)],
        data["bands"],
        stretch=stretch,
        q=q,
        mask=None if mask is None else np.asarray(mask)[: max(n, n_maps)],
    )
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    n_cols_maps = 1 + len(map_names)
    stamp = 1.25
    width = max(ncols * stamp, n_cols_maps * 1.45 if n_maps else 0.0)
    h_top = nrows * stamp + 0.3
    h_bottom = n_maps * 1.45 + 0.9 if n_maps else 0.0
    fig = _new_figure(width, h_top + h_bottom)
    if n_maps:
        top, bottom = fig.subfigures(2, 1, height_ratios=[h_top, h_bottom])
    else:
        top, bottom = fig, None
    captions = [_caption(params, i, _MOCK_CAPTION_KEYS) for i in range(n)]
    _composite_grid(top, rgb[:n], captions, ncols)
    top.suptitle(f"mock galaxies\n(gri, asinh stretch {stretch:g} nmgy, Q={q:g})", fontsize=8)
    if bottom is not None:
        maps = {m: _np(maps_all[m], m)[:n_maps] for m in map_names}
        axes = bottom.subplots(n_maps, n_cols_maps, squeeze=False)
        for i in range(n_maps):
            axes[i, 0].imshow(rgb[i], origin="lower", interpolation="nearest")
            axes[i, 0].set_ylabel(f"galaxy {i}", fontsize=7)
        axes[0, 0].set_title("gri", fontsize=7)
        for j, name in enumerate(map_names, start=1):
            vmin, vmax = _map_limits(name, maps[name])
            im = None
            for i in range(n_maps):
                im = axes[i, j].imshow(
                    maps[name][i],
                    origin="lower",
                    cmap=_map_cmap(name),
                    vmin=vmin,
                    vmax=vmax,
                    interpolation="nearest",
                )
            axes[0, j].set_title(map_label(name, with_unit=False), fontsize=7)
            cb = bottom.colorbar(im, ax=axes[:, j], location="bottom", shrink=0.9, aspect=12)
            cb.set_label(_pretty_unit(MAP_UNITS.get(name, "")), fontsize=6)
            cb.ax.tick_params(labelsize=6)
        for ax in axes.ravel():
            _bare(ax)
        bottom.suptitle("truth maps", fontsize=9)
    return _finish(fig, out)


def sample_gallery(
    samples: Samples,
    n: int = 36,
    *,
    noisy: bool = True,
    ncols: int | None = None,
    stretch: float = DEFAULT_STRETCH_NMGY,
    q: float = DEFAULT_Q,
    out: str | Path | None = None,
) -> Figure:
    """Grid of gri composites of generated galaxies, captioned with z, log M* and log SFR.

    Args:
        samples: :class:`galae.sampling.Samples` (``images``/``model_images`` (n, C, H, W) nmgy,
            ``params`` {name: (n,)}, ``bands``).
        n: number shown (at most len(samples)).
        noisy: show the noisy images (default) or the noiseless model images.
        ncols, stretch, q, out: as in :func:`mock_gallery`.
    """
    images = _np(samples.images if noisy else samples.model_images, "images")
    n = min(int(n), images.shape[0])
    if n < 1:
        raise ValueError("n must be >= 1 and samples must hold at least one galaxy")
    params = {k: _np(v, k) for k, v in samples.params.items()}
    rgb = gri_composite(images[:n], samples.bands, stretch=stretch, q=q)
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    fig = _new_figure(ncols * 1.25, nrows * 1.25 + 0.3)
    captions = [_caption(params, i, _SAMPLE_CAPTION_KEYS) for i in range(n)]
    _composite_grid(fig, rgb, captions, ncols)
    kind = "with noise" if noisy else "noiseless"
    fig.suptitle(
        f"galaxies drawn from the population prior\n({kind}; gri, asinh stretch {stretch:g} "
        f"nmgy, Q={q:g})",
        fontsize=8,
    )
    return _finish(fig, out)


#: Quantities whose analogue distributions :func:`analogues_figure` shows.
DEFAULT_ANALOGUE_PARAMS: tuple[str, ...] = ("log10_mstar_msun", "log10_sfr_msun_per_yr", "mag_r")


def analogues_figure(
    image: Any,
    model_image: Any,
    analogues: Samples,
    *,
    mask: Any = None,
    n: int = 15,
    params: Sequence[str] = DEFAULT_ANALOGUE_PARAMS,
    truth: Mapping[str, float] | None = None,
    ncols: int = 5,
    stretch: float = DEFAULT_STRETCH_NMGY,
    q: float = DEFAULT_Q,
    out: str | Path | None = None,
) -> Figure:
    """An observed galaxy, its posterior-mean model and its analogues (posterior draws rendered
    with noise under its conditions, :meth:`galae.sampling.GalaeModel.analogues`).

    Left: the image (masked pixels black) and the model; right: the first ``n`` analogues,
    captioned with z, log M* and r; below: the distribution over all analogues of each of
    ``params`` (the median and 68% interval written above it; the truth, when given, as a line).

    Args:
        image: (C, H, W) observed stamp, nmgy per pixel.
        model_image: (C, H, W) the posterior-mean model (``Posterior.model_images[i]``).
        analogues: the analogues, (k, C, H, W) images and ``params`` {name: (k,)}.
        mask: optional (C, H, W) bool, True where the fit ignored the pixel.
        n: analogues shown as images (at most k).
        params: quantities whose histograms are drawn (keys of ``analogues.params``).
        truth: optional {name: value} drawn on the histograms.
        ncols, stretch, q, out: as in :func:`sample_gallery`.
    """
    imgs = _np(analogues.images, "analogues.images")
    k = imgs.shape[0]
    n = min(int(n), k)
    if n < 1:
        raise ValueError("n must be >= 1 and there must be at least one analogue")
    missing = [p for p in params if p not in analogues.params]
    if missing:
        raise ValueError(f"the analogues have no {missing}; they have {sorted(analogues.params)}")
    bands = analogues.bands
    obs = gri_composite(image, bands, stretch=stretch, q=q, mask=mask)
    mod = gri_composite(model_image, bands, stretch=stretch, q=q)
    rgb = gri_composite(imgs[:n], bands, stretch=stretch, q=q)
    values = {p: _np(analogues.params[p], p) for p in analogues.params}
    nrows = math.ceil(n / ncols)
    fig = _new_figure(1.3 * (ncols + 1.6), 1.3 * nrows + 1.9)
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.3 * nrows, 1.5])
    left, right = top.subfigures(1, 2, width_ratios=[1.6, ncols])
    gs = left.add_gridspec(2, 1, hspace=0.15)
    for row, (rgb_one, label) in enumerate(((obs, "observed"), (mod, "posterior mean"))):
        ax = left.add_subplot(gs[row])
        ax.imshow(rgb_one, origin="lower", interpolation="nearest")
        _bare(ax)
        _stamp_text(ax, label)
    captions = [_caption(values, i, _MOCK_CAPTION_KEYS) for i in range(n)]
    _composite_grid(right, rgb, captions, ncols)
    axes = bottom.subplots(1, len(params))
    for ax, name in zip(np.atleast_1d(axes), params, strict=True):
        x = values[name][np.isfinite(values[name])]
        ax.hist(x, bins=min(40, max(8, x.size // 8)), color=PRED_COLOR, alpha=0.7)
        lo, med, hi = np.percentile(x, [16, 50, 84])
        ax.set_title(_fmt_pm(med, hi - med, med - lo), fontsize=7)
        if truth is not None and name in truth and np.isfinite(truth[name]):
            ax.axvline(truth[name], color=TRUTH_COLOR, lw=1.2)
        ax.set_xlabel(param_label(name), fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    fig.suptitle(
        f"{k} analogues: posterior draws rendered with the image's noise and PSF"
        + (" (blue: truth)" if truth else ""),
        fontsize=8,
    )
    return _finish(fig, out)


# ---------------------------------------------------------------------------------------------
# Latent traversals
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traversal:
    """Latents swept one at a time about a base galaxy, rendered noiseless.

    Attributes:
        params: the L swept latent names.
        values: (L, S) swept values, physical units of each latent.
        images: (L, S, C, H, W) noiseless PSF-convolved images, nmgy per pixel.
        maps: {name: (L, S, H, W)} physical maps (units in ``MAP_UNITS``).
        bands: the C band names.
        base: {name: value} the base galaxy (physical units, all registry latents).
        redshift: redshift of the renders.
        sweep: where the ranges come from ("prior" 5th-95th percentile, or "registry").
    """

    params: tuple[str, ...]
    values: np.ndarray
    images: np.ndarray
    maps: dict[str, np.ndarray]
    bands: tuple[str, ...]
    base: dict[str, float]
    redshift: float
    sweep: str


def _check_param_names(names: Sequence[str], what: str = "parameter") -> list[str]:
    names = list(names)
    unknown = [n for n in names if n not in REGISTRY]
    if unknown:
        raise ValueError(
            f"unknown {what} name(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(REGISTRY.names)}"
        )
    return names


def _prior_draws(model: Any, n: int, seed: int) -> dict[str, np.ndarray] | None:
    """n physical draws from the model's population prior, or None if it has none."""
    prior = getattr(getattr(model, "model", None), "prior", None)
    if prior is None:
        return None
    device = getattr(model, "device", torch.device("cpu"))
    g = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        u = prior.sample(n, generator=g)
    return {k: _np(v, k) for k, v in REGISTRY.from_unconstrained(u).items()}


def traverse_latents(
    model: GalaeModel,
    base: Mapping[str, float] | None = None,
    params: Sequence[str] | None = None,
    steps: int = 7,
    *,
    sweep: str = "prior",
    percentiles: tuple[float, float] = (5.0, 95.0),
    n_prior: int = 2000,
    redshift: float = 0.08,
    psf_fwhm_arcsec: float | Sequence[float] = 1.3,
    shape: tuple[int, int] | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> Traversal:
    """Sweep each latent across its range with the others held at a base galaxy; render.

    Ranges: with ``sweep="prior"``, from the ``percentiles[0]``-th to the ``percentiles[1]``-th
    percentile of ``n_prior`` draws of the model's population prior (falling back to the
    registry range when the model has no prior); with ``sweep="registry"``, the registry
    range.  Values are evenly spaced in each latent's scale (linear or logarithmic).

    Base: the per-latent median of the prior draws (the registry mid-point without a prior),
    overridden by ``base`` where given.  Renders are noiseless at ``redshift`` with a Gaussian
    PSF of ``psf_fwhm_arcsec`` (1.3": typical SDSS seeing, median r-band 1.32", SDSS DR17).

    Args:
        model: a :class:`galae.sampling.GalaeModel` (uses ``model.render_samples`` and
            ``model.model.prior``).
        base: {latent name: physical value} overriding the default base galaxy.
        params: latents to sweep (default all, registry order).
        steps: values per latent (>= 2).
        sweep: "prior" or "registry".
        percentiles, n_prior: the prior-percentile range.
        redshift: redshift of the renders (> 0).
        psf_fwhm_arcsec: scalar or per band, > 0.
        shape: stamp (H, W); default the model's.
        seed: seed of the prior draws.
        batch_size: galaxies per render call.
    """
    params = _check_param_names(REGISTRY.names if params is None else params)
    if not params:
        raise ValueError("params must name at least one latent")
    if int(steps) < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    if sweep not in ("prior", "registry"):
        raise ValueError(f"sweep must be 'prior' or 'registry', got {sweep!r}")
    p_lo, p_hi = percentiles
    if not 0.0 <= p_lo < p_hi <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= lo < hi <= 100, got {percentiles}")
    if not (math.isfinite(redshift) and redshift > 0):
        raise ValueError(f"redshift must be finite and > 0, got {redshift}")
    base = dict(base or {})
    _check_param_names(list(base), "base parameter")
    draws = _prior_draws(model, n_prior, seed) if sweep == "prior" else None
    used = "prior" if draws is not None else "registry"
    if draws is not None:
        base_vals = {k: float(np.median(v)) for k, v in draws.items()}
    else:
        base_vals = {k: float(v[0]) for k, v in REGISTRY.midpoint(1, torch.float64).items()}
    base_vals.update({k: float(v) for k, v in base.items()})
    REGISTRY.check({k: torch.tensor([v], dtype=torch.float64) for k, v in base_vals.items()})

    values = np.empty((len(params), int(steps)))
    for i, name in enumerate(params):
        p = REGISTRY[name]
        if draws is not None:
            lo, hi = np.percentile(draws[name], [p_lo, p_hi])
        else:
            lo, hi = p.low, p.high
        if not hi > lo:  # a degenerate prior: widen to 1 % of the range about the value
            half = 0.005 * (p.high - p.low)
            lo, hi = max(p.low, lo - half), min(p.high, hi + half)
        values[i] = _SPACING[p.scale](float(lo), float(hi), int(steps))

    device = getattr(model, "device", torch.device("cpu"))
    f32 = torch.float32
    u_base = REGISTRY.to_unconstrained(
        {k: torch.tensor([v], dtype=torch.float64) for k, v in base_vals.items()}
    ).to(device, f32)
    rows = []
    for i, name in enumerate(params):
        u = u_base.repeat(int(steps), 1)
        vals = torch.as_tensor(values[i], dtype=torch.float64)
        u[:, REGISTRY.index(name)] = REGISTRY[name].to_unconstrained(vals).to(device, f32)
        rows.append(u)
    u_all = torch.cat(rows)
    n_all = u_all.shape[0]
    bands = tuple(model.bands)
    psf = torch.as_tensor(psf_fwhm_arcsec, dtype=f32, device=device).reshape(-1)
    if psf.numel() not in (1, len(bands)) or not torch.isfinite(psf).all() or (psf <= 0).any():
        raise ValueError(
            f"psf_fwhm_arcsec must be finite, > 0, a scalar or one per band {bands}; "
            f"got {psf_fwhm_arcsec}"
        )
    psf = psf.expand(len(bands))
    g = torch.Generator(device=device).manual_seed(seed)
    imgs, maps = [], []
    for start in range(0, n_all, batch_size):
        u = u_all[start : start + batch_size]
        k = u.shape[0]
        r = model.render_samples(
            u,
            torch.full((k,), float(redshift), dtype=f32, device=device),
            psf.expand(k, -1).contiguous(),
            torch.full((k, len(bands)), 1e-3, dtype=f32, device=device),
            None,
            g,
            shape,
            with_derived=False,
        )
        imgs.append(_np(r.model_images, "model_images"))
        maps.append({m: _np(v, m) for m, v in r.maps.items()})
    images = np.concatenate(imgs)
    n_l, n_s = len(params), int(steps)
    images = images.reshape(n_l, n_s, *images.shape[1:])
    map_arrays = {
        m: np.concatenate([part[m] for part in maps]).reshape(n_l, n_s, *images.shape[-2:])
        for m in maps[0]
    }
    return Traversal(
        tuple(params), values, images, map_arrays, bands, base_vals, float(redshift), used
    )


def _as_traversal(
    source: GalaeModel | Traversal,
    base: Mapping[str, float] | None,
    params: Sequence[str] | None,
    steps: int,
    traverse_kwargs: Mapping[str, Any],
) -> Traversal:
    if isinstance(source, Traversal):
        if params is None:
            return source
        params = _check_param_names(params)
        missing = [p for p in params if p not in source.params]
        if missing:
            raise ValueError(
                f"the traversal has no sweep of {missing}; it swept {', '.join(source.params)}"
            )
        rows = [source.params.index(p) for p in params]
        return Traversal(
            tuple(params),
            source.values[rows],
            source.images[rows],
            {k: v[rows] for k, v in source.maps.items()},
            source.bands,
            source.base,
            source.redshift,
            source.sweep,
        )
    return traverse_latents(source, base, params, steps, **traverse_kwargs)


def _sweep_note(t: Traversal) -> str:
    src = "5th-95th percentile of the prior" if t.sweep == "prior" else "registry range"
    return f"swept over the {src}; others at the base galaxy; z={t.redshift:g}, noiseless"


def traversal_figure(
    model: GalaeModel | Traversal,
    base: Mapping[str, float] | None = None,
    params: Sequence[str] | None = None,
    steps: int = 7,
    *,
    stretch: float = DEFAULT_STRETCH_NMGY,
    q: float = DEFAULT_Q,
    out: str | Path | None = None,
    **traverse_kwargs: Any,
) -> Figure:
    """Latent traversal as gri composites: rows = latents, columns = steps.

    Row labels are the registry labels with units; each panel's x label is its swept value.
    All panels share one absolute stretch, so brightness compares across the figure.

    Args:
        model: a :class:`galae.sampling.GalaeModel` (rendered with :func:`traverse_latents`) or
            a precomputed :class:`Traversal`.
        base, params, steps, traverse_kwargs: see :func:`traverse_latents`.
        stretch, q: composite settings.
        out: optional PNG path.
    """
    t = _as_traversal(model, base, params, steps, traverse_kwargs)
    n_l, n_s = t.values.shape
    rgb = gri_composite(
        t.images.reshape(n_l * n_s, *t.images.shape[2:]), t.bands, stretch=stretch, q=q
    ).reshape(n_l, n_s, *t.images.shape[-2:], 3)
    fig = _new_figure(1.0 * n_s + 1.9, 1.08 * n_l + 0.5)
    axes = fig.subplots(n_l, n_s, squeeze=False)
    for i, name in enumerate(t.params):
        for j in range(n_s):
            ax = axes[i, j]
            ax.imshow(rgb[i, j], origin="lower", interpolation="nearest")
            _bare(ax)
            ax.set_xlabel(_fmt(t.values[i, j]), fontsize=6.5, labelpad=1)
        axes[i, 0].set_ylabel(param_label(name), rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle(
        f"latent traversal (gri, stretch {stretch:g} nmgy, Q={q:g}): " + _sweep_note(t), fontsize=8
    )
    return _finish(fig, out)


def traversal_maps_figure(
    model: GalaeModel | Traversal,
    base: Mapping[str, float] | None = None,
    params: Sequence[str] | None = DEFAULT_MAP_TRAVERSAL_PARAMS,
    steps: int = 7,
    *,
    map_names: Sequence[str] | None = DEFAULT_TRAVERSAL_MAPS,
    stretch: float = DEFAULT_STRETCH_NMGY,
    q: float = DEFAULT_Q,
    out: str | Path | None = None,
    **traverse_kwargs: Any,
) -> Figure:
    """Latent traversal as physical maps: one block per swept latent.

    Each block's rows are the gri composite and the maps, its columns the steps; colour limits
    of a map are shared by all blocks, with one colour bar (with unit) per map row.

    Args:
        model: a GalaeModel or a precomputed :class:`Traversal` (then ``params`` selects rows
            of it; None = all).
        base, params, steps, traverse_kwargs: see :func:`traverse_latents`.
        map_names: maps to show (None = all in the traversal, ``MAP_UNITS`` order).
        stretch, q, out: as in :func:`traversal_figure`.
    """
    t = _as_traversal(model, base, params, steps, traverse_kwargs)
    names = _ordered_map_names(list(t.maps)) if map_names is None else list(map_names)
    unknown = [m for m in names if m not in t.maps]
    if unknown:
        raise ValueError(f"unknown map name(s) {unknown}; available: {', '.join(t.maps)}")
    n_l, n_s = t.values.shape
    rows = 1 + len(names)
    limits = {m: _map_limits(m, t.maps[m]) for m in names}
    rgb = gri_composite(
        t.images.reshape(n_l * n_s, *t.images.shape[2:]), t.bands, stretch=stretch, q=q
    ).reshape(n_l, n_s, *t.images.shape[-2:], 3)
    block_h = 1.0 * rows + 0.45
    fig = _new_figure(1.0 * n_s + 2.6, block_h * n_l + 0.4)
    subs = np.atleast_1d(fig.subfigures(n_l, 1))
    for b, name in enumerate(t.params):
        sub = subs[b]
        axes = sub.subplots(rows, n_s, squeeze=False)
        for j in range(n_s):
            axes[0, j].imshow(rgb[b, j], origin="lower", interpolation="nearest")
            axes[-1, j].set_xlabel(_fmt(t.values[b, j]), fontsize=6.5, labelpad=1)
            for r, m in enumerate(names, start=1):
                im = axes[r, j].imshow(
                    t.maps[m][b, j],
                    origin="lower",
                    cmap=_map_cmap(m),
                    vmin=limits[m][0],
                    vmax=limits[m][1],
                    interpolation="nearest",
                )
                if j == n_s - 1:
                    cb = sub.colorbar(
                        im, ax=axes[r, :], location="right", shrink=0.9, aspect=8, pad=0.01
                    )
                    cb.set_label(_pretty_unit(MAP_UNITS.get(m, "")), fontsize=5.5)
                    cb.ax.tick_params(labelsize=5.5)
        axes[0, 0].set_ylabel("gri", rotation=0, ha="right", va="center", fontsize=7)
        for r, m in enumerate(names, start=1):
            axes[r, 0].set_ylabel(
                map_label(m, with_unit=False), rotation=0, ha="right", va="center", fontsize=7
            )
        for ax in axes.ravel():
            _bare(ax)
        sub.suptitle(f"sweep of {param_label(name)}", fontsize=8)
    fig.suptitle("latent traversal, physical maps: " + _sweep_note(t), fontsize=8)
    return _finish(fig, out)


# ---------------------------------------------------------------------------------------------
# Reconstructions, maps and profiles
# ---------------------------------------------------------------------------------------------


def reconstruction_figure(
    images: Any,
    model_images: Any,
    sigma: Any,
    bands: Sequence[str],
    titles: Sequence[str] | None = None,
    *,
    mask: Any = None,
    residual_bands: Sequence[str] | None = None,
    chi_lim: float = 5.0,
    stretch: float = DEFAULT_STRETCH_NMGY,
    q: float = DEFAULT_Q,
    out: str | Path | None = None,
) -> Figure:
    """Data / model / residual per galaxy (rows).

    Columns: data and model gri composites (same stretch), then the normalised residual
    ``(data - model) / sigma`` of each band in ``residual_bands`` (RdBu_r, symmetric limits
    +-``chi_lim``, masked pixels grey) with its chi^2 per unmasked pixel; one shared colour bar.

    Args:
        images, model_images: (N, C, H, W) nmgy.
        sigma: (N, C, H, W) or (N, C) 1-sigma noise, nmgy.
        bands: the C band names.
        titles: optional N row labels.
        mask: optional (N, C, H, W) bool, True = ignored.
        residual_bands: bands whose residual is shown (default all).
        chi_lim: colour limit of the residual, sigma (> 0).
        stretch, q, out: as in :func:`mock_gallery`.
    """
    bands = tuple(bands)
    chi = chi_residual(images, model_images, sigma, mask)
    n, c = chi.shape[:2]
    if c != len(bands):
        raise ValueError(f"images have {c} bands but {len(bands)} band names {bands}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles has {len(titles)} entries for {n} galaxies")
    if not (math.isfinite(chi_lim) and chi_lim > 0):
        raise ValueError(f"chi_lim must be finite and > 0, got {chi_lim}")
    res_bands = list(bands if residual_bands is None else residual_bands)
    missing = [b for b in res_bands if b not in bands]
    if missing:
        raise ValueError(f"residual_bands {missing} not among the bands {bands}")
    data_rgb = gri_composite(images, bands, stretch=stretch, q=q, mask=mask)
    model_rgb = gri_composite(model_images, bands, stretch=stretch, q=q)
    ncols = 2 + len(res_bands)
    fig = _new_figure(1.3 * ncols + 1.2, 1.35 * n + 0.5)
    axes = fig.subplots(n, ncols, squeeze=False)
    im = None
    for i in range(n):
        axes[i, 0].imshow(data_rgb[i], origin="lower", interpolation="nearest")
        axes[i, 1].imshow(model_rgb[i], origin="lower", interpolation="nearest")
        for j, b in enumerate(res_bands, start=2):
            r = chi[i, bands.index(b)]
            im = axes[i, j].imshow(
                r,
                origin="lower",
                cmap=_residual_cmap(),
                vmin=-chi_lim,
                vmax=chi_lim,
                interpolation="nearest",
            )
            good = np.isfinite(r)
            if good.any():
                _stamp_text(
                    axes[i, j],
                    rf"$\chi^2/N$={np.mean(r[good] ** 2):.2f}",
                    loc="lower left",
                    size=5.5,
                )
        axes[i, 0].set_ylabel(titles[i] if titles is not None else f"galaxy {i}", fontsize=7)
    for j, title in enumerate(["data (gri)", "model (gri)", *[f"resid. {b}" for b in res_bands]]):
        axes[0, j].set_title(title, fontsize=7)
    for ax in axes.ravel():
        _bare(ax)
    cb = fig.colorbar(im, ax=axes[:, 2:], location="right", shrink=0.8, aspect=25, extend="both")
    cb.set_label(r"(data $-$ model) / $\sigma$", fontsize=7)
    cb.ax.tick_params(labelsize=6)
    return _finish(fig, out)


def _map_pair(
    truth: Mapping[str, Any], pred: Mapping[str, Any], names: Sequence[str] | None, index: int
) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    common = [k for k in truth if k in pred]
    if names is None:
        names = _ordered_map_names(common)
    missing = [m for m in names if m not in common]
    if missing:
        raise ValueError(
            f"map(s) {missing} not in both truth and prediction; common: {', '.join(common)}"
        )
    if not names:
        raise ValueError("truth and prediction have no map in common")
    t = {m: _pick(_np(truth[m], m), index, 2, f"truth[{m!r}]") for m in names}
    p = {m: _pick(_np(pred[m], m), index, 2, f"pred[{m!r}]") for m in names}
    for m in names:
        if t[m].shape != p[m].shape:
            raise ValueError(f"map {m!r}: truth {t[m].shape} and prediction {p[m].shape} differ")
    return list(names), t, p


def maps_comparison_figure(
    truth: Mapping[str, Any],
    pred: Mapping[str, Any],
    names: Sequence[str] | None = None,
    index: int = 0,
    *,
    std: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
) -> Figure:
    """Truth / prediction / difference (prediction - truth) for each map (rows) of one galaxy,
    and with ``std`` a fourth column: the prediction's posterior standard deviation.

    Truth and prediction share colour limits and a colour bar with the map's unit; the
    difference is drawn with RdBu_r, symmetric limits (99th percentile of |difference|), its
    own colour bar, and its RMS; the standard deviation with its own colour bar and its median
    over the pixels where it is not zero (a background floored in every draw has none).

    Args:
        truth, pred: {map name: (N, H, W) or (H, W)}.
        names: maps to show (default those in both, ``MAP_UNITS`` order).
        index: which galaxy when the maps have a batch axis.
        std: {map name: (N, H, W) or (H, W)} posterior standard deviations (a
            :class:`galae.sampling.Posterior`'s ``maps_std``), or None.
        out: optional PNG path.
    """
    names, t, p = _map_pair(truth, pred, names, index)
    sd = {}
    if std:
        missing = [m for m in names if m not in std]
        if missing:
            raise ValueError(f"std has no map {missing}; it has {', '.join(std)}")
        sd = {m: _pick(_np(std[m], m), index, 2, f"std[{m!r}]") for m in names}
    cols = 4 if sd else 3
    fig = _new_figure(6.2 * cols / 3, 1.75 * len(names) + 0.4)
    axes = fig.subplots(len(names), cols, squeeze=False)
    for r, m in enumerate(names):
        vmin, vmax = _map_limits(m, np.concatenate([t[m].ravel(), p[m].ravel()]))
        for j, arr in enumerate((t[m], p[m])):
            im = axes[r, j].imshow(
                arr,
                origin="lower",
                cmap=_map_cmap(m),
                vmin=vmin,
                vmax=vmax,
                interpolation="nearest",
            )
        cb = fig.colorbar(im, ax=axes[r, :2], location="right", shrink=0.9, aspect=12, pad=0.01)
        cb.set_label(_pretty_unit(MAP_UNITS.get(m, "")), fontsize=6)
        cb.ax.tick_params(labelsize=6)
        diff = p[m] - t[m]
        finite = diff[np.isfinite(diff)]
        lim = float(np.percentile(np.abs(finite), 99)) if finite.size else 1.0
        lim = lim if lim > 0 else 1.0
        im = axes[r, 2].imshow(
            diff,
            origin="lower",
            cmap=_residual_cmap(),
            vmin=-lim,
            vmax=lim,
            interpolation="nearest",
        )
        if finite.size:
            _stamp_text(
                axes[r, 2], f"rms={np.sqrt(np.mean(finite**2)):.3g}", loc="lower left", size=6
            )
        cb = fig.colorbar(im, ax=axes[r, 2], location="right", shrink=0.9, aspect=12, pad=0.01)
        cb.set_label(r"$\Delta$ " + _pretty_unit(MAP_UNITS.get(m, "")), fontsize=6)
        cb.ax.tick_params(labelsize=6)
        if sd:
            im = axes[r, 3].imshow(
                sd[m], origin="lower", cmap="magma", vmin=0.0, interpolation="nearest"
            )
            # over the pixels where the draws differ (a floored background has sigma 0)
            spread = sd[m][sd[m] > 0]
            med = float(np.median(spread)) if spread.size else 0.0
            _stamp_text(axes[r, 3], f"median={med:.3g}", loc="lower left", size=6)
            cb = fig.colorbar(im, ax=axes[r, 3], location="right", shrink=0.9, aspect=12, pad=0.01)
            cb.set_label(r"$\sigma$ " + _pretty_unit(MAP_UNITS.get(m, "")), fontsize=6)
            cb.ax.tick_params(labelsize=6)
        axes[r, 0].set_ylabel(map_label(m, with_unit=False), fontsize=8)
    titles = ("truth", "prediction", r"prediction $-$ truth", r"posterior $\sigma$")
    for j, title in enumerate(titles[:cols]):
        axes[0, j].set_title(title, fontsize=8)
    for ax in axes.ravel():
        _bare(ax)
    return _finish(fig, out)


def radial_profiles_figure(
    truth: Mapping[str, Any],
    pred: Mapping[str, Any],
    names: Sequence[str] | None = None,
    index: int = 0,
    *,
    r_half_pix: float | Any = None,
    center_pix: tuple[float, float] | None = None,
    r_max: float | None = None,
    n_bins: int = 12,
    ncols: int = 4,
    out: str | Path | None = None,
) -> Figure:
    """Azimuthally averaged profiles of truth vs prediction per map, with a residual panel.

    Radii are in units of the half-light radius when ``r_half_pix`` is given (else pixels);
    annuli (:func:`azimuthal_profile`) are ``n_bins`` equal-width rings out to ``r_max`` (in
    the same unit; default 3 half-light radii, or the stamp's inscribed circle), fewer when
    they would be narrower than one pixel; empty rings are not drawn.  Below each profile:
    prediction - truth, in the map's unit.

    Args:
        truth, pred: {map name: (N, H, W) or (H, W)}.
        names: maps to show (default those in both, ``MAP_UNITS`` order).
        index: galaxy, when the maps have a batch axis.
        r_half_pix: half-light radius in pixels (> 0): a scalar, or (N,) indexed by ``index``.
        center_pix: (x, y) centre, pixel centres at integers (default the stamp centre).
        r_max: outer radius of the last annulus.
        n_bins: number of annuli (>= 2).
        ncols: maps per figure row.
        out: optional PNG path.
    """
    names, t, p = _map_pair(truth, pred, names, index)
    h, w = next(iter(t.values())).shape
    unit_pix = 1.0
    xlabel = "r [pix]"
    if r_half_pix is not None:
        rh = _np(r_half_pix, "r_half_pix")
        rh = float(rh.reshape(-1)[index] if rh.size > 1 else rh.reshape(-1)[0])
        if not (math.isfinite(rh) and rh > 0):
            raise ValueError(f"r_half_pix must be finite and > 0, got {rh}")
        unit_pix = rh
        xlabel = r"$r / r_{1/2}$"
    if r_max is None:
        r_max = 3.0 if r_half_pix is not None else 0.5 * (min(h, w) - 1)
    if not (math.isfinite(r_max) and r_max > 0):
        raise ValueError(f"r_max must be finite and > 0, got {r_max}")
    if int(n_bins) < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    r_max_pix = r_max * unit_pix
    # Rings narrower than a pixel would be empty: at most one ring per pixel of radius.
    n_rings = max(1, min(int(n_bins), math.floor(r_max_pix)))
    edges = np.linspace(0.0, r_max_pix, n_rings + 1)
    ncols = max(1, min(int(ncols), len(names)))
    nblocks = math.ceil(len(names) / ncols)
    fig = _new_figure(2.35 * ncols, 2.7 * nblocks)
    gs = fig.add_gridspec(2 * nblocks, ncols, height_ratios=[3, 1.2] * nblocks)
    for k, m in enumerate(names):
        blk, col = divmod(k, ncols)
        ax = fig.add_subplot(gs[2 * blk, col])
        axr = fig.add_subplot(gs[2 * blk + 1, col], sharex=ax)
        rt, mt = azimuthal_profile(t[m], center_pix, edges)
        rp, mp = azimuthal_profile(p[m], center_pix, edges)
        ok_t, ok_p, ok_d = np.isfinite(mt), np.isfinite(mp), np.isfinite(mt - mp)
        ax.plot(rt[ok_t] / unit_pix, mt[ok_t], "o-", color=TRUTH_COLOR, ms=3, lw=1.2, label="truth")
        ax.plot(
            rp[ok_p] / unit_pix, mp[ok_p], "s--", color=PRED_COLOR, ms=3, lw=1.2, label="prediction"
        )
        axr.axhline(0.0, color="0.5", lw=0.8)
        axr.plot(rt[ok_d] / unit_pix, (mp - mt)[ok_d], "o-", color="0.2", ms=2.5, lw=1.0)
        ax.set_title(map_label(m, with_unit=False), fontsize=8)
        ax.set_ylabel(_pretty_unit(MAP_UNITS.get(m, "")), fontsize=6.5)
        axr.set_ylabel(r"$\Delta$", fontsize=7)
        axr.set_xlabel(xlabel, fontsize=7)
        ax.tick_params(labelbottom=False, labelsize=6)
        axr.tick_params(labelsize=6)
        if k == 0:
            ax.legend(fontsize=6, frameon=False)
    fig.suptitle("azimuthally averaged profiles (annulus means)", fontsize=8)
    return _finish(fig, out)


# ---------------------------------------------------------------------------------------------
# Corner plot
# ---------------------------------------------------------------------------------------------


def radial_residuals_figure(
    profiles: Mapping[str, Mapping[str, Any]],
    *,
    ncols: int = 4,
    out: str | Path | None = None,
) -> Figure:
    """Population radial residual profiles (truth - prediction) per map.

    Args:
        profiles: {map name: {"r_over_rhalf_edges": edges (K+1,), "median": (K,), "p16": (K,),
            "p84": (K,)}} as written by :func:`galae.evaluate.radial_residual_profile`.
        ncols: panels per row.
        out: optional PNG path.
    """
    fig, axes, names = _radial_grid(list(profiles), ncols, 2.4, "no radial profiles to plot")
    for ax, name in zip(axes.flat, names, strict=False):
        _radial_band(ax, profiles[name], "tab:blue", "median", 0.25, band_label="16-84%")
    axes.flat[0].legend(fontsize=7)
    return _finish(fig, out)


def r_half_resolution_figure(
    reports: Mapping[str, Mapping[str, Any]],
    *,
    out: str | Path | None = None,
) -> Figure:
    """Half-light radius recovery against resolution, one line per report.

    Args:
        reports: {label: ``metrics["r_half_by_resolution"]``} as written by
            :func:`galae.evaluate.r_half_by_resolution`: bins of x = r_half,true / FWHM_PSF,
            each with ``lo``, ``hi`` (None: open), ``n``, the medians of |pred/true - 1| and
            pred/true - 1 and, where the posterior widths were given,
            ``fraction_within_1sigma``.
        out: optional PNG path.

    Panels: the median |fractional error| per bin (log scale); the median signed error; and,
    where any report has them, the fraction of the truths within one posterior sigma (the
    dashed line at 0.68 is an honest Gaussian posterior's).
    """
    if not reports:
        raise ValueError("no r_half_by_resolution reports to plot")
    edges = [(b["lo"], b["hi"]) for b in next(iter(reports.values()))["bins"]]
    keys = ["median_abs_frac_error", "median_frac_error"]
    if any("fraction_within_1sigma" in b for rep in reports.values() for b in rep["bins"]):
        keys.append("fraction_within_1sigma")
    fig = _new_figure(3.6 * len(keys), 2.8)
    axes = fig.subplots(1, len(keys))
    for i, (label, rep) in enumerate(reports.items()):
        bins = rep["bins"]
        if [(b["lo"], b["hi"]) for b in bins] != edges:
            raise ValueError(f"{label}: its resolution bins differ from the first report's")
        if not any(b["n"] > 0 for b in bins):
            raise ValueError(f"{label}: every resolution bin is empty")
        x = np.arange(len(bins))
        for ax, key in zip(axes, keys, strict=True):
            y = [b.get(key, np.nan) if b["n"] > 0 else np.nan for b in bins]
            ax.plot(x, y, "o-", color=f"C{i % 10}", label=label)
    ticks = [f"{lo:g}-{hi:g}" if hi is not None else f">{lo:g}" for lo, hi in edges]
    for ax in axes:
        ax.set_xticks(np.arange(len(ticks)), ticks, fontsize=7)
        ax.set_xlabel(r"$r_{1/2,r}^{\rm true}$ / PSF FWHM")
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].set_ylabel(r"median $|r_{1/2}^{\rm pred}/r_{1/2}^{\rm true} - 1|$")
    axes[1].axhline(0.0, color="k", lw=0.6)
    axes[1].set_ylabel(r"median $r_{1/2}^{\rm pred}/r_{1/2}^{\rm true} - 1$")
    if len(keys) == 3:
        axes[2].axhline(0.68, color="k", lw=0.8, ls="--")
        axes[2].set_ylim(0.0, 1.0)
        axes[2].set_ylabel(r"fraction with $|r_{1/2}^{\rm pred} - r_{1/2}^{\rm true}| \leq \sigma$")
    axes[0].legend(fontsize=7)
    return _finish(fig, out)


def _radial_grid(
    names: list[str], ncols: int, row_height_in: float, empty: str
) -> tuple[Figure, np.ndarray, list[str]]:
    """A grid of residual panels, one per map (in display order), the spare ones hidden."""
    names = _ordered_map_names(names)
    if not names:
        raise ValueError(empty)
    ncols = min(ncols, len(names))
    nrows = -(-len(names) // ncols)
    fig = _new_figure(3.0 * ncols, row_height_in * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xlabel(r"$r / r_{1/2}$")
        ax.set_ylabel("truth - prediction")
        ax.set_title(map_label(name), fontsize=8)
    return fig, axes, names


def _radial_band(
    ax: Axes,
    prof: Mapping[str, Any],
    color: str,
    label: str,
    alpha: float,
    shift: float = 0.0,
    band_label: str | None = None,
) -> None:
    """One radial residual profile: its median per annulus and its 16-84% band."""
    edges = np.asarray(prof["r_over_rhalf_edges"], dtype=float)
    mid = 0.5 * (edges[1:] + edges[:-1]) + shift
    lo = np.asarray(prof["p16"], dtype=float)
    hi = np.asarray(prof["p84"], dtype=float)
    ax.fill_between(mid, lo, hi, color=color, alpha=alpha, lw=0, label=band_label)
    ax.plot(
        mid, np.asarray(prof["median"], dtype=float), "o-", color=color, ms=3, lw=1.0, label=label
    )


#: Short names of the scatters of a comparison report (galae.evaluate.COMPARE_STATS).
_STAT_LABEL: dict[str, str] = {
    "scatter_dex": "std",
    "scatter_mad_dex": "1.48 MAD",
    "scatter_mad": "1.48 MAD",
    "per_pixel_scatter": "per pixel",
    "per_pixel_scatter_between_galaxies": "per pixel, between galaxies",
    "per_pixel_scatter_within_galaxies": "per pixel, within galaxies",
    "per_pixel_scatter_well_sampled": "per pixel (>=10 particles)",
    "per_pixel_scatter_between_galaxies_well_sampled": "... between galaxies (>=10)",
    "per_pixel_scatter_within_galaxies_well_sampled": "... within galaxies (>=10)",
}


def _row_label(row: str) -> str:
    """'maps/<key>/<stat>' -> a short two-part label."""
    _, key, stat = row.split("/", 2)
    if key in MAP_UNITS:
        key = map_label(key, with_unit=False)
    elif key in REGISTRY.names:
        key = param_label(key, with_unit=False)
    else:
        key = key.replace("log10_", "log ").replace("_2rhalf", " (< 2 r$_{1/2}$)")
    return f"{key}: {_STAT_LABEL.get(stat, stat)}"


def _interval(ci: Sequence[float] | None, value: float) -> tuple[float, float]:
    """(lower, upper) error-bar lengths of ``value`` from its interval ``ci``, 0 without one."""
    if not ci or not np.all(np.isfinite(ci)):
        return 0.0, 0.0
    return max(value - ci[0], 0.0), max(ci[1] - value, 0.0)


def comparison_figure(
    rows: Mapping[str, Mapping[str, Any]],
    *,
    labels: tuple[str, str] = ("A", "B"),
    out: str | Path | None = None,
) -> Figure:
    """Two reports side by side: each scatter of A and B (left) and the ratio A / B (right),
    with 95% bootstrap intervals where the rows carry them.

    Args:
        rows: {"section/key/stat": {"A", "B", "ratio_A_over_B", optional "A_ci95", "B_ci95",
            "ratio_ci95"}} as written by :func:`galae.evaluate.compare_reports`.
        labels: names of the two reports.
        out: optional PNG path.
    """
    names = list(rows)
    if not names:
        raise ValueError("no rows to compare")
    y = np.arange(len(names))[::-1].astype(float)
    fig = _new_figure(9.0, 0.8 + 0.26 * len(names))
    ax_v, ax_r = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.2, 1.0]})
    for name, off, color in (("A", 0.14, "tab:blue"), ("B", -0.14, "tab:orange")):
        vals = np.array([float(rows[r][name]) for r in names])
        err = np.array(
            [_interval(rows[r].get(f"{name}_ci95"), v) for r, v in zip(names, vals, strict=True)]
        ).T
        ax_v.errorbar(
            vals,
            y + off,
            xerr=err,
            fmt="o",
            ms=3,
            color=color,
            lw=0.9,
            label=labels[0 if name == "A" else 1],
        )
    ratio = np.array([float(rows[r]["ratio_A_over_B"]) for r in names])
    err = np.array(
        [_interval(rows[r].get("ratio_ci95"), v) for r, v in zip(names, ratio, strict=True)]
    ).T
    ax_r.errorbar(ratio, y, xerr=err, fmt="s", ms=3, color="k", lw=0.9)
    ax_r.axvline(1.0, color="0.5", lw=0.8, ls="--")
    ax_v.set_yticks(y)
    ax_v.set_yticklabels([_row_label(r) for r in names], fontsize=7)
    ax_v.set_xlabel("scatter [dex, or the latent's unit]")
    ax_r.set_xlabel(f"{labels[0]} / {labels[1]}" if len(labels[0]) < 20 else "ratio A / B")
    ax_v.legend(fontsize=7, loc="best")
    for ax in (ax_v, ax_r):
        ax.grid(axis="x", color="0.9", lw=0.6)
    fig.suptitle("error bars: 95% bootstrap intervals over galaxies", fontsize=8)
    return _finish(fig, out)


def radial_residuals_comparison_figure(
    profiles: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
    *,
    labels: tuple[str, str] = ("A", "B"),
    ncols: int = 4,
    out: str | Path | None = None,
) -> Figure:
    """Radial residual profiles (truth - prediction) of two reports overlaid, map by map.

    Args:
        profiles: {map name: (profile of A, profile of B)}, each as written by
            :func:`galae.evaluate.radial_residual_profile` (``r_over_rhalf_edges``, ``median``,
            ``p16``, ``p84``).
        labels: names of the two reports.
        ncols: panels per row.
        out: optional PNG path.
    """
    fig, axes, names = _radial_grid(list(profiles), ncols, 2.5, "no radial profiles to compare")
    nrows, ncols = axes.shape
    for ax, name in zip(axes.flat, names, strict=False):
        for prof, label, color, shift in zip(
            profiles[name], labels, ("tab:blue", "tab:orange"), (-0.04, 0.04), strict=True
        ):
            _radial_band(ax, prof, color, label, 0.18, shift)
    handles, names_ = axes.flat[0].get_legend_handles_labels()
    spare = len(names) < nrows * ncols  # an empty panel takes the legend
    fig.legend(
        handles,
        names_,
        loc="lower right" if spare else "upper right",
        ncol=1 if spare else 2,
        fontsize=7,
        frameon=False,
        bbox_to_anchor=(0.97, 0.15) if spare else None,
    )
    fig.suptitle(
        "median and 16-84% of truth - prediction, per annulus", fontsize=8, x=0.02, ha="left"
    )
    return _finish(fig, out)


def shift_ratios_figure(
    ratios: Mapping[str, Mapping[str, Mapping[str, Any]]],
    *,
    goal_in_distribution: float = 1.5,
    reference_set: str = "test",
    out: str | Path | None = None,
) -> Figure:
    """The ratio of two models' scatters, metric by metric, in distribution and under shifts.

    Args:
        ratios: {metric label: {set name: {"ratio": r, optional "ci95": [lo, hi]}}}.
        goal_in_distribution: the ratio the first model must stay below on ``reference_set``
            (drawn there); on every other set the goal is 1.
        reference_set: the in-distribution set.
        out: optional PNG path.
    """
    metrics = list(ratios)
    if not metrics:
        raise ValueError("no ratios to plot")
    sets = list(dict.fromkeys(s for m in metrics for s in ratios[m]))
    fig = _new_figure(3.2 + 1.5 * len(sets), 1.1 + 0.3 * len(metrics))
    axes = fig.subplots(1, len(sets), sharey=True, squeeze=False)[0]
    y = np.arange(len(metrics))[::-1].astype(float)
    ends = [
        x
        for m in metrics
        for v in ratios[m].values()
        for x in (v.get("ci95") or [v["ratio"], v["ratio"]])
        if np.isfinite(x)
    ]
    xlim = (min(0.0, *ends), max(goal_in_distribution, *ends) * 1.08)
    for ax, name in zip(axes, sets, strict=True):
        goal = goal_in_distribution if name == reference_set else 1.0
        for yi, m in zip(y, metrics, strict=True):
            v = ratios[m].get(name)
            if v is None:
                continue
            r = float(v["ratio"])
            ci = v.get("ci95")
            lo, hi = _interval(ci, r)
            ok = (ci[1] if ci else r) < goal
            bad = (ci[0] if ci else r) > goal
            color = "tab:green" if ok else ("tab:red" if bad else "0.35")
            ax.errorbar(r, yi, xerr=[[lo], [hi]], fmt="o", ms=3.5, color=color, lw=1.0)
        ax.axvline(goal, color="0.5", lw=0.8, ls="--")
        ax.set_xlim(*xlim)
        ax.set_title(name, fontsize=8)
        ax.grid(axis="x", color="0.9", lw=0.6)
        ax.tick_params(labelsize=7)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(metrics, fontsize=7)
    fig.supxlabel(
        "scatter ratio, first model / second, with its 95% paired bootstrap interval\n"
        "dashed: the goal; green: met, red: missed, grey: not decided by these galaxies",
        fontsize=7,
    )
    return _finish(fig, out)


def _hist_limits(x: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(x)), float(np.max(x))
    if not hi > lo:
        pad = max(abs(lo) * 1e-3, 1e-3)
        return lo - pad, hi + pad
    return lo, hi


def _fmt_pm(value: float, up: float, down: float) -> str:
    """Mathtext ``value^{+up}_{-down}`` with two significant figures of the smaller error."""
    errs = [e for e in (up, down) if e > 0] or [abs(value) or 1.0]
    digits = max(0, 1 - math.floor(math.log10(min(errs))))
    return f"${value:.{digits}f}^{{+{up:.{digits}f}}}_{{-{down:.{digits}f}}}$"


def _contour_thresholds(hist: np.ndarray, levels: Sequence[float]) -> list[float]:
    """Density thresholds enclosing the given probability masses (highest-density regions)."""
    flat = np.sort(hist.ravel())[::-1]
    total = flat.sum()
    if total <= 0:
        return []
    cum = np.cumsum(flat) / total
    th = sorted({float(flat[min(np.searchsorted(cum, lv), flat.size - 1)]) for lv in levels})
    return [t for t in th if t > 0]


def corner_figure(
    samples: Mapping[str, Any],
    names: Sequence[str] | None = None,
    truths: Mapping[str, float] | None = None,
    *,
    bins: int = 30,
    smooth: float = 1.0,
    out: str | Path | None = None,
) -> Figure:
    """Posterior corner plot (matplotlib only): 1-D histograms on the diagonal, 2-D below.

    Diagonal: histogram with the median and 16th/84th percentiles (dashed), titled
    ``median +(p84 - median) -(median - p16)``.  Below: 2-D histogram (grey) with contours that
    enclose 39.3 % and 86.5 % of the samples (the 1- and 2-sigma regions of a 2-D Gaussian,
    1 - exp(-k^2/2)), from the histogram smoothed by a Gaussian of ``smooth`` bins.  Truths are
    drawn as blue lines and points.  Labels from the registry (or derived observables).

    Args:
        samples: {name: (k,)} draws.
        names: quantities shown (default all, registry order first).
        truths: optional {name: value}; names absent are skipped.
        bins: histogram bins per axis (>= 2).
        smooth: Gaussian smoothing of the 2-D histogram for the contours, in bins (>= 0).
        out: optional PNG path.
    """
    if names is None:
        names = [n for n in REGISTRY.names if n in samples]
        names += sorted(n for n in samples if n not in REGISTRY)
    names = list(names)
    unknown = [n for n in names if n not in samples]
    if unknown:
        raise ValueError(f"unknown name(s) {unknown}; the samples hold: {', '.join(samples)}")
    if not names:
        raise ValueError("nothing to plot: no names")
    if int(bins) < 2 or not smooth >= 0:
        raise ValueError(f"bins must be >= 2 and smooth >= 0, got {bins}, {smooth}")
    x = {}
    for n in names:
        v = _np(samples[n], n).reshape(-1)
        if v.size < 2:
            raise ValueError(f"samples[{n!r}] needs at least 2 draws, got {v.size}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"samples[{n!r}] has NaN/inf values")
        x[n] = v
    sizes = {v.size for v in x.values()}
    if len(sizes) != 1:
        raise ValueError(f"all samples need the same number of draws, got sizes {sorted(sizes)}")
    truths = dict(truths or {})
    lims = {n: _hist_limits(x[n]) for n in names}
    k = len(names)
    size = max(1.55, min(2.2, 11.0 / k))
    fig = _new_figure(size * k + 0.3, size * k + 0.3)
    gs = fig.add_gridspec(k, k, wspace=0.05, hspace=0.05)
    ax_cols: dict[int, Axes] = {}
    for i, ni in enumerate(names):
        for j, nj in enumerate(names[: i + 1]):
            ax = fig.add_subplot(gs[i, j], sharex=ax_cols.get(j))
            ax_cols.setdefault(j, ax)
            if i == j:
                edges = np.linspace(*lims[ni], int(bins) + 1)
                ax.hist(x[ni], bins=edges, histtype="step", color="k", lw=1.0)
                p16, p50, p84 = np.percentile(x[ni], [16, 50, 84])
                for v, ls in ((p16, "--"), (p50, "-"), (p84, "--")):
                    ax.axvline(v, color="0.35", lw=0.8, ls=ls)
                if ni in truths and np.isfinite(truths[ni]):
                    ax.axvline(float(truths[ni]), color=TRUTH_COLOR, lw=1.2)
                ax.set_yticks([])
                ax.set_title(
                    f"{param_label(ni, with_unit=False)} = {_fmt_pm(p50, p84 - p50, p50 - p16)}",
                    fontsize=7,
                )
            else:
                ex = np.linspace(*lims[nj], int(bins) + 1)
                ey = np.linspace(*lims[ni], int(bins) + 1)
                hist, _, _ = np.histogram2d(x[nj], x[ni], bins=(ex, ey))
                ax.pcolormesh(ex, ey, hist.T, cmap="Greys", shading="flat", rasterized=True)
                hs = gaussian_filter(hist, smooth) if smooth > 0 else hist
                th = _contour_thresholds(hs, _CORNER_LEVELS)
                if th and hs.max() > th[-1] and len(th) == len(set(th)):
                    cx, cy = 0.5 * (ex[1:] + ex[:-1]), 0.5 * (ey[1:] + ey[:-1])
                    ax.contour(cx, cy, hs.T, levels=th, colors="k", linewidths=0.8)
                tx, ty = truths.get(nj), truths.get(ni)
                if tx is not None and np.isfinite(tx):
                    ax.axvline(float(tx), color=TRUTH_COLOR, lw=1.0)
                if ty is not None and np.isfinite(ty):
                    ax.axhline(float(ty), color=TRUTH_COLOR, lw=1.0)
                if tx is not None and ty is not None:
                    ax.plot([tx], [ty], "s", color=TRUTH_COLOR, ms=3)
                ax.set_ylim(*lims[ni])
            ax.set_xlim(*lims[nj])
            ax.tick_params(labelsize=5.5)
            if i == k - 1:
                ax.set_xlabel(param_label(nj), fontsize=7)
                ax.tick_params(axis="x", labelrotation=45)
            else:
                ax.tick_params(labelbottom=False)
            if j == 0 and i > 0:
                ax.set_ylabel(param_label(ni), fontsize=7)
            elif i != j:
                ax.tick_params(labelleft=False)
    return _finish(fig, out)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def segmentation_figure(
    images: Any,
    other: Any,
    bands: Sequence[str],
    captions: Sequence[str] | None = None,
    ncols: int = 4,
    out: str | Path | None = None,
) -> Figure:
    """Colour composites with the pixels of other sources (the segmentation mask) outlined.

    Args:
        images: (N, C, H, W) nanomaggies per pixel.
        other: (N, C, H, W) or (N, H, W) bool, True = another source
            (:func:`galae.data.segmentation.neighbour_mask`); outlined in cyan, shaded.
        bands: the C band names; captions: N texts (default the row numbers).
    """
    x = _np(images, "images")
    m = np.asarray(_np(other, "other"), dtype=bool)
    if x.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {x.shape}")
    if m.ndim == 4:
        m = m.any(axis=1)
    if m.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"mask shape {m.shape} does not match images {x.shape}")
    n = x.shape[0]
    caps = [f"#{i}" for i in range(n)] if captions is None else list(captions)
    if len(caps) != n:
        raise ValueError(f"{len(caps)} captions for {n} galaxies")
    rgb = gri_composite(x, bands)
    cols = max(1, min(ncols, n))
    rows = math.ceil(n / cols)
    panel = 1.6 if cols >= 3 else 2.8  # inches: a lone stamp is drawn larger
    fig = _new_figure(panel * cols, panel * rows + 0.3)
    axes = _composite_grid(fig, rgb, caps, cols)
    for ax, mk in zip(axes, m, strict=True):
        if mk.any():
            ax.contour(mk.astype(float), levels=[0.5], colors="cyan", linewidths=0.6)
            shade = np.zeros((*mk.shape, 4))
            shade[mk] = (0.0, 1.0, 1.0, 0.25)
            ax.imshow(shade, origin="lower", interpolation="nearest")
        frac = float(mk.mean())
        _stamp_text(ax, f"masked {100 * frac:.1f}%", loc="lower right", size=5.5)
    fig.suptitle("other sources masked by segmentation (cyan)", fontsize=8)
    return _finish(fig, out)


class _CliError(Exception):
    """A user error of the command line (printed without a traceback)."""


def _progress(msg: str) -> None:
    print(f"[galae.plots] {msg}", file=sys.stderr, flush=True)


def _split_names(values: Sequence[str] | None) -> list[str] | None:
    """["a,b", "c"] -> ["a", "b", "c"]; None stays None."""
    if values is None:
        return None
    return [s.strip() for v in values for s in v.split(",") if s.strip()]


def _require_file(path: str | None, what: str) -> Path:
    if path is None:
        raise _CliError(f"--{what} is required")
    p = Path(path)
    if not p.is_file():
        raise _CliError(f"{what} file not found: {p}")
    return p


def _load_model(checkpoint: str | None, device: str) -> GalaeModel:
    from galae.sampling import load

    if checkpoint is not None:
        _require_file(checkpoint, "checkpoint")
    _progress(f"loading model {checkpoint or '(packaged default)'}")
    return load(checkpoint, device=device)


def _read_data(path: str, n: int | None = None) -> dict[str, Any]:
    from galae.data.hdf5 import inspect_h5, read_h5

    p = _require_file(path, "data")
    info = inspect_h5(p)
    rows = None if n is None else np.arange(min(int(n), info.n_galaxies))
    _progress(f"reading {p} ({info.n_galaxies} galaxies, bands {','.join(info.bands)})")
    return read_h5(p, rows)


def _check_bands(model: GalaeModel, data: Mapping[str, Any]) -> None:
    if tuple(data["bands"]) != tuple(model.bands):
        raise _CliError(
            f"data bands {','.join(data['bands'])} differ from the model's {','.join(model.bands)}"
        )
    if "psf_fwhm_arcsec" not in data:
        raise _CliError("the data set has no psf_fwhm_arcsec (needed to encode)")


def _done(fig: Figure, out: str) -> Path:
    p = save_figure(fig, out)
    print(p)
    return p


def _encode(
    model: GalaeModel,
    data: Mapping[str, Any],
    refine_steps: int = 0,
    mask_neighbours: bool = False,
    *,
    hide_redshift: bool = False,
    **options: Any,
) -> Any:
    """``model.encode`` of a data set read by :func:`_read_data` / :func:`_one_galaxy` (its
    redshifts withheld with ``hide_redshift``; ``options``: more ``encode`` arguments)."""
    _check_bands(model, data)
    _progress(f"encoding {len(data['images'])} galaxies")
    return model.encode(
        data["images"],
        data["sigma"],
        psf_fwhm_arcsec=data["psf_fwhm_arcsec"],
        redshift=None if hide_redshift else data["redshift"],
        pixel_scale_arcsec=data["pixel_scale_arcsec"],
        mask=data["mask"],
        refine_steps=refine_steps,
        mask_neighbours=mask_neighbours,
        **options,
    )


def _cmd_mocks(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise _CliError(f"--n must be >= 1, got {args.n}")
    data = _read_data(args.data, max(args.n, args.n_maps))
    fig = mock_gallery(data, n=args.n, n_maps=args.n_maps)
    _done(fig, args.out or str(FIGURE_DIR / "mocks.png"))


def _cmd_traverse(args: argparse.Namespace) -> None:
    params = _split_names(args.params)
    map_params = _split_names(args.map_params) or list(DEFAULT_MAP_TRAVERSAL_PARAMS)
    for names in (params or [], map_params):
        try:
            _check_param_names(names)
        except ValueError as err:
            raise _CliError(str(err)) from None
    if args.steps < 2:
        raise _CliError(f"--steps must be >= 2, got {args.steps}")
    model = _load_model(args.checkpoint, args.device)
    all_params = list(dict.fromkeys([*(params or REGISTRY.names), *map_params]))
    _progress(f"rendering {len(all_params)} x {args.steps} traversal steps")
    t = traverse_latents(
        model,
        params=all_params,
        steps=args.steps,
        sweep=args.sweep,
        redshift=args.redshift,
        seed=args.seed,
    )
    out = Path(args.out or FIGURE_DIR / "traversal.png")
    _done(traversal_figure(t, params=params or list(REGISTRY.names)), str(out))
    _done(
        traversal_maps_figure(t, params=map_params),
        str(out.with_name(f"{out.stem}_maps{out.suffix or '.png'}")),
    )


def _cmd_gallery(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise _CliError(f"--n must be >= 1, got {args.n}")
    model = _load_model(args.checkpoint, args.device)
    _progress(f"sampling {args.n} galaxies (seed {args.seed})")
    s = model.sample(n=args.n, seed=args.seed)
    _done(sample_gallery(s, n=args.n), args.out or str(FIGURE_DIR / "gallery.png"))


def _cmd_reconstruct(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise _CliError(f"--n must be >= 1, got {args.n}")
    if not 0 <= args.maps_of < args.n:
        raise _CliError(
            f"--maps-of must lie in [0, {args.n - 1}] (--n {args.n}), got {args.maps_of}"
        )
    data = _read_data(args.data, args.n)
    model = _load_model(args.checkpoint, args.device)
    post = _encode(model, data, args.refine_steps, args.mask_neighbours)
    titles = [
        f"#{int(i)}  z={float(z):.3f}"
        for i, z in zip(data["index"], _np(post.params["redshift"], "redshift"), strict=True)
    ]
    fig = reconstruction_figure(
        data["images"], post.model_images, data["sigma"], data["bands"], titles, mask=post.mask
    )
    out = Path(args.out or FIGURE_DIR / "reconstruction.png")
    _done(fig, str(out))
    truth_maps = data["truth"]["maps"]
    if any(m in truth_maps for m in post.maps):
        _done(
            maps_comparison_figure(truth_maps, post.maps, index=args.maps_of, std=post.maps_std),
            str(out.with_name(f"{out.stem}_maps{out.suffix or '.png'}")),
        )
        key = "r_half_arcsec_r"
        source = data["truth"]["params"] if key in data["truth"]["params"] else post.params
        r_half = (
            _np(source[key], key)[args.maps_of] / data["pixel_scale_arcsec"]
            if key in source
            else None
        )
        _done(
            radial_profiles_figure(truth_maps, post.maps, index=args.maps_of, r_half_pix=r_half),
            str(out.with_name(f"{out.stem}_profiles{out.suffix or '.png'}")),
        )


def _cmd_segment(args: argparse.Namespace) -> None:
    if args.n < 1:
        raise _CliError(f"--n must be >= 1, got {args.n}")
    from galae.data.segmentation import neighbour_mask

    data = _read_data(args.data, args.n)
    other = neighbour_mask(data["images"], data["sigma"], data["mask"])
    params = data["truth"]["params"] if "truth" in data else {}
    flag = params.get("contaminated")
    caps = [
        f"#{i}" + (" (contaminated)" if flag is not None and bool(flag[k]) else "")
        for k, i in enumerate(data["index"])
    ]
    _done(
        segmentation_figure(data["images"], other, data["bands"], caps),
        args.out or str(FIGURE_DIR / "segment.png"),
    )


def _one_galaxy(args: argparse.Namespace) -> tuple[dict[str, Any], GalaeModel]:
    """Row ``--index`` of ``--data`` and the model of ``--checkpoint``."""
    from galae.data.hdf5 import inspect_h5, read_h5

    path = _require_file(args.data, "data")
    n_gal = inspect_h5(path).n_galaxies
    if not 0 <= args.index < n_gal:
        raise _CliError(f"--index {args.index} out of range for {n_gal} galaxies")
    return read_h5(path, [args.index]), _load_model(args.checkpoint, args.device)


def _check_quantity_names(names: Sequence[str], model: GalaeModel) -> None:
    """A CLI error naming any of ``names`` that is neither a latent nor a derived observable
    of ``model`` (the keys of its posterior draws and analogues)."""
    known = [
        *REGISTRY.names,
        *_DERIVED_LABELS,
        *[f"{pre}{b}" for pre in _BAND_LABELS for b in model.bands],
    ]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise _CliError(f"unknown parameter name(s) {unknown}; known: {', '.join(known)}")


def _cmd_corner(args: argparse.Namespace) -> None:
    if args.k < 2:
        raise _CliError(f"--k must be >= 2, got {args.k}")
    data, model = _one_galaxy(args)
    names = _split_names(args.params) or list(DEFAULT_CORNER_PARAMS)
    _check_quantity_names(names, model)
    post = _encode(model, data, args.refine_steps, args.mask_neighbours)
    derived = any(n not in REGISTRY and n != "redshift" for n in names)
    _progress(
        f"drawing {args.k} posterior samples"
        + (" (derived observables: one render per draw, slow)" if derived else "")
    )
    draws = post.samples(args.k, seed=args.seed, derived=derived)
    samples = {n: _np(draws[n], n)[:, 0] for n in names}
    truth_params = data["truth"]["params"]
    truths = {n: float(_np(truth_params[n], n)[0]) for n in names if n in truth_params}
    fig = corner_figure(samples, names, truths or None)
    fig.suptitle(
        f"posterior of galaxy {args.index} ({args.k} draws)" + ("; blue: truth" if truths else ""),
        fontsize=9,
    )
    _done(fig, args.out or str(FIGURE_DIR / "corner.png"))


def _cmd_analogues(args: argparse.Namespace) -> None:
    if args.n < 2:
        raise _CliError(f"--n must be >= 2, got {args.n}")
    data, model = _one_galaxy(args)
    names = _split_names(args.params) or list(DEFAULT_ANALOGUE_PARAMS)
    _check_quantity_names(names, model)
    post = _encode(
        model,
        data,
        args.refine_steps,
        args.mask_neighbours,
        hide_redshift=args.hide_redshift,
        n_mc_derived=0,
    )
    _progress(f"drawing {args.n} analogues of galaxy {args.index}")
    twins = model.analogues(
        data["images"][0],
        data["sigma"][0],
        n=args.n,
        psf_fwhm_arcsec=data["psf_fwhm_arcsec"][0],
        redshift=None if args.hide_redshift else data["redshift"][0],
        pixel_scale_arcsec=data["pixel_scale_arcsec"],
        mask=data["mask"][0],
        seed=args.seed,
        posterior=post,
    )
    truth_params = data["truth"]["params"]
    truths = {n: float(_np(truth_params[n], n)[0]) for n in names if n in truth_params}
    fig = analogues_figure(
        data["images"][0],
        _np(post.model_images, "model_images")[0],
        twins,
        mask=_np(post.mask, "mask")[0],
        n=min(args.show, args.n),
        params=names,
        truth=truths or None,
    )
    _done(fig, args.out or str(FIGURE_DIR / "analogues.png"))


_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], None], str]] = {
    "mocks": (_cmd_mocks, "gallery of a data set's galaxies and truth maps"),
    "traverse": (_cmd_traverse, "latent traversal (composites and maps)"),
    "gallery": (_cmd_gallery, "galaxies drawn from the model's population prior"),
    "reconstruct": (_cmd_reconstruct, "data / model / residual of encoded galaxies"),
    "corner": (_cmd_corner, "posterior corner plot of one galaxy"),
    "analogues": (_cmd_analogues, "an observed galaxy, its model and its posterior analogues"),
    "segment": (_cmd_segment, "other sources in the stamps, as masked by segmentation"),
}


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m galae.plots`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m galae.plots", description="galae figures (PNG, written to --out)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmds = {
        name: sub.add_parser(name, help=text, description=text)
        for name, (_, text) in _COMMANDS.items()
    }
    for name, p in cmds.items():
        p.set_defaults(func=_COMMANDS[name][0])
        p.add_argument(
            "--out", default=None, help=f"output PNG (default {FIGURE_DIR / (name + '.png')})"
        )
        if name not in ("mocks", "segment"):
            p.add_argument(
                "--checkpoint", default=None, help="model checkpoint (default: the packaged model)"
            )
            p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    cmds["mocks"].add_argument("--data", required=True, help="galae HDF5 data set")
    cmds["mocks"].add_argument("--n", type=int, default=16, help="galaxies in the gallery")
    cmds["mocks"].add_argument(
        "--n-maps", type=int, default=3, help="galaxies whose truth maps are shown"
    )
    t = cmds["traverse"]
    t.add_argument(
        "--params",
        nargs="+",
        default=None,
        help="latents to sweep (comma or space separated; default all)",
    )
    t.add_argument(
        "--map-params",
        nargs="+",
        default=None,
        help="latents of the maps figure (default: " + ",".join(DEFAULT_MAP_TRAVERSAL_PARAMS) + ")",
    )
    t.add_argument("--steps", type=int, default=7, help="values per latent")
    t.add_argument(
        "--sweep",
        choices=("prior", "registry"),
        default="prior",
        help="range: 5th-95th percentile of the prior, or the registry range",
    )
    t.add_argument("--redshift", type=float, default=0.08, help="redshift of the renders")
    t.add_argument("--seed", type=int, default=0)
    g = cmds["gallery"]
    g.add_argument("--n", type=int, default=36, help="number of galaxies")
    g.add_argument("--seed", type=int, default=0)
    r = cmds["reconstruct"]
    r.add_argument("--data", required=True, help="galae HDF5 data set")
    r.add_argument("--n", type=int, default=6, help="encode the first n galaxies")
    r.add_argument(
        "--maps-of",
        type=int,
        default=0,
        help="which of the n galaxies the maps and profiles figures show (default 0, the first)",
    )
    _add_encode_options(r)
    sg = cmds["segment"]
    sg.add_argument("--data", required=True, help="galae HDF5 data set")
    sg.add_argument("--n", type=int, default=16, help="the first n galaxies")
    c = cmds["corner"]
    _add_one_galaxy_options(c)
    c.add_argument("--k", type=int, default=2000, help="posterior draws")
    c.add_argument("--seed", type=int, default=0)
    _add_encode_options(c)
    c.add_argument(
        "--params",
        nargs="+",
        default=None,
        help="quantities (default: " + ",".join(DEFAULT_CORNER_PARAMS) + ")",
    )
    an = cmds["analogues"]
    _add_one_galaxy_options(an)
    an.add_argument("--n", type=int, default=200, help="analogues drawn (histograms)")
    an.add_argument("--show", type=int, default=15, help="analogues shown as images")
    an.add_argument("--seed", type=int, default=0)
    an.add_argument(
        "--hide-redshift", action="store_true", help="do not give the redshift (photo-z draws)"
    )
    _add_encode_options(an)
    an.add_argument(
        "--params",
        nargs="+",
        default=None,
        help="quantities (default: " + ",".join(DEFAULT_ANALOGUE_PARAMS) + ")",
    )
    return parser


def _add_one_galaxy_options(sub: argparse.ArgumentParser) -> None:
    """The options :func:`_one_galaxy` reads: the data set and the galaxy's row in it."""
    sub.add_argument("--data", required=True, help="galae HDF5 data set")
    sub.add_argument("--index", type=int, default=0, help="row of the galaxy in the data set")


def _add_encode_options(sub: argparse.ArgumentParser) -> None:
    """The options of ``encode`` that a command which encodes galaxies passes on."""
    sub.add_argument(
        "--refine-steps", type=int, default=0, help="semi-amortized: likelihood steps per galaxy"
    )
    sub.add_argument(
        "--mask-neighbours", action="store_true", help="mask other sources by segmentation"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 user error)."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (_CliError, OSError, ValueError, KeyError) as err:
        # OSError: a missing, unreadable, truncated or corrupt file (as galae.runtime.cli_errors)
        if os.environ.get("GALAE_TRACEBACK", "0") not in ("", "0"):
            raise
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"galae.plots {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
