"""Bad or unusual input to the public API: a clear error naming the problem, or masking where
masking is the physics; never a silently wrong result.  Each case here was once silently wrong
or failed with a message that did not name the problem (a fresh-eyes audit, seventeenth
submission).  The packaged model reads a few galaxies drawn from its own prior."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.wcs import WCS

import galae
from galae.checkpoint import CheckpointError
from galae.latent import REGISTRY, Latent
from galae.render.observation import Observation
from galae.render.psf import GaussianPSF
from galae.render.renderer import GalaxyRenderer
from galae.sampling import GalaeModel, Posterior, Samples


@pytest.fixture(scope="module")
def model() -> GalaeModel:
    return galae.load()


@pytest.fixture(scope="module")
def five(model: GalaeModel) -> Samples:
    """Five galaxies: as many as the bands, where (N, ...) and (C, ...) shapes look alike."""
    return model.sample(n=5, seed=1)


def _kw(s: Samples, k: int = 5) -> dict[str, object]:
    """encode's conditions for the first k galaxies of ``s``."""
    return {"psf_fwhm_arcsec": s.psf_fwhm_arcsec[:k], "redshift": s.redshift[:k], "n_mc_derived": 2}


def _encode(model: GalaeModel, s: Samples, **kw: object) -> Posterior:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.encode(s.images, s.sigma, **{**_kw(s), **kw})


def test_big_endian_arrays_as_fits_returns_them(model: GalaeModel, five: Samples) -> None:
    native = _encode(model, five)
    images = five.images.numpy().astype(">f4")
    sigma = five.sigma.numpy().astype(">f4")
    swapped = model.encode(images, sigma, **_kw(five))
    for name in ("log10_mstar_msun", "r_half_arcsec_r"):
        assert torch.equal(native.params[name], swapped.params[name])


def test_flipped_views_are_read(model: GalaeModel, five: Samples) -> None:
    """A negatively strided view (np.flipud, img[..., ::-1, :]) reads as its values."""
    images, sigma = five.images.numpy(), five.sigma.numpy()
    flipped = model.encode(images[:, :, ::-1], sigma[:, :, ::-1], **_kw(five))
    copied = model.encode(images[:, :, ::-1].copy(), sigma[:, :, ::-1].copy(), **_kw(five))
    for name in ("log10_mstar_msun", "r_half_arcsec_r"):
        assert torch.equal(flipped.params[name], copied.params[name])


def test_masked_arrays_mask_their_masked_pixels(model: GalaeModel, five: Samples) -> None:
    """np.ma masked pixels become NaN, so they are masked (with the usual warning), not read."""
    images = five.images.numpy()
    hidden = np.zeros(images.shape, bool)
    hidden[:, :, :6, :] = True
    garbage = np.where(hidden, 1e4, images)  # what lies under the mask must not matter
    with pytest.warns(RuntimeWarning, match="NaN/inf pixels masked"):
        post = model.encode(np.ma.MaskedArray(garbage, hidden), five.sigma, **_kw(five))
    with pytest.warns(RuntimeWarning, match="NaN/inf pixels masked"):
        ref = model.encode(np.where(hidden, np.nan, images), five.sigma, **_kw(five))
    assert torch.equal(post.params["log10_mstar_msun"], ref.params["log10_mstar_msun"])
    with pytest.raises(ValueError, match="mask: a masked bool array"):
        model.encode(
            images, five.sigma, mask=np.ma.MaskedArray(hidden[:, 0], hidden[:, 0]), **_kw(five)
        )


def test_quantities_convert_or_are_refused(model: GalaeModel, five: Samples) -> None:
    """astropy Quantities: nanomaggies (or Jansky, AB) for images/sigma, arcsec for the PSF."""
    import astropy.units as u

    native = _encode(model, five)
    kw = {**_kw(five), "psf_fwhm_arcsec": (five.psf_fwhm_arcsec.numpy() / 60.0) * u.arcmin}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = model.encode(
            (five.images.numpy().astype(np.float64) * 3631e-9) * u.Jy,
            five.sigma.numpy() * u.nanomaggy,
            **kw,
        )
    for name in ("log10_mstar_msun", "r_half_arcsec_r"):
        torch.testing.assert_close(post.params[name], native.params[name], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="psf_fwhm_arcsec: got a Quantity in kpc"):
        model.encode(five.images, five.sigma, **{**_kw(five), "psf_fwhm_arcsec": 1.0 * u.kpc})


def test_images_not_in_nanomaggies_are_refused(model: GalaeModel, five: Samples) -> None:
    images = five.images.clone()
    images[0, 2, 10, 10] = 3e38  # a float32 overflow, say
    with pytest.raises(ValueError, match="not galaxy images in nanomaggies"):
        model.encode(images, five.sigma, **_kw(five))


def test_complex_input_is_refused(model: GalaeModel, five: Samples) -> None:
    with pytest.raises(ValueError, match="images must be real"):
        model.encode(five.images.numpy() + 0j, five.sigma, **_kw(five))


