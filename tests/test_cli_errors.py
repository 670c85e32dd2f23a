"""Bad input to galae.evaluate (and --compare), galae.calibrate, galae.plots and the HDF5
reader: an error that names the problem before any work is done, never an empty or misleading
report.  Each case was once silently wrong or a raw traceback (seventeenth submission's audit)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from galae.calibrate import calibrate_checkpoint
from galae.data.hdf5 import read_h5
from galae.evaluate import compare_markdown, compare_reports, evaluate
from galae.mock import MockConfig, run_mock
from galae.plots import main as plots_main
from galae.sampling import default_model_path


@pytest.fixture(scope="module")
def mocks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "mocks.h5"
    run_mock(MockConfig(n=4, seed=5, chunk=4, out=str(path)), progress=False)
    return path


def test_evaluate_refuses_data_without_truth(mocks: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.h5"
    shutil.copy(mocks, bare)
    with h5py.File(bare, "a") as f:
        del f["truth"]
    with pytest.raises(ValueError, match="holds no truth"):
        evaluate(default_model_path(), bare, tmp_path / "ev", figures=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_mc_derived": 1}, "n_mc_derived must be >= 2"),
        ({"n_mc_derived": 0}, "n_mc_derived must be >= 2"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"device": "foo"}, "device must be 'cpu', 'cuda'"),
    ],
)
def test_evaluate_arguments(mocks: Path, tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        evaluate(default_model_path(), mocks, tmp_path / "ev", figures=False, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_evaluate_on_cuda_without_cuda(mocks: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        evaluate(default_model_path(), mocks, tmp_path / "ev", figures=False, device="cuda")


def _report(path: Path, data: str, n: int, scatter: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "data": data,
        "n_galaxies": n,
        "maps": {"log10_mstar_msun_inside_2_r_half": {"scatter_dex": scatter}},
        "params": {},
    }
    path.write_text(json.dumps(report))
    return path


def test_compare_refuses_what_is_not_a_report(tmp_path: Path) -> None:
    good = _report(tmp_path / "a" / "metrics.json", "x.h5", 8, 0.2)
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"maps": {"something_else": {"scatter_dex": 1.0}}}))
    with pytest.raises(ValueError, match="broken.json is not a JSON report"):
        compare_reports(good, broken)
    with pytest.raises(ValueError, match="list.json is not a metrics.json"):
        compare_reports(good, listed)
    with pytest.raises(ValueError, match="share no statistic"):
        compare_reports(good, other)


def test_compare_says_when_the_galaxies_differ(tmp_path: Path) -> None:
    a = _report(tmp_path / "a" / "metrics.json", "particles_test.h5", 512, 0.2)
    same = _report(tmp_path / "b" / "metrics.json", "particles_test.h5", 512, 0.3)
    other = _report(tmp_path / "c" / "metrics.json", "analytic_test.h5", 400, 0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no per-galaxy statistics in these folders
        assert not compare_reports(a, same, figure=False)["different_galaxies"]
    with pytest.warns(RuntimeWarning, match="scored different galaxies"):
        table = compare_reports(a, other, figure=False)
    assert table["different_galaxies"]
    assert "**A and B scored different galaxies**" in compare_markdown(table)


def test_calibrate_checks_its_arguments_before_simulating(mocks: Path, tmp_path: Path) -> None:
    ckpt = default_model_path()
    with pytest.raises(ValueError, match="refine_steps must be >= 0"):
        calibrate_checkpoint(ckpt, mocks, tmp_path / "c.pt", n=128, refine_steps=-2)
    with pytest.raises(ValueError, match="refine_steps must be an integer >= 0"):
        calibrate_checkpoint(ckpt, mocks, tmp_path / "c.pt", n=128, refine_steps=2.5)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        calibrate_checkpoint(ckpt, mocks, tmp_path / "c.pt", n=128, batch_size=0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        calibrate_checkpoint(ckpt, mocks, tmp_path / "c.pt", n=128, batch_size=True)
    for bad in (-0.1, float("nan")):
        with pytest.raises(ValueError, match="history_scale_dex must be a number >= 0"):
            calibrate_checkpoint(ckpt, mocks, tmp_path / "c.pt", n=128, history_scale_dex=bad)
        with pytest.raises(ValueError, match="dust_clumping_max must be a number >= 0"):
            calibrate_checkpoint(ckpt, mocks, tmp_path / "c.pt", n=128, dust_clumping_max=bad)
    for bad in (0.5, float("inf"), "1.5"):
        with pytest.raises(ValueError, match="width_ceiling must be"):
            calibrate_checkpoint(ckpt, mocks, tmp_path / "c.pt", n=128, width_ceiling=bad)
    with pytest.raises(ValueError, match="width_ceiling_fallback must be a finite number above"):
        calibrate_checkpoint(
            ckpt, mocks, tmp_path / "c.pt", n=128, width_ceiling=1.5, width_ceiling_fallback=1.25
        )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        calibrate_checkpoint(ckpt, mocks, tmp_path / "missing" / "c.pt", n=128)


def test_calibrate_command_names_a_bad_width_ceiling(mocks: Path, tmp_path: Path, capsys) -> None:
    from galae.calibrate import main as calibrate_main
    from galae.runtime import cli_errors

    args = ["--checkpoint", str(default_model_path()), "--data", str(mocks)]
    out = ["--out", str(tmp_path / "c.pt"), "--refine-steps", "2", "--width-ceiling", "0.7"]
    with pytest.raises(SystemExit) as exit_info, cli_errors("python -m galae.calibrate"):
        calibrate_main(args + out)
    assert exit_info.value.code == 2
    assert "width_ceiling must be a finite number >= 1" in capsys.readouterr().err
    out[-1] = "1.5"
    with pytest.raises(SystemExit) as exit_info, cli_errors("python -m galae.calibrate"):
        calibrate_main(args + out + ["--width-ceiling-fallback", "1.2"])
    assert exit_info.value.code == 2
    assert "width_ceiling_fallback must be a finite number above the ceiling (1.5)" in (
        capsys.readouterr().err
    )


def test_plots_reports_a_truncated_file(mocks: Path, tmp_path: Path, capsys) -> None:
    cut = tmp_path / "cut.h5"
    cut.write_bytes(mocks.read_bytes()[: mocks.stat().st_size // 3])
    assert plots_main(["mocks", "--data", str(cut), "--out", str(tmp_path / "m.png")]) == 2
    assert "cut.h5" in capsys.readouterr().err


def test_read_h5_refuses_fractional_indices(mocks: Path) -> None:
    with pytest.raises(ValueError, match="indices must be integers"):
        read_h5(mocks, [0.7])
    assert read_h5(mocks, np.array([1, 0]))["index"].tolist() == [1, 0]
