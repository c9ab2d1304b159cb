"""Servers as child processes: ready, failing early with their output, stopped for sure."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from slipway.errors import ServerError
from slipway.procs import ServerProcess, free_port, start_server

PY = sys.executable


def test_free_port_is_free() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_server_waits_until_ready_then_stops_it(tmp_path: Path) -> None:
    port = free_port()
    argv = [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)]
    with start_server(argv, f"http://127.0.0.1:{port}", ready_path="/", log=tmp_path / "log") as s:
        assert httpx.get(s.url + "/", trust_env=False).status_code == 200
        assert s.returncode is None
    assert s.returncode == -signal.SIGTERM
    assert "GET / HTTP" in (tmp_path / "log").read_text()


def test_a_server_that_exits_fails_with_its_output() -> None:
    argv = [PY, "-c", "import sys; print('no model here'); sys.exit(3)"]
    starting = start_server(argv, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ServerError, match=r"exited with 3 [\s\S]*no model here"), starting:
        pass


def test_a_server_that_never_gets_ready_times_out_and_is_stopped() -> None:
    argv = [PY, "-c", "import time; print('starting', flush=True); time.sleep(60)"]
    server = ServerProcess(argv, f"http://127.0.0.1:{free_port()}")
    expected = r"not ready within 0.5 s \(ConnectError[\s\S]*starting"
    with pytest.raises(ServerError, match=expected), server:
        server.wait_ready(timeout=0.5)
    assert server.returncode == -signal.SIGTERM


def test_stop_kills_what_ignores_sigterm() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('up', flush=True); time.sleep(60)"
    )
    server = ServerProcess([PY, "-c", code], "http://127.0.0.1:1").start()
    while "up" not in server.output():
        time.sleep(0.01)
    assert server.stop(timeout=0.5) == -signal.SIGKILL
    assert server.stop() == -signal.SIGKILL  # a second stop is harmless
