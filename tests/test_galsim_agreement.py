"""Agreement with GalSim (Rowe et al. 2015, A&C 10, 121), an independent implementation.

Conventions mapped onto GalSim:

* ``galsim.Sersic(n, half_light_radius=h)`` is circular; ``.shear(q=q, beta=pa)`` keeps
  the area, so the major-axis half-light radius becomes h / sqrt(q): we pass
  h = r_half_major sqrt(q).  beta is counter-clockwise from +x, like our pa.
* GalSim images put x along columns and y along rows, as we do; ``drawImage(nx, ny,
  scale=1)`` centres the profile on the true centre ((nx - 1)/2, (ny - 1)/2) in our
  0-based pixel-centre coordinates, so ``offset = centre - true centre``.
* Sersic profiles are untruncated by default (trunc=0).
* Without a PSF we draw with ``method='real_space'`` (the pixel response integrated in real
  space, adaptively): ``method='auto'`` (FFT) needs FFTs of 10^4-10^5 per side for n >= 4
  at r_half ~ 1 px (tens of GB; one such case, 24 s, is in the slow suite).  With a PSF,
  ``method='auto'`` is fast; folding_threshold 1e-4 keeps GalSim's wrapped wings below our
  tolerances.

Tolerances: the issue asks for max |galae - galsim| < 1% of the peak pixel and total flux
within 0.5%.  Measured (float64, 72 profiles without PSF): <= 1.1e-4 of the peak and 1.5e-5
in flux for n >= 0.5; 1.2e-3 of the peak for n = 0.3 on a sub-pixel minor axis.  With a
Gaussian PSF of FWHM 2-3.5 px through ``render_profile`` (intra-pixel moments on 2 x 2
sub-pixels): <= 1.2e-3 of the peak; without sub-pixels (psf_supersample = 1) the
third-order residual of the intra-pixel expansion reaches 2% at FWHM 2 px, 1.2% at 2.5 px,
0.25% at 3.5 px.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from galae.render.profile_api import render_profile
from galae.render.psf import MoffatPSF
from galae.render.raster import sersic_image
from galae.settings import DEFAULT_SETTINGS

galsim = pytest.importorskip("galsim")

F64 = torch.float64
PIXEL_SCALE = 0.396
# realspace_relerr 1e-6: GalSim's default (1e-4) is itself off by 1e-3 of the peak for n ~ 6
GSPARAMS = galsim.GSParams(
    folding_threshold=1e-4, maximum_fft_size=16384, realspace_relerr=1e-6, realspace_abserr=1e-9
)


def galsim_sersic(n, r_half, q, pa, cx, cy, shape, psf=None, method="real_space"):
    """GalSim image (pixel units, scale 1) of a unit-flux Sersic profile."""
    gal = galsim.Sersic(n, half_light_radius=r_half * math.sqrt(q), gsparams=GSPARAMS)
    gal = gal.shear(q=q, beta=pa * galsim.radians)
    if psf is not None:
        gal = galsim.Convolve(gal, psf, gsparams=GSPARAMS)
    h, w = shape
    offset = (cx - (w - 1) / 2, cy - (h - 1) / 2)
    return gal.drawImage(nx=w, ny=h, scale=1.0, offset=offset, method=method).array


def random_cases(seed: int, count: int, fixed_n=()):
    """(n, r_half, q, pa, cx, cy): n from fixed_n then uniform in [0.5, 6]; r_half
    log-uniform in [0.5, 8] px; q in [0.3, 1]; pa in [0, pi); sub-pixel centre."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        n = fixed_n[i] if i < len(fixed_n) else rng.uniform(0.5, 6.0)
        r_half = 10 ** rng.uniform(math.log10(0.5), math.log10(8.0))
        cases.append(
            (
                float(n),
                r_half,
                rng.uniform(0.3, 1.0),
                rng.uniform(0, math.pi),
                15.5 + rng.uniform(-0.5, 0.5),
                15.5 + rng.uniform(-0.5, 0.5),
            )
        )
    return cases


def _ids(cases):
    return [f"n{c[0]:.2f}-r{c[1]:.2f}-q{c[2]:.2f}" for c in cases]


def compare_no_psf(case, shape=(32, 32)):
    n, r_half, q, pa, cx, cy = case
    ref = galsim_sersic(n, r_half, q, pa, cx, cy, shape)
    params = (torch.tensor([v], dtype=F64) for v in (r_half, n, q, pa, cx, cy))
    got = sersic_image(*params, shape)[0].numpy()
    return np.abs(got - ref).max() / ref.max(), abs(got.sum() / ref.sum() - 1)


