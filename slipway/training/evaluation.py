"""Evaluate a model folder on one split of a dataset and write a report."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from slipway.contract.card import load_card
from slipway.contract.reference import prediction_reference, write_reference
from slipway.data.scan import DatasetScan, scan_dataset
from slipway.errors import DataError
from slipway.training.datasets import ImageDataset
from slipway.training.loop import pick_device
from slipway.training.metrics import classification_report
from slipway.training.models import load_trained

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"


def predict_split(
    model_dir: str | os.PathLike[str],
    scan: DatasetScan,
    split: str = "test",
    batch_size: int = 256,
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities (N, C) and true labels (N,) for one split."""
    card = load_card(model_dir)
    if card.classes != scan.classes:
        raise DataError(
            f"the dataset classes {scan.classes} differ from the model's classes {card.classes}"
        )
    samples = scan.split(split)
    if not samples:
        raise DataError(f"the {split} split of {scan.root} is empty")
    dev = pick_device(device)
    model = load_trained(model_dir, str(dev))
    dataset = ImageDataset(scan.root, samples, card.transform, cache=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size)
    probs: list[np.ndarray] = []
    with torch.inference_mode():
        for images, _ in tqdm(loader, desc=f"evaluate {split}", unit="batch", leave=False):
            probs.append(torch.softmax(model(images.to(dev)).float(), dim=1).cpu().numpy())
    labels = np.array([s.label for s in samples], dtype=np.int64)
    return np.concatenate(probs), labels


def evaluate(
    model_dir: str | os.PathLike[str],
    data: str | os.PathLike[str] | DatasetScan,
    split: str = "test",
    write: bool = True,
) -> dict[str, Any]:
    """Evaluate on `split`, store the headline metrics in the card, write report.json/.md."""
    scan = data if isinstance(data, DatasetScan) else scan_dataset(data)
    probs, labels = predict_split(model_dir, scan, split)
    report = classification_report(labels, probs, scan.classes)
    report["split"] = split
    report["dataset_fingerprint"] = scan.fingerprint
    if write:
        out = Path(model_dir)
        (out / REPORT_JSON).write_text(json.dumps(report, indent=1))
        (out / REPORT_MD).write_text(render_markdown(report))
        card = load_card(model_dir)
        card.metrics.update(
            {
                f"{split}_accuracy": report["accuracy"],
                f"{split}_macro_f1": report["macro_f1"],
                f"{split}_ece": report["ece"],
            }
        )
        card.save(model_dir)
        if split == "test":
            write_reference(model_dir, prediction_reference(probs, scan.classes))
    return report


def render_markdown(report: dict[str, Any]) -> str:
    """A human-readable report: headline numbers, per-class table, confusion matrix."""
    lines = [
        f"# Evaluation on the {report.get('split', 'test')} split ({report['n']} images)",
        "",
        f"- accuracy: {report['accuracy']:.4f}",
        f"- macro-F1: {report['macro_f1']:.4f}",
        f"- expected calibration error: {report['ece']:.4f}",
        "",
        "| class | precision | recall | f1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["per_class"].items():
        lines.append(
            f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} "
            f"| {row['support']} |"
        )
    classes = report["classes"]
    lines += ["", "Confusion matrix (rows: true, columns: predicted)", ""]
    lines.append("| | " + " | ".join(classes) + " |")
    lines.append("|---" * (len(classes) + 1) + "|")
    for name, row in zip(classes, report["confusion_matrix"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"
