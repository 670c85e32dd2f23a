"""How the derived observables (total magnitudes, half-light radii) depend on the stamp's pixels.

The renderer takes each pixel's light per unit mass - its dust transmission above all - at the
in-plane radius of the pixel's centre.  Across an inclined disk's minor axis that radius
changes by a pixel over the cosine of the inclination, so big pixels miss the dust lane and
make the galaxy too bright.  ``GalaxyRenderer.derived_and_maps`` takes the totals' light inside
the stamp from the stamp's own pixels (since the twenty-sixth submission; before, from a grid
four times coarser, which made half the analytic mocks' r-band half-light radii more than 5%
too large).  This scores the derived observables of analytic mock truths on the SDSS stamp
(0.396" x 64) against the same on a stamp of eight times finer pixels (0.0495" x 512, the same
field), where they have converged to 1% (against 0.099" x 256).

    python benchmarks/derived_resolution.py [--n 300]

Run with ``PYTHONPATH=<checkout>/src`` to score another version of galae the same way.
Writes ``benchmarks/results/derived_resolution.json``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch
from _common import write_result

import galae
from galae.latent import REGISTRY
from galae.physics.population import sample_population
from galae.render.observation import Observation
from galae.render.psf import GaussianPSF

PCT = (1, 5, 25, 50, 75, 95, 99)


def _derived(ren: Any, params: dict[str, torch.Tensor], z: torch.Tensor, scale: float,
             side: int, bands: tuple[str, ...], batch: int) -> dict[str, np.ndarray]:  # fmt: skip
    outs = []
    for s in range(0, z.numel(), batch):
        p = {k: v[s : s + batch] for k, v in params.items()}
        n = p[next(iter(p))].shape[0]
        obs = Observation(
            redshift=z[s : s + batch],
            psf=GaussianPSF(torch.full((n, len(bands)), 1.3)),
            pixel_scale_arcsec=scale,
            shape=(side, side),
            bands=bands,
        )
        outs.append(ren.derived(p, obs))
    return {k: torch.cat([o[k] for o in outs]).numpy() for k in outs[0]}


def _percentiles(x: np.ndarray) -> dict[str, float]:
    return {str(q): float(v) for q, v in zip(PCT, np.percentile(x, PCT), strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=404)
    ap.add_argument("--name", default="derived_resolution")
    a = ap.parse_args()
    m = galae.load()
    ren = m.model.renderer
    g = torch.Generator().manual_seed(a.seed)
    params = {k: v for k, v in sample_population(a.n, g).items() if k in REGISTRY.names}
    z = 0.01 + 0.24 * torch.rand(a.n, generator=g)  # configs/mock_analytic.yaml's range
    t0 = time.perf_counter()
    sdss = _derived(ren, params, z, 0.396, 64, m.bands, 50)
    ref = _derived(ren, params, z, 0.396 / 8, 512, m.bands, 5)
    rows: dict[str, Any] = {}
    for band in m.bands:
        dmag = sdss[f"mag_{band}"] - ref[f"mag_{band}"]
        frac = sdss[f"r_half_arcsec_{band}"] / ref[f"r_half_arcsec_{band}"] - 1.0
        rows[band] = {
            "mag_minus_reference_percentiles": _percentiles(dmag),
            "r_half_fractional_error_percentiles": _percentiles(frac),
            "r_half_fraction_beyond_5pct": float((np.abs(frac) > 0.05).mean()),
            "r_half_fraction_beyond_10pct": float((np.abs(frac) > 0.10).mean()),
        }  # fmt: skip
        print(
            f"{band}: mag - ref percentiles {np.percentile(dmag, PCT).round(3)}; r_half frac "
            f"{np.percentile(frac, PCT).round(3)}; "
            f"beyond 5% {rows[band]['r_half_fraction_beyond_5pct']:.2f}"
        )
    print(
        write_result(
            a.name,
            {
                "benchmark": "derived_resolution",
                "galae_source": galae.__file__,
                "galaxies": f"{a.n} draws of the mock population (sample_population, seed "
                f"{a.seed}), redshift uniform in 0.01-0.25; the derived observables are PSF-free",
                "grids": "SDSS 0.396 arcsec x 64 against 0.0495 arcsec x 512",
                "bands": rows,
                "seconds": round(time.perf_counter() - t0, 1),
            },
        )
    )


if __name__ == "__main__":
    main()
