"""Sersic profiles and their pixel integration, against analytic identities.

References: Graham & Driver 2005 (PASA 22, 118) for the Sersic relations, Ciotti & Bertin
1999 (A&A 352, 447) for b_n, DLMF 8.2 for the incomplete gamma function.  Reference
pixel values come from (a) closed forms (Gaussian pixel integrals are products of erf
differences), (b) SciPy's incomplete gamma function and quadrature, and (c) the exact
edge integration applied to every pixel (settings with a box covering the stamp).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.integrate
import scipy.special
import torch

from galae.physics.profiles import (
    elliptical_radius,
    regularized_gammainc,
    sersic_b,
    sersic_enclosed_fraction,
    sersic_intensity_at_r_half,
    sersic_surface_brightness,
    sersic_total_flux,
)
from galae.render.profile_api import render_profile
from galae.render.psf import GaussianPSF, PixelPSF
from galae.render.raster import MOMENT_NAMES, sersic_image, sersic_pixel_moments
from galae.settings import DEFAULT_SETTINGS

F64 = torch.float64
# Every pixel integrated exactly in radius (the box covers the stamp), dense edge rule.
EXACT = DEFAULT_SETTINGS.with_(
    cusp_radius_pix=200, cusp_oversample=24, moment_radius_pix=200, cusp_table_nodes=0
)
# The default rule with the central pixels' incomplete gamma functions evaluated at every node
# (no table): for identities that hold to rounding.
UNTABULATED = DEFAULT_SETTINGS.with_(cusp_table_nodes=0)


def t64(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=F64)


def gaussian_pixels(sigma_x: float, sigma_y: float, cx: float, cy: float, shape) -> np.ndarray:
    """Exact pixel integrals of a unit-flux axis-aligned Gaussian (products of erf differences)."""
    h, w = shape
    ex = np.arange(w + 1) - 0.5 - cx
    ey = np.arange(h + 1) - 0.5 - cy
    fx = np.diff(scipy.special.ndtr(ex / sigma_x))
    fy = np.diff(scipy.special.ndtr(ey / sigma_y))
    return fy[:, None] * fx[None, :]


# --------------------------------------------------------------------------- gamma function


def test_gammainc_matches_scipy_float64():
    a = torch.linspace(0.5, 60.0, 40, dtype=F64)[:, None]
    x = torch.cat(
        [torch.logspace(-8, 0, 30, dtype=F64), torch.linspace(1.0, 150.0, 120, dtype=F64)]
    )
    got = regularized_gammainc(a, x[None, :])
    ref = scipy.special.gammainc(a.numpy(), x[None, :].numpy())
    assert np.abs(got.numpy() - ref).max() < 1e-12


def test_gammainc_matches_scipy_float32():
    a = torch.linspace(1.0, 26.0, 26)[:, None]
    x = torch.linspace(0.0, 80.0, 400)[None, :]
    got = regularized_gammainc(a, x)
    assert got.dtype == torch.float32
    ref = scipy.special.gammainc(a.double().numpy(), x.double().numpy())
    assert np.abs(got.double().numpy() - ref).max() < 5e-7  # measured 1.5e-7


def test_gammainc_gradcheck_both_arguments():
    # points on both sides of the series / continued-fraction switch x = a + 1
    a = t64(0.8, 2.0, 5.0, 13.0, 3.0).requires_grad_(True)
    x = t64(0.3, 4.5, 4.0, 20.0, 3.9).requires_grad_(True)
    assert torch.autograd.gradcheck(regularized_gammainc, (a, x))


def test_gammainc_derivative_in_a_matches_finite_difference_of_scipy():
    a = t64(1.0, 3.0, 8.0, 12.0).requires_grad_(True)
    x = t64(0.5, 3.5, 10.0, 9.0)
    regularized_gammainc(a, x).sum().backward()
    h = 1e-6
    an, xn = a.detach().numpy(), x.numpy()
    fd = (scipy.special.gammainc(an + h, xn) - scipy.special.gammainc(an - h, xn)) / (2 * h)
    assert np.allclose(a.grad.numpy(), fd, rtol=1e-6, atol=1e-9)


def test_gammainc_rejects_bad_input():
    with pytest.raises(ValueError, match="NaN"):
        regularized_gammainc(t64(1.0), t64(float("nan")))
    with pytest.raises(ValueError, match=">= 0"):
        regularized_gammainc(t64(1.0), t64(-1.0))
    with pytest.raises(ValueError, match="a must lie"):
        regularized_gammainc(t64(100.0), t64(1.0))


# --------------------------------------------------------------------------- b_n


def test_sersic_b_known_values():
    # b_0.5 = ln 2 exactly (Gaussian); b_1 = 1.678347 (exponential, r_half = 1.678347 h);
    # b_4 = 7.669249 (de Vaucouleurs); Graham & Driver 2005 Sect. 2.
    b = sersic_b(t64(0.5, 1.0, 4.0))
    assert abs(b[0].item() - math.log(2.0)) < 1e-12
    assert abs(b[1].item() - 1.678347) < 1e-6
    assert abs(b[2].item() - 7.669249) < 1e-6


def test_sersic_b_solves_its_definition_over_the_range():
    n = torch.linspace(0.2, 20.0, 200, dtype=F64)
    b = sersic_b(n)
    ref = scipy.special.gammaincinv(2 * n.numpy(), 0.5)
    assert np.abs(b.numpy() / ref - 1).max() < 1e-12


def test_sersic_b_approaches_ciotti_bertin_series_at_large_n():
    # Ciotti & Bertin 1999 eq. 18 is asymptotic; its error falls below 1e-6 for n >= 4.
    n = torch.linspace(4.0, 10.0, 13, dtype=F64)
    series = 2 * n - 1 / 3 + 4 / (405 * n) + 46 / (25515 * n**2) + 131 / (1148175 * n**3)
    assert (sersic_b(n) - series).abs().max() < 1e-6


def test_sersic_b_gradient():
    n = t64(0.5, 1.3, 4.0, 6.5).requires_grad_(True)
    assert torch.autograd.gradcheck(sersic_b, (n,))
    # implicit derivative db/dn -> 2 at large n (b ~ 2n - 1/3)
    m = t64(15.0).requires_grad_(True)
    (grad,) = torch.autograd.grad(sersic_b(m).sum(), m)
    assert abs(grad.item() - 2.0) < 1e-3


def test_sersic_b_rejects_out_of_range():
    with pytest.raises(ValueError, match="sersic_n"):
        sersic_b(t64(0.1))
    with pytest.raises(ValueError, match="NaN"):
        sersic_b(t64(float("inf")))


# --------------------------------------------------------------------------- normalisation


def _radial_integral(r_e: float, n: float, q: float, flux: float, r_max: float) -> float:
    """2 pi q int_0^r_max R I(R) dR by Simpson's rule in log R (40001 nodes from 1e-13 r_e)."""
    log_r = np.linspace(math.log(1e-13 * r_e), math.log(r_max), 40001)
    r = torch.tensor(np.exp(log_r), dtype=F64)
    sb = sersic_surface_brightness(r, t64(r_e), t64(n), t64(q), flux).numpy()
    return float(scipy.integrate.simpson(2 * math.pi * q * r.numpy() ** 2 * sb, x=log_r))


