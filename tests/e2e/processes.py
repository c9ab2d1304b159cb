"""Real processes for live tests (`slipway.procs`), a webhook receiver, and polling."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx

from slipway.procs import ServerProcess, free_port

__all__ = ["ServerProcess", "Webhook", "free_port", "python_module", "running", "wait_for"]

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


def python_module(
    name: str, module: str, log_dir: Path, env: dict[str, str], url: str
) -> ServerProcess:
    """`python -m <module>` from the project's interpreter, serving at `url`; not started yet."""
    argv = [sys.executable, "-m", module]
    return ServerProcess(argv, url, env=env, log=log_dir / f"{name}.log", name=name)


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
def running(*processes: ServerProcess) -> Iterator[None]:
    """Start in order, stop in reverse order, whatever happens in between."""
    with contextlib.ExitStack() as stack:
        for process in processes:
            stack.enter_context(process)
        yield
