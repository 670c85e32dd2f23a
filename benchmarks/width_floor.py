"""The refined posterior's width floor (``galae.refine.REFINED_WIDTH_FLOOR``), chosen on a
validation set and scored on the test set.

The refined 95% intervals are too narrow where the Laplace width falls far below the amortized
one (``benchmarks/refined_tails.py``).  For each floor f (the smallest refined width as a
fraction of the amortized one) this calibrates the packaged model's refined widths with that
floor (1024 simulations, smooth disk histories as in the analytic mocks:
``--history-scale-dex 0``), then evaluates the refined posterior on 400 galaxies of the
validation mocks ``data/analytic_check.h5`` (where f is chosen: the 95% coverage closest to
0.95 with every latent's 68% coverage inside 0.60-0.76) and on the 400 test mocks.

    python benchmarks/width_floor.py [--floors 0 0.3 0.5 0.8]

About 8 minutes per floor on 2 CPU cores (reports already in ``--runs`` are reused).  Needs
``runs/pa_cal/model_refcal.pt`` (the packaged model, ``src/galae/default_model/README.md``)
and the analytic mocks of ``benchmarks/deep_data.sh`` and ``benchmarks/paired_rhalf.py``.
Results: ``results/width_floor.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import (
    calibration_parser,
    choice_header,
    choose_on_validation,
    coverage_distance,
    evaluate_summary,
    use_width_floor,
    write_result,
)

from galae.calibrate import calibrate_checkpoint
from galae.evaluate import evaluate


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = calibration_parser(__doc__)
    ap.add_argument("--check", default="data/analytic_check.h5")
    ap.add_argument("--floors", type=float, nargs="+", default=[0.0, 0.3, 0.5, 0.8])
    ap.add_argument("--runs", default="runs/floor")
    a = ap.parse_args(argv)
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    kw = {"n": a.n, "figures": False, "refine_steps": a.steps}
    rows = {}
    for f in a.floors:
        tag = f"{f:.1f}"
        ckpt = runs / f"model_f{tag}.pt"
        check, test = runs / f"check_f{tag}", runs / f"refined_f{tag}"
        use_width_floor(f)
        if not ckpt.exists():
            calibrate_checkpoint(
                a.checkpoint, a.train, out=ckpt, n=1024, refine_steps=a.steps, history_scale_dex=0.0
            )
        for data, report in ((a.check, check), (a.test, test)):
            if not (report / "metrics.json").exists():
                evaluate(ckpt, data, out=report, **kw)
        rows[tag] = {
            "validation": evaluate_summary(check, ckpt),
            "test": evaluate_summary(test, ckpt),
        }

    def ok(row: dict[str, Any]) -> bool:
        lo, hi = row["validation"]["coverage_68_range"]
        return 0.60 <= lo and hi <= 0.76

    for row in rows.values():
        for part in row.values():
            part["mean_abs_distance_95_from_0.95"] = coverage_distance(part, "95")
    chosen = choose_on_validation(rows, ok, "mean_abs_distance_95_from_0.95")
    payload = {
        **choice_header(a),
        "history_scale_dex": 0.0,
        "floors": rows,
        "chosen_on_validation": chosen,
    }
    write_result("width_floor", payload)
    return payload


if __name__ == "__main__":
    main()
