"""Fixtures for service tests: real Fashion-MNIST images from the shared demo data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway.procs import ServerProcess
from tests.services.inference_helpers import inference_server


@pytest.fixture(scope="session")
def image_paths(demo_data: Path) -> list[Path]:
    """Real PNG files of the demo set, one per class first, sorted for repeatability."""
    per_class = [sorted(d.glob("*.png")) for d in sorted(demo_data.iterdir()) if d.is_dir()]
    first = [files[0] for files in per_class if files]
    rest = [f for files in per_class for f in files[1:4]]
    return first + rest


@pytest.fixture(scope="session")
def png_bytes(image_paths: list[Path]) -> bytes:
    return image_paths[0].read_bytes()


@pytest.fixture
def limited_server(trained_model: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    """The service as a process with a small queue and batch, fault injection and a short drain:
    what the overload, drain and fault tests need."""
    env = {
        "SLIPWAY_MODEL_SOURCE": str(trained_model),
        "SLIPWAY_RELOAD_INTERVAL_S": "0",
        "SLIPWAY_THREADS": "1",
        "SLIPWAY_MAX_BATCH_SIZE": "8",
        "SLIPWAY_MAX_BATCH_WAIT_MS": "20",
        "SLIPWAY_MAX_QUEUE": "6",
        "SLIPWAY_FAULT_INJECTION": "true",
        "SLIPWAY_DRAIN_SECONDS": "1.5",
        "SLIPWAY_PREDICTION_LOG_PATH": str(tmp_path / "predictions.jsonl"),
    }
    with inference_server(env, tmp_path / "server.log") as proc:
        proc.wait_ready()
        yield proc
