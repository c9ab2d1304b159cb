"""MLflow model registry for slipway model folders: register, aliases, promotion gate, rollback.

A registered version's artifacts ARE a slipway model folder at their root, so
`models:/<name>@production` downloads to a folder that serving loads as it is. The alias
`staging` always names the newest candidate; `production` moves only through the promotion gate
(or an explicit, recorded `promote` / `rollback`), so serving can trust what it points to.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slipway.contract.card import load_card
from slipway.errors import SlipwayError

log = logging.getLogger(__name__)

STAGING = "staging"
PRODUCTION = "production"
MODEL_ARTIFACT_PATH = "model"
DEFAULT_EXPERIMENT = "slipway"
DEFAULT_TRACKING_URI = "sqlite:///.slipway/mlflow.db"
HISTORY_TAG = "slipway.production_history"
LAST_ROLLBACK_TAG = "slipway.last_rollback"
HISTORY_LIMIT = 100


class RegistryError(SlipwayError):
    """The registry cannot do what was asked (unknown model, no earlier version, unreachable)."""


def absolute_tracking_uri(uri: str) -> str:
    """Make a relative `sqlite:///path` absolute and create its folder; other URIs pass through.

    Pipeline steps run in other working directories (and processes), so they must all be handed
    the same absolute database path.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return uri
    path = Path(uri[len(prefix) :]).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def _artifact_location(tracking_uri: str) -> str | None:
    """Artifacts of a SQLite-backed store live next to the database, never in the cwd."""
    if tracking_uri.startswith("sqlite:///"):
        return (Path(tracking_uri[len("sqlite:///") :]).parent / "mlartifacts").as_uri()
    return None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_ref(ref: str) -> tuple[str, str, str]:
    """`NAME`, `NAME@alias` or `NAME/version` -> (name, alias, version); one of the last is ""."""
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        return name, alias, ""
    if "/" in ref:
        name, version = ref.rsplit("/", 1)
        if not version.isdigit():
            raise RegistryError(f"version must be a number in {ref!r} (NAME/VERSION)")
        return name, "", version
    return ref, "", ""


def mlflow_client(tracking_uri: str = "") -> Any:
    """An `MlflowClient` bound to this URI for tracking AND registry.

    MLflow otherwise takes the registry from process-wide state (`mlflow.set_registry_uri`,
    `MLFLOW_REGISTRY_URI`), so two registries used in one process could answer for each other.
    """
    from mlflow import MlflowClient

    uri = absolute_tracking_uri(tracking_uri) or None
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def download_model_version(
    client: Any, name: str, version: str, dst: str | os.PathLike[str], path: str = ""
) -> Path:
    """Download a registered version's folder (or one `path` inside it) through `client`.

    The version's own download URI is used instead of `models:/...`, which MLflow would resolve
    against the process-wide registry rather than this client's.
    """
    import mlflow.artifacts

    uri = client.get_model_version_download_uri(name, version).rstrip("/")
    if path:
        uri = f"{uri}/{path}"
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=uri, dst_path=str(dst), tracking_uri=client.tracking_uri
    )
    return Path(local)


