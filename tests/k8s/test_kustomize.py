"""The cluster set-up in k8s/: builds with `kubectl kustomize`, validates for Kubernetes 1.27
and 1.37, and agrees with the pipeline, the chart and the alerts it serves."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.metric_names import service_series
from tests.charts.promql import metric_names
from tests.charts.render import CHART, KUBE_VERSIONS, REPO, render_rule_groups, tool
from tests.charts.validate import kubernetes_validate, load_manifests
from tests.helpers import require_tool

K8S = REPO / "k8s"
CUSTOM_KINDS = {"AlertmanagerConfig"}  # no schema kept in tests/schemas: checked below


@pytest.fixture(scope="module")
def built() -> list[dict[str, Any]]:
    result = subprocess.run(
        [tool("kubectl"), "kustomize", str(K8S)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return load_manifests(result.stdout)


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_build_has_every_part(built: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in built}
    assert {"Namespace", "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim",
            "Deployment", "Service", "PriorityClass", "AlertmanagerConfig",
            "NetworkPolicy", "ConfigMap"} <= kinds  # fmt: skip
    namespaced = [d for d in built if d["kind"] not in {"Namespace", "PriorityClass"}]
    assert all(d["metadata"].get("namespace") for d in namespaced)
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "slipway" for d in built)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_objects_valid_for_kubernetes(
    built: list[dict[str, Any]], kube_version: str, tmp_path: Path
) -> None:
    core = [d for d in built if d["kind"] not in CUSTOM_KINDS]
    output = kubernetes_validate(core, kube_version, tmp_path)
    short = kube_version.rsplit(".", 1)[0]
    for doc in core:
        assert f"{doc['kind'].lower()}/{doc['metadata']['name']} against version {short}" in (
            output
        ), output


def test_pipeline_runner_may_run_training_jobs_and_nothing_more(built) -> None:
    role = find(built, "Role", "slipway-pipeline-runner")
    assert role["metadata"]["namespace"] == "slipway"
    grants = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    for group, resource in (("trainer.kubeflow.org", "trainjobs"), ("kubeflow.org", "pytorchjobs")):
        for verb in ("create", "get", "watch", "delete"):
            assert (group, resource, verb) in grants
    assert ("", "pods/log", "get") in grants and ("", "pods", "list") in grants
    assert not [g for g in grants if "*" in g], "no wildcards"
    assert not [g for g in grants if g[1] in {"secrets", "roles", "rolebindings"}]
    assert not [g for g in grants if g[1] in {"pods", "pods/log"} and g[2] not in
                {"get", "list", "watch"}]  # fmt: skip
    binding = find(built, "RoleBinding", "slipway-pipeline-runner")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    subjects = {(s["name"], s["namespace"]) for s in binding["subjects"]}
    assert ("pipeline-runner", "slipway") in subjects
    find(built, "ServiceAccount", "pipeline-runner")


def test_names_agree_with_the_pipeline(built: list[dict[str, Any]]) -> None:
    from pipelines import training

    options = training.ClusterOptions()
    claim = find(built, "PersistentVolumeClaim", options.pvc_name)
    assert claim["metadata"]["namespace"] == "slipway"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    config = find(built, "ConfigMap", options.mlflow_config_map)
    assert set(training.MLFLOW_CONFIG_KEYS) <= set(config["data"])
    example = (K8S / "training" / "mlflow-credentials.example.env").read_text()
    keys = {line.split("=", 1)[0] for line in example.splitlines() if re.match(r"^[A-Z]", line)}
    assert keys == set(training.MLFLOW_SECRET_KEYS)
    assert options.mlflow_secret in example
    assert options.gpu_node_selector == yaml.safe_load((CHART / "values.yaml").read_text())[
        "gpu"]["nodeSelector"]  # fmt: skip


def test_mlflow_is_where_the_chart_and_pipeline_look(built: list[dict[str, Any]]) -> None:
    default_uri = yaml.safe_load((CHART / "values.yaml").read_text())["model"]["mlflow"][
        "trackingUri"]  # fmt: skip
    assert find(built, "ConfigMap", "slipway-mlflow")["data"]["MLFLOW_TRACKING_URI"] == default_uri
    host, port = re.match(r"http://([^:/]+):(\d+)$", default_uri).groups()
    name, namespace = host.split(".")[:2]
    service = find(built, "Service", name)
    assert service["metadata"]["namespace"] == namespace
    assert service["spec"]["ports"][0]["port"] == int(port)
    deployment = find(built, "Deployment", "mlflow")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] and not spec["automountServiceAccountToken"]
    (container,) = spec["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
    assert context["capabilities"]["drop"] == ["ALL"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert "--serve-artifacts" in container["args"][0]


def test_gpu_pool_conventions(built: list[dict[str, Any]]) -> None:
    training = find(built, "PriorityClass", "slipway-training")
    serving = find(built, "PriorityClass", "slipway-serving")
    assert serving["value"] > training["value"]
    notes = (K8S / "README.md").read_text()
    # The chart's GPU pods and the pipeline's train step tolerate the same taint, any value.
    from pipelines.training import ClusterOptions

    options = ClusterOptions()
    (toleration,) = yaml.safe_load((CHART / "values.yaml").read_text())["gpu"]["tolerations"]
    assert toleration == {
        "key": options.gpu_toleration_key,
        "operator": "Exists",
        "effect": options.gpu_toleration_effect,
    }
    taint = f"{toleration['key']}=present:{toleration['effect']}"
    assert taint in notes and "nvidia.com/gpu.present=true" in notes
    assert "cloud.google.com/gke-accelerator" in notes


ROUTE_KEYS = {
    "groupBy": "group_by", "groupWait": "group_wait", "groupInterval": "group_interval",
    "repeatInterval": "repeat_interval", "continue": "continue",
}  # fmt: skip


def alertmanager_equivalent(config: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The Alertmanager configuration the operator generates from an AlertmanagerConfig:
    its route under the root, scoped to its namespace; Secret references become placeholders."""

    def matchers(items: list[dict[str, str]]) -> list[str]:
        return [f'{m["name"]}{m.get("matchType", "=")}"{m["value"]}"' for m in items]

    def route(node: dict[str, Any], top: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"receiver": node["receiver"]}
        found = matchers(node.get("matchers", []))
        out["matchers"] = [*found, f'namespace="{namespace}"'] if top else found
        for key, target in ROUTE_KEYS.items():
            if key in node:
                out[target] = node[key]
        if "routes" in node:
            out["routes"] = [route(child) for child in node["routes"]]
        return out

    def receiver(node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"name": node["name"]}
        for pagerduty in node.get("pagerdutyConfigs", []):
            out.setdefault("pagerduty_configs", []).append({
                "routing_key": "placeholder-routing-key",
                "send_resolved": pagerduty["sendResolved"],
                "description": pagerduty["description"],
                "details": {d["key"]: d["value"] for d in pagerduty.get("details", [])},
            })  # fmt: skip
        for slack in node.get("slackConfigs", []):
            out.setdefault("slack_configs", []).append({
                "api_url": "https://hooks.slack.com/services/T0/B0/placeholder",
                "channel": slack["channel"], "send_resolved": slack["sendResolved"],
                "title": slack["title"], "text": slack["text"],
            })  # fmt: skip
        return out

    spec = config["spec"]
    return {
        "route": {"receiver": "null", "routes": [route(spec["route"], top=True)]},
        "receivers": [{"name": "null"}, *[receiver(r) for r in spec["receivers"]]],
        "inhibit_rules": [
            {
                "source_matchers": matchers(rule["sourceMatch"]),
                "target_matchers": matchers(rule["targetMatch"]),
                "equal": rule["equal"],
            }
            for rule in spec.get("inhibitRules", [])
        ],
    }


