"""Each ci/ scenario of the chart is rendered once per session and shared by the tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.charts.render import KUBE_VERSIONS, render_docs, render_scenario_text


class Rendered:
    """One scenario rendered for one Kubernetes version and the APIs it declares: the manifest
    text and its objects."""

    def __init__(self, scenario: str, kube_version: str) -> None:
        self.scenario = scenario
        self.kube_version = kube_version
        self.text = render_scenario_text(scenario, kube_version)
        self.docs: list[dict[str, Any]] = render_docs(self.text)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.of_kind(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"{self.scenario}: {len(found)} {kind} objects named {name}"
        return found[0]


@pytest.fixture(scope="session")
def render_scenario() -> Any:
    """`render_scenario(name, kube_version)`, cached for the session."""
    cache: dict[tuple[str, str], Rendered] = {}

    def get(scenario: str, kube_version: str = KUBE_VERSIONS[0]) -> Rendered:
        key = (scenario, kube_version)
        if key not in cache:
            cache[key] = Rendered(scenario, kube_version)
        return cache[key]

    return get
