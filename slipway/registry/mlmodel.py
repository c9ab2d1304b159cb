"""Log a model folder as an MLflow model: a LoggedModel with flavors, signature, metrics, dataset.

The directory written is the layout `slipway.contract.mlmodel` reads: the folder's files at the
root (card, ONNX, TorchScript, weights, INT8 variants, reference statistics, report,
confusion-matrix image), `MLmodel` with the `onnx` flavor and a `python_function` flavor whose
loader is `slipway.pyfunc`, `code/slipway/` with the torch-free modules that loader imports,
the environment files, the signature and an input example.

Everything goes through the caller's `MlflowClient`, the way `log_model(name=...)` does it
(create the LoggedModel, upload its artifacts, link it as an output of the run, finalize), so
no process-wide tracking URI or active run is involved.
"""

from __future__ import annotations

import io
import json
import logging
import platform
import shutil
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import slipway
from slipway.contract.card import CARD_FILE, ONNX_FILE, ModelCard, load_card
from slipway.contract.mlmodel import CODE_DIR, MLMODEL_FILE, PYFUNC_LOADER
from slipway.embedding.projection import EMBEDDING_FILE
from slipway.errors import ModelError
from slipway.pyfunc import INPUT_COLUMN
from slipway.registry.tracking import (
    EPOCH_METRICS,
    confusion_matrix_png,
    dataset_digest,
    dataset_name,
    log_dataset,
    safe_key,
)

log = logging.getLogger(__name__)

MODEL_TYPE = "image-classifier"
FOLDER_FILES = (
    "model.pt",
    "model.ts",
    "reference.json",
    "report.json",
    "report.md",
    EMBEDDING_FILE,
)
CONFUSION_PNG = "confusion_matrix.png"
REPORT_JSON = "report.json"
# What `code/` carries: the pyfunc loader and the torch-free modules it imports.
SHIPPED_CODE = ("__init__.py", "errors.py", "pyfunc.py", "contract")
REQUIREMENTS = ("mlflow", "onnxruntime", "numpy", "pillow", "pandas", "pydantic", "pyyaml")


def signature() -> Any:
    """`image` (encoded file bytes; base64 in JSON) in; class, confidence, probabilities out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import Array

    outputs = [
        ColSpec("string", "class"),
        ColSpec("float", "confidence"),
        ColSpec(Array("float"), "probabilities"),
    ]
    return ModelSignature(Schema([ColSpec("binary", INPUT_COLUMN)]), Schema(outputs))


def example_image(card: ModelCard) -> bytes:
    """A mid-gray PNG of the model's input size: the input example when no image is given."""
    from PIL import Image

    prep = card.transform
    image = Image.new(
        prep.mode,
        (prep.image_size, prep.image_size),
        color=128 if prep.channels == 1 else (128, 128, 128),
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _copy_folder(model_dir: Path, path: Path) -> list[str]:
    """The folder's files at the root of the MLflow model; returns the names."""
    names = [CARD_FILE, ONNX_FILE, *FOLDER_FILES]
    names += sorted(p.name for p in model_dir.glob("*.onnx") if p.name != ONNX_FILE)
    copied = []
    for name in names:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, path / name)
            copied.append(name)
    if (model_dir / REPORT_JSON).is_file():
        report = json.loads((model_dir / REPORT_JSON).read_text())
        if report.get("confusion_matrix"):
            confusion_matrix_png(report, path / CONFUSION_PNG)
            copied.append(CONFUSION_PNG)
    return copied


