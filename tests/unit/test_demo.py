from __future__ import annotations

from pathlib import Path

import pytest

from slipway.data.demo import FASHION_MNIST_CLASSES, write_demo_dataset
from slipway.data.scan import scan_dataset
from slipway.errors import DataError


def test_demo_dataset_is_real_and_deterministic(demo_data: Path, tmp_path: Path) -> None:
    scan = scan_dataset(demo_data, progress=False)
    assert scan.classes == sorted(FASHION_MNIST_CLASSES)
    assert len(scan.samples) == 600 and not scan.rejected
    assert scan.channels == 1
    again = tmp_path / "again"
    write_demo_dataset(again, per_class=60, seed=0, progress=False)
    assert scan_dataset(again, progress=False).fingerprint == scan.fingerprint
    other = tmp_path / "other"
    write_demo_dataset(other, per_class=60, seed=1, progress=False)
    assert scan_dataset(other, progress=False).fingerprint != scan.fingerprint


def test_second_call_is_a_no_op_and_foreign_folders_are_left_alone(tmp_path: Path) -> None:
    pytest.importorskip("slipway.data.demo")
    out = tmp_path / "d"
    try:
        write_demo_dataset(out, per_class=2, seed=0, progress=False)
    except DataError:
        pytest.skip("dataset-fashion-mnist not installed")
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    write_demo_dataset(out, per_class=2, seed=0, progress=False)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == stamp
    foreign = tmp_path / "mine"
    (foreign / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="not a slipway demo dataset"):
        write_demo_dataset(foreign, per_class=2, progress=False)


def test_missing_source_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        write_demo_dataset(tmp_path / "x", source=tmp_path / "empty")
