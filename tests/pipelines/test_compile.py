"""The compiled IR carries every cluster concern; compiling never loads torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from slipway.cli import app

IMAGE = "registry.example.com/ml/slipway-train:test"


def _compile(tmp_path: Path, *args: str) -> tuple[dict[str, Any], dict[str, Any]]:
    out = tmp_path / "training.yaml"
    result = CliRunner().invoke(app, ["pipeline", "compile", "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    spec, platform = yaml.safe_load_all(out.read_text())
    return spec, platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def ir(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    return _compile(tmp_path_factory.mktemp("ir"), "--image", IMAGE)


def test_every_step_runs_the_given_image_without_installing_anything(ir) -> None:
    spec, _ = ir
    executors = spec["deploymentSpec"]["executors"]
    steps = {f"exec-{n}-model" for n in ("train", "evaluate", "export", "register")}
    # The multi-node branch repeats train (as a job launcher) and the steps after it.
    assert set(executors) == steps | {f"{n}-2" for n in steps} | {"exec-prepare-dataset"}
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"] == IMAGE, name
        assert "pip install" not in " ".join(container["command"]), name


def test_train_task_asks_for_gpus_on_the_gpu_pool(ir) -> None:
    spec, platform = ir
    resources = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "pipelinechannel--gpus_per_node" in resources["accelerator"]["resourceCount"]
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert params["gpus_per_node"]["defaultValue"] == 1
    assert params["nodes"]["defaultValue"] == 1
    assert resources["resourceCpuLimit"] == "8" and resources["resourceMemoryLimit"] == "32Gi"
    train = platform["exec-train-model"]
    assert train["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
    assert train["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert train["emptyDirMounts"] == [
        {"volumeName": "dshm", "mountPath": "/dev/shm", "medium": "Memory", "sizeLimit": "8Gi"}
    ]


def test_more_than_one_node_runs_a_cluster_job_from_a_cpu_task(ir) -> None:
    spec, platform = ir
    branches = spec["root"]["dag"]["tasks"]["condition-branches-1"]
    component = spec["components"][branches["componentRef"]["name"]]
    conditions = {
        name: task["triggerPolicy"]["condition"] for name, task in component["dag"]["tasks"].items()
    }
    assert "int(inputs.parameter_values['pipelinechannel--nodes']) == 1" in conditions.values()
    launcher = spec["deploymentSpec"]["executors"]["exec-train-model-2"]["container"]
    assert "accelerator" not in launcher["resources"]
    assert launcher["resources"]["resourceCpuRequest"] == "1"
    assert "tolerations" not in platform["exec-train-model-2"]
    assert platform["exec-train-model-2"]["pvcMount"][0]["constant"] == "slipway-data"
    multi = spec["components"]["comp-condition-3"]["dag"]["tasks"]["train-model-2"]["inputs"]
    constants = {
        k: v["runtimeValue"]["constant"]
        for k, v in multi["parameters"].items()
        if "runtimeValue" in v
    }
    assert constants["job_image"] == IMAGE
    assert constants["job_volume_claim"] == "slipway-data"
    assert constants["job_mount_path"] == "/mnt/slipway"
    placement = json.loads(constants["job_placement"])
    assert placement["node_selector"] == {"nvidia.com/gpu.present": "true"}
    assert placement["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert multi["parameters"]["nodes"]["componentInputParameter"] == "pipelinechannel--nodes"


def test_cpu_steps_stay_off_the_gpu_pool(ir) -> None:
    spec, platform = ir
    for step in ("prepare-dataset", "evaluate-model", "export-model", "register-model"):
        resources = spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]["resources"]
        assert "accelerator" not in resources
        assert resources["resourceCpuRequest"] == "1"
        assert "tolerations" not in platform[f"exec-{step}"]
        assert "nodeSelector" not in platform[f"exec-{step}"]


def test_volumes_and_mlflow_settings(ir) -> None:
    _, platform = ir
    for name, executor in platform.items():
        assert executor["pvcMount"][0]["constant"] == "slipway-data", name
        assert executor["pvcMount"][0]["mountPath"] == "/mnt/slipway", name
    assert "secretAsEnv" not in platform["exec-prepare-dataset"]
    for step in ("train-model", "evaluate-model", "export-model", "register-model"):
        secret = platform[f"exec-{step}"]["secretAsEnv"][0]
        assert secret["secretName"] == "slipway-mlflow-credentials" and secret["optional"]
        envs = {e["envVar"] for e in secret["keyToEnv"]}
        assert {"AWS_ACCESS_KEY_ID", "MLFLOW_TRACKING_TOKEN"} <= envs
        config = platform[f"exec-{step}"]["configMapAsEnv"][0]
        assert config["configMapName"] == "slipway-mlflow"
        assert "MLFLOW_TRACKING_URI" in {e["envVar"] for e in config["keyToEnv"]}


def _tasks(spec: dict[str, Any]) -> dict[str, Any]:
    """Every task of the IR, wherever it sits (the root DAG or a condition branch)."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_retries_and_caching(ir) -> None:
    spec, _ = ir
    tasks = _tasks(spec)
    for step in ("train-model", "train-model-2"):
        retry = tasks[step]["retryPolicy"]
        assert retry["maxRetryCount"] == 3
        assert retry["backoffDuration"] == "60s" and retry["backoffFactor"] == 2.0
    for step in ("prepare-dataset", "evaluate-model", "export-model", "evaluate-model-2"):
        assert tasks[step]["cachingOptions"].get("enableCache") is True, step
    for step in ("train-model", "register-model", "train-model-2", "register-model-2"):
        assert not tasks[step]["cachingOptions"].get("enableCache"), step


