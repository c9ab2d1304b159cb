"""`ClusterOptions`: where and how the pipeline's steps run on Kubernetes.

The defaults follow the common GKE/EKS GPU conventions: GPU nodes carry the label
`nvidia.com/gpu.present=true` (NVIDIA GPU feature discovery / GPU operator) and the taint
`nvidia.com/gpu:NoSchedule`. Only the train task tolerates that taint, so CPU steps never land
on a GPU node. On GKE without the operator use
`gpu_node_selector: {cloud.google.com/gke-accelerator: nvidia-l4}`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from slipway import __version__
from slipway.config.base import Section

# The one training image of every component; its tag is the package version.
TRAIN_IMAGE = f"ghcr.io/slipway/train:{__version__}"
SERVE_IMAGE = f"ghcr.io/slipway/serve:{__version__}"


class Resources(Section):
    """CPU and memory requests and limits of one task's pod."""

    cpu_request: str = Field(description="CPU request, e.g. '1' or '500m'.")
    cpu_limit: str = Field(description="CPU limit.")
    memory_request: str = Field(description="Memory request, e.g. '4Gi'.")
    memory_limit: str = Field(description="Memory limit.")


class ClusterOptions(Section):
    """Cluster wiring of the pipeline: image, GPU pool, volumes, credentials, retries, scale."""

    image: str = Field(TRAIN_IMAGE, description="Image of every step (Dockerfile.train).")
    use_gpu: bool = Field(True, description="Train on the GPU node pool (false: CPU nodes).")
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of a GPU.")
    gpu_node_selector: dict[str, str] = Field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"},
        description="Node labels of the GPU pool.",
    )
    gpu_toleration_key: str = Field(
        "nvidia.com/gpu", description="Taint key on GPU nodes that the train task tolerates."
    )
    gpu_toleration_effect: str = Field("NoSchedule", description="Effect of that taint.")
    gpus_per_node: int = Field(
        1, ge=1, description="GPUs per training node; more than one trains with torchrun (DDP)."
    )
    nodes: int = Field(
        1, ge=1, description="Training nodes; more than one runs a Kubeflow TrainJob/PyTorchJob."
    )
    job_kind: Literal["TrainJob", "PyTorchJob"] = Field(
        "TrainJob",
        description="Multi-node job: TrainJob (Kubeflow Trainer v2) or PyTorchJob (v1).",
    )
    pvc_name: str = Field(
        "slipway-data", description="PVC with datasets and checkpoints (RWX across nodes)."
    )
    mount_path: str = Field("/mnt/slipway", description="Where every step mounts that PVC.")
    shm_size: str = Field("8Gi", description="Memory-backed /dev/shm of the train task.")
    mlflow_config_map: str = Field(
        "slipway-mlflow", description="ConfigMap with MLFLOW_TRACKING_URI (optional)."
    )
    mlflow_secret: str = Field(
        "slipway-mlflow-credentials", description="Secret with MLflow/S3 credentials (optional)."
    )
    train_resources: Resources = Field(
        default_factory=lambda: Resources(
            cpu_request="4", cpu_limit="8", memory_request="16Gi", memory_limit="32Gi"
        ),
        description="Requests and limits of the train task.",
    )
    step_resources: Resources = Field(
        default_factory=lambda: Resources(
            cpu_request="1", cpu_limit="2", memory_request="4Gi", memory_limit="8Gi"
        ),
        description="Requests and limits of every other task.",
    )
    train_retries: int = Field(3, ge=0, description="Retries of the train task.")
    step_retries: int = Field(1, ge=0, description="Retries of every other task.")
    retry_backoff: str = Field("60s", description="First retry's wait.")
    retry_backoff_factor: float = Field(2.0, ge=1, description="Growth of the wait per retry.")
    retry_backoff_max: str = Field("1800s", description="Longest wait between retries.")

    @property
    def checkpoint_root(self) -> str:
        """Checkpoints live on the PVC, so a retried task resumes."""
        return f"{self.mount_path}/checkpoints"

    def for_local_run(self) -> ClusterOptions:
        """kfp.local honours retries; a laptop run retries once, without a long wait."""
        return self.model_copy(
            update={"train_retries": 1, "step_retries": 0, "retry_backoff": "1s"}
        )
