"""Quality and speed of generation: the learned prior's galaxies against held-out mocks.

    python benchmarks/sample_quality.py --checkpoint runs/quickstart/model.pt \\
        --data data/analytic_test.h5 [--n 1000]

1. n held-out mock galaxies are read from ``--data``; the model draws n galaxies from its learned
   population prior with ``GalaeModel.sample(n, seed, redshift=..., psf_fwhm_arcsec=...,
   sky_sigma_nmgy=...)`` under the SAME observing conditions, galaxy by galaxy (redshift and
   PSF FWHM from the file; the sky noise per band is the smallest per-pixel sigma of the stamp,
   the sky floor of sigma^2 = sky^2 + model / gain), so that only the population differs.
2. Distributions of derived observables, generated (the renderer's ``derived`` observables of the
   drawn latents) against the mocks' truth: colours u-g, g-r, r-i, i-z (from ``mag_<band>``),
   ``r_half_arcsec_r``, ``sersic_n_bulge``, ``bulge_to_total_r``, ``log10_mstar_msun``,
   ``log10_sfr_msun_per_yr``: the 1-D Wasserstein distance W1 (``scipy.stats``) per quantity,
   and W1 divided by the mocks' standard deviation.  A histogram figure goes next to the JSON.
3. Classifier two-sample test (C2ST; Lopez-Paz & Oquab 2017, ICLR): a small CNN on asinh-scaled,
   noise-normalised images learns to tell generated from mock stamps on a train split (pairs
   that share conditions stay in the same split); its ROC AUC on the held-out split is reported
   (0.5 = indistinguishable; target <= 0.6), with the AUC's standard deviation under the null
   hypothesis (Hanley & McNeil 1982, Radiology 143, 29; the Mann-Whitney variance without ties).
   The AUC is the Mann-Whitney rank statistic (no scikit-learn).
4. Speed: wall time of ``sample(n=100)`` (target < 2 s on a CPU) and galaxies/s of
   ``sample(n=1000)``, with SDSS-like conditions drawn by the model.

Writes ``benchmarks/results/sample_quality.json`` and ``benchmarks/results/sample_quality.png``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS, timeit, write_result
from scipy.stats import rankdata, wasserstein_distance
from torch import nn

from galae.data.hdf5 import inspect_h5, read_h5
from galae.sampling import GalaeModel, load

TARGET_AUC: float = 0.6
TARGET_SAMPLE_100_SECONDS: float = 2.0
ASINH_SOFTENING: float = 3.0  # the encoder's input scaling (galae.encoder.ASINH_SOFTENING)

Observable = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def _column(name: str) -> Observable:
    return lambda p: np.asarray(p[name], dtype=np.float64)


def _colour(blue: str, red: str) -> Observable:
    return lambda p: (
        np.asarray(p[f"mag_{blue}"], np.float64) - np.asarray(p[f"mag_{red}"], np.float64)
    )


#: observable -> (parameter names it needs, how to compute it from ``{name: (n,)}``, unit).
OBSERVABLES: dict[str, tuple[tuple[str, ...], Observable, str]] = {
    "u-g": (("mag_u", "mag_g"), _colour("u", "g"), "mag"),
    "g-r": (("mag_g", "mag_r"), _colour("g", "r"), "mag"),
    "r-i": (("mag_r", "mag_i"), _colour("r", "i"), "mag"),
    "i-z": (("mag_i", "mag_z"), _colour("i", "z"), "mag"),
    "r_half_arcsec_r": (("r_half_arcsec_r",), _column("r_half_arcsec_r"), "arcsec"),
    "sersic_n_bulge": (("sersic_n_bulge",), _column("sersic_n_bulge"), ""),
    "bulge_to_total_r": (("bulge_to_total_r",), _column("bulge_to_total_r"), ""),
    "log10_mstar_msun": (("log10_mstar_msun",), _column("log10_mstar_msun"), "dex(Msun)"),
    "log10_sfr_msun_per_yr": (
        ("log10_sfr_msun_per_yr",),
        _column("log10_sfr_msun_per_yr"),
        "dex(Msun/yr)",
    ),
}


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
def read_heldout(path: str, n: int, seed: int, bands: tuple[str, ...]) -> dict[str, Any]:
    """n galaxies of the data set (a random subset when it holds more), as numpy arrays."""
    info = inspect_h5(path, expected_bands=bands)
    if not info.has_psf_fwhm:
        raise ValueError(f"{path}: needs psf_fwhm_arcsec (Gaussian PSF) to reuse its conditions")
    n_use = min(n, info.n_galaxies)
    rows = np.sort(np.random.default_rng(seed).choice(info.n_galaxies, n_use, replace=False))
    data = read_h5(path, rows, with_maps=False)
    if not np.isfinite(data["redshift"]).all():
        raise ValueError(f"{path}: every held-out galaxy needs a finite redshift")
    return data


def sky_sigma_from_stamps(sigma: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, C) sky noise per band: the smallest unmasked per-pixel sigma of each stamp.

    sigma^2 = sky^2 + max(model, 0) / gain (galae.data.conditions.add_noise), so the faintest
    pixel's sigma is the sky floor (to the source's contribution there).
    """
    s = np.where(mask, np.inf, sigma).reshape(*sigma.shape[:2], -1).min(-1)
    fallback = np.nanmedian(np.where(np.isfinite(s), s, np.nan))
    return np.where(np.isfinite(s), s, fallback).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# 1-D distributions