def test_steps_are_chained_and_the_run_id_reaches_train_and_register(ir) -> None:
    spec, _ = ir
    tasks = _tasks(spec)
    assert tasks["condition-branches-1"]["dependentTasks"] == ["prepare-dataset"]
    for suffix in ("", "-2"):
        assert tasks[f"register-model{suffix}"]["dependentTasks"] == [
            f"export-model{suffix}",
            f"train-model{suffix}",
        ]
        for step in (f"train-model{suffix}", f"register-model{suffix}"):
            run_id = tasks[step]["inputs"]["parameters"]["pipeline_run_id"]["runtimeValue"]
            assert run_id["constant"] == "{{$.pipeline_job_uuid}}"
    outputs = spec["root"]["outputDefinitions"]["parameters"]
    assert set(outputs) == {"version", "decision", "reason"}


def test_gpu_pool_settings_are_configurable(tmp_path: Path) -> None:
    spec, platform = _compile(
        tmp_path,
        "--set",
        "cluster.gpu_node_selector={cloud.google.com/gke-accelerator: nvidia-l4}",
        "--set",
        "cluster.gpu_toleration_key=gpu",
        "--set",
        "cluster.pvc_name=team-data",
    )
    train = platform["exec-train-model"]
    assert train["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-l4"}
    assert train["tolerations"][0]["key"] == "gpu"
    assert train["pvcMount"][0]["constant"] == "team-data"
    default_image = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]["image"]
    from components import TRAIN_IMAGE

    assert default_image == TRAIN_IMAGE


def test_no_gpu_compiles_a_cpu_pipeline(tmp_path: Path) -> None:
    spec, platform = _compile(tmp_path, "--set", "cluster.use_gpu=false")
    resources = spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]["resources"]
    assert "accelerator" not in resources
    assert "tolerations" not in platform["exec-train-model"]


def test_bad_selector_is_an_error_naming_the_key(tmp_path: Path) -> None:
    args = ["pipeline", "compile", "--set", "cluster.gpu_node_selector=nolabel"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    assert "cluster.gpu_node_selector" in str(result.exception)


def test_compiling_does_not_import_torch_or_mlflow() -> None:
    code = (
        "import sys, tempfile, pathlib\n"
        "from pipelines.run import compile_pipeline\n"
        "compile_pipeline(pathlib.Path(tempfile.mkdtemp()) / 'p.yaml')\n"
        "print(sorted(m for m in ('torch', 'mlflow', 'onnxruntime') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
