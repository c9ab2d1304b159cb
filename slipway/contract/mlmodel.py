"""A registered slipway model as an MLflow model: the model folder plus an `MLmodel` file.

The files of the model folder sit at the root of the MLflow model directory, and `MLmodel` adds
two flavors over them: `onnx` (the ONNX file) and `python_function` (loader `slipway.pyfunc`:
images in, class, confidence and probabilities out, with the card's preprocessing), while
`code/` carries the torch-free part of slipway that loader imports. So the same download is an
MLflow model (`mlflow.pyfunc.load_model`, `mlflow models serve`) and a model folder (the
inference service, the drift monitor, the promotion gate).

Versions registered before slipway logged MLflow models are a bare model folder; they still
read as that folder. This module reads the layout with PyYAML only (no MLflow).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from slipway.contract.card import CARD_FILE, ONNX_FILE
from slipway.errors import ModelError

MLMODEL_FILE = "MLmodel"
PYFUNC_LOADER = "slipway.pyfunc"
CODE_DIR = "code"
REREGISTER = "re-register its model folder with `slipway registry register FOLDER --name NAME`"


@dataclass(frozen=True)
class ModelLayout:
    """Where the model folder is inside a downloaded model, and how it was registered."""

    folder: Path
    mlflow_model: bool
    onnx_file: str = ONNX_FILE

    @property
    def onnx_path(self) -> Path:
        return self.folder / self.onnx_file


def read_layout(root: str | os.PathLike[str], what: str = "") -> ModelLayout:
    """The model folder in `root` (a downloaded version, a logged model or a folder).

    An MLflow model must be one slipway logged (its pyfunc loader is `slipway.pyfunc`); a
    folder without `MLmodel` is the previous format (the card at the root or one level down).
    Anything else is one `ModelError` saying how to register it again.
    """
    base = Path(root)
    what = what or str(base)
    mlmodel = base / MLMODEL_FILE
    if mlmodel.is_file():
        flavors = _flavors(mlmodel, what)
        loader = (flavors.get("python_function") or {}).get("loader_module")
        if loader != PYFUNC_LOADER or not (base / CARD_FILE).is_file():
            names = ", ".join(sorted(flavors)) or "none"
            raise ModelError(
                f"{what} is an MLflow model slipway did not log (flavors: {names}); {REREGISTER}"
            )
        onnx = (flavors.get("onnx") or {}).get("data", ONNX_FILE)
        return ModelLayout(base, True, str(onnx))
    children = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    for folder in (base, *children):
        if (folder / CARD_FILE).is_file():
            return ModelLayout(folder, False)
    raise ModelError(f"{what} holds neither an {MLMODEL_FILE} nor a {CARD_FILE}; {REREGISTER}")


def _flavors(path: Path, what: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"{what}: unreadable {MLMODEL_FILE}: {exc}") from exc
    flavors = data.get("flavors") if isinstance(data, dict) else None
    return flavors if isinstance(flavors, dict) else {}