@pytest.fixture(scope="module")
def alertmanager_file(built: list[dict[str, Any]], tmp_path_factory) -> Path:
    config = find(built, "AlertmanagerConfig", "slipway-inference")
    path = tmp_path_factory.mktemp("alertmanager") / "alertmanager.yml"
    equivalent = alertmanager_equivalent(config, config["metadata"]["namespace"])
    path.write_text(yaml.safe_dump(equivalent, sort_keys=False))
    return path


def test_alertmanager_config_structure(built: list[dict[str, Any]]) -> None:
    config = find(built, "AlertmanagerConfig", "slipway-inference")
    assert config["apiVersion"] == "monitoring.coreos.com/v1alpha1"
    spec = config["spec"]
    names = {r["name"] for r in spec["receivers"]}

    def walk(node: dict[str, Any]) -> None:
        assert node["receiver"] in names
        for matcher in node.get("matchers", []):
            assert set(matcher) <= {"name", "value", "matchType"}
            assert matcher.get("matchType", "=") in {"=", "!=", "=~", "!~"}
        for child in node.get("routes", []):
            walk(child)

    walk(spec["route"])
    refs = [c["routingKey"] for r in spec["receivers"] for c in r.get("pagerdutyConfigs", [])]
    refs += [c["apiURL"] for r in spec["receivers"] for c in r.get("slackConfigs", [])]
    assert refs and all(set(ref) == {"name", "key"} for ref in refs)


