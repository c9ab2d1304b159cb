"""The rollout controller in the chart: an optional CronJob running `slipway rollout --once`,
with Events-only RBAC, criteria that the experiment's `rollout` section accepts, and egress to
Prometheus when egress is restricted."""

from __future__ import annotations

import json
from typing import Any

from slipway.config.experiment import load_experiment
from slipway.config.rollout import RolloutCriteria
from tests.charts.objects import FULLNAME, kinds, render
from tests.charts.render import CHART, NAMESPACE, template

ROLLOUT = f"{FULLNAME}-rollout"


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (job,) = [d for d in docs if d["kind"] == "CronJob"]
    assert job["metadata"]["name"] == ROLLOUT
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (found,) = pod["containers"]
    return {**found, "pod": pod}


def test_off_by_default() -> None:
    docs = render()
    assert not {"CronJob", "Role", "RoleBinding"} & kinds(docs)


def test_the_scenario_runs_the_controller_with_its_criteria(render_scenario) -> None:
    docs = render_scenario("rollout").docs
    c = container(docs)
    assert c["command"] == ["slipway", "rollout", "--once"]
    args = c["args"]
    assert "--prometheus=http://prometheus-operated.monitoring.svc:9090" in args
    assert f'--selector=namespace="{NAMESPACE}"' in args and "--model-name=demo" in args
    sets = [a.removeprefix("--set=") for a in args if a.startswith("--set=")]
    assert "rollout.window=15m" in sets
    # What the chart passes is what the CLI's experiment loader accepts.
    criteria = load_experiment(overrides=sets).rollout
    assert (criteria.window, criteria.min_requests, criteria.max_error_ratio) == ("15m", 200, 0.005)
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["MLFLOW_TRACKING_URI"]["value"].startswith("http://mlflow")


def test_rbac_allows_creating_events_and_nothing_else(render_scenario) -> None:
    docs = render_scenario("rollout").docs
    (role,) = [d for d in docs if d["kind"] == "Role"]
    assert role["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create"]}]
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["subjects"][0]["name"] == ROLLOUT == binding["roleRef"]["name"]
    pod = container(docs)["pod"]
    assert pod["serviceAccountName"] == ROLLOUT and pod["automountServiceAccountToken"] is False
    (token,) = [v for v in pod["volumes"] if v["name"] == "api-token"]
    assert token["projected"]["sources"][0]["serviceAccountToken"]["path"] == "token"


def test_without_events_no_role_and_no_token() -> None:
    docs = render({"staging.enabled": True, "rollout.enabled": True, "rollout.events": False})
    assert not {"Role", "RoleBinding"} & kinds(docs)
    assert all(v["name"] != "api-token" for v in container(docs)["pod"]["volumes"])


def test_restricted_egress_admits_prometheus(render_scenario) -> None:
    docs = render_scenario("rollout").docs
    (policy,) = [
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == ROLLOUT
    ]
    assert policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "rollout"
    assert "ingress" not in policy["spec"] and "Ingress" in policy["spec"]["policyTypes"]
    ports = [p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])]
    assert 9090 in ports and 5000 in ports  # Prometheus, and MLflow from networkPolicy.egress


def test_the_candidate_must_exist() -> None:
    result = template(values={"rollout.enabled": True}, check=False)
    assert result.returncode != 0
    assert "rollout.enabled needs staging.enabled" in result.stderr


def test_the_schema_knows_exactly_the_criteria_of_the_experiment() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    criteria = schema["properties"]["rollout"]["properties"]["criteria"]["properties"]
    assert set(criteria) == set(RolloutCriteria.model_fields)
    refused = template(values={"rollout.criteria": {"max_errors": 1}}, check=False)
    assert refused.returncode != 0 and "max_errors" in refused.stderr
