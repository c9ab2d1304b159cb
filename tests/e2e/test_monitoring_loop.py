"""The monitoring loop, live: real service, drift monitor, Prometheus, Alertmanager, webhook.

The chart's alert rules fire on the traffic that should fire them, stay silent on the traffic
that should not, and resolve once traffic is normal again; every dashboard panel's query returns
data from the live Prometheus.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.charts.dashboards import iter_panels, panel_queries, substitute
from tests.e2e import scenario as story
from tests.e2e.stack import (
    DRIFT_JOB,
    INFERENCE_JOB,
    MODEL_NAME,
    PREDICTION_LOG,
    Stack,
    monitoring_stack,
)
from tests.e2e.traffic import Traffic

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "charts" / "inference" / "files" / "dashboards"
INFERENCE_ALERTS = {
    "InferenceErrorRatioHigh": "critical",
    "InferenceLatencySloBreached": "warning",
    "InferenceOverloadShedding": "warning",
}


@pytest.fixture(scope="module")
def scenario(
    trained_model: Path, demo_data: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[story.Scenario]:
    work = tmp_path_factory.mktemp("monitoring")
    began = time.monotonic()
    with monitoring_stack(trained_model, work, story.RULE_PARAMS, story.SERVICE_ENV) as stack:
        result = story.run(stack, Traffic(demo_data, stack.inference))
        result.seconds["total"] = round(time.monotonic() - began, 1)
        print(f"\nmonitoring loop phases (s): {result.seconds}")
        yield result


def test_normal_traffic_is_served_and_judged_free_of_drift(scenario: story.Scenario) -> None:
    normal = scenario.reports["normal"]
    assert normal.ok == normal.requests == 600, normal.summary()
    summary = scenario.drift["normal"]
    assert summary["window_size"] == 600 and summary["judged"]
    assert summary["drift_detected"] is False, summary["features"]
    assert scenario.fired_after["normal"] == set()


def test_bad_requests_get_4xx_and_fire_no_alert(scenario: story.Scenario) -> None:
    bad = scenario.reports["bad"]
    assert bad.ok == 0 and bad.requests == 60
    assert set(bad.errors) <= {"400", "413", "415", "422"}, bad.errors
    assert scenario.error_alert_during_4xx == []
    assert scenario.fired_after["bad_requests"] == set()


def test_each_fault_fires_its_own_alert(scenario: story.Scenario) -> None:
    errors = scenario.reports["errors"]
    assert set(errors.errors) == {"500"}, errors.errors
    assert scenario.fired_after["server_errors"] == {("InferenceErrorRatioHigh", "")}
    assert scenario.fired_after["stalls"] == {
        ("InferenceErrorRatioHigh", ""),
        ("InferenceLatencySloBreached", ""),
    }
    # Refused requests are 503s: both the shedding and the 5xx-ratio alert see them.
    assert "503" in scenario.reports["overload"].errors
    assert ("InferenceOverloadShedding", "") in scenario.fired_after["overload"]
    assert {k for k in scenario.fired_after["overload"] if k[0] == "InferenceInputDrift"} == set()


def test_inverted_images_move_the_drift_gauges_and_fire_the_drift_alert(
    scenario: story.Scenario,
) -> None:
    shifted = scenario.drift["shifted"]["features"]
    assert shifted["brightness"]["detected"] and shifted["brightness"]["score"] > 1.0
    assert shifted["brightness"]["pvalue"] < 1e-6
    # Inversion keeps each image's gray-level spread: contrast must not be blamed.
    assert not shifted["contrast"]["detected"], shifted["contrast"]
    detected = {name for name, result in shifted.items() if result["detected"]}
    drift_alerts = {k[1] for k in scenario.fired_after["drift"] if k[0] == "InferenceInputDrift"}
    assert drift_alerts == detected
    recovered = scenario.drift["recovered"]
    assert recovered["drift_detected"] is False, recovered["features"]


def test_webhook_got_exactly_the_expected_alerts_with_their_labels_and_all_resolved(
    scenario: story.Scenario,
) -> None:
    detected = {n for n, r in scenario.drift["shifted"]["features"].items() if r["detected"]}
    expected = {(name, "") for name in INFERENCE_ALERTS} | {
        ("InferenceInputDrift", feature) for feature in detected
    }
    assert scenario.fired() == expected
    assert set(scenario.last_status().values()) == {"resolved"}, scenario.last_status()
    for alert in scenario.stack.webhook.alerts():
        labels = alert["labels"]
        name = labels["alertname"]
        if name in INFERENCE_ALERTS:
            assert labels["severity"] == INFERENCE_ALERTS[name]
            assert (labels["job"], labels["model"]) == (INFERENCE_JOB, MODEL_NAME), labels
        else:
            assert (labels["severity"], labels["job"]) == ("warning", DRIFT_JOB), labels
        assert alert["annotations"]["runbook_url"].endswith("#" + name.lower())
        assert "{{" not in alert["annotations"]["description"], alert["annotations"]


def test_drift_monitor_read_every_logged_prediction_across_rotations(
    scenario: story.Scenario,
) -> None:
    stack = scenario.stack
    written = stack.query('slipway_inference_prediction_log_written_total{job="inference"}')
    read = stack.query('slipway_drift_records_read_total{job="drift"}')
    assert written and read
    logged = story.logged_predictions(stack)
    summary = story.drift_summary(stack)
    assert summary["records_read"] == logged, (summary["records_read"], logged)
    assert summary["invalid_records"] == 0
    assert (stack.prediction_logs / f"{PREDICTION_LOG}.1").is_file(), "the log never rotated"
    assert stack.query('slipway_inference_prediction_log_dropped_total{job="inference"} > 0') == []


LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


def live_variables(stack: Stack, dashboard: dict[str, Any]) -> dict[str, str]:
    """Each `label_values(...)` variable resolved on the live Prometheus, as Grafana would."""
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        query = query.get("query", "") if isinstance(query, dict) else query
        match = LABEL_VALUES.match(query.strip())
        assert match, f"variable ${variable['name']}: unsupported query {query!r}"
        selector = substitute(match["selector"] or "up", values)
        found = stack.query(f"group by ({match['label']}) ({selector})")
        names = sorted(r["metric"].get(match["label"], "") for r in found)
        assert names, f"variable ${variable['name']} has no values: {query}"
        values[variable["name"]] = "|".join(names)
    return values


def test_every_dashboard_panel_returns_data(scenario: story.Scenario) -> None:
    files = sorted(DASHBOARDS.glob("*.json"))
    assert files, f"no dashboards in {DASHBOARDS}"
    empty, exempt, ran = [], [], 0
    for path in files:
        dashboard = json.loads(path.read_text())
        variables = live_variables(scenario.stack, dashboard)
        assert variables.get("job") == INFERENCE_JOB, variables
        gpu = {
            p.get("title", "")
            for p in iter_panels(dashboard)
            if "DCGM exporter" in p.get("description", "")
        }
        exempt += sorted(gpu)
        for title, expr in panel_queries(dashboard, variables):
            if title in gpu:
                continue
            ran += 1
            if not scenario.stack.query(expr):
                empty.append(f"{path.name}: {title!r}: {expr}")
    assert not empty, "panels whose query returned no data:\n" + "\n".join(empty)
    assert ran > 10
    # The one documented exception: GPU panels need the NVIDIA DCGM exporter.
    assert len(exempt) <= 1, exempt


def test_the_report_endpoint_serves_the_live_window(scenario: story.Scenario) -> None:
    page = httpx.get(scenario.stack.drift + "/report", timeout=10)
    assert page.status_code == 200
    assert page.text.count("<svg") == 4 and "no drift" in page.text
