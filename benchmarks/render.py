"""Renderer throughput: galaxies per second, bulge+disk, 5 bands, 64x64, PSF-convolved.

galae renders a batch of galaxies from the mock population; GalSim draws the same galaxies
(a Sersic bulge and two exponential disks per band with the band fluxes galae computed, the same
geometry, a Gaussian PSF of the same per-band FWHM) in the same run on the same machine, in one
process and in two (this machine's two cores), and the ratio is taken against the two-process
throughput.  Accuracy: the same galaxies without dust and population gradients (so that each
component has one spectrum and GalSim can draw exactly what galae renders), galae float64
against GalSim, max |difference| over the peak pixel.

    python benchmarks/render.py --compile --scan 512 1024   # CPU (this machine)

``--compile`` adds torch.compile; ``--scan`` times images alone at more batch sizes (compiled too
with ``--compile``): on this 2-core CPU the fixed cost per call (graph breaks at input checks,
Python) is about a quarter of a batch of 256, so larger batches run faster.

Every render preset of galae.settings.RENDER_PRESETS is measured: "accurate" (the default: pixel
totals through the PSF with the intra-pixel moments of the central pixels, a border of one PSF
FWHM), "fast" (the same with one node per pixel away from the centre and half the border),
"reference" (the moments of every pixel, a border of the PSF kernel's radius) and "totals"
(pixel totals, no border); each also through ``GalaxyRenderer.images`` (images alone, without
maps or per-component light).  The process tunes glibc's allocator as galae's own jobs do
(galae.runtime; recorded as machine.malloc_tuned).
    python benchmarks/render.py --device cuda --no-galsim --batch 4096 --scan 1024 16384 \
        --compile --compile-presets fast accurate --compile-images-only   # GPU, one line

On a GPU, each preset's float32 images are also compared with the CPU's float64 render of the same
galaxies (max_abs_over_peak_vs_cpu_float64; GalSim itself runs on the CPU only).

Writes ``benchmarks/results/render_<device>.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import timeit, write_result

from galae.data.conditions import sample_sdss_conditions
from galae.latent import REGISTRY
from galae.physics.population import sample_population
from galae.render.observation import Observation
from galae.render.renderer import GalaxyRenderer
from galae.settings import RENDER_PRESETS


def galsim_specs(params, light, maps, geom, cond, scale, n_gal):
    """Plain-number descriptions of n_gal galaxies for GalSim (picklable, for worker processes).

    Component fluxes are totals (light beyond the stamp included); they are exact when each
    component has one spectrum (no dust or population gradients), as in the accuracy check.

    Each galaxy is three components per band (a Sersic bulge, an exponential disk and an
    exponential star-forming disk) with the band fluxes galae computed, galae's geometry and
    a Gaussian PSF of the band's FWHM.  GalSim's shear preserves area, so the major-axis
    half-light radius r becomes the circular-equivalent r sqrt(q)."""

    def total(light_map, mass_map, mass_total):
        # total flux of a component: its light in the stamp over the share of its mass there
        inside = mass_map.sum((-1, -2)).clamp_min(1e-30)
        return (light_map.sum((-1, -2)) * (mass_total / inside).unsqueeze(-1)).cpu().numpy()

    lb = total(light.bulge_nmgy, maps.mstar_bulge_msun, 10.0 ** params["log10_mstar_bulge_msun"])
    ld = total(light.disk_nmgy, maps.mstar_disk_msun, 10.0 ** params["log10_mstar_disk_msun"])
    ly = total(light.young_nmgy, maps.sfr_msun_per_yr, 10.0 ** params["log10_sfr_msun_per_yr"])
    specs = []
    for i in range(n_gal):
        qb, qd = float(params["q_bulge"][i]), float(geom.q_disk[i])
        specs.append(
            {
                "n": float(params["sersic_n_bulge"][i]),
                "bulge_r": float(geom.r_half_bulge_pix[i]) * scale * np.sqrt(qb),
                "bulge_q": qb,
                "disk_r": float(geom.r_half_disk_pix[i]) * scale * np.sqrt(qd),
                "sfr_r": float(geom.r_half_sfr_pix[i]) * scale * np.sqrt(qd),
                "disk_q": qd,
                "beta": float(geom.pa_rad[i]),
                "cx": float(geom.center_x_pix[i]),
                "cy": float(geom.center_y_pix[i]),
                "fwhm": [float(f) for f in cond.psf_fwhm_arcsec[i]],
                "flux": [[float(lb[i, c]), float(ld[i, c]), float(ly[i, c])] for c in range(5)],
            }
        )
    return specs


def galsim_draw(specs, scale, shape):
    """Draw every galaxy of ``specs`` in every band; returns (n, C, H, W) and the wall time."""
    import galsim

    h, w = shape
    out = np.zeros((len(specs), 5, h, w))
    t0 = time.perf_counter()
    for i, sp in enumerate(specs):
        beta = sp["beta"] * galsim.radians
        off = galsim.PositionD(sp["cx"] - (w - 1) / 2, sp["cy"] - (h - 1) / 2)
        for c in range(5):
            fb, fd, fy = sp["flux"][c]
            bulge = galsim.Sersic(sp["n"], half_light_radius=sp["bulge_r"], flux=fb)
            disk = galsim.Exponential(half_light_radius=sp["disk_r"], flux=fd)
            young = galsim.Exponential(half_light_radius=sp["sfr_r"], flux=fy)
            gal = bulge.shear(q=sp["bulge_q"], beta=beta) + (disk + young).shear(
                q=sp["disk_q"], beta=beta
            )
            img = galsim.Convolve(gal, galsim.Gaussian(fwhm=sp["fwhm"][c])).drawImage(
                nx=w, ny=h, scale=scale, offset=off
            )
            out[i, c] = img.array
    return out, time.perf_counter() - t0


def galsim_throughput(specs, scale, shape, processes):
    """Galaxies per second of GalSim in ``processes`` fresh worker processes (wall clock).

    Spawned, not forked, so that no worker inherits the Sersic tables this process built for
    the same indices (each galaxy has its own n, so GalSim builds one per galaxy, as it would
    for any population with continuous n)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    parts = [specs[k::processes] for k in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        list(
            pool.map(
                galsim_draw, [parts[0][:1]] * processes, [scale] * processes, [shape] * processes
            )
        )  # start the workers and import galsim
        t0 = time.perf_counter()
        list(pool.map(galsim_draw, parts, [scale] * processes, [shape] * processes))
        wall = time.perf_counter() - t0
    return len(specs) / wall


def batch_scan(
    ren: GalaxyRenderer,
    sizes: list[int],
    dev: torch.device,
    shape: tuple[int, int],
    sync: bool,
    compiled: bool = False,
) -> dict[str, float | str]:
    """Images alone at other batch sizes: {batch: galaxies/s} ("out of memory" if so), eager or
    through ``torch.compile`` (compiled once per batch size, not timed)."""
    out: dict[str, float | str] = {}
    for bs in sizes:
        drawn = sample_population(bs, torch.Generator().manual_seed(1))
        p = {k: v.to(dev) for k, v in drawn.items()}
        c = sample_sdss_conditions(bs, np.random.default_rng(1))
        o = Observation.create(c.redshift, c.psf_fwhm_arcsec, shape=shape, device=dev)

        def draw(p=p, o=o):
            return ren.images(p, o, validate=False)

        fn = torch.compile(draw, dynamic=False) if compiled else draw
        try:
            t = timeit(torch.no_grad()(fn), repeat=5 if compiled else 3, warmup=2, sync=sync)
            out[str(bs)] = bs / t
        except torch.OutOfMemoryError:
            out[str(bs)] = "out of memory"
        del p, o
        if sync:
            torch.cuda.empty_cache()
    return out


def agreement_with_cpu_float64(settings, params, cond, shape, dev, n: int = 32) -> float:
    """max |render on ``dev`` (float32) - render on the CPU (float64)| / peak, n galaxies."""
    p = {k: v[:n] for k, v in params.items()}
    o64 = Observation.create(
        cond.redshift[:n], cond.psf_fwhm_arcsec[:n], shape=shape, dtype=torch.float64
    )
    o = Observation.create(cond.redshift[:n], cond.psf_fwhm_arcsec[:n], shape=shape, device=dev)
    with torch.no_grad():
        ref = (
            GalaxyRenderer(settings=settings)
            .double()({k: v.double() for k, v in p.items()}, o64)
            .images
        )
        got = (
            GalaxyRenderer(settings=settings)
            .to(dev)
            .images({k: v.to(dev) for k, v in p.items()}, o)
        )
    peak = ref.amax((-1, -2), keepdim=True)
    return float(((got.cpu().double() - ref).abs() / peak).max())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--galsim-n", type=int, default=24, help="galaxies GalSim draws (timing)")
    ap.add_argument("--no-galsim", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(renderer)")
    ap.add_argument(
        "--presets", nargs="+", default=list(RENDER_PRESETS), choices=list(RENDER_PRESETS)
    )
    ap.add_argument(
        "--compile-presets", nargs="+", default=None, help="presets to compile (default: all)"
    )
    ap.add_argument(
        "--compile-images-only",
        action="store_true",
        help="compile only GalaxyRenderer.images (the training path), not the full forward",
    )
    ap.add_argument("--out-name", default=None, help="results/NAME.json (default render_DEVICE)")
    ap.add_argument(
        "--scan",
        type=int,
        nargs="*",
        default=[],
        help="more batch sizes for images alone (eager), e.g. --scan 1024 16384 on a GPU",
    )
    a = ap.parse_args()
    dev = torch.device(a.device)
    torch.set_flush_denormal(True)
    # every preset and batch size recompiles the renderer's small checked helpers (graph breaks
    # at its input checks); room for all of them, so that none falls back to eager
    torch._dynamo.config.cache_size_limit = 64
    shape, scale, n = (64, 64), 0.396, a.batch
    g = torch.Generator().manual_seed(0)
    params = sample_population(n, g)
    cond = sample_sdss_conditions(n, np.random.default_rng(0))
    p_dev = {k: v.to(dev) for k, v in params.items()}
    obs = Observation.create(cond.redshift, cond.psf_fwhm_arcsec, shape=shape, device=dev)
    sync = dev.type == "cuda"
    result: dict = {"device": str(dev), "batch": n, "shape": list(shape), "bands": 5}
    u0 = REGISTRY.to_unconstrained(p_dev).detach()

    compile_presets = set(a.presets if a.compile_presets is None else a.compile_presets)
    for preset in a.presets:
        settings = RENDER_PRESETS[preset]
        ren = GalaxyRenderer(settings=settings).to(dev)
        compile_this = a.compile and preset in compile_presets
        if sync:
            torch.cuda.reset_peak_memory_stats(dev)

        @torch.no_grad()
        def run(ren=ren):
            return ren(p_dev, obs, validate=False).images

        t = timeit(run, repeat=5, warmup=2, sync=sync)
        res: dict = {
            "render_settings": settings.__dict__,
            "seconds_per_batch": t,
            "galaxies_per_second": n / t,
        }
        if compile_this and not a.compile_images_only:
            compiled = torch.compile(
                lambda pp, ren=ren: ren(pp, obs, validate=False).images, dynamic=False
            )
            t0 = time.perf_counter()
            with torch.no_grad():
                compiled(p_dev)
            res["compile_seconds"] = time.perf_counter() - t0

            @torch.no_grad()
            def run_compiled(compiled=compiled):
                return compiled(p_dev)

            tc = timeit(run_compiled, repeat=5, warmup=1, sync=sync)
            res["compiled_galaxies_per_second"] = n / tc
            res["compiled_matches_eager"] = bool(
                torch.allclose(run_compiled(), run(), rtol=1e-3, atol=1e-6)
            )

        # images alone (GalaxyRenderer.images: no maps or per-component light; for the fast
        # preset the disks' light is tabulated radially)
        @torch.no_grad()
        def run_images(ren=ren):
            return ren.images(p_dev, obs, validate=False)

        ti = timeit(run_images, repeat=5, warmup=2, sync=sync)
        res["images_only_galaxies_per_second"] = n / ti
        if compile_this:
            compiled_images = torch.compile(
                lambda pp, ren=ren: ren.images(pp, obs, validate=False), dynamic=False
            )
            with torch.no_grad():
                compiled_images(p_dev)

            @torch.no_grad()
            def run_images_compiled(compiled_images=compiled_images):
                return compiled_images(p_dev)

            res["images_only_compiled_galaxies_per_second"] = n / timeit(
                run_images_compiled, repeat=5, warmup=1, sync=sync
            )
            res["images_only_compiled_matches_eager"] = bool(
                torch.allclose(run_images_compiled(), run_images(), rtol=1e-3, atol=1e-6)
            )
        if a.scan:
            res["images_only_batch_scan"] = batch_scan(ren, a.scan, dev, shape, sync)
            if compile_this:
                res["images_only_compiled_batch_scan"] = batch_scan(
                    ren, a.scan, dev, shape, sync, compiled=True
                )
        # gradient throughput (forward + backward through every latent)

        def run_grad(ren=ren):
            uu = u0.clone().requires_grad_(True)
            img = ren(REGISTRY.from_unconstrained(uu), obs, validate=False).images
            img.sum().backward()

        try:
            tg = timeit(run_grad, repeat=3, warmup=1, sync=sync)
            res["forward_backward_galaxies_per_second"] = n / tg
        except torch.OutOfMemoryError:
            res["forward_backward_galaxies_per_second"] = "out of memory"
            torch.cuda.empty_cache()
        if sync:
            res["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
        if dev.type != "cpu":
            res["max_abs_over_peak_vs_cpu_float64"] = agreement_with_cpu_float64(
                settings, params, cond, shape, dev
            )
        result[preset] = res

    if not a.no_galsim:
        import galsim

        ng = min(a.galsim_n, n)
        p_cpu = {k: v[:ng].cpu().double() for k, v in params.items()}
        obs_cpu = Observation.create(
            cond.redshift[:ng], cond.psf_fwhm_arcsec[:ng], shape=shape, dtype=torch.float64
        )
        ren_cpu = GalaxyRenderer().double()
        with torch.no_grad():
            light, maps, geom = ren_cpu.light(p_cpu, obs_cpu)
        specs = galsim_specs(p_cpu, light, maps, geom, cond, scale, ng)
        _, t1 = galsim_draw(specs, scale, shape)
        gs1 = ng / t1
        gs2 = galsim_throughput(specs, scale, shape, 2)
        result.update(
            {
                "galsim_version": galsim.__version__,
                "galsim_galaxies": ng,
                "galsim_galaxies_per_second_1proc": gs1,
                "galsim_galaxies_per_second_2proc": gs2,
                "target_speedup_cpu": 100.0,
                "target_accuracy_over_peak": 0.01,
                "target_gpu_galaxies_per_second": 50000.0,
            }
        )
        # accuracy on the same galaxies made dust-free and without population gradients, so that
        # each component has one spectrum and GalSim can draw exactly what galae renders
        flat = dict(p_cpu)
        for k in ("av_face_on_mag", "zstar_grad_dex_per_kpc", "oh12_grad_dex_per_kpc"):
            flat[k] = torch.zeros(ng, dtype=torch.float64)
        with torch.no_grad():
            light_f, maps_f, geom_f = ren_cpu.light(flat, obs_cpu)
        ref, _ = galsim_draw(
            galsim_specs(flat, light_f, maps_f, geom_f, cond, scale, ng), scale, shape
        )
        peak = ref.max(axis=(-1, -2), keepdims=True)
        for preset in a.presets:
            settings = RENDER_PRESETS[preset]
            with torch.no_grad():
                ours_img = GalaxyRenderer(settings=settings).double()(flat, obs_cpu).images.numpy()
            err = (np.abs(ours_img - ref) / peak).max(axis=(-1, -2))  # (n, C)
            flux_err = np.abs(ours_img.sum((-1, -2)) / ref.sum((-1, -2)) - 1.0)
            res = result[preset]
            rates = [
                res.get(key, 0.0)
                for key in (
                    "galaxies_per_second",
                    "compiled_galaxies_per_second",
                    "images_only_galaxies_per_second",
                    "images_only_compiled_galaxies_per_second",
                )
            ]
            for key in ("images_only_batch_scan", "images_only_compiled_batch_scan"):
                rates += [v for v in res.get(key, {}).values() if isinstance(v, float)]
            best = max(rates)
            res.update(
                {
                    "speedup_vs_galsim_2proc": res["galaxies_per_second"] / gs2,
                    "speedup_vs_galsim_1proc": res["galaxies_per_second"] / gs1,
                    "best_speedup_vs_galsim_2proc": best / gs2,
                    "accuracy_vs_galsim_max_abs_over_peak": float(err.max()),
                    "accuracy_vs_galsim_median_abs_over_peak": float(np.median(err)),
                    "accuracy_vs_galsim_max_flux_fraction": float(flux_err.max()),
                }
            )
    write_result(a.out_name or f"render_{dev.type}", result)


if __name__ == "__main__":
    main()
