"""The metric functions of galae.evaluate on inputs whose answers are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from galae.evaluate import (
    LATENT_COMBINATIONS,
    MIN_PARTICLES_PER_PIXEL,
    aperture_log_ratio,
    interval_hits,
    map_metrics,
    r_half_by_resolution,
    robust_stats,
)

MSTAR = "log10_sigma_mstar_msun_per_kpc2"
SFR = "log10_sigma_sfr_msun_per_yr_per_kpc2"


def test_robust_stats_of_a_normal_sample() -> None:
    rng = np.random.default_rng(0)
    d = rng.normal(0.3, 0.2, 200_000)
    s = robust_stats(d, np.zeros_like(d))
    # the 1.4826 MAD is the standard deviation of a normal sample; 1% from 200,000 draws
    assert s["bias_median"] == pytest.approx(0.3, abs=3e-3)
    assert s["scatter_mad"] == pytest.approx(0.2, rel=0.01)
    assert s["scatter_std"] == pytest.approx(0.2, rel=0.01)
    assert robust_stats(np.array([np.nan]), np.array([0.0])) == {"n": 0}


def test_interval_hits_of_a_calibrated_posterior() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(size=4000)
    centre = truth + rng.normal(size=4000)  # posterior N(centre, 1) is calibrated for truth
    samples = centre + rng.normal(size=(2000, 4000))
    # 68% and 95% coverage within 3 sigma of a binomial over 4000 galaxies
    assert interval_hits(samples, truth, 0.68).mean() == pytest.approx(0.68, abs=0.025)
    assert interval_hits(samples, truth, 0.95).mean() == pytest.approx(0.95, abs=0.012)


def test_aperture_log_ratio_is_the_ratio_of_sums_inside_the_aperture() -> None:
    h = w = 21
    y, x = np.mgrid[0:h, 0:w]
    rad = np.hypot(x - 10, y - 10)[None]
    true = np.full((1, h, w), 2.0)
    pred = np.where(rad <= 4.0, 2.0 - np.log10(2.0), 9.0)  # half inside, anything outside
    lr = aperture_log_ratio(true, pred, rad, np.array([2.0]))  # 2 r_half = 4 pixels
    assert lr[0] == pytest.approx(np.log10(2.0), abs=1e-12)


def _maps(seed: int = 2) -> tuple[dict, dict, dict, dict]:
    """Truth and prediction that differ by N(0, 0.1) where >= 10 particles sample the truth and
    by N(0, 1) elsewhere (the shot-noise regime), with young particles in the centre only."""
    rng = np.random.default_rng(seed)
    n, h, w = 8, 32, 32
    y, x = np.mgrid[0:h, 0:w]
    r = np.hypot(x - 15.5, y - 15.5)
    counts = np.broadcast_to(np.floor(400.0 * np.exp(-r / 3.0)), (n, h, w)).copy()
    young = np.where(r < 4.0, counts, 0.0)
    well = counts >= MIN_PARTICLES_PER_PIXEL
    err = np.where(well, rng.normal(0, 0.1, (n, h, w)), rng.normal(0, 1.0, (n, h, w)))
    truth = np.where(counts > 0, 6.0 + np.log10(np.maximum(counts, 1)), 3.0)  # empty: floor
    tm = {MSTAR: truth, SFR: truth - 9.0}
    pm = {MSTAR: truth - err, SFR: truth - 9.0 - err}
    tp = {"r_half_arcsec_r": np.full(n, 3.0 * 0.4), "dx_arcsec": np.zeros(n)}
    return tm, pm, tp, {"n_particles": counts, "n_young_particles": young}


def test_well_sampled_per_pixel_metrics_select_pixels_by_particle_count() -> None:
    tm, pm, tp, counts = _maps()
    n, h, w = tm[MSTAR].shape
    out = map_metrics(tm, pm, tp, (h, w), 0.4, n, counts=counts)
    d = tm[MSTAR] - pm[MSTAR]
    nonempty = tm[MSTAR] > 3.5
    good = nonempty & (counts["n_particles"] >= MIN_PARTICLES_PER_PIXEL)
    m = out[MSTAR]
    assert m["per_pixel_scatter"] == pytest.approx(np.std(d[nonempty]), rel=1e-12)
    assert m["per_pixel_scatter_well_sampled"] == pytest.approx(np.std(d[good]), rel=1e-12)
    assert m["per_pixel_scatter_well_sampled"] == pytest.approx(0.1, rel=0.1)
    assert m["per_pixel_scatter"] > 3 * m["per_pixel_scatter_well_sampled"]
    assert m["well_sampled_pixel_fraction"] == pytest.approx(good.sum() / nonempty.sum())
    assert m["well_sampled_count_map"] == "n_particles"
    # the SFR map is sampled by the young particles alone
    s = out[SFR]
    young = nonempty & (counts["n_young_particles"] >= MIN_PARTICLES_PER_PIXEL)
    assert s["well_sampled_count_map"] == "n_young_particles"
    # ... as a fraction of its own non-empty pixels, those with a young particle
    sfr_nonempty = nonempty & (counts["n_young_particles"] >= 1)
    assert s["well_sampled_pixel_fraction"] == pytest.approx(young.sum() / sfr_nonempty.sum())
    assert s["per_pixel_scatter_well_sampled"] == pytest.approx(
        np.std((tm[SFR] - pm[SFR])[young]), rel=1e-12
    )


def test_map_metrics_without_counts_report_all_non_empty_pixels_only() -> None:
    tm, pm, tp, _ = _maps()
    n, h, w = tm[MSTAR].shape
    out = map_metrics(tm, pm, tp, (h, w), 0.4, n)
    assert "per_pixel_scatter" in out[MSTAR]
    assert not any(k.endswith("well_sampled") for k in out[MSTAR])


def test_map_metrics_take_the_integrated_quantities_from_the_aperture_prediction() -> None:
    """Per-pixel and radial metrics read pm; the within-2-r_half ones read aperture_pm where it
    has the map (the additive model_maps of a posterior), so a per-pixel mean of log maps never
    enters an aperture sum."""
    tm, pm, tp, counts = _maps()
    n, h, w = tm[MSTAR].shape
    shifted = {MSTAR: tm[MSTAR] - np.log10(2.0)}  # half the mass everywhere
    out = map_metrics(tm, pm, tp, (h, w), 0.4, n, counts=counts, aperture_pm=shifted)
    plain = map_metrics(tm, pm, tp, (h, w), 0.4, n, counts=counts)
    assert out["log10_mstar_2rhalf"]["mean_log_true_over_pred"] == pytest.approx(np.log10(2.0))
    assert out["log10_mstar_2rhalf"]["scatter_dex"] == pytest.approx(0.0, abs=1e-12)
    assert out["log10_sfr_2rhalf"] == plain["log10_sfr_2rhalf"]  # no aperture map: pm
    assert out[MSTAR]["per_pixel_scatter"] == plain[MSTAR]["per_pixel_scatter"]


def test_map_metrics_check_per_pixel_uncertainties() -> None:
    """With the prediction's standard deviations: the fraction of pixels whose truth lies within
    one of them.  The errors are N(0, 0.1) on well-sampled pixels and N(0, 1) elsewhere, so a
    0.1-dex std covers 68% of the former and about 8% of the latter."""
    tm, pm, tp, counts = _maps(seed=5)
    n, h, w = tm[MSTAR].shape
    std = {MSTAR: np.full((n, h, w), 0.1)}
    m = map_metrics(tm, pm, tp, (h, w), 0.4, n, counts=counts, pred_std=std)[MSTAR]
    assert m["per_pixel_coverage_68_well_sampled"] == pytest.approx(0.6827, abs=0.03)
    assert m["per_pixel_coverage_68"] < 0.5
    assert m["per_pixel_median_std"] == pytest.approx(0.1)
    assert "per_pixel_coverage_68" not in map_metrics(tm, pm, tp, (h, w), 0.4, n)[SFR]


def test_split_scatter_separates_galaxy_offsets_from_structure() -> None:
    """Galaxy offsets N(0, 0.5) plus pixel noise N(0, 0.2): the split recovers both, and their
    quadrature sum is the per-pixel scatter exactly."""
    from galae.evaluate import split_scatter

    rng = np.random.default_rng(7)
    n, h, w = 400, 16, 16
    diff = rng.normal(0, 0.5, (n, 1, 1)) + rng.normal(0, 0.2, (n, h, w))
    sel = rng.uniform(size=(n, h, w)) < 0.5
    sel[:5] = False  # galaxies without a selected pixel take no part
    between, within = split_scatter(diff, sel)
    assert between == pytest.approx(0.5, rel=0.08)  # 395 galaxies: 3.6% standard error
    assert within == pytest.approx(0.2, rel=0.02)
    assert between**2 + within**2 == pytest.approx(np.std(diff[sel]) ** 2, rel=1e-10)
    nothing = split_scatter(diff, np.zeros_like(sel))
    assert all(np.isnan(v) for v in nothing)


def test_photo_z_metrics() -> None:
    from galae.evaluate import PHOTO_Z_OUTLIER, photo_z_metrics

    rng = np.random.default_rng(3)
    z = rng.uniform(0.02, 0.3, 100_000)
    dz = rng.normal(0.01, 0.03, z.size)
    dz[:1000] = 0.5  # 1% catastrophic outliers
    hits = rng.uniform(size=z.size) < 0.68
    m = photo_z_metrics(z + dz * (1 + z), z, hits, np.ones(z.size, bool))
    assert m["bias_median"] == pytest.approx(0.01, abs=1e-3)
    assert m["nmad"] == pytest.approx(0.03, rel=0.02)
    assert m["outlier_fraction"] == pytest.approx(0.01, abs=1e-3)  # the Gaussian part: < 1e-5
    assert PHOTO_Z_OUTLIER == 0.15
    assert m["coverage_68"] == pytest.approx(0.68, abs=0.01) and m["coverage_95"] == 1.0


# ---- per-galaxy statistics, bootstrap intervals and comparison reports -------------------------


def test_per_galaxy_sums_reproduce_every_map_scatter() -> None:
    """The per-galaxy sums behind the bootstrap give back map_metrics' figures exactly."""
    from galae.evaluate import map_residuals, per_galaxy_map_stats, scatters_from_sums

    tm, pm, tp, counts = _maps(seed=11)
    rng = np.random.default_rng(4)
    n, h, w = tm[MSTAR].shape
    pm = {k: v - rng.normal(0, 0.3, (n, 1, 1)) for k, v in pm.items()}  # galaxy offsets
    ref = map_metrics(tm, pm, tp, (h, w), 0.4, n, counts=counts)
    stats = per_galaxy_map_stats(map_residuals(tm, pm, tp, (h, w), 0.4, n, counts=counts))
    for name in (MSTAR, SFR):
        for pix, suffix in (("all", ""), ("well_sampled", "_well_sampled")):
            tot, between, within = scatters_from_sums(
                stats[f"{name}/{pix}/n"], stats[f"{name}/{pix}/sum"], stats[f"{name}/{pix}/sum_sq"]
            )
            assert tot == pytest.approx(ref[name][f"per_pixel_scatter{suffix}"], rel=1e-9)
            assert between == pytest.approx(
                ref[name][f"per_pixel_scatter_between_galaxies{suffix}"], rel=1e-6
            )
            assert within == pytest.approx(
                ref[name][f"per_pixel_scatter_within_galaxies{suffix}"], rel=1e-6
            )
    lr = stats["log10_mstar_2rhalf/log_true_over_pred"]
    assert np.nanstd(lr) == pytest.approx(ref["log10_mstar_2rhalf"]["scatter_dex"], rel=1e-12)


