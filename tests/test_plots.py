"""Tests of galae.plots: figure functions on small synthetic arrays, and the command line.

No trained model is needed: traversals run against a duck-typed fake model that renders
Gaussian-free exponential blobs from the latent, with the same ``render_samples`` /
``model.prior.sample`` interface as :class:`galae.sampling.GalaeModel`.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from galae import plots
from galae.data.hdf5 import H5Writer
from galae.latent import REGISTRY

BANDS = ("u", "g", "r", "i", "z")
# Median SDSS sky noise per 0.396" pixel, nmgy (galae.data.conditions at median conditions).
SKY_SIGMA = np.array([0.053, 0.017, 0.028, 0.046, 0.225])
# AB flux ratios to r of a red galaxy, u..z.
COLOURS = np.array([0.25, 0.6, 1.0, 1.3, 1.5])
MAPS = ("log10_sigma_mstar_msun_per_kpc2", "age_gyr")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    assert path.is_file()
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert path.stat().st_size > 1000


def _radius(h: int, w: int, cx: float | None = None, cy: float | None = None) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    cx = (w - 1) / 2 if cx is None else cx
    cy = (h - 1) / 2 if cy is None else cy
    return np.hypot(xx - cx, yy - cy)


def _galaxies(n: int, h: int = 24, w: int = 24, seed: int = 0) -> dict:
    """n noisy exponential disks in ugriz (nmgy) with truth params and two truth maps."""
    rng = np.random.default_rng(seed)
    r = _radius(h, w)
    rd = rng.uniform(1.5, 4.0, n)
    flux_r = 10 ** rng.uniform(1.0, 2.5, n)  # r = 17-20.
    prof = np.exp(-r[None] / rd[:, None, None]) / (2 * math.pi * rd[:, None, None] ** 2)
    model = flux_r[:, None, None, None] * COLOURS[None, :, None, None] * prof[:, None]
    sigma = np.broadcast_to(SKY_SIGMA[None, :, None, None], model.shape).copy()
    images = model + sigma * rng.standard_normal(model.shape)
    mass = np.log10(flux_r[:, None, None] * 1e7 * prof + 1e3)
    age = np.broadcast_to(rng.uniform(1, 10, n)[:, None, None], (n, h, w)).copy()
    return {
        "images": images.astype(np.float32),
        "model_images": model.astype(np.float32),
        "sigma": sigma.astype(np.float32),
        "mask": np.zeros(model.shape, bool),
        "psf_fwhm_arcsec": np.full((n, 5), 1.3, np.float32),
        "redshift": rng.uniform(0.02, 0.2, n).astype(np.float32),
        "bands": BANDS,
        "truth": {
            "params": {
                "log10_mstar_msun": rng.uniform(9, 11, n).astype(np.float32),
                "mag_r": (22.5 - 2.5 * np.log10(flux_r)).astype(np.float32),
                # exponential disk: R_e = 1.678 h (Sersic b_1; Graham & Driver 2005)
                "r_half_arcsec_r": (1.678 * rd * 0.396).astype(np.float32),
            },
            "maps": {MAPS[0]: mass.astype(np.float32), MAPS[1]: age.astype(np.float32)},
        },
    }


# ---------------------------------------------------------------------------------------------
# A fake GalaeModel with the interface traverse_latents uses
# ---------------------------------------------------------------------------------------------


class _FakePrior:
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return 0.7 * torch.randn(n, REGISTRY.dim, generator=generator)


class _FakeModel:
    bands = BANDS
    shape = (20, 20)
    pixel_scale_arcsec = 0.396
    device = torch.device("cpu")

    def __init__(self, with_prior: bool = True) -> None:
        self.model = SimpleNamespace(prior=_FakePrior() if with_prior else None)
        self.calls: list[torch.Tensor] = []

    def render_samples(
        self,
        u,
        redshift,
        psf_fwhm_arcsec,
        sky_sigma_nmgy,
        gain_e_per_nmgy,
        generator,
        shape=None,
        with_derived=True,
    ):
        assert u.dim() == 2 and u.shape[1] == REGISTRY.dim
        assert redshift.shape == (u.shape[0],) and psf_fwhm_arcsec.shape == (u.shape[0], 5)
        self.calls.append(u.clone())
        h, w = shape or self.shape
        p = REGISTRY.from_unconstrained(u)
        rd = p["r_d_kpc"].view(-1, 1, 1)
        r = torch.as_tensor(_radius(h, w), dtype=u.dtype)
        prof = torch.exp(-r / rd) / (2 * math.pi * rd**2)
        flux = 10 ** (p["log10_mstar_disk_msun"] - 9.0).view(-1, 1, 1, 1)
        col = torch.as_tensor(COLOURS, dtype=u.dtype).view(1, -1, 1, 1)
        images = flux * col * prof[:, None]
        maps = {
            MAPS[0]: torch.log10(10 ** p["log10_mstar_disk_msun"].view(-1, 1, 1) * prof + 1e3),
            MAPS[1]: p["age_disk_gyr"].view(-1, 1, 1).expand(-1, h, w),
        }
        return SimpleNamespace(model_images=images, maps=maps)


# ---------------------------------------------------------------------------------------------
# gri_composite
# ---------------------------------------------------------------------------------------------


def test_composite_shapes_and_dtype() -> None:
    d = _galaxies(3)
    one = plots.gri_composite(d["images"][0], BANDS)
    many = plots.gri_composite(torch.as_tensor(d["images"], dtype=torch.float64), BANDS)
    assert one.shape == (24, 24, 3) and one.dtype == np.uint8
    assert many.shape == (3, 24, 24, 3) and many.dtype == np.uint8
    np.testing.assert_array_equal(many[0], one)
    # A bright centre is brighter than the sky-dominated corner.
    assert many[:, 12, 12].sum() > many[:, 0, 0].sum()


def test_composite_follows_documented_asinh_law() -> None:
    """Grey pixels (i = r = g = x): each channel = 255 asinh(Q x / s) 0.1 / asinh(0.1 Q).

    Lupton et al. (2004) asinh mapping as implemented by astropy >= 7 (LuptonAsinhStretch);
    with equal bands f(I) / I * x = f(x), so the channel value is f(x) (uint8, +-1 count).
    """
    x = np.array([0.0, 0.01, 0.1, 0.5, 2.0, 10.0])
    img = np.broadcast_to(x[None, None, :], (5, 1, x.size)).copy()
    rgb = plots.gri_composite(img, BANDS, stretch=0.5, q=8.0)[0]
    q, s = 8.0, 0.5
    expect = 255 * np.arcsinh(q * x / s) * 0.1 / np.arcsinh(0.1 * q)
    assert np.all(expect < 255)
    for c in range(3):
        np.testing.assert_allclose(rgb[:, c], expect, atol=1.0)
    # Grey in, grey out: R = G = B.
    np.testing.assert_array_equal(rgb[:, 0], rgb[:, 2])


def test_composite_colour_order_and_weights() -> None:
    img = np.zeros((5, 4, 4))
    img[BANDS.index("i")] = 1.0  # only i -> only red
    rgb = plots.gri_composite(img, BANDS)
    assert rgb[..., 0].min() > 0 and rgb[..., 1].max() == 0 and rgb[..., 2].max() == 0
    img[BANDS.index("g")] = 1.0
    rgb_w = plots.gri_composite(img, BANDS, band_weights=(1.0, 1.0, 2.0))
    assert rgb_w[0, 0, 2] > rgb_w[0, 0, 0]


def test_composite_handles_nan_and_mask() -> None:
    d = _galaxies(1)
    img = d["images"][0].copy()
    clean = plots.gri_composite(img, BANDS)
    img[BANDS.index("r"), 5, 7] = np.nan
    img[BANDS.index("g"), 0, 0] = np.inf
    mask = np.zeros_like(img, bool)
    mask[BANDS.index("i"), 10, 10] = True
    rgb = plots.gri_composite(img, BANDS, mask=mask)
    for y, x in ((5, 7), (0, 0), (10, 10)):
        assert np.all(rgb[y, x] == 0)  # bad pixels are black
    # A masked pixel in an unused band (u) changes nothing; other pixels are untouched
    # (Lupton's scaling is per pixel).
    untouched = np.ones((24, 24), bool)
    untouched[[5, 0, 10], [7, 0, 10]] = False
    np.testing.assert_array_equal(rgb[untouched], clean[untouched])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rgb_bands": ("i", "r", "y")}, "missing: y"),
        ({"stretch": 0.0}, "stretch"),
        ({"stretch": float("nan")}, "stretch"),
        ({"q": -1.0}, "q must"),
        ({"band_weights": (1.0, -1.0, 1.0)}, "band_weights"),
    ],
)
def test_composite_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plots.gri_composite(np.zeros((5, 4, 4)), BANDS, **kwargs)


def test_composite_bad_shapes() -> None:
    with pytest.raises(ValueError, match="images must be"):
        plots.gri_composite(np.zeros((4, 4)), BANDS)
    with pytest.raises(ValueError, match="band names"):
        plots.gri_composite(np.zeros((3, 4, 4)), BANDS)
    with pytest.raises(ValueError, match="mask shape"):
        plots.gri_composite(np.zeros((5, 4, 4)), BANDS, mask=np.zeros((5, 3, 3), bool))


# ---------------------------------------------------------------------------------------------
# Pure array helpers
# ---------------------------------------------------------------------------------------------


def test_chi_residual_identity_and_mask() -> None:
    rng = np.random.default_rng(1)
    model = rng.uniform(0, 1, (2, 5, 6, 6))
    sigma = rng.uniform(0.1, 0.3, (2, 5, 6, 6))
    k = rng.standard_normal(model.shape)
    chi = plots.chi_residual(model + k * sigma, model, sigma)
    np.testing.assert_allclose(chi, k, rtol=1e-12, atol=1e-12)
    # per-band sigma (N, C)
    chi_b = plots.chi_residual(model + 2 * 0.5, model, np.full((2, 5), 0.5))
    np.testing.assert_allclose(chi_b, 2.0, rtol=1e-12)
    mask = np.zeros(model.shape, bool)
    mask[0, 0, 0, 0] = True
    sig_bad = sigma.copy()
    sig_bad[0, 0, 0, 0] = 0.0  # allowed where masked
    chi_m = plots.chi_residual(model, model, sig_bad, mask)
    assert np.isnan(chi_m[0, 0, 0, 0]) and np.isfinite(chi_m).sum() == chi_m.size - 1
    with pytest.raises(ValueError, match="sigma must be > 0"):
        plots.chi_residual(model, model, sig_bad)
    with pytest.raises(ValueError, match="sigma must be"):
        plots.chi_residual(model, model, sigma[:, :, :3])


def test_azimuthal_profile_analytic() -> None:
    """For f = d (distance to the centre), the annulus mean is the mean pixel distance.

    And for the continuum, a ring a <= d < b has mean distance 2/3 (b^3 - a^3) / (b^2 - a^2);
    a 201 x 201 stamp with 10-pixel-wide rings matches it within 1 %.
    """
    h = w = 201
    d = _radius(h, w)
    edges = np.concatenate([[0.0], np.arange(10.5, 101.0, 10.0)])
    radius, mean = plots.azimuthal_profile(d, None, edges)
    np.testing.assert_allclose(mean, radius, rtol=1e-12)
    a, b = edges[:-1], edges[1:]
    exact = 2 / 3 * (b**3 - a**3) / (b**2 - a**2)
    np.testing.assert_allclose(mean, exact, rtol=5e-3)
    # A constant map has a flat profile; NaN pixels are ignored; empty annuli are NaN.
    const = np.full((31, 31), 3.5)
    const[15, 16] = np.nan
    _, m = plots.azimuthal_profile(const, (15.0, 15.0), np.array([0, 0.5, 0.6, 5, 10]))
    assert np.isnan(m[1])
    np.testing.assert_allclose(m[[0, 2, 3]], 3.5)
    with pytest.raises(ValueError, match="increasing"):
        plots.azimuthal_profile(const, None, np.array([0.0, 0.0, 1.0]))


def test_labels_carry_units() -> None:
    assert plots.param_label("r_d_kpc") == REGISTRY["r_d_kpc"].label  # already "[kpc]"
    assert "M$_\\odot$" in plots.param_label("log10_mstar_disk_msun")
    assert plots.param_label("mag_r").endswith("[AB mag]")
    assert "arcsec" in plots.param_label("r_half_arcsec_g")
    assert plots.param_label("not_a_param") == "not_a_param"
    assert "kpc$^2$" in plots.map_label("log10_sigma_mstar_msun_per_kpc2")
    assert "Gyr" in plots.map_label("age_gyr")


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def test_mock_gallery(tmp_path: Path) -> None:
    d = _galaxies(6)
    fig = plots.mock_gallery(d, n=5, n_maps=2, out=tmp_path / "m.png")
    assert isinstance(fig, Figure)
    # 5 stamps + 2 galaxies x (composite + 2 maps) + one colour bar per map column
    assert len(fig.get_axes()) == 5 + 2 * 3 + 2
    texts = [t.get_text() for ax in fig.get_axes() for t in ax.texts]
    assert any("z=" in t and "r=" in t for t in texts)
    cbar_labels = [ax.get_xlabel() for ax in fig.get_axes()]
    assert any("Gyr" in lab for lab in cbar_labels)
    _assert_png(tmp_path / "m.png")
    # Without truth maps: the gallery only.
    d2 = {k: v for k, v in d.items() if k != "truth"}
    assert len(plots.mock_gallery(d2, n=4).get_axes()) == 4
    with pytest.raises(ValueError, match="not in the data"):
        plots.mock_gallery(d, map_names=["av_mag"])


def test_sample_gallery(tmp_path: Path) -> None:
    d = _galaxies(5)
    s = SimpleNamespace(
        images=torch.as_tensor(d["images"]),
        model_images=torch.as_tensor(d["model_images"]),
        params={
            "redshift": torch.as_tensor(d["redshift"]),
            "log10_mstar_msun": torch.as_tensor(d["truth"]["params"]["log10_mstar_msun"]),
            "log10_sfr_msun_per_yr": torch.zeros(5),
        },
        bands=BANDS,
    )
    fig = plots.sample_gallery(s, n=36, noisy=False, out=tmp_path / "g.png")
    assert len(fig.get_axes()) == 5
    assert "log SFR=0.00" in fig.get_axes()[0].texts[0].get_text()
    _assert_png(tmp_path / "g.png")


def test_traverse_latents_sweeps_one_latent_at_a_time() -> None:
    model = _FakeModel()
    names = ["r_d_kpc", "inclination_deg", "log10_mstar_disk_msun"]
    t = plots.traverse_latents(model, base={"pa_deg": 30.0}, params=names, steps=5, n_prior=500)
    assert t.params == tuple(names) and t.sweep == "prior"
    assert t.values.shape == (3, 5)
    assert t.images.shape == (3, 5, 5, 20, 20)
    assert t.maps[MAPS[0]].shape == (3, 5, 20, 20)
    # Ranges: 5th-95th percentile of the prior draws (same seed), spaced in the param's scale.
    g = torch.Generator().manual_seed(0)
    draws = REGISTRY.from_unconstrained(_FakePrior().sample(500, generator=g))
    for i, name in enumerate(names):
        lo, hi = np.percentile(draws[name].numpy(), [5, 95])
        np.testing.assert_allclose(t.values[i, [0, -1]], [lo, hi], rtol=1e-6)
        assert np.all(np.diff(t.values[i]) > 0)
        np.testing.assert_allclose(t.base[name], np.median(draws[name].numpy()), rtol=1e-6)
    ratios = t.values[0, 1:] / t.values[0, :-1]  # r_d_kpc is log-scaled: geometric spacing
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-10)
    np.testing.assert_allclose(np.diff(t.values[1]), np.diff(t.values[1])[0], rtol=1e-10)
    # What was rendered: all other latents at the base; the swept one at its values.
    u = torch.cat(model.calls)
    phys = REGISTRY.from_unconstrained(u)
    for i, name in enumerate(names):
        rows = slice(5 * i, 5 * (i + 1))
        np.testing.assert_allclose(phys[name][rows].numpy(), t.values[i], rtol=1e-4)
        for other in REGISTRY.names:
            if other != name:
                np.testing.assert_allclose(
                    phys[other][rows].numpy(), t.base[other], rtol=1e-4, atol=1e-4
                )
    np.testing.assert_allclose(phys["pa_deg"].numpy(), 30.0, rtol=1e-4)
    # The fake renderer makes larger disks for larger r_d: the central pixel gets fainter.
    centre = t.images[0, :, 2, 10, 10]
    assert np.all(np.diff(centre) < 0)


def test_traverse_latents_registry_fallback_and_errors() -> None:
    model = _FakeModel(with_prior=False)
    t = plots.traverse_latents(model, params=["q_bulge"], steps=3)
    assert t.sweep == "registry"
    np.testing.assert_allclose(t.values[0], [0.4, 0.7, 1.0])
    np.testing.assert_allclose(t.base["q_bulge"], 0.7, rtol=1e-6)
    with pytest.raises(ValueError, match="known: .*r_d_kpc"):
        plots.traverse_latents(model, params=["r_d_kpc", "bogus"])
    with pytest.raises(ValueError, match="unknown base parameter"):
        plots.traverse_latents(model, base={"nope": 1.0})
    with pytest.raises(ValueError, match="out of range"):
        plots.traverse_latents(model, base={"q_bulge": 2.0})
    with pytest.raises(ValueError, match="steps"):
        plots.traverse_latents(model, steps=1)
    with pytest.raises(ValueError, match="redshift"):
        plots.traverse_latents(model, redshift=-0.1)
    with pytest.raises(ValueError, match="psf_fwhm_arcsec"):
        plots.traverse_latents(model, params=["q_bulge"], psf_fwhm_arcsec=0.0)


def test_traversal_figures(tmp_path: Path) -> None:
    model = _FakeModel()
    names = ["r_d_kpc", "log10_mstar_disk_msun"]
    fig = plots.traversal_figure(model, params=names, steps=4, n_prior=200, out=tmp_path / "t.png")
    axes = fig.get_axes()
    assert len(axes) == 2 * 4
    assert axes[0].get_ylabel() == plots.param_label("r_d_kpc")
    assert axes[0].get_xlabel() != ""  # the swept value
    _assert_png(tmp_path / "t.png")
    t = plots.traverse_latents(model, params=names, steps=3, n_prior=200)
    fig2 = plots.traversal_maps_figure(
        t, params=None, map_names=list(MAPS), out=tmp_path / "tm.png"
    )
    # per latent: (composite + 2 maps) x 3 steps + one colour bar per map row
    assert len(fig2.get_axes()) == 2 * (3 * 3 + 2)
    _assert_png(tmp_path / "tm.png")
    # Selecting rows of a precomputed traversal; asking for a latent it lacks is an error.
    assert len(plots.traversal_figure(t, params=["r_d_kpc"]).get_axes()) == 3
    with pytest.raises(ValueError, match="no sweep"):
        plots.traversal_figure(t, params=["q_bulge"])
    with pytest.raises(ValueError, match="unknown map"):
        plots.traversal_maps_figure(t, params=None, map_names=["av_mag"])


def test_reconstruction_figure(tmp_path: Path) -> None:
    d = _galaxies(2)
    mask = d["mask"].copy()
    mask[0, :, :3, :3] = True
    fig = plots.reconstruction_figure(
        d["images"],
        d["model_images"],
        d["sigma"],
        BANDS,
        ["a", "b"],
        mask=mask,
        out=tmp_path / "r.png",
    )
    assert len(fig.get_axes()) == 2 * (2 + 5) + 1
    # chi^2 per pixel of pure noise is ~1 (576 pixels: 1 +- 0.06 per band).
    chi2 = [float(t.get_text().split("=")[1]) for ax in fig.get_axes() for t in ax.texts]
    assert len(chi2) == 10 and all(0.7 < c < 1.3 for c in chi2)
    _assert_png(tmp_path / "r.png")
    fig = plots.reconstruction_figure(
        torch.as_tensor(d["images"]),
        d["model_images"],
        d["sigma"][:, :, 0, 0],
        BANDS,
        residual_bands=["r"],
    )
    assert len(fig.get_axes()) == 2 * 3 + 1
    with pytest.raises(ValueError, match="titles"):
        plots.reconstruction_figure(d["images"], d["model_images"], d["sigma"], BANDS, ["a"])
    with pytest.raises(ValueError, match="residual_bands"):
        plots.reconstruction_figure(
            d["images"], d["model_images"], d["sigma"], BANDS, residual_bands=["y"]
        )


def test_maps_comparison_figure(tmp_path: Path) -> None:
    d = _galaxies(3)
    truth = d["truth"]["maps"]
    pred = {k: v + 0.1 for k, v in truth.items()}
    pred["extra"] = truth[MAPS[0]]
    fig = plots.maps_comparison_figure(truth, pred, index=1, out=tmp_path / "mc.png")
    # 2 maps x 3 panels + 2 colour bars per map
    assert len(fig.get_axes()) == 2 * 3 + 2 * 2
    rms = [t.get_text() for ax in fig.get_axes() for t in ax.texts]
    assert rms == ["rms=0.1", "rms=0.1"]
    _assert_png(tmp_path / "mc.png")
    one = plots.maps_comparison_figure(
        {"age_gyr": truth["age_gyr"][0]}, {"age_gyr": truth["age_gyr"][0]}
    )
    assert len(one.get_axes()) == 5
    with pytest.raises(ValueError, match="not in both"):
        plots.maps_comparison_figure(truth, pred, names=["av_mag"])
    # with posterior standard deviations: a fourth panel and colour bar per map, with its median
    std = {m: np.full_like(truth[m], 0.25) for m in MAPS}
    four = plots.maps_comparison_figure(truth, pred, index=1, std=std, out=tmp_path / "mc4.png")
    assert len(four.get_axes()) == 2 * 4 + 2 * 3
    texts = [t.get_text() for ax in four.get_axes() for t in ax.texts]
    assert texts.count("median=0.25") == 2
    _assert_png(tmp_path / "mc4.png")
    with pytest.raises(ValueError, match="std has no map"):
        plots.maps_comparison_figure(truth, pred, std={MAPS[0]: std[MAPS[0]]})
    with pytest.raises(ValueError, match="out of range"):
        plots.maps_comparison_figure(truth, pred, index=5)


def test_radial_profiles_figure(tmp_path: Path) -> None:
    d = _galaxies(2)
    truth = d["truth"]["maps"]
    pred = {k: v - 0.05 for k, v in truth.items()}
    r_half_pix = d["truth"]["params"]["r_half_arcsec_r"] / 0.396
    fig = plots.radial_profiles_figure(
        truth, pred, r_half_pix=r_half_pix, index=1, out=tmp_path / "p.png"
    )
    axes = fig.get_axes()
    assert len(axes) == 2 * 2
    assert axes[1].get_xlabel() == r"$r / r_{1/2}$"
    # The residual panel shows prediction - truth = -0.05 in every annulus.
    np.testing.assert_allclose(axes[1].get_lines()[-1].get_ydata(), -0.05, atol=1e-5)
    # Radii reach 3 half-light radii.
    assert axes[0].get_lines()[0].get_xdata().max() < 3.0
    _assert_png(tmp_path / "p.png")
    fig_pix = plots.radial_profiles_figure(truth, pred, names=["age_gyr"])
    assert fig_pix.get_axes()[1].get_xlabel() == "r [pix]"
    with pytest.raises(ValueError, match="r_half_pix"):
        plots.radial_profiles_figure(truth, pred, r_half_pix=-1.0)


def test_shift_ratios_figure_colours_each_ratio_by_its_goal(tmp_path: Path) -> None:
    """In distribution the goal is the given ratio (1.5), under a shift 1: an interval wholly
    below the goal is green, wholly above red, straddling it grey."""
    ratios = {
        "log M*": {"test": {"ratio": 1.2, "ci95": [1.05, 1.4]}, "seeing": {"ratio": 0.9}},
        "log SFR": {"test": {"ratio": 1.6, "ci95": [1.4, 1.8]}, "seeing": {"ratio": 1.1}},
    }
    fig = plots.shift_ratios_figure(ratios, out=tmp_path / "r.png")
    ax_test, ax_seeing = fig.get_axes()[:2]
    assert [t.get_text() for t in ax_test.get_yticklabels()] == ["log M*", "log SFR"]
    colours = [c.get_children()[0].get_color() for c in ax_test.containers]
    assert colours == ["tab:green", "0.35"]  # 1.4 < 1.5; 1.4-1.8 straddles 1.5
    colours = [c.get_children()[0].get_color() for c in ax_seeing.containers]
    assert colours == ["tab:green", "tab:red"]  # no interval: the ratio against 1
    _assert_png(tmp_path / "r.png")
    with pytest.raises(ValueError, match="no ratios"):
        plots.shift_ratios_figure({})
    with pytest.raises(ValueError, match="no rows"):
        plots.comparison_figure({})


def test_radial_residuals_comparison_figure(tmp_path: Path) -> None:
    edges = [0.5, 1.0, 2.0, 5.0]
    prof_a = {
        "r_over_rhalf_edges": edges,
        "median": [0.1, 0.0, -0.1],
        "p16": [0, -0.1, -0.3],
        "p84": [0.2, 0.1, 0.1],
    }
    prof_b = {**prof_a, "median": [0.3, 0.2, 0.4]}
    names = ["log10_sigma_sfr_msun_per_yr_per_kpc2", "log10_sigma_mstar_msun_per_kpc2"]
    fig = plots.radial_residuals_comparison_figure(
        {n: (prof_a, prof_b) for n in names}, labels=("AE", "U-Net"), out=tmp_path / "r.png"
    )
    ax = fig.get_axes()[0]
    medians = [line.get_ydata() for line in ax.get_lines()[1:]]  # after the zero line
    np.testing.assert_allclose(medians[0], prof_a["median"])
    np.testing.assert_allclose(medians[1], prof_b["median"])
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["AE", "U-Net"]
    _assert_png(tmp_path / "r.png")
    with pytest.raises(ValueError, match="no radial"):
        plots.radial_residuals_comparison_figure({})
    # the one-report figure draws the same panels
    one = plots.radial_residuals_figure({n: prof_a for n in names}).get_axes()[0]
    np.testing.assert_allclose(one.get_lines()[1].get_ydata(), prof_a["median"])
    assert one.get_title() == ax.get_title()


def test_r_half_resolution_figure(tmp_path: Path) -> None:
    bins = [
        {"lo": 0.0, "hi": 0.5, "n": 3, "median_abs_frac_error": 0.4, "median_frac_error": 0.3},
        {"lo": 0.5, "hi": 1.0, "n": 0},
        {"lo": 1.0, "hi": None, "n": 5, "median_abs_frac_error": 0.05, "median_frac_error": -0.01},
    ]
    rep = {"x": "r_half_true / psf_fwhm", "bins": bins}
    fig = plots.r_half_resolution_figure({"A": rep, "B": rep}, out=tmp_path / "rh.png")
    ax_abs, ax_sgn = fig.get_axes()
    y = ax_abs.get_lines()[0].get_ydata()
    np.testing.assert_allclose(y, [0.4, np.nan, 0.05])  # the empty bin is a gap
    np.testing.assert_allclose(ax_sgn.get_lines()[1].get_ydata(), [0.3, np.nan, -0.01])
    assert [t.get_text() for t in ax_abs.get_xticklabels()] == ["0-0.5", "0.5-1", ">1"]
    _assert_png(tmp_path / "rh.png")
    assert len(fig.get_axes()) == 2  # no widths, no coverage panel
    # with the posterior widths' coverage: a third panel
    wide = [dict(b, fraction_within_1sigma=0.7) if b["n"] else b for b in bins]
    fig = plots.r_half_resolution_figure({"A": rep, "B": {"bins": wide}})
    cov = fig.get_axes()[2]
    np.testing.assert_allclose(cov.get_lines()[1].get_ydata(), [0.7, np.nan, 0.7])  # B
    assert np.isnan(cov.get_lines()[0].get_ydata()).all()  # A has none
    with pytest.raises(ValueError, match="no r_half"):
        plots.r_half_resolution_figure({})
    with pytest.raises(ValueError, match="differ"):
        plots.r_half_resolution_figure({"A": rep, "B": {"bins": bins[:2]}})
    with pytest.raises(ValueError, match="empty"):
        plots.r_half_resolution_figure({"A": {"bins": [bins[1]]}})


def test_corner_figure(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    k = 3000
    a = rng.normal(10.0, 0.2, k)
    samples = {
        "log10_mstar_msun": torch.as_tensor(a),
        "age_disk_gyr": 3.0 + 2.0 * (a - 10.0) + rng.normal(0, 0.1, k),
        "av_face_on_mag": np.full(k, 0.5),  # degenerate: constant
    }
    truths = {"log10_mstar_msun": 10.1, "age_disk_gyr": 3.2}
    fig = plots.corner_figure(samples, truths=truths, out=tmp_path / "c.png")
    axes = fig.get_axes()
    assert len(axes) == 3 * 4 // 2
    # Registry order first, then derived: age_disk_gyr, av_face_on_mag, log10_mstar_msun.
    assert axes[-1].get_xlabel() == plots.param_label("log10_mstar_msun")
    title = axes[0].get_title()
    assert title.startswith(plots.param_label("age_disk_gyr", with_unit=False))
    _assert_png(tmp_path / "c.png")
    fig2 = plots.corner_figure(samples, names=["log10_mstar_msun", "age_disk_gyr"])
    assert len(fig2.get_axes()) == 3
    # The correlated pair gets the two contour levels.
    assert len(fig2.get_axes()[1].collections) >= 2
    with pytest.raises(ValueError, match="unknown name"):
        plots.corner_figure(samples, names=["bogus"])
    with pytest.raises(ValueError, match="NaN"):
        plots.corner_figure({"x": np.array([1.0, np.nan, 2.0])})
    with pytest.raises(ValueError, match="same number"):
        plots.corner_figure({"x": np.ones(5), "y": np.ones(6)})


def test_analogues_figure(tmp_path: Path) -> None:
    """Observed, model, n analogue stamps and one histogram per quantity, with the truth."""
    from galae.sampling import Samples

    rng = np.random.default_rng(4)
    k, shape = 30, (5, 16, 16)
    images = rng.normal(0.0, 0.05, (k, *shape)).astype(np.float32)
    params = {
        "log10_mstar_msun": rng.normal(10.0, 0.2, k),
        "mag_r": rng.normal(19.0, 0.3, k),
        "redshift": np.full(k, 0.1),
    }
    s = Samples(
        images,
        images,
        np.full_like(images, 0.05),
        params,
        {},
        params["redshift"],
        np.full((k, 5), 1.3),
        ("u", "g", "r", "i", "z"),
    )
    fig = plots.analogues_figure(
        images[0],
        images[1],
        s,
        n=6,
        params=["log10_mstar_msun", "mag_r"],
        truth={"mag_r": 19.1},
        ncols=3,
        out=tmp_path / "a.png",
    )
    _assert_png(tmp_path / "a.png")
    assert len(fig.get_axes()) == 2 + 6 + 2
    hist = [ax for ax in fig.get_axes() if ax.get_xlabel()]
    assert len(hist) == 2 and len(hist[1].lines) == 1  # the truth line on mag_r only
    with pytest.raises(ValueError, match="have no"):
        plots.analogues_figure(images[0], images[1], s, params=["bogus"])


def test_corner_contour_levels_enclose_gaussian_mass() -> None:
    """The 1-sigma 2-D contour of a Gaussian histogram encloses 1 - e^-1/2 = 39.3 % of it."""
    x = np.linspace(-5, 5, 201)
    xx, yy = np.meshgrid(x, x)
    hist = np.exp(-0.5 * (xx**2 + yy**2))
    th = plots._contour_thresholds(hist, plots._CORNER_LEVELS)
    assert len(th) == 2
    frac = [hist[hist >= t].sum() / hist.sum() for t in th]
    np.testing.assert_allclose(sorted(frac), [0.393, 0.865], atol=5e-3)
    # The 2-D Gaussian's k-sigma contour is the circle r = k: density exp(-k^2/2).
    np.testing.assert_allclose(sorted(th), [math.exp(-2.0), math.exp(-0.5)], rtol=0.03)


# ---------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------


def _write_h5(path: Path, n: int = 5) -> dict:
    d = _galaxies(n)
    with H5Writer(path, bands=BANDS, pixel_scale_arcsec=0.396, generator="test") as w:
        w.append(
            {
                k: d[k]
                for k in (
                    "images",
                    "sigma",
                    "mask",
                    "psf_fwhm_arcsec",
                    "redshift",
                    "model_images",
                    "truth",
                )
            }
        )
    return d


def test_cli_mocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "tiny.h5"
    _write_h5(data)
    out = tmp_path / "figs" / "mocks.png"
    rc = plots.main(["mocks", "--data", str(data), "--n", "4", "--n-maps", "2", "--out", str(out)])
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out)
    _assert_png(out)


def test_cli_segment_and_segmentation_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "tiny.h5"
    _write_h5(data)
    out = tmp_path / "figs" / "segment.png"
    rc = plots.main(["segment", "--data", str(data), "--n", "3", "--out", str(out)])
    assert rc == 0
    assert capsys.readouterr().out.strip() == str(out)
    _assert_png(out)
    images = np.zeros((2, 5, 16, 16), np.float32)
    other = np.zeros((2, 16, 16), bool)
    other[0, :4, :4] = True
    fig = plots.segmentation_figure(images, other, BANDS, out=tmp_path / "seg.png")
    assert len(fig.axes) == 2
    with pytest.raises(ValueError, match="mask shape"):
        plots.segmentation_figure(images, other[:1], BANDS)
    assert plots.main(["segment", "--data", str(data), "--n", "0"]) == 2


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = plots.main(["mocks", "--data", str(tmp_path / "missing.h5")])
    assert rc == 2
    assert "not found" in capsys.readouterr().err
    rc = plots.main(["traverse", "--params", "r_d_kpc,bogus_param"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "bogus_param" in err and "known:" in err
    assert all(name in err for name in REGISTRY.names)
    rc = plots.main(["traverse", "--checkpoint", str(tmp_path / "nope.pt")])
    assert rc == 2 and "checkpoint file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        plots.main(["not-a-command"])


@pytest.mark.slow  # a fresh interpreter importing torch: 5-15 s on 2 busy cores
def test_module_entry_point_and_no_pyplot(tmp_path: Path) -> None:
    """``python -m galae.plots mocks`` works, and galae.plots never imports pyplot."""
    data = tmp_path / "tiny.h5"
    _write_h5(data, n=2)
    out = tmp_path / "m.png"
    code = (
        "import sys, runpy; sys.argv = ['galae.plots', 'mocks', '--data', sys.argv[1], "
        "'--n', '2', '--out', sys.argv[2]]\n"
        "try:\n    runpy.run_module('galae.plots', run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(data), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == str(out)
    _assert_png(out)


# ---------------------------------------------------------------------------------------------
# With the real renderer and an untrained model (no checkpoint needed)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained_model():
    """A GalaeModel with the real renderer, a broad prior and a tiny untrained encoder."""
    sample_mod = pytest.importorskip("galae.sampling")
    from galae.encoder import EncoderConfig, GalaxyEncoder
    from galae.model import GalaxyGuide, GalaxyModel
    from galae.prior import BroadPrior
    from galae.render.renderer import GalaxyRenderer

    torch.manual_seed(0)
    renderer = GalaxyRenderer()
    model = GalaxyModel(renderer, BroadPrior(REGISTRY.dim))
    guide = GalaxyGuide(GalaxyEncoder(EncoderConfig(n_bands=5, widths=(8, 16), hidden=32)))
    state = {
        "data_info": {
            "bands": list(renderer.bands),
            "pixel_scale_arcsec": 0.396,
            "shape": [24, 24],
        },
        "prior_kind": "broad",
        "loss_terms": "untrained (test)",
    }
    return sample_mod.GalaeModel(model, guide, state)


def test_real_renderer_traversal(untrained_model, tmp_path: Path) -> None:
    t = plots.traverse_latents(untrained_model, params=["log10_mstar_disk_msun"], steps=3)
    assert set(t.maps) == set(plots.MAP_UNITS)  # the renderer's maps are all labelled
    assert np.all(np.isfinite(t.images)) and t.images.shape == (1, 3, 5, 24, 24)
    # More disk mass, more light in every band (at fixed everything else).
    flux = t.images[0].sum(axis=(-1, -2))  # (steps, C)
    assert np.all(np.diff(flux, axis=0) > 0)
    fig = plots.traversal_figure(t, out=tmp_path / "t.png")
    assert len(fig.get_axes()) == 3
    _assert_png(tmp_path / "t.png")


@pytest.mark.slow  # renders derived observables on 3x stamps: ~10 s on 2 busy cores
def test_real_model_gallery_and_maps(untrained_model, tmp_path: Path) -> None:
    t = plots.traverse_latents(untrained_model, params=["age_disk_gyr"], steps=3)
    fig = plots.traversal_maps_figure(t, params=None, out=tmp_path / "tm.png")
    assert len(fig.get_axes()) == 3 * 5 + 4
    _assert_png(tmp_path / "tm.png")
    s = untrained_model.sample(n=4, seed=0)
    fig = plots.sample_gallery(s, out=tmp_path / "g.png")
    assert len(fig.get_axes()) == 4
    assert "log SFR=" in fig.get_axes()[0].texts[0].get_text()
    _assert_png(tmp_path / "g.png")


@pytest.mark.slow  # encodes and renders with the real model: ~30 s on 2 busy cores
def test_cli_model_commands(
    untrained_model,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import galae.sampling

    monkeypatch.setattr(galae.sampling, "load", lambda path=None, device="cpu": untrained_model)
    data = tmp_path / "tiny.h5"
    _write_h5(data, n=2)
    out = tmp_path / "f"
    cmds = {
        "traverse": ["--params", "r_d_kpc", "--map-params", "age_disk_gyr", "--steps", "3"],
        "gallery": ["--n", "4"],
        "reconstruct": ["--data", str(data), "--n", "2", "--maps-of", "1"],
        "corner": [
            "--data",
            str(data),
            "--index",
            "1",
            "--k",
            "200",
            "--params",
            "r_d_kpc,age_disk_gyr",
        ],
        "analogues": ["--data", str(data), "--index", "1", "--n", "8", "--show", "4"],
    }
    expected = {
        "traverse": ["traverse.png", "traverse_maps.png"],
        "gallery": ["gallery.png"],
        "reconstruct": ["reconstruct.png", "reconstruct_maps.png", "reconstruct_profiles.png"],
        "corner": ["corner.png"],
        "analogues": ["analogues.png"],
    }
    for cmd, extra in cmds.items():
        rc = plots.main([cmd, *extra, "--out", str(out / f"{cmd}.png")])
        printed = capsys.readouterr()
        assert rc == 0, printed.err
        assert printed.out.split() == [str(out / name) for name in expected[cmd]]
        for name in expected[cmd]:
            _assert_png(out / name)
    rc = plots.main(["corner", "--data", str(data), "--params", "bogus"])
    assert rc == 2 and "known:" in capsys.readouterr().err
    rc = plots.main(["analogues", "--data", str(data), "--params", "bogus"])
    assert rc == 2 and "known:" in capsys.readouterr().err
    rc = plots.main(["analogues", "--data", str(data), "--index", "2"])
    assert rc == 2 and "--index 2 out of range" in capsys.readouterr().err
    rc = plots.main(["reconstruct", "--data", str(data), "--n", "2", "--maps-of", "2"])
    assert rc == 2 and "--maps-of must lie in [0, 1]" in capsys.readouterr().err
