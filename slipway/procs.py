"""Servers as child processes: a free loopback port, start, wait until ready, stop.

One implementation for everything that runs a server it does not import: `slipway loadtest
--model`, the serving benchmark and the tests. The caller gives the command line, so this
module knows nothing of what it starts. A server that exits or never gets ready raises
`ServerError` with the end of its output; stopping is SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO

import httpx

from slipway.errors import ServerError

TAIL_CHARS = 3000


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that nothing listens on right now (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """One command serving HTTP at `url`, stdout and stderr together in `log` (or a temp file).

    `env` is added to this process's environment. Use it as a context manager, or call
    `start()`, `wait_ready()` and `stop()` yourself; `stop()` is safe to call twice.
    """

    def __init__(
        self,
        argv: Sequence[str],
        url: str,
        *,
        env: Mapping[str, str] | None = None,
        log: str | os.PathLike[str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        name: str | None = None,
    ) -> None:
        self.argv = [str(arg) for arg in argv]
        self.url = url.rstrip("/")
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log) if log is not None else None
        self.cwd = cwd
        self.name = name or " ".join([Path(self.argv[0]).name, *self.argv[1:3]])
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def start(self) -> ServerProcess:
        if self.log_path is None:
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        else:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("w+b")
        self.proc = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        return self

    def output(self, chars: int | None = None) -> str:
        """What the process wrote so far: all of it, or its last `chars` characters."""
        if self._log is not None and not self._log.closed:
            size = os.fstat(self._log.fileno()).st_size
            text = os.pread(self._log.fileno(), size, 0).decode(errors="replace")
        elif self.log_path is not None and self.log_path.exists():
            text = self.log_path.read_text(errors="replace")
        else:
            text = ""
        return text if chars is None else text[-chars:]

    def wait_ready(self, path: str = "/readyz", timeout: float = 120.0) -> None:
        """Until the server's URL + `path` answers 200; raise `ServerError` with the end of
        the output if the process exits first or the time runs out."""
        target = self.url + path
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise ServerError(
                    f"{self.name} exited with {code} before {target} was ready:\n"
                    f"{self.output(TAIL_CHARS)}"
                )
            try:
                answer = httpx.get(target, timeout=2, trust_env=False)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text[:200]}"
            time.sleep(0.1)
        raise ServerError(
            f"{self.name}: {target} not ready within {timeout:g} s ({last}):\n"
            f"{self.output(TAIL_CHARS)}"
        )

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` s; the exit code (None if never started)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self._log is not None:
            self._log.close()
        return self.returncode

    def __enter__(self) -> ServerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def start_server(
    argv: Sequence[str],
    url: str,
    env: Mapping[str, str] | None = None,
    ready_path: str | None = "/readyz",
    timeout: float = 120.0,
    log: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> Iterator[ServerProcess]:
    """Start `argv`, wait until `url + ready_path` answers 200 (unless None), yield, stop."""
    with ServerProcess(argv, url, env=env, log=log, cwd=cwd) as server:
        if ready_path is not None:
            server.wait_ready(ready_path, timeout)
        yield server