def _aperture_stats(err: np.ndarray) -> dict[str, np.ndarray]:
    return {"log10_sfr_2rhalf/log_true_over_pred": err}


def test_bootstrap_interval_matches_the_standard_error_of_a_standard_deviation() -> None:
    """For N normal residuals of width s the sample standard deviation has standard error
    s / sqrt(2 N); the bootstrap's 68% interval is +-1 of it (to 15% for 2000 resamples)."""
    from galae.evaluate import bootstrap_scatters

    rng = np.random.default_rng(8)
    n, s = 400, 0.3
    a = _aperture_stats(rng.normal(0, s, n))
    b = _aperture_stats(rng.normal(0, 2 * s, n))
    row = ("log10_sfr_2rhalf", "scatter_dex")
    out = bootstrap_scatters(a, b, [row], paired=True, n_boot=2000, seed=1)[row]
    lo, hi = out["A_ci68"]
    assert (hi - lo) / 2 == pytest.approx(s / np.sqrt(2 * n), rel=0.15)
    assert out["ratio_ci95"][0] < 0.5 < out["ratio_ci95"][1]
    assert out["ratio_ci95"][1] < 1.0 and out["p_A_below_B"] == 1.0
    assert out["paired"] and out["n_boot"] == 2000


def test_paired_bootstrap_removes_the_luck_of_the_draw_of_galaxies() -> None:
    """Two models that share each galaxy's large error and differ by a little: sharing the
    resamples gives a far narrower interval on the ratio than resampling each alone."""
    from galae.evaluate import bootstrap_scatters

    rng = np.random.default_rng(9)
    common = rng.standard_t(3, 300) * 0.5  # heavy tails: a few galaxies dominate the scatter
    a = _aperture_stats(common + rng.normal(0, 0.05, 300))
    b = _aperture_stats(common * 1.1 + rng.normal(0, 0.05, 300))
    row = ("log10_sfr_2rhalf", "scatter_dex")
    paired = bootstrap_scatters(a, b, [row], paired=True, seed=2)[row]["ratio_ci95"]
    indep = bootstrap_scatters(a, b, [row], paired=False, seed=2)[row]["ratio_ci95"]
    assert (paired[1] - paired[0]) < 0.25 * (indep[1] - indep[0])
    assert paired[1] < 1.0 < indep[1]  # only the paired interval resolves the 10%
    with pytest.raises(ValueError, match="same galaxies"):
        bootstrap_scatters(a, _aperture_stats(np.zeros(10)), [row], paired=True)


