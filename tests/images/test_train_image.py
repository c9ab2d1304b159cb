"""The training image, built from the offline base and run as its non-root user the way KFP does.

The published `train` target adds PyPI's CUDA torch wheels (about 3 GB of wheels with their
nvidia-* dependencies, 5 GB installed). These tests build `train-without-torch`: the same
`build` and `runtime` stages (core dependencies, the project, non-root user, KFP artifact
directories, environment) without the `torch` stage. A CPU torch wheel would not stand in for
it: the only torchvision wheels an index here has are CUDA builds, which do not load on CPU torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.images.podman import UID, build, image_config, podman

pytestmark = [pytest.mark.images, pytest.mark.slow]

TAG = "localhost/slipway-train:test-without-torch"


@pytest.fixture(scope="module")
def train_image(base_image: str) -> str:
    return build("Dockerfile.train", TAG, base_image, "--target", "train-without-torch")


def _run_as_user(image: str, *command: str) -> subprocess.CompletedProcess[str]:
    return podman(
        "run", "--rm", "--network=none", "--user", f"{UID}:{UID}", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", image, *command,
        check=False, timeout=300,
    )  # fmt: skip


IMPORT_ALL = """
import importlib, importlib.util, os, pkgutil
import components, pipelines, slipway, kfp, mlflow
for package in (components, pipelines):
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
print(os.getuid(), slipway.__version__, kfp.__version__, importlib.util.find_spec("torch"))
"""


def test_project_imports_as_non_root(train_image: str) -> None:
    result = _run_as_user(train_image, "python", "-c", IMPORT_ALL)
    assert result.returncode == 0, result.stderr
    uid, version, _, torch_spec = result.stdout.split()
    assert uid == str(UID)
    assert version == _project_version()
    assert torch_spec == "None"  # this target leaves torch out


def _project_version() -> str:
    import tomllib

    from tests.images.podman import REPO

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def test_image_config(train_image: str) -> None:
    config = image_config(train_image)
    assert config["User"] == f"{UID}:{UID}"
    assert not config.get("Entrypoint")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["PATH"].startswith("/opt/venv/bin:")


def test_kfp_artifact_directories_writable(train_image: str) -> None:
    dirs = ["/gcs", "/minio", "/s3", "/oci", "/workspace", "/home/slipway", "/tmp"]
    script = 'for d in "$@"; do touch "$d/probe" || exit 1; done'
    result = _run_as_user(train_image, "sh", "-c", script, "sh", *dirs)
    assert result.returncode == 0, result.stderr
    assert _run_as_user(train_image, "touch", "/opt/venv/probe").returncode != 0


COMPONENT = """
from kfp import dsl


@dsl.component(base_image="{image}", install_kfp_package=False)
def probe(size: int) -> str:
    import os

    import slipway
    from slipway.contract.preprocessing import Preprocessing

    shape = Preprocessing(image_size=size, channels=1).input_shape
    return f"{{slipway.__version__}} {{os.getuid()}} {{'x'.join(map(str, shape))}}"
"""


def test_runs_a_compiled_kfp_component(train_image: str, tmp_path: Path) -> None:
    """The container command KFP compiles for a lightweight component works in this image."""
    from kfp import compiler

    (tmp_path / "probe_component.py").write_text(COMPONENT.format(image=train_image))
    sys.path.insert(0, str(tmp_path))
    try:
        from probe_component import probe  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(tmp_path))
    compiler.Compiler().compile(probe, str(tmp_path / "probe.yaml"))
    spec = yaml.safe_load((tmp_path / "probe.yaml").read_text())
    (container,) = [e["container"] for e in spec["deploymentSpec"]["executors"].values()]
    assert container["image"] == train_image
    assert not any("pip install" in part for part in container["command"])

    outputs = tmp_path / "outputs"
    outputs.mkdir()
    outputs.chmod(0o777)
    executor_input = {
        "inputs": {"parameterValues": {"size": 48}},
        "outputs": {
            "parameters": {"Output": {"outputFile": "/kfp/outputs/Output"}},
            "outputFile": "/kfp/outputs/executor_output.json",
        },
    }
    args = [json.dumps(executor_input) if a == "{{$}}" else a for a in container["args"]]
    result = podman(
        "run", "--rm", "--network=none", "--user", f"{UID}:{UID}",
        "--volume", f"{outputs}:/kfp/outputs", train_image, *container["command"], *args,
        check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    written = json.loads((outputs / "executor_output.json").read_text())
    assert written["parameterValues"]["Output"] == f"{_project_version()} {UID} 1x48x48"
