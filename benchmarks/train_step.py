"""Training throughput: seconds per step of ``galae.train`` against batch size, and what bounds it.

    python benchmarks/train_step.py --data data/a4096.h5                       # CPU, sdss config
    python benchmarks/train_step.py --data data/a4096.h5 --device cuda \
        --batch-sizes 256 1024 2048 4096 --profile                              # a GPU

Each batch size runs the training loop's own step (:func:`galae.train.loss_terms`, the per-term
clipped backward and the AdamW step) on a batch from ``--data``, with the config's encoder
architecture, render preset, simulation settings and bf16 autocast; ``--wake`` adds the ELBO
term that ``configs/sdss.yaml`` switches on at step 20000.  Reported per batch size: median
seconds per step, galaxies per second, peak GPU memory, and the hours that the config's
``max_steps x batch_size`` galaxies would take at that batch size.  ``--profile`` profiles one
step at the smallest batch size: aten operator calls per step and, on CUDA, kernel launches and
the fraction of the step's wall time that the GPU spends in kernels (a small fraction means the
step is bound by the host's dispatch of many small kernels, and a larger batch costs about the
same time per step).

Results: ``results/train_step_<device>.json`` (``--out-name`` to change).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from _common import write_result
from torch.profiler import ProfilerActivity, profile

from galae.checkpoint import build_modules
from galae.config import load_config
from galae.data.loader import make_loaders
from galae.train import (
    TrainConfig,
    _balanced_backward,
    _initial_sleep_prior,
    _trainable_parameters,
    loss_terms,
    resolve_device,
)

#: the repository root (the default config is read from it)
ROOT = Path(__file__).resolve().parent.parent


def _setup(cfg: TrainConfig, device: torch.device) -> dict[str, Any]:
    train_loader, _, data_info = make_loaders(cfg)
    batch = next(iter(train_loader)).to(device)
    if batch.size < cfg.batch_size:
        raise SystemExit(
            f"--data holds too few galaxies for batch size {cfg.batch_size} (got a batch of "
            f"{batch.size}); make a larger set with python -m galae.mock"
        )
    model, guide = build_modules(cfg, data_info)
    model.to(device)
    guide.to(device)
    use_amp = cfg.amp and device.type == "cuda"
    guide.encoder.autocast_dtype = torch.bfloat16 if use_amp else None
    params = _trainable_parameters(guide, cfg.trainable)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    prior = _initial_sleep_prior(cfg, device)
    return {
        "model": model,
        "guide": guide,
        "batch": batch,
        "params": params,
        "opt": opt,
        "gen": gen,
        "prior": prior,
    }


def _step(cfg: TrainConfig, s: dict[str, Any], step: int) -> None:
    """One training step as galae.train takes it (the loss, the clipped backward, AdamW)."""
    terms, weights = loss_terms(cfg, s["model"], s["guide"], s["batch"], step, s["gen"], s["prior"])
    _, skipped = _balanced_backward(terms, weights, s["params"], cfg.grad_clip)
    if len(skipped) < len(terms):
        s["opt"].step()
    s["opt"].zero_grad(set_to_none=True)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batch_size(
    cfg: TrainConfig, device: torch.device, steps: int, warmup: int, step_at: int
) -> dict[str, Any]:
    """Median seconds per step at ``cfg.batch_size`` (after ``warmup`` steps)."""
    s = _setup(cfg, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        _step(cfg, s, step_at)
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        _step(cfg, s, step_at)
        _sync(device)
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    row: dict[str, Any] = {
        "seconds_per_step": sec,
        "steps_per_second": 1.0 / sec,
        "galaxies_per_second": cfg.batch_size / sec,
        "steps_timed": steps,
    }
    if device.type == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row


def profile_step(cfg: TrainConfig, device: torch.device, step_at: int) -> dict[str, Any]:
    """Operator calls, kernel launches and GPU-busy fraction of one step."""
    s = _setup(cfg, device)
    for _ in range(2):
        _step(cfg, s, step_at)
    _sync(device)
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        _step(cfg, s, step_at)
        _sync(device)
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    out: dict[str, Any] = {
        "batch_size": cfg.batch_size,
        "wall_seconds_profiled": wall,
        "aten_calls": int(sum(e.count for e in events if e.key.startswith("aten::"))),
        "top_self_cpu_ms": {
            e.key: e.self_cpu_time_total / 1e3
            for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
        },
    }
    if device.type == "cuda":
        launches = sum(e.count for e in events if "LaunchKernel" in e.key)
        kernel_us = sum(
            getattr(e, "self_device_time_total", 0.0)
            for e in events
            if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA
        )
        out["kernel_launches"] = int(launches)
        out["kernel_seconds"] = kernel_us / 1e6
        out["gpu_busy_fraction"] = kernel_us / 1e6 / wall
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "sdss.yaml"))
    ap.add_argument("--data", required=True, help="HDF5 stamps (at least the largest batch)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per batch size")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--wake", action="store_true", help="add the ELBO term (after wake_start)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out-name", default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    base = load_config(
        TrainConfig,
        args.config,
        # one batch is read per batch size: no cache of the whole set
        {
            "data": args.data,
            "num_workers": 0,
            "val_fraction": 0.0,
            "device": str(device),
            "data_cache": "none",
        },
    )
    # a step after the ELBO's ramp when --wake, else one in the simulation-only phase
    step_at = base.wake_start_step + base.wake_ramp_steps if args.wake else 0
    if args.wake and base.wake_weight <= 0:
        raise SystemExit(f"{args.config} has wake_weight <= 0: --wake would time nothing new")
    rows: dict[str, Any] = {}
    galaxies_total = base.max_steps * base.batch_size
    for bs in args.batch_sizes:
        cfg = replace(base, batch_size=bs)
        row = time_batch_size(cfg, device, args.steps, args.warmup, step_at)
        row["hours_for_config_galaxies"] = galaxies_total / row["galaxies_per_second"] / 3600
        rows[str(bs)] = row
        print(
            f"batch {bs}: {row['seconds_per_step'] * 1e3:.1f} ms/step, "
            f"{row['galaxies_per_second']:.0f} galaxies/s"
        )
    payload: dict[str, Any] = {
        "config": args.config,
        "device": str(device),
        "terms": "sleep+wake" if args.wake else "sleep",
        "render_preset": base.render_preset,
        "amp_bf16": bool(base.amp and device.type == "cuda"),
        "config_batch_size": base.batch_size,
        "config_max_steps": base.max_steps,
        "config_galaxies": galaxies_total,
        "batch_sizes": rows,
    }
    if args.profile:
        payload["profile"] = profile_step(
            replace(base, batch_size=min(args.batch_sizes)), device, step_at
        )
    write_result(args.out_name or f"train_step_{device.type}", payload)


if __name__ == "__main__":
    main()
