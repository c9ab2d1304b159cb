"""The Grafana dashboards: valid against the dashboard schema, stable uids, the expected
variables, and every query parses and reads only metrics the services define."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.charts.dashboards import DASHBOARDS, iter_panels, load, panel_queries, substitute
from tests.charts.metric_names import (
    CONTRACT,
    DCGM,
    DCGM_PANEL_PREFIX,
    PROMETHEUS,
    contract_series,
    service_series,
)
from tests.charts.promql import metric_names
from tests.charts.render import REPO
from tests.helpers import require_tool

SCHEMA = json.loads((REPO / "tests/schemas/grafana/dashboard.jsonschema.json").read_text())
IDS = [path.stem for path in DASHBOARDS]


def test_the_two_dashboards_exist() -> None:
    assert {"inference-service", "model"} <= set(IDS)


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_dashboard_is_valid_against_the_grafana_schema(path: Path) -> None:
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(load(path))
    ]
    assert not errors, "\n".join(errors[:10])


def test_uids_are_stable_and_unique() -> None:
    uids = [load(path)["uid"] for path in DASHBOARDS]
    assert uids == [f"slipway-{'inference' if i == 'inference-service' else i}" for i in IDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_variables_and_panel_datasources(path: Path) -> None:
    dashboard = load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("job", "model"):
        assert variables[name]["type"] == "query"
        assert variables[name]["current"]["value"], f"{name} has no default"
        assert metric_names(variables[name]["query"].removeprefix("label_values(")
                            .rsplit(",", 1)[0]) <= service_series()  # fmt: skip
    ids = [panel["id"] for panel in dashboard["panels"] if panel["type"] == "row"]
    ids += [panel["id"] for panel in iter_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in iter_panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_inference_dashboard_covers_the_service() -> None:
    dashboard = load(next(p for p in DASHBOARDS if p.stem == "inference-service"))
    queries = "\n".join(expr for _, expr in panel_queries(dashboard))
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, " in queries
    for name in ("requests_total", "queue_depth", "in_flight_requests", "batch_size", "ready",
                 "rejected_total"):  # fmt: skip
        assert f"slipway_inference_{name}" in queries
    assert "process_cpu_seconds_total" in queries and "process_resident_memory_bytes" in queries
    gpu = [p for p in iter_panels(dashboard) if p.get("description", "").startswith(
        DCGM_PANEL_PREFIX)]  # fmt: skip
    assert len(gpu) == 1


def test_model_dashboard_covers_the_model() -> None:
    dashboard = load(next(p for p in DASHBOARDS if p.stem == "model"))
    queries = "\n".join(expr for _, expr in panel_queries(dashboard))
    for name in ("model_info", "prediction_confidence_bucket", "predictions_total",
                 "input_brightness_bucket", "reloads_total"):  # fmt: skip
        assert f"slipway_inference_{name}" in queries
    assert "slipway_drift_score" in queries and "slipway_drift_detected" in queries


@pytest.mark.parametrize("path", DASHBOARDS, ids=IDS)
def test_queries_use_only_metrics_the_services_define(path: Path) -> None:
    dashboard = load(path)
    allowed = service_series() | PROMETHEUS
    for panel in iter_panels(dashboard):
        exempt = panel.get("description", "").startswith(DCGM_PANEL_PREFIX)
        for _, expr in panel_queries({"panels": [panel], "templating": dashboard["templating"]}):
            names = metric_names(expr)
            assert names, f"{panel['title']}: {expr} reads no metric"
            unknown = names - allowed - (DCGM if exempt else set())
            assert not unknown, f"{panel['title']}: {sorted(unknown)}"


def test_every_query_parses_with_promtool(tmp_path: Path) -> None:
    """Prometheus' own parser: the queries as recording rules through `promtool check rules`."""
    promtool = require_tool("promtool")
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr}
        for i, (_, expr) in enumerate(
            query for path in DASHBOARDS for query in panel_queries(load(path))
        )
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_contract_metrics_exist_in_the_services() -> None:
    names = service_series()
    assert contract_series() <= names, sorted(contract_series() - names)
    assert len(CONTRACT) == 31


def test_panel_queries_substitutes_every_variable_form() -> None:
    dashboard = {
        "templating": {"list": [
            {"name": "job", "current": {"value": ["$__all"]}, "allValue": ".+"},
            {"name": "model", "current": {"value": "demo"}},
        ]},
        "panels": [{"type": "row", "panels": [{"type": "timeseries", "title": "t", "targets": [
            {"expr": 'rate(x{job=~"$job", model="${model}", m="[[model]]"}[$__rate_interval])'},
            {"expr": 'y{job="${job:regex}"}'},
        ]}]}],
    }  # fmt: skip
    assert panel_queries(dashboard) == [
        ("t", 'rate(x{job=~".+", model="demo", m="demo"}[1m])'),
        ("t", 'y{job=".+"}'),
    ]
    assert panel_queries(dashboard, {"job": "slipway"})[1] == ("t", 'y{job="slipway"}')
    with pytest.raises(KeyError):
        substitute("$unknown", {})