def test_mask_shapes(model: GalaeModel, five: Samples) -> None:
    n, c, h, w = five.images.shape
    per_galaxy = np.zeros((n, h, w), bool)
    per_galaxy[0] = True
    with pytest.raises(ValueError, match="ambiguous for a batch of 5"):
        model.encode(five.images, five.sigma, mask=per_galaxy, **_kw(five))
    post = _encode(model, five, mask=per_galaxy[:, None])
    assert post.mask[0].all() and not post.mask[1:].any()
    with pytest.raises(ValueError, match="does not fit images"):
        model.encode(five.images, five.sigma, mask=np.zeros((2, c, h, w), bool), **_kw(five))
    everywhere = _encode(model, five, mask=per_galaxy[0])  # (H, W): every galaxy and band
    assert everywhere.mask.all()


def test_a_galaxy_without_pixels_is_named_and_has_no_chi2(model: GalaeModel, five: Samples) -> None:
    images = five.images.clone()
    images[2] = float("nan")
    with pytest.warns(RuntimeWarning, match=r"1 of 5 galaxies have no unmasked pixel \(rows 2\)"):
        post = model.encode(images, five.sigma, **_kw(five))
    chi2 = post.chi2_per_pixel
    assert torch.isnan(chi2[2]) and torch.isfinite(chi2[[0, 1, 3, 4]]).all()


def test_nan_pixels_and_sigma_are_reported_by_row_and_band(
    model: GalaeModel, five: Samples
) -> None:
    images, sigma = five.images.clone(), five.sigma.clone()
    images[3, 1, :4] = float("inf")
    sigma[1, 4, 0, 0] = float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.encode(images, sigma, **_kw(five))
    text = [str(w.message) for w in caught]
    assert any("NaN/inf pixels masked (rows 3; bands g)" in t for t in text)
    assert any("1 pixels of NaN/inf sigma masked (rows 1; bands z)" in t for t in text)


def test_one_dimensional_psf_is_refused_when_ambiguous(model: GalaeModel, five: Samples) -> None:
    per_galaxy = np.array([0.8, 1.0, 1.5, 2.0, 2.5])
    with pytest.raises(ValueError, match="ambiguous for 5 galaxies of 5 bands"):
        model.encode(five.images, five.sigma, psf_fwhm_arcsec=per_galaxy, redshift=five.redshift)
    with pytest.raises(ValueError, match="ambiguous for 5 galaxies of 5 bands"):
        model.sample(n=5, seed=0, psf_fwhm_arcsec=per_galaxy)
    _encode(model, five, psf_fwhm_arcsec=np.full(5, 1.3))  # equal values: the same either way
    shared = five.psf_fwhm_arcsec[:1]  # (1, C): the same PSF for every galaxy
    a = _encode(model, five, psf_fwhm_arcsec=shared)
    b = _encode(model, five, psf_fwhm_arcsec=shared.expand(5, -1))
    assert torch.equal(a.params["r_half_arcsec_r"], b.params["r_half_arcsec_r"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_mc": 1}, "n_mc must be >= 2"),
        ({"n_mc_derived": 1}, "n_mc_derived must be 0"),
        ({"n_mc_derived": -1}, "n_mc_derived must be >= 0"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"refine_steps": -5}, "refine_steps must be >= 0"),
        ({"refine_steps": 2.5}, "refine_steps must be an integer"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"redshift": np.inf}, "redshift must be finite"),
        ({"redshift": 0.7}, "redshift must be <= 0.6"),
        ({"pixel_scale_arcsec": np.inf}, "pixel_scale_arcsec must be finite"),
        ({"pixel_scale_arcsec": [0.396, 0.4]}, "pixel_scale_arcsec must be one number"),
    ],
)
def test_encode_arguments(
    model: GalaeModel, five: Samples, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        model.encode(five.images[:2], five.sigma[:2], **{**_kw(five, 2), **kwargs})


def test_numpy_seeds_and_no_seed(model: GalaeModel, five: Samples) -> None:
    a = _encode(model, five, seed=3)
    b = _encode(model, five, seed=np.int64(3))
    assert torch.equal(a.std["log10_mstar_msun"], b.std["log10_mstar_msun"])
    _encode(model, five, seed=None)  # fresh randomness, no error
    assert len(model.sample(n=2, seed=None)) == 2
    assert torch.equal(model.sample(n=2, seed=np.int64(4)).images, model.sample(2, 4).images)


def test_sigma_too_large_is_named(model: GalaeModel, five: Samples) -> None:
    with pytest.warns(RuntimeWarning, match="sigma looks too large"):
        model.encode(five.images, five.sigma * 100, **_kw(five))


def test_draw_counts(model: GalaeModel, five: Samples) -> None:
    post = _encode(model, five)
    assert len(post) == 5
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="k must be"):
            post.samples(k)
        with pytest.raises(ValueError, match="k must be"):
            post.map_samples(k)
    with pytest.raises(ValueError, match="posterior must be a Posterior"):
        model.analogues(five.images[0], five.sigma[0], n=2, posterior={})


