"""The packaged model on galaxies seen through a PSF with wings (Moffat) instead of a Gaussian.

galae's mocks and training simulations use a Gaussian PSF of each band's FWHM, and the
contract's ``encode`` takes only that FWHM.  Ground-based PSFs have power-law wings: a Moffat
profile with beta 2.5-4.8 (Trujillo et al. 2001, MNRAS 328, 977; beta = 4.765 is the Moffat that
best matches Kolmogorov turbulence).  This re-renders the analytic test mocks' true galaxies
through Moffat PSFs of the same FWHM (and, as the control, through the Gaussian), adds noise of
the mocks' own sigma, and scores the amortized and refined posteriors, encoded with the FWHM
only and, where ``encode`` takes it, with the PSF image.

    python benchmarks/psf_shape.py [--n 200] [--betas 2.5 3.5 4.765] [--refine-steps 60]

Writes ``benchmarks/results/psf_shape.json``.
"""

from __future__ import annotations

import argparse
import inspect
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import posterior_scores, score_line, write_result

import galae
from galae.data.hdf5 import read_h5
from galae.latent import REGISTRY
from galae.render.observation import Observation
from galae.render.psf import GaussianPSF, MoffatPSF, point_source_image
from galae.render.renderer import GalaxyRenderer

ROOT = Path(__file__).resolve().parent.parent
NAMES: tuple[str, ...] = ("mag_r", "r_half_arcsec_r", "log10_mstar_msun")
#: side of the PSF images handed to encode (odd; 51 pixels = 20")
PSF_SIDE = 51


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "analytic_test.h5"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--betas", type=float, nargs="+", default=[2.5, 3.5, 4.765])
    ap.add_argument("--refine-steps", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    d = read_h5(a.data, np.arange(a.n), with_maps=False)
    attrs = d["attrs"]
    renderer = GalaxyRenderer(
        disk_history=str(attrs.get("disk_history", "tau")),
        birth_clouds=str(attrs.get("birth_clouds", "effective")),
    )
    params = {k: torch.as_tensor(d["truth"]["params"][k]) for k in REGISTRY.names}
    fwhm = torch.as_tensor(d["psf_fwhm_arcsec"])
    z = torch.as_tensor(d["redshift"])
    sigma = torch.as_tensor(d["sigma"])
    shape = tuple(d["images"].shape[-2:])
    m = galae.load()
    takes_psf_image = "psf_image" in inspect.signature(m.encode).parameters
    results: dict[str, Any] = {}
    t0 = time.perf_counter()
    psfs: list[tuple[str, Any]] = [("gaussian", GaussianPSF(fwhm))]
    psfs += [(f"moffat_beta{b:g}", MoffatPSF(fwhm, b)) for b in a.betas]
    for label, psf in psfs:
        obs = Observation(z, psf, d["pixel_scale_arcsec"], shape, d["bands"])
        with torch.no_grad():
            clean = renderer(params, obs).images
        g = torch.Generator().manual_seed(a.seed)
        noisy = clean + sigma * torch.randn(clean.shape, generator=g)
        row: dict[str, Any] = {}
        modes = [("amortized", 0, False), ("refined", a.refine_steps, False)]
        if takes_psf_image:
            modes += [
                ("amortized_psf_image", 0, True),
                ("refined_psf_image", a.refine_steps, True),
            ]
        for mode, steps, with_image in modes:
            kw: dict[str, Any] = {"psf_fwhm_arcsec": d["psf_fwhm_arcsec"]}
            if with_image:
                image = point_source_image(psf, d["pixel_scale_arcsec"], PSF_SIDE)
                kw = {"psf_image": image.expand(a.n, -1, -1, -1).numpy()}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                post = m.encode(
                    noisy.numpy(), d["sigma"], redshift=d["redshift"], refine_steps=steps,
                    pixel_scale_arcsec=d["pixel_scale_arcsec"], **kw,
                )  # fmt: skip
            row[mode] = r = posterior_scores(post, d["truth"]["params"], NAMES)
            print(score_line(label, mode, r, NAMES), flush=True)
        results[label] = row
    print(
        write_result(
            "psf_shape",
            {
                "checkpoint": "packaged model (galae.load())",
                "galaxies": f"the first {a.n} of {a.data} (true latents), re-rendered through "
                f"each PSF at its FWHM, noise of the mocks' sigma (seed {a.seed}), redshift given",
                "modes": "amortized, refined (60 steps): encode given the FWHM (a Gaussian PSF in "
                "the likelihood); *_psf_image: encode given the PSF image (psf_image=; the encoder "
                "told its Gaussian-equivalent FWHM, the likelihood convolving with it)",
                "what": "median |error| (mag, dex; r_half also as a fraction), fraction of truths "
                "within 1 posterior sigma, median posterior sigma",
                "psfs": results,
                "seconds": round(time.perf_counter() - t0, 1),
            },
        )
    )


if __name__ == "__main__":
    main()
