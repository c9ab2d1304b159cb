"""Read the chart's Grafana dashboards: their panels and their queries with variables filled in,
ready to run against a Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tests.charts.render import CHART

DASHBOARDS = sorted(CHART.glob("files/dashboards/*.json"))

# Grafana's built-in variables, as a panel of a few hours' range would expand them.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "30s",
    "__interval_ms": "30000",
    "__range": "1h",
    "__range_s": "3600",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")


def load(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def iter_panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel that is not a row, including those inside collapsed rows."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from iter_panels(panel)
        else:
            yield panel


def default_variables(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Values of the dashboard's variables as saved: `All` becomes the variable's allValue."""
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        current = variable.get("current", {}).get("value", "")
        if isinstance(current, list):
            current = current[0] if len(current) == 1 else "|".join(current)
        if current == "$__all":
            current = variable.get("allValue", ".*")
        values[variable["name"]] = str(current)
    return values


def substitute(expr: str, variables: Mapping[str, str]) -> str:
    """Replace `$name`, `${name}`, `${name:format}` and `[[name]]` with their values."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name in variables:
            return str(variables[name])
        if name in BUILTINS:
            return BUILTINS[name]
        raise KeyError(f"no value for variable ${name} in {expr!r}")

    return _VARIABLE.sub(value, expr)


def panel_queries(
    dashboard: Mapping[str, Any], variables: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """`(panel title, PromQL)` for every query of every panel, variables substituted.

    `variables` override the dashboard's saved values (e.g. `{"job": "slipway"}`); Grafana's
    `$__rate_interval` and friends get fixed values (`1m`).
    """
    values = {**default_variables(dashboard), **(variables or {})}
    queries = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            if target.get("expr"):
                queries.append((panel.get("title", ""), substitute(target["expr"], values)))
    return queries
