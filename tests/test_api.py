"""End to end through the public API: train a tiny model, load it, encode, sample, resume.

One tiny training run (24 mock galaxies of 32x32 pixels, a [8, 16] encoder, 2 steps, 1 prior
epoch) is shared by the whole module; the model is untrained in any useful sense, so the tests
check the contract (names, shapes, units, ranges, determinism, errors), not the accuracy.
"""

from __future__ import annotations

import csv
import math
import shutil
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import galae
from galae.checkpoint import CheckpointError, load_checkpoint, restore_rng_states, rng_states
from galae.data.conditions import median_psf_fwhm_arcsec
from galae.data.hdf5 import read_h5
from galae.latent import REDSHIFT_FALLBACK_RANGE, REGISTRY
from galae.mock import MockConfig, run_mock
from galae.physics.maps import MAP_NAMES
from galae.sampling import POOR_FIT_MESSAGE, GalaeModel, Posterior, Samples
from galae.train import TrainConfig, train

BANDS = ("u", "g", "r", "i", "z")
SIZE = 32
N_ENC = 4
DERIVED = tuple(
    [f"r_half_arcsec_{b}" for b in BANDS]
    + [f"bulge_to_total_{b}" for b in BANDS]
    + [f"mag_{b}" for b in BANDS]
    + ["log10_mstar_msun", "log10_sfr_msun_per_yr"]
)
ALL_NAMES = frozenset(REGISTRY.names) | frozenset(DERIVED)


@dataclass(frozen=True)
class Trained:
    """The shared tiny run: its config, checkpoint, data and loaded model."""

    cfg: TrainConfig
    checkpoint: Path
    data: dict[str, np.ndarray]
    model: GalaeModel
    root: Path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("api")
    data_path = root / "train.h5"
    run_mock(
        MockConfig(n=24, seed=3, shape=(SIZE, SIZE), chunk=24, out=str(data_path)), progress=False
    )
    cfg = TrainConfig(
        data=str(data_path),
        widths=(8, 16),
        hidden=32,
        batch_size=8,
        max_steps=2,
        warmup_steps=1,
        prior_epochs=1,
        val_fraction=0.25,
        sleep_photo_z_fraction=0.3,
        out_dir=str(root / "run"),
        device="cpu",
        tensorboard=False,
        progress=False,
        num_workers=0,
    )
    ckpt = train(cfg)
    d = read_h5(data_path, np.arange(N_ENC), with_maps=False)
    data = {k: d[k] for k in ("images", "sigma", "psf_fwhm_arcsec", "redshift")}
    return Trained(cfg, ckpt, data, galae.load(ckpt), root)


@pytest.fixture(scope="module")
def post(trained: Trained) -> Posterior:
    d = trained.data
    return trained.model.encode(
        d["images"],
        d["sigma"],
        psf_fwhm_arcsec=d["psf_fwhm_arcsec"],
        redshift=d["redshift"],
        n_mc=64,
        n_mc_derived=2,
    )


def _encode(trained: Trained, **changes: object) -> Posterior:
    kw: dict[str, object] = dict(trained.data)
    kw.update(changes)
    return trained.model.encode(kw.pop("images"), kw.pop("sigma"), n_mc=32, n_mc_derived=2, **kw)


# ----------------------------------------------------------------------------------------------
# load
# ----------------------------------------------------------------------------------------------
def test_train_writes_checkpoints_and_load_reads_them(trained: Trained) -> None:
    run = Path(trained.cfg.out_dir)
    assert trained.checkpoint == run / "model.pt"
    assert (run / "last.pt").is_file() and (run / "log.csv").is_file()
    m = trained.model
    assert isinstance(m, GalaeModel)
    assert m.bands == BANDS and m.shape == (SIZE, SIZE)
    assert m.pixel_scale_arcsec == pytest.approx(0.396)
    state = load_checkpoint(trained.checkpoint)
    assert state["step"] == 2
    assert state["prior_kind"] == "flow"
    assert state["loss_terms"] == "wake-ELBO+sleep-simulation"  # self-supervised by default
    assert state["config"]["widths"] == [8, 16]
    with pytest.raises(FileNotFoundError):
        galae.load(trained.root / "no_such_model.pt")


# ----------------------------------------------------------------------------------------------
# encode
# ----------------------------------------------------------------------------------------------
def test_encode_returns_every_name_with_the_contract_shapes(
    trained: Trained, post: Posterior
) -> None:
    assert ALL_NAMES <= set(post.params), sorted(ALL_NAMES - set(post.params))
    assert set(post.std) == set(post.params)
    for name, value in post.params.items():
        assert isinstance(value, torch.Tensor)
        assert value.shape == (N_ENC,), name
        assert bool(torch.isfinite(value).all()), name
        assert bool((post.std[name] >= 0).all()), name
    for p in REGISTRY:  # posterior means of the latents lie in their physical ranges
        v = post.params[p.name]
        assert bool(((v >= p.low) & (v <= p.high)).all()), p.name
    # the given redshift is kept
    np.testing.assert_allclose(post.params["redshift"].numpy(), trained.data["redshift"])
    assert set(MAP_NAMES) <= set(post.maps)
    for name, value in post.maps.items():
        assert value.shape == (N_ENC, SIZE, SIZE), name
    assert post.model_images.shape == (N_ENC, 5, SIZE, SIZE)
    assert bool((post.params["r_half_arcsec_r"] > 0).all())
    bt = post.params["bulge_to_total_g"]
    assert bool(((bt >= 0) & (bt <= 1)).all())


def test_model_params_are_the_model_behind_model_images(trained: Trained, post: Posterior) -> None:
    """model_params: the latents at the posterior mean latent, the redshift and the derived
    observables of that one model, which model_images and model_maps render."""
    m = trained.model
    assert set(post.model_params) == set(post.params)
    at_loc = REGISTRY.from_unconstrained(post._loc)
    for name in REGISTRY.names:
        torch.testing.assert_close(post.model_params[name], at_loc[name])
    np.testing.assert_allclose(post.model_params["redshift"].numpy(), trained.data["redshift"])
    obs = post._batch.observation()
    torch.testing.assert_close(m.model.renderer(at_loc, obs).images, post.model_images)
    derived = m.model.renderer.derived(at_loc, obs)
    for name in ("mag_r", "r_half_arcsec_r", "log10_mstar_msun", "bulge_to_total_g"):
        torch.testing.assert_close(post.model_params[name], derived[name])
    # without rendered draws: the latents and the redshift only, as for params
    d = trained.data
    bare = trained.model.encode(
        d["images"], d["sigma"], psf_fwhm_arcsec=d["psf_fwhm_arcsec"], redshift=d["redshift"],
        n_mc_derived=0,
    )  # fmt: skip
    assert set(bare.model_params) == set(REGISTRY.names) | {"redshift"}


