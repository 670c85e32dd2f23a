"""The full renderer: conservation laws, identities, gradients, errors."""

import math
from dataclasses import replace

import pytest
import torch

from galae.latent import REGISTRY
from galae.physics import cosmology, sfh
from galae.physics.maps import MAP_NAMES
from galae.physics.sps import SPSTable
from galae.render.geometry import EXP_RHALF_OVER_RSCALE
from galae.render.observation import Observation
from galae.render.renderer import GalaxyRenderer


@pytest.fixture(scope="module")
def renderer64():
    return GalaxyRenderer(SPSTable.load("sdss", dtype=torch.float64)).double()


def galaxy(b=1, **overrides):
    p = REGISTRY.midpoint(b, torch.float64)
    base = dict(
        dx_arcsec=0.0,
        dy_arcsec=0.0,
        pa_deg=30.0,
        inclination_deg=40.0,
        log10_mstar_bulge_msun=10.0,
        r_eff_bulge_kpc=1.0,
        sersic_n_bulge=3.0,
        q_bulge=0.8,
        age_bulge_gyr=8.0,
        log10_zstar_bulge_zsun=0.1,
        log10_mstar_disk_msun=10.3,
        r_d_kpc=2.5,
        log10_sfr_msun_per_yr=0.3,
        r_sfr_kpc=3.0,
        age_disk_gyr=4.0,
        log10_zstar_disk_zsun=0.0,
        zstar_grad_dex_per_kpc=-0.03,
        oh12_gas=8.8,
        oh12_grad_dex_per_kpc=-0.04,
        av_face_on_mag=0.6,
    )
    base.update(overrides)
    for k, v in base.items():
        p[k] = torch.full((b,), float(v), dtype=torch.float64)
    return p


def obs(b=1, z=0.05, shape=(64, 64), fwhm=1.4, scale=0.396):
    return Observation.create(
        torch.full((b,), z),
        torch.full((b, 5), fwhm),
        pixel_scale_arcsec=scale,
        shape=shape,
        dtype=torch.float64,
    )


def test_maps_integrate_to_latent_masses_and_sfr(renderer64):
    # z=0.1 -> 1.84 kpc/arcsec; a 128x128 stamp at 0.396"/px spans ~93 kpc
    p = galaxy(log10_mstar_bulge_msun=10.0, log10_mstar_disk_msun=10.5, r_d_kpc=2.0, r_sfr_kpc=2.0)
    r = renderer64(p, obs(z=0.1, shape=(128, 128)))
    m = r.maps
    assert m.mstar_bulge_msun.sum().item() == pytest.approx(1e10, rel=3e-3)
    assert m.mstar_disk_msun.sum().item() == pytest.approx(10**10.5, rel=3e-3)
    assert m.sfr_msun_per_yr.sum().item() == pytest.approx(10**0.3, rel=3e-3)
    # surface densities times pixel area give back the masses
    area = (cosmology.kpc_per_arcsec(torch.tensor([0.1], dtype=torch.float64)) * 0.396) ** 2
    total = (m.sigma_mstar_msun_per_kpc2 * area.view(-1, 1, 1)).sum().item()
    want = 1e10 + 10**10.5 + 10**0.3 * 1e8
    assert total == pytest.approx(want, rel=3e-3)


def test_psf_conserves_flux(renderer64):
    p = galaxy(r_d_kpc=1.0, r_sfr_kpc=1.0, r_eff_bulge_kpc=0.5)  # all light well inside
    r = renderer64(p, obs(z=0.15, shape=(64, 64)))
    before = r.light.total_nmgy.sum((-1, -2))
    after = r.images.sum((-1, -2))
    torch.testing.assert_close(after, before, rtol=1e-6, atol=0)


def test_named_maps_contract(renderer64):
    r = renderer64(galaxy(b=2), obs(b=2))
    named = r.maps.named()
    assert tuple(named) == MAP_NAMES
    for v in named.values():
        assert v.shape == (2, 64, 64)
        assert torch.isfinite(v).all()


