"""Shared helpers of the benchmark scripts: machine description and JSON results."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from galae.runtime import tune_cpu_allocator

#: the benchmarks run as galae's own jobs do (see galae.runtime); recorded with every result
ALLOCATOR_TUNED = tune_cpu_allocator()

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """Where a number was measured."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "malloc_tuned": ALLOCATOR_TUNED,
    }
    try:
        import galae

        info["galae"] = galae.__version__
    except ImportError:  # pragma: no cover
        pass
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def timeit(fn: Callable[[], Any], repeat: int = 5, warmup: int = 1, sync: bool = False) -> float:
    """Best wall time of ``repeat`` calls, in seconds (after ``warmup`` calls)."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeat):
        if sync:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if sync:
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def mad(x: Any) -> float:
    """1.4826 times the median absolute deviation: a robust standard deviation."""
    import numpy as np

    x = np.asarray(x, np.float64)
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def per_galaxy(report: str | Path) -> dict[str, Any]:
    """The per-galaxy statistics of a ``galae.evaluate`` report folder (its ``per_galaxy.npz``)
    as float64 arrays, keyed as written there (the private ``_*`` entries left out)."""
    import numpy as np

    with np.load(Path(report) / "per_galaxy.npz") as z:
        return {k: np.asarray(z[k], np.float64) for k in z.files if not k.startswith("_")}


def name_value_pairs(items: list[str]) -> dict[str, str]:
    """Command-line ``NAME=VALUE`` items as a dict (a SystemExit names a malformed one)."""
    out = {}
    for item in items:
        name, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"expected NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """Write ``results/<name>.json`` with the machine description added."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine(),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2))
    print(json.dumps(payload, indent=2))
    return path


def evaluate_summary(report: str | Path, checkpoint: str | Path | None) -> dict[str, Any]:
    """The issue-4 figures of a ``galae.evaluate`` report on analytic mocks, with the
    calibration behind its widths (amortized or refined, from ``checkpoint``)."""
    m = json.loads((Path(report) / "metrics.json").read_text())
    cov, p = m["coverage"], m["params"]
    out = {
        "report": str(report),
        "chi2_per_pixel_median": m["chi2_per_pixel"]["median"],
        "r_half_r_median_abs_frac_error": p["r_half_arcsec_r"]["median_abs_frac_error"],
        "log10_mstar_scatter_mad_dex": p["log10_mstar_msun"]["scatter_mad"],
        "log10_mstar_scatter_std_dex": p["log10_mstar_msun"]["scatter_std"],
        "coverage_68_range": [
            min(v["68"] for v in cov.values()),
            max(v["68"] for v in cov.values()),
        ],
        "coverage_95_range": [
            min(v["95"] for v in cov.values()),
            max(v["95"] for v in cov.values()),
        ],
        "coverage_per_latent": cov,
        # absent from reports older than the metric (eighteenth submission)
        "coverage_combinations": m.get("coverage_combinations"),
        "seconds_per_galaxy": m["seconds_per_galaxy"],
    }
    if checkpoint is not None:
        cal = torch.load(checkpoint, map_location="cpu", weights_only=False)
        key = "refined_posterior_calibration" if m["refine_steps"] > 0 else "posterior_calibration"
        summary = cal[key]
        before = list(summary["coverage_68_before"].values())
        out["uncalibrated_coverage_68_range"] = [min(before), max(before)]
        out["calibration_scale"] = summary["scale"]
        out["calibration_history_scale_dex"] = summary.get("history_scale_dex")
    return out


def calibration_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments of the benchmarks that calibrate the packaged model again and score it on
    the analytic test mocks: the calibrated checkpoint, the calibration and test sets, the
    number of test galaxies and of refine steps."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--checkpoint", default="runs/pa_cal/model_refcal.pt")
    ap.add_argument("--train", default="data/analytic_train.h5")
    ap.add_argument("--test", default="data/analytic_test.h5")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--steps", type=int, default=60)
    return ap


