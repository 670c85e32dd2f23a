"""Bad input to ``python -m galae.fit`` and :func:`galae.data.fits.load_fits_cutouts`: swapped or
misregistered bands, truncated files, degenerate stamps, unusable pixels and option values are
refused with a message naming the problem (or, for one unusable band, a note)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from galae.data.fits import _sdss_band_name, load_fits_cutouts
from galae.fit import main as fit_main

BANDS = ("u", "g", "r", "i", "z")
SCALE = 0.396  # arcsec / pixel
FAST = ["--refine-steps", "0", "--n-mc-derived", "2", "--redshift", "0.1"]


def write_stamp(
    path: Path,
    band: str,
    *,
    size: int = 24,
    key: str | None = "BAND",
    value: str | None = None,
    shift_arcsec: float = 0.0,
    shift_pix: float = 0.0,
    pc: list[list[float]] | None = None,
    wcs: bool = True,
    image: np.ndarray | None = None,
    ivar: np.ndarray | None = None,
) -> Path:
    """A galaxy-like blob in noise with a TAN WCS at 0.396"/pixel and ivar in HDU 1."""
    rng = np.random.default_rng(abs(hash(band)) % 2**32)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    blob = 2.0 * np.exp(-0.5 * (xx**2 + yy**2) / 2.0**2)
    data = (blob + rng.normal(0.0, 0.05, (size, size))) if image is None else image
    header = fits.Header()
    if wcs:
        w = WCS(naxis=2)
        w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
        w.wcs.crval = [150.0 + shift_arcsec / 3600 / np.cos(np.radians(2.0)), 2.0]
        w.wcs.crpix = [size / 2 + 0.5 + shift_pix, size / 2 + 0.5]
        w.wcs.cdelt = [-SCALE / 3600, SCALE / 3600]
        if pc is not None:
            w.wcs.pc = pc
        header = w.to_header()
    header["BUNIT"] = "nanomaggy"
    header["PSF_FWHM"] = 1.3
    if key is not None:
        header[key] = band if value is None else value
    iv = np.full((size, size), 400.0) if ivar is None else ivar
    fits.HDUList(
        [fits.PrimaryHDU(data.astype(np.float32), header), fits.ImageHDU(iv.astype(np.float32))]
    ).writeto(path, overwrite=True)
    return path


def stamps(folder: Path, **per_band: dict) -> dict[str, Path]:
    """One stamp per band; ``per_band[b]`` holds write_stamp's options for band b."""
    return {b: write_stamp(folder / f"{b}.fits", b, **per_band.get(b, {})) for b in BANDS}


