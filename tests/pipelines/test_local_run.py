"""The whole pipeline under kfp.local with MLflow on SQLite: register, gate, rollback, resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.run import run_local
from pipelines.training import run_arguments
from slipway.cli import app
from slipway.config.experiment import ExperimentConfig
from slipway.registry.client import PRODUCTION, STAGING, Registry

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*non-Python base image"),
    pytest.mark.filterwarnings("ignore:.*no effect in the current local runner"),
]


def test_pipeline_registers_gates_and_rolls_back(demo_data: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment = {
        "data": {"source": str(demo_data)},
        "model": {"name": "fashion", "parity_images": 16},
        "training": {"epochs": 2, "batch_size": 64},
        "tracking": {"uri": uri},
        # this test is about accuracy, not a loaded machine
        "promotion": {"max_p95_latency_ms": 10_000.0, "min_accuracy": 0.0},
    }

    def arguments(**training: object) -> dict:
        config = ExperimentConfig.model_validate(experiment)
        config.training = config.training.model_copy(update=training)
        args = run_arguments(config, git_commit="feedbeef")
        return {**args, "checkpoint_root": str(tmp_path / "checkpoints")}

    first = run_local(arguments(), tmp_path / "root")
    assert (first["version"], first["decision"]) == ("1", "promoted")
    assert "first production version" in first["reason"]

    registry = Registry(uri)
    info = registry.describe("fashion/1")
    tags, metrics = info["tags"], info["metrics"]
    from slipway.data.scan import scan_dataset

    assert tags["dataset_fingerprint"] == scan_dataset(demo_data, progress=False).fingerprint
    assert tags["git_commit"] == "feedbeef"
    assert tags["pipeline_run_id"]
    assert info["params"]["epochs"] == "2" and tags["arch"] == "resnet18"
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["onnx_max_abs_diff"] <= 1e-3
    run = registry.client.get_run(tags["mlflow_run_id"])
    assert run.data.params["training.arch"] == "resnet18"
    assert run.data.params["model.name"] == "fashion"
    curve = registry.client.get_metric_history(run.info.run_id, "val_loss")
    assert sorted(m.step for m in curve) == [1, 2]
    artifacts = {a.path for a in registry.client.list_artifacts(run.info.run_id, "evaluation")}
    assert "evaluation/confusion_matrix.png" in artifacts
    assert not (tmp_path / "checkpoints" / tags["pipeline_run_id"] / "train").exists()

    worse = arguments(epochs=1, max_batches_per_epoch=1, lr=1e-6)
    second = run_local(worse, tmp_path / "root")
    assert (second["version"], second["decision"]) == ("2", "rejected")
    assert "worse than production v1" in second["reason"]
    assert str(registry.alias_version("fashion", PRODUCTION).version) == "1"
    assert str(registry.alias_version("fashion", STAGING).version) == "2"
    assert registry.describe("fashion/2")["tags"]["promotion_reason"] == second["reason"]

    cli = CliRunner()
    common = ["--tracking-uri", uri]
    promoted = cli.invoke(app, ["registry", "promote", "fashion", "2", "--reason=canary", *common])
    assert promoted.exit_code == 0, promoted.output
    assert str(registry.alias_version("fashion", PRODUCTION).version) == "2"
    accuracy = {v: registry.describe(f"fashion/{v}")["metrics"]["test_accuracy"] for v in "12"}
    assert f"v1 -> v2 (test accuracy {accuracy['1']:.4f} -> {accuracy['2']:.4f})" in promoted.output
    rolled = cli.invoke(app, ["registry", "rollback", "fashion", "--reason", "bad canary", *common])
    assert rolled.exit_code == 0, rolled.output
    assert f"v2 -> v1 (test accuracy {accuracy['2']:.4f} -> {accuracy['1']:.4f})" in rolled.output
    assert str(registry.alias_version("fashion", PRODUCTION).version) == "1"
    shown = cli.invoke(app, ["registry", "show", "fashion/2", "--json", *common])
    assert json.loads(shown.output)["tags"]["rollback_reason"] == "bad canary"
    listed = cli.invoke(app, ["registry", "show", "fashion", *common])
    rows = {line.split()[0]: line for line in listed.output.splitlines()[1:]}
    assert "rolled back" in rows["2"] and "bad canary" in rows["2"]
    assert "production" in rows["1"] and f"{accuracy['1']:.4f}" in rows["1"]


TRAIN_ONLY = """
import sys
from kfp import dsl, local
from components.train_model import train_model

root, dataset, checkpoints, uri = sys.argv[1:5]
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root)


@dsl.pipeline(name="train-only")
def train_only() -> str:
    imported = dsl.importer(artifact_uri=dataset, artifact_class=dsl.Dataset)
    task = train_model(
        dataset=imported.output,
        config={"epochs": 4, "batch_size": 32, "max_batches_per_epoch": 3},
        tracking={"uri": uri},
        data={},
        model_config={},
        promotion={},
        checkpoint_root=checkpoints,
        pipeline_run_id="resume-test",
    )
    return task.outputs["mlflow_run_id"]


print("RUN_ID", train_only().output)
"""


def test_killed_train_task_resumes_from_its_checkpoint(demo_data: Path, tmp_path: Path) -> None:
    from slipway.config.experiment import DataConfig
    from slipway.steps import prepare

    prepare(DataConfig(source=str(demo_data)), tmp_path / "dataset")
    work = tmp_path / "checkpoints" / "resume-test" / "train"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-c", TRAIN_ONLY, str(tmp_path / "root"), str(tmp_path / "dataset")]
    args += [str(tmp_path / "checkpoints"), uri]

    with (tmp_path / "first.log").open("w") as log:
        first = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 900
        while not (work / "checkpoints" / "last.pt").exists():
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)  # the pod dies after epoch 1's checkpoint
        assert first.wait(timeout=60) == -signal.SIGKILL
    run_id = (work / "mlflow_run_id").read_text().strip()

    second = subprocess.run(args, capture_output=True, text=True, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"RUN_ID {run_id}" in second.stdout  # the same MLflow run continues

    outputs = sorted((tmp_path / "root").glob("train-only-*/train-model/executor_output.json"))
    metrics = json.loads(outputs[-1].read_text())["artifacts"]["metrics"]["artifacts"][0]
    assert metrics["metadata"]["resumed_from_epoch"] >= 1
    assert metrics["metadata"]["epochs_run"] == 4
    registry = Registry(uri)
    steps = sorted(m.step for m in registry.client.get_metric_history(run_id, "val_loss"))
    assert steps == [1, 2, 3, 4]  # each epoch logged once, none lost to the kill
    assert registry.client.get_run(run_id).info.status == "FINISHED"
