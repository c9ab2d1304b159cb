"""`slipway serve`: every option is a field of the service's `Settings`, described by it."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from services.inference.settings import Settings
from slipway.cli import app
from slipway.cli.serve import ALIASES, serve_cmd
from tests.helpers import run_cli


def test_every_option_is_named_after_a_settings_field() -> None:
    options = set(inspect.signature(serve_cmd).parameters) - {"sets"}
    assert options <= set(Settings.model_fields), options - set(Settings.model_fields)
    assert set(ALIASES) <= options  # each alias target is a field the command has an option for


def test_help_texts_are_the_field_descriptions() -> None:
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    with command.make_context("serve", []) as ctx:
        command.get_help(ctx)
    helps = {param.name: param.help for param in command.params}
    for name in set(helps) - {"sets", "help"}:
        assert helps[name] == Settings.model_fields[name].description, name
    spellings = {opt for param in command.params for opt in param.opts}
    assert {"--model", "--tracking-uri", "--host", "--port", "--prediction-log"} <= spellings


def test_options_and_set_become_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[Any] = []
    monkeypatch.setattr("services.inference.server.serve", served.append)
    monkeypatch.setenv("SLIPWAY_MAX_QUEUE", "5")
    monkeypatch.setenv("SLIPWAY_THREADS", "3")
    args = ["serve", "--model", "m", "--tracking-uri", "sqlite:///t.db", "--port", "9"]
    args += ["--prediction-log", "p.jsonl", "--set", "max_queue=7", "--set", "fault-injection=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (settings,) = served
    assert (settings.model_source, settings.mlflow_tracking_uri) == ("m", "sqlite:///t.db")
    assert (settings.port, settings.prediction_log_path) == (9, "p.jsonl")
    assert (settings.max_queue, settings.fault_injection, settings.threads) == (7, True, 3)
    assert "http://127.0.0.1:9/v1/predict" in result.output


def test_an_unknown_field_is_one_error_with_close_matches() -> None:
    result = run_cli("serve", "--set", "max_bach_size=3")
    assert result.returncode == 2
    assert "max_bach_size is not a serving setting; did you mean max_batch_size" in result.stderr
    assert "Traceback" not in result.stderr