# ----------------------------------------------------------------------------------------------
def _summary(x: np.ndarray) -> dict[str, float]:
    p16, p50, p84 = np.percentile(x, [16, 50, 84])
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "p16": float(p16),
        "median": float(p50),
        "p84": float(p84),
    }


def compare_observables(
    generated: Mapping[str, np.ndarray], mock: Mapping[str, np.ndarray]
) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """W1 distance per observable (and normalised by the mock std); also the value arrays."""
    report: dict[str, Any] = {}
    values: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, (needs, fn, unit) in OBSERVABLES.items():
        missing = [k for k in needs if k not in generated or k not in mock]
        if missing:
            report[name] = {"missing": missing}
            continue
        g, m = fn(generated), fn(mock)
        g_ok, m_ok = g[np.isfinite(g)], m[np.isfinite(m)]
        if g_ok.size == 0 or m_ok.size == 0:
            report[name] = {"missing": ["no finite values"]}
            continue
        w1 = float(wasserstein_distance(g_ok, m_ok))
        std = float(m_ok.std())
        report[name] = {
            "unit": unit,
            "wasserstein": w1,
            "wasserstein_over_mock_std": w1 / std if std > 0 else float("nan"),
            "n_generated": int(g_ok.size),
            "n_mock": int(m_ok.size),
            "non_finite_generated": int(g.size - g_ok.size),
            "non_finite_mock": int(m.size - m_ok.size),
            "generated": _summary(g_ok),
            "mock": _summary(m_ok),
        }
        values[name] = (g_ok, m_ok)
    return report, values


def histogram_figure(
    values: Mapping[str, tuple[np.ndarray, np.ndarray]], report: Mapping[str, Any], out: Path
) -> Path:
    """One panel per observable: mock (filled) and generated (line) histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(values)
    ncol = min(5, max(1, len(names)))
    nrow = max(1, math.ceil(len(names) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.0 * ncol, 2.6 * nrow), squeeze=False)
    for ax in axes.ravel()[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.ravel(), names, strict=False):
        g, m = values[name]
        both = np.concatenate([g, m])
        lo, hi = np.percentile(both, [0.5, 99.5])
        if not hi > lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, 31)
        ax.hist(np.clip(m, lo, hi), bins=edges, density=True, color="0.75", label="mock")
        ax.hist(
            np.clip(g, lo, hi),
            bins=edges,
            density=True,
            histtype="step",
            color="C3",
            lw=1.3,
            label="generated",
        )
        unit = report[name]["unit"]
        ax.set_xlabel(f"{name} [{unit}]" if unit else name, fontsize=8)
        ax.set_title(f"W1/std = {report[name]['wasserstein_over_mock_std']:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes.ravel()[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# ----------------------------------------------------------------------------------------------
# classifier two-sample test
# ----------------------------------------------------------------------------------------------
def scale_images(images: np.ndarray, sigma: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """asinh(image / s) / 3 with s the stamp's median sigma per band; masked pixels 0."""
    s = np.median(np.where(mask, np.nan, sigma).reshape(*sigma.shape[:2], -1), axis=-1)
    s = np.where(np.isfinite(s) & (s > 0), s, 1.0)[..., None, None]
    x = np.arcsinh(images / s) / ASINH_SOFTENING
    return np.where(mask, 0.0, x).astype(np.float32)


