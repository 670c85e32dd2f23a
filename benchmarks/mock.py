"""Mock-generation throughput: galaxies per second of each generator, 64x64 ugriz stamps.

For each generator of :data:`galae.mock.GENERATORS` (``analytic``, ``particles``):

* ``chunk``: one chunk of n galaxies through ``galae.mock.generate_chunk(MockConfig(...), 0, n)``
  (population draw, rendering, noise, derived observables / truth maps; numpy out);
* ``end_to_end``: ``galae.mock.run_mock`` of the same n galaxies into a temporary HDF5 file
  (chunked generation + compressed HDF5 writing), and the HDF5 writing alone
  (``H5Writer.append`` of an already generated chunk).

``generate_chunk`` and ``run_mock`` compute on the CPU (``MockConfig`` has no device key).  With
``--device cuda`` the generators' own device paths are timed as well: the particle generator
(``generate_particle_mocks(..., device=...)``) and, for ``analytic``, the render + noise +
derived-observable steps of ``generate_chunk`` on the device; the CPU numbers are still reported.

    python benchmarks/mock.py                                   # CPU (this machine)
    python benchmarks/mock.py --device cuda                     # GPU: one line on a GPU machine
    python benchmarks/mock.py --n-analytic 16 --n-particles 4 --repeat 1   # quick check

Writes ``benchmarks/results/mock_<device>.json``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import timeit, write_result

from galae.data.hdf5 import H5Writer
from galae.mock import GENERATORS, MockConfig, generate_chunk, run_mock


def _timed_once(fn: Callable[[], Any], sync: bool) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    if sync:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def _analytic_on_device(cfg: MockConfig, n: int, device: torch.device) -> Callable[[], Any]:
    """The rendering steps of the analytic generator on ``device`` (population drawn on CPU)."""
    from galae.data.conditions import add_noise, sample_sdss_conditions
    from galae.physics.population import sample_population
    from galae.render.observation import Observation
    from galae.render.renderer import GalaxyRenderer

    tg = torch.Generator().manual_seed(cfg.seed)
    params = sample_population(n, tg, log10_mstar_range=(cfg.log10_mstar_min, cfg.log10_mstar_max))
    params = {k: v.to(device) for k, v in params.items()}
    cond = sample_sdss_conditions(
        n, np.random.default_rng(cfg.seed), cfg.bands, cfg.conditions_config()
    )
    obs = Observation.create(
        cond.redshift,
        cond.psf_fwhm_arcsec,
        pixel_scale_arcsec=cfg.pixel_scale_arcsec,
        shape=tuple(cfg.shape),
        bands=cfg.bands,
        device=device,
    )
    renderer = GalaxyRenderer().to(device)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    sky = torch.as_tensor(cond.sky_sigma_nmgy, dtype=torch.float32, device=device)
    gain = torch.as_tensor(cond.gain_e_per_nmgy, dtype=torch.float32, device=device)

    @torch.no_grad()
    def run() -> Any:
        ren = renderer(params, obs, validate=False)
        noisy, _ = add_noise(ren.images, sky_sigma_nmgy=sky, gain_e_per_nmgy=gain, generator=gen)
        return noisy, renderer.derived(params, obs), ren.maps.named()

    return run


def _particles_on_device(cfg: MockConfig, n: int, device: torch.device) -> Callable[[], Any]:
    """The particle generator with its ``device`` argument."""
    from galae.data.conditions import sample_sdss_conditions
    from galae.data.particles import ParticleMockConfig, generate_particle_mocks
    from galae.physics.sps import SPSTable

    pcfg = ParticleMockConfig.from_dict(
        {
            **(cfg.particles or {}),
            "shape": list(cfg.shape),
            "pixel_scale_arcsec": cfg.pixel_scale_arcsec,
            "bands": list(cfg.bands),
        }
    )
    sps = SPSTable.load("sdss")
    cond = sample_sdss_conditions(
        n, np.random.default_rng(cfg.seed), cfg.bands, cfg.conditions_config()
    )
    return lambda: generate_particle_mocks(n, cfg.seed, pcfg, sps, conditions=cond, device=device)


#: generator name -> builder of a device-side run (the device paths that exist).
DEVICE_RUNS: dict[str, Callable[[MockConfig, int, torch.device], Callable[[], Any]]] = {
    "analytic": _analytic_on_device,
    "particles": _particles_on_device,
}


def bench_generator(
    cfg: MockConfig, n: int, repeat: int, device: torch.device, e2e: bool
) -> dict[str, Any]:
    """Throughput numbers of one generator (see the module docstring)."""
    res: dict[str, Any] = {
        "n": n,
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "overwrite")},
    }
    # warm-up on a small chunk (table loading, renderer construction, allocator)
    generate_chunk(cfg, 1, min(n, 4))
    last: dict[str, Any] = {}

    def gen() -> None:
        last["chunk"] = generate_chunk(cfg, 0, n)

    t_chunk = timeit(gen, repeat=repeat, warmup=0)
    chunk = last["chunk"]
    res["chunk_seconds"] = t_chunk
    res["chunk_galaxies_per_second"] = n / t_chunk
    res["chunk_device"] = "cpu"
    truth = chunk.get("truth", {})
    res["truth_params"] = len(truth.get("params", {}))
    res["truth_maps"] = len(truth.get("maps", {}))

    with tempfile.TemporaryDirectory() as tmp:
        # HDF5 writing alone: append the generated chunk to a fresh file
        def write() -> None:
            with H5Writer(
                Path(tmp) / "w.h5",
                bands=cfg.bands,
                pixel_scale_arcsec=cfg.pixel_scale_arcsec,
                capacity=n,
                overwrite=True,
            ) as w:
                w.append(chunk)

        t_write = timeit(write, repeat=repeat, warmup=1)
        res["hdf5_write_seconds"] = t_write
        res["hdf5_write_galaxies_per_second"] = n / t_write
        res["hdf5_bytes_per_galaxy"] = (Path(tmp) / "w.h5").stat().st_size / n
        if e2e:
            out = Path(tmp) / "e2e.h5"
            run_cfg = replace(cfg, n=n, out=str(out), overwrite=True)
            t_e2e, _ = _timed_once(lambda: run_mock(run_cfg, progress=False), sync=False)
            res["end_to_end_seconds"] = t_e2e
            res["end_to_end_galaxies_per_second"] = n / t_e2e
            res["end_to_end_chunk"] = run_cfg.chunk
            res["end_to_end_workers"] = run_cfg.workers

    if device.type != "cpu":
        run = DEVICE_RUNS[cfg.generator](cfg, n, device)
        t_dev = timeit(run, repeat=repeat, warmup=1, sync=device.type == "cuda")
        res["device_path"] = str(device)
        res["device_seconds"] = t_dev
        res["device_galaxies_per_second"] = n / t_dev
    return res


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--generators", nargs="+", default=sorted(GENERATORS), choices=sorted(GENERATORS)
    )
    ap.add_argument("--n-analytic", type=int, default=256, help="galaxies per analytic chunk")
    ap.add_argument("--n-particles", type=int, default=64, help="galaxies per particle chunk")
    ap.add_argument("--shape", type=int, nargs=2, default=[64, 64], metavar=("H", "W"))
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:k] (device paths, see above)")
    ap.add_argument("--repeat", type=int, default=2, help="timed repeats (best is kept)")
    ap.add_argument("--workers", type=int, default=1, help="run_mock worker processes")
    ap.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="run_mock chunk size (default: the n of the generator, one chunk)",
    )
    ap.add_argument(
        "--n-particles-per-galaxy",
        type=int,
        default=None,
        help="override ParticleMockConfig.n_particles (default 30000)",
    )
    ap.add_argument("--no-e2e", action="store_true", help="skip the run_mock timing")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    sizes = {"analytic": a.n_analytic, "particles": a.n_particles}
    result: dict[str, Any] = {
        "device": str(device),
        "shape": list(a.shape),
        "bands": 5,
        "note": "generate_chunk and run_mock run on the CPU (MockConfig has no device key); "
        "device_* numbers time the generators' device paths directly",
        "generators": {},
    }
    for name in a.generators:
        n = sizes[name]
        particles = None
        if name == "particles" and a.n_particles_per_galaxy is not None:
            particles = {"n_particles": a.n_particles_per_galaxy}
        cfg = MockConfig(
            generator=name,
            n=n,
            shape=tuple(a.shape),
            chunk=a.chunk or n,
            workers=a.workers,
            particles=particles,
            out="unused.h5",
        )
        print(f"benchmarking {name} (n={n}) ...", flush=True)
        result["generators"][name] = bench_generator(cfg, n, a.repeat, device, not a.no_e2e)
    write_result(f"mock_{device.type}", result)
    return result


if __name__ == "__main__":
    main()
