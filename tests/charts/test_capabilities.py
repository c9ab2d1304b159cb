"""The chart on a bare cluster and with the add-ons' APIs: an optional integration renders only
where its API is served (or, for the HPA's custom metric, when asked for with `true`), and
NOTES.txt names every one that was left out."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.charts.objects import FULLNAME, find, kinds
from tests.charts.render import (
    ADDON_APIS,
    CHART,
    CUSTOM_METRICS_API,
    KEDA_API,
    NAMESPACE,
    PROMETHEUS_RULE_API,
    RELEASE,
    SERVICE_MONITOR_API,
    helm,
    notes,
    render_docs,
    scenario_api_versions,
    scenario_values,
    template,
)
from tests.charts.validate import crd_errors, crd_schema_path

BARE = scenario_values("bare-cluster")
# API groups every conformant cluster serves (the Kubernetes API reference), "" being core.
BUILT_IN_GROUPS = {
    "", "apps", "autoscaling", "batch", "policy", "networking.k8s.io", "rbac.authorization.k8s.io",
    "storage.k8s.io", "coordination.k8s.io", "discovery.k8s.io", "scheduling.k8s.io",
}  # fmt: skip
# value that asks for it, the kind it renders, the API it needs, the start of its NOTES line
INTEGRATIONS = {
    "serviceMonitor": ("ServiceMonitor", SERVICE_MONITOR_API, "ServiceMonitor (serviceMonitor"),
    "prometheusRule": ("PrometheusRule", PROMETHEUS_RULE_API, "PrometheusRule (prometheusRule"),
    "keda": ("ScaledObject", KEDA_API, "KEDA ScaledObject (keda.enabled)"),
}
HPA_METRIC_LINE = "HPA metric slipway_inference_in_flight_requests (autoscaling.customMetric"


def bare(api_versions: tuple[str, ...] = (), **values: Any) -> list[dict[str, Any]]:
    """The bare-cluster scenario for a cluster serving `api_versions`, with `values` on top."""
    result = template([BARE], values=values or None, api_versions=api_versions)
    return render_docs(result.stdout)


def group(doc: dict[str, Any]) -> str:
    return doc["apiVersion"].rpartition("/")[0]


def pod_metric(docs: list[dict[str, Any]]) -> bool:
    hpa = find(docs, "HorizontalPodAutoscaler")
    return "Pods" in [metric["type"] for metric in hpa["spec"]["metrics"]]


def test_bare_cluster_scenario_asks_for_every_integration_and_declares_no_api() -> None:
    values = yaml.safe_load(BARE.read_text())
    assert all(values[key]["enabled"] is True for key in [*INTEGRATIONS, "dashboards"])
    assert values["canary"]["gatewayAPI"]["enabled"] is True
    assert "autoscaling" not in values  # the custom metric stays on its default, auto
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert defaults["autoscaling"]["customMetric"]["enabled"] == "auto"
    assert scenario_api_versions("bare-cluster") == ()
    assert scenario_api_versions("defaults") == ()


@pytest.mark.parametrize("scenario", ["bare-cluster", "defaults"])
def test_bare_cluster_gets_only_built_in_objects(scenario: str, render_scenario) -> None:
    rendered = render_scenario(scenario)
    foreign = [f"{d['apiVersion']} {d['kind']}" for d in rendered.docs
               if group(d) not in BUILT_IN_GROUPS or crd_schema_path(d)]  # fmt: skip
    assert not foreign
    assert not kinds(rendered.docs) & {"ServiceMonitor", "PrometheusRule", "ScaledObject",
                                       "HTTPRoute"}  # fmt: skip
    assert len(rendered.of_kind("Deployment")) == 1  # no Gateway API canary
    hpa = rendered.one("HorizontalPodAutoscaler")
    assert [metric["type"] for metric in hpa["spec"]["metrics"]] == ["Resource"]
    assert "replicas" not in rendered.one("Deployment", FULLNAME)["spec"]  # the HPA owns it


def test_dashboards_are_configmaps_and_render_on_a_bare_cluster(render_scenario) -> None:
    rendered = render_scenario("bare-cluster")
    dashboards = [c for c in rendered.of_kind("ConfigMap")
                  if c["metadata"]["labels"].get("grafana_dashboard") == "1"]  # fmt: skip
    assert len(dashboards) == len(list(CHART.glob("files/dashboards/*.json")))


def test_with_the_apis_served_every_integration_renders() -> None:
    docs = bare(ADDON_APIS)
    assert {"ServiceMonitor", "PrometheusRule", "ScaledObject", "HTTPRoute"} <= kinds(docs)
    assert "HorizontalPodAutoscaler" not in kinds(docs)  # KEDA owns the HPA
    assert "replicas" not in find(docs, "Deployment")["spec"]
    errors = [error for doc in docs if crd_schema_path(doc) for error in crd_errors(doc)]
    assert not errors, "\n".join(errors)
    assert "Not created" not in notes([BARE], api_versions=ADDON_APIS)


@pytest.mark.parametrize("missing", INTEGRATIONS)
def test_each_integration_degrades_alone(missing: str) -> None:
    """All APIs served but one: only that object is left out, and only its line appears."""
    served = tuple(api for api in ADDON_APIS if api != INTEGRATIONS[missing][1])
    rendered = kinds(bare(served))
    text = notes([BARE], api_versions=served)
    for key, (kind, _, line) in INTEGRATIONS.items():
        assert (kind in rendered) == (key != missing), kind
        assert (line in text) == (key == missing), text
    kind, api, line = INTEGRATIONS[missing]
    (entry,) = [chunk for chunk in text.split("\n  - ") if chunk.startswith(line)]
    assert f"needs {api};" in entry
    assert f"--api-versions {api}" in entry and "Install " in entry and "helm upgrade" in entry


def test_without_keda_the_hpa_scales() -> None:
    docs = bare()
    assert find(docs, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"] == FULLNAME
    text = notes([BARE])
    assert "the HPA scales the Deployment instead" in text
    assert f"Autoscaling: HPA {FULLNAME};" in text


def test_without_keda_or_autoscaling_the_replica_count_holds() -> None:
    docs = bare(**{"autoscaling.enabled": False, "replicaCount": 3})
    assert find(docs, "Deployment")["spec"]["replicas"] == 3
    assert not kinds(docs) & {"HorizontalPodAutoscaler", "ScaledObject"}
    assert "the Deployment keeps replicaCount (3) replicas" in notes(
        [BARE], {"autoscaling.enabled": False, "replicaCount": 3}
    )


@pytest.mark.parametrize(
    ("mode", "api_versions", "expected"),
    [
        ("auto", (), False),
        ("auto", (CUSTOM_METRICS_API,), True),
        ("auto", ("custom.metrics.k8s.io/v1beta2",), True),
        (True, (), True),
        (False, (CUSTOM_METRICS_API,), False),
    ],
)
def test_custom_metric_is_three_state(mode: Any, api_versions: tuple[str, ...], expected: bool):
    values = {"autoscaling.customMetric.enabled": mode}
    docs = render_docs(template(values=values, api_versions=api_versions).stdout)
    assert pod_metric(docs) is expected
    text = notes(values=values, api_versions=api_versions)
    assert (HPA_METRIC_LINE in text) == (mode == "auto" and not expected)
    assert ("FailedGetPodsMetric" in text) == (mode is True and not api_versions)


def test_auto_custom_metric_line_says_what_to_install() -> None:
    text = notes()
    (entry,) = [chunk for chunk in text.split("\n  - ") if chunk.startswith(HPA_METRIC_LINE)]
    assert "the HPA scales on CPU only" in entry and "prometheus-adapter" in entry
    assert f"--api-versions {CUSTOM_METRICS_API}" in entry


def test_hpa_without_any_metric_is_refused_with_the_reason() -> None:
    values = {"autoscaling.targetCPUUtilizationPercentage": None}
    result = template(values=values, check=False)
    assert result.returncode != 0
    assert "autoscaling needs a metric" in result.stderr and CUSTOM_METRICS_API in result.stderr
    docs = render_docs(template(values=values, api_versions=[CUSTOM_METRICS_API]).stdout)
    metrics = find(docs, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert [metric["type"] for metric in metrics] == ["Pods"]


def test_install_dry_run_prints_the_same_notes() -> None:
    """`notes()` renders NOTES.txt through a copy of the chart; `helm install --dry-run=client`
    is what a user sees (for the built-in APIs only): the two agree."""
    result = helm(
        "install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE,
        "--values", str(BARE),
    )  # fmt: skip
    printed = result.stdout.split("NOTES:\n", 1)[1]
    assert printed.strip() == notes([BARE]).strip()
    for _, api, line in INTEGRATIONS.values():
        assert line in printed and f"--api-versions {api}" in printed
    assert HPA_METRIC_LINE in printed
    count = len(list(CHART.glob("files/dashboards/*.json")))
    assert f"Dashboards: {count} ConfigMaps labelled grafana_dashboard=1" in printed


def test_cpu_metric_notes_point_at_metrics_server() -> None:
    """The HPA is built in, but its CPU metric comes from metrics-server: said, not skipped."""
    assert "metrics-server" in notes()
    assert "metrics-server" not in notes(api_versions=["metrics.k8s.io/v1beta1"])
    assert "metrics-server" not in notes(values={"autoscaling.enabled": False})