class Registry:
    """A thin layer over `MlflowClient` that knows slipway's aliases, tags and folder layout."""

    def __init__(self, tracking_uri: str = "") -> None:
        self.tracking_uri = absolute_tracking_uri(tracking_uri)
        self.client = mlflow_client(self.tracking_uri)

    # -- runs ---------------------------------------------------------------------------------

    def experiment_id(self, name: str = DEFAULT_EXPERIMENT) -> str:
        """Id of experiment `name`, created on first use (artifacts beside a SQLite database)."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(
                name, artifact_location=_artifact_location(self.tracking_uri)
            )
        except MlflowException:  # created concurrently by another step
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    # -- versions -----------------------------------------------------------------------------

    def register(
        self, name: str, model_dir: str | os.PathLike[str], run_id: str, tags: dict[str, Any]
    ) -> str:
        """Upload the model folder to `run_id` and register it as a new version of `name`.

        The new version gets alias `staging`; `production` is left to the gate.
        """
        from mlflow.exceptions import MlflowException

        load_card(model_dir)
        self.client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_PATH)
        source = f"{self.client.get_run(run_id).info.artifact_uri}/{MODEL_ARTIFACT_PATH}"
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        version = self.client.create_model_version(
            name, source=source, run_id=run_id, tags={k: str(v) for k, v in tags.items()}
        )
        self.client.set_registered_model_alias(name, STAGING, version.version)
        log.info("registered %s version %s (alias %s)", name, version.version, STAGING)
        return str(version.version)

    def alias_version(self, name: str, alias: str) -> Any | None:
        """The version an alias points to, or None when the alias is not set."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(name, alias)
        except MlflowException:
            return None

    def get(self, ref: str) -> Any:
        """The version for `NAME@alias`, `NAME/version` or `NAME` (production, else newest)."""
        from mlflow.exceptions import MlflowException

        name, alias, version = parse_ref(ref)
        try:
            if version:
                return self.client.get_model_version(name, version)
            if alias:
                found = self.alias_version(name, alias)
                if found is None:
                    raise RegistryError(f"{name} has no version with alias {alias!r}")
                return found
            found = self.alias_version(name, PRODUCTION)
            if found is not None:
                return found
            versions = self.client.search_model_versions(f"name='{name}'")
        except MlflowException as exc:
            raise RegistryError(f"{ref}: {exc.message}") from exc
        if not versions:
            raise RegistryError(f"no registered model named {name!r}")
        return max(versions, key=lambda v: int(v.version))

    def download(self, ref: str, dst: str | os.PathLike[str]) -> Path:
        """Download a version's model folder into `dst` and return the folder."""
        version = self.get(ref)
        return download_model_version(self.client, version.name, version.version, dst)

    def set_tags(self, name: str, version: str, tags: dict[str, Any]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(name, version, key, str(value))

    # -- production alias ---------------------------------------------------------------------

    def history(self, name: str) -> list[str]:
        """Versions that held `production`, oldest first (kept as a registered-model tag)."""
        tags = self.client.get_registered_model(name).tags
        return list(json.loads(tags.get(HISTORY_TAG, "[]")))

    def promote(self, name: str, version: str, reason: str) -> str:
        """Point `production` at `version`, record why, and return the previous version ("")."""
        self.get(f"{name}/{version}")
        previous = self.alias_version(name, PRODUCTION)
        previous_version = str(previous.version) if previous is not None else ""
        history = self.history(name)
        if previous_version and (not history or history[-1] != previous_version):
            history.append(previous_version)
        if not history or history[-1] != str(version):
            history.append(str(version))
        self.client.set_registered_model_alias(name, PRODUCTION, str(version))
        history = history[-HISTORY_LIMIT:]
        self.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        self.set_tags(
            name,
            str(version),
            {
                "promotion_decision": "promoted",
                "promotion_reason": reason,
                "promoted_at": _now(),
                "previous_production_version": previous_version,
            },
        )
        log.info("%s: production %s -> %s (%s)", name, previous_version or "-", version, reason)
        return previous_version

    def rollback(self, name: str, reason: str) -> tuple[str, str]:
        """Move `production` back to the version that held it before; returns (from, to)."""
        current = self.alias_version(name, PRODUCTION)
        if current is None:
            raise RegistryError(f"{name} has no production version to roll back")
        history = self.history(name)
        while history and history[-1] == str(current.version):
            history.pop()
        if not history:
            raise RegistryError(f"{name} has no earlier production version than v{current.version}")
        target = history[-1]
        now = _now()
        self.client.set_registered_model_alias(name, PRODUCTION, target)
        self.client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        record = {"from": str(current.version), "to": target, "reason": reason, "at": now}
        self.client.set_registered_model_tag(name, LAST_ROLLBACK_TAG, json.dumps(record))
        self.set_tags(
            name, str(current.version), {"rolled_back_at": now, "rollback_reason": reason}
        )
        self.set_tags(name, target, {"restored_at": now, "restore_reason": reason})
        log.info("%s: production rolled back %s -> %s (%s)", name, current.version, target, reason)
        return str(current.version), target

    # -- listing ------------------------------------------------------------------------------

    def list_models(self) -> list[dict[str, Any]]:
        """One row per registered model: versions, newest version, aliases."""
        rows = []
        for model in self.client.search_registered_models(max_results=1000):
            versions = self.client.search_model_versions(f"name='{model.name}'")
            rows.append(
                {
                    "name": model.name,
                    "versions": len(versions),
                    "latest": max((int(v.version) for v in versions), default=0),
                    "aliases": self._aliases(model.name),
                }
            )
        return rows

    def _aliases(self, name: str) -> dict[str, str]:
        """alias -> version; version searches do not carry aliases, the model record does."""
        aliases = self.client.get_registered_model(name).aliases or {}
        return {alias: str(version) for alias, version in sorted(aliases.items())}

    def describe(self, ref: str) -> dict[str, Any]:
        """Everything recorded about one version: aliases, source, run, tags."""
        version = self.get(ref)
        return {
            "name": version.name,
            "version": str(version.version),
            "aliases": list(version.aliases or []),
            "source": version.source,
            "run_id": version.run_id,
            "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat(
                timespec="seconds"
            ),
            "tags": dict(version.tags or {}),
        }

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of `name`, newest first, with its aliases and gate decision."""
        found = self.client.search_model_versions(f"name='{name}'")
        if not found:
            raise RegistryError(f"no registered model named {name!r}")
        by_version: dict[str, list[str]] = {}
        for alias, number in self._aliases(name).items():
            by_version.setdefault(number, []).append(alias)
        rows = []
        for version in sorted(found, key=lambda v: int(v.version), reverse=True):
            tags = version.tags or {}
            decision = tags.get("promotion_decision", "")
            reason = tags.get("promotion_reason", "")
            aliases = by_version.get(str(version.version), [])
            when = tags.get("rolled_back_at", "")
            rolled_back = bool(when) and when >= tags.get("promoted_at", "")
            if rolled_back and PRODUCTION not in aliases:
                decision, reason = "rolled back", tags.get("rollback_reason", "")
            rows.append(
                {
                    "version": str(version.version),
                    "aliases": aliases,
                    "test_accuracy": tags.get("metric.test_accuracy", ""),
                    "decision": decision,
                    "reason": reason,
                }
            )
        return rows
