"""The GPU paths: renderer, encoder, sampling and training on a CUDA device.

Skipped without CUDA (CI has none).  On a machine with one, ``python -m pytest tests/test_cuda.py``
checks that what runs on the GPU in float32 computes what the CPU computes in float64 (the
renderer to 1e-3 of the peak pixel, the encoder's posterior means to 1e-2 in unconstrained
space), that gradients through every latent are finite there, and that ``galae.sample`` and a
short mixed-precision training run work end to end and give checkpoints the CPU can load.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import galae
from galae.data.conditions import sample_sdss_conditions
from galae.latent import REGISTRY
from galae.mock import MockConfig, run_mock
from galae.physics.population import sample_population
from galae.render.observation import Observation
from galae.render.renderer import GalaxyRenderer
from galae.settings import RENDER_PRESETS
from galae.train import TrainConfig, train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

SHAPE = (64, 64)


def _galaxies(n: int, seed: int = 0) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    p = sample_population(n, torch.Generator().manual_seed(seed))
    cond = sample_sdss_conditions(n, np.random.default_rng(seed))
    return p, cond.redshift, cond.psf_fwhm_arcsec


@pytest.mark.parametrize("preset", ["accurate", "fast", "reference"])
def test_cuda_float32_render_matches_cpu_float64(preset: str) -> None:
    p, z, psf = _galaxies(16)
    settings = RENDER_PRESETS[preset]
    obs64 = Observation.create(z, psf, shape=SHAPE, dtype=torch.float64)
    with torch.no_grad():
        ref = (
            GalaxyRenderer(settings=settings)
            .double()({k: v.double() for k, v in p.items()}, obs64)
            .images
        )
        ren = GalaxyRenderer(settings=settings).to("cuda")
        obs = Observation.create(z, psf, shape=SHAPE, device="cuda")
        p_gpu = {k: v.to("cuda") for k, v in p.items()}
        full = ren(p_gpu, obs).images
        alone = ren.images(p_gpu, obs)
    peak = ref.amax((-1, -2), keepdim=True)
    for got in (full, alone):
        assert got.device.type == "cuda" and got.dtype == torch.float32
        err = ((got.double().cpu() - ref).abs() / peak).max()
        assert err < 1e-3, f"{preset}: max |GPU float32 - CPU float64| / peak = {err:.2e}"


def test_cuda_gradients_through_every_latent_are_finite() -> None:
    p, z, psf = _galaxies(8, seed=1)
    ren = GalaxyRenderer().to("cuda")
    obs = Observation.create(z, psf, shape=SHAPE, device="cuda")
    u = REGISTRY.to_unconstrained({k: v.to("cuda") for k, v in p.items()}).detach()
    u.requires_grad_(True)
    ren(REGISTRY.from_unconstrained(u), obs).images.square().sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()
    assert (u.grad.abs().sum(0) > 0).sum() >= u.shape[1] - 2  # (redshift enters via obs)


def test_sample_on_cuda_matches_its_own_determinism_and_cpu_shapes() -> None:
    s = galae.sample(n=100, seed=0, device="cuda")
    assert s.images.shape == (100, 5, 64, 64) and s.images.device.type == "cuda"
    assert torch.isfinite(s.images).all() and torch.isfinite(s.model_images).all()
    again = galae.sample(n=100, seed=0, device="cuda")
    torch.testing.assert_close(again.images, s.images)


def test_encode_on_cuda_matches_cpu() -> None:
    s = galae.sample(n=8, seed=2)
    images, sigma = s.images.numpy(), s.sigma.numpy()
    kw = {"psf_fwhm_arcsec": s.psf_fwhm_arcsec.numpy(), "redshift": s.redshift.numpy()}
    cpu = galae.load().encode(images, sigma, n_mc=64, n_mc_derived=2, **kw)
    gpu = galae.load(device="cuda").encode(images, sigma, n_mc=64, n_mc_derived=2, **kw)
    torch.testing.assert_close(gpu._loc.cpu(), cpu._loc, atol=1e-2, rtol=1e-2)
    # the reconstruction at the posterior mean is deterministic (the derived observables are
    # Monte Carlo means over the device's own random draws, so they are not compared)
    peak = cpu.model_images.amax((-1, -2), keepdim=True)
    err = ((gpu.model_images.cpu() - cpu.model_images).abs() / peak).max()
    assert err < 1e-2, f"GPU and CPU reconstructions differ by {err:.2e} of the peak"


def test_posterior_maps_on_cuda_match_cpu() -> None:
    """The per-pixel posterior moments of the maps (float64 sums on the device) and map_samples
    on the GPU: the model maps match the CPU's, and the posterior mean and standard deviation
    of 256 draws agree with the CPU's to the Monte Carlo error."""
    s = galae.sample(n=4, seed=4)
    images, sigma = s.images.numpy(), s.sigma.numpy()
    kw = {"psf_fwhm_arcsec": s.psf_fwhm_arcsec.numpy(), "redshift": s.redshift.numpy()}
    cpu = galae.load().encode(images, sigma, n_mc=64, n_mc_derived=256, **kw)
    gpu = galae.load(device="cuda").encode(images, sigma, n_mc=64, n_mc_derived=256, **kw)
    name = "log10_sigma_mstar_msun_per_kpc2"
    torch.testing.assert_close(gpu.model_maps[name].cpu(), cpu.model_maps[name], atol=2e-2, rtol=0)
    c = (slice(None), slice(24, 40), slice(24, 40))  # the galaxy, not the floored outskirts
    se = cpu.maps_std[name][c] / 256**0.5
    gap = (gpu.maps[name].cpu()[c] - cpu.maps[name][c]).abs()
    assert float((gap <= 4 * 2**0.5 * se + 2e-2).float().mean()) > 0.97
    # A standard deviation of 256 draws scatters by sqrt((kurtosis - 1) / 1024) of itself, and
    # the log maps are heavy-tailed where the light fades; all pixels of a galaxy share the same
    # draws, so a whole galaxy's widths move together.  Two CPU runs of other seeds differ by a
    # median |log ratio| of 0.07-0.10 (one galaxy by 0.2), 94-100% of the pixels within 30%;
    # the GPU against the CPU, measured on an H200: 0.071 and 97%.
    s_gpu, s_cpu = gpu.maps_std[name].cpu()[c], cpu.maps_std[name][c]
    close = (s_gpu - s_cpu).abs() <= 0.3 * s_cpu + 2e-2
    assert float(close.float().mean()) > 0.9
    assert float((s_gpu / s_cpu).log().abs().median()) < 0.15
    draws = gpu.map_samples(8, seed=1, names=[name])[name]
    assert draws.device.type == "cuda" and draws.shape == (8, 4, 64, 64)
    assert bool(torch.isfinite(draws).all())