NO_PSF = random_cases(11, 12, fixed_n=(0.5, 1.0, 2.0, 4.0, 6.0, 0.5, 1.0, 4.0, 6.0))
NO_PSF[5] = (0.5, 0.5, 0.3, 0.4, 15.2, 15.9)  # narrowest Gaussian ridge
NO_PSF[8] = (6.0, 0.5, 0.45, 2.1, 16.0, 15.5)  # strongest cusp, centre on a pixel edge
# the flat-topped end of the range (settings.sersic_n_min = 0.3, GalSim's own lower limit)
NO_PSF += [(0.3, 0.5, 0.35, 1.1, 15.3, 15.6), (0.3, 3.0, 0.7, 2.5, 15.5, 15.0)]
NO_PSF += [(0.4, 1.5, 0.3, 0.2, 15.9, 15.4)]


@pytest.mark.parametrize("case", NO_PSF, ids=_ids(NO_PSF))
def test_sersic_matches_galsim_without_psf(case):
    max_err, flux_err = compare_no_psf(case)
    # issue: < 1e-2.  Measured worst 1.1e-4 for n >= 0.5; 1.2e-3 for n = 0.3 at r_half 0.5 px,
    # q 0.35 (a minor-axis half-light radius of 0.18 px, the profile's steep edge falling
    # inside one pixel)
    assert max_err < (5e-4 if case[0] >= 0.5 else 2.5e-3)
    assert flux_err < 1e-4  # issue: < 5e-3 (measured worst 1.5e-5)


PSF_CASES = [
    # (n, r_half_pix, q, pa_deg, cx, cy, fwhm_pix)
    (0.5, 0.5, 0.3, 23.0, 15.3, 15.8, 2.0),
    (1.0, 2.0, 0.3, 70.0, 15.45, 15.1, 3.5),
    (2.0, 1.2, 0.6, 120.0, 16.0, 15.0, 2.5),
    (4.0, 1.0, 0.6, 40.0, 15.3, 15.8, 3.5),
    (4.0, 6.0, 0.4, 160.0, 15.6, 15.4, 5.0),
    (6.0, 0.5, 0.4, 10.0, 15.7, 15.2, 2.5),
    (0.3, 0.8, 0.4, 65.0, 15.2, 15.5, 2.0),  # settings.sersic_n_min
]
PSF_IDS = [f"n{c[0]}-r{c[1]}-fwhm{c[6]}" for c in PSF_CASES]


def render_with_psf(case, psf, settings=DEFAULT_SETTINGS):
    """render_profile of a PSF case (pixel units converted to arcsec), float64."""
    n, r_half, q, pa_deg, cx, cy, _ = case
    return render_profile(
        "sersic",
        flux=torch.tensor(1.0, dtype=F64),
        r_half_major_arcsec=r_half * PIXEL_SCALE,
        sersic_n=n,
        q=q,
        pa_deg=pa_deg,
        shape=(32, 32),
        pixel_scale_arcsec=PIXEL_SCALE,
        center_pix=(cx, cy),
        settings=settings,
        **psf,
    ).numpy()


@pytest.mark.parametrize("case", PSF_CASES, ids=PSF_IDS)
def test_render_profile_with_gaussian_psf_matches_galsim(case):
    n, r_half, q, pa_deg, cx, cy, fwhm = case
    ref = galsim_sersic(
        n,
        r_half,
        q,
        math.radians(pa_deg),
        cx,
        cy,
        (32, 32),
        psf=galsim.Gaussian(fwhm=fwhm),
        method="auto",
    )
    got = render_with_psf(case, {"psf_fwhm_arcsec": fwhm * PIXEL_SCALE})
    assert np.abs(got - ref).max() < 2e-3 * ref.max()  # issue: 1e-2
    assert abs(got.sum() / ref.sum() - 1) < 1e-4  # issue: 5e-3


