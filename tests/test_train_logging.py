"""Training logs: a CSV with fixed columns, and TensorBoard event files."""

import csv
from pathlib import Path

from galae.train import _Logger


def test_csv_and_tensorboard_logs(tmp_path: Path) -> None:
    log = _Logger(tmp_path, enabled=True, tensorboard=True)
    log.log(10, {"loss": 1.5, "loss_sleep": 1.5, "lr": 1e-3})
    log.log(20, {"loss": 1.2, "val_chi2_median": 1.1})  # a validation column appears later
    log.close()
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert [r["step"] for r in rows] == ["10", "20"]
    assert rows[1]["val_chi2_median"] == "1.1"
    assert rows[0]["val_chi2_median"] == ""
    assert list((tmp_path / "tb").glob("events.out.tfevents.*")), "no TensorBoard event file"