def use_width_floor(f: float, scale_form: str = "covariance") -> None:
    """Every refined posterior from here on (calibration and ``encode``) with the width floor
    ``f`` (``galae.refine.floor_widths``), and calibrations recording it: for the benchmarks
    measured with another floor than galae's default.  Their calibrations also take the
    refined scales' ``scale_form`` they were measured with (``galae.refine.SCALE_FORMS``)."""
    import functools

    import galae.refine

    if not hasattr(use_width_floor, "original"):
        use_width_floor.original = galae.refine.refine_posterior  # type: ignore[attr-defined]
    galae.refine.REFINED_WIDTH_FLOOR = f
    galae.refine.REFINED_SCALE_FORM = scale_form
    galae.refine.refine_posterior = functools.partial(
        use_width_floor.original,  # type: ignore[attr-defined]
        width_floor=f,
    )


#: nominal coverage of the central intervals that ``galae.evaluate`` scores, by their label
NOMINAL_COVERAGE: dict[str, float] = {"68": 0.6827, "95": 0.95}


def coverage_distance(summary: dict[str, Any], level: str) -> float:
    """Mean over the latents of |coverage - nominal| of the ``level`` ("68" or "95") intervals in
    an :func:`evaluate_summary`."""
    import numpy as np

    cov = summary["coverage_per_latent"]
    return float(np.mean([abs(v[level] - NOMINAL_COVERAGE[level]) for v in cov.values()]))


def choose_on_validation(
    rows: dict[str, dict[str, Any]], allowed: Callable[[dict[str, Any]], bool], key: str
) -> str | None:
    """The label of the row whose ``validation`` summary has the smallest ``key`` among the rows
    that have one and pass ``allowed`` (None where none does): a setting chosen on the
    validation mocks, to be scored on the test mocks."""
    ok = [t for t, r in rows.items() if "validation" in r and allowed(r)]
    return min(ok, key=lambda t: rows[t]["validation"][key], default=None)


def choice_header(a: argparse.Namespace) -> dict[str, Any]:
    """The settings of a benchmark that chooses on the validation mocks and scores on the test
    mocks (``a``: its parsed ``checkpoint``, ``check``, ``test``, ``n`` and ``steps``)."""
    return {
        "checkpoint": a.checkpoint,
        "validation_data": a.check,
        "test_data": a.test,
        "n_galaxies": a.n,
        "refine_steps": a.steps,
    }


def posterior_scores(post: Any, truth: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """Errors of a posterior's means against the truth, per name: median |error| and median
    error, the fractions of truths within 1 and 2 posterior sigma, the median sigma; for
    half-light radii also the median |fractional error|, for log M* the 1.4826 MAD scatter."""
    out: dict[str, Any] = {"chi2_per_pixel_median": float(post.chi2_per_pixel.median())}
    for name in names:
        t = torch.as_tensor(truth[name]).double()
        err = post.params[name].double().cpu() - t
        s = post.std[name].double().cpu()
        row = {
            "median_abs_error": float(err.abs().median()),
            "median_error": float(err.median()),
            "within_1sigma": float(((err.abs() / s) < 1).double().mean()),
            "within_2sigma": float(((err.abs() / s) < 2).double().mean()),
            "median_std": float(s.median()),
        }
        if name.startswith("r_half"):
            row["median_abs_frac_error"] = float((err / t).abs().median())
        if name == "log10_mstar_msun":
            row["scatter_1.4826mad"] = mad(err.numpy())
        out[name] = row
    return out


def score_line(label: str, mode: str, r: dict[str, Any], names: tuple[str, ...]) -> str:
    """One printed line of :func:`posterior_scores`: median |error| (fraction within 1 sigma)."""
    return (
        f"{label:>12} {mode:>18}: chi2 {r['chi2_per_pixel_median']:.2f}  "
        + "  ".join(
            f"{k} {r[k]['median_abs_error']:.3f} ({r[k]['within_1sigma']:.2f})"
            for k in names
            if not k.startswith("r_half")
        )
        + f"  r_half {r['r_half_arcsec_r']['median_abs_frac_error']:.3f}"
        + f" ({r['r_half_arcsec_r']['within_1sigma']:.2f})"
    )
