"""train_model: the core training loop, resumable from a checkpoint on a persistent volume."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train_model(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    config: dict,
    tracking: dict,
    data: dict,
    model_config: dict,
    promotion: dict,
    gpus: int = 1,
    checkpoint_root: str = "/mnt/slipway/checkpoints",
    pipeline_run_id: str = "",
    git_commit: str = "",
    nodes: int = 1,
    job_kind: str = "TrainJob",
    job_image: str = "",
    job_namespace: str = "",
    job_volume_claim: str = "",
    job_mount_path: str = "/mnt/slipway",
    job_placement: str = "",
) -> NamedTuple("TrainOutputs", [("mlflow_run_id", str)]):
    """Train a torchvision classifier; a retried task resumes from its last epoch.

    Checkpoints, best weights and the MLflow run id live in
    CHECKPOINT_ROOT/PIPELINE_RUN_ID/train, which must be on a volume that outlives the pod.

    Args:
        dataset: Output of prepare_dataset.
        model: The trained model folder (model.pt, model_card.json, reference.json).
        metrics: Validation accuracy/loss, best epoch, epochs run, epoch resumed from.
        config: The experiment's `training` section (`TrainConfig`).
        tracking: The experiment's `tracking` section (MLflow URI and experiment).
        data: The experiment's `data` section, recorded on the MLflow run.
        model_config: The experiment's `model` section, recorded on the MLflow run.
        promotion: The experiment's `promotion` section, recorded on the MLflow run.
        gpus: GPUs on this node; more than one trains with torchrun (DDP).
        checkpoint_root: Folder on a persistent volume for checkpoints.
        pipeline_run_id: Identifies the run; retries of a task share it and so resume.
        git_commit: Source revision the pipeline was built from, for lineage.
        nodes: Nodes to train on; more than one runs a Kubeflow TrainJob (or PyTorchJob) of
            `nodes` x `gpus` processes and waits for it, instead of training in this pod.
        job_kind: "TrainJob" (Kubeflow Trainer v2) or "PyTorchJob" (Training Operator v1).
        job_image: Image of the job's pods (the training image).
        job_namespace: Namespace of the job ("" = this pod's namespace).
        job_volume_claim: ReadWriteMany PVC with the data and checkpoint_root, mounted in the
            job's pods at job_mount_path (the same path as in this pod).
        job_mount_path: Where that claim is mounted.
        job_placement: JSON {"node_selector": {...}, "tolerations": [...]} for the job's pods.
    """
    from collections import namedtuple
    from pathlib import Path

    from slipway.config.experiment import TrackingConfig
    from slipway.config.training import TrainConfig
    from slipway.steps import train_step
    from slipway.training.trainjob import spec_from_placement

    training = TrainConfig.model_validate(config)
    info = train_step(
        dataset.path,
        model.path,
        training,
        work_dir=Path(checkpoint_root) / (pipeline_run_id or "unnamed-run") / "train",
        tracking=TrackingConfig.model_validate(tracking),
        run_name=f"{training.arch}-{pipeline_run_id}" if pipeline_run_id else training.arch,
        run_tags={"pipeline_run_id": pipeline_run_id, "git_commit": git_commit},
        record={"data": data, "model": model_config, "promotion": promotion},
        gpus=gpus,
        nodes=nodes,
        trainjob=spec_from_placement(
            job_image, job_kind, job_namespace, job_volume_claim, job_mount_path, job_placement
        )
        if nodes > 1
        else None,
    )
    model.metadata.update(info)
    for key in ("val_accuracy", "val_loss", "best_epoch", "epochs_run", "resumed_from_epoch"):
        metrics.log_metric(key, float(info[key]))
    return namedtuple("TrainOutputs", ["mlflow_run_id"])(info["mlflow_run_id"])