def auc_rank(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic: P(score of a positive > score of a negative),
    ties counting 1/2 (average ranks)."""
    labels = np.asarray(labels).astype(bool)
    n1, n0 = int(labels.sum()), int((~labels).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("AUC needs both classes")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def auc_null_std(n1: int, n0: int) -> float:
    """Standard deviation of the AUC of an uninformative score (Mann-Whitney, no ties)."""
    return math.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1))


def small_cnn(n_bands: int, width: int) -> nn.Module:
    """Three conv stages and a global average pool -> one logit."""
    return nn.Sequential(
        nn.Conv2d(n_bands, width, 3, padding=1),
        nn.SiLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.SiLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(2 * width, 2 * width, 3, padding=1),
        nn.SiLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 1),
    )


def _augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random flips and quarter turns (a galaxy population has no preferred orientation)."""
    k = int(torch.randint(4, (1,), generator=g))
    x = torch.rot90(x, k, dims=(-2, -1))
    if bool(torch.randint(2, (1,), generator=g)):
        x = torch.flip(x, dims=(-1,))
    return x


def c2st(
    generated: np.ndarray,
    mock: np.ndarray,
    seed: int,
    epochs: int,
    width: int,
    test_fraction: float,
    batch_size: int = 64,
    lr: float = 2e-3,
) -> dict[str, Any]:
    """Train the CNN on a split of pairs (generated i, mock i); ROC AUC on the held-out pairs."""
    n = generated.shape[0]
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    if n - n_test < 1:
        raise ValueError(f"C2ST needs at least 2 pairs, got {n}")
    test, train = perm[:n_test], perm[n_test:]

    def stack(ix: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = np.concatenate([generated[ix], mock[ix]])
        y = np.concatenate([np.ones(ix.size), np.zeros(ix.size)]).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y)

    x_tr, y_tr = stack(train)
    x_te, y_te = stack(test)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    net = small_cnn(generated.shape[1], width)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss()
    t0 = time.perf_counter()
    losses = []
    for _ in range(epochs):
        net.train()
        order = torch.randperm(x_tr.shape[0], generator=g)
        total = 0.0
        for start in range(0, order.numel(), batch_size):
            ix = order[start : start + batch_size]
            logits = net(_augment(x_tr[ix], g)).squeeze(-1)
            loss = loss_fn(logits, y_tr[ix])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss) * ix.numel()
        losses.append(total / order.numel())
    net.eval()
    with torch.no_grad():
        s_tr = torch.cat([net(x_tr[i : i + 256]).squeeze(-1) for i in range(0, len(x_tr), 256)])
        s_te = torch.cat([net(x_te[i : i + 256]).squeeze(-1) for i in range(0, len(x_te), 256)])
    auc_te = auc_rank(s_te.numpy(), y_te.numpy())
    return {
        "classifier": f"CNN conv{width}-conv{2 * width}-conv{2 * width}-GAP-linear, flips/rot90",
        "epochs": epochs,
        "train_pairs": int(train.size),
        "test_pairs": int(test.size),
        "train_loss_per_epoch": losses,
        "train_auc": auc_rank(s_tr.numpy(), y_tr.numpy()),
        "test_auc": auc_te,
        "test_accuracy": float(((s_te > 0).float() == y_te).float().mean()),
        "null_auc_std": auc_null_std(int(test.size), int(test.size)),
        "target_auc_max": TARGET_AUC,
        "meets_target": auc_te <= TARGET_AUC,
        "seconds": time.perf_counter() - t0,
    }