@pytest.mark.parametrize("n", [0.5, 1.0, 2.5, 4.0, 6.5])
def test_total_flux_integrates_surface_brightness(n):
    """2 pi q int_0^inf R I(R) dR = flux (elliptical isophotes, Graham & Driver 2005 eq. 4)."""
    flux, r_e, q = 3.7, 1.9, 0.45
    b = float(sersic_b(t64(n)))
    total = _radial_integral(r_e, n, q, flux, r_e * (60 / b) ** n)
    assert abs(total / flux - 1) < 1e-8
    i_e = sersic_intensity_at_r_half(t64(flux), t64(r_e), t64(n), t64(q))
    assert abs(float(sersic_total_flux(i_e, t64(r_e), t64(n), t64(q))) / flux - 1) < 1e-12
    # I(r_e) = I_e by definition
    sb_re = sersic_surface_brightness(t64(r_e), t64(r_e), t64(n), t64(q), flux)
    assert abs(float(sb_re / i_e) - 1) < 1e-12


def test_exponential_is_sersic_one():
    """n = 1 with r_half = 1.678347 h is I0 exp(-R/h), I0 = flux / (2 pi q h^2)."""
    r_scale, q = 2.0, 0.7
    r_half = 1.678346990016661 * r_scale
    radius = torch.linspace(0.0, 20.0, 50, dtype=F64)
    got = sersic_surface_brightness(radius, t64(r_half), t64(1.0), t64(q))
    ref = torch.exp(-radius / r_scale) / (2 * math.pi * q * r_scale**2)
    assert torch.allclose(got, ref, rtol=1e-9)


# --------------------------------------------------------------------------- enclosed light


def test_enclosed_fraction_is_half_at_r_half():
    n = torch.linspace(0.5, 6.5, 25, dtype=F64)
    assert (sersic_enclosed_fraction(torch.ones_like(n), n) - 0.5).abs().max() < 1e-12


def test_enclosed_fraction_closed_forms():
    x = torch.linspace(0.0, 5.0, 51, dtype=F64)
    # Gaussian: F = 1 - 2^(-x^2); exponential: F = 1 - exp(-bx)(1 + bx).
    gauss = sersic_enclosed_fraction(x, t64(0.5))
    assert torch.allclose(gauss, 1 - torch.pow(2.0, -(x**2)), atol=1e-13)
    b1 = sersic_b(t64(1.0))
    expo = sersic_enclosed_fraction(x, t64(1.0))
    assert torch.allclose(expo, 1 - torch.exp(-b1 * x) * (1 + b1 * x), atol=1e-13)


@pytest.mark.parametrize("n", [0.7, 2.0, 4.0, 6.5])
def test_enclosed_fraction_matches_quadrature(n):
    r_e, q = 1.0, 0.6
    for x in (0.05, 0.5, 2.0, 7.0):
        ref = _radial_integral(r_e, n, q, 1.0, x * r_e)
        assert abs(float(sersic_enclosed_fraction(t64(x), t64(n))) - ref) < 1e-9


def test_enclosed_fraction_gradcheck():
    x = t64(0.2, 1.0, 3.0).requires_grad_(True)
    n = t64(0.8, 2.2, 5.5).requires_grad_(True)
    assert torch.autograd.gradcheck(sersic_enclosed_fraction, (x, n))


def test_elliptical_radius_axes():
    q, pa = t64(0.4), t64(math.radians(30.0))
    along_major = elliptical_radius(t64(3 * math.cos(pa)), t64(3 * math.sin(pa)), q, pa)
    along_minor = elliptical_radius(t64(-3 * math.sin(pa)), t64(3 * math.cos(pa)), q, pa)
    assert abs(float(along_major) - 3.0) < 1e-12
    assert abs(float(along_minor) - 3.0 / 0.4) < 1e-12


# --------------------------------------------------------------------------- pixel integration


