#!/bin/bash
# The packaged model's analytic issue-4 figures with the derived observables of the twenty-sixth
# submission (the light inside the stamp from the stamp's own pixels; docs/results.md), against
# the same measured with the code before it.  Run from the repository root; OLD_SRC, when set,
# is the src/ folder of a checkout of the code before (git worktree add /tmp/old f2929a5), whose
# mocks and reports are made beside the new ones.  About 10 minutes (20 with OLD_SRC) on 2 CPU
# cores.  Results: benchmarks/results/derived_release.json.
set -e
P=python
AE=src/galae/default_model/model.pt
O=runs/derived
E="$P -m galae.evaluate --no-figures --checkpoint $AE --n 400"
mkdir -p $O
$P -m galae.mock --config configs/mock_analytic.yaml --n 400 --seed 101 --out data/analytic_test.h5 overwrite=true
$E --data data/analytic_test.h5 --out $O/new_amortized
$E --data data/analytic_test.h5 --refine-steps 60 --out $O/new_refined
if [ -n "$OLD_SRC" ]; then
  PYTHONPATH=$OLD_SRC $P -m galae.mock --config configs/mock_analytic.yaml --n 400 --seed 101 --out data/analytic_test_old.h5 overwrite=true
  PYTHONPATH=$OLD_SRC $E --data data/analytic_test_old.h5 --out $O/old_amortized
  PYTHONPATH=$OLD_SRC $E --data data/analytic_test_old.h5 --refine-steps 60 --out $O/old_refined
fi
$P - "$O" <<'PY'
import json, sys, time
from pathlib import Path
sys.path.insert(0, "benchmarks")
from _common import evaluate_summary, machine, write_result
o = Path(sys.argv[1])
rows = {}
for name in ("new_amortized", "new_refined", "old_amortized", "old_refined"):
    if (o / name / "metrics.json").exists():
        s = evaluate_summary(o / name, None)
        p = json.loads((o / name / "metrics.json").read_text())["params"]
        s["mag_r_scatter_mad"] = p["mag_r"]["scatter_mad"]
        s["mag_u_scatter_mad"] = p["mag_u"]["scatter_mad"]
        s["bulge_to_total_r_scatter_mad"] = p["bulge_to_total_r"]["scatter_mad"]
        rows[name] = s
write_result("derived_release", {
    "benchmark": "derived_release",
    "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    "machine": machine(),
    "checkpoint": "packaged model",
    "data": "400 analytic test mocks (configs/mock_analytic.yaml, seed 101), made by each code",
    "what": "new_*: derived observables from the stamp's own pixels inside it (twenty-sixth "
            "submission); old_*: from a grid four times coarser (commit f2929a5)",
    "reports": rows,
})
PY
