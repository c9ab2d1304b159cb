"""export_model: ONNX + TorchScript, parity against eager torch, latency on the node's CPU."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def export_model(
    dataset: Input[Dataset],
    model: Input[Model],
    exported_model: Output[Model],
    parity_images: int = 64,
    tolerance: float = 0.001,
    latency_batch_size: int = 8,
    mlflow_tracking_uri: str = "",
    mlflow_run_id: str = "",
):
    """Export ONNX (dynamic batch axis) and TorchScript; fail if they disagree with eager torch.

    Parity is checked on real test images preprocessed exactly as serving does. Latency is
    measured with onnxruntime on this node's CPU, where the serving pods will also run.

    Args:
        dataset: Output of prepare_dataset (test images for the parity check).
        model: Output of evaluate_model.
        exported_model: The complete model folder that gets registered.
        parity_images: Test images in the parity check.
        tolerance: Largest allowed absolute logit difference.
        latency_batch_size: Batch size N measured besides batch 1.
        mlflow_tracking_uri: MLflow tracking URI ("" takes MLFLOW_TRACKING_URI from the pod).
        mlflow_run_id: MLflow run of the training; parity and latency go there.
    """
    from slipway.steps import export_step

    info = export_step(
        dataset.path,
        model.path,
        exported_model.path,
        mlflow_tracking_uri,
        mlflow_run_id,
        parity_images=parity_images,
        tolerance=tolerance,
        batch_size=latency_batch_size,
    )
    exported_model.metadata.update(
        {k: v for k, v in info.items() if isinstance(v, int | float | str | list)}
    )