def test_edge_on_is_dimmer_with_dust_and_equal_without(renderer64):
    # compact (no light lost off the stamp) and without metallicity gradients (the population is
    # evaluated at pixel centres, an approximation when a pixel spans a large range of radius)
    small = dict(
        r_d_kpc=1.0,
        r_sfr_kpc=1.0,
        r_eff_bulge_kpc=0.5,
        zstar_grad_dex_per_kpc=0.0,
        oh12_grad_dex_per_kpc=0.0,
    )
    o = obs(z=0.15)

    def total(**kw):
        return renderer64(galaxy(**small, **kw), o).light.total_nmgy.sum((-1, -2))

    assert (total(inclination_deg=85.0) < 0.9 * total(inclination_deg=0.0)).all()
    torch.testing.assert_close(
        total(inclination_deg=85.0, av_face_on_mag=0.0),
        total(inclination_deg=0.0, av_face_on_mag=0.0),
        rtol=1e-4,
        atol=0,
    )


def test_derived_half_light_radius_of_a_pure_disk(renderer64):
    # Bulge negligible, no dust, flat metallicity, no SF: r_half = 1.678 r_d (circular, face-on)
    p = galaxy(
        log10_mstar_bulge_msun=7.0,
        inclination_deg=0.0,
        av_face_on_mag=0.0,
        zstar_grad_dex_per_kpc=0.0,
        log10_sfr_msun_per_yr=-3.0,
        r_d_kpc=3.0,
    )
    o = obs(z=0.05)
    d = renderer64.derived(p, o)
    kpc_per_arcsec = cosmology.kpc_per_arcsec(torch.tensor([0.05], dtype=torch.float64)).item()
    want = EXP_RHALF_OVER_RSCALE * 3.0 / kpc_per_arcsec
    assert d["r_half_arcsec_r"].item() == pytest.approx(want, rel=0.02)
    assert d["bulge_to_total_r"].item() < 0.01
    assert d["log10_mstar_msun"].item() == pytest.approx(
        torch.log10(torch.tensor(1e7 + 10**10.3 + 1e-3 * 1e8)).item(), abs=1e-6
    )


def test_derived_and_maps_returns_the_forward_maps(renderer64):
    """The maps that come with the derived observables (drawn PSF-free on the stamp) are the
    maps of the full rendering (drawn with a PSF margin, then cropped): same names, same values."""
    p = galaxy(inclination_deg=50.0, av_face_on_mag=0.4)
    o = obs(z=0.06)
    d, maps = renderer64.derived_and_maps(p, o)
    assert d.keys() == renderer64.derived(p, o).keys()
    full = renderer64(p, o).maps.named()
    for name, value in maps.named().items():
        # (the central pixels' sub-pixel integration differs by < 3e-4 dex or Gyr with the margin)
        torch.testing.assert_close(value, full[name], rtol=0.0, atol=3e-4)


def test_magnitude_matches_population_table(renderer64):
    # A pure bulge without dust: total flux = M * f_ssp(z, age, Z)
    p = galaxy(
        log10_mstar_disk_msun=7.0,
        log10_sfr_msun_per_yr=-3.0,
        av_face_on_mag=0.0,
        r_eff_bulge_kpc=0.5,
    )
    o = obs(z=0.08)
    d = renderer64.derived(p, o)
    f = renderer64.sps.ssp_flux_nmgy_per_msun(
        o.redshift, torch.log10(p["age_bulge_gyr"]), p["log10_zstar_bulge_zsun"]
    )[0]
    want_r = 22.5 - 2.5 * torch.log10(1e10 * f[2] + 0.0).item()
    assert d["mag_r"].item() == pytest.approx(want_r, abs=0.02)  # disk 1e7 adds < 0.001 mag
    assert d["bulge_to_total_r"].item() > 0.99


def test_every_latent_has_a_finite_gradient():
    ren = GalaxyRenderer()
    u = torch.randn(3, REGISTRY.dim, generator=torch.Generator().manual_seed(1)) * 0.8
    u.requires_grad_(True)
    p = REGISTRY.from_unconstrained(u)
    o = Observation.create(torch.tensor([0.05, 0.1, 0.2]), torch.full((3, 5), 1.3), shape=(32, 32))
    img = ren(p, o, validate=False).images
    (g,) = torch.autograd.grad(
        img.sum() + ren(p, o).maps.named()["log10_sigma_hi_msun_per_pc2"].sum(), u
    )
    assert torch.isfinite(g).all()
    assert (g.abs().sum(0) > 0).all(), "every latent must influence the image or maps"


