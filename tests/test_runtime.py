"""galae.runtime: the allocator tuning of galae's command-line jobs."""

from __future__ import annotations

import sys

import pytest

from galae.runtime import tune_cpu_allocator


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
