"""Tests of galae.physics.dust: Calzetti (2000) curve, slab and screen transmissions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from galae.physics import dust


def _calzetti_eq4_by_hand(lam_um: float) -> float:
    """Calzetti et al. (2000, ApJ 533, 682) eq. 4 with R_V = 4.05, written out independently."""
    x = 1.0 / lam_um
    if lam_um <= 0.63:
        return 2.659 * (-2.156 + 1.509 * x - 0.198 * x**2 + 0.011 * x**3) + 4.05
    return 2.659 * (-1.857 + 1.040 * x) + 4.05


# Values of eq. 4 evaluated by hand (4 significant digits are enough to catch a wrong branch or
# coefficient): V band 0.55 um gives 4.048 ~ R_V (Calzetti et al. 2000 chose R_V so that
# k(V) ~ R_V); 0.15 um gives 10.33; 0.30 um 6.926; 1.0 um (red branch)
# 2.659 (1.040 - 1.857) + 4.05 = 1.878; 2.2 um gives 0.369.
PUBLISHED_POINTS = [(0.55, 4.048), (0.15, 10.334), (0.30, 6.926), (1.0, 1.878), (2.2, 0.369)]


@pytest.mark.parametrize("lam_um, k_ref", PUBLISHED_POINTS)
def test_calzetti_matches_eq4_values(lam_um: float, k_ref: float) -> None:
    k = float(dust.calzetti2000_k(np.array([lam_um]))[0])
    assert k == pytest.approx(k_ref, abs=2e-3)
    assert k == pytest.approx(_calzetti_eq4_by_hand(lam_um), rel=1e-12)


def test_calzetti_numpy_and_torch_agree_and_keep_type() -> None:
    lam = np.geomspace(0.09, 5.0, 301)
    k_np = dust.calzetti2000_k(lam)
    assert isinstance(k_np, np.ndarray) and k_np.shape == lam.shape
    for dtype in (torch.float32, torch.float64):
        k_t = dust.calzetti2000_k(torch.as_tensor(lam, dtype=dtype))
        assert isinstance(k_t, torch.Tensor) and k_t.dtype == dtype
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        np.testing.assert_allclose(k_t.numpy(), k_np, rtol=tol, atol=tol)


def test_calzetti_extrapolation_continuous_monotonic_non_negative() -> None:
    # far-UV: tangent line in 1/lambda at 0.12 um -> continuous value and slope there
    eps = 1e-7
    k_in = _calzetti_eq4_by_hand(0.12 + eps)
    k_out = float(dust.calzetti2000_k(np.array([0.12 - eps]))[0])
    assert k_out == pytest.approx(k_in, abs=200 * eps)  # |dk/dlambda| = 92 per um there
    x0, h = 1.0 / 0.12, 1e-3
    slope_in = (_calzetti_eq4_by_hand(1 / x0) - _calzetti_eq4_by_hand(1 / (x0 - h))) / h
    k = dust.calzetti2000_k(np.array([1 / (x0 + h), 1 / x0]))
    assert (k[0] - k[1]) / h == pytest.approx(slope_in, rel=1e-2)
    # attenuation falls with wavelength (apart from the published 0.025 step at 0.63 um)
    lam = np.geomspace(0.05, 3.0, 2000)
    k = dust.calzetti2000_k(lam)
    step = np.diff(k)
    jump = (lam[:-1] <= 0.63) & (lam[1:] > 0.63)
    assert np.all(step[~jump] < 0)
    # beyond 2.2 um the red branch is continued down to zero and floored there (3.11 um)
    k_ir = dust.calzetti2000_k(np.array([2.5, 3.0, 3.2, 10.0]))
    assert np.all(k_ir >= 0) and k_ir[0] > k_ir[1] > 0 and k_ir[2] == 0 and k_ir[3] == 0


def test_calzetti_effective_v_band_is_r_v() -> None:
    """Through the Bessell V filter a flat spectrum sees k ~ R_V = 4.05 (Calzetti 2000, eq. 5)."""
    pytest.importorskip("speclite")
    from galae.physics import bands, sps_build

    filters = bands.load_filters("bessell-V")
    wave = np.linspace(3000.0, 10000.0, 7001)
    k_v = sps_build.calzetti_k_effective(filters, wave, np.ones_like(wave), 0.0)
    assert k_v[0] == pytest.approx(4.05, abs=0.1)


def test_calzetti_gradcheck_and_errors() -> None:
    lam = torch.tensor([0.1, 0.2, 0.5, 0.9, 2.0, 2.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dust.calzetti2000_k, (lam,))
    for bad in ([0.5, 0.0], [-1.0], [float("nan")], [float("inf")]):
        with pytest.raises(ValueError):
            dust.calzetti2000_k(np.array(bad))
        with pytest.raises(ValueError):
            dust.calzetti2000_k(torch.tensor(bad))


def test_slab_transmission_formula_and_limits() -> None:
    """Disney, Davies & Phillipps (1989): T = (1 - e^-x)/x, x = tau / cos i."""
    tau = torch.tensor([1e-9, 1e-5, 1e-3, 0.1, 1.0, 5.0, 30.0], dtype=torch.float64)
    cos_i = torch.tensor(0.5, dtype=torch.float64)
    t = dust.slab_transmission(tau, cos_i)
    x = tau / cos_i
    exact = torch.tensor([-math.expm1(-v) / v for v in x.tolist()], dtype=torch.float64)
    torch.testing.assert_close(t, exact, rtol=1e-12, atol=0)
    # x -> 0: T -> 1 - x/2; large x: T -> 1/x
    assert float(dust.slab_transmission(torch.zeros(1, dtype=torch.float64), cos_i)) == 1.0
    assert float(t[-1]) == pytest.approx(1.0 / float(x[-1]), rel=1e-12)
    # continuity across the series switch
    xs = torch.tensor([1e-4 * (1 - 1e-9), 1e-4 * (1 + 1e-9)], dtype=torch.float64)
    ts = dust.slab_transmission(xs, torch.ones((), dtype=torch.float64))
    assert abs(float(ts[0] - ts[1])) < 1e-12
    # a mixed slab transmits more than a screen of the same optical depth, and less when inclined
    one = torch.ones((), dtype=torch.float64)
    assert torch.all(dust.slab_transmission(tau, one) > dust.screen_transmission(tau))
    assert torch.all(
        dust.slab_transmission(tau[1:], 0.3 * one) < dust.slab_transmission(tau[1:], one)
    )


def test_slab_broadcasts_like_the_renderer() -> None:
    tau = torch.rand(3, 5, 8, 8)
    cos_i = torch.rand(3).clamp(min=0.1).view(-1, 1, 1, 1)
    t = dust.slab_transmission(tau, cos_i)
    assert t.shape == (3, 5, 8, 8) and t.dtype == torch.float32
    assert torch.all((t > 0) & (t <= 1))


def test_transmissions_gradcheck() -> None:
    tau = torch.tensor([2e-6, 1e-5, 5e-5, 0.3, 2.0], dtype=torch.float64, requires_grad=True)
    cos_i = torch.tensor([0.99, 0.9, 0.5, 0.2, 0.7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dust.slab_transmission, (tau, cos_i))
    assert torch.autograd.gradcheck(dust.screen_transmission, (tau,))
    av = torch.tensor([0.1, 1.0, 2.5], dtype=torch.float64, requires_grad=True)
    k = torch.tensor([5.0, 4.05, 2.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(dust.av_to_tau_band, (av, k))
    # gradient of the slab at tau = 0 is the analytic -1/(2 cos i)
    t0 = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(
        dust.slab_transmission(t0, torch.tensor(0.5, dtype=torch.float64)), t0
    )
    assert float(g) == pytest.approx(-1.0, rel=1e-12)


def test_av_to_tau_band_is_magnitudes() -> None:
    """A screen of tau_band transmits 10^(-0.4 A_band) with A_band = A_V k / R_V."""
    av = torch.tensor([0.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    k = torch.tensor(6.0, dtype=torch.float64)
    t = dust.screen_transmission(dust.av_to_tau_band(av, k))
    torch.testing.assert_close(t, 10.0 ** (-0.4 * av * 6.0 / 4.05), rtol=1e-12, atol=0)
    tau_v = dust.av_to_tau_band(torch.tensor(1.0), torch.tensor(dust.CALZETTI_R_V))
    assert float(tau_v) == pytest.approx(1.0 / 1.0857362, rel=1e-6)


def test_transmission_errors() -> None:
    one = torch.ones(())
    with pytest.raises(ValueError, match="tau_band"):
        dust.slab_transmission(torch.tensor([-0.1]), one)
    with pytest.raises(ValueError, match="cos_inclination"):
        dust.slab_transmission(torch.tensor([0.1]), torch.tensor(0.0))
    with pytest.raises(ValueError, match="cos_inclination"):
        dust.slab_transmission(torch.tensor([0.1]), torch.tensor(1.5))
    with pytest.raises(ValueError, match="NaN"):
        dust.slab_transmission(torch.tensor([float("nan")]), one)
    with pytest.raises(ValueError, match="tau_band"):
        dust.screen_transmission(torch.tensor([-1.0]))
    with pytest.raises(ValueError, match="av_mag"):
        dust.av_to_tau_band(torch.tensor([-1.0]), one)
    with pytest.raises(ValueError, match="r_v"):
        dust.av_to_tau_band(one, one, r_v=0.0)


# ------------------------------------------------------------------------------------------
# birth clouds (Calzetti et al. 2000: E(B-V)_stars = 0.44 E(B-V)_gas)
# ------------------------------------------------------------------------------------------


def test_slab_effective_av_limits() -> None:
    """A_V,eff = -2.5 log10 T_slab(V): A_V,0 / (2 cos i) for a thin slab (T = 1 - x/2), and
    2.5 log10(x) for a thick one (T -> 1/x), x = A_V,0 / (1.0857 cos i)."""
    cos_i = torch.tensor([1.0, 0.5, 0.17], dtype=torch.float64)
    thin = torch.full((3,), 1e-4, dtype=torch.float64)
    got = dust.slab_effective_av_mag(thin, cos_i)
    assert torch.allclose(got, thin / (2.0 * cos_i), rtol=1e-3)
    thick = torch.full((3,), 200.0, dtype=torch.float64)
    x = thick / (dust.MAG_PER_TAU * cos_i)
    assert torch.allclose(dust.slab_effective_av_mag(thick, cos_i), 2.5 * torch.log10(x))
    zero = dust.slab_effective_av_mag(torch.zeros(3, dtype=torch.float64), cos_i)
    assert torch.equal(zero, torch.zeros(3, dtype=torch.float64))


def test_effective_birth_clouds_give_the_calzetti_ratio_at_every_inclination() -> None:
    """With "effective" birth clouds the young stars' V attenuation is the slab's over 0.44
    (ratio 2.273) for any A_V,0 and inclination; the "face_on" reference of earlier releases
    gives 3.75 face-on and 1.70 at 80 degrees for A_V,0 = 1 (the review's figures,
    docs/results.md, seventeenth submission)."""
    av0 = torch.tensor([0.05, 0.3, 1.0, 2.5, 1.0, 1.0], dtype=torch.float64)
    cos_i = torch.tensor([1.0, 0.7, 1.0, 0.3, math.cos(math.radians(80.0)), 0.5])
    cos_i = cos_i.to(torch.float64)
    old = dust.slab_effective_av_mag(av0, cos_i)
    young = old + dust.BIRTH_CLOUDS["effective"](av0, cos_i)
    assert torch.allclose(young / old, torch.full_like(old, 1.0 / 0.44), rtol=1e-12)
    young_face_on = old + dust.BIRTH_CLOUDS["face_on"](av0, cos_i)
    assert (young_face_on / old)[2].item() == pytest.approx(3.75, abs=0.01)
    assert (young_face_on / old)[4].item() == pytest.approx(1.70, abs=0.01)
    assert dust.BIRTH_CLOUD_EXTRA == pytest.approx(1.0 / 0.44 - 1.0, rel=1e-15)


def test_birth_clouds_gradients_broadcast_and_names() -> None:
    """Finite gradients at A_V,0 = 0 (the slab's series branch) and above; the screens
    broadcast as the shader calls them, (B, 1, K) against (B, 1, 1); unknown names are named."""
    av0 = torch.tensor([[[0.0, 1e-6, 0.4, 3.0]]], dtype=torch.float64).expand(2, 1, 4)
    av0 = av0.clone().requires_grad_(True)
    cos_i = torch.tensor([0.9, 0.2], dtype=torch.float64).view(-1, 1, 1).requires_grad_(True)
    for name, screen in dust.BIRTH_CLOUDS.items():
        out = screen(av0, cos_i)
        assert out.shape == (2, 1, 4), name
        # "face_on" does not depend on the inclination: no gradient reaches cos_i
        g_av, g_cos = torch.autograd.grad(out.sum(), (av0, cos_i), allow_unused=True)
        assert bool(torch.isfinite(g_av).all()), name
        assert (g_cos is None) == (name == "face_on"), name
        assert g_cos is None or bool(torch.isfinite(g_cos).all()), name
    assert torch.autograd.gradcheck(
        lambda a, c: dust.birth_cloud_av_effective_mag(a, c),
        (
            torch.tensor([0.2, 1.5], dtype=torch.float64, requires_grad=True),
            torch.tensor([0.8, 0.3], dtype=torch.float64, requires_grad=True),
        ),
    )
    assert dust.check_birth_clouds("effective") == "effective"
    with pytest.raises(ValueError, match="unknown birth_clouds 'screen'.*effective"):
        dust.check_birth_clouds("screen")
    with pytest.raises(ValueError, match="NaN"):
        dust.birth_cloud_av_face_on_mag(torch.tensor([math.nan]), torch.ones(1))


# ---- patchy dust (the simulation nuisance) --------------------------------------------------


def _lognormal_mean_by_quad(tau: float, cos_i: float, s: float, gamma: float) -> float:
    """E_g[T_slab(tau exp(s g + (gamma - 1/2) s^2))], g ~ N(0, 1), by adaptive quadrature."""
    from scipy import integrate

    def f(g: float) -> float:
        x = tau * math.exp(s * g + (gamma - 0.5) * s * s) / cos_i
        t = 1.0 - x / 2.0 if x < 1e-8 else -math.expm1(-x) / x
        return math.exp(-0.5 * g * g) / math.sqrt(2.0 * math.pi) * t

    return integrate.quad(f, -12.0, 12.0, epsabs=1e-13, limit=400)[0]


@pytest.mark.parametrize(("s", "tol"), [(0.5, 1e-9), (1.0, 1e-6), (2.0, 1e-4)])
@pytest.mark.parametrize("gamma", [0.0, 1.4])
def test_clumpy_slab_matches_adaptive_quadrature(s: float, tol: float, gamma: float) -> None:
    tau = torch.tensor([0.01, 0.3, 1.0, 3.0, 8.0], dtype=torch.float64)
    cos_i = torch.tensor(0.35, dtype=torch.float64)
    got = dust.clumpy_slab_transmission(tau, cos_i, torch.tensor(s, dtype=torch.float64), gamma)
    ref = [_lognormal_mean_by_quad(t, 0.35, s, gamma) for t in tau.tolist()]
    np.testing.assert_allclose(got.numpy(), ref, rtol=0.0, atol=tol)


def test_clumpy_slab_limits_and_jensen() -> None:
    """s = 0 is the smooth slab; with the emitters spread evenly a patchy medium transmits
    more than a smooth one of the same mean column (T_slab is convex), more so the patchier,
    and greyer (the ratio of two bands' optical depths is smaller than the dust curve's);
    emitters where the dust is (gamma = 1.4) transmit less than the smooth slab."""
    tau = torch.linspace(0.0, 6.0, 25, dtype=torch.float64)
    cos_i = torch.tensor(0.6, dtype=torch.float64)
    smooth = dust.slab_transmission(tau, cos_i)
    zero = torch.zeros((), dtype=torch.float64)
    torch.testing.assert_close(dust.clumpy_slab_transmission(tau, cos_i, zero), smooth)
    t_half = dust.clumpy_slab_transmission(tau, cos_i, torch.tensor(0.5, dtype=torch.float64))
    t_one = dust.clumpy_slab_transmission(tau, cos_i, torch.tensor(1.0, dtype=torch.float64))
    assert bool((t_half[1:] > smooth[1:]).all()) and bool((t_one[1:] > t_half[1:]).all())
    in_dust = dust.clumpy_slab_transmission(
        tau, cos_i, torch.tensor(1.0, dtype=torch.float64), weight_exponent=1.4
    )
    assert bool((in_dust[1:] < smooth[1:]).all())
    # greyer: u against i band at z = 0 (k_u / k_i from the Calzetti curve)
    k = dust.calzetti2000_k(np.array([0.355, 0.75]))
    tau_v = torch.tensor(1.0, dtype=torch.float64)
    taus = tau_v * torch.tensor(k / dust.CALZETTI_R_V, dtype=torch.float64)
    for s in (0.0, 1.0):
        t = dust.clumpy_slab_transmission(taus, cos_i, torch.tensor(s, dtype=torch.float64))
        a_u, a_i = (-torch.log(t)).tolist()
        if s == 0.0:
            ratio_smooth = a_u / a_i
        else:
            assert a_u / a_i < ratio_smooth


def test_clumpy_slab_gradients_and_errors() -> None:
    tau = torch.tensor([0.2, 1.5], dtype=torch.float64, requires_grad=True)
    cos_i = torch.tensor([0.9, 0.3], dtype=torch.float64, requires_grad=True)
    s = torch.tensor([0.4, 1.2], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, c: dust.clumpy_slab_transmission(a, b, c, 1.4), (tau, cos_i, s)
    )
    with pytest.raises(ValueError, match="sigma_ln_tau must be >= 0"):
        dust.clumpy_slab_transmission(tau, cos_i, torch.tensor(-0.1, dtype=torch.float64))
    with pytest.raises(ValueError, match="sigma_ln_tau contains NaN"):
        dust.clumpy_slab_transmission(tau, cos_i, torch.tensor(math.nan, dtype=torch.float64))
    with pytest.raises(ValueError, match="weight_exponent must be finite"):
        dust.clumpy_slab_transmission(tau, cos_i, s, weight_exponent=math.inf)


def test_dust_clumping_draw_block_and_batch() -> None:
    c = dust.DustClumping.draw(5000, 1.0, generator=torch.Generator().manual_seed(1))
    assert float(c.sigma_ln_tau.min()) >= 0.0 and float(c.sigma_ln_tau.max()) <= 1.0
    assert abs(float(c.sigma_ln_tau.mean()) - 0.5) < 0.02  # uniform on [0, 1]
    again = dust.DustClumping.draw(5000, 1.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(c.sigma_ln_tau, again.sigma_ln_tau)
    for bad in (-1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="max_sigma_ln_tau must be a number >= 0"):
            dust.DustClumping.draw(3, bad)
    assert dust.active_dust_clumping() is None
    with dust.dust_clumping(c):
        assert dust.active_dust_clumping() is c
    assert dust.active_dust_clumping() is None
    with pytest.raises(ValueError, match="drawn for 5000 galaxies, shading 2"):
        c.transmission(torch.ones(2, 3), torch.ones(2, 1))