@pytest.mark.parametrize(
    ("r_half", "q", "pa", "cx", "cy"),
    [
        (0.5, 1.0, 0.0, 12.3, 11.8),  # sigma = 0.42 px: badly undersampled
        (1.2, 0.4, 0.0, 12.0, 12.5),  # centre on a pixel edge
        (3.0, 0.3, math.pi / 2, 11.55, 12.45),
        (8.0, 1.0, 0.0, 12.2, 12.9),
    ],
)
def test_gaussian_profile_is_exact_gaussian(r_half, q, pa, cx, cy):
    """n = 1/2 is a Gaussian, sigma = r_half / sqrt(2 ln 2); its pixels are erf products."""
    sigma = r_half / math.sqrt(2 * math.log(2))
    sx, sy = (sigma, q * sigma) if pa == 0.0 else (q * sigma, sigma)
    ref = gaussian_pixels(sx, sy, cx, cy, (25, 25))
    args = (t64(r_half), t64(0.5), t64(q), t64(pa), t64(cx), t64(cy), (25, 25))
    got = sersic_image(*args)[0]
    # default rule: Gauss-Legendre 2x2 outside a 7x7 exact box (worst case: narrow ridges)
    assert np.abs(got.numpy() - ref).max() < 5e-4 * ref.max()
    assert abs(got.sum().item() - ref.sum()) < 2e-5
    # exact edge integration of every pixel reproduces the erf products to rounding level
    exact = sersic_image(*args, settings=EXACT)[0]
    assert np.abs(exact.numpy() - ref).max() < 1e-7 * ref.max()


def test_stamp_sum_is_bracketed_by_enclosed_fractions():
    """Circular profiles: F(L / r_e) <= stamp sum <= F(sqrt(2) L / r_e), L = half the side."""
    n = t64(0.5, 1.0, 2.0, 4.0, 6.5)
    r_half = t64(6.0, 6.0, 5.0, 4.0, 3.0)
    ones = torch.ones_like(n)
    size = 41
    img = sersic_image(r_half, n, ones, 0 * ones, 20.0 * ones, 20.0 * ones, (size, size))
    total = img.sum((1, 2))
    half_side = size / 2
    low = sersic_enclosed_fraction(half_side / r_half, n)
    high = sersic_enclosed_fraction(math.sqrt(2) * half_side / r_half, n)
    assert torch.all(total >= low - 1e-6) and torch.all(total <= high + 1e-6)


@pytest.mark.parametrize("n", [0.5, 1.0, 2.0, 4.0, 6.5])
def test_compact_profile_flux_sums_to_one(n):
    """Compact profiles in a large stamp sum to 1 - (light outside), which is bracketed by
    the enclosed fractions of the ellipses inside / around the stamp; < 1e-3 for n <= 4
    (n = 6.5 keeps 0.3% of its light beyond 64 r_e)."""
    img = sersic_image(t64(1.0), t64(n), t64(0.6), t64(0.0), t64(63.7), t64(64.2), (128, 128))
    total = img.sum().item()
    # pa = 0: the stamp spans dx in [-64.2, 63.8], dy in [-64.7, 63.3]; the ellipse of
    # semi-axes (R, qR) fits inside for R = 63.8 and contains the stamp for
    # R = hypot(64.2, 64.7 / q).
    inner = float(sersic_enclosed_fraction(t64(63.8), t64(n)))
    outer = float(sersic_enclosed_fraction(t64(math.hypot(64.2, 64.7 / 0.6)), t64(n)))
    assert inner - 2e-5 <= total <= outer + 2e-5  # 2e-5: quadrature error of the default rule
    if n <= 4.0:
        assert abs(total - 1.0) < 1e-3


def test_half_light_radius_encloses_half_the_light_in_the_image():
    """Circular n = 1 and n = 4 profiles: the circle of radius r_half holds half the light.

    The light inside the circle is summed from the pixel image with each pixel weighted by
    its area inside the circle (64 x 64 sub-samples); the profile is resolved, so the light
    is close to uniform across each boundary pixel.
    """
    size, centre, r_half = 81, 40.3, 12.0
    sub = 64
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    coords = np.arange(size)
    fx = coords[:, None] + offs[None, :] - centre
    inside = (fx[:, None, :, None] ** 2 + fx[None, :, None, :] ** 2) <= r_half**2
    weights = inside.mean((2, 3))  # (row, col) fraction of the pixel inside the circle
    for n in (1.0, 4.0):
        img = sersic_image(
            t64(r_half), t64(n), t64(1.0), t64(0.0), t64(centre), t64(centre), (size, size)
        )[0].numpy()
        assert abs((img * weights).sum() - 0.5) < 1e-3


@pytest.mark.parametrize(
    ("r_half", "n", "q", "pa", "cx", "cy"),
    [
        (0.5, 6.5, 0.3, 0.3, 10.2, 10.7),  # extreme cusp
        (0.5, 0.5, 0.3, 1.1, 10.5, 10.5),  # narrow Gaussian ridge, centre on a pixel corner
        (1.4, 0.55, 0.3, 0.8, 10.1, 9.6),  # worst case of the default rule (ridge)
        (2.0, 4.0, 0.5, 2.5, 9.9, 10.4),
        (8.0, 2.0, 1.0, 0.0, 10.0, 10.0),
        (0.7, 1.0, 0.8, 0.0, 3.0, -2.4),  # centre off the stamp
    ],
)
def test_default_rule_matches_exact_integration(r_half, n, q, pa, cx, cy):
    """Default settings vs exact edge integration of every pixel: < 1e-3 of the peak pixel."""
    args = (t64(r_half), t64(n), t64(q), t64(pa), t64(cx), t64(cy), (21, 21))
    fast = sersic_image(*args)[0]
    exact = sersic_image(*args, settings=EXACT)[0]
    peak = exact.max()
    assert (fast - exact).abs().max() < 1e-3 * peak
    assert abs(fast.sum() - exact.sum()) < 2e-4


def test_exact_rule_converges_in_edge_nodes():
    """The exact edge integration is converged: 24 vs 48 nodes per edge agree to 1e-9."""
    args = (t64(0.5), t64(6.0), t64(0.4), t64(0.3), t64(7.2), t64(6.9), (15, 15))
    a = sersic_image(*args, settings=EXACT)
    b = sersic_image(*args, settings=EXACT.with_(cusp_oversample=48))
    assert (a - b).abs().max() < 1e-9


