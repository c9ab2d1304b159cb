from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slipway.data.scan import (
    DatasetScan,
    SplitFractions,
    assign_split,
    normalisation_for,
    scan_dataset,
)
from slipway.errors import DataError


def _png(path: Path, value: int, mode: str = "L", size: tuple[int, int] = (12, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, value, value)).save(path)


def _make(root: Path, per_class: int = 20) -> Path:
    for cls, base in (("cat", 40), ("dog", 200)):
        for i in range(per_class):
            _png(root / cls / f"{i:03d}.png", base + i % 10)
    return root


def test_scan_counts_classes_and_rejects_bad_files(tmp_path: Path) -> None:
    root = _make(tmp_path / "ds")
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "cat" / "text.png").write_bytes(b"this is not an image")
    good = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good, format="PNG")
    (root / "dog" / "truncated.png").write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    Image.fromarray(np.ones((8, 8), dtype=np.float32)).save(root / "dog" / "float.tif")
    (root / "dog" / "notes.txt").write_text("hello")
    (root / "dog" / ".hidden.png").write_bytes(b"")

    scan = scan_dataset(root, progress=False)

    assert scan.classes == ["cat", "dog"]
    assert len(scan.samples) == 40
    reasons = {r.path: r.reason for r in scan.rejected}
    assert reasons["cat/empty.png"].startswith("empty file")
    assert reasons["cat/text.png"] == "not a decodable image"
    assert "truncated" in reasons["dog/truncated.png"]
    assert "mode 'F'" in reasons["dog/float.tif"]
    assert reasons["dog/notes.txt"] == "not an image file extension"
    assert "dog/.hidden.png" not in reasons
    assert scan.channels == 1


def test_split_is_stable_when_files_are_added(tmp_path: Path) -> None:
    root = _make(tmp_path / "ds", per_class=60)
    before = {s.path: s.split for s in scan_dataset(root, progress=False).samples}
    for i in range(60, 120):
        _png(root / "cat" / f"{i:03d}.png", 90)
    after = {s.path: s.split for s in scan_dataset(root, progress=False).samples}
    assert all(after[path] == split for path, split in before.items())
    assert len(after) == 180
    counts = {name: list(after.values()).count(name) for name in ("train", "val", "test")}
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0


def test_split_fractions_follow_hash() -> None:
    paths = [f"c/{i}.png" for i in range(4000)]
    splits = [assign_split(p, SplitFractions(val=0.2, test=0.1)) for p in paths]
    assert abs(splits.count("test") / 4000 - 0.1) < 0.02
    assert abs(splits.count("val") / 4000 - 0.2) < 0.02
    with pytest.raises(ValueError):
        SplitFractions(val=0.6, test=0.5)


def test_fingerprint_changes_when_one_byte_changes(tmp_path: Path) -> None:
    root = _make(tmp_path / "ds")
    first = scan_dataset(root, progress=False).fingerprint
    assert scan_dataset(root, progress=False).fingerprint == first
    target = root / "dog" / "005.png"
    data = bytearray(target.read_bytes())
    img = Image.open(io.BytesIO(bytes(data)))
    pixels = np.asarray(img).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(target)
    assert scan_dataset(root, progress=False).fingerprint != first
    shutil.move(root / "dog" / "005.png", root / "dog" / "renamed.png")
    assert scan_dataset(root, progress=False).fingerprint != first


def test_statistics_come_from_train_split(tmp_path: Path) -> None:
    root = _make(tmp_path / "ds", per_class=50)
    scan = scan_dataset(root, progress=False)
    train = scan.split("train")
    expected = np.mean([s.brightness for s in train])
    assert scan.stats["gray_mean"][0] == pytest.approx(expected, abs=1e-4)
    assert sum(scan.stats["brightness"]["counts"]) == len(train)
    assert sum(scan.stats["class_frequencies"].values()) == len(train)
    mean, std = normalisation_for(scan, 3)
    assert len(mean) == 3 and len(std) == 3


def test_manifest_round_trip(tmp_path: Path) -> None:
    scan = scan_dataset(_make(tmp_path / "ds"), progress=False)
    scan.save(tmp_path / "manifest.json")
    loaded = DatasetScan.load(tmp_path / "manifest.json")
    assert loaded.fingerprint == scan.fingerprint
    assert loaded.samples == scan.samples


def test_clear_errors_for_unusable_datasets(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        scan_dataset(tmp_path / "missing", progress=False)
    one = tmp_path / "one"
    _png(one / "only" / "a.png", 3)
    with pytest.raises(DataError, match="at least two class folders"):
        scan_dataset(one, progress=False)
    root = _make(tmp_path / "ds")
    (root / "bird").mkdir()
    (root / "bird" / "broken.png").write_bytes(b"xx")
    with pytest.raises(DataError, match="bird"):
        scan_dataset(root, progress=False)
