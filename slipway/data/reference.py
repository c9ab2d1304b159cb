"""Input statistics of a dataset's train split: the data half of a model's drift reference."""

from __future__ import annotations

from typing import Any

import numpy as np

from slipway.contract.reference import histogram
from slipway.data.scan import DatasetScan


def dataset_reference(scan: DatasetScan) -> dict[str, Any]:
    """Input statistics of the train split (values kept for two-sample tests)."""
    train = scan.split("train") or scan.samples
    freq = np.bincount([s.label for s in train], minlength=len(scan.classes)).astype(float)
    return {
        "fingerprint": scan.fingerprint,
        "classes": scan.classes,
        "n": len(train),
        "brightness": histogram(np.array([s.brightness for s in train])),
        "contrast": histogram(np.array([s.contrast for s in train])),
        "class_frequencies": dict(
            zip(scan.classes, (freq / max(freq.sum(), 1)).tolist(), strict=True)
        ),
    }
