"""Where a served model comes from: a local model folder or an MLflow registry alias.

`resolve()` is cheap and says which version a source points at now (the alias's version, or a
fingerprint of the folder's files); `fetch()` makes that version available as a local model
folder. The hot reloader compares resolutions to decide when to load.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from slipway.contract.card import CARD_FILE, ONNX_FILE, TORCHSCRIPT_FILE, load_card
from slipway.errors import ModelError

log = logging.getLogger(__name__)

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^@/]+)@(?P<alias>[^@/]+)$")


@dataclass(frozen=True)
class Resolved:
    """One concrete version of a source."""

    source: str
    version: str
    alias: str
    registered_name: str = ""
    created: float = 0.0
    run_id: str = ""


class ModelSource:
    """A source string as configured: `models:/<name>@<alias>` or a local folder path."""

    def __init__(self, source: str, tracking_uri: str = "", cache_dir: str = "") -> None:
        self.source = source
        self.tracking_uri = tracking_uri
        self.cache_dir = Path(cache_dir or "/tmp/slipway-models")
        match = _REGISTRY_URI.match(source)
        self.registered_name = match["name"] if match else ""
        self.alias = match["alias"] if match else ""
        self._digests: dict[str, str] = {}
        if not match and source.startswith("models:/"):
            raise ModelError(f"registry source must look like models:/<name>@<alias>: {source!r}")

    @property
    def is_registry(self) -> bool:
        return bool(self.registered_name)

    def resolve(self) -> Resolved:
        """The version the source points at now; raises ModelError when it cannot be found."""
        return self._resolve_registry() if self.is_registry else self._resolve_folder()

    def fetch(self, resolved: Resolved) -> Path:
        """A local model folder holding `resolved`, downloaded into the cache when remote."""
        if not self.is_registry:
            return Path(self.source)
        # The run id keeps two registries (a fresh `make run`, another cluster) that both
        # have a "version 1" from sharing one cache entry.
        key = f"{resolved.version}-{resolved.run_id[:12]}" if resolved.run_id else resolved.version
        target = self.cache_dir / _safe(resolved.registered_name) / _safe(key)
        if (target / CARD_FILE).is_file():
            return target
        from slipway.registry.client import download_model_version, mlflow_client

        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        uri = f"models:/{resolved.registered_name}/{resolved.version}"
        try:
            download_model_version(
                mlflow_client(self.tracking_uri),
                resolved.registered_name,
                resolved.version,
                partial,
            )
        except Exception as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise ModelError(f"cannot download {uri}: {exc}") from exc
        folder = _find_model_folder(partial)
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(folder), target)
        shutil.rmtree(partial, ignore_errors=True)
        log.info("downloaded %s to %s", uri, target)
        return target

    def _resolve_registry(self) -> Resolved:
        from slipway.registry.client import mlflow_client

        client = mlflow_client(self.tracking_uri)
        try:
            mv = client.get_model_version_by_alias(self.registered_name, self.alias)
        except Exception as exc:
            raise ModelError(f"cannot resolve {self.source}: {exc}") from exc
        return Resolved(
            source=self.source,
            version=str(mv.version),
            alias=self.alias,
            registered_name=self.registered_name,
            created=(mv.creation_timestamp or 0) / 1000.0,
            run_id=mv.run_id or "",
        )

    def _resolve_folder(self) -> Resolved:
        folder = Path(self.source)
        card = folder / CARD_FILE
        if not card.is_file():
            raise ModelError(f"{folder} is not a slipway model folder (no {CARD_FILE})")
        files = [folder / n for n in (CARD_FILE, ONNX_FILE, TORCHSCRIPT_FILE)]
        files = [f for f in files if f.is_file()]
        signature = ";".join(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files)
        if signature not in self._digests:
            # The version of a folder is a hash of its content, so a copy keeps its version;
            # the cheap stat signature decides when to hash again.
            digest = hashlib.sha256()
            for path in files:
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
            self._digests = {signature: digest.hexdigest()[:12]}
        created = 0.0
        try:
            created = datetime.fromisoformat(load_card(folder).created_at).timestamp()
        except (ModelError, ValueError):
            created = card.stat().st_mtime
        return Resolved(
            source=self.source, version=self._digests[signature], alias="local", created=created
        )


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _find_model_folder(root: Path) -> Path:
    """The folder holding model_card.json: the download root or one level below it."""
    if (root / CARD_FILE).is_file():
        return root
    for child in sorted(root.iterdir()):
        if child.is_dir() and (child / CARD_FILE).is_file():
            return child
    raise ModelError(f"the registered artifacts have no {CARD_FILE}")
