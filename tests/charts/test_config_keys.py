"""Every setting the chart hands a pod is a field of that service's `Settings`.

Rendered with the real helm binary for every install scenario (plus one with every optional
setting on), and judged by the services' own start-up check (`slipway.config.env`), so a key
the chart sets that the service does not know fails here instead of stopping the pods.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.drift.settings import Settings as DriftSettings
from services.inference.settings import Settings
from slipway.config.env import unknown_variables
from tests.charts.objects import DRIFT, FULLNAME, find, render
from tests.charts.render import SCENARIOS

EVERYTHING_ON = {
    "drift.enabled": True,
    "staging.enabled": True,
    "auth.existingSecret": "token",
    "server.extraSettings": {"FAULT_INJECTION": True},
}


def pod_spec(docs: list[dict[str, Any]], deployment: str) -> dict[str, Any]:
    return find(docs, "Deployment", deployment)["spec"]["template"]["spec"]


def variable_names(docs: list[dict[str, Any]], deployment: str) -> set[str]:
    """Every variable a Deployment's containers get: its ConfigMaps' keys and its `env`."""
    names: set[str] = set()
    for container in pod_spec(docs, deployment)["containers"]:
        for source in container.get("envFrom", []):
            names |= set(find(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        names |= {entry["name"] for entry in container.get("env", [])}
    return names


def service_links(docs: list[dict[str, Any]]) -> set[str]:
    """What the kubelet adds to a pod for each Service of its namespace, this chart's among
    them, unless the pod sets `enableServiceLinks: false` (Docker-links style names)."""
    names: set[str] = set()
    for service in (doc for doc in docs if doc["kind"] == "Service"):
        base = service["metadata"]["name"].upper().replace("-", "_")
        names |= {f"{base}_SERVICE_HOST", f"{base}_SERVICE_PORT", f"{base}_PORT"}
    return names


def unknown(names: set[str], prefix: str, settings: Any) -> dict[str, str | None]:
    """What the service's own start-up check would refuse."""
    return unknown_variables(dict.fromkeys(names, ""), prefix, settings.model_fields)


@pytest.mark.parametrize("scenario", [*SCENARIOS, "everything-on"])
def test_every_slipway_key_is_a_settings_field(scenario: str, render_scenario: Any) -> None:
    docs = render(EVERYTHING_ON) if scenario == "everything-on" else render_scenario(scenario).docs
    inference = variable_names(docs, FULLNAME)
    assert {"SLIPWAY_MODEL_SOURCE", "SLIPWAY_PORT"} <= inference
    assert not unknown(inference, "SLIPWAY_", Settings)
    assert not {name for name in inference if name.startswith("SLIPWAY_DRIFT_")}
    assert pod_spec(docs, FULLNAME)["enableServiceLinks"] is False  # see the last test
    deployments = {doc["metadata"]["name"] for doc in docs if doc["kind"] == "Deployment"}
    assert DRIFT in deployments or scenario != "everything-on"
    if DRIFT in deployments:
        drift = variable_names(docs, DRIFT)
        assert {"SLIPWAY_DRIFT_REFERENCE", "SLIPWAY_DRIFT_PORT"} <= drift
        assert not unknown(drift, "SLIPWAY_DRIFT_", DriftSettings)
        assert pod_spec(docs, DRIFT)["enableServiceLinks"] is False


def test_a_key_that_is_no_field_is_caught() -> None:
    names = variable_names(render({"server.extraSettings": {"MAX_BACH_SIZE": 8}}), FULLNAME)
    assert unknown(names, "SLIPWAY_", Settings) == {
        "SLIPWAY_MAX_BACH_SIZE": "SLIPWAY_MAX_BATCH_SIZE"
    }


def test_service_links_would_stop_the_service(render_scenario: Any) -> None:
    """Why the pods turn them off: the chart's own Service adds SLIPWAY_INFERENCE_* names."""
    links = service_links(render_scenario("defaults").docs)
    assert "SLIPWAY_INFERENCE_SERVICE_HOST" in unknown(links, "SLIPWAY_", Settings)
