"""One model reference for the CLI, the services, the pipeline and the registry helpers.

    models:/NAME@ALIAS      the version an alias points at; followed when the alias moves
    models:/NAME/VERSION    exactly that version; never moves (pinned)
    models:/NAME            the newest version (also `models:/NAME/latest`); followed
    models:/m-<32 hex>      an MLflow 3 logged model by id; pinned
    runs:/RUN_ID/PATH       a model logged in a run; pinned
    FOLDER, file:///FOLDER  a local model folder; followed by its content
    s3://..., gs://, ...    a model folder in an object store, fetched through MLflow; followed

`ModelRef.parse` reads all of them (`registered=True` also takes the short `NAME@ALIAS`,
`NAME/VERSION` and `NAME` of the `slipway registry` commands); `str(ref)` writes the canonical
form back; `resolve(client)` asks MLflow which version, run and logged model it means now.
Parsing needs no MLflow, so a service can check its settings before anything is imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from slipway.errors import ConfigError, SlipwayError

MODELS = "models:/"
RUNS = "runs:/"
FORMS = (
    "models:/NAME@ALIAS, models:/NAME/VERSION, models:/NAME, runs:/RUN_ID/PATH, "
    "a model folder, or a file:// or object-store URI"
)
_LOGGED_MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
_ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")


class ModelRefError(ConfigError):
    """A model reference that is not one of the accepted forms (one message for all of them)."""

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"malformed model reference {text!r}: {reason}; expected {FORMS}")
        self.text = text
        self.reason = reason


class RegistryError(SlipwayError):
    """The registry cannot do what was asked (unknown model, no earlier version, unreachable)."""


class RefKind(StrEnum):
    ALIAS = "alias"
    VERSION = "version"
    LATEST = "latest"
    LOGGED_MODEL = "logged_model"
    RUN = "run"
    PATH = "path"
    URI = "uri"


REGISTRY_KINDS = frozenset({RefKind.ALIAS, RefKind.VERSION, RefKind.LATEST})
FOLLOWED_KINDS = frozenset({RefKind.ALIAS, RefKind.LATEST, RefKind.PATH, RefKind.URI})


@dataclass(frozen=True)
class ResolvedModel:
    """What a reference means now: the registered version (if any), its run and logged model,
    and where its files are (`artifact_uri`, for `mlflow.artifacts.download_artifacts`)."""

    ref: ModelRef
    artifact_uri: str
    name: str = ""
    version: str = ""
    run_id: str = ""
    model_id: str = ""
    created: float = 0.0

    @property
    def logged_model(self) -> bool:
        """False for a version registered from a folder of run artifacts (the previous format)."""
        return bool(self.model_id)


@dataclass(frozen=True)
class ModelRef:
    """A parsed model reference; build it with `ModelRef.parse`."""

    kind: RefKind
    name: str = ""
    alias: str = ""
    version: str = ""
    model_id: str = ""
    run_id: str = ""
    path: str = ""

    @classmethod
    def parse(cls, text: str, *, registered: bool = False) -> ModelRef:
        """Read any accepted form; `registered` reads a scheme-less text as `models:/TEXT`."""
        raw = text
        text = text.strip()
        if not text:
            raise ModelRefError(raw, "it is empty")
        if registered and not _SCHEME.match(text):
            text = MODELS + text
        if text.startswith(MODELS):
            return cls._parse_models(raw, text[len(MODELS) :])
        if text.startswith(RUNS):
            run_id, _, path = text[len(RUNS) :].partition("/")
            path = path.strip("/")
            if not run_id or not path:
                raise ModelRefError(raw, "a run reference needs a run id and a path")
            return cls(RefKind.RUN, run_id=run_id, path=path)
        scheme = _SCHEME.match(text)
        if scheme is None:
            return cls(RefKind.PATH, path=text)
        if scheme[1].lower() == "file":
            parsed = urlparse(text)
            if parsed.netloc not in ("", "localhost") or not parsed.path:
                raise ModelRefError(raw, "a file URI needs an absolute path (file:///path)")
            return cls(RefKind.PATH, path=unquote(parsed.path))
        if not text.startswith(f"{scheme[1]}://") or scheme[1].lower() in ("models", "runs"):
            raise ModelRefError(raw, f"unknown scheme {scheme[1]}:/")
        return cls(RefKind.URI, path=text)

    @classmethod
    def _parse_models(cls, raw: str, rest: str) -> ModelRef:
        if "@" in rest:
            name, _, alias = rest.partition("@")
            if not name or "/" in name:
                raise ModelRefError(raw, "no model name before @")
            if not _ALIAS.match(alias):
                raise ModelRefError(raw, "an alias is letters, digits, '_' or '-'")
            return cls(RefKind.ALIAS, name=name, alias=alias)
        parts = rest.split("/")
        if not parts[0]:
            raise ModelRefError(raw, "no model name")
        if len(parts) == 1:
            if _LOGGED_MODEL_ID.match(parts[0]):
                return cls(RefKind.LOGGED_MODEL, model_id=parts[0])
            return cls(RefKind.LATEST, name=parts[0])
        if len(parts) == 2 and parts[1] == "latest":
            return cls(RefKind.LATEST, name=parts[0])
        if len(parts) == 2 and parts[1].isdigit() and int(parts[1]) > 0:
            return cls(RefKind.VERSION, name=parts[0], version=str(int(parts[1])))
        raise ModelRefError(raw, "a version is a number from 1, or 'latest'")

    def __str__(self) -> str:
        if self.kind is RefKind.ALIAS:
            return f"{MODELS}{self.name}@{self.alias}"
        if self.kind is RefKind.VERSION:
            return f"{MODELS}{self.name}/{self.version}"
        if self.kind is RefKind.LATEST:
            return f"{MODELS}{self.name}"
        if self.kind is RefKind.LOGGED_MODEL:
            return f"{MODELS}{self.model_id}"
        if self.kind is RefKind.RUN:
            return f"{RUNS}{self.run_id}/{self.path}"
        return self.path

    @property
    def is_registry(self) -> bool:
        """A registered model's version, alias or newest version."""
        return self.kind in REGISTRY_KINDS

    @property
    def is_local(self) -> bool:
        return self.kind is RefKind.PATH

    @property
    def follows(self) -> bool:
        """True when what it names can change (an alias, the newest version, a folder)."""
        return self.kind in FOLLOWED_KINDS

    @property
    def short(self) -> str:
        """The `slipway registry` spelling of a registry reference: `NAME@ALIAS`, `NAME/3`."""
        return str(self).removeprefix(MODELS) if self.is_registry else str(self)

    def local_path(self) -> Path:
        if not self.is_local:
            raise ModelRefError(str(self), "not a local folder")
        return Path(self.path).expanduser()

    def resolve(self, client: Any) -> ResolvedModel:
        """Which version, run and logged model this names now, through an `MlflowClient`.

        A folder or object-store URI resolves to itself. A missing model, version or alias is
        a `RegistryError` with MLflow's message on one line.
        """
        from mlflow.exceptions import MlflowException

        try:
            if self.is_registry:
                return self._from_version(client, self._version(client))
            if self.kind is RefKind.LOGGED_MODEL:
                found = client.get_logged_model(self.model_id)
                return ResolvedModel(
                    self,
                    found.artifact_location,
                    run_id=found.source_run_id or "",
                    model_id=found.model_id,
                    created=(found.creation_timestamp or 0) / 1000.0,
                )
        except MlflowException as exc:
            raise RegistryError(f"{self}: {exc.message.splitlines()[0]}") from exc
        if self.kind is RefKind.RUN:
            return ResolvedModel(self, str(self), run_id=self.run_id)
        return ResolvedModel(self, str(self.local_path()) if self.is_local else self.path)

    def _version(self, client: Any) -> Any:
        if self.kind is RefKind.ALIAS:
            return client.get_model_version_by_alias(self.name, self.alias)
        if self.kind is RefKind.VERSION:
            return client.get_model_version(self.name, self.version)
        found = client.search_model_versions(f"name='{self.name}'")
        if not found:
            raise RegistryError(f"{self}: no registered model named {self.name!r}")
        return max(found, key=lambda v: int(v.version))

    def _from_version(self, client: Any, version: Any) -> ResolvedModel:
        return ResolvedModel(
            self,
            client.get_model_version_download_uri(version.name, version.version),
            name=version.name,
            version=str(version.version),
            run_id=version.run_id or "",
            model_id=version_model_id(version),
            created=(version.creation_timestamp or 0) / 1000.0,
        )


def version_model_id(version: Any) -> str:
    """The logged model a registered version was made from ("" for the previous format).

    MLflow's SQL registry keeps it only in the version's source, `models:/<model_id>`.
    """
    found = getattr(version, "model_id", None)
    if found:
        return str(found)
    source = str(getattr(version, "source", "") or "")
    candidate = source.removeprefix(MODELS)
    return candidate if source.startswith(MODELS) and _LOGGED_MODEL_ID.match(candidate) else ""
