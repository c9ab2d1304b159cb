"""The service under uvicorn over a real socket: batching, overload, timeouts, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import httpx
import pytest

from slipway.procs import ServerProcess
from tests.services.inference_helpers import (
    inference_server,
    metric_value,
    ready_client,
    settings_for,
)


async def _burst(url: str, png: bytes, count: int, timeout: float = 60.0) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        files = {"files": ("a.png", png, "image/png")}
        return await asyncio.gather(
            *(client.post(url + "/v1/predict", files=files) for _ in range(count))
        )


@pytest.fixture
def server(limited_server: ServerProcess) -> ServerProcess:
    return limited_server


@pytest.mark.slow
def test_batches_form_under_load_and_overload_is_503_not_a_timeout(
    server: ServerProcess, png_bytes: bytes
) -> None:
    url = server.url
    # Concurrent requests within the queue limit are batched together.
    responses = asyncio.run(_burst(url, png_bytes, 6))
    assert [r.status_code for r in responses] == [200] * 6
    text = httpx.get(url + "/metrics").text
    forwards = metric_value(text, "slipway_inference_batch_size_count")
    images = metric_value(text, "slipway_inference_batch_size_sum")
    assert images == 6 and forwards < images, (forwards, images)

    # Overload: a stalled model and more requests than the queue holds.
    httpx.post(url + "/admin/fault", json={"mode": "slow", "seconds": 0.4}).raise_for_status()
    began = time.monotonic()
    responses = asyncio.run(_burst(url, png_bytes, 30, timeout=20))
    elapsed = time.monotonic() - began
    httpx.post(url + "/admin/fault", json={"mode": "off"}).raise_for_status()
    codes = [r.status_code for r in responses]
    assert set(codes) == {200, 503}, codes
    rejected = [r for r in responses if r.status_code == 503]
    assert all(r.headers["Retry-After"] and "overloaded" in r.json()["error"] for r in rejected)
    assert codes.count(200) <= 6 + 8  # queue + one batch being computed
    assert elapsed < 20  # everything answered; nothing hung until the client gave up
    text = httpx.get(url + "/metrics").text
    assert metric_value(text, "slipway_inference_rejected_total", reason="queue_full") == len(
        rejected
    )
    assert metric_value(text, "slipway_inference_requests_total", code="5xx") == len(rejected)


@pytest.mark.slow
def test_sigterm_loses_no_accepted_request_and_flushes_the_log(
    server: ServerProcess, png_bytes: bytes, tmp_path: Path
) -> None:
    url = server.url
    httpx.post(url + "/admin/fault", json={"mode": "slow", "seconds": 0.5}).raise_for_status()

    async def scenario() -> tuple[list[httpx.Response], list[int]]:
        async with httpx.AsyncClient(timeout=60) as client:
            files = {"files": ("a.png", png_bytes, "image/png")}
            pending = [
                asyncio.create_task(client.post(url + "/v1/predict", files=files)) for _ in range(5)
            ]
            await asyncio.sleep(0.3)
            server.proc.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.3)
            readiness = [(await client.get(url + "/readyz")).status_code]
            return await asyncio.gather(*pending), readiness

    responses, readiness = asyncio.run(scenario())
    assert readiness == [503]  # draining: not ready, still answering
    assert [r.status_code for r in responses] == [200] * 5
    server.proc.wait(30)
    assert server.proc.returncode in (0, -signal.SIGTERM)
    log = server.output()
    assert "every accepted request answered" in log
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 5
    assert all(json.loads(line)["route"] == "/v1/predict" for line in lines)


def test_request_timeout_is_503(trained_model: Path, png_bytes: bytes) -> None:
    settings = settings_for(
        trained_model, fault_injection=True, request_timeout_s=0.3, intra_op_spinning=True
    )
    with ready_client(settings) as client:
        client.post("/admin/fault", json={"mode": "slow", "seconds": 1.0})
        response = client.post("/v1/predict", files=[("files", ("a.png", png_bytes))])
        assert response.status_code == 503 and "no answer within" in response.json()["error"]
        client.post("/admin/fault", json={"mode": "off"})
        text = client.get("/metrics").text
        assert metric_value(text, "slipway_inference_rejected_total", reason="timeout") == 1


def test_fault_injection_error_mode_and_expiry(trained_model: Path, png_bytes: bytes) -> None:
    files = [("files", ("a.png", png_bytes, "image/png"))]
    with ready_client(settings_for(trained_model)) as client:
        assert client.post("/admin/fault", json={"mode": "error"}).status_code == 404
    with ready_client(settings_for(trained_model, fault_injection=True)) as client:
        state = client.post("/admin/fault", json={"mode": "error", "duration_s": 1}).json()
        assert state["mode"] == "error"
        failed = client.post("/v1/predict", files=files)
        assert failed.status_code == 500 and "injected" in failed.json()["error"]
        assert client.post("/admin/fault", json={"mode": "boom"}).status_code == 422
        time.sleep(1.1)
        assert client.get("/admin/fault").json()["mode"] == "off"
        assert client.post("/v1/predict", files=files).status_code == 200
        text = client.get("/metrics").text
        five = metric_value(text, "slipway_inference_requests_total", code="5xx")
        assert five == 1


def test_slipway_serve_cli_starts_the_service(trained_model: Path, tmp_path: Path) -> None:
    slipway = Path(sys.executable).parent / "slipway"
    proc = inference_server(
        {"SLIPWAY_RELOAD_INTERVAL_S": "0"},
        tmp_path / "cli.log",
        argv=[str(slipway), "serve", "--model", str(trained_model), "--model-name", "clothes"],
    )
    with proc:
        # The CLI's --port is not given: SLIPWAY_PORT from the environment applies.
        proc.wait_ready()
        assert httpx.get(proc.url + "/v1/models").json()["default"] == "clothes"
        assert "curl -s -F files=@" in proc.output()
    assert proc.returncode in (0, -signal.SIGTERM)


def test_slipway_serve_rejects_bad_settings_with_a_message() -> None:
    import subprocess

    slipway = Path(sys.executable).parent / "slipway"
    out = subprocess.run(
        [str(slipway), "serve", "--backend", "tensorflow", "--model", "nowhere"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "backend" in out.stderr and "Traceback" not in out.stderr
