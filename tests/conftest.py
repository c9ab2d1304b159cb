"""Shared fixtures: a real Fashion-MNIST subset and a real (small) trained model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import require_tool

DEMO_PER_CLASS = 60


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """600 real Fashion-MNIST images as an ImageFolder (needs dataset-fashion-mnist)."""
    from slipway.data.demo import DEBIAN_SOURCE, write_demo_dataset

    if not (DEBIAN_SOURCE / "train-images-idx3-ubyte.gz").is_file():
        require_tool("dataset-fashion-mnist (Debian package)", available=False)
    out = tmp_path_factory.mktemp("data") / "fashion-mnist"
    write_demo_dataset(out, per_class=DEMO_PER_CLASS, seed=0, progress=False)
    return out


@pytest.fixture(scope="session")
def trained_model(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resnet18 trained for two epochs on the demo subset, evaluated and exported (with its
    embedding reference)."""

    from slipway.config.training import TrainConfig
    from slipway.data.scan import scan_dataset
    from slipway.training.evaluation import evaluate
    from slipway.training.export import export_model
    from slipway.training.loop import train
    from slipway.training.parity import parity_inputs

    out = tmp_path_factory.mktemp("models") / "tiny"
    config = TrainConfig(arch="resnet18", epochs=2, batch_size=64, lr=3e-3, seed=0)
    train(demo_data, out, config)
    evaluate(out, demo_data, "test")
    scan = scan_dataset(demo_data, progress=False)
    export_model(out, parity_inputs(out, scan, 16), batch_sizes=(1, 4), scan=scan)
    return out


@pytest.fixture
def model_copy(trained_model: Path, tmp_path: Path) -> Path:
    """A private copy of the trained model folder a test may change."""
    target = tmp_path / "model"
    shutil.copytree(trained_model, target, ignore=shutil.ignore_patterns("checkpoints"))
    return target


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests talk to 127.0.0.1 only; never route that through a proxy."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