def args(paths: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return [*(f"{b}={p}" for b, p in paths.items()), "--ivar-hdu", "1", "--out", str(out), *extra]


# ---------------------------------------------------------------- band headers (BAND, FILTER)


def test_sdss_filter_names() -> None:
    for value in ("r", "SDSS r", "sdss_r", "SDSS-r", "r'", "r-band", "SDSS R", " r "):
        assert _sdss_band_name(value) == "r", value
    for value in ("R", "I", "HSC-R", "r DECam SDSS c0002 6300.0 1517.2", "F606W", "", "x"):
        assert _sdss_band_name(value) is None, value


def test_filter_header_catches_swapped_bands(tmp_path: Path) -> None:
    """SDSS frames carry FILTER, not BAND: a swapped file was accepted before."""
    paths = stamps(tmp_path, **{b: {"key": "FILTER"} for b in BANDS})
    assert load_fits_cutouts(paths, ivar_hdu=1).bands == BANDS
    swapped = {**paths, "g": paths["r"], "r": paths["g"]}
    with pytest.raises(ValueError, match=r"r\.fits \(band g\): file's FILTER header is 'r'"):
        load_fits_cutouts(swapped, ivar_hdu=1)
    with pytest.raises(ValueError, match="FILTER header is 'r' \\(SDSS r\\), not 'g'"):
        fit_main(args(swapped, tmp_path / "o.fits", *FAST))
    assert not (tmp_path / "o.fits").exists()
    # SDSS-style spellings of the right band pass, and so do filter names not recognised
    for value in ("SDSS r", "r'", "R", "HSC-I", "unknown"):
        write_stamp(paths["r"], "r", key="FILTER", value=value)
        assert load_fits_cutouts(paths, ivar_hdu=1).bands == BANDS, value
    write_stamp(paths["r"], "r", key="FILTER", value="SDSS i")
    with pytest.raises(ValueError, match=r"FILTER header is 'SDSS i' \(SDSS i\), not 'r'"):
        load_fits_cutouts(paths, ivar_hdu=1)
    write_stamp(paths["r"], "r", key="BAND", value="SDSS r")  # BAND: the SDSS spelling passes
    assert load_fits_cutouts(paths, ivar_hdu=1).bands == BANDS
    assert load_fits_cutouts(swapped, ivar_hdu=1, check_band_header=False).bands == BANDS


# ---------------------------------------------------------------- WCS of the bands


def test_misregistered_bands_are_refused(tmp_path: Path) -> None:
    paths = stamps(tmp_path)
    base = load_fits_cutouts(paths, ivar_hdu=1)
    # 30" off on the sky: 75.8 pixels
    write_stamp(paths["r"], "r", shift_arcsec=30.0)
    with pytest.raises(ValueError, match=r"r is misregistered with u by 75\.8 pixels \(30\"\)"):
        load_fits_cutouts(paths, ivar_hdu=1)
    with pytest.raises(ValueError, match="r is misregistered with u"):
        fit_main(args(paths, tmp_path / "o.fits", *FAST))
    # a whole pixel off is too much, a third of a pixel is within the tolerance
    write_stamp(paths["r"], "r", shift_pix=1.0)
    with pytest.raises(ValueError, match="misregistered with u by 1 pixels"):
        load_fits_cutouts(paths, ivar_hdu=1)
    write_stamp(paths["r"], "r", shift_pix=0.3)
    assert load_fits_cutouts(paths, ivar_hdu=1).bands == BANDS
    # axes swapped, turned by 180 or 5 degrees about the centre: the centre agrees, the axes not
    c, s = np.cos(np.radians(5.0)), np.sin(np.radians(5.0))
    for pc in ([[0.0, 1.0], [1.0, 0.0]], [[-1.0, 0.0], [0.0, -1.0]], [[c, -s], [s, c]]):
        write_stamp(paths["r"], "r", pc=pc)
        with pytest.raises(ValueError, match="the pixel axes of r are not those of u"):
            load_fits_cutouts(paths, ivar_hdu=1)
    # a 0.5 % difference of scale passes (pixel scales agree to 1 %)
    write_stamp(paths["r"], "r", pc=[[1.005, 0.0], [0.0, 1.0]])
    assert load_fits_cutouts(paths, ivar_hdu=1).bands == BANDS
    # a band without a WCS has nothing to compare; the WCS comes from the first band with one
    write_stamp(paths["r"], "r")
    write_stamp(paths["u"], "u", wcs=False)
    cut = load_fits_cutouts(paths, ivar_hdu=1, pixel_scale_arcsec=SCALE)
    assert cut.wcs is not None
    np.testing.assert_allclose(
        cut.wcs.pixel_to_world_values(5, 7), base.wcs.pixel_to_world_values(5, 7), atol=1e-12
    )
    write_stamp(paths["g"], "g", shift_arcsec=-3.0)  # now g is the reference: r is off from it
    with pytest.raises(ValueError, match="r is misregistered with g by 7.58 pixels"):
        load_fits_cutouts(paths, ivar_hdu=1, pixel_scale_arcsec=SCALE)


# ---------------------------------------------------------------- files and option values


def test_truncated_file_is_named(tmp_path: Path) -> None:
    paths = stamps(tmp_path)
    raw = paths["r"].read_bytes()
    paths["r"].write_bytes(raw[: len(raw) - 2000])
    with pytest.raises(OSError, match=r"r\.fits: cannot read the inverse-variance HDU 1 \(trunc"):
        load_fits_cutouts(paths, ivar_hdu=1)
    paths["r"].write_bytes(raw[:4000])  # the image itself cut short
    with pytest.raises(OSError, match=r"r\.fits: cannot read the image HDU 0 \(truncated"):
        load_fits_cutouts(paths, ivar_hdu=1)
    paths["r"].write_text("hello")
    with pytest.raises(OSError, match=r"r\.fits: cannot read the image HDU 0 \(corrupt"):
        load_fits_cutouts(paths, ivar_hdu=1)
    write_stamp(paths["r"], "r")
    with pytest.raises(ValueError, match=r"u\.fits: has 2 HDUs, asked for inverse-variance HDU 5"):
        load_fits_cutouts(paths, ivar_hdu=5)


def test_option_values_are_checked(tmp_path: Path) -> None:
    paths = stamps(tmp_path)
    out = tmp_path / "o.fits"
    cases = [
        (["--psf-fwhm", "nan"], "--psf-fwhm must be finite and > 0, got nan"),
        (["--psf-fwhm", "1.3", "1.3", "1.3", "0", "1.3"], "--psf-fwhm must be finite and > 0"),
        (["--pixel-scale", "nan"], "--pixel-scale must be finite and > 0"),
        (["--pixel-scale", "-0.4"], "--pixel-scale must be finite and > 0"),
        (["--zero-point", "nan"], "--zero-point must be finite"),
        (["--n-mc-derived", "0"], "--n-mc-derived must be >= 2, got 0"),
        (["--n-mc-derived", "1"], "--n-mc-derived must be >= 2, got 1"),
        (["--crop", "2"], "--crop 2: stamps must be at least 16 x 16 pixels"),
        (["--crop", "15"], "--crop 15: stamps must be at least 16 x 16 pixels"),
    ]
    for extra, message in cases:
        with pytest.raises(ValueError, match=message):
            fit_main(args(paths, out, *FAST, *extra))  # later options win over FAST's
        assert not out.exists()
    # the library: an explicit PSF FWHM or pixel scale that is NaN is not "unknown"
    with pytest.raises(ValueError, match="psf_fwhm_arcsec of band u must be finite and > 0"):
        load_fits_cutouts(paths, ivar_hdu=1, psf_fwhm_arcsec=float("nan"))
    with pytest.raises(ValueError, match="pixel_scale_arcsec must be finite and > 0"):
        load_fits_cutouts(paths, ivar_hdu=1, pixel_scale_arcsec=float("nan"))


def test_stamps_smaller_than_16_pixels_are_refused(tmp_path: Path) -> None:
    paths = stamps(tmp_path, **{b: {"size": 8} for b in BANDS})
    with pytest.raises(ValueError, match="the stamps are 8 x 8 pixels; galae.fit needs at least"):
        fit_main(args(paths, tmp_path / "o.fits", *FAST))
    assert not (tmp_path / "o.fits").exists()


def test_unusable_pixels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No usable pixel anywhere is an error (it ended in 'NaN values are not allowed in FITS
    headers'); one band without any is masked with a note, like a band left out."""
    size = 24
    zero = np.zeros((size, size))
    paths = stamps(tmp_path, **{b: {"ivar": zero} for b in BANDS})
    out = tmp_path / "o.fits"
    with pytest.raises(ValueError, match="no usable pixel: every pixel of every band is masked"):
        fit_main(args(paths, out, *FAST))
    nan = np.full((size, size), np.nan)
    paths = stamps(tmp_path, r={"image": nan}, z={"ivar": -np.ones((size, size))})
    res = fit_main(args({b: paths[b] for b in "griz"}, out, *FAST))
    said = capsys.readouterr().out
    assert "bands u not given: masked (no data)" in said
    assert f"band r ({paths['r']}) has no usable pixel" in said
    assert f"band z ({paths['z']}) has no usable pixel" in said
    assert "band g" not in said
    with fits.open(res["out"]) as h:
        assert bool(h["MASK_R"].data.all()) and not bool(h["MASK_G"].data.all())
        assert "LOG10_MSTAR_MSUN" in {n.upper() for n in h["PARAMS"].data["name"]}


def test_command_line_says_one_line_and_exits_2(tmp_path: Path) -> None:
    paths = stamps(tmp_path)
    raw = paths["i"].read_bytes()
    paths["i"].write_bytes(raw[: len(raw) - 2000])
    env = {**os.environ, "GALAE_TRACEBACK": "0"}
    cmd = [sys.executable, "-m", "galae.fit", *args(paths, tmp_path / "o.fits", *FAST)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"python -m galae.fit: error: {paths['i']}: cannot read")
    assert not (tmp_path / "o.fits").exists()