# ----------------------------------------------------------------------------------------------
# speed
# ----------------------------------------------------------------------------------------------
def sample_speed(model: GalaeModel, n_small: int, n_big: int, repeat: int) -> dict[str, Any]:
    """Wall time of sample(n_small) (best of ``repeat``) and galaxies/s of sample(n_big)."""
    sync = model.device.type == "cuda"
    t_small = timeit(lambda: model.sample(n=n_small, seed=0), repeat=repeat, warmup=1, sync=sync)
    t_big = timeit(lambda: model.sample(n=n_big, seed=1), repeat=1, warmup=0, sync=sync)
    return {
        f"sample_{n_small}_seconds": t_small,
        "target_sample_100_seconds": TARGET_SAMPLE_100_SECONDS,
        "meets_target": (t_small < TARGET_SAMPLE_100_SECONDS) if n_small == 100 else None,
        f"sample_{n_big}_seconds": t_big,
        f"sample_{n_big}_galaxies_per_second": n_big / t_big,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint (default: the packaged model)")
    ap.add_argument("--data", required=True, help="held-out mock HDF5 file with truth params")
    ap.add_argument("--n", type=int, default=1000, help="held-out galaxies (and generated ones)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--c2st-epochs", type=int, default=8)
    ap.add_argument("--c2st-width", type=int, default=16)
    ap.add_argument("--c2st-test-fraction", type=float, default=0.5)
    ap.add_argument("--speed-n", type=int, default=100)
    ap.add_argument("--speed-big", type=int, default=1000)
    ap.add_argument("--speed-repeat", type=int, default=3)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--name", default="sample_quality", help="results/<name>.json and .png")
    a = ap.parse_args(argv)

    model = load(a.checkpoint, a.device)
    data = read_heldout(a.data, a.n, a.seed, model.bands)
    n = data["images"].shape[0]
    shape = tuple(int(v) for v in data["images"].shape[-2:])
    if abs(data["pixel_scale_arcsec"] / model.pixel_scale_arcsec - 1.0) > 0.01:
        print(
            f"warning: data pixel scale {data['pixel_scale_arcsec']} differs from the "
            f"model's {model.pixel_scale_arcsec}; samples use the model's"
        )
    sky = sky_sigma_from_stamps(data["sigma"], data["mask"])
    t0 = time.perf_counter()
    samples = model.sample(
        n,
        seed=a.seed,
        redshift=data["redshift"],
        psf_fwhm_arcsec=data["psf_fwhm_arcsec"],
        sky_sigma_nmgy=sky,
        shape=shape,
    )
    t_sample = time.perf_counter() - t0

    gen_params = {k: v.detach().cpu().numpy() for k, v in samples.params.items()}
    report, values = compare_observables(gen_params, data["truth"]["params"])
    fig = histogram_figure(values, report, RESULTS / f"{a.name}.png")

    gen_x = scale_images(samples.images.cpu().numpy(), samples.sigma.cpu().numpy(), data["mask"])
    mock_x = scale_images(data["images"], data["sigma"], data["mask"])
    c2 = c2st(gen_x, mock_x, a.seed, a.c2st_epochs, a.c2st_width, a.c2st_test_fraction)
    print(f"C2ST test AUC {c2['test_auc']:.3f} (null std {c2['null_auc_std']:.3f})", flush=True)

    result: dict[str, Any] = {
        "checkpoint": a.checkpoint or "packaged default",
        "model": repr(model),
        "trained_with": model.state.get("loss_terms"),
        "data": str(a.data),
        "data_generator": data["attrs"].get("generator"),
        "n": n,
        "shape": list(shape),
        "conditions": "redshift and psf_fwhm_arcsec of the held-out galaxies; sky sigma = "
        "min unmasked per-pixel sigma per band; gain drawn by the model",
        "sample_with_conditions_seconds": t_sample,
        "sample_with_conditions_galaxies_per_second": n / t_sample,
        "observables": report,
        "mean_wasserstein_over_mock_std": float(
            np.mean([r["wasserstein_over_mock_std"] for r in report.values() if "wasserstein" in r])
        )
        if values
        else float("nan"),
        "c2st": c2,
        "figure": str(fig.relative_to(RESULTS.parent)),
    }
    if not a.no_speed:
        result["speed"] = sample_speed(model, a.speed_n, a.speed_big, a.speed_repeat)
    write_result(a.name, result)
    return result


if __name__ == "__main__":
    main()
