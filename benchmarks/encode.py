"""Encoding throughput: galaxies per second through the encoder at 64x64 ugriz.

Two numbers:

* ``fast``: encoder + posterior mean, the amortized path a survey pipeline runs: the guide's
  ``encode`` (noise-aware input scaling, CNN, MLP head) -> ``loc``, pushed through the latent
  registry's bijection to physical units, under ``torch.no_grad()``, for batch sizes 256 and
  1024 of stamps already on the device (optionally bf16 autocast on CUDA, ``--amp``);
* ``full``: ``GalaeModel.encode`` on numpy arrays (input checks, posterior moments from
  ``n_mc`` draws, derived observables from ``n_mc_derived=2`` rendered draws, maps and the
  reconstruction at the posterior mean) on a small batch.

The model is ``--checkpoint`` or, by default, a freshly initialised one built by
``galae.checkpoint.build_modules`` with the architecture of the default ``TrainConfig``
(``--arch quickstart`` or ``--arch sdss``: that of ``configs/quickstart.yaml`` or
``configs/sdss.yaml``); throughput does not depend on the weights.  Input stamps are analytic
mocks (``galae.mock.generate_chunk``), tiled to the batch size.  Target (galae issue 4):
50,000 galaxies/s on one H100 at 64x64.

    python benchmarks/encode.py                                  # CPU (this machine)
    python benchmarks/encode.py --device cuda --amp --batch-sizes 1024 4096 16384   # GPU

Writes ``benchmarks/results/encode_<device>.json``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from _common import timeit, write_result

from galae.checkpoint import build_modules
from galae.latent import REGISTRY
from galae.mock import MockConfig, generate_chunk
from galae.model import Batch
from galae.sampling import GalaeModel
from galae.train import TrainConfig

BANDS: tuple[str, ...] = ("u", "g", "r", "i", "z")
PIXEL_SCALE_ARCSEC: float = 0.396
TARGET_GPU_GALAXIES_PER_SECOND: float = 50_000.0

#: Architectures of a fresh model: name -> TrainConfig overrides.
ARCHITECTURES: dict[str, dict[str, Any]] = {
    "default": {},
    "quickstart": {"widths": (16, 32, 64, 96), "hidden": 192, "rank": 4},
    # configs/sdss.yaml, the full-scale GPU model
    "sdss": {"widths": (32, 64, 128, 192), "blocks_per_stage": 2, "hidden": 512, "rank": 6},
}


def make_model(
    checkpoint: str | None, arch: str, shape: tuple[int, int], device: torch.device
) -> GalaeModel:
    """A :class:`GalaeModel` from a checkpoint, or freshly initialised."""
    if checkpoint is not None:
        return GalaeModel.from_checkpoint(checkpoint, device)
    cfg = replace(TrainConfig(), **ARCHITECTURES[arch])
    data_info = {
        "bands": list(BANDS),
        "pixel_scale_arcsec": PIXEL_SCALE_ARCSEC,
        "shape": list(shape),
    }
    model, guide = build_modules(cfg, data_info)
    state = {
        "data_info": data_info,
        "prior_kind": "broad",
        "loss_terms": "untrained",
        "config": {"widths": list(cfg.widths), "hidden": cfg.hidden, "rank": cfg.rank},
    }
    return GalaeModel(model, guide, state, device)


def mock_inputs(n: int, shape: tuple[int, int], seed: int) -> dict[str, np.ndarray]:
    """n analytic mock stamps (numpy): images, sigma, psf_fwhm_arcsec, redshift."""
    cfg = MockConfig(generator="analytic", n=n, seed=seed, shape=shape, chunk=n, out="unused.h5")
    return generate_chunk(cfg, 0, n)


def tile_batch(data: dict[str, np.ndarray], batch: int, device: torch.device) -> Batch:
    """A :class:`Batch` of ``batch`` stamps on ``device`` (the mock stamps repeated)."""
    idx = np.arange(batch) % data["images"].shape[0]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(a[idx]), dtype=torch.float32, device=device)

    images = t(data["images"])
    return Batch(
        images=images,
        sigma=t(data["sigma"]),
        mask=torch.zeros_like(images, dtype=torch.bool),
        psf_fwhm_arcsec=t(data["psf_fwhm_arcsec"]),
        redshift=t(data["redshift"]),
        pixel_scale_arcsec=PIXEL_SCALE_ARCSEC,
        bands=BANDS,
        index=torch.arange(batch, device=device),
    )


def fast_encode_fn(model: GalaeModel, batch: Batch, amp: bool) -> Callable[[], Any]:
    """Encoder -> loc -> physical posterior mean, no gradients."""
    use_amp = amp and batch.images.device.type == "cuda"
    # as galae.train does: bf16 autocast of the CNN and head, q's parameters in float32
    model.guide.encoder.autocast_dtype = torch.bfloat16 if use_amp else None

    @torch.no_grad()
    def run() -> dict[str, torch.Tensor]:
        out = model.guide.encode(batch)
        return REGISTRY.from_unconstrained(out.loc)

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None, help="checkpoint (default: a fresh model)")
    ap.add_argument(
        "--arch",
        default="default",
        choices=sorted(ARCHITECTURES),
        help="architecture of the fresh model",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", action="store_true", help="bf16 autocast of the encoder (CUDA)")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--shape", type=int, nargs=2, default=[64, 64], metavar=("H", "W"))
    ap.add_argument("--n-mock", type=int, default=64, help="distinct mock stamps (tiled)")
    ap.add_argument("--full-n", type=int, default=32, help="batch of the full GalaeModel.encode")
    ap.add_argument("--n-mc", type=int, default=256, help="n_mc of the full encode")
    ap.add_argument(
        "--refine-steps",
        type=int,
        default=60,
        help="also time encode(refine_steps=N) (semi-amortized; 0 = skip)",
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-name", default=None, help="results/NAME.json (default encode_DEVICE)")
    a = ap.parse_args(argv)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    shape = (a.shape[0], a.shape[1])
    sync = device.type == "cuda"
    model = make_model(a.checkpoint, a.arch, shape, device)
    if model.shape != shape:
        print(f"note: the model was trained on {model.shape} stamps; timing {shape}")
    n_weights = sum(p.numel() for p in model.guide.encoder.parameters())
    data = mock_inputs(max(a.n_mock, 1), shape, a.seed)

    result: dict[str, Any] = {
        "device": str(device),
        "shape": list(shape),
        "bands": len(BANDS),
        "checkpoint": a.checkpoint,
        "arch": a.arch if a.checkpoint is None else "checkpoint",
        "encoder_config": model.guide.encoder.config.to_dict(),
        "encoder_parameters": n_weights,
        "amp_bf16": bool(a.amp and device.type == "cuda"),
        "fast": {},
        "target_gpu_galaxies_per_second": TARGET_GPU_GALAXIES_PER_SECOND,
    }
    for bs in a.batch_sizes:
        batch = tile_batch(data, bs, device)
        t = timeit(fast_encode_fn(model, batch, a.amp), repeat=a.repeat, warmup=1, sync=sync)
        result["fast"][str(bs)] = {"seconds_per_batch": t, "galaxies_per_second": bs / t}
        print(f"fast encode, batch {bs}: {bs / t:.1f} galaxies/s", flush=True)
        del batch
    best = max(v["galaxies_per_second"] for v in result["fast"].values())
    result["fast_best_galaxies_per_second"] = best
    if device.type == "cuda":
        result["meets_gpu_target"] = best >= TARGET_GPU_GALAXIES_PER_SECOND

    # full GalaeModel.encode (with derived observables) on a small batch of numpy arrays
    idx = np.arange(a.full_n) % data["images"].shape[0]
    args = (data["images"][idx], data["sigma"][idx])
    kwargs = {
        "psf_fwhm_arcsec": data["psf_fwhm_arcsec"][idx],
        "redshift": data["redshift"][idx],
        "pixel_scale_arcsec": PIXEL_SCALE_ARCSEC,
        "n_mc": a.n_mc,
        "n_mc_derived": 2,
    }
    t_full = timeit(
        lambda: model.encode(*args, **kwargs), repeat=max(1, a.repeat - 1), warmup=1, sync=sync
    )
    result["full"] = {
        "n": a.full_n,
        "n_mc": a.n_mc,
        "n_mc_derived": 2,
        "seconds": t_full,
        "galaxies_per_second": a.full_n / t_full,
    }
    print(f"full encode, n={a.full_n}: {a.full_n / t_full:.1f} galaxies/s", flush=True)
    if a.refine_steps > 0:
        # the semi-amortized posterior (galae.refine): Adam steps, then the Laplace widths
        t_ref = timeit(
            lambda: model.encode(*args, refine_steps=a.refine_steps, **kwargs),
            repeat=1,
            warmup=0,
            sync=sync,
        )
        result["refined"] = {
            "n": a.full_n,
            "refine_steps": a.refine_steps,
            "seconds": t_ref,
            "galaxies_per_second": a.full_n / t_ref,
        }
        print(
            f"refined encode ({a.refine_steps} steps + Laplace), n={a.full_n}: "
            f"{a.full_n / t_ref:.2f} galaxies/s",
            flush=True,
        )
    write_result(a.out_name or f"encode_{device.type}", result)
    return result


if __name__ == "__main__":
    main()
