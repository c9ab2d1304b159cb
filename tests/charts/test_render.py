"""Every ci/ scenario lints, renders and validates with the real tools, for the oldest and the
newest Kubernetes version."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.charts.render import (
    CHART,
    KUBE_VERSIONS,
    PROMETHEUS_RULE_API,
    SCENARIOS,
    helm,
    scenario_values,
)
from tests.charts.validate import crd_errors, crd_schema_path, kubernetes_validate

EXPECTED_SCENARIOS = {
    "defaults", "bare-cluster", "gpu", "keda", "full-monitoring", "pvc-model", "drift",
}  # fmt: skip


def test_every_install_scenario_has_a_values_file() -> None:
    assert set(SCENARIOS) >= EXPECTED_SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_helm_lint_strict(scenario: str) -> None:
    result = helm("lint", "--strict", str(CHART), "--values", str(scenario_values(scenario)))
    assert "0 chart(s) failed" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_objects_valid_for_kubernetes(
    scenario: str, kube_version: str, render_scenario, tmp_path: Path
) -> None:
    rendered = render_scenario(scenario, kube_version)
    assert rendered.of_kind("Deployment"), "no Deployment rendered"
    custom = [doc for doc in rendered.docs if crd_schema_path(doc) is not None]
    core = [doc for doc in rendered.docs if crd_schema_path(doc) is None]
    output = kubernetes_validate(core, kube_version, tmp_path)
    short = kube_version.rsplit(".", 1)[0]
    for doc in core:
        name = f"{doc['kind'].lower()}/{doc['metadata']['name']}"
        assert f"passed for resource {name} against version {short}" in output, output
    errors = [error for doc in custom for error in crd_errors(doc)]
    assert not errors, "\n".join(errors)


def test_chart_refuses_kubernetes_older_than_supported() -> None:
    from tests.charts.render import template

    result = template(kube_version="1.26.0", check=False)
    assert result.returncode != 0
    assert "kubeVersion" in result.stderr or "incompatible" in result.stderr


@pytest.mark.parametrize("scenario", ["defaults", "drift"])
def test_install_notes_explain_how_to_call_the_service(scenario: str) -> None:
    result = helm(
        "install", "slipway", str(CHART), "--dry-run=client", "--namespace", "ml-serving",
        "--values", str(scenario_values(scenario)),
    )  # fmt: skip
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "port-forward service/slipway-inference 8080:80" in notes
    assert "curl -s http://127.0.0.1:8080/readyz" in notes
    assert "/v1/predict" in notes
    assert "helm test slipway -n ml-serving" in notes
    assert ("service/slipway-inference-drift" in notes) == (scenario == "drift")


def test_packaged_chart_carries_alerts_and_dashboards_not_ci(tmp_path: Path) -> None:
    import tarfile

    result = helm("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("inference-*.tgz")
    assert str(archive) in result.stdout
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert "inference/files/alerts/inference.yaml" in names
    assert "inference/files/dashboards/model.json" in names
    assert "inference/RUNBOOK.md" in names and "inference/values.schema.json" in names
    assert not [name for name in names if name.startswith("inference/ci/")]
    rendered = helm(
        "template", "slipway", str(archive), "--set", "prometheusRule.enabled=true",
        "--api-versions", PROMETHEUS_RULE_API,
    )  # fmt: skip
    assert "kind: PrometheusRule" in rendered.stdout
