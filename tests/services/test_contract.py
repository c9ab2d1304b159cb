"""The OpenAPI contract: schemathesis (every check, every operation) against the live service.

The service runs as a process with a staging model and a bearer token, so the generated
requests meet real model names and versions (not only 404s) and the auth checks have work.
A fixed seed keeps a failure reproducible: the JSON report and the output name the failing case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.inference.middleware import UNCOUNTED_ROUTES
from slipway.procs import ServerProcess
from tests.services.inference_helpers import inference_server, metric_value

pytestmark = pytest.mark.slow

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
SEED = 20260101
TOKEN = "contract-token"
MODEL = "fashion"
# Operations left out of the run: none.
EXCLUDED: tuple[str, ...] = ()
# Routes that judge content a static schema cannot describe (a decodable image, the loaded
# model's tensor shape): for schema-valid bodies they may also answer 400, 413 or 415, never 422.
CONTENT_JUDGED = (
    "/v1/predict",
    "/v1/explain",
    "/v1/models/{name}:predict",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
)
POSITIVE_STATUSES = ["2xx", "3xx", "400", "401", "403", "404", "409", "413", "415", "429", "5xx"]


@pytest.fixture(scope="module")
def server(
    trained_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("contract")
    env = {
        "SLIPWAY_MODEL_SOURCE": str(trained_model),
        "SLIPWAY_MODEL_NAME": MODEL,
        "SLIPWAY_STAGING_SOURCE": str(trained_model),
        "SLIPWAY_RELOAD_INTERVAL_S": "0",
        "SLIPWAY_THREADS": "1",
        "SLIPWAY_AUTH_TOKEN": TOKEN,
        "SLIPWAY_PREDICTION_LOG_PATH": str(tmp / "predictions.jsonl"),
    }
    with inference_server(env, tmp / "server.log") as proc:
        proc.wait_ready()
        yield proc


def config(version: str) -> str:
    """schemathesis.toml: real identifiers most of the time, the token, content-judged routes."""
    content_judged = "|".join(p.replace("{", r"\\{").replace("}", r"\\}") for p in CONTENT_JUDGED)
    return f"""
[dictionaries.models]
values = ["{MODEL}", "{MODEL}-staging"]
[dictionaries.versions]
values = ["{version}"]

[parameters]
"path.name" = {{ dictionary = "models", probability = 0.9 }}
"path.version" = {{ dictionary = "versions", probability = 0.9 }}
"query.model" = {{ dictionary = "models", probability = 0.9 }}

[auth.openapi.bearer]
bearer = "{TOKEN}"

[[operations]]
include-path-regex = "^({content_judged})$"
checks.positive_data_acceptance.expected-statuses = {json.dumps(POSITIVE_STATUSES)}
"""


def operations(document: dict[str, Any]) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, items in document["paths"].items()
        for method in items
        if path not in EXCLUDED
    }


def test_schemathesis_finds_no_failures_on_any_operation(
    server: ServerProcess, tmp_path: Path
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    document = httpx.get(server.url + "/openapi.json").json()
    version = httpx.get(f"{server.url}/v2/models/{MODEL}", headers=auth).json()["versions"][0]
    settings = tmp_path / "schemathesis.toml"
    settings.write_text(config(version))
    report_path = tmp_path / "report.json"
    excluded = [arg for path in EXCLUDED for arg in ("--exclude-path", path)]
    command = [
        str(SCHEMATHESIS), "--config-file", str(settings),
        "run", server.url + "/openapi.json", "--checks", "all", "--seed", str(SEED),
        *excluded, "--report", "json", "--report-json-path", str(report_path),
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    output = (out.stdout + out.stderr)[-6000:]
    assert out.returncode == 0, output
    report = json.loads(report_path.read_text())
    assert report["complete"] and report["failures"] == [] and report["errors"] == [], output
    ops = report["operations"]
    assert ops["selected"] == ops["tested"] == len(operations(document)), (ops, output)
    assert set(report["phases"]) == {"examples", "coverage", "fuzzing", "stateful"}
    assert all(p["status"] in ("success", "skipped") for p in report["phases"].values())
    warnings = report["warnings"]
    assert warnings["unresolvable_reference"] == [] and warnings["missing_test_data"] == []

    # The service's own count: nothing answered 5xx; every counted route answered 2xx too.
    text = httpx.get(server.url + "/metrics").text
    assert metric_value(text, "slipway_inference_requests_total", code="5xx") == 0
    for path in {path for path in document["paths"] if path not in EXCLUDED}:
        if path in UNCOUNTED_ROUTES:
            continue
        ok = metric_value(text, "slipway_inference_requests_total", route=path, code="2xx")
        assert ok > 0, f"{path} was never answered with a 2xx"