def _fake_report(folder, stats, fingerprint, supervised=False):
    import json

    from galae.evaluate import PER_GALAXY_FILE

    folder.mkdir(parents=True)
    lr = stats["log10_sfr_2rhalf/log_true_over_pred"]
    report = {
        "trained_with": "supervised" if supervised else "elbo",
        "supervised": supervised,
        "maps": {"log10_sfr_2rhalf": {"scatter_dex": float(np.std(lr))}},
    }
    if "params/r_d_kpc/pred_minus_true" in stats:
        d = stats["params/r_d_kpc/pred_minus_true"]
        mad = 1.4826 * np.median(np.abs(d - np.median(d)))
        report["params"] = {"r_d_kpc": {"scatter_mad": float(mad)}}
    (folder / "metrics.json").write_text(json.dumps(report))
    np.savez(folder / PER_GALAXY_FILE, **stats, _fingerprint=fingerprint, _data="x.h5")
    return folder / "metrics.json"


def test_compare_reports_writes_table_markdown_and_figure_with_intervals(tmp_path) -> None:
    from galae.evaluate import main

    rng = np.random.default_rng(10)
    fp = rng.normal(10, 1, 64)
    sa = {
        **_aperture_stats(rng.normal(0, 0.2, 64)),
        "params/r_d_kpc/pred_minus_true": rng.normal(0, 0.1, 64),
    }
    sb = {
        **_aperture_stats(rng.normal(0, 0.4, 64)),
        "params/r_d_kpc/pred_minus_true": rng.normal(0, 0.3, 64),
    }
    a = _fake_report(tmp_path / "ae", sa, fp)
    b = _fake_report(tmp_path / "unet", sb, fp, True)
    res = main(["--compare", str(a), str(b), "--n-boot", "300"])
    # latents too: the robust scatter of each galaxy's prediction error, resampled
    prow = res["rows"]["params/r_d_kpc/scatter_mad"]
    assert prow["A_ci95"][0] < prow["A"] < prow["A_ci95"][1]
    assert prow["ratio_ci95"][1] < 1.0 and prow["p_A_below_B"] > 0.99
    out = tmp_path / "compare_ae_vs_unet"
    row = res["rows"]["maps/log10_sfr_2rhalf/scatter_dex"]
    assert res["bootstrap"]["paired"] and res["bootstrap"]["n_boot"] == 300
    assert row["ratio_ci95"][0] <= row["ratio_A_over_B"] <= row["ratio_ci95"][1]
    assert (out / "compare.png").stat().st_size > 10_000
    assert "P(A < B)" in (out / "compare.md").read_text()
    # other galaxies (a different truth fingerprint): resampled independently
    c = _fake_report(tmp_path / "other", _aperture_stats(rng.normal(0, 0.4, 64)), fp + 1, True)
    res = main(["--compare", str(a), str(c), "--n-boot", "200", "--out", str(tmp_path / "t.json")])
    assert res["bootstrap"]["paired"] is False and (tmp_path / "t.png").exists()
    # a report without per-galaxy statistics: no intervals, said so in the table and a warning
    (tmp_path / "other" / "per_galaxy.npz").unlink()
    with pytest.warns(RuntimeWarning, match="lacks per_galaxy.npz"):
        res = main(["--compare", str(a), str(c), "--out", str(tmp_path / "u.json")])
    assert res["bootstrap"] is None and res["no_per_galaxy_statistics"] == [str(c.parent)]
    assert "No intervals" in (tmp_path / "u.md").read_text()
    with pytest.raises(SystemExit):
        main(["--compare", str(a), str(tmp_path / "missing" / "metrics.json")])


