"""The supervised map U-Net baseline (galae.unet): heads, masked loss, training, checkpoints."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from galae.data.hdf5 import H5Writer
from galae.unet import (
    DEFAULT_TARGETS,
    MSTAR_MAP,
    TARGET_SPECS,
    EncodedTargets,
    L2Head,
    QuantizedHead,
    UNet,
    UNetConfig,
    decode_targets,
    dequantize,
    encode_targets,
    load_unet,
    lr_factor,
    map_loss,
    quantize,
    resolve_targets,
    train_unet,
)

BANDS = ("u", "g", "r", "i", "z")
N_GAL, H, W = 16, 32, 32
TINY = (8, 16, 16, 16)  # 4 levels, CPU-test sized


# ----------------------------------------------------------------------------------------------
# a tiny synthetic data set: smooth truth maps, images that are a function of them
# ----------------------------------------------------------------------------------------------
def synthetic_maps(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Gaussian-profile galaxies whose outskirts fall to the map floors inside the stamp."""
    yy, xx = np.mgrid[:H, :W].astype(np.float64)
    out: dict[str, list[np.ndarray]] = {name: [] for name in DEFAULT_TARGETS}
    for _ in range(n):
        cx, cy = rng.uniform(13, 18, size=2)
        q, pa = rng.uniform(0.5, 1.0), rng.uniform(0, math.pi)
        dx, dy = xx - cx, yy - cy
        xr = dx * math.cos(pa) + dy * math.sin(pa)
        yr = (-dx * math.sin(pa) + dy * math.cos(pa)) / q
        r = np.hypot(xr, yr)
        r_s = rng.uniform(2.5, 4.0)
        lg_m0 = rng.uniform(8.0, 9.5)
        mstar = np.log10(np.maximum(10**lg_m0 * np.exp(-((r / r_s) ** 2)), 1e3))
        sfr = np.log10(np.maximum(10 ** (lg_m0 - 9.3) * np.exp(-((r / (1.2 * r_s)) ** 2)), 1e-7))
        out[MSTAR_MAP].append(mstar)
        out["log10_sigma_sfr_msun_per_yr_per_kpc2"].append(sfr)
        out["log10_zstar_zsun"].append(-0.2 - 0.04 * r)
        out["oh12_gas"].append(8.8 - 0.03 * r)
        out["age_gyr"].append(0.5 + 8.0 * np.exp(-r / 6.0))
        out["log10_sigma_hi_msun_per_pc2"].append(np.clip(0.8 * sfr + 3.0, -3.0, 0.95))
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