def test_sample_arguments(model: GalaeModel) -> None:
    for shape in ((64.5, 64), 64, (0, 64)):
        with pytest.raises(ValueError, match="shape must be"):
            model.sample(n=2, shape=shape)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        model.sample(n=2, batch_size=0)


def _checkpoint_with(tmp_path: Path, change) -> Path:
    state = torch.load(galae.sampling.default_model_path(), map_location="cpu", weights_only=False)
    change(state)
    path = tmp_path / "changed.pt"
    torch.save(state, path)
    return path


def test_checkpoints_that_do_not_fit(tmp_path: Path) -> None:
    def unet(state):
        state["kind"] = "galae-unet"

    def newer_setting(state):
        state["render_settings"] = {**state["render_settings"], "warp_drive": True}

    def reversed_bands(state):
        state["data_info"] = {**state["data_info"], "bands": ["z", "i", "r", "g", "u"]}

    def no_encoder(state):
        del state["encoder_state"]

    for change, message in (
        (unet, "galae.unet.load_unet"),
        (newer_setting, "does not fit this galae"),
        (reversed_bands, r"bands \('z', 'i', 'r', 'g', 'u'\)"),
        (no_encoder, "lacks the entry 'encoder_state'"),
    ):
        with pytest.raises(CheckpointError, match=message):
            galae.load(_checkpoint_with(tmp_path, change))
    with pytest.raises(FileNotFoundError, match="is a directory, not a checkpoint file"):
        galae.load(tmp_path)


def test_posterior_fits_arguments(model: GalaeModel, five: Samples, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = model.encode(five.images[:1], five.sigma[:1], **_kw(five, 1))
    out = tmp_path / "g.fits"
    for meta, message in (
        ({"REDSHIFT": 99}, "written by galae"),
        ({"SIMPLE": False}, "written by galae"),
        ({"a b": 1}, "1-8 characters"),
    ):
        with pytest.raises(ValueError, match=message):
            galae.write_posterior_fits(post, out, meta=meta)
    for index in (True, 0.5):
        with pytest.raises(ValueError, match="index must be an integer"):
            galae.write_posterior_fits(post, out, index=index)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.pixel_shape = (100, 100)
    with pytest.raises(ValueError, match="the stamp is 64 x 64"):
        galae.write_posterior_fits(post, out, wcs=wcs)
    wcs.pixel_shape = (64, 64)
    galae.write_posterior_fits(post, out, wcs=wcs.to_header())  # a header is read as its WCS
    assert out.is_file()


def test_renderer_stages_validate_like_forward() -> None:
    renderer = GalaxyRenderer()
    params = {p.name: torch.full((2,), 0.5 * (p.low + p.high)) for p in REGISTRY}
    obs = Observation(
        torch.full((2,), 0.1), GaussianPSF(torch.ones(2, 5)), 0.396, (32, 32), renderer.bands
    )
    bad = {**params, "q_bulge": torch.full((2,), 0.01)}
    for stage in (renderer.light, renderer.derived, renderer.derived_and_maps):
        with pytest.raises(ValueError, match="q_bulge"):
            stage(bad, obs)
        with pytest.raises(ValueError, match="must be a torch.Tensor"):
            stage({**params, "pa_deg": np.full(2, 30.0)}, obs, validate=False)


def test_latent_refuses_mismatched_batch_shapes() -> None:
    values = {p.name: torch.full((2,), 0.5 * (p.low + p.high)) for p in REGISTRY}
    with pytest.raises(ValueError, match="different batch shapes"):
        Latent({**values, "pa_deg": values["pa_deg"][:, None]})
    shared = Latent({**values, "pa_deg": torch.tensor(30.0)})  # a scalar is shared
    assert shared.batch_shape == (2,)


def test_observation_shape_must_be_integers() -> None:
    with pytest.raises(ValueError, match="integers >= 4"):
        Observation.create(0.1, 1.2, shape=(64.5, 64))  # was truncated to (64, 64)
    assert Observation.create(0.1, 1.2, shape=(np.int64(48), 40)).shape == (48, 40)


def test_more_missing_bands_than_trained_are_named(model: GalaeModel, five: Samples) -> None:
    """The encoder saw one band missing at a time; a galaxy missing two (grz data: no u, no
    i) gets a warning naming it and the refinement that repairs it."""
    assert model.trained_missing_bands == 1
    images = five.images.clone()
    images[1, 0] = float("nan")  # no u: trained for
    images[3, [0, 3]] = float("nan")  # no u, no i: not trained for
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.encode(images, five.sigma, **_kw(five))
    said = [str(w.message) for w in caught if "whole band" in str(w.message)]
    assert len(said) == 1
    assert "1 of 5 galaxies miss more than 1 whole band (rows 3; row 3 misses u,i)" in said[0]
    assert "read stand-ins" in said[0] and "refine_steps=60" in said[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        one = {"psf_fwhm_arcsec": five.psf_fwhm_arcsec[3:4], "redshift": five.redshift[3:4]}
        model.encode(images[3:4], five.sigma[3:4], refine_steps=3, n_mc_derived=2, **one)
    assert not [w for w in caught if "whole band" in str(w.message)]
