"""`slipway pipeline submit` fails with one clear line when the KFP API is unusable."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import ClassVar

import pytest

from pipelines.run import SubmitError, to_kfp_cron
from slipway.procs import free_port


def _slipway(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from slipway.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    """A local HTTP server answering every request with the given status and body."""
    status, kind, body = request.param

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer  # noqa: N815 - http.server's method names

        def log_message(self, *args: object) -> None:
            return

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_unreachable_host() -> None:
    line = _one_line_error(
        _slipway("pipeline", "submit", "--host", f"http://127.0.0.1:{free_port()}")
    )
    assert "cannot reach the KFP API" in line


@pytest.mark.parametrize(
    "server", [(401, "application/json", b'{"error":"unauthorized"}')], indirect=True
)
def test_rejected_credentials(server: str) -> None:
    line = _one_line_error(_slipway("pipeline", "submit", "--host", server, "--token", "bad"))
    assert "HTTP 401" in line and "authentication failed" in line


@pytest.mark.parametrize("server", [(404, "text/plain", b"not found")], indirect=True)
def test_wrong_path(server: str) -> None:
    line = _one_line_error(_slipway("pipeline", "submit", "--host", server))
    assert "has no KFP API" in line


@pytest.mark.parametrize("server", [(200, "text/html", b"<html>Log in</html>")], indirect=True)
def test_login_page_instead_of_api(server: str) -> None:
    line = _one_line_error(_slipway("pipeline", "submit", "--host", server))
    assert "login redirect" in line


def test_bad_schedule_and_bad_host_fail_before_any_request() -> None:
    line = _one_line_error(
        _slipway("pipeline", "submit", "--host", "http://127.0.0.1:9", "--schedule", "daily")
    )
    assert "cron expression of 5 or 6 fields" in line
    assert "http(s) URL" in _one_line_error(_slipway("pipeline", "submit", "--host", "kfp.local"))


def test_unknown_parameter_is_refused() -> None:
    line = _one_line_error(
        _slipway("pipeline", "submit", "--host", "http://127.0.0.1:9", "--set", "training.nope=1")
    )
    assert "training.nope: unknown key" in line


def test_cron_gets_a_seconds_field() -> None:
    assert to_kfp_cron("0 3 * * *") == "0 0 3 * * *"
    assert to_kfp_cron("30 0 3 * * 1") == "30 0 3 * * 1"
    with pytest.raises(SubmitError):
        to_kfp_cron("* *")


def test_local_run_input_mistakes_are_one_line(tmp_path) -> None:
    line = _one_line_error(_slipway("pipeline", "run", "--data", str(tmp_path)))
    assert "only --local runs here" in line
    missing = tmp_path / "missing"
    line = _one_line_error(_slipway("pipeline", "run", "--local", "--data", str(missing)))
    assert "--data must name an existing dataset folder" in line


class _FakeKfpApi(http.server.BaseHTTPRequestHandler):
    """Just enough of the KFP v2beta1 REST API to accept runs; it records what it was sent."""

    calls: ClassVar[list[tuple[str, str, dict]]] = []

    def _reply(self, body: dict) -> None:
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self.calls.append(("GET", self.path, {}))
        self._reply({"multi_user": False} if "healthz" in self.path else {})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
        self.calls.append(("POST", self.path, body))
        ids = {"experiments": "experiment_id", "runs": "run_id"}
        ids["recurringruns"] = "recurring_run_id"
        kind = self.path.split("?")[0].rsplit("/", 1)[-1]
        self._reply({ids[kind]: f"{kind}-1", "display_name": body.get("display_name", "")})

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def fake_kfp() -> Iterator[tuple[str, list]]:
    _FakeKfpApi.calls = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeKfpApi)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _FakeKfpApi.calls
    httpd.shutdown()
    httpd.server_close()


def _posted(calls: list, kind: str) -> dict:
    return next(body for method, path, body in calls if method == "POST" and kind in path)


def test_submit_sends_the_compiled_pipeline_and_parameters(fake_kfp) -> None:
    host, calls = fake_kfp
    args = ["pipeline", "submit", "--host", host, "--data", "s3://bucket/set", "--epochs", "7"]
    result = _slipway(*args, "--fresh", "--image", "registry.example.com/t:2")
    assert result.returncode == 0, result.stderr
    assert "run_id: runs-1" in result.stdout
    run = _posted(calls, "/apis/v2beta1/runs")
    assert run["experiment_id"] == "experiments-1"
    assert run["runtime_config"]["parameters"]["data"]["source"] == "s3://bucket/set"
    assert run["runtime_config"]["parameters"]["training"]["epochs"] == 7
    spec = run["pipeline_spec"]["pipeline_spec"]
    platform = run["pipeline_spec"]["platform_spec"]["platforms"]["kubernetes"]
    assert platform["deploymentSpec"]["executors"]["exec-train-model"]["tolerations"]
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example.com/t:2"}
    tasks = spec["root"]["dag"]["tasks"].values()
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in tasks)  # --fresh

    calls.clear()
    assert _slipway(*args).returncode == 0
    tasks = _posted(calls, "/apis/v2beta1/runs")["pipeline_spec"]["pipeline_spec"]["root"]["dag"]
    assert tasks["tasks"]["prepare-dataset"]["cachingOptions"]["enableCache"] is True


def test_schedule_creates_a_recurring_run_without_cache(fake_kfp) -> None:
    host, calls = fake_kfp
    result = _slipway("pipeline", "submit", "--host", host, "--schedule", "0 3 * * *")
    assert result.returncode == 0, result.stderr
    job = _posted(calls, "recurringruns")
    assert job["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"
    assert job["no_catchup"] is True and job["max_concurrency"] == 1
    tasks = job["pipeline_spec"]["pipeline_spec"]["root"]["dag"]["tasks"].values()
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in tasks)


def test_run_and_submit_send_the_same_settings_from_one_config(
    fake_kfp, tmp_path, monkeypatch
) -> None:
    """`run --local` and `submit` read the same experiment: the same training parameters."""
    from typer.testing import CliRunner

    import pipelines.run
    from slipway.cli import app
    from slipway.cli import pipeline as cli_pipeline

    host, calls = fake_kfp
    data = tmp_path / "data"
    data.mkdir()
    config = tmp_path / "exp.yaml"
    config.write_text(
        f"data: {{source: {data}}}\n"
        "training: {arch: mobilenet_v3_small, epochs: 4, lr: 0.01, num_workers: 2}\n"
        "promotion: {max_p95_latency_ms: 25}\n"
    )
    sent: dict = {}
    monkeypatch.setattr(pipelines.run, "run_local", lambda args, *a, **k: sent.update(args) or {})
    monkeypatch.setattr(cli_pipeline, "_print_summary", lambda *a: None)
    local = CliRunner().invoke(
        app, ["pipeline", "run", "--local", "--config", str(config), "--set", "training.seed=3"]
    )
    assert local.exit_code == 0, local.output
    result = _slipway(
        "pipeline", "submit", "--host", host, "--config", str(config), "--set", "training.seed=3"
    )
    assert result.returncode == 0, result.stderr
    submitted = _posted(calls, "/apis/v2beta1/runs")["runtime_config"]["parameters"]
    assert sent["training"] == submitted["training"]
    assert submitted["training"]["arch"] == "mobilenet_v3_small"
    assert submitted["training"]["seed"] == 3
    assert sent["promotion"] == submitted["promotion"]
    assert submitted["promotion"]["max_p95_latency_ms"] == 25
    assert sent["model"] == submitted["model"]
