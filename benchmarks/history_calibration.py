"""The refined posterior's widths calibrated for the data's disk histories.

``galae.calibrate`` simulates galaxies with the disk-history variability the encoder was
trained with (0.3 dex of ups and downs, the bursty histories of real galaxies and of the
particle mocks), which the analytic mocks' smooth tau-model histories do not have.  Calibrated
on such simulations, the refined intervals cover more than 68% of the analytic mocks' truths
(up to 0.80).  This calibrates the packaged model's refined widths again with
``--history-scale-dex 0`` (the analytic mocks' own histories) and scores both on the 400
analytic test mocks.  The amortized widths are calibrated the same two ways, from the packaged
weights before calibration (``--uncalibrated``; the amortized baseline report is that of
``benchmarks/refine_prior.py``).

    python benchmarks/history_calibration.py

Needs the packaged model's checkpoints as ``src/galae/default_model/README.md`` makes them
(``runs/pa_cal/model_refcal.pt``, the packaged model itself, and ``runs/psf_ft/model.pt``, its
weights before calibration) and the analytic mocks of ``benchmarks/deep_data.sh``.

About 10 minutes on 2 CPU cores (reports already in ``--runs`` are reused).  Results:
``results/history_calibration.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _common import calibration_parser, evaluate_summary, use_width_floor, write_result

from galae.calibrate import calibrate_checkpoint
from galae.evaluate import evaluate


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = calibration_parser(__doc__)
    ap.add_argument(
        "--baseline",
        default="runs/popref/refined_q_400",
        help="refined report of --checkpoint (benchmarks/refine_prior.py)",
    )
    ap.add_argument("--uncalibrated", default="runs/psf_ft/model.pt")
    ap.add_argument("--amortized-baseline", default="runs/popref/amortized_400")
    ap.add_argument("--runs", default="runs/hist0")
    a = ap.parse_args(argv)
    use_width_floor(0.0)  # measured before the width floor (galae.refine.floor_widths)
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    ckpt, smooth = Path(a.checkpoint), runs / "model_refcal_h0.pt"
    baseline, report = Path(a.baseline), runs / "refined_400"
    kw = {"data": a.test, "n": a.n, "figures": False, "refine_steps": a.steps}
    if not (baseline / "metrics.json").exists():
        evaluate(ckpt, out=baseline, **kw)
    if not smooth.exists():
        calibrate_checkpoint(
            ckpt, a.train, out=smooth, n=1024, refine_steps=a.steps, history_scale_dex=0.0
        )
    if not (report / "metrics.json").exists():
        evaluate(smooth, out=report, **kw)
    am_smooth, am_report = runs / "model_cal_h0.pt", runs / "amortized_400"
    am_baseline = Path(a.amortized_baseline)
    kw["refine_steps"] = 0
    if not (am_baseline / "metrics.json").exists():
        evaluate(ckpt, out=am_baseline, **kw)
    if not am_smooth.exists():
        calibrate_checkpoint(a.uncalibrated, a.train, out=am_smooth, history_scale_dex=0.0)
    if not (am_report / "metrics.json").exists():
        evaluate(am_smooth, out=am_report, **kw)
    payload = {
        "checkpoint": str(ckpt),
        "data": a.test,
        "n_galaxies": a.n,
        "refine_steps": a.steps,
        "refined_calibrated_with_training_variability": evaluate_summary(baseline, ckpt),
        "refined_calibrated_with_smooth_histories": evaluate_summary(report, smooth),
        "amortized_calibrated_with_training_variability": evaluate_summary(am_baseline, ckpt),
        "amortized_calibrated_with_smooth_histories": evaluate_summary(am_report, am_smooth),
    }
    write_result("history_calibration", payload)
    return payload


if __name__ == "__main__":
    main()