def test_sfr_pixels_without_young_particles_are_empty_for_the_sfr_map() -> None:
    """Where no young particle lies the SFR truth is its floor (log of zero): such pixels are
    not non-empty for the SFR map, while the stellar-mass map still reads them."""
    tm, pm, tp, counts = _maps(seed=3)
    n, h, w = tm[MSTAR].shape
    no_young = counts["n_young_particles"] < 1
    tm[SFR] = np.where(no_young, -30.0, tm[SFR])  # the floor
    out = map_metrics(tm, pm, tp, (h, w), 0.4, n, counts=counts)
    nonempty = tm[MSTAR] > 3.5
    d = tm[SFR] - pm[SFR]
    sel = nonempty & ~no_young
    assert out[SFR]["per_pixel_scatter"] == pytest.approx(np.std(d[sel]), rel=1e-12)
    assert out[SFR]["per_pixel_scatter"] < 1.0  # the floor would give ~10 dex
    assert sum(out[SFR]["radial"]["n"]) <= sel.sum()
    dm = tm[MSTAR] - pm[MSTAR]
    assert out[MSTAR]["per_pixel_scatter"] == pytest.approx(np.std(dm[nonempty]), rel=1e-12)
    # without count maps (analytic mocks) the stellar-mass rule alone applies
    plain = map_metrics(tm, pm, tp, (h, w), 0.4, n)
    assert plain[SFR]["per_pixel_scatter"] == pytest.approx(np.std(d[nonempty]), rel=1e-12)


