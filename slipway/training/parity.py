"""Real test images, preprocessed exactly as serving does, for export parity checks."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import numpy as np
from PIL import Image

from slipway.contract.card import load_card
from slipway.data.scan import DatasetScan, Sample, scan_dataset
from slipway.data.storage import open_root
from slipway.errors import DataError


def parity_inputs(
    model_dir: str | os.PathLike[str],
    data: str | os.PathLike[str] | DatasetScan,
    count: int = 64,
    split: str = "test",
) -> np.ndarray:
    """A float32 batch (N, C, H, W) of the first `count` images of `split`."""
    scan = data if isinstance(data, DatasetScan) else scan_dataset(data, progress=False)
    samples = scan.split(split)[:count] or scan.samples[:count]
    if not samples:
        raise DataError("no images available for the parity check")
    prep = load_card(model_dir).transform
    fs, root = open_root(scan.root)
    arrays = []
    for sample in samples:
        with Image.open(io.BytesIO(fs.cat_file(f"{root}/{sample.path}"))) as image:
            arrays.append(prep(image))
    return np.stack(arrays)


def spread_samples(scan: DatasetScan, split: str, count: int) -> list[Sample]:
    """`count` samples of `split` evenly spaced over it, so every class is represented."""
    samples = scan.split(split)
    if count >= len(samples):
        return samples
    picks = np.linspace(0, len(samples) - 1, count).round().astype(int)
    return [samples[i] for i in picks]


def batches(
    model_dir: str | os.PathLike[str],
    scan: DatasetScan,
    samples: list[Sample],
    batch_size: int = 128,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(inputs, labels) chunks of `samples`, preprocessed as serving does, memory bounded."""
    prep = load_card(model_dir).transform
    fs, root = open_root(scan.root)
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        arrays = []
        for sample in chunk:
            with Image.open(io.BytesIO(fs.cat_file(f"{root}/{sample.path}"))) as image:
                arrays.append(prep(image))
        yield np.stack(arrays), np.array([s.label for s in chunk], dtype=np.int64)
