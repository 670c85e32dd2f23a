"""Tests of FITS cutout reading (galae.data.fits) on a real SDSS Stripe-82 stamp."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from galae.data.fits import (
    Cutout,
    GaussianMixturePSF,
    crop_cutout,
    cutouts_to_h5,
    fill_missing_bands,
    load_fits_cutouts,
    mixture_fwhm_pix,
    render_mixture,
    sdss_psf_mixture,
    split_hdu_selector,
)
from galae.data.hdf5 import GalaxyH5Dataset, read_h5

DATA = Path(__file__).parent / "data" / "celeste_sdss"
BANDS = ("u", "g", "r", "i", "z")
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def stamp(band: str) -> Path:
    return DATA / f"stamp-{band}-5.0073-0.0739.fits"


@pytest.fixture(scope="module")
def cut() -> Cutout:
    return load_fits_cutouts({b: stamp(b) for b in BANDS}, ivar_hdu=1)


def test_reads_sdss_stamp(cut: Cutout) -> None:
    assert cut.bands == BANDS
    assert cut.images.shape == cut.sigma.shape == cut.mask.shape == (5, 51, 51)
    assert cut.images.dtype == np.float32 and cut.mask.dtype == np.bool_
    # CD = 1.1e-4 deg / pixel = 0.396"
    assert cut.pixel_scale_arcsec == pytest.approx(0.396, rel=1e-9)
    ra, dec = cut.wcs.pixel_to_world_values(25, 25)  # 0-based centre pixel = CRPIX 26
    assert ra == pytest.approx(5.00732921867273, abs=1e-8)
    assert dec == pytest.approx(0.073940885179479, abs=1e-8)
    # zero inverse variance -> masked: 102 pixels in g, 4 in i (epoch 0 of the stamp)
    assert cut.mask.sum(axis=(1, 2)).tolist() == [0, 102, 0, 4, 0]
    assert np.all(cut.sigma > 0) and np.all(np.isfinite(cut.images))
    for k, band in enumerate(BANDS):
        with fits.open(stamp(band)) as h:
            img, ivar = h[0].data.astype(np.float64), h[1].data.astype(np.float64)
        good = ivar > 0
        np.testing.assert_allclose(cut.sigma[k][good], 1.0 / np.sqrt(ivar[good]), rtol=1e-6)
        np.testing.assert_allclose(cut.images[k], img, rtol=1e-6)  # already nanomaggies


def test_flux_is_in_nanomaggies(cut: Cutout) -> None:
    """Aperture flux vs the Stripe-82 coadd cmodel r flux of this galaxy (7.087 nMgy).

    An 8-pixel (3.2") aperture with a local background holds 0.5-1.0 of the total light of
    this r_e = 2" disk; pixels in counts would be ~200 times larger.
    """
    k = BANDS.index("r")
    yy, xx = np.mgrid[:51, :51]
    rr2 = (xx - 25) ** 2 + (yy - 25) ** 2
    background = np.median(cut.images[k][rr2 > 20**2])
    flux = float((cut.images[k][rr2 <= 64] - background).sum())
    assert 0.5 < flux / 7.087 < 1.0


def test_sigma_matches_sdss_noise_model(cut: Cutout) -> None:
    """ivar ~ 1 / (((img / CALIB + SKY) / GAIN + DARKVAR) CALIB^2) (checked in MANIFEST.md)."""
    for k, band in enumerate(BANDS):
        hd = fits.getheader(stamp(band))
        img = cut.images[k].astype(np.float64)
        counts = img / hd["CALIB"] + hd["SKY"]
        model_sigma = np.sqrt(counts / hd["GAIN"] + hd["DARKVAR"]) * hd["CALIB"]
        ratio = np.median(cut.sigma[k][~cut.mask[k]] / model_sigma[~cut.mask[k]])
        assert ratio == pytest.approx(1.0, abs=0.1), band


def test_psf_from_header(cut: Cutout) -> None:
    assert cut.psf_fwhm_arcsec is not None and cut.psf_image is not None
    assert cut.psf_image.shape == (5, 25, 25)
    np.testing.assert_allclose(cut.psf_image.sum(axis=(1, 2)), 1.0, rtol=1e-5)
    assert all(np.unravel_index(p.argmax(), p.shape) == (12, 12) for p in cut.psf_image)
    half = load_fits_cutouts(
        {b: stamp(b) for b in BANDS}, ivar_hdu=1, psf_fwhm_definition="half_maximum"
    ).psf_fwhm_arcsec
    # The SDSS PSF has wings: effective width > literal FWHM; both plausible seeing.
    assert np.all(cut.psf_fwhm_arcsec > half)
    assert np.all((half > 0.7) & (cut.psf_fwhm_arcsec < 2.0))
    # r-band core variance 0.818 / 0.736 pix^2: half maximum close to the core Gaussian's FWHM
    hd = fits.getheader(stamp("r"))
    core = FWHM_PER_SIGMA * (hd["PSF_P9"] * hd["PSF_P10"]) ** 0.25 * 0.396
    assert half[2] == pytest.approx(core, rel=0.1)
    explicit = load_fits_cutouts({b: stamp(b) for b in BANDS}, ivar_hdu=1, psf_fwhm_arcsec=1.5)
    np.testing.assert_allclose(explicit.psf_fwhm_arcsec, 1.5)


@pytest.mark.parametrize("definition", ["effective", "half_maximum"])
def test_mixture_fwhm_of_single_gaussians(definition: str) -> None:
    """One Gaussian (sx, sy): both definitions give FWHM = 2.3548 sqrt(sx sy)."""
    for sx, sy in ((1.0, 1.0), (1.5, 0.8)):
        mix = GaussianMixturePSF(
            np.array([2.0]), np.array([[0.3, -0.2]]), np.array([[[sx**2, 0.0], [0.0, sy**2]]])
        )
        expected = FWHM_PER_SIGMA * math.sqrt(sx * sy)
        assert mixture_fwhm_pix(mix, definition) == pytest.approx(expected, rel=2e-3)


def test_mixture_helpers_validate() -> None:
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixturePSF(np.ones(1), np.zeros((1, 2)), np.array([[[1.0, 2.0], [2.0, 1.0]]]))
    mix = sdss_psf_mixture(fits.getheader(stamp("r")))
    assert mix is not None and mix.amplitudes.shape == (3,)
    with pytest.raises(ValueError, match="odd"):
        render_mixture(mix, 24)
    with pytest.raises(ValueError, match="unknown psf_fwhm_definition"):
        mixture_fwhm_pix(mix, "fwhm")
    assert sdss_psf_mixture(fits.Header()) is None


def test_band_order_and_count_enforced() -> None:
    wrong_order = {b: stamp(b) for b in ("g", "u", "r", "i", "z")}
    with pytest.raises(ValueError, match=r"bands given as g,u,r,i,z \(5\); expected u,g,r,i,z"):
        load_fits_cutouts(wrong_order, ivar_hdu=1)
    four = {b: stamp(b) for b in ("u", "g", "r", "i")}
    with pytest.raises(ValueError, match=r"u,g,r,i \(4\); expected u,g,r,i,z \(5\)"):
        load_fits_cutouts(four, ivar_hdu=1)
    # bands=None accepts any set, in the order given
    gr = load_fits_cutouts({"r": stamp("r"), "g": stamp("g")}, ivar_hdu=1, bands=None)
    assert gr.bands == ("r", "g") and gr.images.shape == (2, 51, 51)
    # a file labelled as another band
    mislabelled = {b: stamp(b) for b in BANDS}
    mislabelled["g"] = stamp("r")
    with pytest.raises(ValueError, match="BAND header is 'r', not 'g'"):
        load_fits_cutouts(mislabelled, ivar_hdu=1)


def test_units(tmp_path: Path, cut: Cutout) -> None:
    paths = {b: stamp(b) for b in BANDS}
    counts = load_fits_cutouts(paths, ivar_hdu=1, image_unit="counts")
    nmgy = np.array([fits.getheader(stamp(b))["NMGY"] for b in BANDS])
    np.testing.assert_allclose(counts.images, cut.images * nmgy[:, None, None], rtol=1e-5)
    np.testing.assert_allclose(counts.sigma, cut.sigma * nmgy[:, None, None], rtol=1e-5)
    zp = load_fits_cutouts(paths, ivar_hdu=1, zero_point_mag=27.0)
    np.testing.assert_allclose(zp.images, cut.images * 10 ** (-0.4 * 4.5), rtol=1e-5)

    # BUNIT nJy: 1 nmgy = 3631 nJy
    data = np.full((9, 9), 3631.0, np.float32)
    header = fits.Header({"BUNIT": "nJy"})
    fits.HDUList([fits.PrimaryHDU(data, header), fits.ImageHDU(np.ones((9, 9)))]).writeto(
        tmp_path / "njy.fits"
    )
    one = load_fits_cutouts(
        {"x": tmp_path / "njy.fits"}, ivar_hdu=1, bands=None, pixel_scale_arcsec=0.2
    )
    np.testing.assert_allclose(one.images, 1.0, rtol=1e-6)
    np.testing.assert_allclose(one.sigma, 1.0 / 3631.0, rtol=1e-6)
    assert one.wcs is None and one.psf_fwhm_arcsec is None and one.pixel_scale_arcsec == 0.2

    fits.HDUList(
        [fits.PrimaryHDU(data, fits.Header({"BUNIT": "DN"})), fits.ImageHDU(data)]
    ).writeto(tmp_path / "dn.fits")
    with pytest.raises(ValueError, match=r"dn\.fits.*unknown pixel units"):
        load_fits_cutouts({"x": tmp_path / "dn.fits"}, ivar_hdu=1, bands=None, pixel_scale_arcsec=1)
    fits.HDUList([fits.PrimaryHDU(data), fits.ImageHDU(data)]).writeto(tmp_path / "none.fits")
    with pytest.raises(ValueError, match="unknown pixel units"):
        load_fits_cutouts(
            {"x": tmp_path / "none.fits"}, ivar_hdu=1, bands=None, pixel_scale_arcsec=1
        )
    with pytest.raises(ValueError, match="no celestial WCS"):
        load_fits_cutouts({"x": tmp_path / "njy.fits"}, ivar_hdu=1, bands=None)


def test_nan_pixels_and_separate_ivar_files(tmp_path: Path) -> None:
    img = np.ones((7, 7), np.float32)
    img[2, 3] = np.nan
    ivar = np.full((7, 7), 4.0, np.float32)
    ivar[0, 0] = 0.0
    ivar[1, 1] = -1.0
    fits.PrimaryHDU(img, fits.Header({"BUNIT": "nanomaggy"})).writeto(tmp_path / "im.fits")
    fits.PrimaryHDU(ivar).writeto(tmp_path / "iv.fits")
    c = load_fits_cutouts(
        {"r": tmp_path / "im.fits"},
        {"r": tmp_path / "iv.fits"},
        bands=("r",),
        pixel_scale_arcsec=0.396,
        psf_fwhm_arcsec=[1.2],
    )
    assert c.mask[0, 2, 3] and c.mask[0, 0, 0] and c.mask[0, 1, 1] and c.mask.sum() == 3
    assert c.images[0, 2, 3] == 0.0 and np.all(c.sigma == 0.5)
    with pytest.raises(ValueError, match="no inverse variance"):
        load_fits_cutouts({"r": tmp_path / "im.fits"}, bands=("r",), pixel_scale_arcsec=0.396)
    with pytest.raises(FileNotFoundError, match="missing.fits"):
        load_fits_cutouts({"r": tmp_path / "missing.fits"}, ivar_hdu=1, bands=("r",))


def test_crop_keeps_wcs(cut: Cutout) -> None:
    small = crop_cutout(cut, (21, 21))
    assert small.images.shape == (5, 21, 21)
    np.testing.assert_array_equal(small.images, cut.images[:, 15:36, 15:36])
    got = np.array(small.wcs.pixel_to_world_values(10, 10), dtype=float)
    want = np.array(cut.wcs.pixel_to_world_values(25, 25), dtype=float)
    np.testing.assert_allclose(got, want, atol=1e-10)
    with pytest.raises(ValueError, match="does not fit"):
        crop_cutout(cut, (21, 21), center_pix=(5, 25))


def test_fill_missing_bands_masks_them(cut: Cutout) -> None:
    """A band left out comes back as a fully masked plane with the given PSF FWHM; the bands
    that were there are unchanged; wrong orders and unknown bands are errors."""
    from dataclasses import replace

    keep = [1, 2, 3, 4]  # no u
    nou = replace(
        cut,
        images=cut.images[keep],
        sigma=cut.sigma[keep],
        mask=cut.mask[keep],
        bands=tuple(cut.bands[i] for i in keep),
        psf_fwhm_arcsec=cut.psf_fwhm_arcsec[keep],
        psf_image=None if cut.psf_image is None else cut.psf_image[keep],
        sources=tuple(cut.sources[i] for i in keep),
    )
    full = fill_missing_bands(nou, "ugriz", {"u": 1.5})
    assert full.bands == tuple("ugriz") and full.images.shape == cut.images.shape
    assert bool(full.mask[0].all()) and full.sources[0] == "(missing)"
    assert full.psf_fwhm_arcsec[0] == pytest.approx(1.5)
    for name in ("images", "sigma", "mask", "psf_fwhm_arcsec"):
        np.testing.assert_array_equal(getattr(full, name)[1:], getattr(cut, name)[1:])
    if full.psf_image is not None:
        assert full.psf_image[0].sum() == pytest.approx(1.0, abs=1e-5)
    assert fill_missing_bands(cut, "ugriz", {}) is cut
    with pytest.raises(ValueError, match="no PSF FWHM"):
        fill_missing_bands(nou, "ugriz", {})
    with pytest.raises(ValueError, match="not among"):
        fill_missing_bands(nou, "ugri", {"u": 1.5})
    with pytest.raises(ValueError, match="not in the order"):
        fill_missing_bands(nou, "uzgri", {"u": 1.5})


def test_cutouts_to_h5_round_trip(tmp_path: Path, cut: Cutout) -> None:
    other = crop_cutout(cut, (51, 51))
    path = cutouts_to_h5(tmp_path / "real.h5", [cut, other], redshift=[0.05, np.nan])
    ds = GalaxyH5Dataset(path, expected_bands=BANDS)
    assert len(ds) == 2 and ds.pixel_scale_arcsec == pytest.approx(0.396)
    item = ds[0]
    np.testing.assert_array_equal(item["image"].numpy(), cut.images)
    np.testing.assert_array_equal(item["mask"].numpy(), cut.mask)
    np.testing.assert_allclose(item["psf_fwhm_arcsec"].numpy(), cut.psf_fwhm_arcsec)
    assert item["psf_image"].shape == (5, 25, 25)
    got = read_h5(path)
    assert got["redshift"][0] == pytest.approx(0.05) and np.isnan(got["redshift"][1])
    assert "stamp-u-5.0073-0.0739.fits" in got["attrs"]["generator_config"]
    with pytest.raises(ValueError, match="crop them"):
        cutouts_to_h5(tmp_path / "bad.h5", [cut, crop_cutout(cut, (21, 21))])


def test_hdu_selectors_read_multi_extension_cutouts(tmp_path: Path) -> None:
    """A Legacy-Surveys-style file (g, its inverse variance, r, ...) read band by band with
    CFITSIO's FILE[N] and FILE[EXTNAME], as from one file per band."""
    rng = np.random.default_rng(0)
    hdus = [fits.PrimaryHDU()]
    for band in ("g", "r"):
        img = rng.normal(1.0, 0.1, (9, 9)).astype(np.float32)
        hdr = fits.Header({"BUNIT": "nanomaggy", "EXTNAME": f"IMAGE_{band.upper()}"})
        hdus.append(fits.ImageHDU(img, hdr))
        hdus.append(fits.ImageHDU(np.full((9, 9), 100.0, np.float32), name=f"IVAR_{band.upper()}"))
        fits.PrimaryHDU(img, fits.Header({"BUNIT": "nanomaggy"})).writeto(tmp_path / f"{band}.fits")
    fits.HDUList(hdus).writeto(tmp_path / "all.fits")
    kw = {"bands": ("g", "r"), "pixel_scale_arcsec": 0.262, "psf_fwhm_arcsec": 1.3}
    f = tmp_path / "all.fits"
    by_index = load_fits_cutouts(
        {"g": f"{f}[1]", "r": f"{f}[3]"}, {"g": f"{f}[2]", "r": f"{f}[4]"}, **kw
    )
    by_name = load_fits_cutouts(
        {"g": f"{f}[IMAGE_G]", "r": f"{f}[image_r]"},
        {"g": f"{f}[IVAR_G]", "r": f"{f}[IVAR_R]"},
        **kw,
    )
    ivar = fits.PrimaryHDU(np.full((9, 9), 100.0, np.float32))
    ivar.writeto(tmp_path / "iv.fits")
    separate = load_fits_cutouts(
        {b: tmp_path / f"{b}.fits" for b in ("g", "r")},
        {b: tmp_path / "iv.fits" for b in "gr"},
        **kw,
    )
    for c in (by_index, by_name):
        assert np.array_equal(c.images, separate.images) and np.allclose(c.sigma, 0.1)
    assert split_hdu_selector("a.fits[2]", 0) == (Path("a.fits"), 2)
    assert split_hdu_selector("a.fits", 5) == (Path("a.fits"), 5)
    with pytest.raises(ValueError, match="no HDU named 'IVAR_Z'.*EXTNAMEs: PRIMARY, IMAGE_G"):
        load_fits_cutouts({"g": f"{f}[1]"}, {"g": f"{f}[IVAR_Z]"}, **{**kw, "bands": ("g",)})
    with pytest.raises(ValueError, match=r"has 5 HDUs, asked for image HDU 9"):
        load_fits_cutouts({"g": f"{f}[9]"}, {"g": f"{f}[2]"}, **{**kw, "bands": ("g",)})
