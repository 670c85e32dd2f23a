"""The refined posterior's width ceiling (``galae.refine.REFINED_WIDTH_CEILING``), chosen on the
validation mocks and scored on the test mocks.

    python benchmarks/refined_ceiling.py [--ceilings 0 1.25 1.5]   # about 8 minutes a ceiling

The refined calibration scales each latent's Laplace width by one number (``scale_form``
"covariance", :mod:`galae.refine`), which also widens the latents the image leaves to q: a
bulge mass that the image leaves open gets 1.7 times q's width in the twentieth release, and the
posterior mean of the total stellar mass over such draws lies too high for 5.5% of the analytic
test mocks (the refined mode does not).  Refining on the image adds information to q, so a
refined width above q's is the single scale's doing.  The ceiling c caps the refined width after
the scaling, sigma_i = min(s_i sigma_Laplace,i, c sigma_q,i), and s is calibrated with the cap
in place (:func:`galae.calibrate.posterior_scales`: a truth beyond the cap counts as uncovered
at any s).

With ``--fallback F`` each ceiling c below F is also tried with F as the fallback of the
latents that cannot be calibrated under c (candidate "c+F": those latents get F instead of no
ceiling; :func:`galae.calibrate.posterior_scales`); the rule below is the same for it.

For each ceiling (0: none) this calibrates the packaged model's refined widths again with it
(1024 simulations, as the packaged calibration: ``--checkpoint`` is a checkpoint whose refined
widths are calibrated, the amortized ones kept) and evaluates the refined posterior (60 steps)
on 400 galaxies of the validation mocks ``data/analytic_check.h5`` and of the test mocks.

The ceiling is chosen on validation: the smallest log M* standard deviation (the statistic the
tail of overestimated total masses inflates) among the ceilings that every latent can be
calibrated under (none left without it, :func:`galae.calibrate.posterior_scales`) and whose
mean distance of the per-latent 68% coverage from 0.683 is within 0.005 of no ceiling's (the
binomial noise of one latent's coverage over 400 galaxies is 0.023).  That rule replaced the one
first written into this script (every latent's 68% coverage within 0.60-0.80), which chose no
ceiling: the refined posterior without one reaches 0.797 on the bulge mass, 1.5 reaches 0.805
(3 of 400 galaxies more), so that bound could only pass ceilings that raise no latent's coverage
at all; the JSON keeps what each rule chose.  A ceiling that cannot be calibrated (fewer than
68% of some latent's simulated truths within it of the refined mode) is recorded as such.
Reports already in ``--runs`` are reused (give each release its own ``--runs``).  Writes
``results/<--name>.json`` (default ``refined_ceiling``).

Measured on the twentieth release (``docs/results.md``, "Twenty-first submission"): on
validation, no ceiling / 1.25 / 1.5 give log M* std 0.096 / 0.078 / 0.086 dex and total masses
beyond 0.3 dex for 4.0% / 1.0% / 2.0% of the mocks; 1.25 leaves the stellar-metallicity
gradient without a ceiling (65% of its truths within it), so 1.5 is chosen, as proposed by the
previous session's test-set measurement.

Measured on the twenty-second release (``--runs runs/refined_ceiling22 --name
refined_ceiling_release22 --fallback 1.5``, ``results/refined_ceiling_release22.json``): on
validation, none / 1.25 / 1.5 / 1.25+1.5 give log M* std 0.128 / 0.091 / 0.102 / 0.091 dex and
masses beyond 0.3 dex for 7.75% / 2.0% / 4.75% / 2.0%; 1.25 again leaves the stellar-metallicity
gradient without a ceiling (66.7%), 1.25+1.5 gives it 1.5 and is chosen (test: 0.097 dex, 3.0%,
against 0.113 and 4.75% under 1.5).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import (
    choice_header,
    choose_on_validation,
    coverage_distance,
    evaluate_summary,
    per_galaxy,
    write_result,
)

from galae.calibrate import calibrate_checkpoint
from galae.evaluate import evaluate


def tail_fraction(report: Path, dex: float = 0.3) -> float:
    """Fraction of the galaxies whose total log M* lies more than ``dex`` from the truth."""
    err = per_galaxy(report)["params/log10_mstar_msun/pred_minus_true"]
    return float((np.abs(err) > dex).mean())


def summary(report: Path, checkpoint: Path) -> dict[str, Any]:
    """The issue-4 figures of a refined report, with the total-mass tail and the SFR scatter."""
    m = json.loads((report / "metrics.json").read_text())
    return evaluate_summary(report, checkpoint) | {
        "log10_mstar_beyond_0p3_dex_fraction": tail_fraction(report),
        "log10_sfr_scatter_mad_dex": m["params"]["log10_sfr_msun_per_yr"]["scatter_mad"],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ceilings", type=float, nargs="+", default=[0.0, 1.25, 1.5])
    ap.add_argument(
        "--fallback",
        type=float,
        default=None,
        help="also try every ceiling below this one with it as the fallback of the latents "
        "that cannot be calibrated under it (candidate 'c+F')",
    )
    ap.add_argument("--checkpoint", default="src/galae/default_model/model.pt")
    ap.add_argument("--train", default="data/analytic_train.h5")
    ap.add_argument("--check", default="data/analytic_check.h5")
    ap.add_argument("--test", default="data/analytic_test.h5")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--runs", default="runs/refined_ceiling")
    ap.add_argument(
        "--name", default="refined_ceiling", help="the result's name: results/<name>.json"
    )
    a = ap.parse_args(argv)
    if 0.0 not in a.ceilings:
        raise SystemExit("--ceilings must include 0 (no ceiling), the reference of the choice")
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    rows: dict[str, Any] = {}
    candidates = [(c, None) for c in a.ceilings]
    if a.fallback:
        candidates += [(c, a.fallback) for c in a.ceilings if 0 < c < a.fallback]
    for c, fallback in candidates:
        tag = (f"{c:g}" if c > 0 else "none") + (f"+{fallback:g}" if fallback else "")
        ckpt = runs / f"refcal_c{tag}.pt"
        if not ckpt.exists():
            try:
                calibrate_checkpoint(
                    a.checkpoint,
                    a.train,
                    out=ckpt,
                    n=1024,
                    refine_steps=a.steps,
                    width_ceiling=c if c > 0 else None,
                    width_ceiling_fallback=fallback,
                )
            except ValueError as err:
                rows[tag] = {"calibration_failed": str(err)}
                continue
        row = {}
        for part, data in (("validation", a.check), ("test", a.test)):
            report = runs / f"{part}_c{tag}"
            if not (report / "metrics.json").exists():
                evaluate(ckpt, data, out=report, n=a.n, figures=False, refine_steps=a.steps)
            row[part] = summary(report, ckpt)
        rows[tag] = row

    for tag, row in rows.items():
        if "validation" not in row:
            continue
        for part in ("validation", "test"):
            row[part]["mean_abs_distance_68_from_0.683"] = coverage_distance(row[part], "68")
        cal = torch.load(runs / f"refcal_c{tag}.pt", map_location="cpu", weights_only=False)
        per = cal["refined_posterior_calibration"].get("width_ceiling_per_latent") or {}
        row["latents_without_the_ceiling"] = [n for n, c in per.items() if not math.isfinite(c)]

    def first_rule(row: dict[str, Any]) -> bool:  # the rule first written: see the docstring
        lo, hi = row["validation"]["coverage_68_range"]
        return 0.60 <= lo and hi <= 0.80

    def rule(row: dict[str, Any]) -> bool:
        d0 = rows["none"]["validation"]["mean_abs_distance_68_from_0.683"]
        d = row["validation"]["mean_abs_distance_68_from_0.683"]
        return not row["latents_without_the_ceiling"] and d <= d0 + 0.005

    std = "log10_mstar_scatter_std_dex"
    payload = {
        **choice_header(a),
        "n_simulated": 1024,
        "ceilings": rows,
        "chosen_on_validation": choose_on_validation(rows, rule, std),
        "chosen_by_the_first_rule": choose_on_validation(rows, first_rule, std),
    }
    write_result(a.name, payload)
    return payload


if __name__ == "__main__":
    main()