@pytest.mark.parametrize("case", PSF_CASES[1::2], ids=PSF_IDS[1::2])
def test_render_profile_with_moffat_psf_matches_galsim(case):
    n, r_half, q, pa_deg, cx, cy, fwhm = case
    ref = galsim_sersic(
        n,
        r_half,
        q,
        math.radians(pa_deg),
        cx,
        cy,
        (32, 32),
        psf=galsim.Moffat(beta=3.5, fwhm=fwhm, gsparams=GSPARAMS),
        method="auto",
    )
    psf = MoffatPSF(torch.tensor(fwhm * PIXEL_SCALE, dtype=F64), 3.5)
    got = render_with_psf(case, {"psf": psf})
    assert np.abs(got - ref).max() < 2e-3 * ref.max()
    assert abs(got.sum() / ref.sum() - 1) < 5e-4  # Moffat kernel cut at 1e-4 of its light


@pytest.mark.parametrize("case", PSF_CASES[1::2], ids=PSF_IDS[1::2])
def test_pixel_moments_without_sub_pixels_match_galsim(case):
    """The plain pixel-moment convolution (psf_supersample = 1, the cheap option for batched
    rendering): third-order residual ~FWHM^-3, < 0.5% of the peak at FWHM >= 3.5 px."""
    n, r_half, q, pa_deg, cx, cy, fwhm = case
    ref = galsim_sersic(
        n,
        r_half,
        q,
        math.radians(pa_deg),
        cx,
        cy,
        (32, 32),
        psf=galsim.Gaussian(fwhm=fwhm),
        method="auto",
    )
    settings = DEFAULT_SETTINGS.with_(psf_supersample=1)
    got = render_with_psf(case, {"psf_fwhm_arcsec": fwhm * PIXEL_SCALE}, settings)
    tol = 1e-2 if fwhm < 3.0 else 5e-3
    assert np.abs(got - ref).max() < tol * ref.max()


def test_exponential_and_devaucouleurs_names_match_galsim():
    shape = (32, 32)
    for name, n in (("exponential", 1.0), ("devaucouleurs", 4.0)):
        got = (
            render_profile(
                name,
                flux=2.5,
                r_half_major_arcsec=1.0,
                q=0.7,
                pa_deg=-20.0,
                shape=shape,
                pixel_scale_arcsec=PIXEL_SCALE,
            )
            .double()
            .numpy()
        )
        ref = 2.5 * galsim_sersic(n, 1.0 / PIXEL_SCALE, 0.7, math.radians(-20.0), 15.5, 15.5, shape)
        assert np.abs(got - ref).max() < 1e-4 * ref.max()  # float32 output


@pytest.mark.slow
def test_sersic_matches_galsim_sweep():
    """60 random profiles without PSF and 30 with Gaussian PSFs of FWHM 2-5 px."""
    worst = 0.0
    for case in random_cases(12, 60):
        max_err, flux_err = compare_no_psf(case)
        worst = max(worst, max_err)
        assert flux_err < 1e-4
    assert worst < 5e-4
    rng = np.random.default_rng(13)
    for n, r_half, q, pa, cx, cy in random_cases(14, 30):
        fwhm = rng.uniform(2.0, 5.0)
        ref = galsim_sersic(
            n, r_half, q, pa, cx, cy, (32, 32), psf=galsim.Gaussian(fwhm=fwhm), method="auto"
        )
        case = (n, r_half, q, math.degrees(pa), cx, cy, fwhm)
        got = render_with_psf(case, {"psf_fwhm_arcsec": fwhm * PIXEL_SCALE})
        assert np.abs(got - ref).max() < 2e-3 * ref.max()
        assert abs(got.sum() / ref.sum() - 1) < 1e-4


@pytest.mark.slow
def test_sersic_matches_galsim_fft_draw():
    """One high-index compact case drawn with GalSim's default method='auto' (FFT, ~20 s)."""
    n, r_half, q, pa, cx, cy = (4.0, 1.0, 0.6, 0.7, 15.3, 15.8)
    ref = galsim_sersic(n, r_half, q, pa, cx, cy, (32, 32), method="auto")
    params = (torch.tensor([v], dtype=F64) for v in (r_half, n, q, pa, cx, cy))
    got = sersic_image(*params, (32, 32))[0].numpy()
    assert np.abs(got - ref).max() < 1e-4 * ref.max()


