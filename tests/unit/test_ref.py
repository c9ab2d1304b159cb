"""One model reference: every form parses the same in the CLI, the service and the drift
monitor, and every malformed reference is the same one error."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from services.drift.reference import reference_ref
from services.drift.settings import Settings as DriftSettings
from services.environment import load_settings
from services.inference.settings import Settings
from services.inference.source import ModelSource
from slipway.cli import app
from slipway.errors import ConfigError
from slipway.registry.ref import ModelRef, ModelRefError, RefKind, version_model_id
from tests.helpers import run_cli

MODEL_ID = "m-0123456789abcdef0123456789abcdef"
FORMS = [
    ("models:/fashion@production", ModelRef(RefKind.ALIAS, name="fashion", alias="production")),
    ("models:/fashion/3", ModelRef(RefKind.VERSION, name="fashion", version="3")),
    ("models:/fashion", ModelRef(RefKind.LATEST, name="fashion")),
    ("models:/fashion/latest", ModelRef(RefKind.LATEST, name="fashion")),
    (f"models:/{MODEL_ID}", ModelRef(RefKind.LOGGED_MODEL, model_id=MODEL_ID)),
    ("runs:/0a1b2c/model", ModelRef(RefKind.RUN, run_id="0a1b2c", path="model")),
    ("/srv/models/demo", ModelRef(RefKind.PATH, path="/srv/models/demo")),
    (".slipway/models/demo", ModelRef(RefKind.PATH, path=".slipway/models/demo")),
    ("file:///srv/models/demo", ModelRef(RefKind.PATH, path="/srv/models/demo")),
    ("s3://bucket/models/demo", ModelRef(RefKind.URI, path="s3://bucket/models/demo")),
    ("gs://bucket/demo", ModelRef(RefKind.URI, path="gs://bucket/demo")),
]
MALFORMED = [
    "",
    "models:/",
    "models:/@production",
    "models:/fashion@",
    "models:/fashion@prod/3",
    "models:/fashion/three",
    "models:/fashion/0",
    "models:/fashion/3/4",
    "runs:/",
    "runs:/0a1b2c",
    "mdoels:/fashion/3",
    "file://host/srv/models",
]


def _served_settings(monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    """The Settings `slipway serve ARGS` would serve with (the server itself not started)."""
    served: list[Any] = []
    monkeypatch.setattr("services.inference.server.serve", served.append)
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 0, result.output
    return served[0]


def _drift_settings(monkeypatch: pytest.MonkeyPatch, reference: str) -> Any:
    """The Settings `slipway drift serve --reference REFERENCE` would run the monitor with."""
    started: list[Any] = []
    monkeypatch.setattr("services.drift.server.serve", started.append)
    result = CliRunner().invoke(app, ["drift", "serve", "--reference", reference])
    assert result.exit_code == 0, result.output
    return started[0]


@pytest.mark.parametrize(("text", "expected"), FORMS, ids=[text for text, _ in FORMS])
def test_every_form_parses_the_same_in_cli_service_and_drift(
    text: str, expected: ModelRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ModelRef.parse(text) == expected
    served = _served_settings(monkeypatch, "--model", text, "--staging-source", text)
    assert ModelSource(served.model_source).ref == expected
    assert ModelSource(served.staging_source).ref == expected
    assert reference_ref(_drift_settings(monkeypatch, text).reference) == expected
    assert reference_ref(DriftSettings(reference=text).reference) == expected
    assert ModelRef.parse(str(expected)) == expected  # the canonical form reads back
    if expected.is_registry:  # `slipway registry show NAME@alias` etc.
        assert ModelRef.parse(expected.short, registered=True) == expected


def test_canonical_forms() -> None:
    assert str(ModelRef.parse("models:/fashion/latest")) == "models:/fashion"
    assert str(ModelRef.parse("models:/fashion/007")) == "models:/fashion/7"
    assert str(ModelRef.parse("file:///srv/a%20b")) == "/srv/a b"
    assert ModelRef.parse("fashion@staging", registered=True).short == "fashion@staging"
    assert ModelRef.parse("s3://b/m", registered=True).kind is RefKind.URI
    follows = {text: ModelRef.parse(text).follows for text, _ in FORMS}
    assert [t for t, f in follows.items() if not f] == [
        "models:/fashion/3",
        f"models:/{MODEL_ID}",
        "runs:/0a1b2c/model",
    ]


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_reference_is_the_one_error_everywhere(text: str) -> None:
    with pytest.raises(ModelRefError) as caught:
        ModelRef.parse(text)
    message = str(caught.value)
    assert message.startswith(f"malformed model reference {text!r}: ")
    assert message.endswith("or a file:// or object-store URI")
    if not text:
        return  # an empty MODEL_SOURCE is a setting left out, not a reference
    for cls, field in ((Settings, "model_source"), (DriftSettings, "reference")):
        with pytest.raises(ConfigError) as refused:
            load_settings(cls, **{field: text})
        assert message in str(refused.value)
        assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--model", "models:/fashion/three"],
        ["drift", "check", "--reference", "models:/fashion/three", "--log", "p.jsonl"],
        ["registry", "show", "fashion/three"],
    ],
    ids=["serve", "drift", "registry"],
)
def test_the_cli_prints_the_one_error_on_one_line(args: list[str]) -> None:
    result = run_cli(*args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "malformed model reference" in result.stderr
    assert "a version is a number from 1, or 'latest'" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_version_names_its_logged_model_through_its_source() -> None:
    class Version:
        source = f"models:/{MODEL_ID}"
        model_id = None

    assert version_model_id(Version()) == MODEL_ID
    Version.source = "file:///artifacts/model"
    assert version_model_id(Version()) == ""