def test_convention_major_axis_along_pa():
    """pa = 0: major axis along x (columns); 90 deg: along y; 45 deg: x-y covariance > 0."""
    coords = torch.arange(31, dtype=F64)
    second = {}
    for pa_deg in (0.0, 45.0, 90.0):
        img = sersic_image(
            t64(4.0), t64(1.0), t64(0.4), t64(math.radians(pa_deg)), t64(15.0), t64(15.0), (31, 31)
        )[0]
        dx = coords[None, :] - 15.0
        dy = coords[:, None] - 15.0
        second[pa_deg] = ((img * dx * dx).sum(), (img * dy * dy).sum(), (img * dx * dy).sum())
    assert second[0.0][0] > 3 * second[0.0][1]
    assert second[90.0][1] > 3 * second[90.0][0]
    assert second[45.0][2] > 0.3 * second[45.0][0]


def test_centre_convention_pixel_centres_at_integers():
    """A profile centred on pixel (10, 7) is symmetric about that pixel."""
    img = sersic_image(t64(2.0), t64(4.0), t64(1.0), t64(0.0), t64(10.0), t64(7.0), (15, 21))[0]
    assert img.argmax().item() == 7 * 21 + 10
    assert torch.allclose(img[:, 10 - 5 : 10], img[:, 10 + 1 : 10 + 6].flip(-1), rtol=1e-9)
    assert torch.allclose(img[2:7], img[8:13].flip(0), rtol=1e-9)


def test_continuous_when_exact_box_moves():
    """The exact box follows round(centre): crossing a half-integer changes nothing visible."""
    base = (t64(1.5), t64(4.0), t64(0.5), t64(0.7))
    a = sersic_image(*base, t64(10.5 - 1e-9), t64(9.0), (21, 21))
    b = sersic_image(*base, t64(10.5 + 1e-9), t64(9.0), (21, 21))
    assert (a - b).abs().max() < 1e-4 * a.max()


@pytest.mark.parametrize("tabulated", [False, True])
def test_batch_equals_single(tabulated: bool):
    """A galaxy renders the same alone or in a batch: to rounding with the incomplete gamma
    function at every node; to the table's accuracy (1e-5 of the peak) with the default table,
    since the batch's other Sersic indices decide whether its exponential takes the table."""
    settings = DEFAULT_SETTINGS if tabulated else UNTABULATED
    r_half, n, q = t64(0.7, 3.0, 1.5), t64(4.0, 1.0, 0.5), t64(0.5, 1.0, 0.3)
    pa, cx, cy = t64(0.1, 2.0, -1.0), t64(8.2, 9.0, 7.7), t64(7.9, 8.5, 9.3)
    batch = sersic_image(r_half, n, q, pa, cx, cy, (17, 19), settings)
    for i in range(3):
        one = slice(i, i + 1)
        single = sersic_image(
            r_half[one], n[one], q[one], pa[one], cx[one], cy[one], (17, 19), settings
        )
        if tabulated:
            assert (batch[i] - single[0]).abs().max() < 1e-5 * single.max()
        else:
            assert torch.allclose(batch[i], single[0], rtol=1e-12, atol=1e-15)


def test_dtype_follows_inputs():
    args32 = [torch.tensor([v]) for v in (2.0, 2.0, 0.7, 0.3, 10.0, 10.0)]
    out32 = sersic_image(*args32, (20, 20))
    assert out32.dtype == torch.float32 and out32.shape == (1, 20, 20)
    out64 = sersic_image(*[a.double() for a in args32], (20, 20))
    assert out64.dtype == F64
    assert (out32.double() - out64).abs().max() < 1e-6 * out64.max()


def test_rejects_bad_input():
    good = [t64(2.0), t64(2.0), t64(0.7), t64(0.3), t64(10.0), t64(10.0)]
    cases = [
        (0, t64(float("nan")), "NaN"),
        (0, t64(-1.0), "r_half_major_pix"),
        (1, t64(0.2), "sersic_n"),
        (1, t64(9.0), "sersic_n"),
        (2, t64(0.0), "q must"),
        (2, t64(1.5), "q must"),
        (4, torch.zeros(2, 2, dtype=F64), "shape"),
        (5, t64(1.0, 2.0, 3.0), "broadcast"),
    ]
    good[4] = t64(10.0, 11.0)  # B = 2 against the B = 3 of the last case
    for index, value, message in cases:
        args = list(good)
        args[index] = value
        with pytest.raises(ValueError, match=message):
            sersic_image(*args, (20, 20))
    for shape in ((20,), (0, 5), (5.0, 5), "ab"):
        with pytest.raises(ValueError, match="shape"):
            sersic_image(*good, shape)


# --------------------------------------------------------------------------- moments