def _galsim_galaxy(p, light, maps, geom, fwhm_arcsec, shape):
    """GalSim drawing of renderer galaxies whose components each have one spectrum: a Sersic
    bulge and two exponential disks per band, with galae's total band fluxes and geometry."""
    h, w = shape
    out = np.zeros(light.bulge_nmgy.shape)

    def total(light_map, mass_map, mass_total):  # the stamp's light over its share of the mass
        inside = mass_map.sum((-1, -2))
        return (light_map.sum((-1, -2)) * (mass_total / inside).unsqueeze(-1)).numpy()

    fb = total(light.bulge_nmgy, maps.mstar_bulge_msun, 10.0 ** p["log10_mstar_bulge_msun"])
    fd = total(light.disk_nmgy, maps.mstar_disk_msun, 10.0 ** p["log10_mstar_disk_msun"])
    fy = total(light.young_nmgy, maps.sfr_msun_per_yr, 10.0 ** p["log10_sfr_msun_per_yr"])
    for i in range(out.shape[0]):
        qb, qd = float(p["q_bulge"][i]), float(geom.q_disk[i])
        beta = float(geom.pa_rad[i]) * galsim.radians
        off = galsim.PositionD(
            float(geom.center_x_pix[i]) - (w - 1) / 2, float(geom.center_y_pix[i]) - (h - 1) / 2
        )
        for c in range(out.shape[1]):
            bulge = galsim.Sersic(
                float(p["sersic_n_bulge"][i]),
                half_light_radius=float(geom.r_half_bulge_pix[i]) * PIXEL_SCALE * math.sqrt(qb),
                flux=float(fb[i, c]),
                gsparams=GSPARAMS,
            ).shear(q=qb, beta=beta)
            disks = galsim.Exponential(
                half_light_radius=float(geom.r_half_disk_pix[i]) * PIXEL_SCALE * math.sqrt(qd),
                flux=float(fd[i, c]),
                gsparams=GSPARAMS,
            ) + galsim.Exponential(
                half_light_radius=float(geom.r_half_sfr_pix[i]) * PIXEL_SCALE * math.sqrt(qd),
                flux=float(fy[i, c]),
                gsparams=GSPARAMS,
            )
            gal = galsim.Convolve(
                bulge + disks.shear(q=qd, beta=beta),
                galsim.Gaussian(fwhm=float(fwhm_arcsec[i, c]), gsparams=GSPARAMS),
            )
            out[i, c] = gal.drawImage(nx=w, ny=h, scale=PIXEL_SCALE, offset=off).array
    return out


def test_full_renderer_matches_galsim_for_population_galaxies():
    """The whole renderer against GalSim on mock-population galaxies made dust-free and without
    population gradients, so that GalSim can draw exactly the same thing: every preset but
    "totals" within 1% of the peak pixel and 0.5% of the flux (the issue's tolerances; measured
    < 0.5% and < 0.4% on the render benchmark's galaxies).  The set includes a compact disk
    (r_half 0.7 px) and a galaxy larger than the stamp, on which pixel totals without a border
    (the "totals" preset) are off by > 1%: the test can fail."""
    from galae.data.conditions import sample_sdss_conditions
    from galae.physics.population import sample_population
    from galae.render.observation import Observation
    from galae.render.renderer import GalaxyRenderer
    from galae.settings import RENDER_PRESETS

    pick = [16, 17, 22, 3]  # of the render benchmark's galaxies: big, compact bulge, compact disk
    p = {
        k: v[pick].double()
        for k, v in sample_population(24, torch.Generator().manual_seed(0)).items()
    }
    for k in ("av_face_on_mag", "zstar_grad_dex_per_kpc", "oh12_grad_dex_per_kpc"):
        p[k] = torch.zeros(len(pick), dtype=F64)
    cond = sample_sdss_conditions(24, np.random.default_rng(0))
    fwhm = cond.psf_fwhm_arcsec[pick]
    shape = (48, 48)
    obs = Observation.create(cond.redshift[pick], fwhm, shape=shape, dtype=F64)
    ren = GalaxyRenderer().double()
    with torch.no_grad():
        light, maps, geom = ren.light(p, obs)
        ref = _galsim_galaxy(p, light, maps, geom, fwhm, shape)
        images = {
            name: GalaxyRenderer(settings=settings).double()(p, obs).images.numpy()
            for name, settings in RENDER_PRESETS.items()
        }
    peak = ref.max(axis=(-1, -2), keepdims=True)
    for name, ours in images.items():
        err = float((np.abs(ours - ref) / peak).max())
        flux = float(np.abs(ours.sum((-1, -2)) / ref.sum((-1, -2)) - 1.0).max())
        if name == "totals":
            assert err > 0.01
        else:
            assert err < 0.01, name
            assert flux < 0.005, name
