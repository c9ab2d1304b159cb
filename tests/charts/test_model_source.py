"""The chart's two ways to choose the served model, rendered with the real helm binary:
registry-driven (follow an alias, reload when it moves) and GitOps (pin a version, reload off)."""

from __future__ import annotations

from typing import Any

import pytest

from services.inference.source import ModelSource
from tests.charts.objects import DRIFT, env_of, render
from tests.charts.render import CHART, helm, scenario_values, template

MODES = [
    # values, served reference, reload interval, drift reference
    ({}, "models:/demo@production", "30", "models:/demo@production"),
    ({"model.alias": "champion"}, "models:/demo@champion", "30", "models:/demo@champion"),
    ({"model.version": 3}, "models:/demo/3", "0", "models:/demo/3"),
    ({"model.version": "12"}, "models:/demo/12", "0", "models:/demo/12"),
    (
        {"model.version": 3, "model.mlflow.registeredModel": "fashion", "model.alias": "x"},
        "models:/fashion/3",
        "0",
        "models:/fashion/3",
    ),
    ({"model.mlflow.uri": "models:/other/7"}, "models:/other/7", "0", "models:/other/7"),
    ({"model.mlflow.uri": "models:/other@prod"}, "models:/other@prod", "30", "models:/other@prod"),
    (
        {"model.version": 3, "drift.reference": "models:/demo@production"},
        "models:/demo/3",
        "0",
        "models:/demo@production",
    ),
]


@pytest.mark.parametrize(("values", "source", "reload", "reference"), MODES)
def test_alias_mode_follows_and_gitops_mode_pins(
    values: dict[str, Any], source: str, reload: str, reference: str
) -> None:
    docs = render({"drift.enabled": True, **values})
    env = env_of(docs)
    assert env["SLIPWAY_MODEL_SOURCE"] == source
    assert env["SLIPWAY_RELOAD_INTERVAL_S"] == reload
    assert env_of(docs, DRIFT)["SLIPWAY_DRIFT_REFERENCE"] == reference
    # what the service makes of it: a pinned version is never followed
    assert ModelSource(source).follows == (reload != "0")


def test_the_gitops_scenario_pins_its_version_and_says_so() -> None:
    docs = render({"drift.enabled": False})  # the defaults follow the alias
    assert env_of(docs)["SLIPWAY_MODEL_SOURCE"] == "models:/demo@production"
    result = helm(
        "install", "slipway", str(CHART), "--dry-run=client",
        "--values", str(scenario_values("gitops")),
    )  # fmt: skip
    assert 'SLIPWAY_MODEL_SOURCE: "models:/fashion/3"' in result.stdout
    assert 'SLIPWAY_RELOAD_INTERVAL_S: "0"' in result.stdout
    assert 'SLIPWAY_DRIFT_REFERENCE: "models:/fashion/3"' in result.stdout
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "Model source: models:/fashion/3 (pinned:" in notes
    following = helm("install", "slipway", str(CHART),
                     "--dry-run=client")  # fmt: skip
    assert "(follows the alias:" in following.stdout.split("NOTES:", 1)[1]


def test_a_new_version_rolls_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        (deployment,) = [d for d in render(values) if d["kind"] == "Deployment"]
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum({"model.version": 3}) != checksum({"model.version": 4})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"model.version": 3, "model.mlflow.uri": "models:/x@p"}, "not both"),
        ({"model.version": "three"}, "version"),
        ({"model.version": 0}, "version"),
        ({"model.alias": "pro/duction"}, "alias"),
        ({"model.mlflow.uri": "mdoels:/x/3"}, "uri"),
        (
            {"model.source": "pvc", "model.pvc.claimName": "m", "drift.enabled": True},
            "drift.reference is required when model.source is pvc",
        ),
    ],
)
def test_mistakes_are_refused(values: dict[str, Any], message: str) -> None:
    result = template(values=values, check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert message in result.stderr, result.stderr
