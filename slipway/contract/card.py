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
