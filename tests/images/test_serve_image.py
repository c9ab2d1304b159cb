"""The serving image, built from the offline base and run the way the Helm chart runs it.

Read-only root filesystem with a tmpfs at /tmp, all capabilities dropped, no privilege
escalation, the numeric non-root UID, the model folder mounted read-only, and the port published
on 127.0.0.1 only. The prediction it answers must match the ONNX model run on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from slipway.procs import free_port, start_server
from tests.images.podman import CONTAINERS_CONF, UID, build, image_config, podman

pytestmark = [pytest.mark.images, pytest.mark.slow]

TAG = "localhost/slipway-serve:test"
MODEL_MOUNT = "/models/demo"
READY_WAIT_S = 180


@pytest.fixture(scope="module")
def serve_image(base_image: str) -> str:
    return build("Dockerfile.serve", TAG, base_image)


@pytest.fixture(scope="module")
def model_dir(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The trained model, readable by the container's UID (pytest's tmp dirs are 0700)."""
    target = tmp_path_factory.mktemp("serve-model") / "demo"
    shutil.copytree(trained_model, target, ignore=shutil.ignore_patterns("checkpoints"))
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


@pytest.fixture(scope="module")
def container(serve_image: str, model_dir: Path) -> Iterator[tuple[str, str]]:
    """The running service as (container name, base URL); its output is shown if it dies.

    `podman run` stays attached, so the container's output is the process's output, and the
    SIGTERM that stops the process reaches the service as the kubelet's would.
    """
    name = f"slipway-serve-test-{os.getpid()}"
    port = free_port()
    podman("rm", "--force", "--ignore", name)
    argv = [
        "podman", "run", "--rm", "--name", name,
        "--read-only", "--tmpfs", "/tmp:rw,size=256m,mode=1777",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--user", f"{UID}:{UID}",
        "--volume", f"{model_dir}:{MODEL_MOUNT}:ro",
        "--env", f"SLIPWAY_MODEL_SOURCE={MODEL_MOUNT}",
        "--publish", f"127.0.0.1:{port}:8080",
        serve_image,
    ]  # fmt: skip
    env = {"CONTAINERS_CONF": str(CONTAINERS_CONF)}
    try:
        url = f"http://127.0.0.1:{port}"
        with start_server(argv, url, env, timeout=READY_WAIT_S) as server:
            yield name, server.url
    finally:
        podman("rm", "--force", "--ignore", name, check=False)


def _sample_png(demo_data: Path) -> tuple[Path, str]:
    """A real image of the dataset and its class folder."""
    for class_dir in sorted(p for p in demo_data.iterdir() if p.is_dir()):
        pngs = sorted(class_dir.glob("*.png"))
        if pngs:
            return pngs[0], class_dir.name
    raise AssertionError(f"no PNG under {demo_data}")


def _local_probabilities(model_dir: Path, png: Path) -> np.ndarray:
    """The model's class probabilities for `png`, computed here with the model card's transform."""
    from slipway.contract.card import load_card
    from slipway.training.export import onnx_session

    card = load_card(model_dir)
    with Image.open(png) as image:
        batch = card.transform(image)[None]
    session = onnx_session(model_dir / "model.onnx")
    logits = session.run(None, {session.get_inputs()[0].name: batch})[0][0]
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def test_ready_and_predicts_like_the_model(
    container: tuple[str, str], model_dir: Path, demo_data: Path
) -> None:
    _, url = container
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    png, _ = _sample_png(demo_data)
    with png.open("rb") as handle:
        answer = httpx.post(
            f"{url}/v1/predict",
            files=[("files", (png.name, handle, "image/png"))],
            timeout=60,
        )
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]

    classes = json.loads((model_dir / "model_card.json").read_text())["classes"]
    expected = _local_probabilities(model_dir, png)
    assert prediction["top_class"] in classes
    assert prediction["top_class"] == classes[int(expected.argmax())]
    assert prediction["confidence"] == pytest.approx(float(expected.max()), abs=1e-3)


def test_runs_as_non_root_on_a_read_only_root(container: tuple[str, str]) -> None:
    name, _ = container
    assert podman("exec", name, "id", "-u").stdout.strip() == str(UID)
    write_root = podman("exec", name, "touch", "/opt/venv/written", check=False)
    assert write_root.returncode != 0
    assert "Read-only file system" in write_root.stderr
    assert podman("exec", name, "touch", "/tmp/written", check=False).returncode == 0
    capabilities = podman("exec", name, "grep", "^CapEff", "/proc/self/status").stdout
    assert capabilities.split()[-1] == "0000000000000000"


def test_image_config(serve_image: str) -> None:
    config = image_config(serve_image)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["python", "-m", "services.inference"]
    assert not config.get("Healthcheck")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["SLIPWAY_HOST"] == "0.0.0.0"
    assert env["SLIPWAY_PORT"] == "8080"


def test_cpu_image_has_no_torch(serve_image: str) -> None:
    torch = podman(
        "run", "--rm", "--network=none", "--entrypoint", "python", serve_image,
        "-c", "import torch",
        check=False,
    )  # fmt: skip
    assert torch.returncode != 0
    assert "No module named 'torch'" in torch.stderr
    serving = podman(
        "run", "--rm", "--network=none", "--entrypoint", "python", serve_image,
        "-c", IMPORT_SERVICES,
        check=False,
    )  # fmt: skip
    assert serving.returncode == 0, serving.stderr
    assert int(serving.stdout) >= 10


def test_image_serves_http_with_uvicorns_c_parser_and_loop(serve_image: str) -> None:
    """Without them uvicorn falls back to h11 and asyncio's loop, 7 % slower at INT8."""
    probe = podman(
        "run", "--rm", "--network=none", "--entrypoint", "python", serve_image,
        "-c", "import uvicorn.config as c, uvloop, httptools; "
        "from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol; print('ok')",
        check=False,
    )  # fmt: skip
    assert probe.returncode == 0 and probe.stdout.strip() == "ok", probe.stderr


# The chart runs both services from this image: `python -m services.inference` and, for the
# drift monitor, `python -m services.drift`.
IMPORT_SERVICES = """
import importlib, pkgutil
import services.drift, services.inference
names = [f"{p.__name__}.{m.name}" for p in (services.drift, services.inference)
         for m in pkgutil.iter_modules(p.__path__) if m.name != "__main__"]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_openvino_variant_carries_openvino_and_no_torch(serve_image: str, base_image: str) -> None:
    """`--build-arg BACKEND=openvino`: the default image's layers plus OpenVINO, still no torch."""
    tag = build(
        "Dockerfile.serve", f"{TAG}-openvino", base_image, "--build-arg", "BACKEND=openvino"
    )
    probe = podman(
        "run", "--rm", "--network=none", "--entrypoint", "python", tag, "-c",
        "import importlib.util, openvino, services.inference.backends; "
        "print(openvino.__version__.split('-')[0], importlib.util.find_spec('torch'))",
        check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    version, torch_spec = probe.stdout.split()
    assert version.startswith("2026.") and torch_spec == "None"
    default = podman(
        "run", "--rm", "--network=none", "--entrypoint", "python", serve_image, "-c",
        "import importlib.util; print(importlib.util.find_spec('openvino'))",
    )  # fmt: skip
    assert default.stdout.strip() == "None"  # the default image stays lean
