"""Every prediction route the service counts is covered by the chart's alerts, its dashboard's
traffic panels and the prometheus-adapter's request rate, and no other route is."""

from __future__ import annotations

import re

import yaml

from services.inference.metrics import PREDICT_ROUTES
from tests.charts.dashboards import DASHBOARDS, load, panel_queries
from tests.charts.render import CHART, REPO

NOT_PREDICTIONS = (
    "/v1/models",
    "/v1/models/{name}",
    "/v2/models/{name}",
    "/healthz",
    "/v1/explain",
)
_ROUTE_MATCHER = re.compile(r'route=~\\?"([^"\\]+)\\?"')


def _covers(regex: str) -> None:
    for route in PREDICT_ROUTES:
        assert re.fullmatch(regex, route), (regex, route)
    for route in NOT_PREDICTIONS:
        assert not re.fullmatch(regex, route), (regex, route)


def test_alerts_cover_every_prediction_route() -> None:
    params = yaml.safe_load((CHART / "values.yaml").read_text())["prometheusRule"]["params"]
    _covers(params["predictRoutes"])


def test_dashboards_and_the_adapter_cover_every_prediction_route() -> None:
    regexes = {
        match
        for path in DASHBOARDS
        for _, expr in panel_queries(load(path))
        for match in _ROUTE_MATCHER.findall(expr)
    }
    adapter = (REPO / "k8s" / "prometheus-adapter" / "values.yaml").read_text()
    regexes |= set(_ROUTE_MATCHER.findall(adapter))
    assert regexes
    for regex in regexes:
        _covers(regex)
