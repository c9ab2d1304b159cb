"""Real test images, preprocessed exactly as serving does, for export parity checks."""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from slipway.contract.card import load_card
from slipway.data.scan import DatasetScan, scan_dataset
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
