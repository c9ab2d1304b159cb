"""Where a served model comes from: any model reference (`slipway.registry.ref.ModelRef`).

`resolve()` is cheap and says which version a source points at now (the version an alias or
`models:/NAME` names, a pinned version, a logged model, or a fingerprint of a folder's files);
`fetch()` makes that version available as a local model folder, downloading the MLflow model
once into the model cache. A pinned reference (`models:/NAME/3`, `models:/m-...`, `runs:/...`)
resolves to the same version forever, so the hot reloader does not poll it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from slipway.contract.card import CARD_FILE, ONNX_FILE, TORCHSCRIPT_FILE, load_card
from slipway.contract.mlmodel import REREGISTER, read_layout
from slipway.errors import ModelError, SlipwayError
from slipway.registry.ref import ModelRef, RefKind, ResolvedModel

log = logging.getLogger(__name__)

# What /v1/models and the `alias` metric label say about how a source follows its model.
LABELS = {
    RefKind.LATEST: "latest",
    RefKind.VERSION: "pinned",
    RefKind.LOGGED_MODEL: "pinned",
    RefKind.RUN: "pinned",
    RefKind.PATH: "local",
    RefKind.URI: "remote",
}


@dataclass(frozen=True)
class Resolved:
    """One concrete version of a source."""

    source: str
    version: str
    alias: str
    registered_name: str = ""
    created: float = 0.0
    run_id: str = ""
    model_id: str = ""
    artifact_uri: str = ""


class ModelSource:
    """A configured source: a model reference in any of the forms `ModelRef` reads."""

    def __init__(self, source: str, tracking_uri: str = "", cache_dir: str = "") -> None:
        self.source = source
        self.ref = ModelRef.parse(source)
        self.tracking_uri = tracking_uri
        self.cache_dir = Path(cache_dir or "/tmp/slipway-models")
        self._digests: dict[str, str] = {}

    @property
    def registered_name(self) -> str:
        return self.ref.name

    @property
    def follows(self) -> bool:
        """False for a pinned reference: it always names the same model."""
        return self.ref.follows

    def resolve(self) -> Resolved:
        """The version the source points at now; raises ModelError when it cannot be found."""
        if self.ref.is_local:
            return self._resolve_folder()
        if self.ref.kind is RefKind.URI:
            return self._resolve_uri()
        from slipway.registry.client import mlflow_client

        try:
            found = self.ref.resolve(mlflow_client(self.tracking_uri))
        except SlipwayError as exc:
            raise ModelError(f"cannot resolve {self.source}: {exc}") from exc
        except Exception as exc:  # an unreachable server raises many types
            raise ModelError(f"cannot resolve {self.source}: {exc}") from exc
        return Resolved(
            source=self.source,
            version=found.version or found.model_id or found.run_id,
            alias=self.ref.alias or LABELS[self.ref.kind],
            registered_name=found.name,
            created=found.created,
            run_id=found.run_id,
            model_id=found.model_id,
            artifact_uri=found.artifact_uri,
        )

    def fetch(self, resolved: Resolved) -> Path:
        """A local model folder holding `resolved`, downloaded into the cache when remote."""
        if self.ref.is_local:
            return self.ref.local_path()
        # The model or run id keeps two registries (a fresh `make run`, another cluster) that
        # both have a "version 1" from sharing one cache entry.
        unique = resolved.model_id or resolved.run_id[:12]
        key = resolved.version
        if unique and unique not in key:
            key = f"{key}-{unique}"
        group = resolved.registered_name or self.ref.kind.value
        target = self.cache_dir / _safe(group) / _safe(key)
        if (target / CARD_FILE).is_file():
            return target
        partial = target.with_name(target.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            root = self._download(resolved, partial)
            layout = read_layout(root, self.source)
        except Exception:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if not layout.mlflow_model:
            log.warning(
                "%s (version %s) is a folder registered before slipway logged MLflow models; "
                "serving it as it is. For an MLflow model, %s",
                self.source, resolved.version, REREGISTER,
            )  # fmt: skip
        shutil.rmtree(target, ignore_errors=True)
        shutil.move(str(layout.folder), target)
        shutil.rmtree(partial, ignore_errors=True)
        log.info("downloaded %s (version %s) to %s", self.source, resolved.version, target)
        return target

    def _download(self, resolved: Resolved, dst: Path, path: str = "") -> Path:
        from slipway.registry.client import download

        where = ResolvedModel(self.ref, resolved.artifact_uri or self.ref.path)
        try:
            return download(where, dst, self.tracking_uri, path)
        except Exception as exc:
            raise ModelError(f"cannot download {self.source}: {exc}") from exc

    def _resolve_uri(self) -> Resolved:
        """An object-store folder: its version is a hash of its model card (small to fetch)."""
        with tempfile.TemporaryDirectory(prefix="slipway-card-") as tmp:
            resolved = Resolved(self.source, "", "remote", artifact_uri=self.ref.path)
            card = self._download(resolved, Path(tmp), CARD_FILE)
            digest = hashlib.sha256(card.read_bytes()).hexdigest()[:12]
            created = _created(card.parent)
        return Resolved(self.source, digest, "remote", created=created, artifact_uri=self.ref.path)

    def _resolve_folder(self) -> Resolved:
        folder = self.ref.local_path()
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
        return Resolved(
            source=self.source,
            version=self._digests[signature],
            alias=LABELS[RefKind.PATH],
            created=_created(folder) or card.stat().st_mtime,
        )


def _created(folder: Path) -> float:
    try:
        return datetime.fromisoformat(load_card(folder).created_at).timestamp()
    except (ModelError, ValueError):
        return 0.0


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)
