"""A misspelled `SLIPWAY_*` variable stops a service at start, naming it and the setting meant.

The real entry points run as processes (`python -m services.inference`, `python -m
services.drift`, `slipway serve`); `create_app(settings)` never reads the environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from services.drift.settings import Settings as DriftSettings
from services.environment import load_settings
from services.inference.settings import Settings
from slipway.errors import ConfigError
from slipway.procs import free_port
from tests.e2e.processes import python_module
from tests.services.inference_helpers import inference_server


def _start(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("argv", "variable", "meant"),
    [
        (
            [sys.executable, "-m", "services.inference"],
            "SLIPWAY_MAX_BACH_SIZE",
            "SLIPWAY_MAX_BATCH_SIZE",
        ),
        ([sys.executable, "-m", "services.drift"], "SLIPWAY_DRIFT_WINDOWS", "SLIPWAY_DRIFT_WINDOW"),
        ([str(Path(sys.executable).parent / "slipway"), "serve"], "SLIPWAY_PROT", "SLIPWAY_PORT"),
    ],
    ids=["inference", "drift", "slipway-serve"],
)
def test_a_misspelled_variable_stops_the_process_naming_it(
    argv: list[str], variable: str, meant: str
) -> None:
    result = _start(argv, {variable: "8"})
    assert result.returncode != 0
    assert f"{variable} (did you mean {meant}?)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_value_a_setting_refuses_stops_the_service_with_one_message() -> None:
    result = _start([sys.executable, "-m", "services.inference"], {"SLIPWAY_MAX_QUEUE": "0"})
    assert result.returncode != 0
    assert "max_queue" in result.stderr and "greater than or equal to 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_inference_service_ignores_prefixes_owned_by_others(
    trained_model: Path, tmp_path: Path
) -> None:
    env = {
        "SLIPWAY_MODEL_SOURCE": str(trained_model),
        "SLIPWAY_RELOAD_INTERVAL_S": "0",
        "SLIPWAY_DRIFT_WINDOWS": "the drift monitor's business",
        "SLIPWAY_TEST_ANYTHING": "the test suite's business",
    }
    with inference_server(env, tmp_path / "server.log") as server:
        server.wait_ready()
        assert httpx.get(server.url + "/readyz", trust_env=False).status_code == 200


def test_the_drift_monitor_ignores_the_test_prefix(tmp_path: Path) -> None:
    port = free_port()
    env = {"SLIPWAY_DRIFT_PORT": str(port), "SLIPWAY_TEST_ANYTHING": "1", "SLIPWAY_THREADS": "2"}
    url = f"http://127.0.0.1:{port}"
    with python_module("drift", "services.drift", tmp_path, env, url) as drift:
        drift.wait_ready("/healthz", timeout=60)


def test_settings_overrides_win_and_unknown_variables_are_all_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLIPWAY_MAX_QUEUE", "7")
    monkeypatch.setenv("SLIPWAY_PORT", "9000")
    settings = load_settings(Settings, port=9001)
    assert (settings.max_queue, settings.port) == (7, 9001)
    monkeypatch.setenv("SLIPWAY_THREDS", "2")
    monkeypatch.setenv("SLIPWAY_ZZZ", "2")
    with pytest.raises(ConfigError, match=r"SLIPWAY_THREDS \(did you mean SLIPWAY_THREADS\?\)"):
        load_settings(Settings)
    with pytest.raises(ConfigError, match=r"unknown settings .*SLIPWAY_ZZZ"):
        load_settings(Settings)
    assert load_settings(DriftSettings).window == 1000  # SLIPWAY_* is not the drift prefix
