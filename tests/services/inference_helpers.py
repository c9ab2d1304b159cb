"""Helpers for inference-service tests: ready apps, service processes, an MLflow registry."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from services.inference import Settings, create_app
from services.inference.server import command
from slipway.procs import ServerProcess, free_port

ROOT = Path(__file__).resolve().parents[2]


def settings_for(model: Path | str, **overrides: Any) -> Settings:
    """Settings for tests: no reload polling unless asked, nothing outside tmp paths."""
    values: dict[str, Any] = {"model_source": str(model), "reload_interval_s": 0, "threads": 1}
    values.update(overrides)
    return Settings(**values)


def wait_ready(client: TestClient, timeout: float = 60.0, all_models: bool = True) -> None:
    """Until /readyz is 200 and, with `all_models`, the staging model is loaded too."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready = client.get("/readyz")
        loaded = ready.json()["models"].values()
        if ready.status_code == 200 and (not all_models or None not in loaded):
            return
        time.sleep(0.05)
    raise AssertionError(f"app not ready after {timeout} s: {client.get('/readyz').json()}")


@contextlib.contextmanager
def ready_client(settings: Settings, all_models: bool = True) -> Iterator[TestClient]:
    """A TestClient over a real app (lifespan run) whose models are loaded."""
    app = create_app(settings)
    with TestClient(app) as client:
        wait_ready(client, all_models=all_models)
        yield client


def inference_server(
    env: dict[str, str], log_path: Path, argv: list[str] | None = None
) -> ServerProcess:
    """`python -m services.inference` (or `argv`, another way to start it) on free loopback
    ports (HTTP, and gRPC: `grpc_target(proc)`), with `env` over this process's environment;
    not started yet."""
    port = free_port()
    full_env = {"SLIPWAY_DRAIN_SECONDS": "0", "SLIPWAY_GRPC_PORT": str(free_port()), **env}
    full_env.update(SLIPWAY_HOST="127.0.0.1", SLIPWAY_PORT=str(port))
    url = f"http://127.0.0.1:{port}"
    return ServerProcess(argv or command(), url, env=full_env, log=log_path, cwd=ROOT)


def grpc_target(proc: ServerProcess) -> str:
    """`127.0.0.1:<port>` of the gRPC server of a process from `inference_server`."""
    return f"127.0.0.1:{proc.env['SLIPWAY_GRPC_PORT']}"


def register_model(tracking_uri: str, name: str, model_dir: Path, alias: str) -> str:
    """Register a model folder as slipway does (an MLflow model of a run), point `alias` at
    it; the version."""
    from slipway.registry.client import Registry

    registry = Registry(tracking_uri)
    run_id = registry.client.create_run(registry.experiment_id("serving-tests")).info.run_id
    version = registry.register(name, model_dir, run_id, {})
    registry.client.set_registered_model_alias(name, alias, version)
    return version


def register_folder_version(
    tracking_uri: str, name: str, model_dir: Path, alias: str, artifacts: Path
) -> str:
    """Register a model folder in the previous format (a folder of run artifacts, no MLflow
    model), point `alias` at it; the version."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    experiment = client.get_experiment_by_name("serving-tests")
    if experiment is None:
        experiment_id = client.create_experiment(
            "serving-tests", artifact_location=artifacts.as_uri()
        )
    else:
        experiment_id = experiment.experiment_id
    with contextlib.suppress(Exception):
        client.create_registered_model(name)
    run = client.create_run(experiment_id)
    client.log_artifacts(run.info.run_id, str(model_dir), artifact_path="model")
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(
        name, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`, from exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total
