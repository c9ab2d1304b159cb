"""Multi-node training on Kubernetes: a Kubeflow Trainer `TrainJob`, or a v1 `PyTorchJob`.

Both run the same command on every node, `torchrun -m slipway.training.launch ...`; the operator
sets the rendezvous environment torchrun reads (`PET_NNODES`, `PET_NPROC_PER_NODE`, `PET_NODE_RANK`,
`PET_MASTER_ADDR`, `PET_MASTER_PORT`). Data, model folder and checkpoints live on one
ReadWriteMany volume mounted at the same path in every pod, so rank 0's checkpoint is what every
rank resumes from after a pod is replaced.

The manifests are built here as plain dicts (validated in tests against the CRDs' own schemas),
applied with the kubernetes client's `CustomObjectsApi`, and waited on by polling their status
conditions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from slipway.errors import SlipwayError

log = logging.getLogger(__name__)

TRAINER_GROUP, TRAINER_VERSION, TRAINJOB_PLURAL = "trainer.kubeflow.org", "v1alpha1", "trainjobs"
V1_GROUP, V1_VERSION, PYTORCHJOB_PLURAL = "kubeflow.org", "v1", "pytorchjobs"
# The torch-distributed ClusterTrainingRuntime runs one replicated job called "node" whose
# container is also called "node"; runtime patches address them by these names.
TRAINER_NODE = "node"
PATCH_MANAGER = "slipway.dev/launcher"
GPU_RESOURCE = "nvidia.com/gpu"


class TrainJobError(SlipwayError):
    """The cluster job failed, or did not finish in time; the message says which and why."""


@dataclass
class TrainJobSpec:
    """Where and how a cluster training job runs; everything else comes from the run itself.

    Attributes:
        image: training image (the project's Dockerfile.train build) with slipway installed.
        namespace: namespace to create the job in.
        kind: "TrainJob" (Kubeflow Trainer v2) or "PyTorchJob" (Training Operator v1).
        runtime: ClusterTrainingRuntime a TrainJob refers to.
        volume_claim: ReadWriteMany PVC holding data, model folder and checkpoints.
        mount_path: where that claim is mounted in every pod (and in the calling pod).
        name: job name; by default derived from the run's arguments, so a retried pipeline
            step finds and waits on the job it started before instead of starting another.
        cpu, memory: requests per node, besides one GPU per process.
        node_selector, tolerations: placement on the GPU node pool.
        env: extra environment variables (for example NCCL settings).
        service_account: pod service account, when the cluster needs one.
        timeout_s: how long to wait for the job to finish.
        poll_s: seconds between status reads.
    """

    image: str
    namespace: str = "default"
    kind: Literal["TrainJob", "PyTorchJob"] = "TrainJob"
    runtime: str = "torch-distributed"
    volume_claim: str | None = None
    mount_path: str = "/mnt/slipway"
    name: str | None = None
    cpu: str | None = None
    memory: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    service_account: str | None = None
    timeout_s: float = 48 * 3600
    poll_s: float = 15.0

    def __post_init__(self) -> None:
        if self.kind not in ("TrainJob", "PyTorchJob"):
            raise SlipwayError(f"kind must be TrainJob or PyTorchJob, got {self.kind!r}")
        if not self.image:
            raise SlipwayError("a cluster training job needs an image")


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def current_namespace(default: str = "default") -> str:
    """The namespace of the pod this runs in (a pipeline step launches jobs next to itself)."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or default
    except OSError:
        return default


def spec_from_placement(
    image: str,
    kind: str = "TrainJob",
    namespace: str = "",
    volume_claim: str = "",
    mount_path: str = "/mnt/slipway",
    placement: str = "",
) -> TrainJobSpec:
    """A TrainJobSpec from the flat settings a pipeline step receives.

    `placement` is JSON `{"node_selector": {...}, "tolerations": [...]}` (the GPU node pool),
    written by the pipeline at compile time; an empty namespace means the step's own.
    """
    extra = json.loads(placement) if placement else {}
    return TrainJobSpec(
        image=image,
        kind=kind,  # type: ignore[arg-type]
        namespace=namespace or current_namespace(),
        volume_claim=volume_claim or None,
        mount_path=mount_path,
        node_selector=dict(extra.get("node_selector", {})),
        tolerations=list(extra.get("tolerations", [])),
    )


def job_name(args: list[str], prefix: str = "slipway-train") -> str:
    """A DNS-1035 name that is the same for the same run arguments."""
    digest = hashlib.sha256("\0".join(args).encode()).hexdigest()[:10]
    return f"{prefix}-{digest}"


def trainer_command(args: list[str]) -> tuple[list[str], list[str]]:
    """(command, args) of every node: torchrun with the operator-provided rendezvous."""
    return ["torchrun", "-m", "slipway.training.launch"], list(args)


# The v1 operator always sets MASTER_ADDR/MASTER_PORT, and PET_NNODES, PET_NODE_RANK and
# PET_NPROC_PER_NODE when `nprocPerNode` is given; whether it also sets PET_MASTER_* depends on
# its version, so the rendezvous address is passed explicitly with MASTER_* as the fallback.
_V1_TORCHRUN = (
    'exec torchrun --master-addr="${PET_MASTER_ADDR:-$MASTER_ADDR}" '
    '--master-port="${PET_MASTER_PORT:-$MASTER_PORT}" -m slipway.training.launch "$@"'
)


def _resources(spec: TrainJobSpec, gpus: int) -> dict[str, Any]:
    requests: dict[str, Any] = {}
    if spec.cpu:
        requests["cpu"] = spec.cpu
    if spec.memory:
        requests["memory"] = spec.memory
    resources: dict[str, Any] = {"limits": {GPU_RESOURCE: gpus}}
    if requests:
        resources["requests"] = requests
    return resources


def _volumes(spec: TrainJobSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if spec.volume_claim is None:
        return [], []
    volume = {"name": "slipway-data", "persistentVolumeClaim": {"claimName": spec.volume_claim}}
    return [volume], [{"name": "slipway-data", "mountPath": spec.mount_path}]


def _pod_extras(spec: TrainJobSpec) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    if spec.node_selector:
        extras["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        extras["tolerations"] = list(spec.tolerations)
    if spec.service_account:
        extras["serviceAccountName"] = spec.service_account
    return extras


def _metadata(spec: TrainJobSpec, args: list[str]) -> dict[str, Any]:
    return {
        "name": spec.name or job_name(args),
        "namespace": spec.namespace,
        "labels": {"app.kubernetes.io/name": "slipway", "app.kubernetes.io/component": "training"},
    }


def build_trainjob(
    spec: TrainJobSpec, args: list[str], nodes: int, gpus_per_node: int
) -> dict[str, Any]:
    """A `TrainJob` on the torch-distributed runtime: `nodes` pods x `gpus_per_node` ranks.

    The volume, mount and placement go in as a runtime patch on the runtime's "node" job,
    the place Kubeflow Trainer lets a TrainJob change the pod template.
    """
    command, arguments = trainer_command(args)
    trainer: dict[str, Any] = {
        "image": spec.image,
        "command": command,
        "args": arguments,
        "numNodes": nodes,
        "numProcPerNode": gpus_per_node,
        "resourcesPerNode": _resources(spec, gpus_per_node),
    }
    if spec.env:
        trainer["env"] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    job: dict[str, Any] = {
        "apiVersion": f"{TRAINER_GROUP}/{TRAINER_VERSION}",
        "kind": "TrainJob",
        "metadata": _metadata(spec, args),
        "spec": {
            "runtimeRef": {
                "apiGroup": TRAINER_GROUP,
                "kind": "ClusterTrainingRuntime",
                "name": spec.runtime,
            },
            "trainer": trainer,
        },
    }
    volumes, mounts = _volumes(spec)
    pod = {**_pod_extras(spec)}
    if volumes:
        pod["volumes"] = volumes
        pod["containers"] = [{"name": TRAINER_NODE, "volumeMounts": mounts}]
    if pod:
        replicated = {"name": TRAINER_NODE, "template": {"spec": {"template": {"spec": pod}}}}
        job["spec"]["runtimePatches"] = [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [replicated]}}},
            }
        ]
    return job


