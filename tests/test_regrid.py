"""Regridding stamps onto the model's pixel grid (galae.render.regrid): flux, noise and masks."""

from __future__ import annotations

import pytest
import torch

import galae
from galae.render.regrid import overlap_matrix, regrid

F64 = torch.float64


def test_overlap_rows_and_block_sums() -> None:
    w = overlap_matrix(4, 8, 2.0, F64)
    torch.testing.assert_close(w.sum(1), torch.full((4,), 2.0, dtype=F64))
    assert torch.equal(w[0], torch.tensor([1, 1, 0, 0, 0, 0, 0, 0], dtype=F64))
    # non-integer ratio: every old pixel shared out in full where the new grid covers it
    w = overlap_matrix(10, 15, 1.5, F64)
    torch.testing.assert_close(w.sum(0), torch.ones(15, dtype=F64))
    # new pixels beyond the old axis cover nothing there
    assert overlap_matrix(8, 4, 1.0, F64)[0].sum() == 0
    with pytest.raises(ValueError, match="ratio"):
        overlap_matrix(4, 8, 0.0, F64)


def test_same_grid_is_the_identity() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 12, 12, generator=g, dtype=F64)
    s = torch.rand(2, 3, 12, 12, generator=g, dtype=F64) + 0.5
    m = torch.zeros_like(x, dtype=torch.bool)
    xo, so, mo = regrid(x, s, m, 0.4, 0.4, (12, 12))
    torch.testing.assert_close(xo, x)
    torch.testing.assert_close(so, s)
    assert not mo.any()


def test_two_by_two_blocks_sum_flux_and_variance() -> None:
    x = torch.arange(16.0, dtype=F64).view(1, 1, 4, 4)
    s = torch.full_like(x, 0.5)
    m = torch.zeros_like(x, dtype=torch.bool)
    xo, so, mo = regrid(x, s, m, 0.2, 0.4, (2, 2))
    torch.testing.assert_close(xo[0, 0], torch.tensor([[10.0, 18.0], [42.0, 50.0]], dtype=F64))
    torch.testing.assert_close(so, torch.ones_like(so))  # sqrt(4 x 0.25)
    assert not mo.any()


def test_masked_pixels_scale_up_or_mask() -> None:
    x = torch.ones(1, 1, 4, 4, dtype=F64)
    s = torch.ones_like(x)
    m = torch.zeros_like(x, dtype=torch.bool)
    m[0, 0, 0, 0] = True  # a quarter of the first new pixel: scaled up to its full area
    m[0, 0, 2:, 2:] = True  # all of the last one: masked
    xo, so, mo = regrid(x, s, m, 0.2, 0.4, (2, 2))
    assert mo[0, 0].tolist() == [[False, False], [False, True]]
    torch.testing.assert_close(xo[0, 0, 0, 0], torch.tensor(4.0, dtype=F64))
    torch.testing.assert_close(so[0, 0, 0, 0], torch.tensor(3.0**0.5 * 4 / 3, dtype=F64))
    assert xo[0, 0, 1, 1] == 0 and so[0, 0, 1, 1] == 1


def test_a_rendered_galaxy_regridded_matches_it_rendered_on_the_coarse_grid() -> None:
    """A DECaLS-pixel (0.262") stamp on SDSS's 0.396" grid against the profile drawn there,
    both seen through 1.3" seeing: the whole flux kept to 1%, each pixel within 3% of the peak.
    Area weighting takes each old pixel's light as uniform inside it, a blur of one old pixel
    (variance 0.262^2 / 12 arcsec^2 against the PSF's 0.31): the peak drops by about 2%."""
    kw = {
        "flux": 100.0,
        "r_half_major_arcsec": 2.5,
        "sersic_n": 1.5,
        "q": 0.6,
        "pa_deg": 25.0,
        "psf_fwhm_arcsec": 1.3,
    }
    fine = galae.render_profile("sersic", shape=(97, 97), pixel_scale_arcsec=0.262, **kw)
    coarse = galae.render_profile("sersic", shape=(64, 64), pixel_scale_arcsec=0.396, **kw)
    x = fine.to(F64).view(1, 1, 97, 97)
    xo, _, mo = regrid(
        x, torch.ones_like(x), torch.zeros_like(x, dtype=torch.bool), 0.262, 0.396, (64, 64)
    )
    assert not mo.any()
    c = coarse.to(F64)
    assert abs(float(xo.sum()) - float(c.sum())) < 0.01 * float(c.sum())
    assert float((xo[0, 0] - c).abs().max()) < 0.03 * float(c.max())


def test_encode_regrids_other_pixel_scales() -> None:
    """The packaged model reads a DECaLS-pixel stamp regridded (no warning about the pixel
    scale) or, with regrid_pixels=False, as given (with it)."""
    import warnings

    m = galae.load()
    kw = {"flux": 50.0, "r_half_major_arcsec": 2.0, "sersic_n": 1.0, "q": 0.7, "pa_deg": 0.0}
    one = galae.render_profile("sersic", shape=(96, 96), pixel_scale_arcsec=0.262, **kw)
    images = one.expand(1, 5, 96, 96).clone() * torch.tensor([0.3, 0.6, 1.0, 1.3, 1.5]).view(
        1, 5, 1, 1
    )
    sigma = torch.full_like(images, 0.05)
    images = images + sigma * torch.randn(images.shape, generator=torch.Generator().manual_seed(1))
    args = {"psf_fwhm_arcsec": 1.3, "redshift": [0.05], "pixel_scale_arcsec": 0.262}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = m.encode(images, sigma, n_mc_derived=2, **args)
        said = [str(w.message) for w in caught]
    assert not [t for t in said if "pixel scale" in t]
    assert post.model_images.shape == (1, 5, 96, 96)
    with pytest.warns(RuntimeWarning, match="pixel scale 0.262 differs"):
        m.encode(images, sigma, n_mc_derived=2, regrid_pixels=False, **args)
