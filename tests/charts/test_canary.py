"""The canary in the chart: in-pod values reach the service's settings, and the Gateway API
alternative (a canary Deployment, its Service and a weighted HTTPRoute) renders only where
HTTPRoutes are served, valid against the Gateway API CRD schema."""

from __future__ import annotations

from typing import Any

import pytest

from services.inference.settings import Settings
from tests.charts.netpol import Source, admits, selector_matches
from tests.charts.objects import FULLNAME, container_env, find, kinds, pod_environment, render
from tests.charts.render import (
    HTTPROUTE_API,
    notes,
    render_docs,
    scenario_api_versions,
    scenario_values,
    template,
)
from tests.charts.test_config_keys import unknown, variable_names
from tests.charts.validate import crd_errors

CANARY = f"{FULLNAME}-canary"
SCENARIO = scenario_values("gateway-canary")
ENVOY_GATEWAY = Source("envoy-gateway-system", {"app.kubernetes.io/name": "envoy"})


def settings_of(docs: list[dict[str, Any]], deployment: str = FULLNAME) -> Settings:
    """The service's settings as a pod of `deployment` would build them (both Deployments
    read the release's ConfigMap; `env` wins)."""
    environment = pod_environment(docs)
    environment.update({e["name"]: e["value"] for e in container_env(docs, deployment)
                        if "value" in e})  # fmt: skip
    fields = {k.removeprefix("SLIPWAY_").lower(): v for k, v in environment.items()
              if k.startswith("SLIPWAY_")}  # fmt: skip
    return Settings(**fields)


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def test_scenario_declares_the_gateway_api() -> None:
    assert scenario_api_versions("gateway-canary") == (HTTPROUTE_API,)


def test_in_pod_canary_values_reach_the_settings() -> None:
    docs = render(
        {
            "staging.enabled": True,
            "canary": {"mode": "canary", "weight": 0.25, "clientKeyHeader": "X-User"},
        }
    )
    settings = settings_of(docs)
    assert (settings.canary_mode, settings.canary_weight) == ("canary", 0.25)
    assert settings.canary_header == "X-User" and settings.staging_source == "models:/demo@staging"
    assert not kinds(docs) & {"HTTPRoute"}
    shadow = settings_of(render({"staging.enabled": True, "canary.mode": "shadow"}))
    assert shadow.canary_mode == "shadow" and shadow.shadow_max_in_flight == 4
    assert settings_of(render()).canary_mode == "off"


def test_gateway_canary_renders_two_deployments_and_a_weighted_route(render_scenario) -> None:
    rendered = render_scenario("gateway-canary")
    route = rendered.one("HTTPRoute")
    assert not crd_errors(route)
    spec = route["spec"]
    assert spec["parentRefs"] == [
        {"name": "inference-gateway", "namespace": "gateway-system", "sectionName": "http"}
    ]
    assert spec["hostnames"] == ["fashion.ml.example.com"]
    (rule,) = spec["rules"]
    backends = {ref["name"]: ref for ref in rule["backendRefs"]}
    assert {name: ref["weight"] for name, ref in backends.items()} == {FULLNAME: 90, CANARY: 10}
    for name, ref in backends.items():
        service = rendered.one("Service", name)
        assert ref["port"] in [p["port"] for p in service["spec"]["ports"]]

    stable, canary = rendered.one("Deployment", FULLNAME), rendered.one("Deployment", CANARY)
    assert canary["spec"]["replicas"] == 1
    # Each Service and Deployment selects its own pods only.
    for service_name, deployment, other in ((FULLNAME, stable, canary), (CANARY, canary, stable)):
        selector = rendered.one("Service", service_name)["spec"]["selector"]
        assert selector_matches({"matchLabels": selector}, pod_labels(deployment))
        assert not selector_matches({"matchLabels": selector}, pod_labels(other))
        assert selector_matches(deployment["spec"]["selector"], pod_labels(deployment))
        assert not selector_matches(deployment["spec"]["selector"], pod_labels(other))
    # Same pod template but for the labels and the candidate's env.
    a, b = stable["spec"]["template"]["spec"], canary["spec"]["template"]["spec"]
    assert a["containers"][0]["image"] == b["containers"][0]["image"]
    assert a["securityContext"] == b["securityContext"]
    assert a["containers"][0]["resources"] == b["containers"][0]["resources"]

    docs = rendered.docs
    assert not unknown(variable_names(docs, CANARY), "SLIPWAY_", Settings)
    candidate, production = settings_of(docs, CANARY), settings_of(docs, FULLNAME)
    assert (candidate.canary_mode, candidate.canary_weight) == ("canary", 1.0)
    assert candidate.staging_source == "models:/fashion@staging"
    assert candidate.model_source == production.model_source  # the fallback
    assert production.canary_mode == "off" and not production.staging_source


def test_network_policy_admits_the_gateway_to_both_deployments(render_scenario) -> None:
    rendered = render_scenario("gateway-canary")
    policy = rendered.one("NetworkPolicy", FULLNAME)
    for name in (FULLNAME, CANARY):
        assert selector_matches(policy["spec"]["podSelector"], pod_labels(rendered.one(
            "Deployment", name)))  # fmt: skip
    assert admits(policy, ENVOY_GATEWAY, "http")
    assert not admits(find(render(), "NetworkPolicy", FULLNAME), ENVOY_GATEWAY, "http")


def test_without_the_gateway_api_nothing_of_it_renders_and_notes_say_so() -> None:
    docs = render_docs(template([SCENARIO]).stdout)
    assert "HTTPRoute" not in kinds(docs)
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"] == [FULLNAME]
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Service"] == [FULLNAME]
    text = notes([SCENARIO])
    assert "Gateway API canary (canary.gatewayAPI.enabled" in text
    assert f"--api-versions {HTTPROUTE_API}" in text
    served = notes([SCENARIO], api_versions=[HTTPROUTE_API])
    assert "Not created" not in served.split("Gateway API canary: HTTPRoute")[0]
    assert f"sends 10 % of requests to Deployment {CANARY}" in served


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"canary.mode": "canary"}, "canary.mode canary needs staging.enabled"),
        (
            {"canary.mode": "shadow", "staging.enabled": True, "canary.gatewayAPI.enabled": True},
            "set canary.mode to off",
        ),
        ({"canary.gatewayAPI.enabled": True}, "parentRefs must name the Gateway"),
        ({"canary.weight": 1.5}, "canary/weight"),
        ({"canary.mode": "on"}, "canary/mode"),
    ],
)
def test_inconsistent_canary_values_are_refused(values: dict[str, Any], message: str) -> None:
    result = template(values=values, check=False, api_versions=[HTTPROUTE_API])
    assert result.returncode != 0 and message in result.stderr, result.stderr
