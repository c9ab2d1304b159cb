"""register_model: an MLflow model version with lineage, alias staging, then the promotion gate."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Model, Output

from components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def register_model(
    dataset: Input[Dataset],
    model: Input[Model],
    summary: Output[Markdown],
    model_name: str = "slipway-classifier",
    mlflow_tracking_uri: str = "",
    mlflow_experiment: str = "slipway",
    mlflow_run_id: str = "",
    pipeline_run_id: str = "",
    git_commit: str = "",
    accuracy_margin: float = 0.0,
    max_p95_latency_ms: float = 100.0,
    min_accuracy: float = 0.5,
) -> NamedTuple("RegisterOutputs", [("version", str), ("decision", str), ("reason", str)]):
    """Register the model folder and move `production` only if the gate allows it.

    The candidate is compared with the current production version on the same test split
    (re-evaluating production when it was measured on other test data). It is promoted if its
    accuracy is at least production's minus `accuracy_margin`, its batch-1 p95 latency is within
    `max_p95_latency_ms`, and its accuracy reaches `min_accuracy`.

    Args:
        dataset: Output of prepare_dataset.
        model: Output of export_model (the complete folder).
        summary: The decision as Markdown for the KFP UI.
        model_name: Registered model name.
        mlflow_tracking_uri: MLflow tracking URI ("" takes MLFLOW_TRACKING_URI from the pod).
        mlflow_experiment: MLflow experiment used when no run id is given.
        mlflow_run_id: MLflow run whose artifacts become the version.
        pipeline_run_id: KFP run id, recorded on the version.
        git_commit: Source revision, recorded on the version.
        accuracy_margin: How much worse than production a candidate may be.
        max_p95_latency_ms: Latency SLO (batch-1 p95, onnxruntime on CPU).
        min_accuracy: Floor for every candidate; the only bar for the first model.
    """
    from collections import namedtuple

    from slipway.registry import PromotionPolicy
    from slipway.steps import register_step

    result = register_step(
        dataset.path,
        model.path,
        model_name,
        mlflow_tracking_uri,
        mlflow_run_id,
        lineage={"git_commit": git_commit, "pipeline_run_id": pipeline_run_id},
        policy=PromotionPolicy(accuracy_margin, max_p95_latency_ms, min_accuracy),
        experiment=mlflow_experiment,
    )
    with open(summary.path, "w") as out:
        out.write(
            f"# {model_name} version {result['version']}: {result['decision']}\n\n"
            f"{result['reason']}\n"
        )
    outputs = namedtuple("RegisterOutputs", ["version", "decision", "reason"])
    return outputs(result["version"], result["decision"], result["reason"])
