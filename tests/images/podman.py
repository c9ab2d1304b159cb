"""Podman, the offline base image and image builds, shared by the container image tests."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import require_tool, tools_required

REPO = Path(__file__).resolve().parents[2]
CONTAINERS_CONF = REPO / "scripts" / "containers.conf"
BASE_SCRIPT = REPO / "scripts" / "base-image.sh"
BASE_IMAGE = "localhost/slipway-base:bookworm"
UID = 10001
# Where pip inside a build step finds the CA bundle of this machine (see Dockerfile ARG PIP_CERT).
BUILD_CA_PATH = "/etc/ssl/certs/build-ca.crt"


def unavailable(message: str) -> None:
    """Skip locally, fail in CI (SLIPWAY_TEST_REQUIRE_TOOLS=1): a test that cannot run says why."""
    if tools_required():
        pytest.fail(message + " (SLIPWAY_TEST_REQUIRE_TOOLS=1)")
    pytest.skip(message)


def podman(
    *args: str, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run podman with this repository's containers.conf; on failure show its output."""
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"podman {' '.join(args[:3])} ... exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def ensure_podman() -> None:
    """podman and runc installed, and podman able to run a container on this host."""
    require_tool("podman")
    require_tool("runc")
    info = podman("info", check=False)
    if info.returncode != 0:
        unavailable(f"podman cannot run here: {info.stderr.strip()[-2000:]}")


def ensure_base_image() -> str:
    """Build (or reuse) the offline stand-in for python:3.11-slim-bookworm."""
    require_tool("mmdebstrap")
    env = {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}
    result = subprocess.run(
        [str(BASE_SCRIPT), BASE_IMAGE],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"{BASE_SCRIPT.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return BASE_IMAGE


def ca_bundle_args() -> list[str]:
    """Let pip in RUN steps trust what pip on this machine trusts (TLS-intercepting networks)."""
    for candidate in (
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return [
                "-v",
                f"{candidate}:{BUILD_CA_PATH}:ro",
                "--build-arg",
                f"PIP_CERT={BUILD_CA_PATH}",
            ]
    return []


def image_id(tag: str) -> str:
    """The ID `tag` names now, or "" when there is no such image."""
    found = podman("image", "inspect", "--format", "{{.Id}}", tag, check=False)
    return found.stdout.strip() if found.returncode == 0 else ""


def build(dockerfile: str, tag: str, base_image: str, *extra: str) -> str:
    """Build `dockerfile` from the repository root with the stand-in base; return the tag.

    The image the tag named before is removed once the new one has it (with its untagged
    parents), so repeated runs do not fill the disk with dangling images. The layer cache of the
    new image stays.
    """
    previous = image_id(tag)
    podman(
        "build",
        "--format=docker",  # keeps SHELL, which the OCI image format drops
        "--file",
        str(REPO / dockerfile),
        "--build-arg",
        f"BASE_IMAGE={base_image}",
        *ca_bundle_args(),
        *extra,
        "--tag",
        tag,
        str(REPO),
        timeout=1500,
    )
    if previous and previous != image_id(tag):
        podman("rmi", previous, check=False)  # still used by a container: it stays
    return tag


def image_config(tag: str) -> dict:
    """The image's config block (User, Entrypoint, Cmd, Env, ...)."""
    inspected = json.loads(podman("image", "inspect", tag).stdout)
    return inspected[0]["Config"]
