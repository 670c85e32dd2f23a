"""galae.runtime: the allocator tuning, the error manners of galae's command-line jobs and the
device check they share."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from galae.runtime import checked_device, cli_errors, parse_device, tune_cpu_allocator


def test_tuning_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("GALAE_MALLOC_TUNING", "0")
    assert tune_cpu_allocator() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuning_on_linux_reports_success(monkeypatch):
    """On glibc both mallopt calls are accepted (musl has no mallopt: False, not an error)."""
    monkeypatch.delenv("GALAE_MALLOC_TUNING", raising=False)
    result = tune_cpu_allocator()
    assert isinstance(result, bool)
    import platform

    if platform.libc_ver()[0] == "glibc":
        assert result is True


def test_cli_errors_turn_input_errors_into_one_line_and_status_2(capsys, monkeypatch):
    monkeypatch.delenv("GALAE_TRACEBACK", raising=False)
    for err in (ValueError("sigma must be > 0"), FileNotFoundError("/x.h5: no such file")):
        with pytest.raises(SystemExit) as exit_info, cli_errors("python -m galae.x"):
            raise err
        assert exit_info.value.code == 2
        assert capsys.readouterr().err == f"python -m galae.x: error: {err}\n"
    # a bug keeps its traceback
    with pytest.raises(ZeroDivisionError), cli_errors("python -m galae.x"):
        _ = 1 / 0
    # and so does everything when asked
    monkeypatch.setenv("GALAE_TRACEBACK", "1")
    with pytest.raises(ValueError, match="sigma"), cli_errors("python -m galae.x"):
        raise ValueError("sigma must be > 0")


def test_evaluate_command_names_a_missing_data_file(tmp_path):
    import galae

    model = Path(galae.__file__).parent / "default_model" / "model.pt"
    missing = tmp_path / "nowhere.h5"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "galae.evaluate",
            "--checkpoint",
            str(model),
            "--data",
            str(missing),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 2
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("python -m galae.evaluate: error:")
    assert "nowhere.h5" in run.stderr


@pytest.mark.parametrize("name", ["foo", "gpu", "cuda:x", "meta", "auto", ""])
def test_parse_device_names_what_it_accepts(name: str) -> None:
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or 'mps'"):
        parse_device(name)


def test_checked_device() -> None:
    assert checked_device("cpu") == torch.device("cpu")
    assert checked_device(torch.device("cpu")) == torch.device("cpu")
    assert parse_device("auto", allow_auto=True) is None
    expect = "cuda" if torch.cuda.is_available() else "cpu"
    assert checked_device("auto", allow_auto=True).type == expect
    with pytest.raises(ValueError, match="'auto', 'cpu'"):
        checked_device("foo", allow_auto=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_checked_device_without_cuda() -> None:
    with pytest.raises(ValueError, match="torch sees no CUDA GPU on this machine"):
        checked_device("cuda:0")


def test_every_loader_checks_its_device(tmp_path) -> None:
    """galae.load, load_unet and calibrate refuse a device name before any work (they raised
    torch's RuntimeError, or an AssertionError for CUDA on a CPU-only build)."""
    import galae
    from galae.calibrate import calibrate_checkpoint
    from galae.sampling import default_model_path
    from galae.unet import load_unet

    for call in (
        lambda: galae.load(default_model_path(), device="gpu"),
        lambda: load_unet(tmp_path / "missing.pt", device="gpu"),
        lambda: calibrate_checkpoint(default_model_path(), tmp_path / "x.h5", device="gpu"),
    ):
        with pytest.raises(ValueError, match="device must be"):
            call()
