"""Process-level settings for galae's command-line jobs (training, evaluation, mocks, benchmarks).

Rendering allocates and frees tensors of tens of MB many times a second.  glibc's malloc hands
blocks above its mmap threshold (at most 32 MB by default) straight back to the kernel, so each
new tensor of that size is page-faulted in afresh: on this project's 2-core CPU that made
large elementwise operations ~3x slower and the renderer ~2x slower (benchmarks/render.py
records whether the tuning was on).  :func:`tune_cpu_allocator` raises the threshold and stops
heap trimming, so freed blocks are reused; the price is that the process keeps its peak memory.

Libraries should not change process-wide state on import, so galae only calls it from its own
entry points (``python -m galae.train`` and friends); set ``GALAE_MALLOC_TUNING=0`` to keep
glibc's defaults.

:func:`cli_errors` gives those entry points argparse's manners for bad input: a missing or
truncated file, a value out of range or a checkpoint of another config ends the command with
one line naming the problem and exit status 2, not a traceback.

:func:`parse_device` and :func:`checked_device` are the one check of a device name that
training, evaluation, calibration and ``galae.load`` share; :func:`checked_integer` the one
check of a count.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

__all__ = ["tune_cpu_allocator", "cli_errors", "parse_device", "checked_device", "checked_integer"]

#: The device types galae runs on.
DEVICE_TYPES: tuple[str, ...] = ("cpu", "cuda", "mps")

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_cpu_allocator(mmap_threshold_bytes: int = 1 << 30) -> bool:
    """Keep large freed blocks in the heap for reuse (glibc only; a no-op elsewhere).

    Args:
        mmap_threshold_bytes: blocks larger than this still go straight to the kernel.

    Returns:
        True when the allocator was tuned.
    """
    if os.environ.get("GALAE_MALLOC_TUNING", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold_bytes)) == 1
    # a trim threshold beyond int range is refused; 2 GiB - 1 keeps the heap in practice
    ok = mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1 and ok
    return ok


@contextmanager
def cli_errors(prog: str) -> Iterator[None]:
    """Report input errors of a command as ``<prog>: error: <message>`` and exit with status 2.

    Input errors are :class:`ValueError` (bad values, unknown names, a checkpoint of another
    config: galae's messages name the problem) and :class:`OSError` (a missing, unreadable or
    truncated file).  Anything else is a bug and keeps its traceback, as does everything with
    ``GALAE_TRACEBACK=1`` set.  Used around ``main()`` under ``if __name__ == "__main__"``, so
    that ``main`` itself still raises for callers in Python.
    """
    try:
        yield
    except (ValueError, OSError) as err:
        if os.environ.get("GALAE_TRACEBACK", "0") not in ("", "0"):
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def parse_device(name: str | torch.device, allow_auto: bool = False) -> torch.device | None:
    """``name`` as a device ("cpu", "cuda", "cuda:1", "mps"; None for "auto" where allowed).

    Only the spelling is checked; whether this machine has the device is
    :func:`checked_device`'s check.

    Raises:
        ValueError: anything else, naming what is accepted.
    """
    if allow_auto and name == "auto":
        return None
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        accepted = "'auto', " if allow_auto else ""
        raise ValueError(
            f"device must be {accepted}'cpu', 'cuda', 'cuda:N' or 'mps', got {name!r}"
        ) from None
    return dev


def checked_device(name: str | torch.device, allow_auto: bool = False) -> torch.device:
    """The device named by ``name``, checked against this machine ("auto", where allowed: CUDA
    when available, else the CPU).

    Raises:
        ValueError: an unknown device name, or a device this machine (or this torch build) does
            not have.
    """
    dev = parse_device(name, allow_auto)
    if dev is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(name)!r}, but torch sees no CUDA GPU on this machine "
                f"(torch {torch.__version__}); use device=cpu"
                + (" or device=auto" if allow_auto else "")
            )
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ValueError(f"device={str(name)!r}, but this machine has {n} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={str(name)!r}, but MPS is not available on this machine")
    return dev


def checked_integer(value: object, name: str, minimum: int) -> int:
    """``value`` as an integer >= ``minimum`` (numpy integers too; not bools or floats), or a
    ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