def build_pytorchjob(
    spec: TrainJobSpec, args: list[str], nodes: int, gpus_per_node: int
) -> dict[str, Any]:
    """The same run as a Training Operator v1 `PyTorchJob`: one Master and `nodes - 1` Workers."""
    command, arguments = ["sh", "-c", _V1_TORCHRUN, "torchrun"], list(args)
    volumes, mounts = _volumes(spec)
    container: dict[str, Any] = {
        "name": "pytorch",  # the operator finds the training container by this name
        "image": spec.image,
        "command": command,
        "args": arguments,
        "resources": _resources(spec, gpus_per_node),
    }
    if mounts:
        container["volumeMounts"] = mounts
    if spec.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(spec.env.items())]
    pod: dict[str, Any] = {"containers": [container], **_pod_extras(spec)}
    if volumes:
        pod["volumes"] = volumes

    def replica(count: int) -> dict[str, Any]:
        return {"replicas": count, "restartPolicy": "OnFailure", "template": {"spec": pod}}

    replicas = {"Master": replica(1)}
    if nodes > 1:
        replicas["Worker"] = replica(nodes - 1)
    return {
        "apiVersion": f"{V1_GROUP}/{V1_VERSION}",
        "kind": "PyTorchJob",
        "metadata": _metadata(spec, args),
        "spec": {
            "nprocPerNode": str(gpus_per_node),
            "runPolicy": {"cleanPodPolicy": "None", "backoffLimit": 3},
            "pytorchReplicaSpecs": replicas,
        },
    }


