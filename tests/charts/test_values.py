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


def key_docs(text: str) -> tuple[dict[str, str], list[str]]:
    """`# --` comments of a values file by dotted key, and the keys that neither carry one nor
    sit under one that does (a documented key may hold an example mapping, e.g. `resources`)."""
    stack: list[tuple[int, str, bool]] = []  # (indent, key, documented)
    pending: str | None = None
    docs: dict[str, str] = {}
    missing = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# --"):
            pending = stripped.removeprefix("# --").strip()
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
            if pending is not None:
                docs[path] = pending
            elif not (inherited or is_section):
                missing.append(path)
            stack.append((indent, match.group(1), pending is not None or inherited))
        pending = None
    return docs, missing


def undocumented_keys(text: str) -> list[str]:
    return key_docs(text)[1]


def test_every_key_is_documented() -> None:
    assert not undocumented_keys(VALUES.read_text())
    assert undocumented_keys("a:\n  # -- b\n  b: 1\n  c: 2\n") == ["a.c"]


def test_schema_describes_every_key_as_values_yaml_does() -> None:
    """The schema's descriptions (shown by editors) are the `# --` comments, word for word."""
    docs, _ = key_docs(VALUES.read_text())
    assert len(docs) > 150
    wrong = []
    for path, text in docs.items():
        node = SCHEMA
        for part in path.split("."):
            node = node["properties"][part]
        if node.get("description") != text:
            wrong.append(f"{path}: schema {node.get('description')!r}, values.yaml {text!r}")
    assert not wrong, "\n".join(wrong)


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

    validator = jsonschema.Draft7Validator(SCHEMA)
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(merge(values, overrides))
    ]
    assert not errors, "\n".join(errors)


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
