"""After one real local pipeline run (kfp.local, MLflow on SQLite): the registered version is an
MLflow model that MLflow itself loads and serves, with the same answers as slipway's service;
pinned versions stay put; the registry commands read metrics from the model and the run."""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from pipelines.run import run_local
from pipelines.training import run_arguments
from services.inference.server import command
from slipway.cli import app
from slipway.config.experiment import ExperimentConfig
from slipway.procs import free_port, start_server
from slipway.registry.client import PRODUCTION, Registry
from slipway.registry.ref import version_model_id
from tests.helpers import eventually
from tests.services.inference_helpers import (
    ROOT,
    metric_value,
    ready_client,
    register_folder_version,
    settings_for,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*non-Python base image"),
    pytest.mark.filterwarnings("ignore:.*no effect in the current local runner"),
]

NAME = "fashion"
PRODUCTION_REF = f"models:/{NAME}@{PRODUCTION}"


@dataclass(frozen=True)
class Run:
    """One pipeline run: its MLflow store, outputs and the images to predict."""

    uri: str
    outputs: dict[str, Any]
    images: list[Path]
    work: Path

    @property
    def registry(self) -> Registry:
        return Registry(self.uri)


@pytest.fixture(scope="module")
def run(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    work = tmp_path_factory.mktemp("mlflow-model")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    config = ExperimentConfig.model_validate(
        {
            "data": {"source": str(demo_data)},
            "model": {"name": NAME, "parity_images": 8},
            "training": {"epochs": 1, "batch_size": 64},
            "tracking": {"uri": uri},
            "promotion": {"max_p95_latency_ms": 10_000.0, "min_accuracy": 0.0},
        }
    )
    args = {**run_arguments(config, git_commit="feedbeef"), "checkpoint_root": str(work / "ck")}
    outputs = run_local(args, work / "root")
    assert (outputs["version"], outputs["decision"]) == ("1", "promoted")
    classes = sorted(d for d in demo_data.iterdir() if d.is_dir())
    images = [sorted(folder.glob("*.png"))[0] for folder in classes]
    return Run(uri, outputs, images, work)


@pytest.fixture
def mlflow_env(run: Run, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """MLflow's own API (`mlflow.pyfunc.load_model`) finds the registry through this variable."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.uri)
    yield


def _service_probabilities(url: str, images: list[Path]) -> tuple[list[str], np.ndarray]:
    """Top classes and every class's probability (in the card's order) from `/v1/predict`."""
    classes = httpx.get(f"{url}/v1/models", trust_env=False).json()["details"][0]["classes"]
    files = [("files", (path.name, path.read_bytes(), "image/png")) for path in images]
    answer = httpx.post(f"{url}/v1/predict?top_k=1000", files=files, timeout=60, trust_env=False)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    rows = [{i["class"]: i["probability"] for i in p["top_k"]} for p in predictions]
    return [p["top_class"] for p in predictions], np.array([[r[c] for c in classes] for r in rows])


def test_the_version_is_an_mlflow_model_with_signature_metrics_dataset_and_lineage(
    run: Run, tmp_path: Path
) -> None:
    import mlflow.artifacts
    from mlflow.models import Model

    registry = run.registry
    version = registry.get(PRODUCTION_REF)
    model_id = version_model_id(version)
    assert version.source == f"models:/{model_id}"
    logged = registry.client.get_logged_model(model_id)
    assert logged.source_run_id == version.run_id and str(logged.status) == "READY"
    metrics = {m.key: m for m in logged.metrics}
    report = json.loads(
        (Path(registry.download(PRODUCTION_REF, tmp_path)) / "report.json").read_text()
    )
    assert metrics["test_accuracy"].value == pytest.approx(report["accuracy"], abs=1e-9)
    assert metrics["test_accuracy"].dataset_name == "fashion-mnist"
    assert metrics["onnx_max_abs_diff"].value <= 1e-3 and metrics["latency_b1_p95_ms"].value > 0
    assert logged.params["arch"] == "resnet18" and logged.params["epochs"] == "1"
    assert json.loads(logged.tags["mlflow.modelVersions"]) == [{"name": NAME, "version": "1"}]

    run_info = registry.client.get_run(version.run_id)
    assert run_info.data.tags["registered_version"] == f"models:/{NAME}/1"  # a ModelRef
    assert run_info.data.metrics["test_accuracy"] == pytest.approx(report["accuracy"], abs=1e-9)
    assert model_id in {output.model_id for output in run_info.outputs.model_outputs}
    (dataset,) = run_info.inputs.dataset_inputs
    fingerprint = version.tags["dataset_fingerprint"]
    assert dataset.dataset.digest == fingerprint[:32] == metrics["test_accuracy"].dataset_digest
    profile = json.loads(dataset.dataset.profile)
    assert profile["fingerprint"] == fingerprint and profile["num_rows"] == 600
    assert {tag.key: tag.value for tag in dataset.tags}["mlflow.data.context"] == "training"

    local = mlflow.artifacts.download_artifacts(
        artifact_uri=logged.artifact_location, dst_path=str(tmp_path / "m"), tracking_uri=run.uri
    )
    model = Model.load(local)
    assert set(model.flavors) == {"onnx", "python_function"}
    assert model.flavors["python_function"]["loader_module"] == "slipway.pyfunc"
    assert model.signature.inputs.input_names() == ["image"]
    assert model.signature.outputs.input_names() == ["class", "confidence", "probabilities"]
    assert model.saved_input_example_info["type"] == "dataframe"
    names = {p.name for p in Path(local).iterdir()}
    assert {"model.onnx", "model.ts", "model_card.json", "reference.json", "report.json"} <= names
    assert {"confusion_matrix.png", "MLmodel", "requirements.txt", "python_env.yaml"} <= names


def test_pyfunc_predicts_demo_images_like_the_running_service(
    run: Run, mlflow_env: None, tmp_path: Path
) -> None:
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(PRODUCTION_REF)
    raw = [path.read_bytes() for path in run.images]
    by_bytes = model.predict(pd.DataFrame({"image": raw}))
    probabilities = np.stack(by_bytes["probabilities"])
    assert probabilities.shape == (len(raw), 10)
    assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)

    by_text = model.predict(pd.DataFrame({"image": [base64.b64encode(b).decode() for b in raw]}))
    pixels = np.stack([np.asarray(Image.open(path)) for path in run.images])
    by_pixels = model.predict({"image": pixels})
    for other in (by_text, by_pixels):
        assert list(other["class"]) == list(by_bytes["class"])
        assert np.abs(np.stack(other["probabilities"]) - probabilities).max() <= 1e-6

    env = {
        "SLIPWAY_MODEL_SOURCE": PRODUCTION_REF,
        "SLIPWAY_MLFLOW_TRACKING_URI": run.uri,
        "SLIPWAY_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "SLIPWAY_HOST": "127.0.0.1",
        "SLIPWAY_PORT": str(port := free_port()),
        "SLIPWAY_DRAIN_SECONDS": "0",
        # The pyfunc flavor runs model.onnx: compare with the service on the same model and
        # precision (`auto` may pick the INT8 variant or OpenVINO).
        "SLIPWAY_BACKEND": "onnxruntime",
        "SLIPWAY_PRECISION": "fp32",
        "SLIPWAY_GRPC_PORT": "0",
    }
    url = f"http://127.0.0.1:{port}"
    with start_server(command(), url, env=env, log=tmp_path / "service.log", cwd=ROOT):
        classes, served = _service_probabilities(url, run.images)
    assert classes == list(by_bytes["class"])
    assert np.abs(served - probabilities).max() <= 1e-5


def test_mlflow_models_serve_answers_invocations_with_the_same_classes(
    run: Run, mlflow_env: None, tmp_path: Path
) -> None:
    """MLflow's own scoring server, in a directory without slipway's source on the path: the
    model's `code/` is all the slipway it gets."""
    import mlflow.pyfunc
    import pandas as pd

    raw = [path.read_bytes() for path in run.images]
    expected = list(
        mlflow.pyfunc.load_model(PRODUCTION_REF).predict(pd.DataFrame({"image": raw}))["class"]
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    argv = [sys.executable, "-m", "mlflow", "models", "serve", "-m", PRODUCTION_REF]
    argv += ["--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    url = f"http://127.0.0.1:{port}"
    body = {
        "dataframe_split": {
            "columns": ["image"],
            "data": [[base64.b64encode(b).decode()] for b in raw],
        }
    }
    with start_server(argv, url, env=env, ready_path="/ping", timeout=180, cwd=tmp_path) as server:
        answer = httpx.post(f"{url}/invocations", json=body, timeout=60, trust_env=False)
        assert answer.status_code == 200, answer.text + server.output(3000)
        predictions = answer.json()["predictions"]
        bad = {"dataframe_split": {"columns": ["image"], "data": [["bm90IGFuIGltYWdl"]]}}
        refused = httpx.post(f"{url}/invocations", json=bad, timeout=60, trust_env=False)
    assert [p["class"] for p in predictions] == expected
    assert all(abs(sum(p["probabilities"]) - 1) < 1e-5 for p in predictions)
    assert refused.status_code == 400


def test_a_pinned_version_ignores_an_alias_move(run: Run, tmp_path: Path) -> None:
    registry = run.registry
    folder = registry.download(f"{NAME}/1", tmp_path / "v1")
    run_id = registry.client.create_run(registry.experiment_id()).info.run_id
    second = registry.register(NAME, folder, run_id, {"git_commit": "feedbeef"})
    common = {"mlflow_tracking_uri": run.uri, "model_cache_dir": str(tmp_path / "cache")}
    pinned = settings_for(f"models:/{NAME}/1", reload_interval_s=0.2, **common)
    following = settings_for(PRODUCTION_REF, reload_interval_s=0.2, **common)
    with ready_client(pinned) as pin, ready_client(following) as follow:
        assert pin.get("/v1/models").json()["details"][0]["alias"] == "pinned"
        registry.promote(NAME, second, "test: move the alias")
        try:
            eventually(lambda: follow.get("/v1/models").json()["details"][0]["version"] == second)
            assert pin.get("/v1/models").json()["details"][0]["version"] == "1"
            png = run.images[0].read_bytes()
            answer = pin.post("/v1/predict", files=[("files", ("a.png", png, "image/png"))])
            assert answer.json()["version"] == "1"
            text = pin.get("/metrics").text
            assert metric_value(text, "slipway_inference_reloads_total", model=NAME) == 0
        finally:
            registry.rollback(NAME, "test: back to version 1")
    assert str(registry.alias_version(NAME, PRODUCTION).version) == "1"


def test_registry_commands_and_the_run_summary_read_metrics_from_the_model(
    run: Run, capsys: pytest.CaptureFixture[str]
) -> None:
    from slipway.cli.pipeline import _print_summary

    accuracy = run.registry.metrics(run.registry.get(f"{NAME}/1"))["test_accuracy"]
    cli = CliRunner()
    listed = cli.invoke(app, ["registry", "list", "--tracking-uri", run.uri])
    assert listed.exit_code == 0, listed.output
    assert f"{accuracy:.4f}" in listed.output.splitlines()[1]
    shown = cli.invoke(app, ["registry", "show", f"{NAME}/1", "--tracking-uri", run.uri])
    assert shown.exit_code == 0, shown.output
    assert f"  test_accuracy: {accuracy:.6g}" in shown.output
    assert "model: MLflow model m-" in shown.output and "metric." not in shown.output
    _print_summary(run.uri, NAME, run.outputs)
    summary = capsys.readouterr().out
    assert f"accuracy {accuracy:.4f}" in summary
    assert "MLflow model         models:/m-" in summary
    assert "resnet18, best epoch 1" in summary


def test_a_previous_format_version_is_registered_again_as_an_mlflow_model(
    run: Run, mlflow_env: None, tmp_path: Path
) -> None:
    import mlflow.pyfunc
    import pandas as pd

    downloaded = run.registry.download(f"{NAME}/1", tmp_path / "v1")
    folder = tmp_path / "folder"  # the model folder alone, as the previous format registered it
    mlflow_files = ("MLmodel", "code", "*.yaml", "requirements.txt", "*example.json", "*.png")
    shutil.copytree(downloaded, folder, ignore=shutil.ignore_patterns(*mlflow_files))
    old = register_folder_version(run.uri, "legacy", folder, "production", tmp_path / "art")
    with pytest.raises(Exception, match="MLmodel"):
        mlflow.pyfunc.load_model(f"models:/legacy/{old}")
    cli = CliRunner()
    args = ["registry", "register", f"models:/legacy/{old}", "--name", "legacy"]
    result = cli.invoke(app, [*args, "--tracking-uri", run.uri])
    assert result.exit_code == 0, result.output
    new = result.output.split("version ")[1].split()[0]
    info = run.registry.describe(f"legacy/{new}")
    assert info["format"] == "mlflow-model" and info["tags"]["registered_from"] == args[2]
    assert info["metrics"]["test_accuracy"] > 0
    model = mlflow.pyfunc.load_model(f"models:/legacy/{new}")
    raw = [path.read_bytes() for path in run.images[:2]]
    assert len(model.predict(pd.DataFrame({"image": raw}))) == 2
