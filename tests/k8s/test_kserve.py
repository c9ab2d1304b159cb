"""k8s/kserve: the ClusterServingRuntime and the example InferenceService build, validate against
KServe's CRD schemas, agree with the service's settings and routes, and the runtime's
environment really serves a model folder under the InferenceService's name."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.inference import Settings, create_app
from slipway.config.cluster import SERVE_IMAGE
from slipway.config.env import check_environment
from slipway.contract.card import ModelCard
from tests.charts.render import CHART, REPO, tool
from tests.charts.validate import crd_errors, load_manifests
from tests.services.inference_helpers import inference_server

KSERVE = REPO / "k8s" / "kserve"
GRPC_PORT = 8085  # the gRPC v2 port until Settings has a field for it
STORAGE = "/mnt/models"


def build(path: Path) -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return load_manifests(result.stdout)


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    return build(KSERVE)


@pytest.fixture(scope="module")
def runtime(built: list[dict[str, Any]]) -> dict[str, Any]:
    (doc,) = [d for d in built if d["kind"] == "ClusterServingRuntime"]
    return doc


@pytest.fixture(scope="module")
def isvc(built: list[dict[str, Any]]) -> dict[str, Any]:
    (doc,) = [d for d in built if d["kind"] == "InferenceService"]
    return doc


def container(runtime: dict[str, Any]) -> dict[str, Any]:
    (found,) = runtime["spec"]["containers"]
    return found


def env_for(runtime: dict[str, Any], isvc_name: str) -> dict[str, str]:
    """The container's environment as KServe renders it for one InferenceService."""
    items = container(runtime)["env"]
    return {e["name"]: e["value"].replace("{{.Name}}", isvc_name) for e in items}


def test_build_and_schemas(built: list[dict[str, Any]]) -> None:
    assert {d["kind"] for d in built} == {"ClusterServingRuntime", "InferenceService"}
    for doc in built:
        assert crd_errors(doc) == [], doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "slipway"
    cluster_scoped, namespaced = sorted(built, key=lambda d: d["kind"])
    assert "namespace" not in cluster_scoped["metadata"]
    assert namespaced["metadata"]["namespace"] == "ml-serving"


def test_schemas_catch_a_misspelt_field(runtime: dict[str, Any], isvc: dict[str, Any]) -> None:
    typo = copy.deepcopy(runtime)
    typo["spec"]["supportedModelFormats"][0]["autoselect"] = True
    assert any("autoselect" in e for e in crd_errors(typo))
    wrong = copy.deepcopy(isvc)
    wrong["spec"]["predictor"]["model"]["modelFormat"] = "slipway"
    assert crd_errors(wrong)


def test_runtime_env_is_settings_and_serves_the_mounted_folder(runtime: dict[str, Any]) -> None:
    env = env_for(runtime, "fashion")
    check_environment(env, "SLIPWAY_", Settings.model_fields)
    settings = Settings(**{k.removeprefix("SLIPWAY_").lower(): v for k, v in env.items()})
    assert settings.model_source == STORAGE and settings.model_name == "fashion"
    assert settings.model_cache_dir.startswith("/tmp/")
    (tmp,) = [m for m in container(runtime)["volumeMounts"] if m["name"] == "tmp"]
    (volume,) = [v for v in runtime["spec"]["volumes"] if v["name"] == "tmp"]
    assert tmp["mountPath"] == "/tmp" and "emptyDir" in volume


