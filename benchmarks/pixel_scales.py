"""The packaged model on stamps of other surveys' pixel scales, with and without regridding.

The encoder was trained on SDSS's 0.396" pixels.  This makes analytic mocks of one population
at 0.396" (64 x 64), 0.262" (DECaLS, 96 x 96) and 0.168" (HSC, 150 x 150) - the same 25" of
sky, the sky noise of SDSS's sky brightness in each pixel - and scores the amortized posterior
(and at 0.262" the refined one) with the encoder reading the stamps as they are or regridded
onto its own pixel grid (``encode(..., regrid_pixels=...)``, :mod:`galae.render.regrid`).

    python benchmarks/pixel_scales.py [--n 300] [--refine-steps 60]

Writes ``benchmarks/results/pixel_scales.json``; the mocks go to data/ (remade when missing).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from _common import posterior_scores, score_line, write_result

import galae
from galae.data.hdf5 import read_h5

ROOT = Path(__file__).resolve().parent.parent
#: (pixel scale, stamp side): about 25" of sky each
SCALES: tuple[tuple[float, int], ...] = ((0.396, 64), (0.262, 96), (0.168, 150))
NAMES: tuple[str, ...] = ("mag_g", "mag_r", "mag_z", "r_half_arcsec_r", "log10_mstar_msun")


def _mocks(scale: float, side: int, n: int, seed: int) -> Path:
    out = ROOT / "data" / f"analytic_scale{round(scale * 1000)}_{n}_{seed}.h5"
    if not out.exists():
        subprocess.run(
            [sys.executable, "-m", "galae.mock", "--config", "configs/mock_analytic.yaml",
             "--n", str(n), "--seed", str(seed), "--out", str(out),
             f"pixel_scale_arcsec={scale}", f"shape=[{side},{side}]"],
            check=True, cwd=ROOT,
        )  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seed", type=int, default=404)
    ap.add_argument("--refine-steps", type=int, default=60)
    a = ap.parse_args()
    m = galae.load()
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    for scale, side in SCALES:
        d = read_h5(_mocks(scale, side, a.n, a.seed), with_maps=False)
        kw = {
            "psf_fwhm_arcsec": d["psf_fwhm_arcsec"],
            "redshift": d["redshift"],
            "pixel_scale_arcsec": d["pixel_scale_arcsec"],
            "mask": d["mask"],
        }
        row: dict[str, Any] = {"pixel_scale_arcsec": scale, "stamp_pixels": side}
        modes = [("amortized", 0, True)]
        if abs(scale - 0.396) > 1e-3:
            modes.append(("amortized_as_given", 0, False))
            if scale == 0.262 and a.refine_steps > 0:
                modes += [
                    ("refined", a.refine_steps, True),
                    ("refined_as_given", a.refine_steps, False),
                ]
        for mode, steps, regrid in modes:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                post = m.encode(
                    d["images"], d["sigma"], refine_steps=steps, regrid_pixels=regrid, **kw
                )
            row[mode] = r = posterior_scores(post, d["truth"]["params"], NAMES)
            print(score_line(f'{scale:.3f}"', mode, r, NAMES), flush=True)
        results[f"{scale:g}"] = row
    print(
        write_result(
            "pixel_scales",
            {
                "checkpoint": "packaged model (galae.load())",
                "galaxies": f"{a.n} analytic mocks (configs/mock_analytic.yaml, seed {a.seed}) at "
                "each pixel scale, about 25 arcsec stamps, redshift given",
                "modes": "amortized / refined: regridded onto the model's pixel grid for the "
                "encoder (encode's default); *_as_given: regrid_pixels=False",
                "what": "median |error| (mag, dex; r_half also as a fraction), fraction of truths "
                "within 1 posterior sigma, median posterior sigma",
                "scales": results,
                "seconds": round(time.perf_counter() - t0, 1),
            },
        )
    )


if __name__ == "__main__":
    main()
