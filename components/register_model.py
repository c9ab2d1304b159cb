"""register_model: the model as an MLflow model version with lineage, alias staging, then the
promotion gate."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Model, Output

from components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def register_model(
    dataset: Input[Dataset],
    model: Input[Model],
    summary: Output[Markdown],
    model_config: dict,
    promotion: dict,
    tracking: dict,
    mlflow_run_id: str = "",
    pipeline_run_id: str = "",
    git_commit: str = "",
) -> NamedTuple("RegisterOutputs", [("version", str), ("decision", str), ("reason", str)]):
    """Log the model folder as an MLflow model, register it, and move `production` only if the
    gate allows it.

    The version is an MLflow LoggedModel of the training run (onnx and pyfunc flavors,
    signature, input example, test metrics, the dataset as a run input) with the folder's files.

    The candidate is compared with the current production version on the same test split
    (re-evaluating production when it was measured on other test data). It is promoted if its
    accuracy is at least production's minus `accuracy_margin`, its batch-1 p95 latency is within
    `max_p95_latency_ms`, and its accuracy reaches `min_accuracy`.

    Args:
        dataset: Output of prepare_dataset.
        model: Output of export_model (the complete folder).
        summary: The decision as Markdown for the KFP UI.
        model_config: The experiment's `model` section (the registered model name).
        promotion: The experiment's `promotion` section (`PromotionPolicy`).
        tracking: The experiment's `tracking` section (MLflow URI and experiment).
        mlflow_run_id: MLflow run the model is logged to and registered from.
        pipeline_run_id: KFP run id, recorded on the version.
        git_commit: Source revision, recorded on the version.
    """
    from collections import namedtuple

    from slipway.config.experiment import ModelConfig, TrackingConfig
    from slipway.config.promotion import PromotionPolicy
    from slipway.steps import register_step

    name = ModelConfig.model_validate(model_config).name
    result = register_step(
        dataset.path,
        model.path,
        name,
        TrackingConfig.model_validate(tracking),
        mlflow_run_id,
        lineage={"git_commit": git_commit, "pipeline_run_id": pipeline_run_id},
        policy=PromotionPolicy.model_validate(promotion),
    )
    with open(summary.path, "w") as out:
        out.write(f"# {name} version {result['version']}: {result['decision']}\n\n")
        out.write(f"{result['reason']}\n")
    outputs = namedtuple("RegisterOutputs", ["version", "decision", "reason"])
    return outputs(result["version"], result["decision"], result["reason"])
