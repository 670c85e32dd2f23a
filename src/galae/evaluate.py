"""Evaluate a model against mock truth: ``python -m galae.evaluate --checkpoint C --data D``.

Writes ``metrics.json`` and figures to ``--out`` (default ``<checkpoint dir>/eval_<data stem>``):

* reconstruction: chi^2 per pixel of the posterior-mean model (median, 16/84th percentiles);
* recovery of every latent and derived observable present in the truth: bias (median of
  prediction - truth) and scatter (1.4826 x MAD, and the standard deviation); for radii the
  median |fractional error|;
* maps, as the seed work measured them (Buck & Wolf 2021, sect. 4): mean and scatter of
  log(true) - log(predicted) for stellar mass and SFR integrated within 2 half-light radii;
  radial residual profiles of every map from 0.5 to 5 half-light radii; per-pixel statistics;
* calibration: coverage of the central 68% and 95% posterior intervals of every latent, and
  of combinations of latents (:data:`LATENT_COMBINATIONS`: total stellar mass, specific SFR,
  bulge-to-total mass), whose intervals are right only if the posterior's correlations are;
* figures: data / model / residual for the galaxies at the 100th, 70th and 40th percentile of
  fit quality (best fit = 100th), map comparisons and radial residual profiles.

The report records which loss terms trained the model (``trained_with``), so a reader can tell a
self-supervised result from a supervised one.  ``per_galaxy.npz`` beside ``metrics.json`` holds
the per-galaxy statistics behind the map and latent metrics; ``--compare A.json B.json``
tabulates two reports, draws them side by side, and puts bootstrap intervals over galaxies on
the scatters and on their ratio.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from galae.checkpoint import versions
from galae.data.hdf5 import inspect_h5, read_h5
from galae.latent import REGISTRY
from galae.mock import mock_physics, warn_physics_mismatch
from galae.physics.maps import MAP_NAMES
from galae.runtime import checked_device, cli_errors, tune_cpu_allocator
from galae.sampling import POOR_FIT_CHI2_PER_PIXEL, POOR_FIT_MESSAGE

__all__ = [
    "robust_stats",
    "aperture_log_ratio",
    "radial_residual_profile",
    "map_metrics",
    "aperture_geometry",
    "split_scatter",
    "photo_z_metrics",
    "SAMPLING_MAPS",
    "MIN_PARTICLES_PER_PIXEL",
    "coverage",
    "interval_hits",
    "r_half_by_resolution",
    "RESOLUTION_BIN_EDGES",
    "calibration_record",
    "CALIBRATION_KEYS",
    "LATENT_COMBINATIONS",
    "evaluate",
    "compare_reports",
    "compare_markdown",
    "MapResiduals",
    "map_residuals",
    "per_galaxy_map_stats",
    "scatters_from_sums",
    "bootstrap_scatters",
    "PER_GALAXY_FILE",
    "main",
]

RADIAL_BINS_RHALF: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)
#: Linear quantities whose log is compared inside 2 half-light radii: map name -> label.
APERTURE_MAPS: dict[str, str] = {
    "log10_sigma_mstar_msun_per_kpc2": "log10_mstar_2rhalf",
    "log10_sigma_sfr_msun_per_yr_per_kpc2": "log10_sfr_2rhalf",
}
#: Particle-count truth maps (particle mocks) and the maps whose sampling each one describes;
#: maps not named here are sampled by all particles (``n_particles``).
SAMPLING_MAPS: dict[str, tuple[str, ...]] = {
    "n_particles": (),
    "n_young_particles": ("log10_sigma_sfr_msun_per_yr_per_kpc2",),
}
#: Particles a pixel needs to count as well sampled in the per-pixel metrics: the truth's own
#: shot noise is then below log10(e) / sqrt(10) = 0.14 dex.  A binned particle map is exact in
#: the galaxy's centre but a Poisson draw in its outskirts, and the non-empty pixels there hold
#: at least one particle whatever the smooth density is; a per-pixel scatter over all non-empty
#: pixels therefore measures that sampling as much as the prediction.
MIN_PARTICLES_PER_PIXEL: int = 10
_RADIUS_PARAMS = ("r_eff_bulge_kpc", "r_d_kpc", "r_sfr_kpc")
#: Edges of the bins of ``metrics["r_half_by_resolution"]``: the true r-band half-light radius
#: in units of the r-band PSF FWHM (the last bin open above).  Below about 0.8 FWHM the
#: PSF-free profile's core is finer than the seeing, so the pixels fix the convolved light and
#: the prior decides how it is shared out inside the PSF (docs/results.md, "Twenty-fifth
#: submission": a prior with more dust than the data moves these sizes most).
RESOLUTION_BIN_EDGES: tuple[float, ...] = (0.0, 0.5, 0.8, 1.2, 2.0, math.inf)


def wrapped_difference(a: np.ndarray, b: np.ndarray, period: float | None) -> np.ndarray:
    """a - b, or for an angle of ``period`` the difference on the circle, in [-period/2,
    period/2) (position angles 179 and 1 deg differ by -2 deg, not 178)."""
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return d if period is None else (d + period / 2) % period - period / 2


def robust_stats(
    pred: np.ndarray, true: np.ndarray, period: float | None = None
) -> dict[str, float]:
    """Bias and scatter of pred - true (on the circle for an angle of ``period``): median,
    1.4826 MAD, mean, std, and N."""
    d = wrapped_difference(pred, true, period)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"n": 0}
    med = float(np.median(d))
    return {
        "n": int(d.size),
        "bias_median": med,
        "scatter_mad": float(1.4826 * np.median(np.abs(d - med))),
        "bias_mean": float(d.mean()),
        "scatter_std": float(d.std()),
    }


def _radius_grid(h: int, w: int, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.sqrt((x[None] - cx[:, None, None]) ** 2 + (y[None] - cy[:, None, None]) ** 2)


def aperture_log_ratio(
    true_log_map: np.ndarray,
    pred_log_map: np.ndarray,
    radius_pix: np.ndarray,
    r_half_pix: np.ndarray,
    factor: float = 2.0,
) -> np.ndarray:
    """log10(sum true / sum pred) of a linear quantity inside ``factor`` half-light radii.

    Args:
        true_log_map, pred_log_map: (N, H, W) log10 surface densities (same pixel area).
        radius_pix: (N, H, W) distance of each pixel from the galaxy centre.
        r_half_pix: (N,).
    Returns:
        (N,) log ratio true/pred (positive = prediction too low).
    """
    inside = radius_pix <= factor * r_half_pix[:, None, None]
    t = np.where(inside, 10.0**true_log_map, 0.0).sum((1, 2))
    p = np.where(inside, 10.0**pred_log_map, 0.0).sum((1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(t / p)


def radial_residual_profile(
    true_map: np.ndarray,
    pred_map: np.ndarray,
    radius_pix: np.ndarray,
    r_half_pix: np.ndarray,
    bins: Sequence[float] = RADIAL_BINS_RHALF,
    valid: np.ndarray | None = None,
) -> dict[str, list[float]]:
    """Median and 16/84th percentiles of (true - pred) in annuli of r / r_half."""
    rr = radius_pix / r_half_pix[:, None, None]
    d = true_map - pred_map
    ok = np.isfinite(d) if valid is None else (valid & np.isfinite(d))
    med, lo, hi, n = [], [], [], []
    edges = list(bins)
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        sel = ok & (rr >= a) & (rr < b)
        v = d[sel]
        n.append(int(v.size))
        if v.size:
            med.append(float(np.median(v)))
            lo.append(float(np.percentile(v, 16)))
            hi.append(float(np.percentile(v, 84)))
        else:
            med.append(float("nan"))
            lo.append(float("nan"))
            hi.append(float("nan"))
    return {"r_over_rhalf_edges": edges, "median": med, "p16": lo, "p84": hi, "n": n}


def r_half_by_resolution(
    pred: np.ndarray,
    true: np.ndarray,
    psf_fwhm: np.ndarray,
    std: np.ndarray | None = None,
    edges: Sequence[float] = RESOLUTION_BIN_EDGES,
) -> dict[str, Any]:
    """Half-light radius recovery in bins of resolution, x = r_half,true / FWHM_PSF.

    Args:
        pred, true: (N,) predicted (posterior mean) and true half-light radii (same unit).
        psf_fwhm: (N,) PSF FWHM of the same band, in that unit.
        std: optional (N,) posterior standard deviations of the radius.
        edges: increasing bin edges of x (``inf`` allowed as the last).

    Returns:
        ``{"x": "r_half_true / psf_fwhm", "bins": [...]}``, one entry per bin with ``lo``,
        ``hi`` (None for an open bin), ``n`` and, where ``n > 0``, the median of
        |pred / true - 1| (``median_abs_frac_error``) and of pred / true - 1
        (``median_frac_error``); with ``std``, also the fraction of the galaxies with
        |pred - true| <= std (``fraction_within_1sigma``: 0.68 for an honest Gaussian
        posterior) and the median std / true (``median_frac_std``).  Galaxies with a
        non-finite ratio are left out.
    """
    arrays = [pred, true, psf_fwhm] + ([] if std is None else [std])
    arrays = [np.asarray(a, dtype=np.float64) for a in arrays]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError(
            "pred, true, psf_fwhm (and std) must be (N,) arrays of one length, got "
            + ", ".join(str(a.shape) for a in arrays)
        )
    pred, true, psf_fwhm = arrays[:3]
    sd = arrays[3] if std is not None else None
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 2 or not np.all(np.diff(e) > 0):
        raise ValueError(f"edges must be increasing, got {tuple(edges)}")
    with np.errstate(divide="ignore", invalid="ignore"):
        x = true / psf_fwhm
        frac = pred / true - 1.0
    ok = np.isfinite(x) & np.isfinite(frac)
    bins = []
    for lo, hi in zip(e[:-1], e[1:], strict=True):
        sel = ok & (x >= lo) & (x < hi)
        entry: dict[str, Any] = {
            "lo": float(lo),
            "hi": None if np.isinf(hi) else float(hi),
            "n": int(sel.sum()),
        }
        if sel.any():
            entry["median_abs_frac_error"] = float(np.median(np.abs(frac[sel])))
            entry["median_frac_error"] = float(np.median(frac[sel]))
            if sd is not None:
                entry["fraction_within_1sigma"] = float(
                    np.mean(np.abs(pred[sel] - true[sel]) <= sd[sel])
                )
                entry["median_frac_std"] = float(np.median(sd[sel] / true[sel]))
        bins.append(entry)
    return {"x": "r_half_true / psf_fwhm", "bins": bins}


def _period(name: str) -> float | None:
    """The period of a latent that is an angle (:attr:`galae.latent.Param.period`), else None
    (derived observables too)."""
    return REGISTRY[name].period if name in REGISTRY else None


def interval_hits(
    samples: np.ndarray, truth: np.ndarray, level: float, period: float | None = None
) -> np.ndarray:
    """(N,) bool: truth inside the central ``level`` interval of samples (k, N).

    For an angle of ``period`` the interval is an arc: about the draws' circular mean, out to
    the ``level`` quantile of their distances from it on the circle, so that a truth at 179
    deg is inside an interval of draws about 1 deg (an equal-tailed interval on the line puts
    it 178 deg away).
    """
    if period is None:
        lo = np.quantile(samples, 0.5 - level / 2, axis=0)
        hi = np.quantile(samples, 0.5 + level / 2, axis=0)
        return (truth >= lo) & (truth <= hi)
    phase = 2 * np.pi * np.asarray(samples, np.float64) / period
    centre = np.arctan2(np.sin(phase).mean(0), np.cos(phase).mean(0)) * period / (2 * np.pi)
    radius = np.quantile(np.abs(wrapped_difference(samples, centre, period)), level, axis=0)
    return np.abs(wrapped_difference(truth, centre, period)) <= radius


def _log10_mstar_total(p: dict[str, np.ndarray]) -> np.ndarray:
    return np.logaddexp(
        np.log(10.0) * p["log10_mstar_bulge_msun"], np.log(10.0) * p["log10_mstar_disk_msun"]
    ) / np.log(10.0)


#: Functions of the latents whose posterior intervals :func:`evaluate` scores
#: (``metrics["coverage_combinations"]``): name -> f(latents by name, arrays of any shape).  A
#: sum or difference of two latents covers its truths only if the posterior holds their
#: correlation, which the per-latent coverage cannot see.
LATENT_COMBINATIONS: dict[str, Any] = {
    "log10_mstar_total_msun": _log10_mstar_total,
    "log10_ssfr_per_yr": lambda p: p["log10_sfr_msun_per_yr"] - _log10_mstar_total(p),
    "bulge_to_total_mass": lambda p: 10.0 ** (p["log10_mstar_bulge_msun"] - _log10_mstar_total(p)),
}


def coverage(
    samples: np.ndarray, truth: np.ndarray, levels: Sequence[float] = (0.68, 0.95)
) -> dict:
    """Fraction of truths inside the central posterior interval at each level.

    Args:
        samples: (k, N) posterior draws; truth: (N,).
    """
    return {
        f"{int(round(lev * 100))}": float(interval_hits(samples, truth, lev).mean())
        for lev in levels
    }


def _json_default(o: Any) -> Any:
    if isinstance(o, np.floating | np.integer):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


#: What a report records of the calibrations behind its widths (:func:`calibration_record`).
CALIBRATION_KEYS: tuple[str, ...] = (
    "n_simulated",
    "history_scale_dex",
    "dust_clumping_max",
    "population_dust",
    "prior",
    "broad_fraction",
    "refine_steps",
    "width_floor",
    "width_ceiling",
    "width_ceiling_fallback",
    "width_ceiling_per_latent",
    "scale_form",
)


def calibration_record(state: dict[str, Any], refine_steps: int) -> dict[str, Any]:
    """The calibrations behind a report's widths, from the checkpoint ``state``: the amortized
    one (``posterior_calibration``) and, when refined, the refined one; each None where the
    checkpoint's widths are uncalibrated, else the settings of :data:`CALIBRATION_KEYS` it
    records."""

    def finite(v: Any) -> Any:  # strict JSON: a latent without a ceiling (inf) as null
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        return None if isinstance(v, float) and not math.isfinite(v) else v

    def pick(summary: dict[str, Any] | None) -> dict[str, Any] | None:
        if summary is None:
            return None
        return {k: finite(summary[k]) for k in CALIBRATION_KEYS if k in summary}

    record = {"amortized": pick(state.get("posterior_calibration"))}
    if refine_steps > 0:
        record["refined"] = pick(state.get("refined_posterior_calibration"))
    return record


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    n: int | None = None,
    batch_size: int = 64,
    n_posterior: int = 1000,
    n_mc_derived: int = 64,
    device: str = "cpu",
    figures: bool = True,
    seed: int = 0,
    refine_steps: int = 0,
    mask_neighbours: bool = False,
    hide_redshift: bool = False,
    refine_above_chi2: float | None = None,
    flips: bool = False,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on the mock data set ``data``; returns the metrics dict.

    The coverage of the latents' intervals comes from ``n_posterior`` draws per galaxy (cheap:
    no rendering); with 200 draws an exactly calibrated Gaussian posterior read 0.679 / 0.942
    for 68% / 95%, with 1000 0.678 / 0.948 (20,000 trials).  Angles (position angle) are on the
    circle (:func:`interval_hits`, :func:`robust_stats`).

    A U-Net checkpoint (the supervised baseline) is evaluated on the same map metrics (on the
    raw images: ``mask_neighbours``, the segmentation of other sources, is the autoencoder's).

    With ``hide_redshift`` the encoder is not told the redshifts: every galaxy goes through the
    photometric-redshift posterior (``encode(redshift=None)``), and ``metrics["photo_z"]`` gives
    its accuracy (median, NMAD and outlier fraction of (z_phot - z) / (1 + z), outliers beyond
    0.15) and the coverage of its 68% and 95% intervals.

    With ``refine_above_chi2`` only the galaxies that the amortized posterior fits worse than
    that chi2 per pixel are refined (``GalaeModel.encode``); ``metrics["fraction_refined"]``
    says how many, and ``seconds_per_galaxy`` what the encoding cost.  With ``flips`` the
    encoder's output is averaged over the mirrored stamps (``GalaeModel.encode``).
    """
    from galae.checkpoint import load_checkpoint, modules_from_state
    from galae.sampling import GalaeModel

    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1 (or None for every galaxy), got {n}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n_mc_derived < 2:
        raise ValueError(
            f"n_mc_derived must be >= 2 (the derived observables and the maps' spread are "
            f"means and spreads over rendered draws), got {n_mc_derived}"
        )
    device = str(checked_device(device))
    state = load_checkpoint(checkpoint)  # read once; checks format and registry
    if state["kind"] == "galae-unet":
        refining = refine_steps or refine_above_chi2 is not None
        if refining or mask_neighbours or hide_redshift or flips:
            raise ValueError(
                "refine_steps, refine_above_chi2, flips, mask_neighbours and hide_redshift apply "
                "to autoencoder checkpoints; "
                f"{checkpoint} is a U-Net, which reads the raw stamps"
            )
        return evaluate_unet(
            checkpoint, data, out, n, batch_size, device, figures, steps=int(state["step"])
        )
    if refine_above_chi2 is not None and refine_steps <= 0:
        raise ValueError(
            "refine_above_chi2 chooses which galaxies to refine: it needs refine_steps > 0"
        )
    model = GalaeModel(*modules_from_state(state, where=str(checkpoint)), state, device)
    info = inspect_h5(data, expected_bands=model.bands)
    _require_truth(info, "the latents, the derived observables and the maps")
    renderer = model.model.renderer
    disk_history, birth_clouds = renderer.disk_history, renderer.birth_clouds
    data_physics = mock_physics(info.attrs)
    warn_physics_mismatch(info.attrs, renderer, str(data))
    total = info.n_galaxies if n is None else min(n, info.n_galaxies)
    out_dir = Path(out) if out else Path(checkpoint).parent / f"eval_{Path(data).stem}"
    out_dir.mkdir(parents=True, exist_ok=True)

    acc: dict[str, list[np.ndarray]] = {}
    encode_seconds = 0.0

    def push(key: str, value: np.ndarray) -> None:
        acc.setdefault(key, []).append(np.asarray(value))

    truth_params: dict[str, list[np.ndarray]] = {}
    truth_maps: dict[str, list[np.ndarray]] = {}
    pred_maps: dict[str, list[np.ndarray]] = {}
    model_maps: dict[str, list[np.ndarray]] = {}
    std_maps: dict[str, list[np.ndarray]] = {}
    count_maps: dict[str, list[np.ndarray]] = {}
    keep_imgs: dict[str, list[np.ndarray]] = {"images": [], "model": [], "sigma": [], "mask": []}
    for start in tqdm(range(0, total, batch_size), desc="evaluate", unit="batch"):
        rows = np.arange(start, min(total, start + batch_size))
        d = read_h5(data, rows, with_maps=True, expected_bands=model.bands)
        with warnings.catch_warnings():
            # encode's poor-fit warning, batch after batch: the metrics hold the chi2
            # distribution and the fraction of galaxies above its threshold instead
            warnings.filterwarnings(
                "ignore", message=f".*{POOR_FIT_MESSAGE}", category=RuntimeWarning
            )
            t_encode = time.perf_counter()
            # a data set's PSF images, where it has them, are the PSF (encode's psf_image)
            psf_kw = (
                {"psf_image": d["psf_image"]}
                if "psf_image" in d
                else {"psf_fwhm_arcsec": d["psf_fwhm_arcsec"]}
            )
            post = model.encode(
                d["images"],
                d["sigma"],
                **psf_kw,
                redshift=None if hide_redshift else d["redshift"],
                pixel_scale_arcsec=d["pixel_scale_arcsec"],
                mask=d["mask"],
                n_mc_derived=n_mc_derived,
                seed=seed,
                refine_steps=refine_steps,
                mask_neighbours=mask_neighbours,
                refine_above_chi2=refine_above_chi2,
                flips=flips,
            )
        encode_seconds += time.perf_counter() - t_encode
        push("refined", post.refined.cpu().numpy())
        psf = post._batch.psf_fwhm_arcsec.double().cpu().numpy()  # a PSF image's equivalent
        push("psf_fwhm_r", psf[:, model.bands.index("r")] if psf.ndim == 2 else psf)
        msk = post.mask.cpu()  # the data's mask and, with mask_neighbours, other sources
        chi2 = post.chi2_per_pixel.cpu().numpy()  # over the unmasked pixels of msk
        push("chi2", chi2)
        for k, v in post.params.items():
            push(f"pred/{k}", v.cpu().numpy())
            push(f"std/{k}", post.std[k].cpu().numpy())
        for k, v in post.model_params.items():
            push(f"best/{k}", v.cpu().numpy())
        draws = post.samples(n_posterior, seed=seed, derived=False)
        if hide_redshift:
            push("photo_z", post.params["redshift"].cpu().numpy())
            push("z_true", np.asarray(d["redshift"]))
            z_draws = draws["redshift"].cpu().numpy()
            push("in68/redshift", interval_hits(z_draws, d["redshift"], 0.68))
            push("in95/redshift", interval_hits(z_draws, d["redshift"], 0.95))
        truth_now = d["truth"]["params"]
        latent_draws = {n: draws[n].cpu().numpy() for n in REGISTRY.names if n in truth_now}
        for name, smp in latent_draws.items():
            t = truth_now[name]
            period = _period(name)
            push(f"in68/{name}", interval_hits(smp, t, 0.68, period))
            push(f"in95/{name}", interval_hits(smp, t, 0.95, period))
        if len(latent_draws) == REGISTRY.dim:
            for cname, f in LATENT_COMBINATIONS.items():
                smp, t = f(latent_draws), f(truth_now)
                push(f"combo68/{cname}", interval_hits(smp, t, 0.68))
                push(f"combo95/{cname}", interval_hits(smp, t, 0.95))
        for k, v in d["truth"]["params"].items():
            truth_params.setdefault(k, []).append(v)
        for k, v in d["truth"]["maps"].items():
            if k in post.maps:
                truth_maps.setdefault(k, []).append(v)
                pred_maps.setdefault(k, []).append(post.maps[k].cpu().numpy())
                if k in APERTURE_MAPS:
                    model_maps.setdefault(k, []).append(post.model_maps[k].cpu().numpy())
                if k in post.maps_std:
                    std_maps.setdefault(k, []).append(post.maps_std[k].cpu().numpy())
            elif k in SAMPLING_MAPS:
                count_maps.setdefault(k, []).append(v)
        keep_imgs["images"].append(d["images"])
        keep_imgs["model"].append(post.model_images.cpu().numpy())
        keep_imgs["sigma"].append(d["sigma"])
        keep_imgs["mask"].append(msk.numpy())

    cat = {k: np.concatenate(v) for k, v in acc.items()}
    tp = {k: np.concatenate(v) for k, v in truth_params.items()}
    tm = {k: np.concatenate(v) for k, v in truth_maps.items()}
    pm = {k: np.concatenate(v) for k, v in pred_maps.items()}
    chi2 = cat["chi2"]

    state = model.state
    metrics: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "data_generator": info.attrs.get("generator", ""),
        "n_galaxies": int(total),
        "trained_with": state.get("loss_terms", "unknown"),
        "supervised": "supervised" in state.get("loss_terms", ""),
        "training_steps": int(state.get("step", 0)),
        "refine_steps": int(refine_steps),
        "refine_above_chi2": None if refine_above_chi2 is None else float(refine_above_chi2),
        "fraction_refined": float(np.mean(cat["refined"])),
        "widths_calibration": calibration_record(state, refine_steps),
        "flips": bool(flips),
        "seconds_per_galaxy": encode_seconds / max(int(total), 1),
        "n_mc_derived": int(n_mc_derived),
        "mask_neighbours": bool(mask_neighbours),
        "hide_redshift": bool(hide_redshift),
        "disk_history": disk_history,
        "data_disk_history": data_physics.get("disk_history"),
        "birth_clouds": birth_clouds,
        "data_birth_clouds": data_physics.get("birth_clouds"),
        "versions": versions(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "device": device,
        },
        "chi2_per_pixel": {
            # over the galaxies with an unmasked pixel (the others' chi2 is NaN, and counted)
            "median": float(np.nanmedian(chi2)),
            "p16": float(np.nanpercentile(chi2, 16)),
            "p84": float(np.nanpercentile(chi2, 84)),
            "fraction_above_poor_fit": float(np.mean(chi2 > POOR_FIT_CHI2_PER_PIXEL)),
            "n_without_unmasked_pixels": int(np.isnan(chi2).sum()),
            "poor_fit_threshold": POOR_FIT_CHI2_PER_PIXEL,
        },
        "params": {},
        "coverage": {},
        "coverage_combinations": {},
        "maps": {},
    }
    # the posterior means (params) and the parameters of the model behind model_images
    # (Posterior.model_params), against the truth
    for section, prefix in (("params", "pred/"), ("model_params", "best/")):
        names = sorted(set(tp) & {k.split("/", 1)[1] for k in cat if k.startswith(prefix)})
        for name in names:
            pred, true = cat[f"{prefix}{name}"], tp[name]
            entry = robust_stats(pred, true, _period(name))
            if name in _RADIUS_PARAMS or name.startswith("r_half_arcsec_"):
                with np.errstate(divide="ignore", invalid="ignore"):
                    frac = np.abs(pred / true - 1.0)
                entry["median_abs_frac_error"] = float(np.nanmedian(frac))
            metrics.setdefault(section, {})[name] = entry
    for name in REGISTRY.names:
        if f"in68/{name}" in cat:
            metrics["coverage"][name] = {
                "68": float(cat[f"in68/{name}"].mean()),
                "95": float(cat[f"in95/{name}"].mean()),
            }

    for cname in LATENT_COMBINATIONS:
        if f"combo68/{cname}" in cat:
            metrics["coverage_combinations"][cname] = {
                "68": float(cat[f"combo68/{cname}"].mean()),
                "95": float(cat[f"combo95/{cname}"].mean()),
            }

    if "r_half_arcsec_r" in tp and "pred/r_half_arcsec_r" in cat:
        metrics["r_half_by_resolution"] = r_half_by_resolution(
            cat["pred/r_half_arcsec_r"],
            tp["r_half_arcsec_r"],
            cat["psf_fwhm_r"],
            std=cat["std/r_half_arcsec_r"],
        )

    if hide_redshift:
        metrics["photo_z"] = photo_z_metrics(
            cat["photo_z"], cat["z_true"], cat["in68/redshift"], cat["in95/redshift"]
        )

    # ---- maps ------------------------------------------------------------------------------
    counts = {k: np.concatenate(v) for k, v in count_maps.items()}
    sd = {k: np.concatenate(v) for k, v in std_maps.items()}
    apm = {k: np.concatenate(v) for k, v in model_maps.items()}
    res = (
        map_residuals(tm, pm, tp, info.image_shape, info.pixel_scale_arcsec, total, counts, apm)
        if tm
        else None
    )
    metrics["maps"] = _map_metrics_of(res, tm, pm, sd) if res else {}
    if metrics["maps"]:
        metrics["map_estimators"] = {
            "per_pixel_and_radial": (
                f"posterior mean of each map, pixel by pixel, over {n_mc_derived} rendered draws"
                if n_mc_derived > 0
                else "maps at the posterior mean latent"
            ),
            "within_2rhalf": "aperture sums of the maps at the posterior mean latent (model_maps)",
        }

    metrics["out_dir"] = str(out_dir)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
    per_galaxy = {
        f"params/{name}/pred_minus_true": wrapped_difference(
            cat[f"pred/{name}"], tp[name], _period(name)
        )
        for name in metrics["params"]
    }
    if res:
        per_galaxy.update(per_galaxy_map_stats(res))
    if per_galaxy:
        save_per_galaxy(out_dir, per_galaxy, tp, data)
    if figures:
        _figures(out_dir, keep_imgs, chi2, tm, pm, model.bands, metrics, sd)
    return metrics