def test_evaluate_cli_defaults_to_the_packaged_model(tmp_path, monkeypatch) -> None:
    """``python -m galae.evaluate --data D`` evaluates the packaged model and writes its report
    into the working folder (never beside the installed checkpoint); --n < 1 is an error."""
    from galae.evaluate import main
    from galae.mock import MockConfig, run_mock

    data = tmp_path / "few.h5"
    run_mock(MockConfig(n=3, seed=5, chunk=3, out=str(data)), progress=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["--data", str(data), "--n", "0"])
    m = main(["--data", str(data), "--n", "2", "--no-figures", "--n-mc-derived", "4"])
    assert (tmp_path / "eval_default_model_few" / "metrics.json").is_file()
    assert m["n_galaxies"] == 2 and np.isfinite(m["chi2_per_pixel"]["median"])
    # mock truth holds every latent, so the combinations of latents are scored too
    assert set(m["coverage_combinations"]) == set(LATENT_COMBINATIONS)
    for levels in m["coverage_combinations"].values():
        assert set(levels) == {"68", "95"} and 0.0 <= levels["68"] <= levels["95"] <= 1.0


def test_position_angle_errors_and_intervals_are_taken_on_the_circle() -> None:
    """A position angle repeats every 180 deg: a truth at 179 deg and draws about 1 deg are 2 deg
    apart.  On the line the 68% interval of such draws missed every truth across the wrap (0.40
    coverage for the 67 of 400 analytic mocks within 15 deg of it, seventeenth-session review)."""
    from galae.evaluate import interval_hits, robust_stats, wrapped_difference
    from galae.latent import REGISTRY

    period = REGISTRY["pa_deg"].period
    assert period == 180.0 and REGISTRY["inclination_deg"].period is None
    np.testing.assert_allclose(
        wrapped_difference([1.0, 179.0, 90.0], [179.0, 1.0, 0.0], 180), [2.0, -2.0, -90.0]
    )
    rng = np.random.default_rng(0)
    n, k = 4000, 400
    truth = rng.uniform(0, 180, n)
    estimate = (truth + rng.normal(0, 5, n)) % 180  # a 5-degree posterior about the estimate
    draws = (estimate + rng.normal(0, 5, (k, n))) % 180
    hits = interval_hits(draws, truth, 0.68, period)
    assert abs(hits.mean() - 0.68) < 0.03  # calibrated, across the wrap too
    near = np.abs(wrapped_difference(truth, 0.0, period)) < 10
    assert abs(hits[near].mean() - 0.68) < 0.06
    assert interval_hits(draws, truth, 0.68)[near].mean() < 0.6  # on the line: off
    stats = robust_stats(estimate, truth, period)
    assert abs(stats["scatter_std"] - 5.0) < 0.3  # 5 deg; on the line about 30