def synthetic_batch(seed: int, n: int = N_GAL, with_maps: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    maps = synthetic_maps(rng, n)
    lg_age = np.log10(maps["age_gyr"])
    colour = np.array([-0.8, -0.3, 0.0, 0.15, 0.25])  # redder bands brighter for old stars
    flux = (
        10.0 ** (maps[MSTAR_MAP][:, None] - 8.0)
        * 10.0 ** (colour[None, :, None, None] * lg_age[:, None])
        + 0.3 * 10.0 ** maps["log10_sigma_sfr_msun_per_yr_per_kpc2"][:, None]
    )
    sigma = np.full_like(flux, 0.02)
    images = flux + sigma * rng.normal(size=flux.shape)
    mask = np.zeros(flux.shape, dtype=bool)
    mask[0, 2, 10:14, 10:14] = True  # a masked patch in the r band of galaxy 0
    batch = {
        "images": images.astype(np.float32),
        "sigma": sigma.astype(np.float32),
        "mask": mask,
        "psf_fwhm_arcsec": rng.uniform(1.1, 1.6, size=(n, len(BANDS))).astype(np.float32),
        "redshift": rng.uniform(0.02, 0.1, size=n).astype(np.float32),
    }
    if with_maps:
        batch["truth"] = {"maps": maps}
    return batch


def write_h5(path: Path, batch: dict) -> Path:
    with H5Writer(path, bands=BANDS, pixel_scale_arcsec=0.396, generator="test") as w:
        w.append(batch)
    return path


@pytest.fixture(scope="module")
def h5_maps(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_h5(tmp_path_factory.mktemp("unet") / "maps.h5", synthetic_batch(0))


def train_cfg(data: Path, out_dir: Path, **kw: object):
    from galae.train import TrainConfig

    base = dict(
        data=str(data),
        model="unet",
        val_fraction=0.25,
        widths=TINY,
        batch_size=4,
        max_steps=4,
        lr=3e-3,
        warmup_steps=2,
        out_dir=str(out_dir),
        seed=0,
        device="cpu",
        log_every=1,
        eval_every=100,
        ckpt_every=100,
        tensorboard=False,
        progress=False,
    )
    base.update(kw)
    return TrainConfig(**base)


def torch_inputs(batch: dict, dtype: torch.dtype = torch.float32) -> tuple:
    return (
        torch.as_tensor(batch["images"], dtype=dtype),
        torch.as_tensor(batch["sigma"], dtype=dtype),
        torch.as_tensor(batch["mask"]),
        torch.as_tensor(batch["psf_fwhm_arcsec"], dtype=dtype),
        torch.as_tensor(batch["redshift"], dtype=dtype),
    )


def read_log(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


# ----------------------------------------------------------------------------------------------
# network and heads
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("head", "channels"), [("quantized", 2 * 16), ("l2", 1)])
def test_forward_shapes_and_padding(head: str, channels: int) -> None:
    """(B, M, head channels, H, W) for a stamp that is not a multiple of 8 (padded, cropped)."""
    cfg = UNetConfig(widths=TINY, head=head, n_bins=16)
    model = UNet(cfg)
    images = torch.rand(2, 5, 27, 35)
    out = model(images, torch.full_like(images, 0.1), None, torch.full((2, 5), 1.4), None)
    assert out.shape == (2, len(DEFAULT_TARGETS), channels, 27, 35)
    assert torch.isfinite(out).all()
    t = model.predict_normalized(
        images, torch.full_like(images, 0.1), None, torch.full((2, 5), 1.4), None
    )
    assert t.shape == (2, len(DEFAULT_TARGETS), 27, 35)


def test_forward_float64_and_batch_independent() -> None:
    """Float64 in -> float64 out; each galaxy's prediction does not depend on its batch mates
    (GroupNorm normalises per sample)."""
    torch.manual_seed(0)
    model = UNet(UNetConfig(widths=TINY)).double()
    images, sigma, mask, psf, z = torch_inputs(synthetic_batch(1, n=3), torch.float64)
    out = model(images, sigma, mask, psf, z)
    assert out.dtype == torch.float64
    one = model(images[1:2], sigma[1:2], mask[1:2], psf[1:2], z[1:2])
    torch.testing.assert_close(one, out[1:2], rtol=1e-10, atol=1e-10)


def test_quantize_dequantize_roundtrip_exact() -> None:
    """t -> (bin, residual) -> t to float64 rounding, bins in [0, K), residual in [-1/2, 1/2]."""
    k = 32
    edges = torch.arange(k + 1, dtype=torch.float64) / k
    t = torch.cat([torch.rand(10_000, dtype=torch.float64), edges, edges[:-1] + 0.5 / k])
    q = quantize(t, k)
    assert q.bin_index.dtype == torch.int64
    assert int(q.bin_index.min()) >= 0 and int(q.bin_index.max()) <= k - 1
    assert float(q.residual.min()) >= -0.5 and float(q.residual.max()) <= 0.5
    torch.testing.assert_close(dequantize(q.bin_index, q.residual, k), t, rtol=0, atol=1e-14)
    # bin centres have zero residual; t = 1 is the top edge of the last bin
    centres = quantize((torch.arange(k, dtype=torch.float64) + 0.5) / k, k)
    assert torch.equal(centres.bin_index, torch.arange(k))
    assert centres.residual.abs().max() < 1e-12
    top = quantize(torch.tensor([1.0], dtype=torch.float64), k)
    assert int(top.bin_index) == k - 1 and float(top.residual) == pytest.approx(0.5)


@pytest.mark.parametrize("rule", ["argmax", "expectation"])
def test_quantized_head_decodes_confident_output_exactly(rule: str) -> None:
    """Logits peaked on the true bin and the true residual there decode back to t."""
    k = 8
    head = QuantizedHead(k, decode_rule=rule)
    t = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    q = quantize(t, k)
    logits = torch.full((2, 3, k, 4, 5), -200.0, dtype=torch.float64)
    logits.scatter_(2, q.bin_index.unsqueeze(2), 200.0)
    resid = torch.zeros_like(logits).scatter(2, q.bin_index.unsqueeze(2), q.residual.unsqueeze(2))
    decoded = head.decode(torch.cat([logits, resid], 2))
    torch.testing.assert_close(decoded, t, rtol=0, atol=1e-12)
    # and the loss of that output is ~0 (cross-entropy e^-400, residual error 0)
    enc = EncodedTargets(t=t, valid=torch.ones_like(t, dtype=torch.bool))
    assert map_loss(head, torch.cat([logits, resid], 2), enc).total.item() < 1e-12


def test_encode_decode_targets_roundtrip_units() -> None:
    """Stored maps -> normalised -> stored again (age learned in log10, returned in Gyr)."""
    maps = {
        k: torch.as_tensor(v, dtype=torch.float64)
        for k, v in synthetic_maps(np.random.default_rng(3), 4).items()
    }
    enc = encode_targets(maps, DEFAULT_TARGETS)
    assert enc.t.shape == (4, len(DEFAULT_TARGETS), H, W)
    assert float(enc.t.min()) >= 0.0 and float(enc.t.max()) <= 1.0
    back = decode_targets(enc.t, DEFAULT_TARGETS)
    for i, name in enumerate(DEFAULT_TARGETS):
        ok = enc.valid[:, i]
        assert ok.any()
        torch.testing.assert_close(back[name][ok], maps[name][ok], rtol=1e-12, atol=1e-12)
    age_spec = TARGET_SPECS["age_gyr"]
    assert age_spec.transform == "log10" and age_spec.net_unit == "dex(Gyr)"


def test_validity_masks_floor_image_mask_and_nan() -> None:
    """Empty pixels (stellar mass at its floor) are invalid for every map; SFR/HI at their own
    floor only for that map; pixels masked in any band and NaN truth are invalid."""
    maps = {
        k: torch.as_tensor(v, dtype=torch.float64)
        for k, v in synthetic_maps(np.random.default_rng(4), 2).items()
    }
    floor_m = torch.isclose(maps[MSTAR_MAP], torch.tensor(3.0, dtype=torch.float64), atol=1e-5)
    assert floor_m.any() and (~floor_m).any()
    sfr_name = "log10_sigma_sfr_msun_per_yr_per_kpc2"
    maps[sfr_name][0, 16, 16] = -7.0  # SFR floor at a pixel with stars
    maps["oh12_gas"][1, 15, 15] = float("nan")
    image_mask = torch.zeros(2, 5, H, W, dtype=torch.bool)
    image_mask[1, 4, 5:8, 20:22] = True
    enc = encode_targets(maps, DEFAULT_TARGETS, image_mask)
    idx = {n: i for i, n in enumerate(DEFAULT_TARGETS)}
    for i in range(len(DEFAULT_TARGETS)):
        assert not enc.valid[:, i][floor_m].any()
        assert not enc.valid[1, i, 5:8, 20:22].any()
    assert not enc.valid[0, idx[sfr_name], 16, 16]
    assert enc.valid[0, idx[MSTAR_MAP], 16, 16] and enc.valid[0, idx["oh12_gas"], 16, 16]
    assert not enc.valid[1, idx["oh12_gas"], 15, 15] and enc.valid[1, idx["age_gyr"], 15, 15]
    assert (enc.t[~enc.valid] == 0).all()


@pytest.mark.parametrize(
    "head", [QuantizedHead(8), QuantizedHead(8, "l2", 0.5, "expectation"), L2Head()]
)
def test_masked_loss_has_zero_gradient_at_invalid_pixels(head) -> None:
    torch.manual_seed(1)
    t = torch.rand(2, 3, 6, 7, dtype=torch.float64)
    valid = torch.rand(2, 3, 6, 7) > 0.4
    out = torch.randn(2, 3, head.channels, 6, 7, dtype=torch.float64, requires_grad=True)
    loss = map_loss(head, out, EncodedTargets(t=t, valid=valid))
    loss.total.backward()
    g = out.grad.abs().sum(2)
    assert (g[~valid] == 0).all()
    assert (g[valid] > 0).all()
    assert loss.n_valid.tolist() == valid.sum((0, 2, 3)).tolist()
    # changing the prediction at invalid pixels changes nothing
    out2 = out.detach().clone()
    out2[~valid.unsqueeze(2).expand_as(out2)] = 1e3
    loss2 = map_loss(head, out2, EncodedTargets(t=t, valid=valid))
    torch.testing.assert_close(loss2.per_map, loss.per_map.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("head", [QuantizedHead(6), QuantizedHead(6, "l2"), L2Head()])
def test_loss_gradcheck(head) -> None:
    torch.manual_seed(2)
    t = torch.rand(1, 2, 3, 3, dtype=torch.float64)
    valid = torch.rand(1, 2, 3, 3) > 0.3
    out = torch.randn(1, 2, head.channels, 3, 3, dtype=torch.float64, requires_grad=True)
    enc = EncodedTargets(t=t, valid=valid)
    assert torch.autograd.gradcheck(lambda o: map_loss(head, o, enc).per_map, (out,))


def test_unet_gradcheck_float64() -> None:
    """d(head outputs)/d(images) of a tiny U-Net (incl. the asinh input scaling)."""
    torch.manual_seed(3)
    cfg = UNetConfig(
        n_bands=2, targets=(MSTAR_MAP,), widths=(4, 4), groups=2, cond_dim=4, head="l2"
    )
    model = UNet(cfg).double()
    images = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    sigma = torch.full((1, 2, 4, 4), 0.5, dtype=torch.float64)
    psf = torch.full((1, 2), 1.3, dtype=torch.float64)
    z = torch.tensor([0.05], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: model(x, sigma, None, psf, z), (images,))


def test_training_gradients_finite(h5_maps: Path) -> None:
    from galae.data.hdf5 import GalaxyH5Dataset
    from galae.unet import MapCollator

    ds = GalaxyH5Dataset(h5_maps, with_maps=True)
    batch = MapCollator(DEFAULT_TARGETS)([ds[i] for i in range(4)])
    model = UNet(UNetConfig(widths=TINY))
    enc = encode_targets(batch.maps, DEFAULT_TARGETS, batch.mask)
    out = model(batch.images, batch.sigma, batch.mask, batch.psf_fwhm_arcsec, batch.redshift)
    loss = map_loss(model.head, out, enc)
    loss.total.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    # the initial cross-entropy is ~ log K (near-uniform bin probabilities)
    assert loss.total.item() == pytest.approx(math.log(32), rel=0.3)


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown head"):
        UNetConfig(head="softmax")
    with pytest.raises(ValueError, match="unknown target"):
        UNetConfig(targets=("log10_sigma_dark_matter",))
    with pytest.raises(ValueError, match="decode"):
        UNetConfig(decode="median")
    with pytest.raises(ValueError, match="n_bins"):
        UNetConfig(n_bins=1)
    with pytest.raises(ValueError, match="bands"):
        UNet(UNetConfig(widths=TINY))(
            torch.zeros(1, 3, 8, 8), torch.ones(1, 3, 8, 8), None, torch.ones(1, 3), None
        )


def test_resolve_targets_skips_absent_and_names_missing() -> None:
    assert resolve_targets(["oh12_gas", MSTAR_MAP, "other"], DEFAULT_TARGETS) == (
        MSTAR_MAP,
        "oh12_gas",
    )
    with pytest.raises(ValueError, match="log10_sigma_hi_msun_per_pc2"):
        resolve_targets([], DEFAULT_TARGETS)


def test_lr_factor_warmup_and_cosine() -> None:
    assert lr_factor(0, 10, 100) == pytest.approx(0.1)
    assert lr_factor(9, 10, 100) == pytest.approx(1.0)
    assert lr_factor(10, 10, 100) == pytest.approx(1.0)
    assert lr_factor(55, 10, 100) == pytest.approx(0.05 + 0.95 * 0.5)
    assert lr_factor(100, 10, 100) == pytest.approx(0.05)


# ----------------------------------------------------------------------------------------------
# training, checkpoints, prediction
# ----------------------------------------------------------------------------------------------
def test_config_file_is_a_unet_training_config() -> None:
    from galae.config import load_config
    from galae.train import TrainConfig

    cfg = load_config(TrainConfig, Path(__file__).parents[1] / "configs" / "unet.yaml")
    assert cfg.model == "unet" and len(cfg.widths) == 4
    assert cfg.data.endswith(".h5") and cfg.mock_config is not None


def test_data_without_truth_maps_is_a_clear_error(tmp_path: Path) -> None:
    data = write_h5(tmp_path / "nomaps.h5", synthetic_batch(5, n=4, with_maps=False))
    with pytest.raises(ValueError, match=r"missing: .*log10_sigma_mstar_msun_per_kpc2"):
        train_unet(train_cfg(data, tmp_path / "run"))
    with pytest.raises(ValueError, match="model 'unet'"):
        train_unet(train_cfg(data, tmp_path / "run", model="autoencoder"))


@pytest.fixture(scope="module")
def trained_run(h5_maps: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 15-step training run shared by the tests below (its out_dir)."""
    out_dir = tmp_path_factory.mktemp("unet_run")
    final = train_unet(train_cfg(h5_maps, out_dir, max_steps=15, eval_every=15))
    assert final == out_dir / "model.pt" and final.is_file()
    return out_dir


def test_training_reduces_loss(trained_run: Path) -> None:
    rows = read_log(trained_run / "log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 16))
    losses = [float(r["loss"]) for r in rows]
    # measured: 3.72 -> 3.29 (mean of the first / last three steps); asserted with a margin
    assert np.mean(losses[-3:]) < 0.93 * np.mean(losses[:3])
    assert math.isfinite(float(rows[-1]["val_loss"]))
    assert float(rows[-1][f"val_mae_{MSTAR_MAP}"]) > 0
    assert math.isfinite(float(rows[-1][f"val_total_scatter_dex_{MSTAR_MAP}"]))
    assert rows[0]["val_loss"] == ""  # not evaluated at step 1


def test_resume_continues_and_matches_uninterrupted(h5_maps: Path, tmp_path: Path) -> None:
    """An interrupted run resumed from last.pt ends with the weights of an uninterrupted one."""
    straight = train_unet(train_cfg(h5_maps, tmp_path / "a", max_steps=6))
    interrupted = train_cfg(h5_maps, tmp_path / "b", max_steps=6, max_minutes=0.0)
    train_unet(interrupted)  # max_minutes=0 stops (and checkpoints) after one step
    state = torch.load(tmp_path / "b" / "last.pt", weights_only=False)
    assert state["step"] == 1 and state["kind"] == "galae-unet"
    assert {"optimizer", "scheduler", "rng_cpu", "model_state", "versions"} <= set(state)
    assert state["targets"] == list(DEFAULT_TARGETS)
    assert state["normalisation"]["age_gyr"]["transform"] == "log10"
    resumed = train_unet(dataclasses.replace(interrupted, max_minutes=None))
    a = torch.load(straight, weights_only=False)
    b = torch.load(resumed, weights_only=False)
    assert a["step"] == b["step"] == 6
    for k, v in a["model_state"].items():
        torch.testing.assert_close(b["model_state"][k], v, rtol=1e-5, atol=1e-6)
    assert [int(r["step"]) for r in read_log(tmp_path / "b" / "log.csv")] == list(range(1, 7))
    # a different architecture in the same out_dir is refused
    from galae.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="widths"):
        train_unet(dataclasses.replace(interrupted, widths=(8, 8, 8, 8), max_minutes=None))


def test_load_unet_predicts_named_maps(trained_run: Path) -> None:
    pred = load_unet(trained_run / "model.pt")
    assert pred.targets == DEFAULT_TARGETS and pred.bands == BANDS
    assert pred.units["age_gyr"].startswith("Gyr")
    b = synthetic_batch(7, n=3)
    maps = pred.predict_maps(
        b["images"],
        b["sigma"][:, :, 0, 0],
        b["mask"],
        b["psf_fwhm_arcsec"],
        b["redshift"],
        batch_size=2,
    )
    assert set(maps) == set(DEFAULT_TARGETS)
    for name, m in maps.items():
        assert m.shape == (3, H, W) and torch.isfinite(m).all(), name
        spec = TARGET_SPECS[name]
        z = spec.to_net(m)
        assert float(z.min()) >= spec.low - 1e-4 and float(z.max()) <= spec.high + 1e-4
    assert (maps["age_gyr"] > 0).all()
    # numpy and tensor inputs agree; unknown redshift and no mask are accepted
    t_maps = pred.predict_maps(
        *(torch.as_tensor(b[k]) for k in ("images", "sigma", "mask", "psf_fwhm_arcsec")),
        torch.as_tensor(b["redshift"]),
    )
    torch.testing.assert_close(t_maps[MSTAR_MAP], maps[MSTAR_MAP])
    nan_z = pred.predict_maps(b["images"], b["sigma"], None, b["psf_fwhm_arcsec"], None)
    assert nan_z[MSTAR_MAP].shape == (3, H, W)


def test_predictor_rejects_bad_input(trained_run: Path) -> None:
    pred = load_unet(trained_run / "model.pt")
    b = synthetic_batch(8, n=2)
    args = [b["images"], b["sigma"], b["mask"], b["psf_fwhm_arcsec"], b["redshift"]]

    def call(i: int, value: object) -> None:
        a = list(args)
        a[i] = value
        pred.predict_maps(*a)

    bad = b["images"].copy()
    bad[0, 0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        call(0, bad)
    masked = b["mask"].copy()
    masked[0, 0, 3, 3] = True
    a = list(args)
    a[0], a[2] = bad, masked
    assert torch.isfinite(pred.predict_maps(*a)[MSTAR_MAP]).all()  # fine once masked
    with pytest.raises(ValueError, match=r"images must be \(N, 5"):
        call(0, b["images"][:, :3])
    with pytest.raises(ValueError, match="sigma"):
        call(1, np.zeros_like(b["sigma"]))
    with pytest.raises(ValueError, match="psf_fwhm_arcsec"):
        call(3, -b["psf_fwhm_arcsec"])
    with pytest.raises(ValueError, match="redshift"):
        call(4, -b["redshift"])


def test_evaluate_refuses_autoencoder_options_for_a_unet(trained_run: Path, h5_maps: Path) -> None:
    """--refine-steps and --mask-neighbours belong to the autoencoder: with a U-Net checkpoint
    they are an error, not silently ignored."""
    from galae.evaluate import evaluate

    for kw in ({"refine_steps": 5}, {"mask_neighbours": True}, {"refine_above_chi2": 3.0}):
        with pytest.raises(ValueError, match="U-Net, which reads the raw stamps"):
            evaluate(trained_run / "model.pt", h5_maps, trained_run / "ev", figures=False, **kw)
