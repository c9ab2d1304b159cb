"""The rollout's Kubernetes Event: one authenticated POST of a valid core/v1 Event, made with
the pod's service account, and a clear skip or warning when that is not possible."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from slipway.rollout.decision import decide
from slipway.rollout.events import Cluster, record_event
from tests.charts.render import KUBE_VERSIONS
from tests.charts.validate import kubernetes_validate
from tests.unit.test_rollout_decision import GOOD, LIMITS, measured


class _Api:
    """A stand-in API server on 127.0.0.1 that records each request and answers `status`."""

    def __init__(self, status: int) -> None:
        self.requests: list[dict[str, Any]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                api.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
                )
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"kind": "Event"}' if status == 201 else b'{"kind": "Status"}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def api_server(request: pytest.FixtureRequest) -> Iterator[_Api]:
    api = _Api(getattr(request, "param", 201))
    thread = threading.Thread(target=api.server.serve_forever, daemon=True)
    thread.start()
    yield api
    api.server.shutdown()


def test_a_rollback_posts_a_valid_warning_event_with_the_service_account_token(
    api_server: _Api, tmp_path: Path
) -> None:
    cluster = Cluster(api=api_server.url, token="t0ken", namespace="ml")
    decision = decide("3", measured(errors=100), LIMITS)
    assert decision.action == "rollback"
    assert record_event("fashion", decision, pod="rollout-abc", cluster=cluster) is True
    (sent,) = api_server.requests
    assert sent["path"] == "/api/v1/namespaces/ml/events"
    assert sent["headers"]["Authorization"] == "Bearer t0ken"
    event = sent["body"]
    assert event["type"] == "Warning" and event["reason"] == "CandidateRolledBack"
    assert event["involvedObject"] == {"kind": "Pod", "name": "rollout-abc", "namespace": "ml"}
    assert event["message"].startswith("fashion v3: ")
    named = {**event, "metadata": {"name": "rollout-abc.rollout.x", "namespace": "ml"}}
    kubernetes_validate([named], KUBE_VERSIONS[-1], tmp_path)


@pytest.mark.parametrize("api_server", [403], indirect=True)
def test_a_refused_event_is_a_warning_not_an_error(
    api_server: _Api, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = Cluster(api=api_server.url, token="t", namespace="ml")
    decision = decide("3", GOOD, LIMITS)
    assert decision.action == "promote"
    with caplog.at_level("WARNING", logger="slipway.rollout.events"):
        assert record_event("fashion", decision, pod="p", cluster=cluster) is False
    assert "could not create a Kubernetes Event" in caplog.text and "403" in caplog.text


def test_the_pods_own_cluster_comes_from_its_service_account(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert Cluster.in_cluster(tmp_path) is None  # no token mounted: not a pod
    (tmp_path / "token").write_text("abc\n")
    (tmp_path / "namespace").write_text("ml")
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    cluster = Cluster.in_cluster(tmp_path)
    assert cluster == Cluster("https://10.96.0.1:443", "abc", "ml", tmp_path / "ca.crt")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    assert Cluster.in_cluster(tmp_path).api == "https://[fd00::1]:443"
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST")
    assert Cluster.in_cluster(tmp_path) is None