def test_calibration_errors_of_an_angle_are_taken_on_the_circle() -> None:
    import torch

    from galae.calibrate import standardised_errors
    from galae.latent import REGISTRY

    j = REGISTRY.names.index("pa_deg")
    pa = REGISTRY["pa_deg"]
    u = torch.zeros(2, REGISTRY.dim)
    loc = torch.zeros(2, REGISTRY.dim)
    sd = torch.full((2, REGISTRY.dim), 0.1)
    u[0, j], loc[0, j] = (
        pa.to_unconstrained(torch.tensor(179.0)),
        pa.to_unconstrained(torch.tensor(1.0)),
    )
    u[1, j], loc[1, j] = (
        pa.to_unconstrained(torch.tensor(95.0)),
        pa.to_unconstrained(torch.tensor(90.0)),
    )
    z = standardised_errors(u, loc, sd)[:, j]
    # 2 deg over the physical width at 1 deg (slope 180 s (1 - s) per unit, s = 1/180)
    slope = 180 * (1 / 180) * (1 - 1 / 180)
    assert z[0].item() == pytest.approx(2.0 / (slope * 0.1), rel=1e-3)
    linear = ((u - loc) / sd).abs()[:, j]
    assert z[1].item() == pytest.approx(linear[1].item(), rel=0.01)  # away from the wrap: as before
    others = [i for i in range(REGISTRY.dim) if i != j]
    torch.testing.assert_close(
        standardised_errors(u, loc, sd)[:, others],
        linear[:, None].new_zeros(2, len(others)) + ((u - loc) / sd).abs()[:, others],
    )


def test_latent_combinations_by_hand() -> None:
    """Bulge and disk of 1e10 Msun each: 2e10 Msun, B/T 0.5; SFR 1 Msun/yr: sSFR 1/(2e10)."""
    p = {
        "log10_mstar_bulge_msun": np.array([10.0, 9.0]),
        "log10_mstar_disk_msun": np.array([10.0, 11.0]),
        "log10_sfr_msun_per_yr": np.array([0.0, 1.0]),
    }
    total = LATENT_COMBINATIONS["log10_mstar_total_msun"](p)
    np.testing.assert_allclose(total, [10.0 + np.log10(2.0), np.log10(1.01e11)], rtol=1e-12)
    np.testing.assert_allclose(
        LATENT_COMBINATIONS["log10_ssfr_per_yr"](p), [-np.log10(2e10), 1.0 - np.log10(1.01e11)]
    )
    np.testing.assert_allclose(
        LATENT_COMBINATIONS["bulge_to_total_mass"](p), [0.5, 1.0 / 101.0], rtol=1e-12
    )
    # shapes of posterior draws (k, N) pass through
    draws = {k: np.broadcast_to(v, (7, 2)) for k, v in p.items()}
    assert LATENT_COMBINATIONS["bulge_to_total_mass"](draws).shape == (7, 2)


