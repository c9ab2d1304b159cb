"""Fixtures for service tests: real Fashion-MNIST images from the shared demo data."""

from __future__ import annotations

from pathlib import Path

import pytest


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