def analytic_disk_history(attrs: dict[str, Any]) -> str | None:
    """The disk history an analytic mock file was rendered with (from its generator config;
    "single" for files written before the choice existed), or None for other generators."""
    return mock_physics(attrs).get("disk_history")


#: |z_phot - z| / (1 + z) beyond which a photometric redshift counts as an outlier (the usual
#: catastrophic-outlier threshold, e.g. Hildebrandt et al. 2010, A&A 523, A31).
PHOTO_Z_OUTLIER: float = 0.15


def photo_z_metrics(
    z_phot: np.ndarray, z_true: np.ndarray, in68: np.ndarray, in95: np.ndarray
) -> dict[str, float]:
    """Accuracy of photometric redshifts: dz = (z_phot - z) / (1 + z), its median (bias),
    1.4826 MAD (NMAD), median |dz|, the fraction with |dz| > :data:`PHOTO_Z_OUTLIER`, and the
    coverage of the posterior's 68% and 95% intervals (boolean hits per galaxy)."""
    dz = (np.asarray(z_phot, np.float64) - z_true) / (1.0 + z_true)
    med = float(np.median(dz))
    return {
        "n": int(dz.size),
        "bias_median": med,
        "nmad": float(1.4826 * np.median(np.abs(dz - med))),
        "median_abs": float(np.median(np.abs(dz))),
        "outlier_fraction": float(np.mean(np.abs(dz) > PHOTO_Z_OUTLIER)),
        "coverage_68": float(np.mean(in68)),
        "coverage_95": float(np.mean(in95)),
    }