def test_ports_probes_and_metrics_match_the_service(runtime: dict[str, Any]) -> None:
    spec = container(runtime)
    env = env_for(runtime, "fashion")
    http, grpc = spec["ports"]
    assert (http["name"], http["containerPort"]) == ("http1", int(env["SLIPWAY_PORT"]))
    assert grpc["name"] == "h2c"
    field = Settings.model_fields.get("grpc_port")
    assert grpc["containerPort"] == (field.default if field is not None else GRPC_PORT)
    if "SLIPWAY_GRPC_PORT" in env:
        assert grpc["containerPort"] == int(env["SLIPWAY_GRPC_PORT"])
    routes = set(create_app(Settings()).openapi()["paths"])
    probes = {name: spec[name]["httpGet"] for name in ("startupProbe", "readinessProbe")}
    probes["livenessProbe"] = spec["livenessProbe"]["httpGet"]
    assert {p["path"] for p in probes.values()} == {"/readyz", "/healthz"}
    for probe in probes.values():
        assert probe["path"] in routes and probe["port"] == http["containerPort"]
    annotations = runtime["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/path"] in routes
    assert int(annotations["prometheus.kserve.io/port"]) == http["containerPort"]
    assert set(runtime["spec"]["protocolVersions"]) == {"v1", "v2", "grpc-v2"}


def test_image_user_and_pod_security(runtime: dict[str, Any]) -> None:
    spec = container(runtime)
    assert spec["image"] == SERVE_IMAGE
    uid = re.search(r"^ARG UID=(\d+)$", (REPO / "Dockerfile.serve").read_text(), re.M)
    context = spec["securityContext"]
    assert uid and context["runAsUser"] == int(uid[1]) and context["runAsNonRoot"]
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    assert context["capabilities"]["drop"] == ["ALL"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["resources"]["requests"] and spec["resources"]["limits"]


def test_model_formats_and_the_example(runtime: dict[str, Any], isvc: dict[str, Any]) -> None:
    formats = {f["name"]: f for f in runtime["spec"]["supportedModelFormats"]}
    card_version = str(ModelCard.model_fields["schema_version"].default)
    assert formats["slipway"]["version"] == card_version and formats["slipway"]["autoSelect"]
    assert formats["onnx"]["autoSelect"] is False  # an .onnx file alone has no card
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"] == {"name": "slipway", "version": card_version}
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert predictor["enableServiceLinks"] is False  # no SLIPWAY_*_PORT from Services
    # Two container ports need raw Deployments (Knative serves one port per container).
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"


def test_the_example_serves_the_claim_the_chart_uses(isvc: dict[str, Any]) -> None:
    claim, _, sub_path = (
        isvc["spec"]["predictor"]["model"]["storageUri"].removeprefix("pvc://").partition("/")
    )
    cluster = build(REPO / "k8s")
    claims = {
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for d in cluster
        if d["kind"] == "PersistentVolumeClaim"
    }
    assert (isvc["metadata"]["namespace"], claim) in claims
    pvc_scenario = yaml.safe_load((CHART / "ci" / "pvc-model-values.yaml").read_text())
    assert pvc_scenario["model"]["pvc"] == {"claimName": claim, "subPath": sub_path}
    assert isvc["metadata"]["name"] == pvc_scenario["model"]["name"]


def test_kserve_is_optional_and_documented() -> None:
    root = yaml.safe_load((REPO / "k8s" / "kustomization.yaml").read_text())
    assert "kserve" not in root["resources"]  # needs KServe's CRDs: applied on its own
    assert "kserve/" in (REPO / "k8s" / "README.md").read_text()


@pytest.mark.slow
def test_the_runtime_environment_serves_a_model_folder(
    runtime: dict[str, Any], isvc: dict[str, Any], trained_model: Path, tmp_path: Path
) -> None:
    """The container's environment with the model folder where KServe would put it."""
    name = isvc["metadata"]["name"]
    env = env_for(runtime, name)
    env["SLIPWAY_MODEL_SOURCE"] = str(trained_model)  # stands in for /mnt/models
    env["SLIPWAY_MODEL_CACHE_DIR"] = str(tmp_path / "cache")
    with inference_server(env, tmp_path / "server.log") as proc:
        proc.wait_ready(container(runtime)["readinessProbe"]["httpGet"]["path"])
        ready = httpx.get(f"{proc.url}/v1/models/{name}")
        assert ready.status_code == 200 and ready.json() == {"name": name, "ready": True}
        assert httpx.get(f"{proc.url}/v2/models/{name}/ready").json()["ready"] is True