def test_posterior_maps_are_per_pixel_moments_of_the_rendered_draws(trained: Trained) -> None:
    """post.maps and post.maps_std are the per-pixel mean and standard deviation of the maps of
    the n_mc_derived draws; model_maps are the maps of the model behind model_images (the
    posterior mean latent); map_samples draws maps whose moments match them."""
    d = trained.data
    kw = {"psf_fwhm_arcsec": d["psf_fwhm_arcsec"], "redshift": d["redshift"], "n_mc": 16}
    # n_mc_derived > n_mc: that many draws are rendered (the latents' moments use them all)
    point = trained.model.encode(d["images"], d["sigma"], n_mc_derived=0, **kw)
    post = trained.model.encode(d["images"], d["sigma"], n_mc_derived=256, **kw)
    assert point.maps_std == {}
    loc = trained.model.model.render(post._loc, post._batch)
    for name in MAP_NAMES:
        # n_mc_derived = 0: the maps at the posterior mean latent, which are also model_maps
        torch.testing.assert_close(point.maps[name], point.model_maps[name])
        torch.testing.assert_close(post.model_maps[name], loc.maps.named()[name])
        assert post.maps[name].shape == post.maps_std[name].shape == (N_ENC, SIZE, SIZE)
        assert bool((post.maps_std[name] >= 0).all()) and bool(
            torch.isfinite(post.maps[name]).all()
        )
    name = "log10_sigma_mstar_msun_per_kpc2"
    assert float(post.maps_std[name].max()) > 0.0  # a posterior, not a point
    draws = post.map_samples(256, seed=3, names=[name])
    assert set(draws) == {name} and draws[name].shape == (256, N_ENC, SIZE, SIZE)
    # two independent 256-draw estimates of the same moments agree to Monte Carlo error
    # (3 standard errors of a mean of 256 draws; the std's own error is about std / sqrt(512))
    se = post.maps_std[name] / 256**0.5
    centre = (slice(None), slice(SIZE // 2 - 4, SIZE // 2 + 4), slice(SIZE // 2 - 4, SIZE // 2 + 4))
    gap = (draws[name].mean(0) - post.maps[name])[centre].abs()
    assert float((gap <= 3 * 2**0.5 * se[centre] + 1e-5).float().mean()) > 0.97
    torch.testing.assert_close(
        draws[name].std(0)[centre], post.maps_std[name][centre], rtol=0.25, atol=1e-4
    )
    # the draws are those of post.samples / unconstrained_samples with the same seed
    few = post.map_samples(2, seed=3, names=[name])[name]
    torch.testing.assert_close(post.map_samples(2, seed=3, names=[name])[name], few)
    u = post.unconstrained_samples(2, seed=3)
    for j in range(2):
        ren = trained.model.model.render(u[j], post._batch)
        torch.testing.assert_close(few[j], ren.maps.named()[name], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown map name"):
        post.map_samples(2, names=["log10_sigma_mstar"])
    assert set(post.map_samples(1, names="age_gyr")) == {"age_gyr"}  # one name as a string
    with pytest.raises(ValueError, match="k must be >= 1"):
        post.map_samples(0)


def test_posterior_samples(post: Posterior) -> None:
    k = 3
    s = post.samples(k, seed=5)
    assert ALL_NAMES <= set(s)
    for name, value in s.items():
        assert value.shape == (k, N_ENC), name
        assert bool(torch.isfinite(value).all()), name
    for p in REGISTRY:
        assert bool(((s[p.name] >= p.low) & (s[p.name] <= p.high)).all()), p.name
    again = post.samples(k, seed=5, derived=False)
    for p in REGISTRY:  # same seed -> same draws
        torch.testing.assert_close(again[p.name], s[p.name], rtol=0, atol=0)


def test_sigma_per_band_equals_constant_per_pixel_sigma(trained: Trained) -> None:
    d = trained.data
    per_band = np.median(d["sigma"], axis=(-1, -2))  # (N, C)
    per_pixel = np.broadcast_to(per_band[..., None, None], d["sigma"].shape).copy()
    a = _encode(trained, sigma=per_band)
    b = _encode(trained, sigma=per_pixel)
    assert ALL_NAMES <= set(a.params)
    torch.testing.assert_close(a._loc, b._loc)
    for name in REGISTRY.names:
        torch.testing.assert_close(a.params[name], b.params[name])


def test_unknown_redshift_uses_the_photo_z_head(trained: Trained, post: Posterior) -> None:
    lo, hi = REDSHIFT_FALLBACK_RANGE
    p = _encode(trained, redshift=None)
    z = p.params["redshift"]
    assert z.shape == (N_ENC,)
    assert bool(((z > lo) & (z < hi)).all())
    assert bool((p.std["redshift"] > 0).all())
    # the photo-z draws come from the seeded generator: the same call gives the same answer
    again = _encode(trained, redshift=None)
    for name, v in p.params.items():
        torch.testing.assert_close(again.params[name], v, msg=name)
    torch.testing.assert_close(
        p.samples(8, seed=3)["redshift"], again.samples(8, seed=3)["redshift"]
    )
    # mixed known / unknown: the known keep theirs, order is restored
    zin = trained.data["redshift"].astype(np.float64).copy()
    zin[[1, 3]] = np.nan
    m = _encode(trained, redshift=zin)
    np.testing.assert_allclose(m.params["redshift"].numpy()[[0, 2]], zin[[0, 2]], rtol=1e-6)
    zu = m.params["redshift"][[1, 3]]
    assert bool(((zu > lo) & (zu < hi)).all())
    # the joint photo-z posterior is kept for the unknown ones alone
    assert m._mixture is not None and m._mixture.z.shape[1] == 2
    assert m._mixture_index.tolist() == [1, 3]
    d = m.samples(4, seed=0, derived=False)
    assert bool((d["redshift"][:, [0, 2]] == torch.as_tensor(zin[[0, 2]]).float()).all())
    assert bool((d["redshift"][:, [1, 3]] != d["redshift"][:1, [1, 3]]).any())  # drawn
    # the encoder treats galaxies independently (GroupNorm): known-z rows match the all-known run
    torch.testing.assert_close(m._loc[[0, 2]], post._loc[[0, 2]], rtol=1e-4, atol=1e-5)


def test_unknown_redshift_posterior_is_joint_over_photo_z_nodes(trained: Trained) -> None:
    """q(z | x) q(u | x, z): the redshift draws are the photo-z quantile nodes, each with the
    latents the encoder gives when told that redshift."""
    from galae.sampling import PHOTO_Z_NODES, photo_z_nodes

    p = _encode(trained, redshift=None)
    mix = p._mixture
    assert mix is not None and mix.z.shape == (PHOTO_Z_NODES, N_ENC)
    zl, zs = p._z_dist
    torch.testing.assert_close(mix.z, photo_z_nodes(zl, zs, PHOTO_Z_NODES))
    # nodes at the quantiles (j + 1/2) / K of the logit-normal: increasing, middle = median
    assert bool((mix.z[1:] > mix.z[:-1]).all())
    torch.testing.assert_close(mix.z[PHOTO_Z_NODES // 2], _z_median(zl))
    # node j's component is the encoder's posterior told z_j
    j = 2
    told = _encode(trained, redshift=mix.z[j].numpy().astype(np.float64))
    torch.testing.assert_close(mix.loc[j], told._loc, rtol=1e-4, atol=1e-5)
    # draws: each block of K draws visits every stratum once (in a random order, the same in
    # every block); the redshift marginal is q(z | x) exactly (its probability integral
    # transform is uniform), and the latents of stratum j's draws come from component j
    k = PHOTO_Z_NODES

    def stratum_p(z: torch.Tensor) -> torch.Tensor:  # q(z | x)'s CDF at z
        lo, hi = REDSHIFT_FALLBACK_RANGE
        t = torch.logit((z - lo) / (hi - lo))
        return torch.special.ndtr((t - zl) / zs)

    u, zd = mix.draw(k * 400, torch.Generator().manual_seed(2))
    pit = stratum_p(zd)  # (k * 400, N)
    strata = torch.floor(pit * k).long().reshape(400, k, N_ENC)
    assert bool((strata == strata[:1]).all())
    assert bool((strata[0].sort(0).values == torch.arange(k)[:, None]).all())
    deciles = torch.quantile(pit, torch.linspace(0.1, 0.9, 9), dim=0)
    assert float((deciles - torch.linspace(0.1, 0.9, 9)[:, None]).abs().max()) < 0.03
    slot = int(torch.nonzero(strata[0, :, 0] == j)[0, 0])  # where stratum j sits
    comp = u.reshape(400, k, N_ENC, -1)[:, slot]
    se = mix.cov_diag[j].sqrt().max() + mix.cov_factor[j].norm(dim=-1).max()
    assert float((comp.mean(0) - mix.loc[j]).abs().max()) < float(4 * se / 20)
    # fewer draws than nodes: a random selection of nodes, not always the lowest redshifts
    firsts = {
        int(k * stratum_p(p.samples(1, seed=sd, derived=False)["redshift"][0])[0])
        for sd in range(12)
    }
    assert len(firsts) > 2
    # the posterior mean redshift is the mean of its (stratified) draws: close to the nodes' mean
    torch.testing.assert_close(p.params["redshift"], mix.z.mean(0), rtol=0.02, atol=1e-3)
    # a checkpoint whose photo-z head was never trained on simulations says so
    state = {**trained.model.state}
    state["config"] = {**state["config"], "sleep_photo_z_fraction": 0.0}
    untrained = galae.GalaeModel(trained.model.model, trained.model.guide, state)
    with pytest.warns(RuntimeWarning, match="photometric-redshift head was not trained"):
        untrained.encode(
            trained.data["images"][:1],
            trained.data["sigma"][:1],
            psf_fwhm_arcsec=trained.data["psf_fwhm_arcsec"][:1],
            n_mc=18,
            n_mc_derived=0,
        )


def _z_median(z_loc: torch.Tensor) -> torch.Tensor:
    from galae.model import redshift_transform

    return redshift_transform()(z_loc)


def test_posterior_samples_with_mixed_redshifts(trained: Trained) -> None:
    lo, hi = REDSHIFT_FALLBACK_RANGE
    zin = trained.data["redshift"].astype(np.float64).copy()
    zin[1] = np.nan
    post = _encode(trained, redshift=zin)
    assert post.redshift_given.tolist() == [i != 1 for i in range(N_ENC)]
    assert post.model is trained.model
    s = post.samples(2, seed=0, derived=False)
    assert s["redshift"].shape == (2, N_ENC)
    torch.testing.assert_close(s["redshift"][:, 0], torch.full((2,), float(zin[0])))
    assert bool(((s["redshift"][:, 1] > lo) & (s["redshift"][:, 1] < hi)).all())


def test_nan_pixels_are_masked_with_a_warning(trained: Trained) -> None:
    images = trained.data["images"].copy()
    images[0, 2, 5:8, 5:8] = np.nan
    images[1, 0, 0, 0] = np.inf
    with pytest.warns(RuntimeWarning, match="NaN/inf pixels masked"):
        p = _encode(trained, images=images)
    # encode without a PSF assumes the median SDSS seeing and says so
    with pytest.warns(RuntimeWarning, match="assuming the median SDSS seeing"):
        q = trained.model.encode(
            trained.data["images"][:2], trained.data["sigma"][:2], redshift=0.1, n_mc=8
        )
    assert bool(torch.isfinite(q.params["log10_mstar_msun"]).all())
    for name in ALL_NAMES:
        assert bool(torch.isfinite(p.params[name]).all()), name
    # the masked pixels' sigma may then be anything, even 0
    sigma = trained.data["sigma"].copy()
    sigma[0, 2, 5:8, 5:8] = 0.0
    with pytest.warns(RuntimeWarning):
        _encode(trained, images=images, sigma=sigma)


def test_bad_sigma_is_an_error(trained: Trained) -> None:
    sigma = trained.data["sigma"].copy()
    sigma[2, 1, 10, 10] = 0.0
    with pytest.raises(ValueError, match="sigma"):
        _encode(trained, sigma=sigma)
    sigma[2, 1, 10, 10] = -1.0
    with pytest.raises(ValueError, match="sigma"):
        _encode(trained, sigma=sigma)
    # masked, the same pixel is fine
    mask = np.zeros(sigma.shape, dtype=bool)
    mask[2, 1, 10, 10] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # nothing is NaN: no warning ...
        warnings.filterwarnings("ignore", message=f".*{POOR_FIT_MESSAGE}")  # tiny model, poor fits
        p = _encode(trained, sigma=sigma, mask=mask)
    assert bool(torch.isfinite(p.params["mag_r"]).all())


def test_wrong_band_count_names_the_bands(trained: Trained) -> None:
    d = trained.data
    with pytest.raises(ValueError, match="u,g,r,i,z"):
        _encode(
            trained,
            images=d["images"][:, :4],
            sigma=d["sigma"][:, :4],
            psf_fwhm_arcsec=d["psf_fwhm_arcsec"][:, :4],
        )


def test_bad_shapes_and_counts_name_the_problem(trained: Trained) -> None:
    d = trained.data
    n = 3
    images, sigma = d["images"][:n], d["sigma"][:n]
    few = {"images": images, "sigma": sigma, "redshift": d["redshift"][:n]}
    # a PSF per galaxy only is ambiguous with one per band: refused, with the accepted shapes
    with pytest.raises(ValueError, match=r"psf_fwhm_arcsec must be a scalar, per band \(C,\)"):
        _encode(trained, **few, psf_fwhm_arcsec=np.full(n, 1.3))
    # the accepted ones agree: scalar, (1,), (C,) and (N, C)
    ref = _encode(trained, **few, psf_fwhm_arcsec=1.3)
    for psf in (np.array([1.3]), np.full(5, 1.3), np.full((n, 5), 1.3)):
        p = _encode(trained, **few, psf_fwhm_arcsec=psf)
        torch.testing.assert_close(p.params["mag_r"], ref.params["mag_r"])
    with pytest.raises(ValueError, match="no galaxies"):
        _encode(trained, images=images[:0], sigma=sigma[:0], redshift=None, psf_fwhm_arcsec=1.3)
    for bad in (0, -2, 2.0, True, "3"):
        with pytest.raises(ValueError, match="n must be"):
            trained.model.sample(n=bad)
        with pytest.raises(ValueError, match="n must be"):
            trained.model.analogues(images[0], sigma[0], n=bad, psf_fwhm_arcsec=1.3, redshift=0.1)
    assert len(trained.model.sample(n=np.int64(2), seed=0, with_derived=False)) == 2


# ----------------------------------------------------------------------------------------------
# sample and analogues
# ----------------------------------------------------------------------------------------------
def _check_samples(s: Samples, n: int, shape: tuple[int, int]) -> None:
    assert len(s) == n
    for arr in (s.images, s.model_images, s.sigma):
        assert arr.shape == (n, 5, *shape)
        assert bool(torch.isfinite(arr).all())
    assert s.bands == BANDS
    assert s.redshift.shape == (n,) and s.psf_fwhm_arcsec.shape == (n, 5)
    assert ALL_NAMES <= set(s.params)
    for name, value in s.params.items():
        assert value.shape == (n,), name
    for p in REGISTRY:
        assert bool(((s.params[p.name] >= p.low) & (s.params[p.name] <= p.high)).all()), p.name
    assert set(MAP_NAMES) <= set(s.maps)
    for name, value in s.maps.items():
        assert value.shape == (n, *shape), name
    assert bool((s.sigma > 0).all())


def test_sample_shapes_noise_and_determinism(trained: Trained) -> None:
    m = trained.model
    s = m.sample(n=5, seed=3)
    _check_samples(s, 5, (SIZE, SIZE))
    # the noise is unit normal in units of sigma (5 * 5 * 32 * 32 = 25600 pixels; the standard
    # error of the std is 0.0044, so 0.03 is ~7 sigma)
    chi = (s.images - s.model_images) / s.sigma
    assert abs(float(chi.mean())) < 0.03 and abs(float(chi.std()) - 1.0) < 0.03
    again = m.sample(n=5, seed=3)
    torch.testing.assert_close(again.images, s.images, rtol=0, atol=0)
    for name in REGISTRY.names:
        torch.testing.assert_close(again.params[name], s.params[name], rtol=0, atol=0)
    other = m.sample(n=5, seed=4, redshift=0.1, psf_fwhm_arcsec=1.2, with_derived=False)
    assert not torch.equal(other.params["log10_mstar_disk_msun"], s.params["log10_mstar_disk_msun"])
    torch.testing.assert_close(other.redshift, torch.full((5,), 0.1))
    torch.testing.assert_close(other.psf_fwhm_arcsec, torch.full((5, 5), 1.2))
    with pytest.raises(ValueError, match="n must be >= 1"):
        m.sample(n=0)


def test_analogues(trained: Trained) -> None:
    d = trained.data
    a = trained.model.analogues(
        d["images"][0],
        d["sigma"][0],
        n=4,
        psf_fwhm_arcsec=d["psf_fwhm_arcsec"][0],
        redshift=d["redshift"][0],
    )
    _check_samples(a, 4, (SIZE, SIZE))
    # rendered under the image's conditions
    torch.testing.assert_close(a.redshift, torch.full((4,), float(d["redshift"][0])))
    torch.testing.assert_close(
        a.psf_fwhm_arcsec, torch.as_tensor(d["psf_fwhm_arcsec"][0]).expand(4, 5)
    )
    # unknown redshift: drawn from the photo-z head, inside the fallback range
    lo, hi = REDSHIFT_FALLBACK_RANGE
    u = trained.model.analogues(
        d["images"][0], d["sigma"][0], n=3, seed=1, psf_fwhm_arcsec=d["psf_fwhm_arcsec"][0]
    )
    assert bool(((u.redshift > lo) & (u.redshift < hi)).all())
    # no PSF given: the median SDSS seeing, with a warning that names the assumption
    with pytest.warns(RuntimeWarning, match="psf_fwhm_arcsec not given") as record:
        g = trained.model.analogues(d["images"][0], d["sigma"][0], n=2, redshift=0.1)
    assert record[0].filename == __file__  # attributed to this call, not to galae or torch
    torch.testing.assert_close(
        g.psf_fwhm_arcsec,
        torch.as_tensor(median_psf_fwhm_arcsec(), dtype=torch.float32).expand(2, 5),
    )
    # the analogues are draws of encode's posterior, refined and masked as encode's is
    kw = {"psf_fwhm_arcsec": d["psf_fwhm_arcsec"][:1], "redshift": d["redshift"][:1]}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        post = trained.model.encode(
            d["images"][:1], d["sigma"][:1], refine_steps=2, mask_neighbours=True, n_mc=256, **kw
        )
        many = trained.model.analogues(
            d["images"][0], d["sigma"][0], n=256, refine_steps=2, mask_neighbours=True, **kw
        )
    for name in ("log10_mstar_disk_msun", "r_d_kpc", "dx_arcsec"):
        spread = float(post.std[name][0])
        mean = float(many.params[name].mean())
        assert abs(mean - float(post.params[name][0])) < 4 * spread / 16 + 1e-6, name
        assert 0.7 < float(many.params[name].std()) / spread < 1.3, name
    # a posterior already computed gives the same analogues as encoding the image again
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        same = {"refine_steps": 2, "mask_neighbours": True}
        post = trained.model.encode(
            d["images"][:1], d["sigma"][:1], n_mc=2, n_mc_derived=0, seed=5, **same, **kw
        )
        again = trained.model.analogues(d["images"][0], d["sigma"][0], n=3, seed=5, **same, **kw)
        given = trained.model.analogues(
            d["images"][0], d["sigma"][0], n=3, seed=5, posterior=post, **kw
        )
    torch.testing.assert_close(given.images, again.images)
    torch.testing.assert_close(given.params["r_d_kpc"], again.params["r_d_kpc"])
    with pytest.raises(ValueError, match="are the given posterior's"):
        trained.model.analogues(d["images"][0], d["sigma"][0], posterior=post, **same, **kw)
    with pytest.raises(ValueError, match="whether the redshift"):
        trained.model.analogues(
            d["images"][0], d["sigma"][0], psf_fwhm_arcsec=kw["psf_fwhm_arcsec"], posterior=post
        )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        two = trained.model.encode(d["images"][:2], d["sigma"][:2], redshift=d["redshift"][:2])
    with pytest.raises(ValueError, match="holds 2 galaxies"):
        trained.model.analogues(d["images"][0], d["sigma"][0], posterior=two, **kw)
    with pytest.raises(ValueError, match="images, sigma differ"):
        trained.model.analogues(d["images"][1], d["sigma"][1], posterior=post, **kw)
    with pytest.raises(ValueError, match="redshift differ"):
        trained.model.analogues(
            d["images"][0],
            d["sigma"][0],
            posterior=post,
            psf_fwhm_arcsec=kw["psf_fwhm_arcsec"],
            redshift=d["redshift"][0] + 0.05,
        )
    with pytest.raises(ValueError, match="one image"):
        trained.model.analogues(
            d["images"][:2],
            d["sigma"][:2],
            n=2,
            psf_fwhm_arcsec=d["psf_fwhm_arcsec"][:2],
            redshift=d["redshift"][:2],
        )


# ----------------------------------------------------------------------------------------------
# resuming and checkpoint errors
# ----------------------------------------------------------------------------------------------
def _copy_run(trained: Trained, name: str) -> Path:
    dst = trained.root / name
    shutil.copytree(trained.cfg.out_dir, dst)
    return dst


def test_resume_continues_from_the_last_step(
    trained: Trained, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _copy_run(trained, "resume")
    cfg = replace(trained.cfg, out_dir=str(out), max_steps=3, fit_prior=False)
    final = train(cfg)
    assert "at step 2" in capsys.readouterr().out
    assert load_checkpoint(out / "last.pt")["step"] == 3
    assert load_checkpoint(final)["step"] == 3
    with (out / "log.csv").open() as fh:
        steps = [int(row["step"]) for row in csv.DictReader(fh)]
    assert steps == [2, 3]  # one row from the first run, one from the resumed step


def test_rng_states_round_trip_from_any_device_and_dtype() -> None:
    """A resumed run draws what it would have drawn, whatever map_location the checkpoint met.

    Loaded with map_location set to a GPU, the saved generator state arrives as a CUDA tensor,
    which torch.set_rng_state refuses ("RNG state must be a torch.ByteTensor"): seen resuming on
    an H200.  restore_rng_states brings it back to a CPU byte tensor (here: from int64).
    """
    torch.manual_seed(5)
    saved = rng_states()
    expected = torch.rand(4)
    torch.rand(10)
    restore_rng_states({**saved, "rng_cpu": saved["rng_cpu"].to(torch.int64)})
    torch.testing.assert_close(torch.rand(4), expected)
    restore_rng_states({"rng_cpu": saved["rng_cpu"]})  # a checkpoint from before rng_cuda
    torch.testing.assert_close(torch.rand(4), expected)


def test_checkpoint_of_another_config_is_refused(trained: Trained) -> None:
    out = _copy_run(trained, "other_config")
    cfg = replace(trained.cfg, out_dir=str(out), widths=(8, 8), resume=True)
    with pytest.raises(CheckpointError, match="widths"):
        train(cfg)


def test_truncated_checkpoint_is_refused(trained: Trained, tmp_path: Path) -> None:
    raw = trained.checkpoint.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        galae.load(bad)


def test_tampered_registry_is_refused(trained: Trained, tmp_path: Path) -> None:
    state = torch.load(trained.checkpoint, map_location="cpu", weights_only=False)
    renamed = dict(state, registry=[dict(p) for p in state["registry"]])
    renamed["registry"][0]["name"] = "bogus_param"
    path = tmp_path / "renamed.pt"
    torch.save(renamed, path)
    with pytest.raises(CheckpointError, match="bogus_param"):
        galae.load(path)
    widened = dict(state, registry=[dict(p) for p in state["registry"]])
    widened["registry"][3]["high"] = widened["registry"][3]["high"] + 1.0
    path = tmp_path / "widened.pt"
    torch.save(widened, path)
    with pytest.raises(CheckpointError, match="registry"):
        galae.load(path)


@pytest.mark.parametrize(
    ("key", "saved", "legacy"),
    [("disk_history", "tau", "single"), ("birth_clouds", "effective", "face_on")],
)
def test_renderer_physics_is_saved_and_old_checkpoints_keep_theirs(
    trained: Trained, tmp_path: Path, key: str, saved: str, legacy: str
) -> None:
    """The renderer's physics choices (the disk history, the birth clouds) are physics the
    encoder learned: a checkpoint saves them, a checkpoint from before a choice existed renders
    what galae rendered then (one population; face-on birth clouds), and resuming with another
    choice is refused like another architecture."""
    state = torch.load(trained.checkpoint, map_location="cpu", weights_only=False)
    assert state[key] == getattr(trained.cfg, key) == saved
    assert getattr(galae.load(trained.checkpoint).model.renderer, key) == saved
    old = {k: v for k, v in state.items() if k != key}
    path = tmp_path / f"before_{key}.pt"
    torch.save(old, path)
    assert getattr(galae.load(path).model.renderer, key) == legacy
    out = _copy_run(trained, f"other_{key}")
    cfg = replace(trained.cfg, out_dir=str(out), resume=True, **{key: legacy})
    with pytest.raises(CheckpointError, match=key):
        train(cfg)


def test_the_packaged_model_has_the_corrected_birth_clouds_and_training_checks_the_mocks(
    trained: Trained, tmp_path: Path
) -> None:
    """The packaged model renders the corrected birth clouds (since the twenty-second release),
    and a training on analytic mocks made with other physics than the model's says so."""
    assert galae.load().model.renderer.birth_clouds == "effective"
    cfg = replace(
        trained.cfg,
        out_dir=str(tmp_path / "fresh"),
        birth_clouds="face_on",
        max_steps=1,
        fit_prior=False,
    )
    with pytest.warns(RuntimeWarning, match="birth_clouds='effective'.*renders birth_clouds"):
        train(cfg)


def test_contract_names_stay_functions_after_submodule_imports() -> None:
    import galae
    import galae.plots  # noqa: F401
    import galae.sampling  # noqa: F401

    assert callable(galae.sample) and callable(galae.load) and callable(galae.render_profile)


def test_packaged_default_model_samples() -> None:
    import galae

    s = galae.sample(n=3, seed=0)
    assert s.images.shape == (3, 5, 64, 64)
    assert s.model_images.shape == (3, 5, 64, 64)
    assert s.params["log10_mstar_msun"].shape == (3,)
    assert s.maps["log10_sigma_mstar_msun_per_kpc2"].shape == (3, 64, 64)
    assert torch.isfinite(s.images).all()
    again = galae.sample(n=3, seed=0)
    torch.testing.assert_close(again.images, s.images)


# ----------------------------------------------------------------------------------------------
# posterior calibration by simulation
def test_calibration_scales_the_widths_and_keeps_the_means(trained: Trained) -> None:
    """galae.calibrate: the written checkpoint's q has the same means and marginal widths
    multiplied by the fitted per-latent scales, which make the 68% intervals cover 68% of the
    simulated truths; the original checkpoint loads uncalibrated (scales of one)."""
    from galae.calibrate import calibrate_checkpoint

    out = calibrate_checkpoint(
        trained.checkpoint, trained.cfg.data, trained.root / "cal.pt", n=128, batch_size=32
    )
    state = load_checkpoint(out)
    summary = state["posterior_calibration"]
    scales = state["encoder_state"]["posterior_scale"]
    assert summary["n_simulated"] == 128 and scales.shape == (REGISTRY.dim,)
    for name, cov in summary["coverage_68_after"].items():
        assert abs(cov - 0.6827) < 0.02, name
    assert torch.equal(trained.model.guide.encoder.posterior_scale, torch.ones(REGISTRY.dim))
    d = trained.data
    args = (d["images"], d["sigma"])
    kw = {"psf_fwhm_arcsec": d["psf_fwhm_arcsec"], "redshift": d["redshift"]}
    before = trained.model.make_batch(*args, **kw)
    cal = galae.load(out)
    q0 = trained.model.guide.encode(before)
    q1 = cal.guide.encode(cal.make_batch(*args, **kw))
    torch.testing.assert_close(q1.loc, q0.loc)
    sd0 = ((q0.cov_factor**2).sum(-1) + q0.cov_diag).sqrt()
    sd1 = ((q1.cov_factor**2).sum(-1) + q1.cov_diag).sqrt()
    torch.testing.assert_close(sd1, sd0 * scales.float(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least 100"):
        calibrate_checkpoint(trained.checkpoint, trained.cfg.data, trained.root / "x.pt", n=32)


def test_calibration_simulation_priors(trained: Trained) -> None:
    """The simulation prior is chosen by name (population, learned, broad), can be mixed with
    the broad prior, and bad names or fractions are errors that say so."""
    from galae.calibrate import SIMULATION_PRIORS, calibrate_checkpoint, simulation_prior
    from galae.prior import MixturePrior, PopulationPrior

    model = trained.model.model
    assert set(SIMULATION_PRIORS) == {"population", "learned", "broad"}
    assert isinstance(simulation_prior(model, "population"), PopulationPrior)
    assert simulation_prior(model, "learned") is model.prior
    mixed = simulation_prior(model, "population", 0.2)
    assert isinstance(mixed, MixturePrior)
    assert mixed.sample(64, generator=torch.Generator().manual_seed(0)).shape == (64, REGISTRY.dim)
    with pytest.raises(ValueError, match="unknown simulation prior 'flat'"):
        simulation_prior(model, "flat")
    with pytest.raises(ValueError, match="broad_fraction"):
        simulation_prior(model, "population", 1.0)
    out = calibrate_checkpoint(
        trained.checkpoint,
        trained.cfg.data,
        trained.root / "cal_learned.pt",
        n=128,
        batch_size=64,
        prior="learned",
        broad_fraction=0.1,
        history_scale_dex=0.25,
        dust_clumping_max=0.7,
    )
    summary = load_checkpoint(out)["posterior_calibration"]
    assert summary["prior"] == "learned" and summary["broad_fraction"] == 0.1
    # the simulations' disk-history variability: as given, else the checkpoint's training value
    assert summary["history_scale_dex"] == 0.25
    trained_value = load_checkpoint(trained.checkpoint)["config"]["sleep_history_scale_dex"]
    out = calibrate_checkpoint(trained.checkpoint, trained.cfg.data, trained.root / "c2.pt", n=128)
    assert load_checkpoint(out)["posterior_calibration"]["history_scale_dex"] == trained_value
    # and its patchy dust likewise (0, the smooth slab, for a checkpoint trained without it)
    assert summary["dust_clumping_max"] == 0.7
    assert summary["population_dust"] == "empirical"  # the trained model's simulations
    trained_clumping = load_checkpoint(trained.checkpoint)["config"].get(
        "sleep_dust_clumping_max", 0.0
    )
    assert load_checkpoint(out)["posterior_calibration"]["dust_clumping_max"] == trained_clumping


def kw_two(kw: dict) -> dict:
    """The first two galaxies' keyword arrays of ``kw``."""
    return {k: (v[:2] if hasattr(v, "__len__") else v) for k, v in kw.items()}


def test_refined_encode_and_its_calibration(trained: Trained) -> None:
    """encode(refine_steps=k): the refined posterior (galae.refine) has the contract's names and
    full-rank widths; galae.calibrate --refine-steps fits its own scales, which scale exactly
    those widths up to the width ceiling it records, and leaves the amortized calibration
    alone."""
    from galae.calibrate import calibrate_checkpoint
    from galae.refine import REFINED_WIDTH_CEILING

    def refined_calibration(name: str, **kw: Any) -> Path:
        return calibrate_checkpoint(
            trained.checkpoint,
            trained.cfg.data,
            trained.root / name,
            n=128,
            batch_size=64,
            refine_steps=2,
            **kw,
        )

    # a barely trained model: the refined modes of some latents lie too far from the truths for
    # the ceiling, and those are named and left without one (no fallback: below, with one)
    with pytest.warns(RuntimeWarning, match="calibrated without a ceiling"):
        out = refined_calibration("refcal.pt", width_ceiling_fallback=None)
    state = load_checkpoint(out)
    summary = state["refined_posterior_calibration"]
    assert summary["refine_steps"] == 2 and "posterior_calibration" not in state
    assert summary["width_ceiling"] == REFINED_WIDTH_CEILING
    ceiling = torch.tensor([summary["width_ceiling_per_latent"][n] for n in REGISTRY.names])
    reach = summary["coverage_68_reachable_under_ceiling"]
    for name, c in zip(REGISTRY.names, ceiling.tolist(), strict=True):
        assert c == (REFINED_WIDTH_CEILING if reach[name] >= 0.6827 else math.inf), name
    assert bool(torch.isinf(ceiling).any() and torch.isfinite(ceiling).any())
    scales = state["encoder_state"]["refined_posterior_scale"]
    assert torch.equal(state["encoder_state"]["posterior_scale"], torch.ones(REGISTRY.dim))
    assert summary["scale_form"] == "covariance"  # galae.refine.REFINED_SCALE_FORM
    for name, cov in summary["coverage_68_after"].items():
        if summary["scale"][name] < 20.0:
            assert abs(cov - 0.6827) < 0.02, name
        else:  # the scale's upper clamp (a barely trained model): widened as far as allowed
            assert cov >= summary["coverage_68_before"][name], name
    d = trained.data
    kw = {"psf_fwhm_arcsec": d["psf_fwhm_arcsec"], "redshift": d["redshift"], "n_mc": 64}
    with pytest.warns(RuntimeWarning, match="not calibrated"):
        plain = trained.model.encode(d["images"], d["sigma"], refine_steps=2, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # calibrated for these steps: no warning ...
        warnings.filterwarnings("ignore", message=f".*{POOR_FIT_MESSAGE}")  # tiny model, poor fits
        cal = galae.load(out).encode(d["images"], d["sigma"], refine_steps=2, **kw)
    with pytest.warns(RuntimeWarning, match="calibrated for 2 refine steps, not 3"):
        galae.load(out).encode(d["images"][:2], d["sigma"][:2], refine_steps=3, **kw_two(kw))
    # a calibration made with another width floor (or before there was one) is named
    from galae.refine import REFINED_WIDTH_FLOOR

    assert summary["width_floor"] == REFINED_WIDTH_FLOOR
    other = load_checkpoint(out)
    other["refined_posterior_calibration"]["width_floor"] = REFINED_WIDTH_FLOOR + 0.1
    torch.save(other, trained.root / "other_floor.pt")
    with pytest.warns(RuntimeWarning, match="calibrated with a width floor of"):
        galae.load(trained.root / "other_floor.pt").encode(
            d["images"][:2], d["sigma"][:2], refine_steps=2, **kw_two(kw)
        )
    assert set(plain.params) >= ALL_NAMES and plain._cov_factor.shape[-1] == REGISTRY.dim
    torch.testing.assert_close(cal._loc, plain._loc)
    sd0 = ((plain._cov_factor**2).sum(-1) + plain._cov_diag).sqrt()
    sd1 = ((cal._cov_factor**2).sum(-1) + cal._cov_diag).sqrt()
    # the scaled widths, capped at the ceiling times the amortized ones (the checkpoint's
    # amortized widths are uncalibrated here: scale 1)
    amortized = trained.model.encode(d["images"], d["sigma"], **kw)
    sd_q = ((amortized._cov_factor**2).sum(-1) + amortized._cov_diag).sqrt()
    expected = torch.minimum(sd0 * scales.float(), ceiling.float() * sd_q)
    torch.testing.assert_close(sd1, expected, rtol=1e-4, atol=1e-6)
    assert bool((sd0 * scales.float() > ceiling.float() * sd_q * 1.01).any())  # it binds
    # without a ceiling, recorded as None: the scales alone
    free = refined_calibration("refcal_free.pt", width_ceiling=None, width_ceiling_fallback=None)
    assert load_checkpoint(free)["refined_posterior_calibration"]["width_ceiling"] is None
    s_free = load_checkpoint(free)["encoder_state"]["refined_posterior_scale"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{POOR_FIT_MESSAGE}")
        post_free = galae.load(free).encode(d["images"], d["sigma"], refine_steps=2, **kw)
    sd3 = ((post_free._cov_factor**2).sum(-1) + post_free._cov_diag).sqrt()
    torch.testing.assert_close(sd3, sd0 * s_free.float(), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="width_ceiling must be a finite number >= 1"):
        refined_calibration("x.pt", width_ceiling=0.5, width_ceiling_fallback=None)
    # with a fallback: the latents short under the ceiling get it where 68% of their truths lie
    # within it, none where not; recorded, and read back at encoding
    with pytest.warns(RuntimeWarning, match="fallback ceiling 4"):
        fb = refined_calibration("refcal_fb.pt", width_ceiling_fallback=4.0)
    summary_fb = load_checkpoint(fb)["refined_posterior_calibration"]
    assert summary_fb["width_ceiling_fallback"] == 4.0
    reach_fb = summary_fb["coverage_68_reachable_under_fallback"]
    for name in REGISTRY.names:
        c = summary_fb["width_ceiling_per_latent"][name]
        if summary_fb["coverage_68_reachable_under_ceiling"][name] >= 0.6827:
            assert c == REFINED_WIDTH_CEILING, name
        else:
            assert c == (4.0 if reach_fb[name] >= 0.6827 else math.inf), name
    assert 4.0 in summary_fb["width_ceiling_per_latent"].values()
    ceiling_fb = torch.tensor([summary_fb["width_ceiling_per_latent"][n] for n in REGISTRY.names])
    s_fb = load_checkpoint(fb)["encoder_state"]["refined_posterior_scale"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{POOR_FIT_MESSAGE}")
        post_fb = galae.load(fb).encode(d["images"], d["sigma"], refine_steps=2, **kw)
    sd4 = ((post_fb._cov_factor**2).sum(-1) + post_fb._cov_diag).sqrt()
    expected_fb = torch.minimum(sd0 * s_fb.float(), ceiling_fb.float() * sd_q)
    torch.testing.assert_close(sd4, expected_fb, rtol=1e-4, atol=1e-6)
    # the alternative form (measured, not kept: galae.refine), read from the calibration that
    # records it: the scales temper the pixels' information, so no width moves by more than
    # the extreme scales
    tempered = refined_calibration(
        "refcal_lik.pt", scale_form="likelihood", width_ceiling=None, width_ceiling_fallback=None
    )
    lik = load_checkpoint(tempered)
    assert lik["refined_posterior_calibration"]["scale_form"] == "likelihood"
    assert lik["refined_posterior_calibration"]["width_ceiling_fallback"] is None
    s_lik = lik["encoder_state"]["refined_posterior_scale"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{POOR_FIT_MESSAGE}")
        post_lik = galae.load(tempered).encode(d["images"], d["sigma"], refine_steps=2, **kw)
    sd2 = ((post_lik._cov_factor**2).sum(-1) + post_lik._cov_diag).sqrt()
    lo, hi = min(1.0, float(s_lik.min())), max(1.0, float(s_lik.max()))
    assert bool((sd2 >= sd0 * lo * (1 - 1e-4)).all() and (sd2 <= sd0 * hi * (1 + 1e-4)).all())
    with pytest.raises(ValueError, match="scale_form must be one of"):
        calibrate_checkpoint(
            trained.checkpoint, trained.cfg.data, trained.root / "x.pt", n=128, scale_form="x"
        )
    draws = cal.samples(8, seed=0, derived=False)
    assert all(bool(torch.isfinite(v).all()) for v in draws.values())
    # unknown redshift: refined at the photo-z head's median redshift
    kw_nz = {**kw_two(kw), "redshift": None}
    post = galae.load(out).encode(d["images"][:2], d["sigma"][:2], refine_steps=2, **kw_nz)
    assert bool(torch.isfinite(post.params["redshift"]).all())
    assert bool(torch.isfinite(post.model_images).all())


def test_encode_masks_neighbours_on_request(trained: Trained) -> None:
    """encode(mask_neighbours=True): a bright star put far from the galaxy is masked (segmentation,
    galae.data.segmentation) on top of the user's mask, and the centre is not."""
    d = trained.data
    images = np.array(d["images"][:2], dtype=np.float32)
    sigma = np.array(d["sigma"][:2], dtype=np.float32)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    star = np.exp(-0.5 * ((yy - 4) ** 2 + (xx - 27) ** 2) / 1.0**2)
    images[0] += 200.0 * sigma[0].max() * star[None].astype(np.float32)
    kw = {"psf_fwhm_arcsec": d["psf_fwhm_arcsec"][:2], "redshift": d["redshift"][:2], "n_mc": 16}
    post = trained.model.encode(images, sigma, mask_neighbours=True, **kw)
    mask = post.mask
    assert bool(mask[0, :, 4, 27].all())  # the star
    assert not bool(mask[:, :, SIZE // 2, SIZE // 2].any())  # the galaxy's centre
    assert set(post.params) >= ALL_NAMES
    plain = trained.model.encode(images, sigma, **kw)
    assert not bool(plain.mask[0, :, 4, 27].any())
    # analogues from that posterior: the star's pixels differ from the call's image (the
    # posterior's batch holds them masked), the pixels it used do not
    one = {"psf_fwhm_arcsec": d["psf_fwhm_arcsec"][:1], "redshift": d["redshift"][:1]}
    post0 = trained.model.encode(images[:1], sigma[:1], mask_neighbours=True, n_mc_derived=0, **one)
    twins = trained.model.analogues(images[0], sigma[0], n=2, posterior=post0, **one)
    assert twins.images.shape[0] == 2


def test_stamps_of_other_sizes_are_framed_for_the_encoder(trained: Trained) -> None:
    """The encoder sees the stamp size it was trained on.  A smaller stamp is centred in a frame
    of masked pixels; of a larger one the encoder reads the centre cut while the renderer covers
    it all.  Outputs have the stamp's size, and the centre offsets are from the stamp's centre,
    also when frame and stamp differ by an odd number of pixels (their centres then half a
    pixel apart)."""
    d = trained.data
    kw = {"psf_fwhm_arcsec": d["psf_fwhm_arcsec"][:2], "redshift": d["redshift"][:2], "n_mc": 16}
    small = trained.model.encode(
        d["images"][:2, :, 2:30, 3:29], d["sigma"][:2, :, 2:30, 3:29], **kw
    )
    assert small.model_images.shape == (2, 5, 28, 26)
    assert all(v.shape == (2, 28, 26) for v in small.maps.values())
    assert all(v.shape == (2, 28, 26) for v in small.maps_std.values())
    assert all(v.shape == (2, 28, 26) for v in small.model_maps.values())
    assert small.map_samples(3)["age_gyr"].shape == (3, 2, 28, 26)
    frame = small._batch.mask
    assert frame.shape == (2, 5, SIZE, SIZE)
    assert bool(frame[..., :2, :].all()) and bool(frame[..., :, :3].all())
    assert not bool(frame[..., 2:30, 3:29].any())
    assert small.mask.shape == (2, 5, 28, 26) and not bool(small.mask.any())
    assert all(bool(torch.isfinite(v).all()) for v in small.params.values())

    # a larger stamp: the same galaxies with a border of sky (noise drawn at their sigma)
    rng = np.random.default_rng(0)
    pad = 6
    big_sigma = np.pad(d["sigma"][:2], ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    big = np.pad(d["images"][:2], ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    border = np.ones(big.shape[-2:], bool)
    border[pad:-pad, pad:-pad] = False
    big = np.where(border, rng.normal(0.0, 1.0, big.shape) * big_sigma, big).astype(np.float32)
    same = trained.model.encode(d["images"][:2], d["sigma"][:2], **kw)
    large = trained.model.encode(big, big_sigma, **kw)
    n = SIZE + 2 * pad
    assert large.model_images.shape == (2, 5, n, n) and large.mask.shape == (2, 5, n, n)
    assert all(v.shape == (2, n, n) for v in large.maps.values())
    assert large.map_samples(2, names="age_gyr")["age_gyr"].shape == (2, 2, n, n)
    # the encoder read the centre cut, which is the original stamp: the same posterior
    torch.testing.assert_close(large._loc, same._loc)
    for name in ("dx_arcsec", "dy_arcsec", "log10_mstar_disk_msun"):
        torch.testing.assert_close(large.params[name], same.params[name])
    # and the renderer drew the galaxy where it is in the larger stamp
    torch.testing.assert_close(
        large.model_images[..., pad:-pad, pad:-pad], same.model_images, rtol=1e-3, atol=1e-4
    )
    # one more row at the top and column on the left: the frame gets a masked row and column at
    # the bottom and right, its centre cut is the original stamp again, and the stamp's centre
    # lies half a pixel above and left of the frame's, so the offsets from it are half a pixel
    # larger
    odd = trained.model.encode(
        np.pad(big, ((0, 0), (0, 0), (1, 0), (1, 0))),
        np.pad(big_sigma, ((0, 0), (0, 0), (1, 0), (1, 0)), mode="edge"),
        **kw,
    )
    half = 0.5 * trained.model.pixel_scale_arcsec
    assert odd.model_images.shape == (2, 5, n + 1, n + 1)
    torch.testing.assert_close(odd._loc, same._loc)
    for name in ("dx_arcsec", "dy_arcsec"):
        torch.testing.assert_close(odd.params[name], same.params[name] + half)
        drawn = odd.samples(4, seed=1, derived=False)[name]
        torch.testing.assert_close(drawn, same.samples(4, seed=1, derived=False)[name] + half)
    torch.testing.assert_close(
        odd.model_images[..., pad + 1 : -pad, pad + 1 : -pad],
        same.model_images,
        rtol=1e-3,
        atol=1e-4,
    )
    # a smaller stamp one pixel short: in the frame's first rows and columns, whose centre lies
    # half a pixel right of and below the stamp's
    b = trained.model.make_batch(d["images"][:2, :, 1:, 1:], d["sigma"][:2, :, 1:, 1:], 1.3)
    framed, (rows, cols), shift = trained.model._frame(b)
    assert framed.images.shape[-2:] == (SIZE, SIZE) and (rows, cols) == (
        slice(0, SIZE - 1),
        slice(0, SIZE - 1),
    )
    assert shift == (half, half) and bool(framed.mask[..., -1, :].all())
    # analogues render on the stamp
    a = trained.model.analogues(
        big[0],
        big_sigma[0],
        n=3,
        psf_fwhm_arcsec=kw["psf_fwhm_arcsec"][0],
        redshift=kw["redshift"][0],
    )
    assert a.images.shape == (3, 5, n, n) and a.maps["age_gyr"].shape == (3, n, n)


def test_evaluate_with_hidden_redshifts_scores_the_photo_z(trained: Trained) -> None:
    from galae.evaluate import evaluate

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*chi2 per pixel")
        m = evaluate(
            trained.checkpoint,
            trained.cfg.data,
            trained.root / "ev_photoz",
            n=8,
            n_posterior=18,
            n_mc_derived=2,
            figures=False,
            hide_redshift=True,
        )
    pz = m["photo_z"]
    assert m["hide_redshift"] and pz["n"] == 8
    fit = m["chi2_per_pixel"]  # the fraction of poor fits in place of encode's warnings
    assert 0.0 <= fit["fraction_above_poor_fit"] <= 1.0 and fit["poor_fit_threshold"] == 3.0
    assert pz["nmad"] >= 0 and 0 <= pz["outlier_fraction"] <= 1
    assert 0 <= pz["coverage_68"] <= pz["coverage_95"] <= 1


def test_evaluate_reads_posterior_mean_maps_and_checks_their_uncertainties(
    trained: Trained,
) -> None:
    """evaluate scores the per-pixel maps of the posterior mean, with the coverage of their
    standard deviations, takes the within-2-r_half quantities from the model maps, says so in
    the metrics, and draws the posterior sigma beside the maps."""
    from galae.evaluate import evaluate

    out = trained.root / "ev_maps"
    m = evaluate(trained.checkpoint, trained.cfg.data, out, n=8, n_posterior=8, n_mc_derived=4)
    est = m["map_estimators"]
    assert "posterior mean" in est["per_pixel_and_radial"] and "4" in est["per_pixel_and_radial"]
    assert "model_maps" in est["within_2rhalf"]
    entry = m["maps"]["log10_sigma_mstar_msun_per_kpc2"]
    assert 0.0 <= entry["per_pixel_coverage_68"] <= 1.0 and entry["per_pixel_median_std"] > 0.0
    assert "log10_mstar_2rhalf" in m["maps"]
    assert (out / "maps.png").stat().st_size > 10_000
    # the half-light radius by resolution: every galaxy in one bin, and its figure
    res_bins = m["r_half_by_resolution"]["bins"]
    assert sum(b["n"] for b in res_bins) == 8
    assert all(0.0 <= b["fraction_within_1sigma"] <= 1.0 for b in res_bins if b["n"])
    assert (out / "r_half_resolution.png").stat().st_size > 10_000
    # the per-galaxy statistics behind the report reproduce it, and a comparison reads them
    from galae.evaluate import PER_GALAXY_FILE, compare_reports

    with np.load(out / PER_GALAXY_FILE) as z:
        d = z["params/log10_mstar_msun/pred_minus_true"]
        assert d.shape == (8,) and z["_fingerprint"].shape == (8,)
        lr = z["log10_mstar_2rhalf/log_true_over_pred"]
    assert np.median(d) == pytest.approx(m["params"]["log10_mstar_msun"]["bias_median"], abs=1e-6)
    assert np.nanstd(lr) == pytest.approx(m["maps"]["log10_mstar_2rhalf"]["scatter_dex"], rel=1e-6)
    res = compare_reports(out / "metrics.json", out / "metrics.json", n_boot=50)
    assert res["bootstrap"]["paired"]
    row = res["rows"]["params/log10_mstar_msun/scatter_mad"]
    assert row["ratio_A_over_B"] == 1.0 and row["ratio_ci95"] == [1.0, 1.0]


def test_chi2_per_pixel_and_the_poor_fit_warning(
    trained: Trained, post: Posterior, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Posterior.chi2_per_pixel is the mean squared pull of model_images over each galaxy's
    unmasked pixels; encode warns, at the caller's line, about galaxies above
    POOR_FIT_CHI2_PER_PIXEL, pointing the amortized posterior to refine_steps."""
    import galae.sampling as sampling

    d = trained.data
    x = torch.as_tensor(d["images"])
    s = torch.as_tensor(d["sigma"])
    pull2 = ((x - post.model_images) / s) ** 2
    good = ~post.mask
    want = (pull2 * good).sum((1, 2, 3)) / good.sum((1, 2, 3))
    torch.testing.assert_close(post.chi2_per_pixel, want)
    monkeypatch.setattr(sampling, "POOR_FIT_CHI2_PER_PIXEL", float("inf"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning at all when every fit passes
        _encode(trained)
    monkeypatch.setattr(sampling, "POOR_FIT_CHI2_PER_PIXEL", 0.0)
    with pytest.warns(RuntimeWarning, match=f"{N_ENC} of {N_ENC} galaxies .*refine_steps=60") as w:
        _encode(trained)
    assert any(Path(r.filename).name == "test_api.py" for r in w)


def test_refine_above_chi2_refines_only_the_poor_fits(trained: Trained) -> None:
    """encode(refine_steps=k, refine_above_chi2=t): the galaxies the amortized posterior fits
    with chi2 per pixel above t are refined (as encode(refine_steps=k) refines them), the others
    keep the amortized posterior exactly; Posterior.refined says which.  Half the redshifts are
    withheld, so the photo-z mixtures of both kinds are put together in the galaxies' order."""
    z = np.asarray(trained.data["redshift"], np.float32).copy()
    z[1::2] = np.nan
    quiet = {"category": RuntimeWarning}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", **quiet)
        amortized = _encode(trained, redshift=z)
        t = float(torch.quantile(amortized.chi2_per_pixel, 0.5))
        mixed = _encode(trained, redshift=z, refine_steps=3, refine_above_chi2=t)
        everyone = _encode(trained, redshift=z, refine_steps=3)
    poor = amortized.chi2_per_pixel > t
    assert 0 < int(poor.sum()) < N_ENC
    torch.testing.assert_close(mixed.refined, poor, rtol=0, atol=0)
    assert not bool(amortized.refined.any()) and bool(everyone.refined.all())
    keep = ~poor
    for name in ("log10_mstar_msun", "r_half_arcsec_r", "redshift", "mag_r"):
        torch.testing.assert_close(mixed.params[name][keep], amortized.params[name][keep])
        torch.testing.assert_close(mixed.std[name][keep], amortized.std[name][keep])
    torch.testing.assert_close(mixed.model_images[keep], amortized.model_images[keep])
    # the refined rows: the refinement of those galaxies (encoded in other batches, so up to
    # float noise), not the amortized posterior
    torch.testing.assert_close(mixed._loc[poor], everyone._loc[poor], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(mixed._loc[poor], amortized._loc[poor])
    torch.testing.assert_close(
        mixed.chi2_per_pixel[poor], everyone.chi2_per_pixel[poor], rtol=1e-3, atol=1e-3
    )
    for post in (mixed, everyone):
        assert post.redshift_given.tolist() == np.isfinite(z).tolist()
    # the joint photo-z draws come from each galaxy's own mixture, in the galaxies' order
    draws = mixed.samples(16, seed=1, derived=False)
    assert draws["redshift"].shape == (16, N_ENC)
    known = np.isfinite(z)
    torch.testing.assert_close(
        draws["redshift"][:, torch.as_tensor(known)],
        torch.as_tensor(z[known]).expand(16, -1),
    )
    ref = everyone.samples(16, seed=1, derived=False)["redshift"]
    unknown_poor = torch.as_tensor(~known) & poor
    torch.testing.assert_close(
        draws["redshift"][:, unknown_poor], ref[:, unknown_poor], rtol=1e-4, atol=1e-4
    )


def test_refine_above_chi2_bad_values(trained: Trained) -> None:
    with pytest.raises(ValueError, match="needs refine_steps > 0"):
        _encode(trained, refine_above_chi2=3.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="refine_above_chi2 must be a positive"):
            _encode(trained, refine_steps=2, refine_above_chi2=bad)


def test_evaluate_refines_only_the_poor_fits(trained: Trained) -> None:
    """galae.evaluate(refine_steps=k, refine_above_chi2=t) reports the fraction it refined and
    what encoding cost; without refine_steps the option is an error."""
    from galae.evaluate import evaluate

    kw = {"n": 8, "n_posterior": 8, "n_mc_derived": 2, "figures": False}
    amortized = evaluate(trained.checkpoint, trained.cfg.data, trained.root / "ev_a", **kw)
    d = read_h5(trained.cfg.data, np.arange(8), with_maps=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f".*{POOR_FIT_MESSAGE}")
        post = trained.model.encode(
            d["images"],
            d["sigma"],
            psf_fwhm_arcsec=d["psf_fwhm_arcsec"],
            redshift=d["redshift"],
            mask=d["mask"],
            n_mc=8,
            n_mc_derived=0,
        )
    chi2 = post.chi2_per_pixel.numpy()  # of the posterior mean: no Monte Carlo in it
    t = float(np.median(chi2))
    m = evaluate(
        trained.checkpoint,
        trained.cfg.data,
        trained.root / "ev_above",
        refine_steps=2,
        refine_above_chi2=t,
        **kw,
    )
    assert amortized["fraction_refined"] == 0.0 and amortized["refine_above_chi2"] is None
    # each report says which calibrations its widths have (this checkpoint's: none)
    assert amortized["widths_calibration"] == {"amortized": None}
    assert m["widths_calibration"] == {"amortized": None, "refined": None}
    assert m["refine_above_chi2"] == t
    assert m["fraction_refined"] == pytest.approx(float(np.mean(chi2 > t)))
    assert m["seconds_per_galaxy"] > 0.0
    with pytest.raises(ValueError, match="needs refine_steps > 0"):
        evaluate(
            trained.checkpoint,
            trained.cfg.data,
            trained.root / "ev_bad",
            **kw,
            refine_above_chi2=3.0,
        )


def test_flips_make_encode_mirror_equivariant(trained: Trained) -> None:
    """encode(flips=True) averages the encoder over the stamps mirrored in x, y and both: the
    posterior of a mirrored image is then the mirror of the posterior (dx -> -dx for a column
    flip, dy -> -dy for a row flip, PA -> 180 - PA for either alone; every other latent and the
    photo-z unchanged), for known and unknown redshifts.  Without it the CNN is not equivariant."""
    from galae.latent import REGISTRY

    z = np.asarray(trained.data["redshift"], np.float32).copy()
    z[::2] = np.nan
    x, s = trained.data["images"], trained.data["sigma"]
    ix, iy, ipa = (REGISTRY.index(k) for k in ("dx_arcsec", "dy_arcsec", "pa_deg"))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        base = _encode(trained, redshift=z, flips=True)
        plain = _encode(trained, redshift=z)
        for dims, negated in (((-1,), (ix, ipa)), ((-2,), (iy, ipa)), ((-1, -2), (ix, iy))):
            m = _encode(
                trained,
                images=np.ascontiguousarray(np.flip(x, dims)),
                sigma=np.ascontiguousarray(np.flip(s, dims)),
                redshift=z,
                flips=True,
            )
            want = base._loc.clone()
            want[:, list(negated)] = -want[:, list(negated)]
            torch.testing.assert_close(m._loc, want, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(m._z_dist[0], base._z_dist[0], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(m._mixture.z, base._mixture.z, rtol=1e-4, atol=1e-4)
            same = [i for i in range(REGISTRY.dim) if i not in (ix, iy, ipa)]
            mirrored = _encode(
                trained,
                images=np.ascontiguousarray(np.flip(x, dims)),
                sigma=np.ascontiguousarray(np.flip(s, dims)),
                redshift=z,
            )
            assert not torch.allclose(mirrored._loc[:, same], plain._loc[:, same], atol=1e-4)


def test_flip_average_of_position_angles_is_axial() -> None:
    """PA is an axis (period 180 degrees): 1 and 179 degrees average to 0, not 90."""
    from galae.latent import REGISTRY
    from galae.sampling import _average_locs

    pa = REGISTRY["pa_deg"]
    ipa = REGISTRY.index("pa_deg")
    locs = torch.zeros(2, 1, REGISTRY.dim)
    locs[:, 0, ipa] = pa.to_unconstrained(torch.tensor([1.0, 179.0]))
    got = float(pa.from_unconstrained(_average_locs(locs)[0, ipa]))
    assert min(got, 180.0 - got) < 1e-3
    locs[:, 0, ipa] = pa.to_unconstrained(torch.tensor([40.0, 60.0]))
    assert float(pa.from_unconstrained(_average_locs(locs)[0, ipa])) == pytest.approx(
        50.0, abs=1e-3
    )