@pytest.mark.parametrize(
    ("r_half", "n", "q", "pa", "cx", "cy"),
    [
        (0.5, 6.0, 0.4, 0.7, 7.3, 7.8),
        (1.0, 0.5, 0.3, 0.2, 7.45, 7.1),
        (2.0, 2.0, 0.5, 1.0, 7.0, 7.0),
    ],
)
def test_moments_match_supersampled_image(r_half, n, q, pa, cx, cy):
    """Intra-pixel moments vs a 12x supersampled exact image (moments of its sub-pixels)."""
    size, s = 15, 12
    fine = sersic_image(
        t64(r_half * s),
        t64(n),
        t64(q),
        t64(pa),
        t64(s * (cx + 0.5) - 0.5),
        t64(s * (cy + 0.5) - 0.5),
        (size * s, size * s),
    )[0].numpy()
    blocks = fine.reshape(size, s, size, s)
    off = (np.arange(s) + 0.5) / s - 0.5
    ox, oy = off[None, None, None, :], off[None, :, None, None]
    var = 1.0 / (12 * s * s)  # second moment of a uniform sub-pixel about its centre
    ref = {
        "flux": blocks.sum((1, 3)),
        "first_x": (blocks * ox).sum((1, 3)),
        "first_y": (blocks * oy).sum((1, 3)),
        "second_xx": (blocks * (ox**2 + var)).sum((1, 3)),
        "second_xy": (blocks * ox * oy).sum((1, 3)),
        "second_yy": (blocks * (oy**2 + var)).sum((1, 3)),
    }
    got = sersic_pixel_moments(t64(r_half), t64(n), t64(q), t64(pa), t64(cx), t64(cy), (size, size))
    peak = ref["flux"].max()
    # Inside the 3x3 exact box moments are exact; outside, the 2x2 Gauss-Legendre rule
    # misses up to ~1% of the peak in the first moments of narrow ridges (q r_e ~ 0.3 px),
    # which moves PSF-convolved pixels by < 0.1% of the peak (see test_galsim_agreement).
    tolerances = {"flux": 1e-3, "first_x": 1.5e-2, "first_y": 1.5e-2}
    for name in MOMENT_NAMES:
        err = np.abs(getattr(got, name)[0].numpy() - ref[name]).max() / peak
        assert err < tolerances.get(name, 5e-3), name
    # the exact box reproduces the supersampled moments closely on the centre pixel
    centre = (round(cy), round(cx))
    for name in MOMENT_NAMES:
        err = abs(getattr(got, name)[0][centre].item() - ref[name][centre]) / peak
        assert err < 2e-3, name
    # the same pixel totals as sersic_image (its exact box is larger: to the table's accuracy)
    image = sersic_image(t64(r_half), t64(n), t64(q), t64(pa), t64(cx), t64(cy), (size, size))
    assert (got.flux - image).abs().max() < 1e-5 * image.max()


def test_exact_moments_of_full_plane():
    """Whole-plane moments about the centre: 0 first moments, second = analytic Sersic moment.

    For the circularised unit profile <u^2> = <v^2> = F4(inf) / 2 with
    F4(inf) = b^-2n Gamma(4n) / Gamma(2n); in pixels <x'^2> = r_e^2 <u^2>, <y'^2> = q^2 r_e^2 <v^2>.
    """
    n, r_e, q = 1.0, 0.8, 0.5
    size, centre = 29, 14.0  # light beyond 17 r_e: exp(-29) * 30 ~ 1e-11
    m = sersic_pixel_moments(
        t64(r_e),
        t64(n),
        t64(q),
        t64(0.0),
        t64(centre),
        t64(centre),
        (size, size),
        EXACT.with_(cusp_oversample=12),
    )
    coords = torch.arange(size, dtype=F64)
    dx = coords[None, :] - centre
    dy = coords[:, None] - centre
    total = m.flux.sum()
    mx = (m.first_x + dx * m.flux).sum() / total
    sxx = (m.second_xx + 2 * dx * m.first_x + dx**2 * m.flux).sum() / total
    syy = (m.second_yy + 2 * dy * m.first_y + dy**2 * m.flux).sum() / total
    b = sersic_b(t64(n))
    f4 = float(
        torch.exp(torch.lgamma(t64(4 * n)) - torch.lgamma(t64(2 * n)) - 2 * n * torch.log(b))
    )
    assert abs(float(mx)) < 1e-10
    assert abs(float(sxx) / (r_e**2 * f4 / 2) - 1) < 1e-5
    assert abs(float(syy) / (q**2 * r_e**2 * f4 / 2) - 1) < 1e-5


# --------------------------------------------------------------------------- gradients

SMALL = DEFAULT_SETTINGS.with_(cusp_radius_pix=1, moment_radius_pix=1, cusp_oversample=6)


@pytest.mark.parametrize(
    ("values", "settings"),
    [
        ((1.3, 2.7, 0.6, 0.4, 2.3, 2.8), SMALL),  # global rule + a 3x3 exact box
        ((0.6, 4.5, 0.5, 1.2, 2.1, 1.8), DEFAULT_SETTINGS),  # box covers the 5x6 stamp
        ((0.9, 0.6, 0.8, -0.3, 3.4, 2.2), SMALL),
    ],
)
def test_sersic_image_gradcheck(values, settings):
    params = [t64(v).requires_grad_(True) for v in values]

    def render(*p: torch.Tensor) -> torch.Tensor:
        return sersic_image(*p, (5, 6), settings)

    assert torch.autograd.gradcheck(render, params, atol=1e-7, rtol=1e-5)


def test_sersic_moments_gradcheck():
    params = [t64(v).requires_grad_(True) for v in (0.8, 3.1, 0.6, 0.4, 2.3, 1.8)]

    def render(*p: torch.Tensor) -> torch.Tensor:
        return sersic_pixel_moments(*p, (4, 5), SMALL).stack()

    # fast mode: checks random projections of the Jacobian (the full one takes ~30 s)
    assert torch.autograd.gradcheck(render, params, atol=1e-7, rtol=1e-5, fast_mode=True)


@pytest.mark.parametrize("pa", [0.0, 0.6])
def test_gradient_with_centre_on_pixel_corner(pa):
    """Centre exactly on a pixel corner (the default for even stamps): the gradient is still
    the derivative (edge lines through the centre use the linear continuation in h).

    The 6 x 6 stamp lies inside the exact box, so finite differences do not move the box.
    """
    shape = (6, 6)
    base = [t64(0.8), t64(3.0), t64(0.7), t64(pa)]
    weights = torch.rand(shape, dtype=F64, generator=torch.Generator().manual_seed(1))

    def loss(cx: torch.Tensor, cy: torch.Tensor) -> torch.Tensor:
        return (sersic_image(*base, cx, cy, shape) * weights).sum()

    cx, cy = t64(2.5).requires_grad_(True), t64(2.5).requires_grad_(True)
    grad_x, grad_y = torch.autograd.grad(loss(cx, cy), (cx, cy))
    h = 1e-6
    fd_x = (loss(t64(2.5 + h), t64(2.5)) - loss(t64(2.5 - h), t64(2.5))) / (2 * h)
    fd_y = (loss(t64(2.5), t64(2.5 + h)) - loss(t64(2.5), t64(2.5 - h))) / (2 * h)
    assert abs(grad_x.item() - fd_x.item()) < 1e-5 * abs(fd_x.item()) + 1e-8
    assert abs(grad_y.item() - fd_y.item()) < 1e-5 * abs(fd_y.item()) + 1e-8