def test_calibration_record_names_the_calibrations_in_strict_json() -> None:
    """A report records the settings of the calibrations behind its widths; a latent left
    without a width ceiling (inf) is null, so that the metrics stay strict JSON."""
    import json

    from galae.evaluate import calibration_record

    state = {
        "posterior_calibration": {"n_simulated": 2048, "history_scale_dex": 0.3, "scale": {}},
        "refined_posterior_calibration": {
            "refine_steps": 60,
            "width_floor": 0.5,
            "width_ceiling": 1.5,
            "width_ceiling_per_latent": {"a": 1.5, "b": float("inf")},
            "scale_form": "covariance",
            "coverage_68_after": {},
        },
    }
    rec = calibration_record(state, refine_steps=60)
    assert rec["amortized"] == {"n_simulated": 2048, "history_scale_dex": 0.3}
    assert rec["refined"]["width_ceiling_per_latent"] == {"a": 1.5, "b": None}
    assert rec["refined"]["width_ceiling"] == 1.5 and "coverage_68_after" not in rec["refined"]
    json.dumps(rec, allow_nan=False)
    assert calibration_record(state, refine_steps=0) == {"amortized": rec["amortized"]}
    assert calibration_record({}, refine_steps=60) == {"amortized": None, "refined": None}


def test_r_half_by_resolution_bins_by_size_over_seeing() -> None:
    """Each galaxy lands in the bin of r_half,true / FWHM; the medians are those of its bin."""
    true = np.array([0.4, 0.6, 1.0, 1.0, 3.0, 2.0])
    psf = np.array([1.0, 1.0, 1.0, 0.5, 1.0, np.nan])  # x = 0.4, 0.6, 1, 2, 3, NaN (dropped)
    pred = true * np.array([1.5, 0.9, 1.0, 1.2, 0.8, 1.0])
    out = r_half_by_resolution(pred, true, psf, edges=(0.0, 0.5, 1.5, np.inf))
    assert out["x"] == "r_half_true / psf_fwhm"
    b = out["bins"]
    assert [(e["lo"], e["hi"], e["n"]) for e in b] == [(0.0, 0.5, 1), (0.5, 1.5, 2), (1.5, None, 2)]
    assert b[0]["median_frac_error"] == pytest.approx(0.5)
    assert b[1]["median_abs_frac_error"] == pytest.approx(0.05)  # |-0.1| and 0
    assert b[1]["median_frac_error"] == pytest.approx(-0.05)
    assert b[2]["median_abs_frac_error"] == pytest.approx(0.2)  # +0.2 and -0.2
    assert b[2]["median_frac_error"] == pytest.approx(0.0, abs=1e-12)
    # an empty bin has a count and no medians
    empty = r_half_by_resolution(pred[:1], true[:1], psf[:1], edges=(0.0, 0.1, 1.0))["bins"]
    assert empty[0] == {"lo": 0.0, "hi": 0.1, "n": 0}
    # with the posterior widths: the fraction within one sigma and the median relative width
    std = true * np.array([0.6, 0.05, 0.1, 0.1, 0.3, 0.1])  # the 2nd and 4th miss
    b = r_half_by_resolution(pred, true, psf, std=std, edges=(0.0, 0.5, 1.5, np.inf))["bins"]
    assert [e["fraction_within_1sigma"] for e in b] == [1.0, 0.5, 0.5]
    assert b[2]["median_frac_std"] == pytest.approx(0.2)  # 0.1 and 0.3
    with pytest.raises(ValueError, match="one length"):
        r_half_by_resolution(pred, true[:3], psf)
    with pytest.raises(ValueError, match="one length"):
        r_half_by_resolution(pred, true, psf, std=std[:2])
    with pytest.raises(ValueError, match="increasing"):
        r_half_by_resolution(pred, true, psf, edges=(1.0, 0.5))
