"""The `helm test` pod's script, run as it is rendered, against the real inference service."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.charts.render import render_docs, template
from tests.e2e.processes import free_port, python_module
from tests.helpers import require_tool


@pytest.mark.slow
def test_helm_test_script_passes_against_the_service(trained_model: Path, tmp_path: Path) -> None:
    require_tool("curl")
    (pod,) = render_docs(template(show_only=["templates/tests/test-predict.yaml"]).stdout)
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    port = free_port()
    env["BASE_URL"] = base_url = f"http://127.0.0.1:{port}"
    script = container["command"][-1].replace("/tmp/", f"{tmp_path}/")
    service_env = {
        "SLIPWAY_MODEL_SOURCE": str(trained_model),
        "SLIPWAY_MODEL_NAME": "demo",
        "SLIPWAY_HOST": "127.0.0.1",
        "SLIPWAY_PORT": str(port),
        "SLIPWAY_GRPC_PORT": str(free_port()),
        "SLIPWAY_RELOAD_INTERVAL_S": "0",
        "SLIPWAY_DRAIN_SECONDS": "0",
        "SLIPWAY_THREADS": "1",
    }
    # The script itself waits for /readyz (curl --retry), as it does in the cluster.
    inference = python_module("inference", "services.inference", tmp_path, service_env, base_url)
    with inference as service:
        result = subprocess.run(
            [container["command"][0], "-ec", script],
            env={**os.environ, **env, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"},
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr + service.output(2000)
    assert '"model":"demo"' in result.stdout.replace(" ", "")
    assert (tmp_path / "probe.png").read_bytes().startswith(b"\x89PNG")
