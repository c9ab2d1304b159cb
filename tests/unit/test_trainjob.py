"""Cluster training manifests and the apply/wait loop.

The manifests are checked against the CRDs' own openAPIV3Schema. No Kubernetes API server runs
on these machines, so the apply/wait code talks to a stand-in `CustomObjectsApi` with the real
client's method signatures and its real `ApiException`; that API boundary is the only thing
replaced.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from kubernetes.client.exceptions import ApiException

from slipway.config.training import TrainConfig
from slipway.errors import SlipwayError
from slipway.training.launch import run_training, worker_args
from slipway.training.trainjob import (
    TrainJobError,
    TrainJobSpec,
    build_manifest,
    job_name,
    run_trainjob,
    wait_for,
)

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas" / "crds"
ARGS = worker_args("/mnt/slipway/data", "/mnt/slipway/models/a", TrainConfig(batch_size=64))


def _validate(manifest: dict[str, Any], schema_file: str) -> None:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    jsonschema.Draft7Validator(schema).validate(manifest)
    name = manifest["metadata"]["name"]
    # The CRDs' CEL rules on the name, which jsonschema does not run.
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63


def _spec(**kw: Any) -> TrainJobSpec:
    base = dict(
        image="registry.example/slipway-train:1",
        namespace="ml",
        volume_claim="slipway-data",
        cpu="8",
        memory="32Gi",
        node_selector={"cloud.google.com/gke-accelerator": "nvidia-l4"},
        tolerations=[{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}],
        env={"NCCL_DEBUG": "WARN"},
    )
    return TrainJobSpec(**{**base, **kw})


GPU = "nvidia.com/gpu"


def test_trainjob_manifest_is_valid_and_runs_torchrun_on_every_node() -> None:
    job = build_manifest(_spec(), ARGS, nodes=3, gpus_per_node=4)
    _validate(job, "trainer.kubeflow.org/trainjob_v1alpha1.json")
    trainer = job["spec"]["trainer"]
    assert job["spec"]["runtimeRef"]["name"] == "torch-distributed"
    assert trainer["numNodes"] == 3 and trainer["numProcPerNode"] == 4
    assert trainer["resourcesPerNode"]["limits"][GPU] == 4
    assert trainer["command"] == ["torchrun", "-m", "slipway.training.launch"]
    assert trainer["args"] == ARGS
    config = json.loads(trainer["args"][trainer["args"].index("--config") + 1])
    assert config["batch_size"] == 64
    patch = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    (node,) = patch["replicatedJobs"]
    pod = node["template"]["spec"]["template"]["spec"]
    assert node["name"] == "node" and pod["containers"][0]["name"] == "node"
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "slipway-data"
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/mnt/slipway"
    assert pod["tolerations"][0]["key"] == GPU


def test_pytorchjob_manifest_has_master_and_workers() -> None:
    job = build_manifest(_spec(kind="PyTorchJob"), ARGS, nodes=3, gpus_per_node=2)
    _validate(job, "kubeflow.org/pytorchjob_v1.json")
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1 and replicas["Worker"]["replicas"] == 2
    assert job["spec"]["nprocPerNode"] == "2"
    container = replicas["Worker"]["template"]["spec"]["containers"][0]
    assert container["name"] == "pytorch" and container["resources"]["limits"][GPU] == 2
    assert container["command"][:2] == ["sh", "-c"]
    assert "torchrun --master-addr=" in container["command"][2]
    assert '-m slipway.training.launch "$@"' in container["command"][2]
    assert container["args"] == ARGS


def test_single_node_pytorchjob_has_no_workers_and_trainjob_without_volume_is_valid() -> None:
    job = build_manifest(_spec(kind="PyTorchJob"), ARGS, nodes=1, gpus_per_node=1)
    assert set(job["spec"]["pytorchReplicaSpecs"]) == {"Master"}
    bare = build_manifest(TrainJobSpec(image="img:1"), ARGS, nodes=2, gpus_per_node=1)
    _validate(bare, "trainer.kubeflow.org/trainjob_v1alpha1.json")
    assert "runtimePatches" not in bare["spec"]


def test_schema_rejects_what_the_cluster_would_reject() -> None:
    job = build_manifest(_spec(), ARGS, nodes=2, gpus_per_node=1)
    del job["spec"]["runtimeRef"]
    with pytest.raises(jsonschema.ValidationError, match="runtimeRef"):
        _validate(job, "trainer.kubeflow.org/trainjob_v1alpha1.json")


def test_job_name_is_stable_per_run_so_retries_reattach() -> None:
    other = worker_args("/mnt/slipway/data", "/mnt/slipway/models/b", TrainConfig())
    assert job_name(ARGS) == job_name(list(ARGS))
    assert job_name(ARGS) != job_name(other)


class FakeCustomObjects:
    """Stand-in for kubernetes.client.CustomObjectsApi: records creates, replays statuses."""

    def __init__(self, statuses: list[dict[str, Any]], create_status: int | None = None) -> None:
        self.statuses = statuses
        self.create_status = create_status
        self.created: list[tuple[str, str, str, str, dict[str, Any]]] = []
        self.reads = 0

    def create_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        if self.create_status is not None:
            raise ApiException(status=self.create_status, reason="Conflict or Forbidden")
        self.created.append((group, version, namespace, plural, body))
        return body

    def get_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any]:
        status = self.statuses[min(self.reads, len(self.statuses) - 1)]
        self.reads += 1
        return {"metadata": {"name": name, "namespace": namespace}, "status": status}


def _cond(kind: str, status: str = "True", reason: str = "R", message: str = "") -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message}


def test_trainjob_runs_to_completion() -> None:
    api = FakeCustomObjects(
        [{}, {"conditions": [_cond("Complete", "False")]}, {"conditions": [_cond("Complete")]}]
    )
    spec = _spec(poll_s=0.0)
    status = run_trainjob(spec, ARGS, nodes=2, gpus_per_node=1, api=api)
    (group, version, namespace, plural, body) = api.created[0]
    assert (group, version, namespace, plural) == (
        "trainer.kubeflow.org",
        "v1alpha1",
        "ml",
        "trainjobs",
    )
    assert body["metadata"]["name"] == job_name(ARGS)
    assert status["conditions"][0]["type"] == "Complete" and api.reads == 3


def test_failed_job_reports_the_operator_reason() -> None:
    failed = _cond("Failed", reason="TrainingFailed", message="pod node-1 exited with code 2")
    api = FakeCustomObjects([{"conditions": [_cond("Created"), failed]}])
    with pytest.raises(TrainJobError, match="TrainingFailed: pod node-1 exited with code 2"):
        run_trainjob(_spec(kind="PyTorchJob", poll_s=0.0), ARGS, 2, 1, api=api)
    assert api.created[0][3] == "pytorchjobs"


def test_timeout_names_the_last_conditions() -> None:
    api = FakeCustomObjects([{"conditions": [_cond("Created")]}])
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(TrainJobError, match=r"within 60 s \(conditions: Created=True\)"):
        wait_for(
            "TrainJob", "j", "ml", api, timeout_s=60, poll_s=15, clock=lambda: now[0], sleep=sleep
        )
    assert api.reads == 5  # t = 0, 15, 30, 45, 60


def test_existing_job_is_waited_on_and_other_api_errors_are_one_line() -> None:
    api = FakeCustomObjects([{"conditions": [_cond("Complete")]}], create_status=409)
    run_trainjob(_spec(poll_s=0.0), ARGS, 2, 1, api=api)
    assert api.reads == 1
    forbidden = FakeCustomObjects([{}], create_status=403)
    with pytest.raises(TrainJobError, match=r"cannot create TrainJob ml/slipway-train-\w+: 403"):
        run_trainjob(_spec(), ARGS, 2, 1, api=forbidden)


def test_more_than_one_node_needs_a_cluster_spec(tmp_path: Path) -> None:
    with pytest.raises(SlipwayError, match="more than one node needs a TrainJobSpec"):
        run_training(tmp_path, tmp_path / "m", TrainConfig(), nodes=2)
    with pytest.raises(SlipwayError, match="kind must be TrainJob or PyTorchJob"):
        TrainJobSpec(image="i", kind="MPIJob")  # type: ignore[arg-type]


def test_spec_from_the_pipeline_placement_settings(monkeypatch, tmp_path) -> None:
    from slipway.training import trainjob

    placement = json.dumps(
        {
            "node_selector": {"nvidia.com/gpu.present": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
        }
    )
    namespace_file = tmp_path / "namespace"
    namespace_file.write_text("team-a\n")
    monkeypatch.setattr(trainjob, "SERVICE_ACCOUNT_NAMESPACE", namespace_file)
    spec = trainjob.spec_from_placement(
        "registry.example/train:1", "PyTorchJob", "", "slipway-data", "/mnt/slipway", placement
    )
    assert spec.namespace == "team-a"
    assert spec.kind == "PyTorchJob" and spec.volume_claim == "slipway-data"
    assert spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert spec.tolerations[0]["key"] == "nvidia.com/gpu"
    job = build_manifest(spec, ARGS, nodes=2, gpus_per_node=4)
    _validate(job, "kubeflow.org/pytorchjob_v1.json")
    monkeypatch.setattr(trainjob, "SERVICE_ACCOUNT_NAMESPACE", tmp_path / "absent")
    assert trainjob.spec_from_placement("img").namespace == "default"
    with pytest.raises(SlipwayError, match="kind"):
        trainjob.spec_from_placement("img", kind="MPIJob")