def test_float32_gradients_are_finite():
    gen = torch.Generator().manual_seed(3)
    b = 16
    params = [
        (0.5 + 7.5 * torch.rand(b, generator=gen)),
        (0.5 + 6.0 * torch.rand(b, generator=gen)),
        (0.3 + 0.7 * torch.rand(b, generator=gen)),
        (3.0 * torch.rand(b, generator=gen)),
        torch.full((b,), 15.5),  # on pixel edges
        (14.0 + 3.0 * torch.rand(b, generator=gen)),
    ]
    params = [p.requires_grad_(True) for p in params]
    img = sersic_image(*params, (32, 32))
    assert img.dtype == torch.float32
    img.square().sum().backward()
    for p in params:
        assert torch.isfinite(p.grad).all()
        assert (p.grad != 0).any()


# --------------------------------------------------------------------------- render_profile


def test_render_profile_contract_defaults():
    img = render_profile("sersic")
    assert img.shape == (64, 64) and img.dtype == torch.float32
    # default: n = 4, r_half = 2" = 5.05 px, q = 0.5, centred at (31.5, 31.5)
    ref = sersic_image(
        t64(2.0 / 0.396),
        t64(4.0),
        t64(0.5),
        t64(math.radians(30.0)),
        t64(31.5),
        t64(31.5),
        (64, 64),
    )[0]
    assert (img.double() - ref).abs().max() < 1e-6 * ref.max()
    # point symmetric about the stamp centre (to the accuracy of the pixel rule)
    assert (img - img.flip(0).flip(1)).abs().max() < 5e-4 * img.max()


def test_render_profile_names_and_flux():
    kwargs = {
        "flux": 7.5,
        "r_half_major_arcsec": 1.1,
        "q": 0.8,
        "pa_deg": 10.0,
        "shape": (40, 48),
        "center_pix": (20.3, 21.1),
    }
    for name, n in (("exponential", 1.0), ("devaucouleurs", 4.0), ("gaussian", 0.5)):
        fixed = render_profile(name, **kwargs)
        free = render_profile("sersic", sersic_n=n, **kwargs)
        assert torch.equal(fixed, free)
    img = render_profile("exponential", **kwargs)
    assert abs(img.sum().item() / 7.5 - 1) < 1e-4
    assert img.reshape(-1).argmax().item() == 21 * 48 + 20
    negative = render_profile("exponential", **{**kwargs, "flux": -7.5})
    assert torch.equal(negative, -img)


def test_render_profile_psf_conserves_flux_and_broadens():
    sharp = render_profile("exponential", r_half_major_arcsec=0.8, q=0.6, shape=(48, 48))
    blurred = render_profile(
        "exponential", r_half_major_arcsec=0.8, q=0.6, shape=(48, 48), psf_fwhm_arcsec=1.4
    )
    assert abs(blurred.sum().item() - sharp.sum().item()) < 3e-5  # quadrature error level
    assert blurred.max() < 0.5 * sharp.max()


def test_render_profile_thin_profiles_are_drawn_finer():
    """q < 0.3 with a minor-axis half-light radius under 2 pixels is drawn on a finer grid and
    summed: at q = 0.05 and a 0.126-pixel minor axis the plain pixel rule gave totals 5% off
    and negative pixels.  Gaussian along x (PA 0) against its exact pixel integrals."""
    r_half, q, scale = 1.0, 0.05, 0.396
    img = render_profile(
        "gaussian", r_half_major_arcsec=r_half, q=q, pa_deg=0.0, shape=(32, 40)
    ).double()
    sigma_pix = r_half / scale / math.sqrt(2 * math.log(2))
    exact = gaussian_pixels(sigma_pix, q * sigma_pix, 19.5, 15.5, (32, 40))
    assert np.abs(img.numpy() - exact).max() < 1e-3 * exact.max()
    assert abs(img.sum().item() - 1) < 1e-4
    for name in ("exponential", "gaussian"):
        tilted = render_profile(name, r_half_major_arcsec=2.0, q=0.04, pa_deg=30.0, shape=(40, 40))
        assert tilted.min() >= -1e-6 * tilted.max()
        assert abs(tilted.sum().item() - 1) < 4e-3  # the exponential's own truncation: 2e-3
    with pytest.raises(ValueError, match="drawn 40 times finer"):
        render_profile("exponential", r_half_major_arcsec=2.0, q=0.01, shape=(256, 256))


