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
    arch: str = "resnet18",
    epochs: int = 3,
    batch_size: int = 128,
    lr: float = 0.002,
    image_size: int = 32,
    seed: int = 0,
    patience: int = 3,
    num_workers: int = 4,
    max_batches_per_epoch: int = 0,
    gpus: int = 1,
    checkpoint_root: str = "/mnt/slipway/checkpoints",
    pipeline_run_id: str = "",
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "slipway",
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
        arch: torchvision architecture (resnet18, mobilenet_v3_small, efficientnet_b0, ...).
        epochs: Maximum epochs; training stops early when validation loss stalls.
        batch_size: Global batch size.
        lr: Peak learning rate of the warm-up + cosine schedule.
        image_size: Square input size in pixels.
        seed: Seed for weights, shuffling and augmentation.
        patience: Early-stop patience in epochs.
        num_workers: DataLoader worker processes (needs /dev/shm on the cluster).
        max_batches_per_epoch: Cap on batches per epoch (0: all), for smoke runs.
        gpus: GPUs on this node; more than one trains with torchrun (DDP).
        checkpoint_root: Folder on a persistent volume for checkpoints.
        pipeline_run_id: Identifies the run; retries of a task share it and so resume.
        mlflow_tracking_uri: MLflow tracking URI ("" takes MLFLOW_TRACKING_URI from the pod).
        mlflow_experiment: MLflow experiment for the run.
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

    from slipway.steps import train_step
    from slipway.training import TrainConfig
    from slipway.trainjob import spec_from_placement

    config = TrainConfig(
        arch=arch,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        image_size=image_size,
        seed=seed,
        patience=patience,
        num_workers=num_workers,
        max_batches_per_epoch=max_batches_per_epoch or None,
    )
    info = train_step(
        dataset.path,
        model.path,
        config,
        work_dir=Path(checkpoint_root) / (pipeline_run_id or "unnamed-run") / "train",
        tracking_uri=mlflow_tracking_uri,
        run_name=f"{arch}-{pipeline_run_id}" if pipeline_run_id else arch,
        run_tags={"pipeline_run_id": pipeline_run_id, "git_commit": git_commit},
        experiment=mlflow_experiment,
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