def test_amtool_accepts_the_equivalent_config(alertmanager_file: Path) -> None:
    amtool = require_tool("amtool")
    result = subprocess.run(
        [amtool, "check-config", str(alertmanager_file)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_chart_alert_reaches_the_right_receivers(alertmanager_file: Path) -> None:
    amtool = require_tool("amtool")
    alerts = [rule for group in render_rule_groups() for rule in group["rules"] if "alert" in rule]
    assert alerts

    def route(labels: dict[str, str], expected: str) -> None:
        args = [f"{key}={value}" for key, value in labels.items()]
        result = subprocess.run(
            [amtool, "config", "routes", "test", f"--config.file={alertmanager_file}",
             f"--verify.receivers={expected}", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, f"{labels}: {result.stdout}{result.stderr}"

    for rule in alerts:
        labels = {"alertname": rule["alert"], "namespace": "ml-serving", **rule["labels"]}
        critical = rule["labels"]["severity"] == "critical"
        route(labels, "ml-platform-pager,ml-platform-chat" if critical else "ml-platform-chat")
    route({"alertname": "InferenceErrorRatioHigh", "namespace": "other", "severity": "critical"},
          "null")  # fmt: skip
    route({"alertname": "KubePodCrashLooping", "namespace": "ml-serving", "severity": "critical"},
          "null")  # fmt: skip


def test_prometheus_adapter_rules_serve_the_chart_metrics(tmp_path: Path) -> None:
    values = yaml.safe_load((K8S / "prometheus-adapter" / "values.yaml").read_text())
    rules = values["rules"]["custom"]
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    gpu_values = yaml.safe_load((CHART / "ci" / "gpu-values.yaml").read_text())
    served = {rule["name"]["as"] for rule in rules}
    assert chart_values["autoscaling"]["customMetric"]["name"] in served
    assert gpu_values["autoscaling"]["customMetric"]["name"] in served
    recording = []
    for rule in rules:
        (series,) = metric_names(rule["seriesQuery"])
        assert series in service_series()
        assert re.search(rule["name"]["matches"], series)
        assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
        query = (
            rule["metricsQuery"]
            .replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", 'namespace="ml-serving", pod=~"a|b"')
            .replace("<<.GroupBy>>", "pod")
        )
        assert metric_names(query) == {series}
        recording.append({"record": f"adapter:{rule['name']['as']}", "expr": query})
    path = tmp_path / "adapter-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": recording}]}))
    result = subprocess.run(
        [require_tool("promtool"), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
