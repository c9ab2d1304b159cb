"""A closed-loop HTTP load generator for the inference service, and an SLO gate built on it.

`concurrency` workers each send one image per request, back to back, until `duration_s` has
passed or `max_requests` were sent. Latency percentiles are over successful (2xx) responses;
everything else is counted by status code, or by transport error name when no response came.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import mimetypes
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from slipway.data.scan import IMAGE_EXTENSIONS
from slipway.errors import SlipwayError

log = logging.getLogger(__name__)

PREDICT_PATH = "/v1/predict"


@dataclass
class LoadReport:
    """What one load run measured."""

    url: str
    concurrency: int
    duration_s: float
    requests: int
    ok: int
    errors: dict[str, int] = field(default_factory=dict)
    rps: float = 0.0
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    mean_ms: float = float("nan")
    max_ms: float = float("nan")

    @property
    def error_rate(self) -> float:
        return (self.requests - self.ok) / self.requests if self.requests else 1.0

    def meets_slo(self, p95_ms: float, max_error_rate: float = 0.01) -> bool:
        """True when p95 latency and the error rate are both within the objective."""
        return self.ok > 0 and self.p95_ms <= p95_ms and self.error_rate <= max_error_rate

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: latencies that were never measured (no success) become None, not NaN."""
        data = asdict(self) | {"error_rate": self.error_rate}
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in data.items()}

    def summary(self) -> str:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"{self.requests} requests in {self.duration_s:.1f} s ({self.rps:.1f} req/s), "
            f"{self.ok} ok; latency p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms, "
            f"p99 {self.p99_ms:.1f} ms; errors: {errors}"
        )


def load_images(
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
) -> list[tuple[str, bytes, str]]:
    """(file name, bytes, content type) for a folder (searched recursively) or a list of files."""
    if isinstance(images, str | os.PathLike):
        root = Path(images)
        if not root.is_dir():
            raise SlipwayError(f"image folder not found: {root}")
        paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    else:
        paths = [Path(p) for p in images]
    if not paths:
        raise SlipwayError(f"no images found in {images}")
    out = []
    for path in paths:
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        out.append((path.name, path.read_bytes(), kind))
    return out


async def run_load(
    url: str,
    payloads: Sequence[tuple[str, bytes, str]],
    concurrency: int = 4,
    duration_s: float = 10.0,
    max_requests: int | None = None,
    top_k: int = 1,
    timeout_s: float = 30.0,
    progress: bool = False,
) -> LoadReport:
    """Drive `url` (a full endpoint URL) with the payloads in turn; see the module docstring."""
    if concurrency < 1 or duration_s <= 0 or not payloads:
        raise SlipwayError("concurrency >= 1, duration > 0 and at least one image are needed")
    latencies: list[float] = []
    codes: Counter[str] = Counter()
    sent = 0
    start = time.perf_counter()
    deadline = start + duration_s
    bar = tqdm(total=max_requests, unit="req", desc="load", disable=not progress, leave=False)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.perf_counter() < deadline and (max_requests is None or sent < max_requests):
            name, body, kind = payloads[sent % len(payloads)]
            sent += 1
            began = time.perf_counter()
            try:
                response = await client.post(
                    url, params={"top_k": top_k}, files={"files": (name, body, kind)}
                )
            except httpx.HTTPError as exc:
                codes[type(exc).__name__] += 1
            else:
                if 200 <= response.status_code < 300:
                    latencies.append((time.perf_counter() - began) * 1000)
                    codes["ok"] += 1
                else:
                    codes[str(response.status_code)] += 1
            bar.update(1)

    async with httpx.AsyncClient(timeout=timeout_s, limits=limits, trust_env=False) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    bar.close()
    return _report(url, concurrency, time.perf_counter() - start, codes, latencies)


def _report(
    url: str, concurrency: int, elapsed: float, codes: Counter[str], latencies: list[float]
) -> LoadReport:
    ok = codes.pop("ok", 0)
    report = LoadReport(url, concurrency, elapsed, ok + sum(codes.values()), ok, dict(codes))
    report.rps = report.requests / elapsed if elapsed > 0 else 0.0
    if latencies:
        values = np.asarray(latencies)
        report.p50_ms, report.p95_ms, report.p99_ms = (
            float(v) for v in np.percentile(values, [50, 95, 99])
        )
        report.mean_ms, report.max_ms = float(values.mean()), float(values.max())
    return report


def endpoint(url: str) -> str:
    """A base URL gets the prediction path; a URL with a path is used as given."""
    return url if httpx.URL(url).path not in ("", "/") else url.rstrip("/") + PREDICT_PATH


def measure_service(
    url: str,
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    concurrency: int = 4,
    duration_s: float = 10.0,
    *,
    max_requests: int | None = None,
    warmup_requests: int = 8,
    top_k: int = 1,
    timeout_s: float = 30.0,
    progress: bool = False,
) -> LoadReport:
    """Load a running service for `duration_s` seconds and report throughput and latency."""
    payloads = load_images(images)
    target = endpoint(url)
    if warmup_requests:
        asyncio.run(
            run_load(
                target,
                payloads,
                1,
                duration_s,
                max_requests=warmup_requests,
                top_k=top_k,
                timeout_s=timeout_s,
            )
        )
    return asyncio.run(
        run_load(
            target, payloads, concurrency, duration_s, max_requests, top_k, timeout_s, progress
        )
    )


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_service(
    model_dir: str | os.PathLike[str],
    env: dict[str, str] | None = None,
    startup_timeout_s: float = 120.0,
) -> Iterator[str]:
    """Run `python -m services.inference` on a model folder on 127.0.0.1; yield its base URL."""
    port = free_port()
    settings = {
        "SLIPWAY_MODEL_SOURCE": str(Path(model_dir).resolve()),
        "SLIPWAY_HOST": "127.0.0.1",
        "SLIPWAY_PORT": str(port),
        "SLIPWAY_RELOAD_INTERVAL_S": "0",
        "SLIPWAY_DRAIN_SECONDS": "0",
    }
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.inference"],
            env={**os.environ, **settings, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url, process, startup_timeout_s, output)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float, output: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.seek(0)
            raise SlipwayError(
                f"the service exited with {process.returncode}: {output.read()[-2000:]}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/readyz", timeout=2, trust_env=False).status_code == 200:
                return
        time.sleep(0.2)
    raise SlipwayError(f"the service at {url} was not ready within {timeout_s:.0f} s")


def measure_model(
    model_dir: str | os.PathLike[str],
    images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    concurrency: int = 4,
    duration_s: float = 10.0,
    *,
    env: dict[str, str] | None = None,
    max_requests: int | None = None,
    progress: bool = False,
) -> LoadReport:
    """Serve a candidate model folder locally, load it, stop it: the promotion gate's measure."""
    with local_service(model_dir, env=env) as url:
        return measure_service(
            url, images, concurrency, duration_s, max_requests=max_requests, progress=progress
        )