def build_manifest(
    spec: TrainJobSpec, args: list[str], nodes: int, gpus_per_node: int
) -> dict[str, Any]:
    """The manifest of `spec.kind` for this run."""
    if nodes < 1 or gpus_per_node < 1:
        raise SlipwayError("nodes and gpus_per_node must be at least 1")
    build = build_trainjob if spec.kind == "TrainJob" else build_pytorchjob
    return build(spec, args, nodes, gpus_per_node)


def _coordinates(kind: str) -> tuple[str, str, str]:
    if kind == "TrainJob":
        return TRAINER_GROUP, TRAINER_VERSION, TRAINJOB_PLURAL
    return V1_GROUP, V1_VERSION, PYTORCHJOB_PLURAL


def custom_objects_api() -> Any:
    """A CustomObjectsApi from the in-cluster service account, else from the kubeconfig."""
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.CustomObjectsApi()


def submit(manifest: dict[str, Any], api: Any) -> None:
    """Create the job; one that already exists (a retried step) is waited on, not duplicated."""
    from kubernetes.client.exceptions import ApiException

    group, version, plural = _coordinates(manifest["kind"])
    meta = manifest["metadata"]
    try:
        api.create_namespaced_custom_object(group, version, meta["namespace"], plural, manifest)
        log.info("created %s %s/%s", manifest["kind"], meta["namespace"], meta["name"])
    except ApiException as exc:
        if exc.status != 409:
            raise TrainJobError(
                f"cannot create {manifest['kind']} {meta['namespace']}/{meta['name']}: "
                f"{exc.status} {exc.reason}"
            ) from exc
        log.info("%s %s already exists; waiting on it", manifest["kind"], meta["name"])


def _condition(status: dict[str, Any], kinds: tuple[str, ...]) -> dict[str, Any] | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") in kinds and cond.get("status") == "True":
            return cond
    return None


def wait_for(
    kind: str,
    name: str,
    namespace: str,
    api: Any,
    timeout_s: float,
    poll_s: float = 15.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll the job's conditions until it completes; raise with the operator's reason if not.

    TrainJob reports `Complete` or `Failed`; PyTorchJob `Succeeded` or `Failed`.
    """
    group, version, plural = _coordinates(kind)
    done = ("Complete",) if kind == "TrainJob" else ("Succeeded",)
    deadline = clock() + timeout_s
    last: dict[str, Any] = {}
    while True:
        obj = api.get_namespaced_custom_object(group, version, namespace, plural, name)
        last = obj.get("status") or {}
        failed = _condition(last, ("Failed",))
        if failed is not None:
            raise TrainJobError(
                f"{kind} {namespace}/{name} failed: {failed.get('reason', 'unknown reason')}: "
                f"{failed.get('message', '').strip() or 'no message'}"
            )
        if _condition(last, done) is not None:
            log.info("%s %s/%s finished", kind, namespace, name)
            return last
        if clock() >= deadline:
            seen = ", ".join(
                f"{c.get('type')}={c.get('status')}" for c in last.get("conditions") or []
            )
            raise TrainJobError(
                f"{kind} {namespace}/{name} did not finish within {timeout_s:g} s "
                f"(conditions: {seen or 'none yet'}); it is still on the cluster"
            )
        sleep(poll_s)


def run_trainjob(
    spec: TrainJobSpec, args: list[str], nodes: int, gpus_per_node: int, api: Any = None
) -> dict[str, Any]:
    """Build, create and wait on the cluster job for one run; returns its final status."""
    manifest = build_manifest(spec, args, nodes, gpus_per_node)
    api = api if api is not None else custom_objects_api()
    submit(manifest, api)
    meta = manifest["metadata"]
    return wait_for(spec.kind, meta["name"], meta["namespace"], api, spec.timeout_s, spec.poll_s)
