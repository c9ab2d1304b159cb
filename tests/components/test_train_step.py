"""The train step's multi-process path (gpus > 1): torchrun with gloo on CPU, curves in MLflow."""

from pathlib import Path

import pytest
import yaml

from slipway.config.experiment import DataConfig, TrackingConfig
from slipway.config.training import TrainConfig
from slipway.registry.client import Registry
from slipway.steps import prepare, train_step

pytestmark = pytest.mark.slow


def test_two_processes_train_and_the_curves_reach_mlflow(demo_data: Path, tmp_path: Path) -> None:
    prepare(DataConfig(source=str(demo_data)), tmp_path / "dataset")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = TrainConfig(epochs=2, batch_size=32, max_batches_per_epoch=2)
    info = train_step(
        tmp_path / "dataset",
        tmp_path / "model",
        config,
        work_dir=tmp_path / "work",
        tracking=TrackingConfig(uri=uri),
        run_name="ddp",
        run_tags={"pipeline_run_id": "p"},
        record={"model": {"name": "ddp-model"}},
        gpus=2,
    )
    assert info["epochs_run"] == 2
    assert {"model.pt", "model_card.json", "reference.json"} <= {
        p.name for p in (tmp_path / "model").iterdir()
    }
    assert not (tmp_path / "work").exists()
    client = Registry(uri).client
    steps = sorted(m.step for m in client.get_metric_history(info["mlflow_run_id"], "val_loss"))
    assert steps == [1, 2]
    run = client.get_run(info["mlflow_run_id"])
    assert run.data.params["training.batch_size"] == "32"
    assert run.data.params["model.name"] == "ddp-model"
    recorded = client.download_artifacts(info["mlflow_run_id"], "experiment.yaml", str(tmp_path))
    assert (
        TrainConfig.model_validate(yaml.safe_load(Path(recorded).read_text())["training"]) == config
    )
