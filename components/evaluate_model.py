"""evaluate_model: test-split metrics, confusion matrix, calibration, a readable report."""

from kfp import dsl
from kfp.dsl import ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

from components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def evaluate_model(
    dataset: Input[Dataset],
    model: Input[Model],
    evaluated_model: Output[Model],
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[Markdown],
    tracking: dict,
    mlflow_run_id: str = "",
):
    """Evaluate on the test split; the model folder gains report.json/.md and test metrics.

    Args:
        dataset: Output of prepare_dataset (the test split is fixed by it).
        model: Output of train_model.
        evaluated_model: The model folder with report.json, report.md and prediction statistics.
        metrics: Accuracy, macro-F1, expected calibration error, NLL, per-class scores.
        classification: Confusion matrix for the KFP UI.
        report: The evaluation report as Markdown.
        tracking: The experiment's `tracking` section (MLflow URI and experiment).
        mlflow_run_id: MLflow run of the training; metrics and the confusion-matrix PNG go there.
    """
    import shutil
    from pathlib import Path

    from slipway.config.experiment import TrackingConfig
    from slipway.steps import evaluate_step

    result = evaluate_step(
        dataset.path,
        model.path,
        evaluated_model.path,
        TrackingConfig.model_validate(tracking),
        mlflow_run_id,
    )
    for key in ("accuracy", "macro_f1", "ece", "nll"):
        metrics.log_metric(key, float(result[key]))
    for name, row in result["per_class"].items():
        metrics.log_metric(f"precision_{name}", float(row["precision"]))
        metrics.log_metric(f"recall_{name}", float(row["recall"]))
    classification.log_confusion_matrix(result["classes"], result["confusion_matrix"])
    evaluated_model.metadata.update({"test_accuracy": result["accuracy"], "test_n": result["n"]})
    shutil.copyfile(Path(evaluated_model.path) / "report.md", report.path)
