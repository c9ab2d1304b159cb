"""values.yaml is documented key by key and values.schema.json rejects mistakes."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml

from tests.charts.render import CHART, SCENARIOS, scenario_values, template

VALUES = CHART / "values.yaml"
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def test_values_start_with_the_schema_modeline() -> None:
    first = VALUES.read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=values.schema.json"


def undocumented_keys(text: str) -> list[str]:
    """Keys of a values file that neither carry a `# --` comment nor sit under one that does
    (a documented key may hold an example mapping, e.g. `resources`)."""
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    pending = False
    missing = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = True
            continue
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        stack = [entry for entry in stack if entry[0] < indent]
        match = re.match(r"^\s*([A-Za-z][\w.-]*):", line)
        if match and not stripped.startswith("- "):
            inherited = any(documented for _, _, documented in stack)
            path = ".".join([key for _, key, _ in stack] + [match.group(1)])
            is_section = stripped.endswith(":")
            if not (pending or inherited or is_section):
                missing.append(path)
            stack.append((indent, match.group(1), pending or inherited))
        pending = False
    return missing


def test_every_key_is_documented() -> None:
    assert not undocumented_keys(VALUES.read_text())
    assert undocumented_keys("a:\n  # -- b\n  b: 1\n  c: 2\n") == ["a.c"]


@pytest.mark.parametrize("scenario", ["defaults", *SCENARIOS])
def test_defaults_and_scenarios_satisfy_the_schema(scenario: str) -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    values = yaml.safe_load(VALUES.read_text())
    overrides = yaml.safe_load(scenario_values(scenario).read_text()) or {}

    def merge(base: dict, extra: dict) -> dict:
        out = dict(base)
        for key, value in extra.items():
            both = isinstance(value, dict) and isinstance(out.get(key), dict)
            out[key] = merge(out[key], value) if both else value
        return out

    jsonschema.validate(merge(values, overrides), SCHEMA)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCont": 3}, "replicaCont"),
        ({"server.maxBatchsize": 32}, "maxBatchsize"),
        ({"prometheusRule.params.errorRatioFr": "1m"}, "errorRatioFr"),
        ({"autoscaling.customMetric.targetAverageValue": "eight"}, "targetAverageValue"),
        ({"server.backend": "tensorrt"}, "backend"),
        ({"model.source": "s3"}, "source"),
        ({"prometheusRule.params.errorRatioFor": "five minutes"}, "errorRatioFor"),
        ({"server.port": 70000}, "port"),
    ],
)
def test_schema_rejects_mistakes(values: dict, message: str) -> None:
    result = template(values=values, check=False)
    assert result.returncode != 0, f"{values} was accepted"
    assert "schema" in result.stderr.lower() and message in result.stderr, result.stderr
