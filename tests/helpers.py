"""Test helpers shared across test packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

import pytest


def tools_required() -> bool:
    """CI sets SLIPWAY_TEST_REQUIRE_TOOLS=1 so that a missing tool fails instead of skipping."""
    return os.environ.get("SLIPWAY_TEST_REQUIRE_TOOLS", "") not in ("", "0", "false")


def require_tool(name: str, available: bool | None = None) -> str:
    """Skip (locally) or fail (in CI) when a system tool is missing; return its path."""
    path = shutil.which(name) if available is None else (name if available else None)
    if path:
        return path
    message = f"{name} is not installed; .ci/run installs it"
    if tools_required():
        pytest.fail(message + " (SLIPWAY_TEST_REQUIRE_TOOLS=1)")
    pytest.skip(message)
    raise AssertionError("unreachable")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run `slipway ARGS` as a user would, through the console entry point, in a subprocess."""
    return subprocess.run(
        [sys.executable, "-c", "from slipway.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Wait until `check()` is true, polling every 0.1 s; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")
