"""Renderer throughput: galaxies per second, bulge+disk, 5 bands, 64x64, PSF-convolved.

galae renders a batch of galaxies from the mock population; GalSim draws the same galaxies
(a Sersic bulge and an exponential disk per band with the band fluxes galae computed, the same
geometry, a Gaussian PSF of the same per-band FWHM) in the same run on the same machine.

    python benchmarks/render.py [--compile]     # CPU (this machine); --compile adds torch.compile
    python benchmarks/render.py --device cuda   # GPU: one line for a machine with one

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


def galsim_draw(params, light_bulge, light_disk, cond, geom, scale, shape, n_gal):
    import galsim

    h, w = shape
    t0 = time.perf_counter()
    for i in range(n_gal):
        for c in range(light_bulge.shape[1]):
            psf = galsim.Gaussian(fwhm=float(cond.psf_fwhm_arcsec[i, c]))
            rb = float(geom.r_half_bulge_pix[i]) * scale
            qb = float(params["q_bulge"][i])
            # major-axis half-light radius -> circular-equivalent for GalSim's area-preserving shear
            bulge = galsim.Sersic(
                float(params["sersic_n_bulge"][i]),
                half_light_radius=rb * np.sqrt(qb),
                flux=float(light_bulge[i, c]),
            )
            bulge = bulge.shear(q=qb, beta=float(geom.pa_rad[i]) * galsim.radians)
            qd = float(geom.q_disk[i])
            rd = float(geom.r_half_disk_pix[i]) * scale
            disk = galsim.Exponential(
                half_light_radius=rd * np.sqrt(qd), flux=float(light_disk[i, c])
            )
            disk = disk.shear(q=qd, beta=float(geom.pa_rad[i]) * galsim.radians)
            gal = galsim.Convolve(bulge + disk, psf)
            off = galsim.PositionD(
                float(geom.center_x_pix[i]) - (w - 1) / 2, float(geom.center_y_pix[i]) - (h - 1) / 2
            )
            gal.drawImage(nx=w, ny=h, scale=scale, offset=off)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--galsim-n", type=int, default=24, help="galaxies GalSim draws (timing)")
    ap.add_argument("--no-galsim", action="store_true")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(renderer)")
    a = ap.parse_args()
    dev = torch.device(a.device)
    shape, scale, n = (64, 64), 0.396, a.batch
    g = torch.Generator().manual_seed(0)
    params = sample_population(n, g)
    cond = sample_sdss_conditions(n, np.random.default_rng(0))
    ren = GalaxyRenderer().to(dev)
    p_dev = {k: v.to(dev) for k, v in params.items()}
    obs = Observation.create(cond.redshift, cond.psf_fwhm_arcsec, shape=shape, device=dev)

    @torch.no_grad()
    def run():
        return ren(p_dev, obs, validate=False).images

    sync = dev.type == "cuda"
    t = timeit(run, repeat=5, warmup=2, sync=sync)
    ours = n / t
    result = {
        "device": str(dev),
        "batch": n,
        "shape": list(shape),
        "bands": 5,
        "galae_seconds_per_batch": t,
        "galae_galaxies_per_second": ours,
        "render_settings": ren.settings.__dict__,
    }
    if a.compile:
        compiled = torch.compile(lambda pp: ren(pp, obs, validate=False).images, dynamic=False)
        t0 = time.perf_counter()
        with torch.no_grad():
            compiled(p_dev)
        result["compile_seconds"] = time.perf_counter() - t0

        @torch.no_grad()
        def run_compiled():
            return compiled(p_dev)

        tc = timeit(run_compiled, repeat=5, warmup=1, sync=sync)
        result["galae_compiled_galaxies_per_second"] = n / tc
        if torch.allclose(run_compiled(), run(), rtol=1e-3, atol=1e-6):
            result["compiled_matches_eager"] = True
        else:
            result["compiled_matches_eager"] = False
    # gradient throughput (forward + backward through every latent)
    u0 = REGISTRY.to_unconstrained(p_dev).detach()

    def run_grad():
        uu = u0.clone().requires_grad_(True)
        img = ren(REGISTRY.from_unconstrained(uu), obs, validate=False).images
        img.sum().backward()

    tg = timeit(run_grad, repeat=3, warmup=1, sync=sync)
    result["galae_forward_backward_galaxies_per_second"] = n / tg

    if not a.no_galsim:
        import galsim

        with torch.no_grad():
            light, _, geom = ren.light(p_dev, obs)
        lb = light.bulge_nmgy.sum((-1, -2)).cpu().numpy()
        ld = (light.disk_nmgy + light.young_nmgy).sum((-1, -2)).cpu().numpy()
        geom_cpu = type(geom)(**{k: v.cpu() for k, v in geom.__dict__.items()})
        ng = min(a.galsim_n, n)
        tgs = galsim_draw(
            {k: v.cpu() for k, v in params.items()}, lb, ld, cond, geom_cpu, scale, shape, ng
        )
        gs = ng / tgs
        result.update(
            {
                "galsim_version": galsim.__version__,
                "galsim_galaxies": ng,
                "galsim_galaxies_per_second": gs,
                "speedup_vs_galsim": ours / gs,
                "speedup_vs_galsim_compiled": result.get("galae_compiled_galaxies_per_second", ours)
                / gs,
                "target_speedup_cpu": 100.0,
                "target_gpu_galaxies_per_second": 50000.0,
            }
        )
    write_result(f"render_{dev.type}", result)


if __name__ == "__main__":
    main()
