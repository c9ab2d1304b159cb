"""The load generator for the inference service, and an SLO gate built on it.

Closed loop (`run_load`, `measure_service`, `slipway loadtest`): `concurrency` workers each send
one image per request, back to back, until `duration_s` has passed or `max_requests` were sent.
Open loop (`run_open_loop`, the serving benchmark's overload scenario): a fixed arrival rate
regardless of answers. A request is a multipart upload to /v1/predict, an Open Inference
Protocol binary REST request, or a gRPC ModelInfer call (`kind`; see `clients`). Latency
percentiles are over successful responses; everything else is counted by HTTP status code or
gRPC status name, or by transport error name when no response came. The clients are cheap in
CPU, so that the generator measures the server rather than itself (the serving benchmark
shares 2 cores with it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import mimetypes
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from slipway.data.scan import IMAGE_EXTENSIONS
from slipway.errors import SlipwayError
from slipway.loadtest.clients import (
    KINDS,
    OK,
    Connection,
    GrpcConnection,
    HttpConnection,
    HttpTarget,
    Payload,
    RequestKind,
    grpc_infer_request,
    grpc_target,
)

log = logging.getLogger(__name__)

PREDICT_PATH = "/v1/predict"
__all__ = [
    "KINDS",
    "LoadReport",
    "Payload",
    "RequestKind",
    "endpoint",
    "load_images",
    "measure_service",
    "run_load",
    "run_open_loop",
]


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


# What a request can end in instead of an answer (ValueError, IndexError: a malformed answer).
TRANSPORT_ERRORS = (
    OSError,
    TimeoutError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
    ValueError,
    IndexError,
)


class _Tally:
    """The prepared requests of one run, latencies of successes and counts of the rest."""

    def __init__(
        self,
        url: str,
        payloads: Sequence[Payload],
        top_k: int | None,
        timeout_s: float,
        kind: RequestKind = "multipart",
        model: str = "",
    ) -> None:
        if kind not in KINDS:
            raise SlipwayError(f"unknown request kind {kind!r}; choose from {', '.join(KINDS)}")
        self.kind = kind
        self.timeout_s = timeout_s
        if kind == "grpc":
            if not model:
                raise SlipwayError("gRPC load needs the served model's name")
            self.grpc = grpc_target(url)
            self.requests = [grpc_infer_request(model, data) for _, data, _ in payloads]
        else:
            self.target = HttpTarget.parse(url, top_k if kind == "multipart" else None)
            self.requests = [self.target.request(payload, kind) for payload in payloads]
        self.latencies: list[float] = []
        self.codes: Counter[str] = Counter()
        self.sent = 0

    def connect(self) -> Connection:
        if self.kind == "grpc":
            return GrpcConnection(self.grpc, self.timeout_s)
        return HttpConnection(self.target)

    async def send(self, connection: Connection) -> None:
        """The next payload, once; its outcome is counted by status or transport error."""
        request = self.requests[self.sent % len(self.requests)]
        self.sent += 1
        began = time.perf_counter()
        try:
            outcome = await asyncio.wait_for(connection.post(request), self.timeout_s)
        except TRANSPORT_ERRORS as exc:
            await connection.aclose()
            self.codes[type(exc).__name__] += 1
            return
        if outcome == OK:
            self.latencies.append((time.perf_counter() - began) * 1000)
        self.codes[outcome] += 1


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
    kind: RequestKind = "multipart",
    model: str = "",
    retry_after: bool = True,
) -> LoadReport:
    """Closed loop: drive `url` (a full endpoint URL; `grpc://HOST:PORT` for gRPC) with the
    payloads in turn, one connection per client; see the module docstring. `top_k=None` leaves
    the parameter out; `model` is the served name gRPC calls address.

    With `retry_after`, a client refused with 429 or 503 waits as long as the answer's
    Retry-After asks before its next request, as a well-behaved client does (RFC 9110). Without
    it, it sends again at once: the retry storm naive clients make of an overload."""
    _check(payloads, duration_s, concurrency)
    tally = _Tally(url, payloads, top_k, timeout_s, kind, model)
    start = time.perf_counter()
    deadline = start + duration_s
    bar = tqdm(total=max_requests, unit="req", desc="load", disable=not progress, leave=False)

    async def client() -> None:
        connection = tally.connect()
        while time.perf_counter() < deadline and (
            max_requests is None or tally.sent < max_requests
        ):
            await tally.send(connection)
            bar.update(1)
            if retry_after and connection.retry_after_s:
                await asyncio.sleep(min(connection.retry_after_s, deadline - time.perf_counter()))
        await connection.aclose()

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
    kind: RequestKind = "multipart",
    model: str = "",
) -> LoadReport:
    """Open loop: `rate` arrivals per second for `duration_s`, whether or not answers keep up,
    which is how overload really looks. The report's `concurrency` is the most in flight."""
    _check(payloads, duration_s, rate)
    tally = _Tally(url, payloads, top_k, timeout_s, kind, model)
    idle: list[Connection] = []
    in_flight = peak = 0

    async def one() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        connection = idle.pop() if idle else tally.connect()
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
        await connection.aclose()
    return _report(url, peak, time.perf_counter() - start, tally)


def _report(url: str, concurrency: int, elapsed: float, tally: _Tally) -> LoadReport:
    codes, latencies = Counter(tally.codes), tally.latencies
    ok = codes.pop(OK, 0)
    report = LoadReport(url, concurrency, elapsed, ok + sum(codes.values()), ok, dict(codes))
    report.rps = report.requests / elapsed if elapsed > 0 else 0.0
    if latencies:
        values = np.asarray(latencies)
        report.p50_ms, report.p95_ms, report.p99_ms = (
            float(v) for v in np.percentile(values, [50, 95, 99])
        )
        report.mean_ms, report.max_ms = float(values.mean()), float(values.max())
    return report


def endpoint(url: str, kind: RequestKind = "multipart", model: str = "") -> str:
    """A base URL gets the kind's path (/v1/predict, /v2/models/<model>/infer); a URL with a
    path, or a gRPC address, is used as given."""
    path = urllib.parse.urlsplit(url).path
    if kind == "grpc" or path not in ("", "/"):
        return url
    if kind == "oip-binary":
        if not model:
            raise SlipwayError("an Open Inference Protocol URL needs the served model's name")
        return f"{url.rstrip('/')}/v2/models/{urllib.parse.quote(model)}/infer"
    return url.rstrip("/") + PREDICT_PATH


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
    kind: RequestKind = "multipart",
    model: str = "",
    retry_after: bool = True,
) -> LoadReport:
    """Load a running service for `duration_s` seconds and report throughput and latency
    (`retry_after`: see `run_load`)."""
    payloads = load_images(images)
    target = endpoint(url, kind, model)
    options: dict[str, Any] = {"top_k": top_k, "timeout_s": timeout_s, "kind": kind}
    options.update(model=model, retry_after=retry_after)
    if warmup_requests:
        asyncio.run(
            run_load(target, payloads, 1, duration_s, max_requests=warmup_requests, **options)
        )
    return asyncio.run(
        run_load(
            target, payloads, concurrency, duration_s, max_requests, progress=progress, **options
        )
    )
