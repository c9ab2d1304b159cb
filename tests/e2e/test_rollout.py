"""`slipway rollout` and the drift monitor's Prometheus source against a live Prometheus scraping
a real service running a canary.

MLflow (SQLite) holds `tiny` v1 (production) and v2 (staging); the service serves both, as
`tiny` and `tiny-staging`, following the aliases, in canary mode: half of the traffic sent to
`tiny` is answered by the candidate. A good candidate is promoted; the next candidate, whose
requests fail (the service's fault injection, limited to the staging model), is rolled back and
the service sends everything to production again. Then drift computed from Prometheus equals
drift computed from the prediction log on the same traffic.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from services.drift.monitor import DriftMonitor
from services.drift.reference import resolve_reference
from services.drift.settings import Settings as DriftSettings
from slipway.loadtest import LoadReport, endpoint, run_load
from slipway.prometheus import PrometheusClient, PrometheusError
from slipway.registry.client import PRODUCTION, STAGING, Registry
from tests.e2e.processes import free_port, python_module, running, wait_for
from tests.e2e.stack import INFERENCE_JOB, prometheus_process
from tests.e2e.traffic import Traffic
from tests.helpers import run_cli
from tests.services.inference_helpers import register_model

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NAME = "tiny"
CANDIDATE = f"{NAME}-staging"
WINDOW = "2m"
MIN_REQUESTS = 40
CANARY_REQUESTS = 4 * MIN_REQUESTS  # at weight 0.5 the candidate gets MIN_REQUESTS at least


@dataclass
class Live:
    inference: str
    prometheus: PrometheusClient
    registry: Registry
    tracking_uri: str
    traffic: Traffic
    model: Path
    prediction_log: Path

    def send(self, model: str, count: int) -> LoadReport:
        payloads = self.traffic.normal[:count]
        url = endpoint(self.inference, "oip-binary", model)
        return asyncio.run(
            run_load(
                url,
                payloads,
                concurrency=4,
                duration_s=60.0,
                max_requests=count,
                kind="oip-binary",
                model=model,
            )
        )

    def seen(self, expr: str) -> float:
        return self.prometheus.value(expr) or 0.0

    def served_version(self, model: str = CANDIDATE) -> str | None:
        """The version a served model has loaded, as Prometheus scraped it."""
        found = self.prometheus.by_label(
            f'slipway_inference_model_info{{model="{model}"}}', "version"
        )
        return next(iter(found), None)

    def rollout(self) -> dict[str, object]:
        result = run_cli(
            "rollout",
            "--once",
            "--prometheus",
            self.prometheus.url,
            "--tracking-uri",
            self.tracking_uri,
            "--model-name",
            NAME,
            "--window",
            WINDOW,
            "--min-requests",
            str(MIN_REQUESTS),
            # Latency is not what this test is about, and the machine is shared.
            "--set",
            "rollout.max_p95_latency_ms=20000",
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def live(
    trained_model: Path, demo_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    work = tmp_path_factory.mktemp("rollout")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    register_model(uri, NAME, trained_model, PRODUCTION)  # v1: production
    register_model(uri, NAME, trained_model, STAGING)  # v2: the candidate
    ports = {"inference": free_port(), "prometheus": free_port()}
    inference = python_module(
        "inference",
        "services.inference",
        work,
        {
            "SLIPWAY_MODEL_SOURCE": f"models:/{NAME}@{PRODUCTION}",
            "SLIPWAY_STAGING_SOURCE": f"models:/{NAME}@{STAGING}",
            "SLIPWAY_MLFLOW_TRACKING_URI": uri,
            "SLIPWAY_MODEL_NAME": NAME,
            "SLIPWAY_MODEL_CACHE_DIR": str(work / "cache"),
            "SLIPWAY_HOST": "127.0.0.1",
            "SLIPWAY_PORT": str(ports["inference"]),
            "SLIPWAY_GRPC_PORT": str(free_port()),
            "SLIPWAY_PREDICTION_LOG_PATH": str(work / "predictions" / "inference-0.jsonl"),
            "SLIPWAY_RELOAD_INTERVAL_S": "0.5",
            "SLIPWAY_FAULT_INJECTION": "true",
            "SLIPWAY_DRAIN_SECONDS": "0",
            "SLIPWAY_THREADS": "1",
            "SLIPWAY_CANARY_MODE": "canary",
            "SLIPWAY_CANARY_WEIGHT": "0.5",
        },
        f"http://127.0.0.1:{ports['inference']}",
    )
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {
                "job_name": INFERENCE_JOB,
                "static_configs": [{"targets": [f"127.0.0.1:{ports['inference']}"]}],
            }
        ],
    }
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    prometheus = prometheus_process(work, ports["prometheus"])
    with running(inference, prometheus):
        inference.wait_ready(timeout=120)
        prometheus.wait_ready("/-/ready", timeout=60)
        live = Live(
            inference=inference.url,
            prometheus=PrometheusClient(prometheus.url),
            registry=Registry(uri),
            tracking_uri=uri,
            traffic=Traffic(demo_data, inference.url),
            model=trained_model,
            prediction_log=work / "predictions" / "inference-0.jsonl",
        )
        wait_for(
            "the candidate v2 to be served and scraped", lambda: live.served_version() == "2", 60
        )
        yield live


def test_a_bad_query_and_a_missing_server_are_clear_errors(live: Live) -> None:
    with pytest.raises(PrometheusError, match=r"rejected 'sum\(\(': .*parse error"):
        live.prometheus.query("sum((")
    refused = run_cli("rollout", "--once", "--prometheus", f"http://127.0.0.1:{free_port()}",
                      "--tracking-uri", live.tracking_uri, "--model-name", NAME)  # fmt: skip
    assert refused.returncode == 2
    assert "error: cannot reach Prometheus at http://127.0.0.1:" in refused.stderr


def test_a_good_candidate_is_promoted_and_the_decision_recorded(live: Live) -> None:
    assert live.rollout()["action"] == "wait"  # no traffic yet: nothing to judge
    assert live.send(NAME, CANARY_REQUESTS).ok == CANARY_REQUESTS  # the default route only
    wait_for(
        "Prometheus to count the candidate's requests",
        lambda: (
            live.seen(f'sum(slipway_inference_requests_total{{model="{CANDIDATE}"}})')
            >= MIN_REQUESTS
        ),
        30,
    )
    report = live.rollout()
    assert report["action"] == "promote", report
    assert report["failed"] == [] and report["measured"]["requests"] >= MIN_REQUESTS
    registry = live.registry
    assert str(registry.alias_version(NAME, PRODUCTION).version) == "2"
    assert registry.alias_version(NAME, STAGING) is None
    tags = registry.get(f"{NAME}/2").tags
    assert (
        tags["slipway.rollout"] == "promoted"
        and "error ratio 0.00%" in tags["slipway.rollout.reason"]
    )
    run = registry.client.get_run(str(report["mlflow_run_id"]))
    assert run.data.tags["slipway.rollout"] == "promoted"
    assert run.data.metrics["error_ratio"] == 0.0
    assert run.data.params["max_error_ratio"] == "0.01"
    # The pods follow the alias: production now serves v2.
    wait_for(
        "the service to serve v2 as production",
        lambda: live.served_version(NAME) == "2",
        60,
    )


def test_a_failing_candidate_is_rolled_back_and_tagged_rejected(live: Live) -> None:
    if str(live.registry.alias_version(NAME, PRODUCTION).version) != "2":
        pytest.skip("needs the promotion of the previous test")
    assert register_model(live.tracking_uri, NAME, live.model, STAGING) == "3"
    wait_for("the candidate v3 to be served", lambda: live.served_version() == "3", 60)
    fault = {"mode": "error", "model": CANDIDATE}
    httpx.post(live.inference + "/admin/fault", json=fault).raise_for_status()
    try:
        mixed = live.send(NAME, CANARY_REQUESTS)
    finally:
        httpx.post(live.inference + "/admin/fault", json={"mode": "off"}).raise_for_status()
    # The canary's share fails, production's share does not.
    assert set(mixed.errors) == {"500"} and 0 < mixed.ok < CANARY_REQUESTS, mixed.errors
    production_errors = f'sum(slipway_inference_requests_total{{model="{NAME}",code="5xx"}})'
    wait_for(
        "Prometheus to count the candidate's errors",
        lambda: (
            live.seen(f'sum(slipway_inference_requests_total{{model="{CANDIDATE}",code="5xx"}})')
            >= MIN_REQUESTS
        ),
        30,
    )
    report = live.rollout()
    assert report["action"] == "rollback", report
    assert any(line.startswith("error ratio") for line in report["failed"]), report
    registry = live.registry
    assert registry.alias_version(NAME, STAGING) is None
    assert str(registry.alias_version(NAME, PRODUCTION).version) == "2"
    tags = registry.get(f"{NAME}/3").tags
    assert tags["slipway.rollout"] == "rejected"
    assert tags["slipway.rollout.reason"].startswith("error ratio")
    assert live.rollout()["action"] == "none"  # no candidate left to judge
    assert live.seen(production_errors) == 0
    # The staging alias is gone: the pods send every request to production again.
    wait_for(
        "the canary weight to drop to 0",
        lambda: live.seen(f'slipway_inference_canary_weight{{model="{NAME}"}}') == 0,
        30,
    )
    assert live.send(NAME, 20).ok == 20


def test_drift_from_prometheus_equals_drift_from_the_log(live: Live, trained_model: Path) -> None:
    """The same traffic judged from the prediction log and from the live Prometheus."""
    normal = live.send(NAME, 60)
    shifted = asyncio.run(
        run_load(
            endpoint(live.inference, "oip-binary", NAME),
            live.traffic.shifted[:40],
            concurrency=4,
            duration_s=60.0,
            max_requests=40,
            kind="oip-binary",
            model=NAME,
        )
    )
    assert normal.ok == 60 and shifted.ok == 40
    version = live.served_version(NAME)
    log_path = live.prediction_log

    def logged() -> int:
        lines = log_path.read_text().splitlines() if log_path.exists() else []
        records = [json.loads(line) for line in lines]
        return sum(1 for r in records if (r["model"], r["version"]) == (NAME, version))

    count = (
        f'sum(slipway_inference_prediction_confidence_count{{model="{NAME}",version="{version}"}})'
    )
    wait_for(
        "the log and Prometheus to hold every prediction",
        lambda: logged() >= 100 and live.seen(count) == logged(),
        30,
    )
    reference = resolve_reference(str(trained_model))
    common = {"model_name": NAME, "min_records": 50, "reference": str(trained_model)}
    from_log = DriftMonitor(
        reference, DriftSettings(source="log", prediction_log_path=log_path, **common)
    ).run_once()
    from_prometheus = DriftMonitor(
        reference,
        DriftSettings(
            source="prometheus",
            prometheus_url=live.prometheus.url,
            prometheus_range="10m",
            **common,
        ),
    ).run_once()
    assert from_log.version == from_prometheus.version == version
    assert from_log.window_size == from_prometheus.window_size == logged()
    assert from_log.judged and from_log.features["brightness"].detected  # inverted images
    for name, expected in from_log.features.items():
        got = from_prometheus.features[name]
        assert got.detected == expected.detected, name
        assert got.score == pytest.approx(expected.score, rel=1e-3, abs=1e-4), name
        if expected.pvalue is not None:
            assert got.pvalue == pytest.approx(expected.pvalue, rel=1e-3, abs=1e-9), name
        if expected.current_mean is not None:
            assert got.current_mean == pytest.approx(expected.current_mean, abs=1e-5), name