def aperture_geometry(
    tp: dict[str, np.ndarray], shape: tuple[int, int], scale: float, total: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's distance from the true centre and the true r-band half-light radius.

    Args:
        tp: truth parameters {name: (N,)} (``dx_arcsec``, ``dy_arcsec``, a half-light radius).
        shape: (H, W); scale: pixel scale in arcsec; total: N.
    Returns:
        (N, H, W) radius and (N,) half-light radius, both in pixels (5 pixels where the truth
        has no half-light radius).
    """
    h, w = shape
    cx = (w - 1) / 2 + tp.get("dx_arcsec", np.zeros(total)) / scale
    cy = (h - 1) / 2 + tp.get("dy_arcsec", np.zeros(total)) / scale
    rh_key = next(
        (k for k in ("r_half_arcsec_r", "r_half_light_arcsec_r", "r_half_light_arcsec") if k in tp),
        None,
    )
    r_half_pix = tp[rh_key] / scale if rh_key else np.full(total, 5.0)
    return _radius_grid(h, w, cx, cy), r_half_pix


def map_metrics(
    tm: dict[str, np.ndarray],
    pm: dict[str, np.ndarray],
    tp: dict[str, np.ndarray],
    shape: tuple[int, int],
    scale: float,
    total: int,
    counts: dict[str, np.ndarray] | None = None,
    aperture_pm: dict[str, np.ndarray] | None = None,
    pred_std: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Map metrics of Buck & Wolf (2021): integrated within 2 r_half, radial, per pixel.

    The integrated quantities come from ``aperture_pm`` where it has the map (an additive
    prediction: the autoencoder's ``model_maps``), else from ``pm``.  With ``pred_std`` (a
    posterior's ``maps_std``) the per-pixel uncertainties are checked too:
    ``per_pixel_coverage_68`` is the fraction of pixels whose truth lies within one posterior
    standard deviation of the prediction (0.68 for a calibrated Gaussian posterior; lower where
    the truth has structure the model cannot represent), with ``per_pixel_median_std``.

    Per pixel, the median (bias) and standard deviation (scatter) of log(true) - log(pred) are
    taken over the non-empty pixels (:func:`_pixel_selections`; the radial profiles read the
    same pixels), and the scatter is split into the galaxies' mean offsets
    and the structure within them (:func:`split_scatter`).  With particle counts, they are also
    given over the well-sampled pixels alone (``*_well_sampled``: at least
    :data:`MIN_PARTICLES_PER_PIXEL` particles of the kind that makes the map,
    :data:`SAMPLING_MAPS`), with the fraction of the non-empty pixels that are.

    Args:
        tm, pm: {map name: (N, H, W)} truth and prediction.
        tp: truth parameters {name: (N,)} (centre offsets and r-band half-light radius).
        aperture_pm: {map name: (N, H, W)} predictions for the integrated quantities, or None.
        pred_std: {map name: (N, H, W)} posterior standard deviations of ``pm``, or None.
        shape: (H, W); scale: pixel scale in arcsec; total: N.
        counts: {count map name of :data:`SAMPLING_MAPS`: (N, H, W)}, or None.
    """
    if not tm:
        return {}
    return _map_metrics_of(
        map_residuals(tm, pm, tp, shape, scale, total, counts, aperture_pm), tm, pm, pred_std
    )


def _map_metrics_of(
    res: MapResiduals,
    tm: dict[str, np.ndarray],
    pm: dict[str, np.ndarray],
    pred_std: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """:func:`map_metrics` from residuals already made (:func:`map_residuals`)."""
    out: dict[str, Any] = {}
    rad, r_half_pix = res.radius_pix, res.r_half_pix
    pred_std = pred_std or {}
    for label, lr in res.aperture_log_true_over_pred.items():
        out[label] = {
            "mean_log_true_over_pred": float(np.nanmean(lr)),
            "scatter_dex": float(np.nanstd(lr)),
            "scatter_mad_dex": float(1.4826 * np.nanmedian(np.abs(lr - np.nanmedian(lr)))),
        }
    for mname, d_ in res.diff.items():
        good = res.pixels[mname].get("well_sampled")
        sel = res.pixels[mname]["all"]
        between, within_galaxy = split_scatter(d_, sel)
        out[mname] = {
            "per_pixel_bias": float(np.median(d_[sel])) if sel.any() else float("nan"),
            "per_pixel_scatter": float(np.std(d_[sel])) if sel.any() else float("nan"),
            "per_pixel_scatter_between_galaxies": between,
            "per_pixel_scatter_within_galaxies": within_galaxy,
            "radial": radial_residual_profile(tm[mname], pm[mname], rad, r_half_pix, valid=sel),
        }
        covered = None  # truth within one posterior standard deviation
        if mname in pred_std:
            covered = np.abs(d_) <= pred_std[mname]
            out[mname]["per_pixel_coverage_68"] = _fraction(covered, sel)
            out[mname]["per_pixel_median_std"] = (
                float(np.median(pred_std[mname][sel])) if sel.any() else float("nan")
            )
        if good is not None:
            out[mname].update(
                {
                    "per_pixel_bias_well_sampled": (
                        float(np.median(d_[good])) if good.any() else float("nan")
                    ),
                    "per_pixel_scatter_well_sampled": (
                        float(np.std(d_[good])) if good.any() else float("nan")
                    ),
                    "well_sampled_pixel_fraction": float(good.sum() / max(int(sel.sum()), 1)),
                    "well_sampled_min_particles": MIN_PARTICLES_PER_PIXEL,
                    "well_sampled_count_map": _count_map(mname),
                }
            )
            between, within_galaxy = split_scatter(d_, good)
            out[mname]["per_pixel_scatter_between_galaxies_well_sampled"] = between
            out[mname]["per_pixel_scatter_within_galaxies_well_sampled"] = within_galaxy
            if covered is not None:
                out[mname]["per_pixel_coverage_68_well_sampled"] = _fraction(covered, good)
    return out


def _non_empty(tm: dict[str, np.ndarray]) -> np.ndarray | None:
    """(N, H, W) bool: the pixels with stellar mass in the truth (None without that map)."""
    if "log10_sigma_mstar_msun_per_kpc2" not in tm:
        return None
    return tm["log10_sigma_mstar_msun_per_kpc2"] > 3.5


def _count_map(mname: str) -> str:
    """The particle-count map that samples map ``mname`` (:data:`SAMPLING_MAPS`)."""
    return next((c for c, names in SAMPLING_MAPS.items() if mname in names), "n_particles")


def _pixel_selections(
    diff: np.ndarray,
    mname: str,
    valid: np.ndarray | None,
    counts: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """The pixels the per-pixel metrics of map ``mname`` read, each (N, H, W) bool:
    ``"all"`` (non-empty and finite) and, given the particle counts, ``"well_sampled"``.

    Non-empty means stellar mass in the truth (``valid``) and, for a map that particles of one
    kind make (:data:`SAMPLING_MAPS`: the SFR map, of the young particles), at least one such
    particle: where there is none the truth is the map's floor (log of zero), which no
    prediction of a positive quantity can meet and none should try to."""
    sel = np.isfinite(diff) if valid is None else (valid & np.isfinite(diff))
    cname = _count_map(mname)
    if cname in counts and mname in SAMPLING_MAPS.get(cname, ()):
        sel = sel & (counts[cname] >= 1)
    out = {"all": sel}
    if cname in counts:
        out["well_sampled"] = sel & (counts[cname] >= MIN_PARTICLES_PER_PIXEL)
    return out


@dataclass(frozen=True)
class MapResiduals:
    """What every map metric reads: residuals d = log(true) - log(pred) and their pixels.

    Attributes:
        radius_pix: (N, H, W) distance of each pixel from the true centre.
        r_half_pix: (N,) true r-band half-light radius.
        aperture_log_true_over_pred: {aperture label: (N,)} log10(true / predicted) of the
            linear quantity inside 2 r_half (:data:`APERTURE_MAPS`).
        diff: {map name: (N, H, W)} d per pixel.
        pixels: {map name: {"all" or "well_sampled": (N, H, W) bool}} the pixels the per-pixel
            metrics read (:func:`_pixel_selections`).
    """

    radius_pix: np.ndarray
    r_half_pix: np.ndarray
    aperture_log_true_over_pred: dict[str, np.ndarray]
    diff: dict[str, np.ndarray]
    pixels: dict[str, dict[str, np.ndarray]]


def map_residuals(
    tm: dict[str, np.ndarray],
    pm: dict[str, np.ndarray],
    tp: dict[str, np.ndarray],
    shape: tuple[int, int],
    scale: float,
    total: int,
    counts: dict[str, np.ndarray] | None = None,
    aperture_pm: dict[str, np.ndarray] | None = None,
) -> MapResiduals:
    """The residuals behind :func:`map_metrics` (same arguments, without ``pred_std``)."""
    counts = counts or {}
    aperture_pm = aperture_pm or {}
    rad, r_half_pix = aperture_geometry(tp, shape, scale, total)
    aperture = {
        label: aperture_log_ratio(tm[m], aperture_pm.get(m, pm[m]), rad, r_half_pix)
        for m, label in APERTURE_MAPS.items()
        if m in tm and m in pm
    }
    valid = _non_empty(tm)
    diff = {m: tm[m] - pm[m] for m in MAP_NAMES if m in tm and m in pm}
    pixels = {m: _pixel_selections(d_, m, valid, counts) for m, d_ in diff.items()}
    return MapResiduals(rad, r_half_pix, aperture, diff, pixels)


def per_galaxy_map_stats(res: MapResiduals) -> dict[str, np.ndarray]:
    """Per-galaxy sufficient statistics of :func:`map_metrics`, for resampling galaxies.

    Every scatter in ``map_metrics`` is a function of these (N,) arrays, so a bootstrap over
    galaxies (:func:`bootstrap_scatters`) needs nothing else:

    * ``"{aperture label}/log_true_over_pred"``: log10(true / predicted) inside 2 r_half;
    * ``"{map}/{pixels}/n"``, ``.../sum``, ``.../sum_sq``: the number of selected pixels and
      the sums of d and d^2, d = log(true) - log(pred), for ``pixels`` in ``all`` (non-empty)
      and, given particle counts, ``well_sampled``.

    Args:
        res: the residuals (:func:`map_residuals`).
    """
    out = {
        f"{label}/log_true_over_pred": lr for label, lr in res.aperture_log_true_over_pred.items()
    }
    for mname, d_ in res.diff.items():
        for pix, sel in res.pixels[mname].items():
            dz = np.where(sel, d_, 0.0).astype(np.float64)
            out[f"{mname}/{pix}/n"] = sel.sum((1, 2)).astype(np.float64)
            out[f"{mname}/{pix}/sum"] = dz.sum((1, 2))
            out[f"{mname}/{pix}/sum_sq"] = (dz**2).sum((1, 2))
    return out


def scatters_from_sums(
    n: np.ndarray, s1: np.ndarray, s2: np.ndarray, weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Pooled per-pixel scatter and its split (:func:`split_scatter`) from per-galaxy sums.

    With galaxy i counted ``weight[..., i]`` times (bootstrap multiplicities; 1 by default),

    .. math::
        \mu = \frac{\sum_i w_i S_{1,i}}{\sum_i w_i n_i},\quad
        \sigma^2 = \frac{\sum_i w_i S_{2,i}}{\sum_i w_i n_i} - \mu^2,\quad
        \sigma_{\rm between}^2 = \frac{\sum_i w_i S_{1,i}^2 / n_i}{\sum_i w_i n_i}
        - \mu^2,\quad \sigma_{\rm within}^2 = \sigma^2 - \sigma_{\rm between}^2.

    Args:
        n, s1, s2: (N,) pixel counts and sums of d and d^2 per galaxy.
        weight: (..., N) multiplicities, or None.
    Returns:
        (total, between, within), each of shape (...,); NaN where no pixel is counted.
    """
    w = np.ones_like(n) if weight is None else np.asarray(weight, np.float64)
    m = np.maximum(n, 1.0)
    tot_n = w @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = (w @ s1) / tot_n
        var = (w @ s2) / tot_n - mu**2
        var_b = (w @ (s1**2 / m)) / tot_n - mu**2
    var = np.clip(var, 0.0, None)
    var_b = np.clip(var_b, 0.0, var)
    return np.sqrt(var), np.sqrt(var_b), np.sqrt(var - var_b)


#: The per-pixel scatters a bootstrap over galaxies can put an interval on: stat -> (pixels,
#: index into :func:`scatters_from_sums`' (total, between, within)).
_BOOT_PIXEL_STATS: dict[str, tuple[str, int]] = {
    "per_pixel_scatter": ("all", 0),
    "per_pixel_scatter_between_galaxies": ("all", 1),
    "per_pixel_scatter_within_galaxies": ("all", 2),
    "per_pixel_scatter_well_sampled": ("well_sampled", 0),
    "per_pixel_scatter_between_galaxies_well_sampled": ("well_sampled", 1),
    "per_pixel_scatter_within_galaxies_well_sampled": ("well_sampled", 2),
}


def _boot_stat(
    stats: dict[str, np.ndarray], key: str, stat: str, weight: np.ndarray
) -> np.ndarray | None:
    """One report row under each bootstrap weighting (B, N) -> (B,).

    ``key`` is a map or aperture label (rows ``maps/{key}/{stat}``) or ``params/{name}`` (rows
    of the latents and derived observables)."""
    for per_galaxy, robust in (
        ("log_true_over_pred", "scatter_mad_dex"),
        ("pred_minus_true", "scatter_mad"),
    ):
        if stat == robust and f"{key}/{per_galaxy}" in stats:
            return _resampled_mad(stats[f"{key}/{per_galaxy}"], weight)
    if stat == "scatter_dex" and f"{key}/log_true_over_pred" in stats:
        x = stats[f"{key}/log_true_over_pred"]
        ok = np.isfinite(x)
        w = weight * ok
        xz = np.where(ok, x, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = (w @ xz) / w.sum(-1)
            return np.sqrt(np.clip((w @ xz**2) / w.sum(-1) - mu**2, 0.0, None))
    if stat in _BOOT_PIXEL_STATS:
        pix, which = _BOOT_PIXEL_STATS[stat]
        if f"{key}/{pix}/n" not in stats:
            return None
        return scatters_from_sums(
            stats[f"{key}/{pix}/n"], stats[f"{key}/{pix}/sum"], stats[f"{key}/{pix}/sum_sq"], weight
        )[which]
    return None


def _resampled_mad(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """1.4826 x the median absolute deviation of ``x`` (N,) under each multiplicity row of
    ``weight`` (B, N) -> (B,), non-finite entries left out."""
    ok = np.isfinite(x)
    x, counts = x[ok], weight[:, ok].astype(np.int64)
    out = np.full(weight.shape[0], np.nan)
    for b, c in enumerate(counts):
        v = np.repeat(x, c)
        if v.size:
            out[b] = 1.4826 * np.median(np.abs(v - np.median(v)))
    return out


def bootstrap_scatters(
    stats_a: dict[str, np.ndarray],
    stats_b: dict[str, np.ndarray],
    rows: Sequence[tuple[str, str]],
    paired: bool,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Bootstrap intervals over galaxies for the scatters of two reports, and their ratio.

    Galaxies are resampled with replacement; when ``paired`` (both reports read the same
    galaxies in the same order) A and B share each resample, so the interval on A / B holds only
    the models' difference, not the luck of which galaxies were drawn.

    Args:
        stats_a, stats_b: each report's per-galaxy statistics (:data:`PER_GALAXY_FILE`:
            :func:`per_galaxy_map_stats` and the latents' ``params/<name>/pred_minus_true``).
        rows: (map key, aperture label or ``params/<name>``, stat) pairs, e.g.
            ``("log10_sfr_2rhalf", "scatter_dex")`` or ``("params/r_d_kpc", "scatter_mad")``.
        paired: share the resamples (requires the same number of galaxies).
    Returns:
        {row: {"A_ci68", "A_ci95", "B_ci68", "B_ci95", "ratio_ci68", "ratio_ci95":
        [lo, hi], "p_A_below_B": fraction of resamples with A's scatter below B's,
        "n_boot", "paired"}}; rows that the statistics cannot give are left out.
    """
    na = _n_galaxies(stats_a)
    nb = _n_galaxies(stats_b)
    if paired and na != nb:
        raise ValueError(f"a paired bootstrap needs the same galaxies; got {na} and {nb}")
    rng = np.random.default_rng(seed)

    def multiplicities(n: int) -> np.ndarray:
        idx = rng.integers(0, n, size=(n_boot, n))
        return np.stack([np.bincount(r, minlength=n) for r in idx]).astype(np.float64)

    wa = multiplicities(na)
    wb = wa if paired else multiplicities(nb)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, stat in rows:
        a = _boot_stat(stats_a, key, stat, wa)
        b = _boot_stat(stats_b, key, stat, wb)
        if a is None or b is None:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            r = a / b
        entry: dict[str, Any] = {"n_boot": int(n_boot), "paired": bool(paired)}
        for name, x in (("A", a), ("B", b), ("ratio", r)):
            x = x[np.isfinite(x)]
            for level, q in (("68", (16.0, 84.0)), ("95", (2.5, 97.5))):
                entry[f"{name}_ci{level}"] = (
                    [float(v) for v in np.percentile(x, q)] if x.size else [float("nan")] * 2
                )
        entry["p_A_below_B"] = float(np.mean(a < b))
        out[(key, stat)] = entry
    return out


def _n_galaxies(stats: dict[str, np.ndarray]) -> int:
    sizes = {int(v.shape[0]) for v in stats.values()}
    if len(sizes) != 1:
        raise ValueError(f"per-galaxy statistics of unequal lengths: {sorted(sizes)}")
    return sizes.pop()


#: File beside ``metrics.json`` with :func:`per_galaxy_map_stats`, each latent's and derived
#: observable's prediction error (``params/<name>/pred_minus_true``) and a truth fingerprint.
PER_GALAXY_FILE = "per_galaxy.npz"


def save_per_galaxy(
    out_dir: Path, stats: dict[str, np.ndarray], tp: dict[str, np.ndarray], data: str | Path
) -> Path:
    """Write the per-galaxy statistics with what identifies the galaxies: the data file's name
    and a fingerprint of the truth (each galaxy's true log stellar mass, or its centre offsets)
    so that :func:`compare_reports` pairs two reports only when they read the same galaxies."""
    key = next((k for k in ("log10_mstar_msun", "dx_arcsec") if k in tp), None)
    fingerprint = np.asarray(tp[key], np.float64) if key else np.zeros(0)
    path = out_dir / PER_GALAXY_FILE
    np.savez_compressed(path, **stats, _fingerprint=fingerprint, _data=np.asarray(Path(data).name))
    return path


def _load_per_galaxy(metrics_path: Path) -> tuple[dict[str, np.ndarray], np.ndarray] | None:
    path = metrics_path.parent / PER_GALAXY_FILE
    if not path.exists():
        return None
    with np.load(path) as z:
        stats = {k: z[k] for k in z.files if not k.startswith("_")}
        return stats, z["_fingerprint"]


def split_scatter(diff: np.ndarray, sel: np.ndarray) -> tuple[float, float]:
    """The per-pixel scatter of ``diff`` over ``sel``, split into galaxies' mean offsets and the
    rest: (between, within), with between**2 + within**2 = np.std(diff[sel])**2.

    ``between`` is the standard deviation, over the selected pixels, of each pixel's galaxy mean
    offset (so a galaxy counts by its number of pixels); ``within`` that of the pixels about
    their galaxy's mean.  Args: diff, sel: (N, H, W).  NaNs when nothing is selected.

    :func:`scatters_from_sums` is the same split from per-galaxy sums, which a bootstrap can
    reweight; this centred form is kept for the reports because it does not lose digits to
    cancellation where the offsets are large against their spread (the age map: 1e-8 relative).
    """
    count = sel.sum((1, 2))
    if not count.any():
        return float("nan"), float("nan")
    mean = np.where(sel, diff, 0.0).sum((1, 2)) / np.maximum(count, 1)
    overall = float((mean * count).sum() / count.sum())
    between = float(np.sqrt((count * (mean - overall) ** 2).sum() / count.sum()))
    within = float(np.std((diff - mean[:, None, None])[sel]))
    return between, within


def _fraction(hits: np.ndarray, sel: np.ndarray) -> float:
    """Mean of boolean ``hits`` over the selected entries (NaN when none is selected)."""
    return float(hits[sel].mean()) if sel.any() else float("nan")


def _require_truth(info: Any, what: str) -> None:
    """A ValueError when the data set holds no truth to score ``what`` against."""
    if not info.truth_param_names and not info.truth_map_names:
        raise ValueError(
            f"{info.path} holds no truth (truth/params, truth/maps): galae.evaluate scores "
            f"{what} against a mock's truth; to fit real images use GalaeModel.encode or "
            "python -m galae.fit"
        )


def evaluate_unet(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    n: int | None = None,
    batch_size: int = 64,
    device: str = "cpu",
    figures: bool = True,
    steps: int | None = None,
) -> dict[str, Any]:
    """The map metrics of :func:`evaluate` for the supervised U-Net baseline.

    ``steps`` (training steps, for the report) is read from the checkpoint when not given.
    """
    from galae.unet import load_unet

    pred = load_unet(checkpoint, device)
    info = inspect_h5(data, expected_bands=pred.bands)
    _require_truth(info, "the U-Net's maps")
    if math.isfinite(pred.pixel_scale_arcsec) and not math.isclose(
        info.pixel_scale_arcsec, pred.pixel_scale_arcsec, rel_tol=0.01
    ):
        raise ValueError(
            f"{data} has {info.pixel_scale_arcsec:g} arcsec pixels; the U-Net {checkpoint} was "
            f"trained on {pred.pixel_scale_arcsec:g} arcsec pixels and reads pixels, not arcsec"
        )
    total = info.n_galaxies if n is None else min(n, info.n_galaxies)
    out_dir = Path(out) if out else Path(checkpoint).parent / f"eval_{Path(data).stem}"
    out_dir.mkdir(parents=True, exist_ok=True)
    tm: dict[str, list[np.ndarray]] = {}
    pm: dict[str, list[np.ndarray]] = {}
    tp: dict[str, list[np.ndarray]] = {}
    cm: dict[str, list[np.ndarray]] = {}
    for start in tqdm(range(0, total, batch_size), desc="evaluate unet", unit="batch"):
        rows = np.arange(start, min(total, start + batch_size))
        d = read_h5(data, rows, with_maps=True, expected_bands=pred.bands)
        maps = pred.predict_maps(
            d["images"], d["sigma"], d["mask"], d["psf_fwhm_arcsec"], d["redshift"]
        )
        for k, v in maps.items():
            if k in d["truth"]["maps"]:
                pm.setdefault(k, []).append(v.cpu().numpy())
                tm.setdefault(k, []).append(d["truth"]["maps"][k])
        for k in SAMPLING_MAPS:
            if k in d["truth"]["maps"]:
                cm.setdefault(k, []).append(d["truth"]["maps"][k])
        for k, v in d["truth"]["params"].items():
            tp.setdefault(k, []).append(v)
    tmc = {k: np.concatenate(v) for k, v in tm.items()}
    pmc = {k: np.concatenate(v) for k, v in pm.items()}
    tpc = {k: np.concatenate(v) for k, v in tp.items()}
    if steps is None:
        from galae.checkpoint import load_checkpoint

        steps = int(load_checkpoint(checkpoint)["step"])
    cmc = {k: np.concatenate(v) for k, v in cm.items()}
    res = (
        map_residuals(tmc, pmc, tpc, info.image_shape, info.pixel_scale_arcsec, total, cmc)
        if tmc
        else None
    )
    metrics: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "data_generator": info.attrs.get("generator", ""),
        "n_galaxies": int(total),
        "model": "unet",
        "trained_with": "supervised-truth-maps",
        "supervised": True,
        "training_steps": steps,
        "versions": versions(),
        "machine": {"platform": platform.platform(), "device": device},
        "maps": _map_metrics_of(res, tmc, pmc) if res else {},
    }
    metrics["out_dir"] = str(out_dir)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
    if res:
        save_per_galaxy(out_dir, per_galaxy_map_stats(res), tpc, data)
    if figures and tmc:
        from galae import plots

        names = [nm for nm in MAP_NAMES if nm in tmc]
        fig = plots.maps_comparison_figure(
            {k: tmc[k] for k in names}, {k: pmc[k] for k in names}, names=names, index=0
        )
        plots.save_figure(fig, out_dir / "maps.png")
    return metrics


def _figures(
    out_dir: Path,
    imgs: dict[str, list[np.ndarray]],
    chi2: np.ndarray,
    tm: dict[str, np.ndarray],
    pm: dict[str, np.ndarray],
    bands: tuple[str, ...],
    metrics: dict[str, Any],
    std: dict[str, np.ndarray] | None = None,
) -> None:
    from galae import plots

    images = np.concatenate(imgs["images"])
    model = np.concatenate(imgs["model"])
    sigma = np.concatenate(imgs["sigma"])
    order = np.argsort(chi2)  # best fit first
    picks = [
        order[min(len(order) - 1, int(round((1 - q) * (len(order) - 1))))] for q in (1.0, 0.7, 0.4)
    ]
    titles = [
        f"{q}th pct fit, chi2/pix={chi2[i]:.2f}" for q, i in zip((100, 70, 40), picks, strict=True)
    ]
    fig = plots.reconstruction_figure(images[picks], model[picks], sigma[picks], bands, titles)
    plots.save_figure(fig, out_dir / "reconstructions.png")
    if "r_half_by_resolution" in metrics:
        fig = plots.r_half_resolution_figure({"model": metrics["r_half_by_resolution"]})
        plots.save_figure(fig, out_dir / "r_half_resolution.png")
    if tm:
        names = [n for n in MAP_NAMES if n in tm]
        fig = plots.maps_comparison_figure(
            {n: tm[n] for n in names},
            {n: pm[n] for n in names},
            names=names,
            index=int(picks[0]),
            std={n: std[n] for n in names} if std and all(n in std for n in names) else None,
        )
        plots.save_figure(fig, out_dir / "maps.png")
        fig = plots.radial_residuals_figure(
            {n: metrics["maps"][n]["radial"] for n in names if n in metrics["maps"]}
        )
        plots.save_figure(fig, out_dir / "radial_residuals.png")


#: The scatters a comparison report tabulates (each where both reports have it).
COMPARE_STATS: tuple[str, ...] = (
    "scatter_dex",
    "scatter_mad_dex",
    "scatter_mad",
    "per_pixel_scatter",
    "per_pixel_scatter_between_galaxies",
    "per_pixel_scatter_within_galaxies",
    "per_pixel_scatter_well_sampled",
    "per_pixel_scatter_between_galaxies_well_sampled",
    "per_pixel_scatter_within_galaxies_well_sampled",
)


def _read_report(path: Path) -> dict[str, Any]:
    """A ``metrics.json`` of :func:`evaluate`, or a ValueError naming the file."""
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not a JSON report of galae.evaluate ({err})") from None
    if not isinstance(report, dict) or not ({"maps", "params"} & set(report)):
        raise ValueError(f"{path} is not a metrics.json of galae.evaluate (no maps or params)")
    return report


def compare_reports(
    a: str | Path,
    b: str | Path,
    out: str | Path | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    figure: bool = True,
) -> dict[str, Any]:
    """Side-by-side table and figure of two reports (``metrics.json`` of :func:`evaluate`).

    Each row is one scatter (:data:`COMPARE_STATS`) of a map or latent that both reports hold,
    with the ratio A / B.  Where both report folders hold :data:`PER_GALAXY_FILE` (every
    evaluation since it was added writes one), the rows also get bootstrap intervals over
    galaxies (:func:`bootstrap_scatters`, ``n_boot`` resamples): 68% and 95% intervals on A, B
    and A / B, and the fraction of resamples in which A's scatter is below B's.  The resamples
    are shared (paired) when the two reports read the same galaxies, as the truth fingerprint
    in the file tells; otherwise A and B are resampled independently.

    Args:
        a, b: paths of the two ``metrics.json``.
        out: a ``.json`` path for the table (the figures go beside it, ``.png`` and
            ``_radial.png``, and a Markdown table, ``.md``), or a folder (``compare.json``,
            ``compare.png``, ``compare_radial.png``, ``compare.md``); None writes nothing.
        figure: also draw the figure.
    Returns:
        {"A", "B", "A_trained_with", "B_trained_with", "bootstrap": {...} or None,
        "rows": {"section/key/stat": {"A", "B", "ratio_A_over_B", [intervals]}}}.
    """
    pa, pb = Path(a), Path(b)
    ra, rb = _read_report(pa), _read_report(pb)
    rows: dict[str, dict[str, Any]] = {}
    for section in ("maps", "params"):
        for key in sorted(set(ra.get(section, {})) & set(rb.get(section, {}))):
            ea, eb = ra[section][key], rb[section][key]
            for stat in COMPARE_STATS:
                if stat in ea and stat in eb:
                    rows[f"{section}/{key}/{stat}"] = {
                        "A": ea[stat],
                        "B": eb[stat],
                        "ratio_A_over_B": ea[stat] / eb[stat] if eb[stat] else float("nan"),
                    }
    if not rows:
        raise ValueError(
            f"{pa} and {pb} share no statistic to compare (no map or latent scored in both)"
        )
    boot_info = None
    ga, gb = _load_per_galaxy(pa), _load_per_galaxy(pb)
    lacking = [str(x.parent) for x, g in ((pa, ga), (pb, gb)) if g is None]
    if lacking and any(k.startswith("maps/") for k in rows):
        warnings.warn(
            f"no bootstrap intervals: {', '.join(lacking)} lacks {PER_GALAXY_FILE} (written by "
            "python -m galae.evaluate since it was added; re-run the evaluation)",
            RuntimeWarning,
            stacklevel=2,
        )
    if ga is not None and gb is not None:
        (sa, fa), (sb, fb) = ga, gb
        paired = fa.shape == fb.shape and fa.size > 0 and bool(np.allclose(fa, fb, atol=1e-6))
        # a row "maps/<key>/<stat>" reads the statistics of <key>, "params/<name>/<stat>" those
        # of "params/<name>"
        row_of = {
            (key if section == "maps" else f"params/{key}", stat): row
            for row in rows
            for section, key, stat in [row.split("/", 2)]
        }
        boot = bootstrap_scatters(sa, sb, list(row_of), paired=paired, n_boot=n_boot, seed=seed)
        for wanted, entry in boot.items():
            rows[row_of[wanted]].update(entry)
        boot_info = {
            "n_boot": int(n_boot),
            "paired": paired,
            "n_galaxies_A": _n_galaxies(sa),
            "n_galaxies_B": _n_galaxies(sb),
            "seed": int(seed),
        }
    data_a, data_b = ra.get("data"), rb.get("data")
    different_data = (
        (boot_info is not None and not boot_info["paired"])
        or (data_a is not None and data_b is not None and Path(data_a).name != Path(data_b).name)
        or ra.get("n_galaxies") != rb.get("n_galaxies")
    )
    if different_data:
        warnings.warn(
            f"{pa} and {pb} scored different galaxies ({data_a}, {ra.get('n_galaxies')} "
            f"galaxies; {data_b}, {rb.get('n_galaxies')}): the ratios compare samples as well "
            "as models",
            RuntimeWarning,
            stacklevel=2,
        )
    table = {
        "A": str(a),
        "B": str(b),
        "A_data": data_a,
        "B_data": data_b,
        "different_galaxies": bool(different_data),
        "A_trained_with": ra.get("trained_with"),
        "B_trained_with": rb.get("trained_with"),
        "bootstrap": boot_info,
        "no_per_galaxy_statistics": lacking,
        "rows": rows,
    }
    if out is not None:
        out = Path(out)
        if out.suffix == ".json":
            json_path = out
            out.parent.mkdir(parents=True, exist_ok=True)
        else:
            out.mkdir(parents=True, exist_ok=True)
            json_path = out / "compare.json"
        json_path.write_text(json.dumps(table, indent=2, default=_json_default))
        json_path.with_suffix(".md").write_text(compare_markdown(table))
        if figure and rows:
            from galae import plots

            labels = (_report_label(pa, ra), _report_label(pb, rb))
            plots.comparison_figure(rows, labels=labels, out=json_path.with_suffix(".png"))
            radial = {
                name: (ra["maps"][name]["radial"], rb["maps"][name]["radial"])
                for name in MAP_NAMES
                if "radial" in ra.get("maps", {}).get(name, {})
                and "radial" in rb.get("maps", {}).get(name, {})
            }
            if radial:
                plots.radial_residuals_comparison_figure(
                    radial, labels=labels, out=json_path.with_name(json_path.stem + "_radial.png")
                )
    return table


def _report_label(path: Path, report: dict[str, Any]) -> str:
    kind = "supervised" if report.get("supervised") else "self-supervised"
    return f"{path.parent.name} ({kind})"


def compare_markdown(table: dict[str, Any]) -> str:
    """The comparison table of :func:`compare_reports` as Markdown (95% intervals where the
    bootstrap gave them)."""
    lines = [
        f"A: `{table['A']}` ({table['A_trained_with']})  ",
        f"B: `{table['B']}` ({table['B_trained_with']})",
        "",
    ]
    if table.get("different_galaxies"):
        lines += [
            f"**A and B scored different galaxies** (A: `{table.get('A_data')}`, B: "
            f"`{table.get('B_data')}`): the ratios compare samples as well as models.",
            "",
        ]
    boot = table.get("bootstrap")
    if boot:
        lines += [
            f"Intervals: 95%, {boot['n_boot']} bootstrap resamples of the galaxies "
            f"({'paired: the same galaxies' if boot['paired'] else 'independent'}; "
            f"{boot['n_galaxies_A']} and {boot['n_galaxies_B']} galaxies).",
            "",
        ]
    elif table.get("no_per_galaxy_statistics"):
        lines += [
            "No intervals: no per-galaxy statistics in "
            + ", ".join(f"`{x}`" for x in table["no_per_galaxy_statistics"])
            + " (re-run `python -m galae.evaluate` there).",
            "",
        ]
    lines += ["| row | A | B | A / B | P(A < B) |", "|---|---|---|---|---|"]

    def ci(v: dict[str, Any], name: str) -> str:
        key = f"{name}_ci95"
        return f" [{v[key][0]:.3f}, {v[key][1]:.3f}]" if key in v else ""

    for k, v in table["rows"].items():
        p = f"{v['p_A_below_B']:.2f}" if "p_A_below_B" in v else ""
        lines.append(
            f"| {k} | {v['A']:.3f}{ci(v, 'A')} | {v['B']:.3f}{ci(v, 'B')} | "
            f"{v['ratio_A_over_B']:.2f}{ci(v, 'ratio')} | {p} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        prog="python -m galae.evaluate", description=__doc__.split("\n")[0]
    )
    ap.add_argument(
        "--checkpoint", help="model checkpoint (.pt); default: the packaged model (galae.load())"
    )
    ap.add_argument("--data", help="HDF5 mock data set with truth")
    ap.add_argument("--out", help="output folder")
    ap.add_argument("--n", type=int, help="evaluate only the first n galaxies")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument(
        "--refine-steps",
        type=int,
        default=0,
        help="semi-amortized: move each posterior mean by this many likelihood steps",
    )
    ap.add_argument(
        "--refine-above-chi2",
        type=float,
        default=None,
        help="with --refine-steps: refine only the galaxies the amortized posterior fits worse "
        "than this chi2 per pixel (3 is encode's poor-fit threshold)",
    )
    ap.add_argument(
        "--flips",
        action="store_true",
        help="average the encoder over the stamps mirrored in x, y and both",
    )
    ap.add_argument(
        "--n-mc-derived",
        type=int,
        default=64,
        help="rendered posterior draws (antithetic pairs) per galaxy for the derived observables",
    )
    ap.add_argument(
        "--mask-neighbours",
        action="store_true",
        help="mask other sources found by segmentation (galae.data.segmentation)",
    )
    ap.add_argument(
        "--hide-redshift",
        action="store_true",
        help="do not tell the encoder the redshifts: score the photo-z posterior (metrics photo_z)",
    )
    ap.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="compare two metrics.json: a table (JSON, Markdown) and a figure in --out, with "
        "bootstrap intervals over galaxies where both folders hold per_galaxy.npz",
    )
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples for --compare")
    a = ap.parse_args(argv)
    tune_cpu_allocator()
    if a.n_boot < 100:
        ap.error(f"--n-boot must be >= 100 for 95% intervals, got {a.n_boot}")
    if a.compare:
        pa, pb = (Path(x) for x in a.compare)
        for x in (pa, pb):
            if not x.is_file():
                ap.error(f"--compare: no report at {x} (give the paths of two metrics.json)")
        out = a.out or pa.parent.parent / f"compare_{pa.parent.name}_vs_{pb.parent.name}"
        res = compare_reports(pa, pb, out=out, n_boot=a.n_boot, figure=not a.no_figures)
        print(compare_markdown(res))
        print(f"wrote {out}")
        return res
    if not a.data:
        ap.error("--data is required (or --compare A B)")
    if a.n is not None and a.n < 1:
        ap.error(f"--n must be >= 1, got {a.n}")
    if not a.checkpoint:
        from galae.sampling import default_model_path

        a.checkpoint = str(default_model_path())
        a.out = a.out or f"eval_default_model_{Path(a.data).stem}"
        print(f"--checkpoint not given: evaluating the packaged default model into {a.out}")
    m = evaluate(
        a.checkpoint,
        a.data,
        a.out,
        a.n,
        a.batch_size,
        device=a.device,
        n_mc_derived=a.n_mc_derived,
        figures=not a.no_figures,
        refine_steps=a.refine_steps,
        mask_neighbours=a.mask_neighbours,
        hide_redshift=a.hide_redshift,
        refine_above_chi2=a.refine_above_chi2,
        flips=a.flips,
    )
    print(
        json.dumps(
            {
                "chi2_per_pixel": m.get("chi2_per_pixel"),
                "maps": {k: v for k, v in m["maps"].items() if k in APERTURE_MAPS.values()},
                **({"photo_z": m["photo_z"]} if "photo_z" in m else {}),
            },
            indent=2,
        )
    )
    print(f"wrote {m['out_dir']} (metrics.json{'' if a.no_figures else ', figures'})")
    return m


if __name__ == "__main__":
    with cli_errors("python -m galae.evaluate"):
        main()
