"""Find the reference statistics of the production model: a file, a model folder, or MLflow."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

from slipway.contract.reference import REFERENCE_FILE, load_reference
from slipway.errors import SlipwayError

log = logging.getLogger(__name__)

REQUIRED = ("brightness", "contrast", "confidence", "predicted_class_frequencies")


class ReferenceError(SlipwayError):
    """The reference statistics cannot be found or are incomplete."""


def resolve_reference(source: str, tracking_uri: str = "") -> dict[str, Any]:
    """Load reference.json from a path or a `models:/<name>@<alias>` URI.

    For a registry URI the model version's artifacts are downloaded to a temporary folder; the
    version's folder carries the reference.json that `prepare_dataset` and evaluation wrote,
    which is the model's lineage back to its dataset.
    """
    if not source:
        raise ReferenceError("no reference given (SLIPWAY_DRIFT_REFERENCE)")
    if source.startswith("models:/"):
        data = _from_registry(source, tracking_uri)
    else:
        path = Path(source)
        if path.is_dir():
            path = path / REFERENCE_FILE
        if not path.is_file():
            raise ReferenceError(f"reference not found: {path}")
        data = load_reference(path)
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ReferenceError(f"reference {source} lacks {', '.join(missing)}")
    return data


def _from_registry(uri: str, tracking_uri: str) -> dict[str, Any]:
    from slipway.errors import SlipwayError
    from slipway.registry.client import Registry, download_model_version

    registry = Registry(tracking_uri)
    try:
        version = registry.get(uri.removeprefix("models:/").rstrip("/"))
    except SlipwayError as exc:
        raise ReferenceError(f"cannot resolve {uri}: {exc}") from exc
    except Exception as exc:  # MLflow raises many types for a missing model or alias
        raise ReferenceError(f"cannot resolve {uri}: {exc}") from exc
    name, number = version.name, version.version
    with tempfile.TemporaryDirectory(prefix="slipway-drift-") as tmp:
        try:  # just the file first: the model folder may be hundreds of megabytes
            single = download_model_version(
                registry.client, name, number, f"{tmp}/file", REFERENCE_FILE
            )
            return load_reference(single)
        except Exception:  # not at the top of the folder: fetch the folder and search it
            log.debug("no %s at the top of %s", REFERENCE_FILE, uri)
        try:
            folder = download_model_version(registry.client, name, number, tmp)
        except Exception as exc:
            raise ReferenceError(f"cannot download {uri}: {exc}") from exc
        candidates = [folder / REFERENCE_FILE, *sorted(folder.rglob(REFERENCE_FILE))]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise ReferenceError(f"{uri} has no {REFERENCE_FILE}")
        log.info("reference from %s v%s (%s)", name, number, found.relative_to(folder))
        return load_reference(found)
