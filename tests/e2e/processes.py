"""Real processes for live tests: start on a free loopback port, wait until they answer, stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

from slipway.loadtest import free_port

__all__ = ["Process", "Webhook", "free_port", "python_module", "running", "wait_for"]

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float, interval: float = 0.25) -> T:
    """Poll `check` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        try:
            value = check()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as exc:
            value, last_error = None, f" (last error: {exc})"
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{last_error}")


class Process:
    """One child process with its output in a file; stopped by `stop()` or the context exit."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.name, self.command, self.log_path = name, command, log_path
        self.env = {**os.environ, **env}
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        handle = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.command, env=self.env, stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()
        return self

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def wait_http(self, url: str, timeout: float = 60.0) -> None:
        """Wait until `url` answers 200, failing early with the log if the process died."""

        def check() -> bool:
            assert self.popen is not None
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}"
                )
            return httpx.get(url, timeout=2, trust_env=False).status_code == 200

        try:
            wait_for(f"{self.name} at {url}", check, timeout)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- {self.name} log ---\n{self.log_tail()}") from None

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.popen is None or self.popen.poll() is not None:
            return None if self.popen is None else self.popen.returncode
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait(timeout)

    def __enter__(self) -> Process:
        return self.start() if self.popen is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def python_module(name: str, module: str, log_dir: Path, env: dict[str, str]) -> Process:
    """`python -m <module>` from the project's interpreter."""
    return Process(name, [sys.executable, "-m", module], log_dir / f"{name}.log", env)


class Webhook:
    """An Alertmanager webhook receiver on loopback that keeps every notification it gets."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer._lock:
                    outer.notifications.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert in every notification, in arrival order."""
        with self._lock:
            return [alert for note in self.notifications for alert in note.get("alerts", [])]

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def running(*processes: Process) -> Iterator[None]:
    """Start in order, stop in reverse order, whatever happens in between."""
    started: list[Process] = []
    try:
        for process in processes:
            started.append(process.start())
        yield
    finally:
        for process in reversed(started):
            process.stop()
