"""Bad input to ``python -m galae.mock``: refused before a file is made, with a message naming the
knob; a run that fails part-way leaves no file behind (nor blocks a rerun)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import galae.mock as mock
from galae.data.hdf5 import inspect_h5
from galae.mock import MockConfig, main, run_mock
from galae.physics.population import log10_mstar_total_range, sample_population

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mock_analytic.yaml"
TINY = ["shape=[16,16]", "chunk=2"]


def run(out: Path, *overrides: str, n: int = 2) -> Path:
    return main(["--config", str(CONFIG), "--n", str(n), "--out", str(out), *TINY, *overrides])


def assert_nothing_written(folder: Path) -> None:
    assert sorted(p.name for p in folder.iterdir()) == [], "a file was left behind"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # every galaxy came out at log M = 12.30 (clipped to the registry) before
        (
            ["log10_mstar_min=13", "log10_mstar_max=14"],
            r"log10_mstar_min=13 is outside \[7\.30, 12\]",
        ),
        # and at 7.30 here
        (["log10_mstar_min=5", "log10_mstar_max=6"], r"log10_mstar_min=5 is outside \[7\.30, 12\]"),
        (["log10_mstar_max=12.5"], r"log10_mstar_max=12\.5 is outside"),
        (["log10_mstar_min=12", "log10_mstar_max=9"], "need log10_mstar_min < log10_mstar_max"),
        (["log10_mstar_min=nan"], "log10_mstar_min must be finite"),
        (["redshift_min=0.3", "redshift_max=0.1"], "need 0 < redshift_min < redshift_max"),
        (["redshift_min=0"], "need 0 < redshift_min < redshift_max"),
        (["redshift_distribution=flat"], "unknown redshift_distribution 'flat'"),
        (["population_dust=smooth"], "unknown population_dust 'smooth'"),
        (["shape=[2,2]"], r"shape must be \[H, W\] with H, W >= 4"),
        (["pixel_scale_arcsec=0"], "pixel_scale_arcsec must be > 0"),
        (["seeing_r_median_arcsec=0.3"], "seeing_r_median_arcsec must be >= 0.6"),
        (["seeing_r_median_arcsec=nan"], "seeing_r_median_arcsec must be finite"),
        (["generator=particles", "shape=[6,6]"], "ParticleMockConfig.shape"),
        (["missing_band=u,y"], "missing_band 'y' is not one of"),
        (["missing_band=u,g,r,i,z"], "missing_band 'u,g,r,i,z' leaves no band"),
    ],
)
def test_bad_config_is_refused_before_a_file_is_made(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        run(tmp_path / "x.h5", *overrides)
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # the stellar-population table stops at z = 0.6 (float32: 0.6000000238418579)
        (
            ["redshift_max=2"],
            r"redshift_max=2: the stellar-population table covers redshifts 0 to 0\.6$",
        ),
        (["generator=particles", "redshift_max=0.7"], r"covers redshifts 0 to 0\.6$"),
        (["bands=[g,r,i]"], r"bands \[g,r,i\]: mocks are rendered in .* \[u,g,r,i,z\]"),
        (["bands=[u,g,r,i,y]"], r"bands \[u,g,r,i,y\]"),
    ],
)
def test_table_limits_are_checked_before_a_file_is_made(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    """These failed after the file was created, leaving an incomplete one that blocked a rerun."""
    with pytest.raises(ValueError, match=message) as err:
        run(tmp_path / "x.h5", *overrides)
    assert "0.60000" not in str(err.value)
    assert_nothing_written(tmp_path)


def test_mass_range_of_the_population() -> None:
    lo, hi = log10_mstar_total_range()
    assert lo == pytest.approx(7.30103, abs=1e-5) and hi == 12.0
    with pytest.raises(ValueError, match="log10_mstar_min=13 is outside"):
        sample_population(3, torch.Generator().manual_seed(0), log10_mstar_range=(13.0, 14.0))
    with pytest.raises(ValueError, match="need log10_mstar_min < log10_mstar_max"):
        sample_population(3, torch.Generator().manual_seed(0), log10_mstar_range=(11.0, 9.0))
    p = sample_population(200, torch.Generator().manual_seed(0), log10_mstar_range=(11.5, 12.0))
    total = torch.log10(10 ** p["log10_mstar_bulge_msun"] + 10 ** p["log10_mstar_disk_msun"])
    assert float(total.min()) >= 11.5 - 1e-3 and float(total.max()) <= 12.0 + 1e-3


def test_particle_config_checks_the_ranges() -> None:
    from galae.data.particles import ParticleMockConfig

    with pytest.raises(ValueError, match="log10_mstar_max=14 is outside"):
        ParticleMockConfig.from_dict({"log10_mstar_max": 14.0})
    with pytest.raises(ValueError, match="need 0 < redshift_min < redshift_max"):
        ParticleMockConfig.from_dict({"redshift_min": 0.3, "redshift_max": 0.1})


def test_a_failed_run_leaves_no_file_and_does_not_block_a_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = mock.GENERATORS["analytic"]

    def fails_on_the_second_chunk(cfg: MockConfig, chunk_index: int, count: int) -> Any:
        if chunk_index == 1:
            raise ValueError("chunk 1 failed")
        return real(cfg, chunk_index, count)

    out = tmp_path / "x.h5"
    monkeypatch.setitem(mock.GENERATORS, "analytic", fails_on_the_second_chunk)
    with pytest.raises(ValueError, match="chunk 1 failed"):
        run(out, n=4)
    assert_nothing_written(tmp_path)  # neither x.h5 nor its partial copy
    # a failed --overwrite run keeps the file it was to replace
    monkeypatch.setitem(mock.GENERATORS, "analytic", real)
    run(out, n=2)
    before = out.read_bytes()
    monkeypatch.setitem(mock.GENERATORS, "analytic", fails_on_the_second_chunk)
    with pytest.raises(ValueError, match="chunk 1 failed"):
        run(out, "--overwrite", n=4)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["x.h5"]
    monkeypatch.setitem(mock.GENERATORS, "analytic", real)
    run(out, "--overwrite", n=4)  # the rerun
    info = inspect_h5(out)
    assert info.n_galaxies == 4 and bool(info.attrs["complete"])


def test_existing_file_names_the_flag(tmp_path: Path) -> None:
    out = tmp_path / "x.h5"
    out.write_bytes(b"keep")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        run(out)
    with pytest.raises(FileExistsError, match=r"pass overwrite=True"):  # the Python API's word
        run_mock(CONFIG, out=out, n=2, progress=False)
    assert out.read_bytes() == b"keep"


def test_command_line_says_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "GALAE_TRACEBACK": "0"}
    cmd = [sys.executable, "-m", "galae.mock", "--config", str(CONFIG), "--n", "2"]
    cmd += ["--out", str(tmp_path / "x.h5"), "redshift_max=2"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines == [
        "python -m galae.mock: error: redshift_min=0.01, redshift_max=2: the stellar-population "
        "table covers redshifts 0 to 0.6"
    ]
    assert_nothing_written(tmp_path)


def test_missing_data_message_names_the_file(tmp_path: Path) -> None:
    from galae.data.loader import ensure_data

    target = tmp_path / "nope.h5"
    with pytest.raises(FileNotFoundError) as err:
        ensure_data(target, None, None, 0)
    assert f"--out {target}`" in str(err.value) and "{p}" not in str(err.value)


def test_several_missing_bands(tmp_path: Path) -> None:
    """missing_band takes several bands, comma-separated (grz data: "u,i"): every pixel of each
    is masked and zero."""
    from galae.data.hdf5 import read_h5

    d = read_h5(run(tmp_path / "grz.h5", "missing_band=u,i", n=3), with_maps=False)
    gone = d["mask"].reshape(3, 5, -1).all(-1)
    assert gone[:, 0].all() and gone[:, 3].all() and not gone[:, [1, 2, 4]].any()
    assert (d["images"][:, [0, 3]] == 0).all()
    assert MockConfig(missing_band=" u , i ").missing_bands == ("u", "i")
    assert MockConfig().missing_bands == ()
