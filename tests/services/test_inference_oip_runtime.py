"""gRPC and REST Open Inference Protocol traffic on one process: shared batches, overload,
SIGTERM, and a gRPC port that is taken. tritonclient's asyncio clients drive the real server."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from slipway.procs import ServerProcess
from tests.services.inference_helpers import grpc_target, inference_server, metric_value

assert "slipway.oip.grpc_predict_v2_pb2" not in sys.modules  # see test_inference_oip.py
grpc_aio = pytest.importorskip("tritonclient.grpc.aio")
http_aio = pytest.importorskip("tritonclient.http.aio")
from tritonclient.utils import InferenceServerException  # noqa: E402

INFER_ROUTE = "/v2/models/{name}/infer"


@pytest.fixture
def server(limited_server: ServerProcess) -> ServerProcess:
    return limited_server


def _name(server: ServerProcess) -> str:
    return httpx.get(server.url + "/v1/models").json()["default"]


def _grpc_image(png: bytes) -> list:
    tensor = grpc_aio.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([png], dtype=object))
    return [tensor]


def _http_image(png: bytes) -> list:
    tensor = http_aio.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(np.array([png], dtype=object))
    return [tensor]


def _slow(server: ServerProcess, seconds: float) -> None:
    mode = {"mode": "slow", "seconds": seconds} if seconds else {"mode": "off"}
    httpx.post(server.url + "/admin/fault", json=mode).raise_for_status()


@pytest.mark.slow
def test_grpc_and_rest_requests_share_batches(server: ServerProcess, png_bytes: bytes) -> None:
    name = _name(server)
    _slow(server, 0.4)

    async def scenario() -> list[object]:
        grpc_client = grpc_aio.InferenceServerClient(grpc_target(server))
        http_client = http_aio.InferenceServerClient(server.url.removeprefix("http://"))
        try:
            first = asyncio.create_task(grpc_client.infer(name, _grpc_image(png_bytes)))
            await asyncio.sleep(0.15)  # the first forward stalls; the rest queue behind it
            rest = [grpc_client.infer(name, _grpc_image(png_bytes)) for _ in range(3)]
            rest += [http_client.infer(name, _http_image(png_bytes)) for _ in range(2)]
            return [await first, *await asyncio.gather(*rest)]
        finally:
            await grpc_client.close()
            await http_client.close()

    results = asyncio.run(scenario())
    _slow(server, 0)
    labels = {r.as_numpy("label")[0] for r in results}  # type: ignore[attr-defined]
    assert len(results) == 6 and len(labels) == 1
    text = httpx.get(server.url + "/metrics").text
    forwards = metric_value(text, "slipway_inference_batch_size_count")
    images = metric_value(text, "slipway_inference_batch_size_sum")
    assert images == 6 and forwards <= 3, (forwards, images)
    single = metric_value(text, "slipway_inference_batch_size_bucket", le="1.0")
    assert forwards - single >= 1  # at least one batch held more than one image
    count = metric_value(text, "slipway_inference_requests_total", route="grpc", code="2xx")
    assert count == 4
    count = metric_value(text, "slipway_inference_requests_total", route=INFER_ROUTE, code="2xx")
    assert count == 2


@pytest.mark.slow
def test_grpc_overload_is_unavailable_at_once(server: ServerProcess, png_bytes: bytes) -> None:
    name = _name(server)
    _slow(server, 0.4)

    async def burst() -> list[object]:
        client = grpc_aio.InferenceServerClient(grpc_target(server))
        try:
            calls = [client.infer(name, _grpc_image(png_bytes)) for _ in range(30)]
            return await asyncio.gather(*calls, return_exceptions=True)
        finally:
            await client.close()

    began = time.monotonic()
    results = asyncio.run(burst())
    elapsed = time.monotonic() - began
    _slow(server, 0)
    refused = [r for r in results if isinstance(r, InferenceServerException)]
    assert refused and len(results) - len(refused) >= 1
    assert all("UNAVAILABLE" in str(r.status()) for r in refused), refused[:3]
    assert all("overloaded" in r.message() for r in refused)
    assert len(results) - len(refused) <= 6 + 8  # queue + one batch being computed
    assert elapsed < 20
    text = httpx.get(server.url + "/metrics").text
    rejected = metric_value(text, "slipway_inference_rejected_total", reason="queue_full")
    assert rejected == len(refused)
    assert metric_value(text, "slipway_inference_requests_total", route="grpc", code="5xx") == len(
        refused
    )


@pytest.mark.slow
def test_sigterm_answers_every_accepted_grpc_call(
    server: ServerProcess, png_bytes: bytes, tmp_path: Path
) -> None:
    name = _name(server)
    _slow(server, 0.5)

    async def scenario() -> tuple[list[object], bool, int]:
        client = grpc_aio.InferenceServerClient(grpc_target(server))
        try:
            pending = [
                asyncio.create_task(client.infer(name, _grpc_image(png_bytes))) for _ in range(5)
            ]
            await asyncio.sleep(0.3)
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            ready = await client.is_server_ready()  # draining: still answering, not ready
            async with httpx.AsyncClient() as http:
                readyz = (await http.get(server.url + "/readyz")).status_code
            return list(await asyncio.gather(*pending, return_exceptions=True)), ready, readyz
        finally:
            await client.close()

    results, ready, readyz = asyncio.run(scenario())
    assert (ready, readyz) == (False, 503)
    assert not [r for r in results if isinstance(r, Exception)], results
    assert all(r.as_numpy("label").shape == (1,) for r in results)  # type: ignore[attr-defined]
    server.proc.wait(30)
    assert server.proc.returncode in (0, -signal.SIGTERM)
    log = server.output()
    assert "gRPC stopped" in log and "every accepted request answered" in log
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["route"] for line in lines] == ["grpc"] * 5


def test_a_taken_grpc_port_stops_the_service_with_a_message(
    trained_model: Path, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"SLIPWAY_MODEL_SOURCE": str(trained_model), "SLIPWAY_GRPC_PORT": str(port)}
        proc = inference_server(env, tmp_path / "taken.log").start()
        try:
            assert proc.proc is not None
            assert proc.proc.wait(60) == 1
        finally:
            proc.stop()
    assert f"cannot listen for gRPC on 127.0.0.1:{port}" in proc.output()
    assert "Traceback" not in proc.output()