def test_gradcheck_float64_small_stamp(renderer64):
    names = [
        "r_d_kpc",
        "sersic_n_bulge",
        "inclination_deg",
        "av_face_on_mag",
        "zstar_grad_dex_per_kpc",
        "dx_arcsec",
    ]
    # dx = 0.05": the centre is off the pixel-corner lattice, where the rasterizer's choice of
    # densely sampled central pixels switches (a measure-zero kink).
    base = galaxy(dx_arcsec=0.05)
    o = obs(shape=(10, 10), z=0.15)

    def f(*xs):
        p = dict(base)
        for n, x in zip(names, xs, strict=True):
            p[n] = x
        return renderer64(p, o, validate=False).images

    inputs = tuple(base[n].clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_out_of_range_parameter_named():
    ren = GalaxyRenderer()
    p = galaxy()
    p = {k: v.float() for k, v in p.items()}
    p["q_bulge"] = torch.tensor([1.5])
    with pytest.raises(ValueError, match="q_bulge"):
        ren(p, Observation.create([0.05], [1.4] * 5))


def test_band_order_mismatch_is_an_error():
    ren = GalaxyRenderer()
    p = {k: v.float() for k, v in galaxy().items()}
    o = Observation.create([0.05], [1.4] * 5, bands=("g", "r", "i", "z", "u"))
    with pytest.raises(ValueError, match="bands"):
        ren(p, o)


def test_bad_observation_inputs():
    with pytest.raises(ValueError, match="redshift"):
        Observation.create([-0.1], [1.4] * 5)
    with pytest.raises(ValueError, match="psf_fwhm_arcsec"):
        Observation.create([0.1], [1.4] * 4)
    with pytest.raises(ValueError, match="pixel_scale"):
        Observation.create([0.1], [1.4] * 5, pixel_scale_arcsec=0.0)


def test_float32_batch_matches_float64(renderer64):
    p64 = galaxy(b=2)
    o64 = obs(b=2)
    img64 = renderer64(p64, o64).images
    ren32 = GalaxyRenderer()
    o32 = Observation.create(o64.redshift.float(), torch.full((2, 5), 1.4))
    img32 = ren32({k: v.float() for k, v in p64.items()}, o32).images
    rel = (img32.double() - img64).abs().max() / img64.abs().max()
    assert rel < 1e-4


def test_derived_radius_and_flux_of_a_disk_larger_than_the_stamp(renderer64):
    # r_half = 1.678 * 10 kpc at z = 0.05 is ~17" = 43 px, beyond the 64-px stamp's half-width:
    # radius and total come from the coarse grid and stay exact.
    p = galaxy(
        log10_mstar_bulge_msun=7.0,
        inclination_deg=0.0,
        av_face_on_mag=0.0,
        zstar_grad_dex_per_kpc=0.0,
        log10_sfr_msun_per_yr=-3.0,
        r_d_kpc=10.0,
    )
    o = obs(z=0.05)
    d = renderer64.derived(p, o)
    kpc_per_arcsec = cosmology.kpc_per_arcsec(torch.tensor([0.05], dtype=torch.float64)).item()
    want = EXP_RHALF_OVER_RSCALE * 10.0 / kpc_per_arcsec
    assert d["r_half_arcsec_r"].item() == pytest.approx(want, rel=0.03)
    history = sfh.tau_history(p["age_disk_gyr"], cosmology.age_of_universe_gyr(o.redshift))
    weights = sfh.age_grid_mass_fractions(history, renderer64.sps.lg_age_gyr_grid)
    f = renderer64.sps.composite_flux_nmgy_per_msun(
        o.redshift, weights, p["log10_zstar_disk_zsun"]
    )[0]
    want_mag = 22.5 - 2.5 * torch.log10(10**10.3 * f[2]).item()
    assert d["mag_r"].item() == pytest.approx(want_mag, abs=0.01)


def test_extreme_latents_give_finite_images_maps_and_gradients():
    ren = GalaxyRenderer()
    u = torch.randn(24, REGISTRY.dim, generator=torch.Generator().manual_seed(0)) * 3
    u[:6] = 8.0  # every parameter at the top of its range
    u[6:12] = -8.0  # ... and at the bottom
    u.requires_grad_(True)
    z = torch.cat([torch.full((12,), 0.01), torch.full((12,), 0.3)])
    r = ren(
        REGISTRY.from_unconstrained(u),
        Observation.create(z, torch.full((24, 5), 1.3), shape=(32, 32)),
        validate=False,
    )
    assert torch.isfinite(r.images).all()
    assert all(torch.isfinite(v).all() for v in r.maps.named().values())
    r.images.sum().backward()
    assert torch.isfinite(u.grad).all()


@pytest.mark.parametrize(
    ("source", "tol"),
    [("population", 2e-4), ("broad", 3e-3)],
)
def test_radial_shading_matches_per_pixel_shading(source, tol):
    """The light per unit mass on 256 radial nodes (default) against evaluating it per pixel.

    Tolerances: measured 9e-5 (population) and 1.6e-3 (broad prior: clamps of the gas metallicity
    at its range ends make kinks that the nodes do not sit on) of each galaxy's peak pixel."""
    from galae.physics.population import sample_population
    from galae.settings import DEFAULT_SETTINGS

    g = torch.Generator().manual_seed(0)
    b = 48
    if source == "population":
        params = sample_population(b, g, dtype=torch.float64)
    else:
        s = torch.rand(b, REGISTRY.dim, generator=g, dtype=torch.float64).clamp(1e-4, 1 - 1e-4)
        params = REGISTRY.from_unconstrained(torch.logit(s))
    z = 0.02 + 0.3 * torch.rand(b, generator=g, dtype=torch.float64)
    o = Observation.create(z, torch.full((b, 5), 1.4), shape=(48, 48), dtype=torch.float64)
    sps = SPSTable.load("sdss", dtype=torch.float64)
    exact = GalaxyRenderer(sps, DEFAULT_SETTINGS.with_(shading_radial_nodes=0))
    radial = GalaxyRenderer(sps)
    assert radial.settings.shading_radial_nodes == 256
    a = exact.light(params, o)[0]
    r = radial.light(params, o)[0]
    peak = a.total_nmgy.amax((-1, -2), keepdim=True)
    for comp in ("bulge_nmgy", "disk_nmgy", "young_nmgy"):
        err = (getattr(a, comp) - getattr(r, comp)).abs() / peak
        assert float(err.max()) < tol, comp


def test_psf_margin_and_moments_keep_the_stamp_and_the_centre(renderer64):
    """The accurate preset draws on a bordered canvas and crops: every output covers the stamp,
    the geometry is the stamp's, and for a galaxy well inside the stamp it differs from pixel
    totals without a border only below the pixel scale (same flux to 1e-4)."""
    from galae.settings import TOTALS_SETTINGS

    p, o = galaxy(2, dx_arcsec=0.3, r_d_kpc=0.8, r_sfr_kpc=0.9, r_eff_bulge_kpc=0.5), obs(2)
    acc = renderer64(p, o)
    fast = GalaxyRenderer(renderer64.sps, TOTALS_SETTINGS)(p, o)
    assert renderer64.psf_margin_pix(o) > 0
    assert acc.images.shape == (2, 5, 64, 64)
    assert acc.light.total_nmgy.shape == (2, 5, 64, 64)
    assert acc.maps.mstar_disk_msun.shape == (2, 64, 64)
    assert acc.geometry.r_disk_kpc.shape == (2, 64, 64)
    torch.testing.assert_close(acc.geometry.center_x_pix, fast.geometry.center_x_pix)
    # the same light (up to the radial table's nodes, which span the larger canvas)
    torch.testing.assert_close(acc.light.total_nmgy, fast.light.total_nmgy, rtol=1e-3, atol=0.0)
    torch.testing.assert_close(
        acc.images.sum((-1, -2)), fast.images.sum((-1, -2)), rtol=1e-4, atol=0.0
    )


@pytest.mark.parametrize("compact", [True, False], ids=["compact", "extended"])
def test_central_moments_match_every_pixel_moments(renderer64, compact):
    """The default (moments of the central 5 x 5 pixels only) against the reference preset
    (moments of every pixel, full kernel border): < 3e-3 of the peak pixel, flux to 1e-3 (on
    dust-free versions of these galaxies both are within 2.5e-3 of GalSim)."""
    from galae.settings import REFERENCE_SETTINGS

    size = {"r_d_kpc": 0.3, "r_sfr_kpc": 0.3, "r_eff_bulge_kpc": 0.2} if compact else {}
    p, o = galaxy(2, dx_arcsec=0.13, **size), obs(2)
    ours = renderer64(p, o).images
    ref = GalaxyRenderer(renderer64.sps, REFERENCE_SETTINGS).double()(p, o).images
    peak = ref.amax((-1, -2), keepdim=True)
    assert float(((ours - ref).abs() / peak).max()) < 3e-3
    torch.testing.assert_close(ours.sum((-1, -2)), ref.sum((-1, -2)), rtol=1e-3, atol=0.0)


def test_central_moments_fall_back_for_other_psfs(renderer64):
    """Central moments need the Gaussian's separable response; a Moffat PSF takes the moments
    of every pixel, as the reference does."""
    from galae.render.psf import MoffatPSF
    from galae.settings import REFERENCE_SETTINGS

    p, o = galaxy(2), obs(2)
    moffat = replace(o, psf=MoffatPSF(o.psf.fwhm_arcsec, 3.0))
    ours = renderer64(p, moffat).images
    ref = GalaxyRenderer(renderer64.sps, REFERENCE_SETTINGS).double()(p, moffat).images
    assert bool(torch.isfinite(ours).all())
    torch.testing.assert_close(ours.sum((-1, -2)), ref.sum((-1, -2)), rtol=2e-3, atol=0.0)


def test_margin_in_fwhm_is_thinner():
    from galae.settings import DEFAULT_SETTINGS, REFERENCE_SETTINGS

    o = obs(2)
    thin = GalaxyRenderer(settings=DEFAULT_SETTINGS).psf_margin_pix(o)
    full = GalaxyRenderer(settings=REFERENCE_SETTINGS).psf_margin_pix(o)
    fwhm_pix = float(o.psf.fwhm_arcsec.max()) / o.pixel_scale_arcsec
    assert thin == math.ceil(fwhm_pix) + 1 < full
    with pytest.raises(ValueError, match="psf_margin_fwhm"):
        DEFAULT_SETTINGS.with_(psf_margin_fwhm=-1.0)


def test_images_only_path_matches_the_full_render(renderer64):
    """``GalaxyRenderer.images``: with the fast preset it tabulates the disks' light radially
    (< 2e-4 of the peak pixel from ``forward(...).images``, flux to 5e-4, finite gradients);
    with other presets it is ``forward(...).images`` itself."""
    from galae.physics.population import sample_population
    from galae.settings import FAST_SETTINGS

    p = {k: v.double() for k, v in sample_population(6, torch.Generator().manual_seed(5)).items()}
    p["dx_arcsec"] = torch.tensor([0.0, 0.3, -0.2, 0.1, 0.05, -0.4], dtype=torch.float64)
    o = obs(6, z=0.08)
    fast = GalaxyRenderer(renderer64.sps, FAST_SETTINGS).double()
    full = fast(p, o).images
    only = fast.images(p, o)
    peak = full.amax((-1, -2), keepdim=True)
    assert float(((only - full).abs() / peak).max()) < 2e-4
    torch.testing.assert_close(only.sum((-1, -2)), full.sum((-1, -2)), rtol=5e-4, atol=0.0)
    torch.testing.assert_close(renderer64.images(p, o), renderer64(p, o).images)
    u = REGISTRY.to_unconstrained(p).clone().requires_grad_(True)
    fast.images(REGISTRY.from_unconstrained(u), o, validate=False).sum().backward()
    assert bool(torch.isfinite(u.grad).all()) and bool((u.grad.abs().sum(0) > 0).any())


def test_birth_clouds_change_only_the_young_light_by_their_screens() -> None:
    """The two birth-cloud references of :data:`galae.physics.dust.BIRTH_CLOUDS` leave the
    bulge's and the older disk's light per unit mass alone; the young light differs by exactly
    the two screens' transmissions.  Rendered, "effective" (1/0.44 - 1 times the slab's
    effective A_V) lets more young light out than "face_on" at 50 degrees, where the effective
    A_V (0.56 mag) is below A_V,0 = 0.8, and less at 80 degrees, where it is above it (2.25
    against 1.5); nothing changes without dust."""
    from galae.latent import REGISTRY
    from galae.physics import dust
    from galae.physics.maps import RadialPopulation
    from galae.physics.sps import SPSTable
    from galae.render.observation import Observation
    from galae.render.shading import BulkPopulation, unit_light

    sps = SPSTable.load(dtype=torch.float64)
    params = REGISTRY.midpoint(3, dtype=torch.float64)
    params["inclination_deg"] = torch.tensor([0.0, 50.0, 80.0], dtype=torch.float64)
    params["av_face_on_mag"] = torch.tensor([0.0, 0.8, 1.5], dtype=torch.float64)
    z = torch.tensor([0.05, 0.1, 0.2], dtype=torch.float64)
    cos_i = torch.cos(torch.deg2rad(params["inclination_deg"]))
    av0 = params["av_face_on_mag"].view(3, 1).expand(3, 5)
    pop = RadialPopulation(
        torch.zeros(3, 5, dtype=torch.float64), torch.full((3, 5), 8.7, dtype=torch.float64), av0
    )
    bulk = BulkPopulation.from_params(params)
    eff = unit_light(pop, bulk, z, cos_i, sps, birth_clouds="effective")
    old = unit_light(pop, bulk, z, cos_i, sps, birth_clouds="face_on")
    assert torch.equal(eff.bulge_nmgy_per_msun, old.bulge_nmgy_per_msun)
    assert torch.equal(eff.disk_nmgy_per_msun, old.disk_nmgy_per_msun)
    k = sps.calzetti_k_band(z).view(3, -1, 1)
    av_eff = dust.BIRTH_CLOUDS["effective"](av0.unsqueeze(1), cos_i.view(3, 1, 1))
    av_old = dust.BIRTH_CLOUDS["face_on"](av0.unsqueeze(1), cos_i.view(3, 1, 1))
    want = torch.exp(-(dust.av_to_tau_band(av_eff, k) - dust.av_to_tau_band(av_old, k)))
    ratio = eff.young_nmgy_per_msun_yr / old.young_nmgy_per_msun_yr
    assert torch.allclose(ratio, want.expand_as(ratio), rtol=1e-12)

    obs = Observation.create(z, 1.3, shape=(32, 32), dtype=torch.float64)
    img_eff = GalaxyRenderer(sps, birth_clouds="effective")(params, obs).images
    img_old = GalaxyRenderer(sps, birth_clouds="face_on")(params, obs).images
    assert torch.equal(img_eff[0], img_old[0])  # no dust: the same galaxy
    u_eff, u_old = img_eff[1:, 0].sum((-1, -2)), img_old[1:, 0].sum((-1, -2))
    assert u_eff[0] > 1.005 * u_old[0] and u_eff[1] < 0.99 * u_old[1]
    with pytest.raises(ValueError, match="unknown birth_clouds"):
        GalaxyRenderer(sps, birth_clouds="none")


def test_dust_clumping_block_renders_patchy_dust_for_the_old_and_young_stars(renderer64):
    """Inside :func:`galae.physics.dust.dust_clumping` the renderer shades the disk slab through
    patchy dust: a spread of 0 is the smooth render; a spread of 1 lets more of the old stars'
    light out (Jensen) and less of the young stars' (they lie where the dust is, weight
    tau^1.4); a dust-free galaxy is unchanged; outside the block the smooth render returns."""
    from galae.physics import dust

    p = galaxy(b=2, av_face_on_mag=1.0)
    p["av_face_on_mag"] = torch.tensor([0.0, 1.0], dtype=torch.float64)
    o = obs(b=2, z=0.1)
    smooth = renderer64(p, o)
    with dust.dust_clumping(dust.DustClumping(torch.zeros(2, dtype=torch.float64))):
        same = renderer64(p, o)
    torch.testing.assert_close(same.images, smooth.images)
    with dust.dust_clumping(dust.DustClumping(torch.ones(2, dtype=torch.float64))):
        patchy = renderer64(p, o)
    torch.testing.assert_close(patchy.images[0], smooth.images[0])
    old = (smooth.light.bulge_nmgy + smooth.light.disk_nmgy).sum((-1, -2))[1]
    old_patchy = (patchy.light.bulge_nmgy + patchy.light.disk_nmgy).sum((-1, -2))[1]
    young = smooth.light.young_nmgy.sum((-1, -2))[1]
    young_patchy = patchy.light.young_nmgy.sum((-1, -2))[1]
    assert bool((old_patchy > 1.01 * old).all()) and bool((young_patchy < 0.97 * young).all())
    torch.testing.assert_close(renderer64(p, o).images, smooth.images)
