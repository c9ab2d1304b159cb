"""export_model: ONNX + TorchScript, parity against eager torch, latency on the node's CPU."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def export_model(
    dataset: Input[Dataset],
    model: Input[Model],
    exported_model: Output[Model],
    model_config: dict,
    tracking: dict,
    mlflow_run_id: str = "",
):
    """Export ONNX (dynamic batch axis) and TorchScript; fail if they disagree with eager torch.

    Parity is checked on real test images preprocessed exactly as serving does. Latency is
    measured with onnxruntime on this node's CPU, where the serving pods will also run.

    Args:
        dataset: Output of prepare_dataset (test images for the parity check).
        model: Output of evaluate_model.
        exported_model: The complete model folder that gets registered.
        model_config: The experiment's `model` section (`ModelConfig`: parity images and
            tolerance, the batch size N measured besides batch 1).
        tracking: The experiment's `tracking` section (MLflow URI and experiment).
        mlflow_run_id: MLflow run of the training; parity and latency go there.
    """
    from slipway.config.experiment import ModelConfig, TrackingConfig
    from slipway.steps import export_step

    info = export_step(
        dataset.path,
        model.path,
        exported_model.path,
        ModelConfig.model_validate(model_config),
        TrackingConfig.model_validate(tracking),
        mlflow_run_id,
    )
    exported_model.metadata.update(
        {k: v for k, v in info.items() if isinstance(v, int | float | str | list)}
    )
