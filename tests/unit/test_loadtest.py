"""The load generator against real HTTP servers: a scripted one, and the inference service."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from slipway.errors import SlipwayError
from slipway.loadtest import (
    LoadReport,
    endpoint,
    load_images,
    run_load,
    run_open_loop,
)
from slipway.loadtest.clients import HttpTarget
from slipway.procs import free_port
from tests.helpers import run_cli


class Scripted(BaseHTTPRequestHandler):
    """Request n answers 503 when n % 5 == 0, else 400 when n % 7 == 0, else 200 after 5 ms."""

    count = 0
    lock = threading.Lock()
    bodies_without_file = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with Scripted.lock:
            Scripted.count += 1
            n = Scripted.count
            if b'name="files"' not in body or "top_k=1" not in self.path:
                Scripted.bodies_without_file += 1
        code = 503 if n % 5 == 0 else 400 if n % 7 == 0 else 200
        if code == 200:
            time.sleep(0.005)
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return


class KeptAlive(BaseHTTPRequestHandler):
    """HTTP/1.1 answers: chunked on /chunked, to the end of the connection on /close."""

    protocol_version = "HTTP/1.1"
    peers: ClassVar[set[int]] = set()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        KeptAlive.peers.add(self.client_address[1])
        self.send_response(200)
        if self.path.startswith("/chunked"):
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"3;x=y\r\n{}\n\r\n2\r\n{}\r\n0\r\n\r\n")
        else:
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"{}")
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        return


class Refusing(BaseHTTPRequestHandler):
    """Every request: 503 with `Retry-After: 30`, on a kept-alive connection."""

    protocol_version = "HTTP/1.1"
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        Refusing.count += 1
        self.send_response(503)
        self.send_header("Retry-After", "30")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        return


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def scripted() -> Iterator[str]:
    Scripted.count = 0
    Scripted.bodies_without_file = 0
    yield from _serve(Scripted)


@pytest.fixture
def kept_alive() -> Iterator[str]:
    KeptAlive.peers = set()
    yield from _serve(KeptAlive)


@pytest.fixture(scope="module")
def images(demo_data: Path) -> list[Path]:
    return sorted(demo_data.rglob("*.png"))[:12]


def test_counts_errors_by_status_and_latency_of_successes(scripted: str, images: list) -> None:
    payloads = load_images(images)
    report = asyncio.run(run_load(scripted + "/v1/predict", payloads, 4, 60.0, max_requests=70))
    assert Scripted.count == 70 and Scripted.bodies_without_file == 0
    assert (report.requests, report.ok) == (70, 48)
    assert report.errors == {"503": 14, "400": 8}
    assert report.p50_ms >= 5.0 and report.p50_ms <= report.p95_ms <= report.p99_ms
    assert report.error_rate == pytest.approx(22 / 70)
    assert report.rps > 0
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["ok"] == 48
    assert not report.meets_slo(p95_ms=10_000)  # the error rate alone misses the objective


def test_open_loop_keeps_its_rate_whatever_the_answers(scripted: str, images: list) -> None:
    payloads = load_images(images)
    report = asyncio.run(run_open_loop(scripted + "/v1/predict", payloads, 100.0, 0.7))
    assert Scripted.count == report.requests and 69 <= report.requests <= 71
    assert Scripted.bodies_without_file == 0
    assert report.errors["503"] == report.requests // 5 and set(report.errors) == {"503", "400"}
    assert report.concurrency >= 1 and report.max_ms >= report.p50_ms >= 5.0


def test_keeps_one_connection_per_client_and_reads_chunked_answers(
    kept_alive: str, images: list
) -> None:
    url = kept_alive + "/chunked/v1/predict"
    report = asyncio.run(run_load(url, load_images(images), 2, 60.0, max_requests=20))
    assert (report.requests, report.ok) == (20, 20), report.errors
    assert len(KeptAlive.peers) == 2


def test_reconnects_when_the_server_closes_the_connection(kept_alive: str, images: list) -> None:
    report = asyncio.run(run_load(kept_alive + "/close", load_images(images), 2, 60.0, 20))
    assert (report.requests, report.ok) == (20, 20), report.errors
    assert len(KeptAlive.peers) == 20


def test_a_refused_client_waits_as_retry_after_asks_within_the_run(images: list) -> None:
    for server in _serve(Refusing):
        Refusing.count = 0
        url = server + "/v1/predict"
        polite = asyncio.run(run_load(url, load_images(images), 2, 0.5))
        # One request per client; the 30 s pause ends with the run, not after it.
        assert (polite.requests, polite.errors, Refusing.count) == (2, {"503": 2}, 2)
        assert polite.duration_s < 15
        storm = asyncio.run(run_load(url, load_images(images), 2, 0.5, retry_after=False))
        assert storm.requests > 2 and storm.errors == {"503": storm.requests}


def test_unreachable_service_counts_transport_errors(images: list) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/predict"
    report = asyncio.run(run_load(url, load_images(images), 2, 60.0, max_requests=6))
    assert report.ok == 0
    assert report.errors == {"ConnectionRefusedError": 6}
    assert not report.meets_slo(p95_ms=10_000)
    assert report.to_dict()["p95_ms"] is None  # valid JSON without a single success


def test_inputs_are_checked(tmp_path: Path) -> None:
    with pytest.raises(SlipwayError, match="image folder not found"):
        load_images(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SlipwayError, match="no images"):
        load_images(tmp_path / "empty")
    assert endpoint("http://h:1") == "http://h:1/v1/predict"
    assert endpoint("http://h:1/v2/x") == "http://h:1/v2/x"
    assert endpoint("http://h:1/", "oip-binary", "m 1") == "http://h:1/v2/models/m%201/infer"
    assert endpoint("grpc://h:2", "grpc", "m") == "grpc://h:2"
    with pytest.raises(SlipwayError, match="model's name"):
        endpoint("http://h:1", "oip-binary")
    payloads = load_images(images_of(tmp_path))
    with pytest.raises(SlipwayError, match="gRPC load needs"):
        asyncio.run(run_load("grpc://h:2", payloads, 1, 1.0, kind="grpc"))
    with pytest.raises(SlipwayError, match="not a gRPC address"):
        asyncio.run(run_load("http://h:2", payloads, 1, 1.0, kind="grpc", model="m"))
    with pytest.raises(SlipwayError, match="unknown request kind"):
        asyncio.run(run_load("http://h:2", payloads, 1, 1.0, kind="soap"))  # type: ignore[arg-type]


def images_of(folder: Path) -> Path:
    (folder / "one").mkdir(exist_ok=True)
    (folder / "one" / "a.png").write_bytes(b"\x89PNG")
    return folder / "one"


def test_oip_binary_request_is_the_extensions_layout(images: list) -> None:
    """Header length, the JSON part, then the image as one BYTES element (4-byte length)."""
    payload = load_images(images[:1])[0]
    request = HttpTarget.parse("http://h:1/v2/models/m/infer", None).request(payload, "oip-binary")
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v2/models/m/infer HTTP/1.1"
    headers = dict(line.split(": ", 1) for line in lines[1:])
    assert int(headers["Content-Length"]) == len(body)
    length = int(headers["Inference-Header-Content-Length"])
    header = json.loads(body[:length])
    (tensor,) = header["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("image", "BYTES", [1])
    assert header["parameters"] == {"binary_data_output": True}
    raw = body[length:]
    assert tensor["parameters"]["binary_data_size"] == len(raw) == 4 + len(payload[1])
    assert raw == len(payload[1]).to_bytes(4, "little") + payload[1]


def test_report_meets_slo_only_within_latency_and_errors() -> None:
    report = LoadReport("u", 1, 1.0, requests=100, ok=100, p95_ms=40.0)
    assert report.meets_slo(p95_ms=50) and not report.meets_slo(p95_ms=30)
    report.ok = 97
    assert not report.meets_slo(p95_ms=50, max_error_rate=0.01)


def test_cli_prints_the_report_and_gates_on_the_slo(
    scripted: str, demo_data: Path, tmp_path: Path
) -> None:
    out = tmp_path / "load.json"
    args = ["loadtest", "--url", scripted, "--images", str(demo_data), "--max-requests", "20"]
    result = run_cli(*args, "--concurrency", "2", "--json", str(out))
    assert result.returncode == 0, result.stderr
    assert "req/s" in result.stdout and "p95" in result.stdout
    saved = json.loads(out.read_text())
    assert saved["requests"] == 20 and set(saved["errors"]) <= {"400", "503"}
    assert run_cli(*args, "--slo-p95-ms", "0.001").returncode == 1
    both = run_cli("loadtest", "--url", scripted, "--model", "m", "--images", str(demo_data))
    assert both.returncode == 2 and "exactly one of --url and --model" in both.stderr


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["multipart", "raw", "oip-binary", "grpc"])
def test_cli_serves_a_real_model_and_stops_it(
    trained_model: Path, demo_data: Path, tmp_path: Path, protocol: str
) -> None:
    """Each request kind against the real service; gRPC in a subprocess, as the CLI runs it
    (its stubs cannot share this process with tritonclient's, see test_inference_oip.py)."""
    # The request count ends the run; the duration only bounds it on a very slow machine.
    out = tmp_path / "load.json"
    args = ["--concurrency", "2", "--duration", "120", "--max-requests", "40", "--json", str(out)]
    args += ["--protocol", protocol]
    result = run_cli(
        "loadtest", "--model", str(trained_model), "--images", str(demo_data), *args, timeout=300
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["requests"] == 40 and report["ok"] == 40, report
    url = urllib.parse.urlsplit(report["url"])
    assert url.scheme == ("grpc" if protocol == "grpc" else "http")
    assert protocol != "oip-binary" or url.path.endswith("/infer")
    with pytest.raises(ConnectionRefusedError), socket.create_connection((url.hostname, url.port)):
        pass  # the service must be stopped afterwards
