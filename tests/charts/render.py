"""Render the inference chart with the real helm binary.

Used by the chart, alert and end-to-end tests. `render_rule_groups` and `write_rules_file` give
the chart's alert rules with test overrides of `prometheusRule.params` (short `for:` durations and
windows, another `selector`), rendered from the unchanged rule files.

The chart renders an optional integration only when the cluster serves its API, which
`helm template` learns from `--api-versions` (without them: the built-in APIs only). A ci/
scenario names what it needs in `# api-versions: A, B` comment lines (`scenario_api_versions`).
"""

from __future__ import annotations

import os
import re
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
CHART_NAME = yaml.safe_load((CHART / "Chart.yaml").read_text())["name"]
SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in CHART.glob("ci/*-values.yaml"))
RELEASE = "slipway"
NAMESPACE = "ml-serving"
KUBE_VERSIONS = ("1.27.0", "1.37.0")  # oldest the chart supports, newest kubernetes-validate knows

# What the optional integrations need served, as the chart checks them (CRDs by kind).
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"
PROMETHEUS_RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
KEDA_API = "keda.sh/v1alpha1/ScaledObject"
CUSTOM_METRICS_API = "custom.metrics.k8s.io/v1beta1"
HTTPROUTE_API = "gateway.networking.k8s.io/v1/HTTPRoute"
ADDON_APIS = (SERVICE_MONITOR_API, PROMETHEUS_RULE_API, KEDA_API, CUSTOM_METRICS_API, HTTPROUTE_API)


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
    api_versions: Iterable[str] = (),
    chart: Path = CHART,
) -> subprocess.CompletedProcess[str]:
    """`helm template` of the chart with values files, then `values` (nested or dotted keys),
    as for a cluster that serves the built-in APIs and `api_versions`."""
    args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE]
    args += ["--kube-version", kube_version]
    for api in api_versions:
        args += ["--api-versions", api]
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


def scenario_api_versions(scenario: str) -> tuple[str, ...]:
    """The APIs a scenario assumes served, from its `# api-versions: A, B` comment lines."""
    text = scenario_values(scenario).read_text()
    found = re.findall(r"^#\s*api-versions:(.*)$", text, flags=re.MULTILINE)
    return tuple(api for line in found for api in re.split(r"[,\s]+", line) if api)


def render_scenario_text(scenario: str, kube_version: str = KUBE_VERSIONS[0]) -> str:
    """The manifest of a ci/ scenario, rendered for the APIs it declares."""
    files = [scenario_values(scenario)]
    apis = scenario_api_versions(scenario)
    return template(files, kube_version=kube_version, api_versions=apis).stdout


def notes(
    values_files: Iterable[Path] = (),
    values: Mapping[str, Any] | None = None,
    api_versions: Iterable[str] = (),
) -> str:
    """NOTES.txt as `helm install` prints it, for a cluster serving `api_versions`.

    `helm install --dry-run=client` renders the notes but takes no `--api-versions`, and
    `helm template` takes them but prints no notes. So a copy of the chart gets one more
    template that includes NOTES.txt (helm names each file a template) into a ConfigMap, and
    `helm template --show-only` renders just that.
    """
    with tempfile.TemporaryDirectory() as tmp:
        chart = Path(tmp) / CHART.name
        shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("ci"))
        (chart / "templates" / "zz-rendered-notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: rendered-notes\ndata:\n"
            f'  NOTES.txt: {{{{ include "{CHART_NAME}/templates/NOTES.txt" . | toJson }}}}\n'
        )
        result = template(
            values_files,
            values,
            show_only=["templates/zz-rendered-notes.yaml"],
            api_versions=api_versions,
            chart=chart,
        )
    (configmap,) = render_docs(result.stdout)
    return configmap["data"]["NOTES.txt"]


def render_rule_groups(overrides: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """`spec.groups` of the chart's PrometheusRule, with every alert present.

    `overrides` are chart values, nested or with dotted keys, applied last, e.g.
    `{"prometheusRule.params": {"errorRatioFor": "30s", "rateWindow": "1m",
    "selector": 'job="slipway"'}}`. The PrometheusRule and the drift monitor are enabled so
    that every alert renders; an override may turn the drift monitor off again.
    """
    values = nested({"prometheusRule.enabled": True, "drift.enabled": True})
    values = _merge(values, nested(overrides or {}))
    result = template(
        values=values,
        show_only=["templates/prometheusrule.yaml"],
        api_versions=[PROMETHEUS_RULE_API],
    )
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
