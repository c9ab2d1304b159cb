"""Scan, validate, split and fingerprint an ImageFolder dataset (one folder per class)."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from slipway.contract.preprocessing import ACCEPTED_MODES, GRAY_MODES, to_mode
from slipway.contract.reference import HIST_BINS
from slipway.data.storage import open_root
from slipway.errors import DataError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitFractions:
    """Fractions of the dataset assigned to validation and test; the rest is training."""

    val: float = 0.1
    test: float = 0.1

    def __post_init__(self) -> None:
        if self.val < 0 or self.test < 0 or self.val + self.test >= 1:
            raise ValueError("val and test fractions must be >= 0 and sum to less than 1")


def assign_split(relpath: str, fractions: SplitFractions = SplitFractions()) -> str:
    """Stable split from a hash of the relative path: adding files never moves existing ones."""
    digest = hashlib.sha256(relpath.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    if position < fractions.test:
        return "test"
    if position < fractions.test + fractions.val:
        return "val"
    return "train"


@dataclass
class Sample:
    """One valid image of the dataset."""

    path: str
    label: int
    split: str
    sha256: str
    width: int
    height: int
    mode: str
    brightness: float
    contrast: float


@dataclass
class Rejected:
    """A file that was not used, and why."""

    path: str
    reason: str


@dataclass
class DatasetScan:
    """Result of scanning a dataset: valid samples, rejected files and summary statistics."""

    root: str
    classes: list[str]
    samples: list[Sample]
    rejected: list[Rejected] = field(default_factory=list)
    fingerprint: str = ""
    stats: dict[str, Any] = field(default_factory=dict)

    def split(self, name: str) -> list[Sample]:
        """Samples of one split ("train", "val" or "test")."""
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, int]:
        counts = {name: 0 for name in SPLITS}
        for sample in self.samples:
            counts[sample.split] += 1
        counts["total"] = len(self.samples)
        counts["rejected"] = len(self.rejected)
        return counts

    @property
    def channels(self) -> int:
        """1 when every image is grayscale, else 3."""
        return 1 if all(s.mode in GRAY_MODES for s in self.samples) else 3

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "classes": self.classes,
            "fingerprint": self.fingerprint,
            "counts": self.counts(),
            "stats": self.stats,
            "samples": [asdict(s) for s in self.samples],
            "rejected": [asdict(r) for r in self.rejected],
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the manifest as JSON (files, labels, split, statistics)."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DatasetScan:
        data = json.loads(Path(path).read_text())
        return cls(
            root=data["root"],
            classes=list(data["classes"]),
            samples=[Sample(**s) for s in data["samples"]],
            rejected=[Rejected(**r) for r in data["rejected"]],
            fingerprint=data["fingerprint"],
            stats=data["stats"],
        )


def _check_image(payload: bytes) -> tuple[Image.Image | None, str]:
    if not payload:
        return None, "empty file (0 bytes)"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(payload))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None, "too many pixels (decompression bomb guard)"
    except UnidentifiedImageError:
        return None, "not a decodable image"
    except (OSError, SyntaxError, ValueError) as exc:
        return None, f"truncated or corrupt image: {exc}"
    if image.mode not in ACCEPTED_MODES:
        return None, f"unsupported pixel mode {image.mode!r}"
    if min(image.size) < 1:
        return None, "image has no pixels"
    return image, ""


def _list_classes(fs: Any, root: str) -> list[str]:
    if not fs.exists(root):
        raise DataError(f"dataset folder not found: {root}")
    if not fs.isdir(root):
        raise DataError(f"dataset path is not a folder: {root}")
    names = sorted(
        Path(entry["name"]).name
        for entry in fs.ls(root, detail=True)
        if entry["type"] == "directory" and not Path(entry["name"]).name.startswith(".")
    )
    if len(names) < 2:
        raise DataError(
            f"{root} needs at least two class folders (ImageFolder layout: ROOT/<class>/<image>), "
            f"found {len(names)}"
        )
    return names


def _stats_from(accum: dict[str, Any], samples: list[Sample], classes: list[str]) -> dict[str, Any]:
    stats: dict[str, Any] = {}
    for key in ("gray", "rgb"):
        n = max(accum["pixels"], 1)
        mean = accum[f"{key}_sum"] / n
        var = np.maximum(accum[f"{key}_sq"] / n - mean**2, 0.0)
        stats[f"{key}_mean"] = [round(float(v), 6) for v in np.atleast_1d(mean)]
        stats[f"{key}_std"] = [round(max(float(v), 1e-6), 6) for v in np.sqrt(np.atleast_1d(var))]
    edges = np.linspace(0.0, 1.0, HIST_BINS + 1)
    train = [s for s in samples if s.split == "train"] or samples
    for feature in ("brightness", "contrast"):
        values = np.array([getattr(s, feature) for s in train], dtype=np.float64)
        hist, _ = np.histogram(np.clip(values, 0, 1), bins=edges)
        stats[feature] = {
            "edges": [round(float(e), 4) for e in edges],
            "counts": hist.astype(int).tolist(),
            "mean": float(values.mean()) if len(values) else 0.0,
            "std": float(values.std()) if len(values) else 0.0,
        }
    freq = np.bincount([s.label for s in train], minlength=len(classes))
    stats["class_frequencies"] = {c: int(freq[i]) for i, c in enumerate(classes)}
    return stats


def scan_dataset(
    uri: str | os.PathLike[str],
    fractions: SplitFractions = SplitFractions(),
    progress: bool = True,
) -> DatasetScan:
    """Scan an ImageFolder, decode every file, and report instead of crashing on bad ones.

    Per-channel mean/std and the brightness/contrast histograms are computed on the train split
    only, so evaluation data never leaks into normalisation or drift references.
    """
    fs, root = open_root(uri)
    classes = _list_classes(fs, root)
    samples: list[Sample] = []
    rejected: list[Rejected] = []
    accum: dict[str, Any] = {"pixels": 0, "gray_sum": 0.0, "gray_sq": 0.0}
    accum.update(rgb_sum=np.zeros(3), rgb_sq=np.zeros(3))
    files: list[tuple[int, str]] = []
    for label, name in enumerate(classes):
        found = sorted(fs.find(f"{root}/{name}"))
        files.extend((label, f) for f in found)
    content_hashes: list[tuple[str, str]] = []
    for label, full in tqdm(files, desc="scan", unit="img", disable=not progress, leave=False):
        relpath = full[len(root) :].lstrip("/")
        if any(part.startswith(".") for part in relpath.split("/")):
            continue
        if Path(relpath).suffix.lower() not in IMAGE_EXTENSIONS:
            rejected.append(Rejected(relpath, "not an image file extension"))
            continue
        payload = fs.cat_file(full)
        image, reason = _check_image(payload)
        if image is None:
            rejected.append(Rejected(relpath, reason))
            continue
        digest = hashlib.sha256(payload).hexdigest()
        content_hashes.append((relpath, digest))
        gray = np.asarray(_to_gray(image), dtype=np.float64) / 255.0
        split = assign_split(relpath, fractions)
        samples.append(
            Sample(
                path=relpath,
                label=label,
                split=split,
                sha256=digest,
                width=image.size[0],
                height=image.size[1],
                mode=image.mode,
                brightness=round(float(gray.mean()), 6),
                contrast=round(float(gray.std()), 6),
            )
        )
        if split == "train":
            rgb = np.asarray(_to_rgb(image), dtype=np.float64).reshape(-1, 3) / 255.0
            accum["pixels"] += gray.size
            accum["gray_sum"] += gray.sum()
            accum["gray_sq"] += (gray**2).sum()
            accum["rgb_sum"] += rgb.sum(axis=0)
            accum["rgb_sq"] += (rgb**2).sum(axis=0)
    empty = [c for i, c in enumerate(classes) if not any(s.label == i for s in samples)]
    if empty:
        raise DataError(f"class folder(s) without any valid image: {', '.join(empty)}")
    if rejected:
        log.warning("%d file(s) rejected, first: %s (%s)", len(rejected), *_first(rejected))
    return DatasetScan(
        root=str(uri),
        classes=classes,
        samples=samples,
        rejected=rejected,
        fingerprint=fingerprint(content_hashes),
        stats=_stats_from(accum, samples, classes),
    )


def _first(rejected: list[Rejected]) -> tuple[str, str]:
    return rejected[0].path, rejected[0].reason


def _to_gray(image: Image.Image) -> Image.Image:
    return to_mode(image, "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    return to_mode(image, "RGB")


def fingerprint(content_hashes: list[tuple[str, str]]) -> str:
    """sha256 over sorted (relative path, content sha256) pairs: a renamed or changed byte shows."""
    digest = hashlib.sha256()
    for relpath, content in sorted(content_hashes):
        digest.update(relpath.encode("utf-8") + b"\0" + content.encode("ascii") + b"\n")
    return digest.hexdigest()


def normalisation_for(
    scan: DatasetScan, channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std for the given channel count, from the train split statistics."""
    key = "gray" if channels == 1 else "rgb"
    mean = tuple(scan.stats[f"{key}_mean"])
    std = tuple(scan.stats[f"{key}_std"])
    if any(math.isnan(v) for v in mean + std):
        raise DataError("dataset statistics are not finite")
    return mean, std