def test_render_profile_accepts_numbers_and_keeps_graph():
    img = render_profile(
        "sersic",
        flux=np.float32(2.0),
        r_half_major_arcsec=np.float64(1.0),
        sersic_n=torch.tensor(2.0),
        q=0.9,
        pa_deg=np.int64(15),
        shape=(16, 16),
    )
    assert img.dtype == torch.float32
    r_half = torch.tensor(1.0, dtype=F64, requires_grad=True)
    n = torch.tensor(2.5, dtype=F64, requires_grad=True)
    img64 = render_profile(
        "sersic", r_half_major_arcsec=r_half, sersic_n=n, shape=(16, 16), psf_fwhm_arcsec=1.0
    )
    assert img64.dtype == F64
    (img64 * torch.arange(256, dtype=F64).reshape(16, 16)).sum().backward()
    assert torch.isfinite(r_half.grad) and r_half.grad != 0
    assert torch.isfinite(n.grad) and n.grad != 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "sersik"}, "unknown profile 'sersik'; known profiles: 'sersic'"),
        (
            {"profile": "exponential", "sersic_n": 2.0},
            "fixed Sersic index n = 1.0, got sersic_n = 2",
        ),
        ({"profile": "devaucouleurs", "sersic_n": 1.0}, "fixed Sersic index"),
        ({"sersic_n": 7.0}, "sersic_n must lie in"),
        ({"q": 0.0}, "q must lie in"),
        ({"q": 1.2}, "q must lie in"),
        ({"r_half_major_arcsec": 0.0}, "r_half_major_arcsec must be > 0"),
        ({"flux": float("nan")}, "flux must be finite"),
        ({"psf_fwhm_arcsec": -1.0}, "psf_fwhm_arcsec must be > 0"),
        ({"shape": (64,)}, "shape"),
        ({"shape": (0, 64)}, "shape"),
        ({"shape": (32.0, 32)}, "shape"),
        ({"pixel_scale_arcsec": 0.0}, "pixel_scale_arcsec"),
        ({"center_pix": (1.0,)}, "center_pix"),
        ({"pa_deg": "north"}, "pa_deg"),
        ({"q": np.ones(2)}, "q must be a scalar"),
        ({"psf_fwhm_arcsec": 1.0, "psf": GaussianPSF(1.0)}, "at most one"),
        ({"psf": GaussianPSF(torch.ones(2, 1))}, "batch shape"),
        ({"psf": 1.2}, "PSF model"),
    ],
)
def test_render_profile_errors(kwargs, message):
    kwargs = {"profile": "sersic", **kwargs}
    with pytest.raises(ValueError, match=message):
        render_profile(**kwargs)


def test_render_profile_with_pixel_psf_equals_gaussian_kernel_image():
    """A PixelPSF holding the Gaussian pixel response K = PSF (x) box acts like the Gaussian
    on pixel moments (render_profile applies a PixelPSF without sub-pixels)."""
    fwhm, scale = 1.4, 0.396
    psf = GaussianPSF(torch.tensor(fwhm, dtype=F64))
    k = psf.response_1d(torch.arange(-15, 16, dtype=F64), scale)[0, 0, 0]
    image = PixelPSF((k[:, None] * k[None, :])[None], pixel_scale_arcsec=scale)
    kwargs = {
        "r_half_major_arcsec": torch.tensor(0.6, dtype=F64),
        "sersic_n": 2.0,
        "shape": (24, 24),
        "center_pix": (11.3, 12.2),
    }
    a = render_profile("sersic", psf=image, **kwargs)
    b = render_profile(
        "sersic", psf=psf, settings=DEFAULT_SETTINGS.with_(psf_supersample=1), **kwargs
    )
    assert (a - b).abs().max() < 2e-4 * b.max()