def _copy_code(path: Path) -> None:
    """`code/slipway/`: what `import slipway.pyfunc` needs, and nothing with torch or MLflow."""
    source = Path(slipway.__file__).parent
    target = path / CODE_DIR / "slipway"
    target.mkdir(parents=True)
    for name in SHIPPED_CODE:
        if (source / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(source / name, target / name, ignore=ignore)
        else:
            shutil.copy2(source / name, target / name)


def _requirements() -> list[str]:
    found = []
    for name in REQUIREMENTS:
        try:
            found.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(name)
    return found


def _write_environment(path: Path) -> None:
    """requirements.txt, python_env.yaml and conda.yaml, as MLflow's own flavors write them."""
    import yaml

    requirements = _requirements()
    (path / "requirements.txt").write_text("\n".join(requirements) + "\n")
    python = platform.python_version()
    build = [f"{n}=={metadata.version(n)}" for n in ("pip", "setuptools", "wheel") if _has(n)]
    python_env = {
        "python": python,
        "build_dependencies": build,
        "dependencies": ["-r requirements.txt"],
    }
    (path / "python_env.yaml").write_text(yaml.safe_dump(python_env, sort_keys=False))
    conda = {
        "name": "mlflow-env",
        "channels": ["conda-forge"],
        "dependencies": [f"python={python}", "pip", {"pip": requirements}],
    }
    (path / "conda.yaml").write_text(yaml.safe_dump(conda, sort_keys=False))


def _has(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def save_model(path: Path, model_dir: Path, mlflow_model: Any, example: bytes | None) -> None:
    """Write the MLflow model directory of `model_dir` into the empty folder `path`."""
    import mlflow.pyfunc
    import pandas as pd
    from mlflow.models.utils import _save_example

    card = load_card(model_dir)
    if not (model_dir / ONNX_FILE).is_file():
        raise ModelError(f"{model_dir} has no {ONNX_FILE}; run `slipway export` first")
    path.mkdir(parents=True, exist_ok=True)
    files = _copy_folder(model_dir, path)
    _copy_code(path)
    _write_environment(path)
    onnx_version = metadata.version("onnx") if _has("onnx") else ""
    mlflow_model.add_flavor(
        "onnx", onnx_version=onnx_version, data=ONNX_FILE, providers=["CPUExecutionProvider"]
    )
    mlflow.pyfunc.add_to_model(
        mlflow_model,
        loader_module=PYFUNC_LOADER,
        code=CODE_DIR,
        conda_env="conda.yaml",
        python_env="python_env.yaml",
    )
    mlflow_model.signature = signature()
    mlflow_model.metadata = {
        "slipway": {"arch": card.arch, "classes": card.classes, "files": files}
    }
    _save_example(
        mlflow_model, pd.DataFrame({INPUT_COLUMN: [example or example_image(card)]}), str(path)
    )
    mlflow_model.save(str(path / MLMODEL_FILE))


def model_metrics(model_dir: Path) -> dict[str, float]:
    """The card's metrics, the report's test metrics and the export measurements."""
    card = load_card(model_dir)
    # The run's per-epoch curves keep their keys; the model gets the chosen epoch's as best_*.
    metrics: dict[str, float] = {
        (f"best_{k}" if k in EPOCH_METRICS else k): float(v) for k, v in card.metrics.items()
    }
    report_path = model_dir / REPORT_JSON
    if report_path.is_file():
        report = json.loads(report_path.read_text())
        for key in ("accuracy", "macro_f1", "ece", "nll"):
            if isinstance(report.get(key), int | float):
                metrics[f"test_{key}"] = float(report[key])
        for name, row in (report.get("per_class") or {}).items():
            metrics[f"test_precision/{safe_key(name)}"] = float(row["precision"])
            metrics[f"test_recall/{safe_key(name)}"] = float(row["recall"])
    for key, value in card.export.items():
        if isinstance(value, float):  # measurements; counts such as parity_images are ints
            metrics[key] = value
    return {k: v for k, v in metrics.items() if v == v}


def model_params(card: ModelCard) -> dict[str, str]:
    """Scalar training settings of the card (the same the run has as `training.*`) and arch."""
    params = {"arch": card.arch, "num_classes": str(card.num_classes)}
    for key, value in card.training.items():
        if isinstance(value, str | int | float | bool) and value != "":
            params[key] = str(value)
    return params


def _log_metrics(
    client: Any, run_id: str, model_id: str, card: ModelCard, metrics: dict[str, float]
) -> None:
    """The metrics on the run AND the model; test metrics name the dataset they were measured on."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    name, digest = dataset_name(card.dataset), dataset_digest(card.dataset)
    batch = []
    for key, value in metrics.items():
        on_data = key.startswith("test_") and bool(digest)
        batch.append(
            Metric(
                key, value, stamp, 0,
                model_id=model_id,
                dataset_name=name if on_data else None,
                dataset_digest=digest if on_data else None,
                run_id=run_id,
            )
        )  # fmt: skip
    for start in range(0, len(batch), 500):
        client.log_batch(run_id, metrics=batch[start : start + 500])


def log_model(
    client: Any,
    run_id: str,
    model_dir: str | Path,
    name: str,
    tags: dict[str, str] | None = None,
    example: bytes | None = None,
) -> Any:
    """Log `model_dir` as a LoggedModel output of `run_id`; returns the finished LoggedModel."""
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    folder = Path(model_dir)
    card = load_card(folder)
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        tags=tags,
        params=model_params(card),
        model_type=MODEL_TYPE,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="slipway-mlmodel-") as tmp:
            path = Path(tmp) / "model"
            mlflow_model = Model(
                artifact_path=logged.artifact_location,
                run_id=run_id,
                model_uuid=logged.model_id,
                model_id=logged.model_id,
            )
            save_model(path, folder, mlflow_model, example)
            client.log_model_artifacts(logged.model_id, str(path))
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
        log_dataset(client, run_id, card.dataset)
        _log_metrics(client, run_id, logged.model_id, card, model_metrics(folder))
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    log.info("logged %s as MLflow model %s (run %s)", folder, logged.model_id, run_id)
    return client.get_logged_model(logged.model_id)
