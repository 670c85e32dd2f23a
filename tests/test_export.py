"""A galaxy's posterior as FITS (galae.export) and the one-galaxy fitting command (galae.fit), on
the real SDSS Stripe-82 stamp of tests/data/celeste_sdss (see its ATTRIBUTION.md)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

import galae
from galae.data.fits import Cutout, load_fits_cutouts
from galae.export import STD_SUFFIX, posterior_hdus, write_posterior_fits
from galae.fit import main as fit_main
from galae.latent import REGISTRY, unit_of
from galae.physics.maps import MAP_UNITS
from galae.sampling import Posterior

DATA = Path(__file__).parent / "data" / "celeste_sdss"
BANDS = ("u", "g", "r", "i", "z")


def _stamp(band: str) -> Path:
    return DATA / f"stamp-{band}-5.0073-0.0739.fits"


@pytest.fixture(scope="module")
def cut() -> Cutout:
    return load_fits_cutouts({b: _stamp(b) for b in BANDS}, ivar_hdu=1)


def _encode(cut: Cutout, redshift: float | None) -> Posterior:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return galae.load().encode(
            cut.images[None],
            cut.sigma[None],
            psf_fwhm_arcsec=cut.psf_fwhm_arcsec[None],
            redshift=None if redshift is None else np.array([redshift], np.float32),
            mask=cut.mask[None],
            n_mc=32,
            n_mc_derived=4,
        )


@pytest.fixture(scope="module")
def post(cut: Cutout) -> Posterior:
    return _encode(cut, 0.1)


def test_fits_holds_every_map_with_the_stamps_wcs_and_every_parameter(
    tmp_path: Path, cut: Cutout, post: Posterior
) -> None:
    path = write_posterior_fits(post, tmp_path / "g.fits", 0, cut.wcs, {"CHECKPT": "pkg"})
    with fits.open(path) as h:
        head = h[0].header
        assert head["REFINED"] is False and head["ZGIVEN"] is True
        assert head["REDSHIFT"] == pytest.approx(0.1) and head["CHECKPT"] == "pkg"
        assert head["CHI2PIX"] == pytest.approx(float(post.chi2_per_pixel[0]), rel=1e-6)
        for name, unit in MAP_UNITS.items():
            ext = h[name.upper()]
            assert ext.header["BUNIT"] == unit
            np.testing.assert_array_equal(ext.data, post.maps[name][0].numpy())
            np.testing.assert_array_equal(
                h[name.upper() + STD_SUFFIX].data, post.maps_std[name][0].numpy()
            )
            # the stamp's WCS, unchanged: the same sky position of every pixel
            w = WCS(ext.header)
            for x, y in ((0.0, 0.0), (25.0, 25.0), (50.0, 13.0)):
                np.testing.assert_allclose(
                    w.pixel_to_world_values(x, y), cut.wcs.pixel_to_world_values(x, y), atol=1e-12
                )
        for c, band in enumerate(BANDS):
            np.testing.assert_array_equal(
                h[f"MODEL_{band.upper()}"].data, post.model_images[0, c].numpy()
            )
            assert h[f"MODEL_{band.upper()}"].header["BUNIT"] == "nanomaggy"
            np.testing.assert_array_equal(h[f"MASK_{band.upper()}"].data, post.mask[0, c].numpy())
        table = h["PARAMS"].data
        names = [str(n) for n in table["name"]]
        assert names == sorted(post.params)
        assert set(REGISTRY.names) <= set(names)
        for row in table:
            k = str(row["name"])
            assert row["mean"] == pytest.approx(float(post.params[k][0]), rel=1e-6)
            assert row["std"] == pytest.approx(float(post.std[k][0]), rel=1e-6, abs=1e-12)
            assert row["best_fit"] == pytest.approx(float(post.model_params[k][0]), rel=1e-6)
            assert str(row["unit"]) == unit_of(k)


def test_fits_of_an_inferred_redshift_says_so(cut: Cutout) -> None:
    post = _encode(cut, None)
    head = posterior_hdus(post, 0)[0].header
    assert head["ZGIVEN"] is False
    assert head["REDSHIFT"] == pytest.approx(float(post.params["redshift"][0]), rel=1e-6)
    # without a WCS the images carry none
    assert "CTYPE1" not in posterior_hdus(post, 0)["AV_MAG"].header


def test_fits_bad_requests(tmp_path: Path, cut: Cutout, post: Posterior) -> None:
    with pytest.raises(IndexError, match="outside the posterior's 1 galaxies"):
        posterior_hdus(post, 1)
    with pytest.raises(ValueError, match="2-d celestial WCS"):
        posterior_hdus(post, 0, WCS(naxis=3))
    with pytest.raises(ValueError, match="1-8 characters"):
        posterior_hdus(post, 0, meta={"CHECKPOINT": "x"})
    path = write_posterior_fits(post, tmp_path / "g.fits")
    with pytest.raises(FileExistsError, match="overwrite"):
        write_posterior_fits(post, path)
    write_posterior_fits(post, path, overwrite=True)


def test_fit_command_writes_the_galaxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [f"{b}={_stamp(b)}" for b in BANDS]
    out = tmp_path / "galaxy.fits"
    fast = ["--refine-steps", "0", "--n-mc-derived", "4"]
    res = fit_main([*files, "--ivar-hdu", "1", "--redshift", "0.15", "--out", str(out), *fast])
    assert out.is_file() and res["out"] == str(out)
    said = capsys.readouterr().out
    assert "log10_mstar_msun" in said and "best fit" in said
    assert set(res["best_fit"]) == set(res["params"])
    with fits.open(out) as h:
        assert h[0].header["ZGIVEN"] is True and h[0].header["NEIGHMSK"] is True
        assert h[0].header["REDSHIFT"] == pytest.approx(0.15)
        assert h["LOG10_SIGMA_MSTAR_MSUN_PER_KPC2"].data.shape == (51, 51)
    with pytest.raises(FileExistsError, match="--overwrite"):
        fit_main([*files, "--ivar-hdu", "1", "--out", str(out), *fast])
    with pytest.raises(ValueError, match="expected BAND=FILE"):
        fit_main([str(_stamp("u")), "--ivar-hdu", "1", "--out", str(tmp_path / "x.fits")])
    swapped = [files[1], files[0], *files[2:]]
    with pytest.raises(ValueError, match="band"):
        fit_main([*swapped, "--ivar-hdu", "1", "--out", str(tmp_path / "y.fits")])
    # without u: the band is masked, said on the command line
    res = fit_main([*files[1:], "--ivar-hdu", "1", "--out", str(tmp_path / "nou.fits"), *fast])
    assert "bands u not given: masked" in capsys.readouterr().out
    with fits.open(res["out"]) as h:
        assert bool(h["MASK_U"].data.all()) and not bool(h["MASK_R"].data.all())
    # a crop about the centre: 41 x 41 pixels, the WCS following the cut
    cropped = tmp_path / "crop.fits"
    fit_main([*files, "--ivar-hdu", "1", "--crop", "41", "--out", str(cropped), *fast])
    with fits.open(cropped) as h, fits.open(out) as full:
        assert h["AV_MAG"].data.shape == (41, 41)
        w, wf = WCS(h["AV_MAG"].header), WCS(full["AV_MAG"].header)
        np.testing.assert_allclose(
            w.pixel_to_world_values(20, 20), wf.pixel_to_world_values(25, 25), atol=1e-12
        )
    with pytest.raises(ValueError, match="does not fit"):
        fit_main([*files, "--ivar-hdu", "1", "--crop", "80", "--out", str(tmp_path / "c.fits")])
    with pytest.raises(ValueError, match="--redshift must be a positive"):
        fit_main([*files, "--ivar-hdu", "1", "--redshift", "-1", "--out", str(tmp_path / "z.fits")])


def test_unit_of_latents_and_derived_observables() -> None:
    assert unit_of("r_d_kpc") == "kpc" and unit_of("log10_mstar_msun") == "dex(Msun)"
    assert unit_of("mag_r") == "AB mag" and unit_of("r_half_arcsec_z") == "arcsec"
    assert unit_of("bulge_to_total_g") == "" and unit_of("redshift") == ""
    with pytest.raises(KeyError, match="unknown parameter 'r_half_kpc'"):
        unit_of("r_half_kpc")
    with pytest.raises(KeyError, match="unknown parameter 'mag_'"):
        unit_of("mag_")


def test_fit_command_fits_stamps_larger_than_the_models(tmp_path: Path) -> None:
    """73 x 73 stamps against a model of 64 x 64: the encoder reads the centre, the maps cover
    the whole stamp; --crop 64 still cuts them first."""
    rng = np.random.default_rng(0)
    files = []
    for band in BANDS:
        img = fits.PrimaryHDU(rng.normal(0.0, 0.05, (73, 73)).astype(np.float32))
        img.header["BUNIT"] = "nanomaggy"
        img.header["BAND"] = band
        ivar = fits.ImageHDU(np.full((73, 73), 400.0, np.float32))
        path = tmp_path / f"{band}.fits"
        fits.HDUList([img, ivar]).writeto(path)
        files.append(f"{band}={path}")
    common = [*files, "--ivar-hdu", "1", "--pixel-scale", "0.396", "--psf-fwhm", "1.4"]
    fast = ["--refine-steps", "0", "--n-mc-derived", "2", "--redshift", "0.1"]
    res = fit_main([*common, "--out", str(tmp_path / "big.fits"), *fast])
    with fits.open(res["out"]) as h:
        assert h["AV_MAG"].data.shape == (73, 73)
        assert h["MODEL_R"].data.shape == (73, 73) and h["MASK_R"].data.shape == (73, 73)
    res = fit_main([*common, "--crop", "64", "--out", str(tmp_path / "ok.fits"), *fast])
    with fits.open(res["out"]) as h:
        assert h["AV_MAG"].data.shape == (64, 64)