@pytest.mark.parametrize(("r_half", "n"), [(12.0, 1.0), (0.4, 4.0), (0.6, 0.5)])
def test_central_moments_are_exact_and_vanish_where_resolved(r_half, n):
    """The central box (with its ring) holds the exact pixel totals and moments; less those of
    smooth light with the same totals, the moments are < 1e-3 of the box's light for a resolved
    profile (what is left is the exponential's kink at r = 0) and of order F / 12 (the second
    moment of a pixel's uniform light) for an unresolved one."""
    from galae.render.raster import sersic_central_moments, smooth_moment_deviations

    args = (t64(r_half), t64(n), t64(0.7), t64(0.4), t64(20.2), t64(19.7))
    shape = (40, 40)
    moments, row0, col0 = sersic_central_moments(*args, shape, UNTABULATED)
    k = 2 * UNTABULATED.moment_radius_pix + 3
    assert moments.shape == (1, 6, k, k)
    assert (int(row0), int(col0)) == (20 - k // 2, 20 - k // 2)
    box = (slice(int(row0), int(row0) + k), slice(int(col0), int(col0) + k))
    exact = sersic_pixel_moments(*args, shape, UNTABULATED.with_(moment_radius_pix=5))
    torch.testing.assert_close(moments[0], exact.stack()[0][:, box[0], box[1]])
    central = smooth_moment_deviations(moments)
    assert central.shape == (1, 6, k - 2, k - 2)
    inner = moments[0, 0, 1:-1, 1:-1]
    torch.testing.assert_close(central[0, 0], inner)
    torch.testing.assert_close(central[0, 3], moments[0, 3, 1:-1, 1:-1] - inner / 12.0)
    dev = central[0, 1:].abs().max() / inner.sum()
    if r_half > 5:
        assert dev < 1e-3
    else:
        assert dev > 1e-2


def test_exponential_profiles_match_the_series():
    """Exponential profiles (n = 1) take torch's integer-index P(k, x) in the exact central
    pixels: equal to scipy's incomplete gamma, and to the general series path (n a hair above
    1); in float32 too, for a disk whose central pixels are a small part of its light (where
    the closed form 1 - e^-x (1 + x) would cancel)."""
    from galae.render.raster import _exponential_gammainc_p

    x = torch.logspace(-4, 1.5, 200, dtype=F64)
    for k, value in zip((2, 3, 4), _exponential_gammainc_p(x, 3), strict=True):
        np.testing.assert_allclose(value.numpy(), scipy.special.gammainc(k, x.numpy()), rtol=1e-12)
    args = (t64(0.8, 3.0), t64(1.0, 1.0), t64(0.5, 0.9), t64(0.3, 1.2), t64(10.3, 9.6))
    near = (args[0], t64(1.0 + 1e-9, 1.0 + 1e-9), *args[2:])
    for fn in (sersic_image, lambda *a: sersic_pixel_moments(*a).stack()):
        exact = fn(*args, t64(10.1, 9.9), (20, 20), UNTABULATED)
        series = fn(*near, t64(10.1, 9.9), (20, 20), UNTABULATED)
        torch.testing.assert_close(exact, series, rtol=1e-6, atol=1e-12)
    big = (t64(25.0), t64(1.0), t64(0.6), t64(0.2), t64(20.3), t64(19.6), (40, 40))
    f64 = sersic_image(*big)
    f32 = sersic_image(*(a.float() if isinstance(a, torch.Tensor) else a for a in big))
    assert float((f32.double() - f64).abs().max() / f64.max()) < 1e-5


def test_tabulated_incomplete_gamma_is_as_accurate_as_float32():
    """The default's per-galaxy 64-node table of ln P(a, x) (a = 2n, 3n, 4n) against the
    incomplete gamma function at every edge node: pixels' light within 5e-6 of the peak and
    moments within 1e-5 in float64 (measured 1.5e-6 and 2.1e-6), within 2e-5 and 6e-5 in
    float32 (6.4e-6 and 2.9e-5; the untabulated float32 render itself is 2.8e-6 and 2.4e-5
    off), over n 0.5-6.5, r_half 0.3-8 px, q 0.2-1; and P itself against scipy."""
    from galae.physics.profiles import gammainc_term_counts
    from galae.render.raster import _tabulated_gammainc_p

    cases = list(
        itertools.product(
            [0.5, 0.8, 1.5, 2.0, 4.0, 6.5], [0.3, 0.5, 1.0, 3.0, 8.0], [0.2, 0.5, 1.0]
        )
    )
    rng = np.random.default_rng(0)
    pa, cx, cy = (rng.uniform(lo, hi, len(cases)) for lo, hi in ((0, 3.14), (15, 16), (15, 16)))
    cols = [[c[i] for c in cases] for i in range(3)]
    fields = (cols[1], cols[0], cols[2], pa, cx, cy)
    ref = sersic_pixel_moments(*(t64(*f) for f in fields), (32, 32), UNTABULATED).stack()
    peak = ref[:, 0].amax((-1, -2))
    for dtype, tol_light, tol_moments in ((F64, 5e-6, 1e-5), (torch.float32, 2e-5, 6e-5)):
        args = (torch.tensor(np.asarray(f, dtype=np.float64), dtype=dtype) for f in fields)
        got = sersic_pixel_moments(*args, (32, 32), DEFAULT_SETTINGS).stack().double()
        light = ((got[:, 0] - ref[:, 0]).abs().amax((-1, -2)) / peak).max()
        moments = ((got[:, 1:] - ref[:, 1:]).abs().amax((-1, -2, -3)) / peak).max()
        assert light < tol_light and moments < tol_moments, (dtype, light, moments)
    # P itself over the range of x = b rho^(1/n) a central box spans: rho from the edge
    # lines' floor 1e-4 r_e to 12 r_e
    n = t64(0.5, 1.5, 4.0, 6.5)
    a = n[:, None] * t64(2.0, 3.0, 4.0)
    frac = torch.linspace(0.0, 1.0, 500, dtype=F64)
    log_rho = math.log(1e-4) + frac * (math.log(12.0) - math.log(1e-4))
    log_x = torch.log(sersic_b(n))[:, None] + log_rho / n[:, None]
    p = _tabulated_gammainc_p(a, log_x, 64, gammainc_term_counts(1.0, 26.0, F64))
    expect = scipy.special.gammainc(a.numpy()[:, :, None], np.exp(log_x.numpy())[:, None, :])
    assert np.abs(p.numpy() - expect).max() < 1e-5


def test_tabulated_incomplete_gamma_gradients():
    """The table is differentiable in n, r_half and the geometry (gradcheck, float64)."""
    settings = DEFAULT_SETTINGS.with_(cusp_radius_pix=1, moment_radius_pix=1, cusp_table_nodes=16)

    def f(r, n, q):
        return sersic_pixel_moments(r, n, q, t64(0.3), t64(4.2), t64(3.9), (8, 8), settings).stack()

    inputs = (t64(1.3).requires_grad_(), t64(2.5).requires_grad_(), t64(0.6).requires_grad_())
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize(
    ("profile", "n"), [("exponential", 1.0), ("devaucouleurs", 4.0), ("gaussian", 0.5)]
)
def test_fixed_index_profile_accepts_its_own_sersic_n(profile, n):
    """Passing a fixed-index profile its own n changes nothing (the contract leaves it out)."""
    kw = {"r_half_major_arcsec": 1.5, "q": 0.7, "pa_deg": 20.0, "shape": (24, 24)}
    without = render_profile(profile, **kw)
    with_n = render_profile(profile, sersic_n=np.float64(n), **kw)
    assert torch.equal(without, with_n)
    assert torch.allclose(with_n, render_profile("sersic", sersic_n=n, **kw))


def test_render_profile_takes_astropy_quantities():
    """Quantities convert to the unit the argument's name carries; a wrong one is refused."""
    import astropy.units as u

    kw = {"sersic_n": 2.0, "q": 0.6, "shape": (32, 32)}
    plain = render_profile(
        "sersic", r_half_major_arcsec=2.0, pa_deg=30.0, psf_fwhm_arcsec=1.2, **kw
    )
    quant = render_profile(
        "sersic",
        r_half_major_arcsec=(2.0 / 60.0) * u.arcmin,
        pa_deg=(30.0 * u.deg).to(u.rad),
        psf_fwhm_arcsec=1.2 * u.arcsec,
        **kw,
    )
    assert torch.allclose(plain, quant, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="r_half_major_arcsec: got a Quantity in kpc"):
        render_profile("sersic", r_half_major_arcsec=2.0 * u.kpc, **kw)
    with pytest.raises(ValueError, match="q: got a Quantity in arcsec; pass a plain number"):
        render_profile("sersic", r_half_major_arcsec=2.0, q=0.5 * u.arcsec, sersic_n=1.0)
