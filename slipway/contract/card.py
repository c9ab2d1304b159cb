"""The model card: a small JSON file that makes a model folder self-describing.

A model folder holds `model_card.json`, the weights (`model.pt`) and, once exported,
`model.onnx` / `model.ts`. Serving reads only the card and the ONNX file, so this module imports
neither torch nor anything heavy.
"""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from slipway.contract.preprocessing import Preprocessing
from slipway.errors import ModelError

CARD_FILE = "model_card.json"
WEIGHTS_FILE = "model.pt"
ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
TORCHSCRIPT_FILE = "model.ts"


class DatasetInfo(BaseModel):
    uri: str = ""
    fingerprint: str = ""
    counts: dict[str, int] = Field(default_factory=dict)


class ModelCard(BaseModel):
    """Everything needed to use, compare and trace a trained model."""

    schema_version: int = 1
    name: str = "slipway-classifier"
    arch: str
    classes: list[str]
    preprocessing: dict[str, Any]
    dataset: DatasetInfo = Field(default_factory=DatasetInfo)
    training: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    export: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def transform(self) -> Preprocessing:
        return Preprocessing.from_dict(self.preprocessing)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def save(self, model_dir: str | os.PathLike[str]) -> Path:
        path = Path(model_dir) / CARD_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        os.replace(tmp, path)
        return path


def load_card(model_dir: str | os.PathLike[str]) -> ModelCard:
    """Read the card of a model folder with a clear error when the folder is not one."""
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise ModelError(f"{model_dir} is not a slipway model folder (no {CARD_FILE})")
    try:
        return ModelCard.model_validate(json.loads(path.read_text()))
    except ValueError as exc:
        raise ModelError(f"{path} is not a valid model card: {exc}") from exc


def int8_servable(export: dict[str, Any]) -> bool:
    """Whether the export's INT8 model passed its accuracy gate (a card without one: no)."""
    section = export.get("int8")
    return isinstance(section, dict) and section.get("servable") is True


def served_precision(export: dict[str, Any]) -> str:
    """The precision a server with `precision: auto` is expected to serve.

    INT8 only when it passed its gate and measured faster at batch 1 than FP32 at export (on a
    tiny model, quantize/dequantize work can outweigh the INT8 arithmetic); otherwise FP32.
    """
    if not int8_servable(export):
        return "fp32"
    int8_ms, fp32_ms = export.get("int8_latency_b1_p50_ms"), export.get("latency_b1_p50_ms")
    if isinstance(int8_ms, int | float) and isinstance(fp32_ms, int | float):
        return "int8" if int8_ms <= fp32_ms else "fp32"
    return "int8"


def served_measurement(export: dict[str, Any], key: str) -> float | None:
    """An export measurement (`latency_b1_p95_ms`) of the variant that will be served."""
    prefix = "int8_" if export.get("serve_precision", served_precision(export)) == "int8" else ""
    value = export.get(prefix + key)
    return float(value) if isinstance(value, int | float) else None


def library_versions(
    names: tuple[str, ...] = ("torch", "torchvision", "numpy", "pillow"),
) -> dict[str, str]:
    """Installed versions of the libraries that shape a model, for reproducibility."""
    versions = {"python": platform.python_version()}
    for name in (*names, "slipway"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
