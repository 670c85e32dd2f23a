"""galae.runtime: the allocator tuning and the error manners of galae's command-line jobs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from galae.runtime import cli_errors, tune_cpu_allocator


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
