"""MLflow model registry for slipway models: register, aliases, promotion, rollback, metrics.

Every version is registered from an MLflow LoggedModel (`slipway.registry.mlmodel`): an MLflow
model whose files are a slipway model folder at their root, so `models:/<name>@production`
downloads to a folder that serving loads as it is and that `mlflow.pyfunc.load_model` loads
too. Its metrics live on the logged model and the run, its lineage in version tags. The alias
`staging` always names the newest candidate; `production` moves only through the promotion gate
(or an explicit, recorded `promote` / `rollback`), so serving can trust what it points to.
MLflow keeps no alias history, so the versions that held `production` are a registered-model
tag.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slipway.contract.card import load_card
from slipway.contract.mlmodel import read_layout
from slipway.registry.ref import ModelRef, RegistryError, ResolvedModel, version_model_id

log = logging.getLogger(__name__)

__all__ = ["Registry", "RegistryError"]

STAGING = "staging"
PRODUCTION = "production"
DEFAULT_EXPERIMENT = "slipway"
DEFAULT_TRACKING_URI = "sqlite:///.slipway/mlflow.db"
HISTORY_TAG = "slipway.production_history"
LAST_ROLLBACK_TAG = "slipway.last_rollback"
HISTORY_LIMIT = 100
LEGACY_METRIC = "metric."
MODEL_VERSIONS_TAG = "mlflow.modelVersions"


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


def mlflow_client(tracking_uri: str = "") -> Any:
    """An `MlflowClient` bound to this URI for tracking AND registry.

    MLflow otherwise takes the registry from process-wide state (`mlflow.set_registry_uri`,
    `MLFLOW_REGISTRY_URI`), so two registries used in one process could answer for each other.
    """
    from mlflow import MlflowClient

    uri = absolute_tracking_uri(tracking_uri) or None
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def download(
    resolved: ResolvedModel, dst: str | os.PathLike[str], tracking_uri: str = "", path: str = ""
) -> Path:
    """Download what a resolved reference names (or one `path` inside it) into `dst`.

    The resolved artifact URI is used instead of `models:/...`, which MLflow would resolve
    against the process-wide registry rather than this one.
    """
    import mlflow.artifacts

    uri = resolved.artifact_uri.rstrip("/")
    if path:
        uri = f"{uri}/{path}"
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=uri,
        dst_path=str(dst),
        tracking_uri=absolute_tracking_uri(tracking_uri) or None,
    )
    return Path(local)


@contextlib.contextmanager
def _process_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's SQL registry store looks up the logged model of a `models:/<model_id>` source
    with a default client, i.e. through the process-wide tracking URI; point that at this
    registry for the call, then put back exactly what was there (MLflow's own setter also
    rewrites the MLFLOW_TRACKING_URI variable)."""
    import mlflow
    from mlflow.tracking._tracking_service import utils

    saved, saved_env = utils._tracking_uri, os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved)
        if saved_env is not None:
            os.environ["MLFLOW_TRACKING_URI"] = saved_env


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
        self,
        name: str,
        model_dir: str | os.PathLike[str],
        run_id: str,
        tags: dict[str, Any],
        example: bytes | None = None,
    ) -> str:
        """Log the folder as an MLflow model of `run_id` and register it as a version of `name`.

        `tags` (lineage) go on the logged model and the version; `example` is an encoded image
        for the model's input example. The new version gets alias `staging`; `production` is
        left to the gate.
        """
        from mlflow.exceptions import MlflowException

        from slipway.registry.mlmodel import log_model

        load_card(model_dir)
        text = {k: str(v) for k, v in tags.items()}
        logged = log_model(self.client, run_id, model_dir, name, text, example)
        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        with _process_tracking_uri(self.tracking_uri):
            version = self.client.create_model_version(
                name,
                source=f"models:/{logged.model_id}",
                run_id=run_id,
                tags=text,
                model_id=logged.model_id,
            )
        # The link the MLflow UI shows on the logged model ("Model versions"), as mlflow's own
        # register_model writes it.
        registered = json.loads(logged.tags.get(MODEL_VERSIONS_TAG, "[]"))
        registered.append({"name": name, "version": str(version.version)})
        self.client.set_logged_model_tags(
            logged.model_id, {MODEL_VERSIONS_TAG: json.dumps(registered)}
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

    def resolve(self, ref: str | ModelRef) -> ResolvedModel:
        """What a reference names now (`NAME@alias`, `NAME/3`, `models:/...`, `runs:/...`)."""
        parsed = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref, registered=True)
        return parsed.resolve(self.client)

    def get(self, ref: str | ModelRef) -> Any:
        """The registered version a registry reference names (`NAME`: the newest)."""
        parsed = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref, registered=True)
        if not parsed.is_registry:
            raise RegistryError(f"{parsed} names no registered version")
        resolved = self.resolve(parsed)
        return self.client.get_model_version(resolved.name, resolved.version)

    def download(self, ref: str | ModelRef, dst: str | os.PathLike[str]) -> Path:
        """Download a version into `dst` and return its model folder."""
        resolved = self.resolve(ref)
        root = download(resolved, dst, self.tracking_uri)
        return read_layout(root, str(resolved.ref)).folder

    def metrics(self, version: Any) -> dict[str, float]:
        """A version's metrics: its logged model's, else its run's, else the old `metric.*` tags."""
        from mlflow.exceptions import MlflowException

        found: dict[str, float] = {}
        model_id = version_model_id(version)
        try:
            if model_id:
                latest: dict[str, Any] = {}
                for metric in self.client.get_logged_model(model_id).metrics or []:
                    if metric.key not in latest or metric.timestamp >= latest[metric.key].timestamp:
                        latest[metric.key] = metric
                found = {key: float(m.value) for key, m in latest.items()}
            elif version.run_id:
                found = dict(self.client.get_run(version.run_id).data.metrics)
        except MlflowException as exc:
            log.warning("no metrics for %s v%s: %s", version.name, version.version, exc.message)
        for key, value in (version.tags or {}).items():
            if key.startswith(LEGACY_METRIC):
                with contextlib.suppress(ValueError):
                    found.setdefault(key[len(LEGACY_METRIC) :], float(value))
        return found

    def params(self, version: Any) -> dict[str, str]:
        """A version's training parameters (from its logged model; older versions: tags)."""
        model_id = version_model_id(version)
        if model_id:
            return dict(self.client.get_logged_model(model_id).params or {})
        tags = version.tags or {}
        return {k.removeprefix("param."): v for k, v in tags.items() if k.startswith("param.")}

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
        """One row per registered model: versions, newest, aliases, production's test accuracy."""
        rows = []
        for model in self.client.search_registered_models(max_results=1000):
            versions = self.client.search_model_versions(f"name='{model.name}'")
            production = self.alias_version(model.name, PRODUCTION)
            accuracy = self.metrics(production).get("test_accuracy") if production else None
            rows.append(
                {
                    "name": model.name,
                    "versions": len(versions),
                    "latest": max((int(v.version) for v in versions), default=0),
                    "aliases": self._aliases(model.name),
                    "production_test_accuracy": accuracy,
                }
            )
        return rows

    def _aliases(self, name: str) -> dict[str, str]:
        """alias -> version; version searches do not carry aliases, the model record does."""
        aliases = self.client.get_registered_model(name).aliases or {}
        return {alias: str(version) for alias, version in sorted(aliases.items())}

    def describe(self, ref: str | ModelRef) -> dict[str, Any]:
        """Everything recorded about one version: aliases, source, run, model, metrics, tags."""
        version = self.get(ref)
        model_id = version_model_id(version)
        return {
            "name": version.name,
            "version": str(version.version),
            "aliases": list(version.aliases or []),
            "source": version.source,
            "run_id": version.run_id,
            "model_id": model_id or None,
            "format": "mlflow-model" if model_id else "folder",
            "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat(
                timespec="seconds"
            ),
            "metrics": self.metrics(version),
            "params": self.params(version),
            "tags": {
                k: v for k, v in (version.tags or {}).items() if not k.startswith(LEGACY_METRIC)
            },
        }

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Every version of `name`, newest first, with its aliases, accuracy and gate decision."""
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
            accuracy = self.metrics(version).get("test_accuracy")
            rows.append(
                {
                    "version": str(version.version),
                    "aliases": aliases,
                    "test_accuracy": "" if accuracy is None else f"{accuracy:.4f}",
                    "decision": decision,
                    "reason": reason,
                }
            )
        return rows