def test_encode_with_unknown_redshift_on_cuda() -> None:
    """The joint photo-z posterior (PhotoZMixture) on the GPU: its nodes match the CPU's, and
    its draws, from a CUDA generator, are finite and seeded."""
    s = galae.sample(n=4, seed=3)
    images, sigma = s.images.numpy(), s.sigma.numpy()
    kw = {"psf_fwhm_arcsec": s.psf_fwhm_arcsec.numpy(), "redshift": None}
    cpu = galae.load().encode(images, sigma, n_mc=18, n_mc_derived=2, **kw)
    gpu = galae.load(device="cuda").encode(images, sigma, n_mc=18, n_mc_derived=2, **kw)
    assert gpu._mixture is not None and gpu._mixture.z.device.type == "cuda"
    torch.testing.assert_close(gpu._mixture.z.cpu(), cpu._mixture.z, atol=2e-3, rtol=2e-2)
    for name, v in gpu.params.items():
        assert bool(torch.isfinite(v).all()), name
    d1, d2 = gpu.samples(9, seed=1, derived=False), gpu.samples(9, seed=1, derived=False)
    torch.testing.assert_close(d1["redshift"], d2["redshift"])


def test_refine_above_chi2_on_cuda() -> None:
    """Refining only the poor fits on the GPU, half the redshifts unknown: the galaxies refined
    are those the amortized GPU posterior fits above the threshold, the others keep it."""
    s = galae.sample(n=6, seed=5)
    images, sigma = s.images.numpy(), s.sigma.numpy()
    z = s.redshift.numpy().copy()
    z[::2] = float("nan")
    kw = {"psf_fwhm_arcsec": s.psf_fwhm_arcsec.numpy(), "redshift": z, "n_mc": 18}
    m = galae.load(device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        amortized = m.encode(images, sigma, n_mc_derived=2, **kw)
        t = float(amortized.chi2_per_pixel.median())
        mixed = m.encode(images, sigma, n_mc_derived=2, refine_steps=3, refine_above_chi2=t, **kw)
    poor = amortized.chi2_per_pixel > t
    assert mixed.refined.device.type == "cuda"
    torch.testing.assert_close(mixed.refined, poor, rtol=0, atol=0)
    torch.testing.assert_close(mixed._loc[~poor], amortized._loc[~poor])
    assert bool(torch.isfinite(mixed.samples(9, seed=1, derived=False)["redshift"]).all())


def test_larger_and_odd_stamps_on_cuda() -> None:
    """A 95 x 95 stamp on the GPU: outputs on the stamp, the encoder's cut the CPU's (to float
    noise), the centre offsets half a pixel from the frame's, analogues on the stamp."""
    s = galae.sample(n=3, seed=6, shape=(95, 95))
    images, sigma = s.images.numpy(), s.sigma.numpy()
    kw = {"psf_fwhm_arcsec": s.psf_fwhm_arcsec.numpy(), "redshift": s.redshift.numpy()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cpu = galae.load().encode(images, sigma, n_mc=64, n_mc_derived=2, **kw)
        m = galae.load(device="cuda")
        gpu = m.encode(images, sigma, n_mc=64, n_mc_derived=2, refine_steps=3, **kw)
        twins = m.analogues(images[0], sigma[0], n=4, psf_fwhm_arcsec=kw["psf_fwhm_arcsec"][0])
    assert gpu.model_images.shape == (3, 5, 95, 95) and gpu.maps["age_gyr"].shape == (3, 95, 95)
    assert twins.images.shape == (4, 5, 95, 95) and twins.images.device.type == "cuda"
    assert cpu._shift_arcsec == gpu._shift_arcsec == pytest.approx((0.198, 0.198))
    amortized = m.encode(images, sigma, n_mc=64, n_mc_derived=2, **kw)
    torch.testing.assert_close(amortized._loc.cpu(), cpu._loc, atol=1e-2, rtol=1e-2)


def test_mixed_precision_training_on_cuda(tmp_path: Path) -> None:
    data = tmp_path / "train.h5"
    run_mock(MockConfig(n=32, seed=5, shape=(32, 32), chunk=32, out=str(data)), progress=False)
    cfg = TrainConfig(
        data=str(data),
        widths=(8, 16),
        hidden=32,
        batch_size=8,
        max_steps=4,
        warmup_steps=1,
        prior_epochs=1,
        val_fraction=0.25,
        out_dir=str(tmp_path / "run"),
        device="cuda",
        amp=True,
        tensorboard=False,
        progress=False,
        num_workers=0,
    )
    ckpt = train(cfg)
    m = galae.load(ckpt)  # on the CPU
    s = m.sample(n=4, seed=0)
    assert torch.isfinite(s.images).all()


def test_device_data_cache_trains_on_cuda(tmp_path: Path) -> None:
    data = tmp_path / "train.h5"
    run_mock(MockConfig(n=24, seed=6, shape=(32, 32), chunk=24, out=str(data)), progress=False)
    cfg = TrainConfig(
        data=str(data),
        data_cache="device",
        widths=(8, 16),
        hidden=32,
        batch_size=8,
        max_steps=3,
        warmup_steps=1,
        prior_epochs=1,
        val_fraction=0.25,
        out_dir=str(tmp_path / "run"),
        device="cuda",
        tensorboard=False,
        progress=False,
    )
    ckpt = train(cfg)
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["step"] == 3


def test_training_resumes_on_cuda(tmp_path: Path) -> None:
    """last.pt, loaded onto the GPU, resumes (its RNG states come back to the CPU)."""
    data = tmp_path / "train.h5"
    run_mock(MockConfig(n=24, seed=7, shape=(32, 32), chunk=24, out=str(data)), progress=False)
    cfg = TrainConfig(
        data=str(data),
        widths=(8, 16),
        hidden=32,
        batch_size=8,
        max_steps=2,
        warmup_steps=1,
        fit_prior=False,
        val_fraction=0.25,
        out_dir=str(tmp_path / "run"),
        device="cuda",
        tensorboard=False,
        progress=False,
    )
    train(cfg)
    state = torch.load(tmp_path / "run" / "last.pt", map_location="cpu", weights_only=False)
    assert state["rng_cuda"] is not None
    ckpt = train(dataclasses.replace(cfg, max_steps=4))
    assert torch.load(ckpt, map_location="cpu", weights_only=False)["step"] == 4
