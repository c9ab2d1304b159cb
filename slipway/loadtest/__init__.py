"""The HTTP load generator for the inference service, and an SLO gate built on it.

Closed loop (`run_load`, `measure_service`, `slipway loadtest`): `concurrency` workers each send
one image per request, back to back, until `duration_s` has passed or `max_requests` were sent.
Open loop (`run_open_loop`, the serving benchmark's overload scenario): a fixed arrival rate
regardless of answers. Latency percentiles are over successful (2xx) responses; everything else
is counted by status code, or by transport error name when no response came. Requests go out
over kept-alive HTTP/1.1 connections of a minimal client of its own, cheap in CPU, so that the
generator measures the server rather than itself (the serving benchmark shares 2 cores with it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import mimetypes
import os
import ssl
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from tqdm import tqdm

from slipway.data.scan import IMAGE_EXTENSIONS
from slipway.errors import SlipwayError

log = logging.getLogger(__name__)

PREDICT_PATH = "/v1/predict"
Payload = tuple[str, bytes, str]  # (file name, bytes, content type)


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
) -> list[Payload]:
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


BOUNDARY = "slipway-load-boundary"
# What a request can end in instead of an answer (ValueError, IndexError: a malformed answer).
TRANSPORT_ERRORS = (
    OSError,
    TimeoutError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ValueError,
    IndexError,
)


class _Target(NamedTuple):
    host: str
    port: int
    tls: bool
    authority: str
    path: str  # with the query

    @classmethod
    def parse(cls, url: str, top_k: int | None) -> _Target:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SlipwayError(f"not an http(s) URL: {url}")
        tls = parts.scheme == "https"
        query = "&".join(q for q in (parts.query, "" if top_k is None else f"top_k={top_k}") if q)
        path = (parts.path or "/") + (f"?{query}" if query else "")
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls, parts.netloc, path)

    def request(self, payload: Payload) -> bytes:
        """The bytes of one multipart POST of `payload` (one image)."""
        name, body, kind = payload
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"'
            f"\r\nContent-Type: {kind}\r\n\r\n"
        )
        content = head.encode() + body + f"\r\n--{BOUNDARY}--\r\n".encode()
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.authority}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {len(content)}\r\n\r\n"
        ).encode() + content


class _Connection:
    """One kept-alive HTTP/1.1 connection: a prepared POST out, its whole answer read back.

    A load generator's client, not a general one: it spends a fraction of the CPU time per
    request that httpx does, which matters when it shares a small machine with the server.
    """

    def __init__(self, target: _Target) -> None:
        self.target = target
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, request: bytes) -> int:
        """Send `request`; the status code. A kept-alive connection the server closed in the
        meantime is re-opened once."""
        reused = self.streams is not None
        try:
            return await self._exchange(request)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.close()
            if not reused:
                raise
            return await self._exchange(request)

    async def _exchange(self, request: bytes) -> int:
        if self.streams is None:
            target = self.target
            context = ssl.create_default_context() if target.tls else None
            self.streams = await asyncio.open_connection(target.host, target.port, ssl=context)
        reader, writer = self.streams
        writer.write(request)
        await writer.drain()
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        fields = (line.partition(":") for line in lines[1:])
        headers = {key.strip().lower(): value.strip().lower() for key, _, value in fields}
        if headers.get("transfer-encoding") == "chunked":
            while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")  # servers send no trailers to a request like this
        elif "content-length" in headers:
            await reader.readexactly(int(headers["content-length"]))
        else:
            await reader.read()  # the body runs to the end of the connection
            headers["connection"] = "close"
        if headers.get("connection") == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


class _Tally:
    """The prepared requests of one run, latencies of successes and counts of the rest."""

    def __init__(
        self, url: str, payloads: Sequence[Payload], top_k: int | None, timeout_s: float
    ) -> None:
        self.target = _Target.parse(url, top_k)
        self.requests = [self.target.request(payload) for payload in payloads]
        self.timeout_s = timeout_s
        self.latencies: list[float] = []
        self.codes: Counter[str] = Counter()
        self.sent = 0

    async def send(self, connection: _Connection) -> None:
        """The next payload, once; its outcome is counted by status or transport error."""
        request = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        began = time.perf_counter()
        try:
            status = await asyncio.wait_for(connection.post(request), self.timeout_s)
        except TRANSPORT_ERRORS as exc:
            connection.close()
            self.codes[type(exc).__name__] += 1
            return
        if 200 <= status < 300:
            self.latencies.append((time.perf_counter() - began) * 1000)
            self.codes["ok"] += 1
        else:
            self.codes[str(status)] += 1


def _check(payloads: Sequence[Payload], duration_s: float, *positive: float) -> None:
    if duration_s <= 0 or not payloads or any(value <= 0 for value in positive):
        raise SlipwayError(
            "concurrency or rate > 0, duration > 0 and at least one image are needed"
        )


async def run_load(
    url: str,
    payloads: Sequence[Payload],
    concurrency: int = 4,
    duration_s: float = 10.0,
    max_requests: int | None = None,
    top_k: int | None = 1,
    timeout_s: float = 30.0,
    progress: bool = False,
) -> LoadReport:
    """Closed loop: drive `url` (a full endpoint URL) with the payloads in turn, one connection
    per client; see the module docstring. `top_k=None` leaves the parameter out."""
    _check(payloads, duration_s, concurrency)
    tally = _Tally(url, payloads, top_k, timeout_s)
    start = time.perf_counter()
    deadline = start + duration_s
    bar = tqdm(total=max_requests, unit="req", desc="load", disable=not progress, leave=False)

    async def client() -> None:
        connection = _Connection(tally.target)
        while time.perf_counter() < deadline and (
            max_requests is None or tally.sent < max_requests
        ):
            await tally.send(connection)
            bar.update(1)
        connection.close()

    await asyncio.gather(*(client() for _ in range(concurrency)))
    bar.close()
    return _report(url, concurrency, time.perf_counter() - start, tally)


async def run_open_loop(
    url: str,
    payloads: Sequence[Payload],
    rate: float,
    duration_s: float = 10.0,
    top_k: int | None = 1,
    timeout_s: float = 30.0,
) -> LoadReport:
    """Open loop: `rate` arrivals per second for `duration_s`, whether or not answers keep up,
    which is how overload really looks. The report's `concurrency` is the most in flight."""
    _check(payloads, duration_s, rate)
    tally = _Tally(url, payloads, top_k, timeout_s)
    idle: list[_Connection] = []
    in_flight = peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        connection = idle.pop() if idle else _Connection(tally.target)
        await tally.send(connection)
        idle.append(connection)
        in_flight -= 1

    tasks = []
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < duration_s:
        due = int((now - start) * rate) + 1  # arrivals owed by now, caught up if behind
        tasks += [asyncio.create_task(one()) for _ in range(due - len(tasks))]
        await asyncio.sleep(max(0.0, start + len(tasks) / rate - time.perf_counter()))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.close()
    return _report(url, peak, time.perf_counter() - start, tally)


def _report(url: str, concurrency: int, elapsed: float, tally: _Tally) -> LoadReport:
    codes, latencies = Counter(tally.codes), tally.latencies
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
    path = urllib.parse.urlsplit(url).path
    return url if path not in ("", "/") else url.rstrip("/") + PREDICT_PATH


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
