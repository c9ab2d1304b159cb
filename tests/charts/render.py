"""Render the inference chart with the real helm binary.

Used by the chart, alert and end-to-end tests. `render_rule_groups` and `write_rules_file` give
the chart's alert rules with test overrides of `prometheusRule.params` (short `for:` durations and
windows, another `selector`), rendered from the unchanged rule files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.helpers import require_tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "inference"
SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in CHART.glob("ci/*-values.yaml"))
RELEASE = "slipway"
NAMESPACE = "ml-serving"
KUBE_VERSIONS = ("1.27.0", "1.37.0")  # oldest the chart supports, newest kubernetes-validate knows


def find_tool(name: str) -> str | None:
    """Path of a tool: the pinned copy in tools/bin (scripts/install-tools.sh), else PATH."""
    local = REPO / "tools" / "bin" / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def tool(name: str) -> str:
    """Like `find_tool`, but skips the test (fails in CI) when the tool is missing."""
    path = find_tool(name)
    require_tool(name, available=path is not None)
    assert path is not None
    return path


def nested(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Expand dotted keys (`"prometheusRule.params.errorRatioFor": "1m"`) into nested values."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = _merge(node[last], nested(value))
        elif isinstance(value, Mapping):
            node[last] = nested(value)
        else:
            node[last] = value
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the helm binary; its cache and config stay in a private temporary folder."""
    home = Path(tempfile.gettempdir()) / "slipway-helm-home"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    return subprocess.run(
        [tool("helm"), *args], capture_output=True, text=True, check=check, env=env, timeout=120
    )


def template(
    values_files: Iterable[Path] = (),
    values: Mapping[str, Any] | None = None,
    show_only: Iterable[str] = (),
    kube_version: str = KUBE_VERSIONS[0],
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart with values files, then `values` (nested or dotted keys)."""
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    args += ["--kube-version", kube_version]
    for path in values_files:
        args += ["--values", str(path)]
    for name in show_only:
        args += ["--show-only", name]
    with tempfile.TemporaryDirectory() as tmp:
        if values:
            extra = Path(tmp) / "overrides.yaml"
            extra.write_text(yaml.safe_dump(nested(values)))
            args += ["--values", str(extra)]
        return helm(*args, check=check)


def render_docs(text: str) -> list[dict[str, Any]]:
    """The objects of a rendered manifest stream, empty documents dropped."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def scenario_values(scenario: str) -> Path:
    return CHART / "ci" / f"{scenario}-values.yaml"


def render_rule_groups(overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """`spec.groups` of the chart's PrometheusRule, with every alert present.

    `overrides` are chart values, nested or with dotted keys, applied last, e.g.
    `{"prometheusRule.params": {"errorRatioFor": "30s", "rateWindow": "1m",
    "selector": 'job="slipway"'}}`. The PrometheusRule and the drift monitor are enabled so
    that every alert renders; an override may turn the drift monitor off again.
    """
    values = nested({"prometheusRule.enabled": True, "drift.enabled": True})
    values = _merge(values, nested(overrides or {}))
    result = template(values=values, show_only=["templates/prometheusrule.yaml"])
    docs = render_docs(result.stdout)
    (rule,) = docs
    return rule["spec"]["groups"]


def write_rules_file(path: Path, overrides: Mapping[str, Any] | None = None) -> Path:
    """Write the rendered groups as a plain Prometheus rules file (for prometheus and promtool)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    groups = render_rule_groups(overrides)
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False, width=1000))
    return path
