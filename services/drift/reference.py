"""Find the reference statistics of the production model: a file, a model folder, or MLflow."""

from __future__ import annotations

import logging
import tempfile
from typing import Any

from slipway.contract.mlmodel import read_layout
from slipway.contract.reference import REFERENCE_FILE, load_reference
from slipway.errors import SlipwayError
from slipway.registry.ref import ModelRef

log = logging.getLogger(__name__)

REQUIRED = ("brightness", "contrast", "confidence", "predicted_class_frequencies")


class ReferenceError(SlipwayError):
    """The reference statistics cannot be found or are incomplete."""


def reference_ref(source: str) -> ModelRef:
    """The model reference of SLIPWAY_DRIFT_REFERENCE (the one parser of the CLI and service)."""
    if not source:
        raise ReferenceError("no reference given (SLIPWAY_DRIFT_REFERENCE)")
    return ModelRef.parse(source)


def resolve_reference(source: str, tracking_uri: str = "") -> dict[str, Any]:
    """Load reference.json from a path, or from the model a reference names in MLflow.

    For a model reference only `reference.json` is downloaded (the model itself may be
    hundreds of megabytes); it is an artifact of the registered model, written by
    `prepare_dataset` and evaluation, which is the model's lineage back to its dataset.
    """
    ref = reference_ref(source)
    if ref.is_local:
        path = ref.local_path()
        if path.is_dir():
            path = path / REFERENCE_FILE
        if not path.is_file():
            raise ReferenceError(f"reference not found: {path}")
        data = load_reference(path)
    else:
        data = _from_mlflow(ref, tracking_uri)
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ReferenceError(f"reference {source} lacks {', '.join(missing)}")
    return data


def _from_mlflow(ref: ModelRef, tracking_uri: str) -> dict[str, Any]:
    from slipway.registry.client import download, mlflow_client

    try:
        resolved = ref.resolve(mlflow_client(tracking_uri))
    except Exception as exc:  # MLflow raises many types for a missing model, alias or server
        raise ReferenceError(f"cannot resolve {ref}: {exc}") from exc
    with tempfile.TemporaryDirectory(prefix="slipway-drift-") as tmp:
        try:
            return load_reference(download(resolved, f"{tmp}/file", tracking_uri, REFERENCE_FILE))
        except Exception:  # not at the top of the model: fetch all of it and look inside
            log.debug("no %s at the top of %s", REFERENCE_FILE, ref)
        try:
            root = download(resolved, tmp, tracking_uri)
            folder = read_layout(root, str(ref)).folder
        except Exception as exc:
            raise ReferenceError(f"cannot download {ref}: {exc}") from exc
        found = folder / REFERENCE_FILE
        if not found.is_file():
            raise ReferenceError(f"{ref} has no {REFERENCE_FILE}")
        log.info("reference from %s (version %s)", ref, resolved.version or "-")
        return load_reference(found)
