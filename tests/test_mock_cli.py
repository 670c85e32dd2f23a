"""``python -m galae.mock``: the command writes a valid, deterministic data set with truth.

Tiny runs (6 galaxies of 24x24 pixels in chunks of 3) through :func:`galae.mock.main`, the
function behind the command line, with the repository's ``configs/mock_analytic.yaml``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from galae.data.hdf5 import GalaxyH5Dataset, inspect_h5, read_h5
from galae.latent import REGISTRY
from galae.mock import main
from galae.physics.maps import MAP_NAMES

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mock_analytic.yaml"
BANDS = ("u", "g", "r", "i", "z")
N, SIZE = 6, 24
DERIVED = (
    [f"mag_{b}" for b in BANDS]
    + [f"r_half_arcsec_{b}" for b in BANDS]
    + [f"bulge_to_total_{b}" for b in BANDS]
    + ["log10_mstar_msun"]
)


def run_cli(out: Path, seed: int = 0, *extra: str) -> Path:
    """``python -m galae.mock --config configs/mock_analytic.yaml --n 6 --out OUT ...``."""
    argv = [
        "--config",
        str(CONFIG),
        "--n",
        str(N),
        "--out",
        str(out),
        "--seed",
        str(seed),
        *extra,
        f"shape=[{SIZE},{SIZE}]",
        "chunk=3",
    ]
    return main(argv)


def read_all(path: Path) -> dict[str, Any]:
    d = read_h5(path, with_maps=True)
    return {k: v for k, v in d.items() if k not in ("attrs", "bands", "pixel_scale_arcsec")}


def assert_same(a: Any, b: Any, where: str = "", rtol: float = 0.0) -> None:
    """Recursive equality of nested dicts of arrays (exact unless ``rtol`` > 0)."""
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_same(a[k], b[k], f"{where}/{k}", rtol)
    elif rtol > 0 and np.issubdtype(np.asarray(a).dtype, np.floating):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0.0, err_msg=where)
    else:
        np.testing.assert_array_equal(a, b, err_msg=where)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("mock_cli")
    path = run_cli(d / "seed0.h5", 0)
    assert path == d / "seed0.h5"
    return d


def test_writes_valid_file_with_truth(runs: Path) -> None:
    path = runs / "seed0.h5"
    info = inspect_h5(path, expected_bands=BANDS)
    assert info.n_galaxies == N
    assert info.image_shape == (SIZE, SIZE)
    assert info.pixel_scale_arcsec == pytest.approx(0.396)
    assert info.has_psf_fwhm and info.has_model_images
    assert info.attrs["generator"] == "galae.mock.analytic"
    gen_cfg = json.loads(info.attrs["generator_config"])
    assert gen_cfg["n"] == N and gen_cfg["seed"] == 0 and gen_cfg["shape"] == [SIZE, SIZE]
    # every latent of the registry and every derived observable is stored as truth
    missing = (set(REGISTRY.names) | set(DERIVED)) - set(info.truth_param_names)
    assert not missing, f"truth params missing: {sorted(missing)}"
    assert set(MAP_NAMES) <= set(info.truth_map_names)

    ds = GalaxyH5Dataset(path, with_maps=True, with_model_images=True, expected_bands=BANDS)
    assert len(ds) == N
    for i in range(N):
        item = ds[i]
        assert item["image"].shape == (5, SIZE, SIZE)
        assert bool((item["sigma"] > 0).all()) and not bool(item["mask"].any())
        assert item["psf_fwhm_arcsec"].shape == (5,)
        assert 0.01 <= float(item["redshift"]) <= 0.25  # configs/mock_analytic.yaml range
        for name in REGISTRY.names:  # truth latents inside the registry's ranges
            p = REGISTRY[name]
            assert p.low <= float(item["params"][name]) <= p.high, name
        for name in MAP_NAMES:
            assert item["maps"][name].shape == (SIZE, SIZE)
            assert bool(item["maps"][name].isfinite().all()), name


def test_truth_is_consistent_with_the_pixels(runs: Path) -> None:
    d = read_h5(runs / "seed0.h5")
    # the noise: (image - model) / sigma is unit normal (6 * 5 * 24 * 24 = 17280 pixels;
    # the standard error of the std is 1/sqrt(2 * 17280) = 0.005, so 0.03 is ~6 sigma)
    chi = (d["images"] - d["model_images"]) / d["sigma"]
    assert abs(float(chi.mean())) < 0.03
    assert abs(float(chi.std()) - 1.0) < 0.03
    # a stamp holds at most the galaxy's total flux: its magnitude is not brighter than mag_<b>
    flux_stamp = d["model_images"].sum(axis=(-1, -2))  # (N, C) nmgy
    for i, band in enumerate(BANDS):
        mag_stamp = 22.5 - 2.5 * np.log10(flux_stamp[:, i])
        assert np.all(mag_stamp >= d["truth"]["params"][f"mag_{band}"] - 1e-3), band
    # colours and radii are physical
    assert np.all(d["truth"]["params"]["r_half_arcsec_r"] > 0)
    bt = d["truth"]["params"]["bulge_to_total_r"]
    assert np.all((bt >= 0) & (bt <= 1))


def test_same_seed_gives_identical_arrays(runs: Path) -> None:
    again = run_cli(runs / "seed0_again.h5", 0)
    assert_same(read_all(runs / "seed0.h5"), read_all(again))


def test_result_does_not_depend_on_workers(runs: Path) -> None:
    """The same galaxies, conditions and noise whatever the workers; images to float32 rounding.

    Workers render other batches, and the accurate renderer's border (the PSF radius) follows
    the widest PSF of a batch: a wider canvas changes the order of float32 sums by ~1e-7."""
    two = run_cli(runs / "seed0_workers2.h5", 0, "--workers", "2")
    assert json.loads(inspect_h5(two).attrs["generator_config"])["workers"] == 2
    assert_same(read_all(runs / "seed0.h5"), read_all(two), rtol=1e-5)


def test_different_seed_differs(runs: Path) -> None:
    other = read_h5(run_cli(runs / "seed1.h5", 1))
    base = read_h5(runs / "seed0.h5")
    assert not np.array_equal(other["images"], base["images"])
    assert not np.array_equal(other["redshift"], base["redshift"])
    assert not np.array_equal(
        other["truth"]["params"]["log10_mstar_msun"], base["truth"]["params"]["log10_mstar_msun"]
    )


def test_unknown_config_key_is_an_error_naming_it(runs: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not_a_knob"):
        run_cli(tmp_path / "x.h5", 0, "not_a_knob=3")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"generator": "analytic", "n": 2, "sheep": 1}))
    with pytest.raises(ValueError, match="sheep"):
        main(["--config", str(bad), "--out", str(tmp_path / "y.h5")])
    with pytest.raises(ValueError, match="unknown generator"):
        main(["--n", "2", "--out", str(tmp_path / "z.h5"), "generator=nope"])
    assert not (tmp_path / "x.h5").exists() and not (tmp_path / "y.h5").exists()


def test_existing_file_needs_overwrite(runs: Path, tmp_path: Path) -> None:
    target = tmp_path / "existing.h5"
    shutil.copy(runs / "seed0.h5", target)
    before = target.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        run_cli(target, 0)
    assert target.read_bytes() == before  # left untouched
    main(["--n", "3", "--out", str(target), "--overwrite", f"shape=[{SIZE},{SIZE}]"])
    assert inspect_h5(target).n_galaxies == 3


def test_training_data_are_made_with_the_model_physics(tmp_path: Path) -> None:
    """``ensure_data`` (what ``python -m galae.train`` calls when the data set is missing)
    renders the analytic mocks with the training config's disk history, and records it; the
    single-population disk is fainter and redder than the tau-model one at the same latents."""
    from galae.data.loader import ensure_data
    from galae.evaluate import analytic_disk_history

    mags = {}
    for history in ("single", "tau"):
        path = ensure_data(tmp_path / f"{history}.h5", str(CONFIG), 4, 0, history)
        info = inspect_h5(path, expected_bands=BANDS)
        assert analytic_disk_history(info.attrs) == history
        mags[history] = read_h5(path, np.arange(4), expected_bands=BANDS)["truth"]["params"]
    for k in REGISTRY.names:  # same seed: the same galaxies
        assert np.array_equal(mags["single"][k], mags["tau"][k])
    assert bool((mags["single"]["mag_r"] > mags["tau"]["mag_r"]).all())
    assert analytic_disk_history({"generator": "galae.mock.particles"}) is None
    assert analytic_disk_history({"generator": "galae.mock.analytic"}) == "single"  # older files


def test_birth_clouds_are_recorded_and_change_only_the_young_light(tmp_path: Path) -> None:
    """``ensure_data`` renders with the training config's birth clouds and the file records
    them (``configs/mock_analytic.yaml`` says "effective", the packaged model's physics; files
    made before the choice read as "face_on"); the same seed gives the same galaxies and truth
    maps, and the images differ only where there is dust.  Evaluating a model on mocks of other
    physics warns, naming the choice."""
    from galae.data.loader import ensure_data
    from galae.mock import MockConfig, mock_physics, warn_physics_mismatch
    from galae.render.renderer import GalaxyRenderer

    assert yaml.safe_load(CONFIG.read_text())["birth_clouds"] == "effective"
    out = {}
    for bc in ("face_on", "effective"):
        path = ensure_data(tmp_path / f"{bc}.h5", str(CONFIG), 4, 0, "tau", bc)
        attrs = inspect_h5(path, expected_bands=BANDS).attrs
        assert mock_physics(attrs) == {"disk_history": "tau", "birth_clouds": bc}
        out[bc] = read_h5(path, np.arange(4), expected_bands=BANDS)
    a, b = out["face_on"], out["effective"]
    for k in REGISTRY.names:
        assert np.array_equal(a["truth"]["params"][k], b["truth"]["params"][k])
    for k in MAP_NAMES:
        np.testing.assert_array_equal(a["truth"]["maps"][k], b["truth"]["maps"][k], err_msg=k)
    dusty = a["truth"]["params"]["av_face_on_mag"] > 0.05
    assert dusty.any()
    assert not np.array_equal(a["model_images"][dusty], b["model_images"][dusty])
    assert mock_physics({"generator": "galae.mock.particles"}) == {"birth_clouds": "face_on"}
    assert mock_physics({"generator": "galae.data.fits"}) == {}

    renderer = GalaxyRenderer(birth_clouds="effective")
    old_file = {"generator": "galae.mock.analytic", "generator_config": "{}"}
    message = "birth_clouds='face_on'.*renders.*birth_clouds=effective"
    with pytest.warns(RuntimeWarning, match=message):
        assert warn_physics_mismatch(old_file, renderer, "x.h5") == ["disk_history", "birth_clouds"]
    assert warn_physics_mismatch(attrs, renderer, "y.h5") == []  # the same physics
    particles = {"generator": "galae.mock.particles", "generator_config": "{}"}
    assert warn_physics_mismatch(particles, renderer, "p.h5") == []  # not the model's family
    with pytest.raises(ValueError, match="contradicts birth_clouds"):
        MockConfig(
            generator="particles", particles={"birth_clouds": "effective"}, birth_clouds="face_on"
        )
    with pytest.raises(ValueError, match="unknown birth_clouds"):
        MockConfig(birth_clouds="thick")
