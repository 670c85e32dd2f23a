"""Tests of galae.data.segmentation.neighbour_mask on synthetic stamps with known truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from galae.data.segmentation import (
    DEFAULT_SEGMENTATION,
    SegmentationSettings,
    _detection,
    _validate,
    neighbour_mask,
)

H = W = 64
CY = CX = (H - 1) / 2.0
# five bands: colours of the sources relative to the "r" band, and per-band noise sigma
GALAXY_COLOUR = np.array([0.4, 0.8, 1.0, 1.2, 1.3])
STAR_COLOUR = np.array([0.2, 0.6, 1.0, 1.3, 1.5])
NEIGHBOUR_COLOUR = np.array([0.3, 0.7, 1.0, 1.1, 1.2])
SIGMA = np.array([1.5, 0.6, 1.0, 1.4, 4.0])
YY, XX = np.mgrid[0:H, 0:W].astype(np.float64)


def gaussian(y0: float, x0: float, sig: float, amp: float, q: float = 1.0, pa: float = 0.0):
    """Elliptical Gaussian (H, W) of peak ``amp``; sigma ``sig`` along the major axis."""
    dy, dx = YY - y0, XX - x0
    u = dx * np.cos(pa) + dy * np.sin(pa)
    v = -dx * np.sin(pa) + dy * np.cos(pa)
    return amp * np.exp(-0.5 * (u**2 + (v / q) ** 2) / sig**2)


def exp_disc(r_d: float, amp: float, q: float = 1.0, pa: float = 0.0, y0=CY, x0=CX):
    """Exponential disc (H, W) of central value ``amp`` and scale length ``r_d`` pixels."""
    dy, dx = YY - y0, XX - x0
    u = dx * np.cos(pa) + dy * np.sin(pa)
    v = -dx * np.sin(pa) + dy * np.cos(pa)
    return amp * np.exp(-np.hypot(u, v / q) / r_d)


def observe(*parts: tuple[np.ndarray, np.ndarray], seed: int = 0, n: int = 1):
    """(N, 5, H, W) noisy images of the sum of (r-band image, colour) parts, and sigma."""
    rng = np.random.default_rng(seed)
    model = sum(colour[:, None, None] * img[None] for img, colour in parts)
    sig = np.broadcast_to(SIGMA[:, None, None], (5, H, W))
    images = model[None] + sig[None] * rng.standard_normal((n, 5, H, W))
    return images.astype(np.float32), np.broadcast_to(sig, (n, 5, H, W)).astype(np.float32)


def masked_fraction(mask2d: np.ndarray, light: np.ndarray) -> float:
    """Fraction of the (noiseless) light under the mask."""
    return float((light * mask2d).sum() / light.sum())


R_CENTRE = np.hypot(YY - CY, XX - CX)


# ------------------------------------------------------------------------------------------
# behaviour on synthetic stamps
# ------------------------------------------------------------------------------------------


def test_separated_star_is_masked_and_galaxy_is_not():
    galaxy = gaussian(CY, CX, 5.0, 12.0, q=0.6, pa=0.5)
    star = gaussian(12.0, 50.0, 1.5, 40.0)
    images, sigma = observe((galaxy, GALAXY_COLOUR), (star, STAR_COLOUR), seed=1)
    m = neighbour_mask(images, sigma)
    m2 = m[0, 2]
    # every pixel within 4 px of the star is masked (PSF core + growth)
    assert m2[np.hypot(YY - 12.0, XX - 50.0) <= 4.0].all()
    # at least 95% of the star's light is covered
    assert masked_fraction(m2, star) > 0.95
    # the galaxy: nothing within 10 px of the centre, < 0.5% of its light
    assert not m2[R_CENTRE <= 10.0].any()
    assert masked_fraction(m2, galaxy) < 0.005


def test_overlapping_bright_neighbour_is_deblended():
    galaxy = exp_disc(4.0, 40.0, q=0.8, pa=0.3)
    ny, nx = CY + 10.0, CX - 10.0  # 14.1 px from the centre
    neighbour = gaussian(ny, nx, 2.5, 30.0, q=0.8)
    # the two overlap: one connected component well above the noise (r band > 1 sigma)
    from scipy import ndimage

    lab, _ = ndimage.label(galaxy + neighbour > 1.0 * SIGMA[2])
    assert lab[int(ny), int(nx)] == lab[int(CY), int(CX)] != 0
    images, sigma = observe((galaxy, GALAXY_COLOUR), (neighbour, NEIGHBOUR_COLOUR), seed=2)
    m2 = neighbour_mask(images, sigma)[0, 0]
    assert m2[int(round(ny)), int(round(nx))]
    assert m2[np.hypot(YY - ny, XX - nx) <= 2.5].all()
    assert masked_fraction(m2, neighbour) > 0.6
    # the centre stays unmasked and little of the galaxy's light is lost
    assert not m2[R_CENTRE <= 5.0].any()
    assert masked_fraction(m2, galaxy) < 0.03


def clumpy_spiral(seed: int, amp: float = 100.0, rel: float = 1.5):
    """Exponential disc (r_d = 6 px) with a two-armed spiral and six compact blue clumps.

    The clumps (sigma 1 px, i.e. ~0.2 kpc at z ~ 0.05) peak at ``rel`` times the mean local
    disc at radii 4-16 px.  Returns (images, sigma, galaxy r-band light, clump light, clump
    positions).
    """
    r = np.hypot(YY - CY, XX - CX)
    theta = np.arctan2(YY - CY, XX - CX)
    pitch = np.deg2rad(20.0)
    arms = 1.0 + 0.6 * np.cos(2.0 * (theta - np.log(np.maximum(r, 1.0)) / np.tan(pitch)))
    disc = exp_disc(6.0, amp) * arms
    rng = np.random.default_rng(seed)
    clumps = np.zeros((H, W))
    pos = []
    for rad in (4.0, 7.0, 9.0, 11.0, 13.0, 16.0):
        ang = rng.uniform(0, 2 * np.pi)
        y0, x0 = CY + rad * np.sin(ang), CX + rad * np.cos(ang)
        pos.append((y0, x0))
        clumps += gaussian(y0, x0, 1.0, rel * amp * np.exp(-rad / 6.0))
    blue = np.array([1.5, 1.2, 1.0, 0.8, 0.7])
    images, sigma = observe((disc, GALAXY_COLOUR), (clumps, blue), seed=seed)
    return images, sigma, disc + clumps, clumps, pos


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_galaxy_with_clumps_and_arms_gets_no_mask(seed: int):
    images, sigma, galaxy, clumps, pos = clumpy_spiral(seed)
    m2 = neighbour_mask(images, sigma)[0, 0]
    assert masked_fraction(m2, galaxy) < 0.002
    assert masked_fraction(m2, clumps) < 0.005
    for y0, x0 in pos:
        assert not m2[int(round(y0)), int(round(x0))]


def test_clump_safeguard_matters():
    # the same galaxy without the flux (DEBLEND_MINCONT-like) and symmetry safeguards and with
    # a low contrast: its clumps and arms get shredded as SExtractor-like deblending would
    images, sigma, galaxy, clumps, _ = clumpy_spiral(5)
    permissive = dataclasses.replace(
        DEFAULT_SEGMENTATION,
        deblend_mincont=0.0,
        deblend_max_mirror=10.0,
        deblend_contrast=0.2,
        deblend_max_saddle=1.0,
    )
    m2 = neighbour_mask(images, sigma, settings=permissive)[0, 0]
    assert masked_fraction(m2, clumps) > 0.05


def test_point_symmetric_structure_is_not_masked():
    # a bar with bright ansae at +-14 px (or a two-armed galaxy): symmetric about the centre,
    # hence galaxy light, even though each ansa is a separate peak of high contrast
    galaxy = exp_disc(5.0, 30.0, q=0.7) + gaussian(CY, CX, 8.0, 6.0, q=0.25, pa=0.4)
    for sgn in (1.0, -1.0):
        galaxy = galaxy + gaussian(
            CY + sgn * 14.0 * np.sin(0.4), CX + sgn * 14.0 * np.cos(0.4), 2.5, 30.0
        )
    images, sigma = observe((galaxy, GALAXY_COLOUR), seed=4)
    assert masked_fraction(neighbour_mask(images, sigma)[0, 0], galaxy) < 0.002
    # without the symmetry test both ansae would be masked
    no_symmetry = dataclasses.replace(DEFAULT_SEGMENTATION, deblend_max_mirror=10.0)
    m2 = neighbour_mask(images, sigma, settings=no_symmetry)[0, 0]
    assert masked_fraction(m2, galaxy) > 0.05


def test_opposite_pair_of_neighbours_is_found():
    # two neighbours on opposite sides of the galaxy (n2 4 px from n1's mirror point) must not
    # hide each other by symmetry: once the brighter is found, it no longer counts as galaxy
    galaxy = exp_disc(4.0, 40.0, q=0.8, pa=0.3)
    n1 = gaussian(CY + 12.0, CX - 8.0, 2.5, 60.0, q=0.8)
    n2 = gaussian(CY - 12.0, CX + 12.0, 2.0, 25.0, q=0.7)
    images, sigma = observe(
        (galaxy, GALAXY_COLOUR), (n1, NEIGHBOUR_COLOUR), (n2, STAR_COLOUR), seed=8
    )
    m2 = neighbour_mask(images, sigma)[0, 0]
    assert masked_fraction(m2, n1) > 0.6
    assert masked_fraction(m2, n2) > 0.6
    assert not m2[R_CENTRE <= 5.0].any()
    assert masked_fraction(m2, galaxy) < 0.05


def test_pure_noise_has_unit_detection_noise_and_no_mask():
    images, sigma = observe((np.zeros((H, W)), GALAXY_COLOUR), seed=6, n=8)
    x, sig, valid, _ = _validate(images, sigma, None)
    _, s, ok = _detection(x, sig, valid, DEFAULT_SEGMENTATION.smooth_fwhm_pix)
    inner = s[:, 8:-8, 8:-8]  # away from the edges (correlated noise, finite sample)
    assert ok.all()
    assert abs(float(inner.std()) - 1.0) < 0.1
    assert abs(float(inner.mean())) < 0.1
    assert not neighbour_mask(images, sigma).any()


# ------------------------------------------------------------------------------------------
# interface
# ------------------------------------------------------------------------------------------


def _star_field(n: int = 2, seed: int = 7):
    galaxy = gaussian(CY, CX, 4.0, 15.0)
    star = gaussian(50.0, 14.0, 1.5, 40.0)
    return observe((galaxy, GALAXY_COLOUR), (star, STAR_COLOUR), seed=seed, n=n)


def test_output_shape_dtype_same_in_every_band_and_not_ored_with_mask():
    images, sigma = _star_field(n=3)
    mask = np.zeros(images.shape, dtype=bool)
    mask[:, :, 0:3, 60:64] = True  # a masked corner far from any source
    m = neighbour_mask(images, sigma, mask)
    assert m.shape == images.shape
    assert m.dtype == np.bool_
    assert (m == m[:, :1]).all()
    assert not m[:, :, 0:3, 60:64].any()
    assert m[:, :, 50, 14].all()


def test_single_galaxy_input_matches_batch():
    images, sigma = _star_field(n=2)
    batch = neighbour_mask(images, sigma)
    one = neighbour_mask(images[1], sigma[1])
    assert one.shape == images.shape[1:]
    np.testing.assert_array_equal(one, batch[1])
    # per-band sigma (C,) for a single galaxy
    np.testing.assert_array_equal(neighbour_mask(images[1], SIGMA), batch[1])


def test_per_band_sigma_is_accepted():
    images, sigma = _star_field(n=2)
    per_band = np.tile(SIGMA, (2, 1))  # (N, C)
    np.testing.assert_array_equal(neighbour_mask(images, per_band), neighbour_mask(images, sigma))


def test_nan_pixels_are_treated_as_masked():
    images, sigma = _star_field(n=1)
    images = images.copy()
    sigma = sigma.copy()
    images[0, 1, 20:30, 20:25] = np.nan  # one band
    images[0, :, 40:44, 40:44] = np.nan  # all bands
    images[0, 3, 5, 5] = np.inf
    sigma[0, :, 40:44, 40:44] = np.nan  # sigma is ignored where the image is not finite
    m = neighbour_mask(images, sigma)
    assert m.shape == images.shape
    assert m[0, :, 50, 14].all()  # the star is still found
    assert not m[0, :, 28:36, 28:36].any()  # the galaxy is not
    # a mask given explicitly behaves the same as NaN there
    clean, _ = _star_field(n=1)
    clean = clean.copy()
    clean[0, :, 40:44, 40:44] = 123.0
    given = np.zeros(clean.shape, dtype=bool)
    given[0, :, 40:44, 40:44] = True
    assert neighbour_mask(clean, SIGMA[None], given)[0, :, 50, 14].all()


def test_chunked_batches_match(monkeypatch: pytest.MonkeyPatch):
    from galae.data import segmentation as seg

    images, sigma = _star_field(n=5)
    whole = neighbour_mask(images, sigma)
    monkeypatch.setattr(seg, "_CHUNK", 2)
    np.testing.assert_array_equal(neighbour_mask(images, sigma), whole)
    sigma = sigma.copy()
    sigma[4, 1, 3, 3] = 0.0
    with pytest.raises(ValueError, match=r"first at index \(4, 1, 3, 3\)"):
        neighbour_mask(images, sigma)


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, np.inf])
def test_bad_sigma_raises_naming_sigma(bad: float):
    images, sigma = _star_field(n=1)
    sigma = sigma.copy()
    sigma[0, 2, 10, 10] = bad
    with pytest.raises(ValueError, match=r"sigma must be finite and > 0"):
        neighbour_mask(images, sigma)
    # fine where that pixel is masked
    mask = np.zeros(images.shape, dtype=bool)
    mask[0, 2, 10, 10] = True
    neighbour_mask(images, sigma, mask)
    per_band = np.tile(SIGMA, (1, 1))
    per_band[0, 4] = bad
    with pytest.raises(ValueError, match=r"sigma must be finite and > 0"):
        neighbour_mask(images, per_band)


def test_shape_errors_name_the_problem():
    images, sigma = _star_field(n=2)
    with pytest.raises(ValueError, match=r"sigma shape .* does not match images shape"):
        neighbour_mask(images, sigma[:, :4])
    with pytest.raises(ValueError, match=r"sigma shape .* does not match images shape"):
        neighbour_mask(images, np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"mask shape .* does not match images shape"):
        neighbour_mask(images, sigma, np.zeros((2, 5, 32, 32), dtype=bool))
    with pytest.raises(ValueError, match=r"images must have shape \(N, C, H, W\)"):
        neighbour_mask(images[0, 0], sigma[0, 0])
    with pytest.raises(ValueError, match=r"mask must be a boolean array"):
        neighbour_mask(images, sigma, np.zeros(images.shape, dtype=np.float32))


def test_settings_frozen_validated_and_replaceable():
    st = SegmentationSettings()
    assert st == DEFAULT_SEGMENTATION
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.detect_thresh = 1.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="detect_thresh"):
        SegmentationSettings(detect_thresh=0.0)
    with pytest.raises(ValueError, match="grow_pix"):
        SegmentationSettings(grow_pix=-1.0)
    with pytest.raises(ValueError, match="deblend_contrast"):
        SegmentationSettings(deblend_contrast=1.0)
    # no growth: the star's mask shrinks but is still there
    images, sigma = _star_field(n=1)
    tight = dataclasses.replace(DEFAULT_SEGMENTATION, grow_pix=0.0, grow_per_mag_pix=0.0)
    m_tight = neighbour_mask(images, sigma, settings=tight)
    m_def = neighbour_mask(images, sigma)
    assert m_tight[0, 0, 50, 14]
    assert m_tight.sum() < m_def.sum()
    assert not (m_tight & ~m_def).any()
    with pytest.raises(ValueError, match="settings"):
        neighbour_mask(images, sigma, settings={"grow_pix": 1.0})  # type: ignore[arg-type]


def test_real_sdss_stamp_masks_the_two_neighbours_and_not_the_galaxy() -> None:
    """A real SDSS Stripe-82 ugriz stamp (tests/data/celeste_sdss, see ATTRIBUTION.md): an
    edge-on disk at the centre and two neighbours (top right, bottom left), checked by eye in
    ``python -m galae.plots segment``.  The two neighbours are masked as two regions, each
    holding a local r-band maximum; no pixel within 6 pixels (2.4") of the centre is masked."""
    from pathlib import Path

    from scipy import ndimage

    from galae.data.fits import load_fits_cutouts

    folder = Path(__file__).parent / "data" / "celeste_sdss"
    cut = load_fits_cutouts(
        {b: folder / f"stamp-{b}-5.0073-0.0739.fits" for b in "ugriz"}, ivar_hdu=1
    )
    other = neighbour_mask(cut.images, cut.sigma, cut.mask)
    assert other.shape == cut.images.shape and bool((other == other[:1]).all())
    yy, xx = np.mgrid[0:51, 0:51]
    assert not other[2][np.hypot(yy - 25, xx - 25) <= 6].any()
    labels, n = ndimage.label(other[2])
    assert n == 2
    r_band = ndimage.gaussian_filter(cut.images[2].astype(np.float64), 1.0)
    for k in (1, 2):
        region = labels == k
        peak = np.unravel_index(np.argmax(np.where(region, r_band, -np.inf)), region.shape)
        # the region's brightest pixel is a true local maximum, well above the sky: white noise
        # smoothed by a unit-sigma Gaussian shrinks by 1 / (2 sqrt(pi))
        window = r_band[max(peak[0] - 2, 0) : peak[0] + 3, max(peak[1] - 2, 0) : peak[1] + 3]
        assert r_band[peak] == window.max()
        assert r_band[peak] > 5 * np.median(cut.sigma[2]) / (2 * np.sqrt(np.pi))


# ------------------------------------------------------------------------------------------
# a whole HDF5 data set
# ------------------------------------------------------------------------------------------


def _star_field_h5(path, n: int = 3):
    from galae.data.hdf5 import H5Writer

    images, sigma = _star_field(n=n)
    mask = np.zeros(images.shape, dtype=bool)
    mask[:, 1, 0:2, 0:2] = True  # a bad corner already masked in the data
    with H5Writer(path, bands="ugriz", pixel_scale_arcsec=0.396) as w:
        w.append(
            {
                "images": images,
                "sigma": sigma,
                "mask": mask,
                "redshift": np.full(n, 0.1, dtype=np.float32),
                "psf_fwhm_arcsec": np.full((n, 5), 1.3, dtype=np.float32),
                "truth/params/log10_mstar_msun": np.full(n, 10.0, dtype=np.float32),
            }
        )
    return images, sigma, mask


def test_mask_neighbours_h5_ors_the_segmentation_into_a_copy(tmp_path) -> None:
    import h5py

    from galae.data.segmentation import main, mask_neighbours_h5

    src, dst = tmp_path / "in.h5", tmp_path / "out.h5"
    images, sigma, mask = _star_field_h5(src)
    frac = mask_neighbours_h5(src, dst, chunk=2, progress=False)  # chunks of 2, 1 galaxies
    expected = mask | neighbour_mask(images, sigma, mask)
    with h5py.File(dst) as f, h5py.File(src) as g:
        np.testing.assert_array_equal(f["mask"][:], expected)
        assert f["mask"][:, :, 50, 14].all() and not f["mask"][:, :, 32, 32].any()
        for key in (
            "images",
            "sigma",
            "redshift",
            "psf_fwhm_arcsec",
            "truth/params/log10_mstar_msun",
        ):
            np.testing.assert_array_equal(f[key][:], g[key][:])
        np.testing.assert_array_equal(g["mask"][:], mask)  # the source is untouched
        assert "neighbours_masked" in f.attrs and "neighbours_masked" not in g.attrs
    assert frac == pytest.approx((expected & ~mask).mean())
    # refused: masking twice, overwriting without being asked, the source itself, bad chunk
    with pytest.raises(ValueError, match="already masked"):
        mask_neighbours_h5(dst, tmp_path / "again.h5", progress=False)
    with pytest.raises(FileExistsError, match="out.h5 exists"):
        mask_neighbours_h5(src, dst, progress=False)
    with pytest.raises(ValueError, match="same file"):
        mask_neighbours_h5(src, src, overwrite=True, progress=False)
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        mask_neighbours_h5(src, tmp_path / "c.h5", chunk=0, progress=False)
    # a truncated source is an error naming it, and leaves no copy behind
    bad = tmp_path / "bad.h5"
    bad.write_bytes(src.read_bytes()[:2000])
    with pytest.raises(OSError, match="bad.h5"):
        mask_neighbours_h5(bad, tmp_path / "bad_out.h5", progress=False)
    assert not (tmp_path / "bad_out.h5").exists()
    # the command line
    assert main([str(src), str(tmp_path / "cli.h5")]) == tmp_path / "cli.h5"
    with pytest.raises(SystemExit):
        main([str(src), str(tmp_path / "cli.h5")])
