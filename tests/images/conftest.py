"""Fixtures of the container image tests: podman, the offline base image, the built images."""

from __future__ import annotations

import pytest

from tests.images.podman import ensure_base_image, ensure_podman


@pytest.fixture(scope="session")
def base_image() -> str:
    """The offline stand-in for python:3.11-slim-bookworm, built once per machine."""
    ensure_podman()
    return ensure_base_image()
