"""The packaged model on images ten times deeper than its training data set's stamps (the deep
edge of the noise its simulations cover): the amortized fits of bright disks are poor, encode
names them, and refining them through the renderer repairs most of the misfit (docs/results.md,
issue 4, "Images deeper than the training data")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import galae
from galae.render.profile_api import noisy_disk_grid
from galae.sampling import POOR_FIT_CHI2_PER_PIXEL, POOR_FIT_MESSAGE

#: median per-pixel sky noise of the packaged model's training data set, u g r i z (nmgy)
SKY_SIGMA_NMGY = np.array([0.054, 0.018, 0.029, 0.048, 0.23], np.float32)
COLOURS = np.array([0.15, 0.5, 1.0, 1.4, 1.7], np.float32)  # flux ratios to the r band


def _disks(depth: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four exponential disks (r_half 1 and 2", r flux 100 and 500 nmgy) at depth x the sky."""
    return noisy_disk_grid((1.0, 2.0), (100.0, 500.0), COLOURS, SKY_SIGMA_NMGY, depth, seed)


def test_deep_images_are_flagged_and_refining_repairs_them() -> None:
    m = galae.load()
    x, sigma = _disks(depth=0.1)
    kw = {"psf_fwhm_arcsec": np.full((4, 5), 1.4), "redshift": np.full(4, 0.1), "n_mc": 32}
    with pytest.warns(RuntimeWarning, match=f"{POOR_FIT_MESSAGE}.*refine_steps=60"):
        amortized = m.encode(x, sigma, n_mc_derived=2, **kw)
    assert bool((amortized.chi2_per_pixel > POOR_FIT_CHI2_PER_PIXEL).all())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{POOR_FIT_MESSAGE}")
        refined = m.encode(x, sigma, n_mc_derived=2, refine_steps=60, **kw)
    # measured (three noise seeds, fourteenth-session model): chi2 per pixel 50-2300 amortized,
    # 2.2-34 refined; the ratio of the medians 32-35 (the previous release: 1350-13000, 7-73, 85).
    # The twentieth release fits such images better amortized (17-15000; refined 1.5-105), so
    # the test asks every galaxy to improve by 4x and their geometric mean by 10x (measured: 8-145
    # per galaxy, geometric mean 27; the nineteenth release 24-166, 53)
    ratio = amortized.chi2_per_pixel / refined.chi2_per_pixel
    assert bool((ratio > 4.0).all())
    assert float(ratio.log().mean().exp()) > 10.0
