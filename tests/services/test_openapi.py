"""The OpenAPI document resolves and says what the service does (fast; schemathesis is slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from services.inference import create_app
from services.inference.kserve_v1 import EXAMPLE_PNG_B64
from services.inference.openapi import hoist_defs
from services.inference.routes_ops import PROMETHEUS_TEXT
from tests.services.inference_helpers import ready_client, settings_for

PROBES = {"/healthz", "/readyz", "/metrics", "/v2/health/live", "/v2/health/ready"}


def _document(**settings: Any) -> dict[str, Any]:
    return create_app(settings_for("unused-model-folder", **settings)).openapi()


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for p, items in document["paths"].items() for m, op in items.items()]


def _body_validator(document: dict[str, Any], path: str) -> jsonschema.Draft202012Validator:
    """A validator of one JSON request body, its `#/components/...` refs read from the document."""
    content = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    registry = Registry().with_resource("urn:openapi", Resource(document, DRAFT202012))
    text = json.dumps(content["schema"]).replace('"#/components/', '"urn:openapi#/components/')
    return jsonschema.Draft202012Validator(json.loads(text), registry=registry)


def test_every_reference_resolves_and_no_defs_are_left() -> None:
    document = _document()
    assert {"/v1/models", "/v1/models/{name}", "/v1/models/{name}:predict"} <= set(
        document["paths"]
    )
    assert "$defs" not in str(document)
    for ref in _refs(document):
        assert ref.startswith("#/components/schemas/"), ref
        assert ref.rsplit("/", 1)[1] in document["components"]["schemas"], ref


def test_responses_are_documented_as_answered() -> None:
    document = _document()
    metrics = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == [PROMETHEUS_TEXT] == ["text/plain; version=0.0.4; charset=utf-8"]
    for method, path, operation in _operations(document):
        error = operation["responses"].get("422")
        if error:
            schema = error["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    readyz = document["paths"]["/readyz"]["get"]["responses"]
    assert {"200", "503"} <= set(readyz)
    assert readyz["503"]["content"]["application/json"]["schema"]["$ref"].endswith("/Readiness")


def test_served_metrics_content_type_is_the_documented_one(trained_model: Path) -> None:
    with ready_client(settings_for(trained_model)) as client:
        response = client.get("/metrics")
        assert response.headers["content-type"] == PROMETHEUS_TEXT
        assert "# TYPE slipway_inference_requests_total counter" in response.text


def test_multipart_body_needs_a_file() -> None:
    body = _document()["paths"]["/v1/predict"]["post"]["requestBody"]
    schema = body["content"]["multipart/form-data"]["schema"]
    assert body["required"] and schema["required"] == ["files"]
    validator = jsonschema.Draft202012Validator(schema)
    assert not validator.is_valid({}) and not validator.is_valid({"files": []})
    assert validator.is_valid({"files": ["<bytes>"]})


def test_kserve_v1_body_schema_agrees_with_the_parser() -> None:
    validator = _body_validator(_document(), "/v1/models/{name}:predict")
    image = {"image": {"b64": EXAMPLE_PNG_B64}}
    tensor = [[[0.0, 1.0]]]
    for body in (
        {
            "instances": [
                image,
                EXAMPLE_PNG_B64,
                {"b64": EXAMPLE_PNG_B64},
                {"data": EXAMPLE_PNG_B64},
            ]
        },
        {"inputs": [tensor]},
        {"instances": [{"image": EXAMPLE_PNG_B64, "key": "1"}]},
    ):
        assert validator.is_valid(body), body
    for body in (
        {},
        {"instances": []},
        {"instances": [image], "inputs": [image]},
        {"instances": [1]},
        {"instances": [{"key": "1"}]},
        {"instances": [{"image": EXAMPLE_PNG_B64, "b64": EXAMPLE_PNG_B64}]},
        {"instances": [[[["0"]]]]},
    ):
        assert not validator.is_valid(body), body


@pytest.mark.parametrize("token", ["", "s3cret"])
def test_bearer_scheme_only_when_a_token_is_configured(token: str) -> None:
    document = _document(auth_token=token)
    schemes = document.get("components", {}).get("securitySchemes", {})
    assert schemes == ({"bearer": schemes.get("bearer")} if token else {})
    for method, path, operation in _operations(document):
        guarded = path not in PROBES
        assert ("security" in operation) == (guarded and bool(token)), (method, path)
        if token and guarded:
            assert operation["security"] == [{"bearer": []}]
            assert "401" in operation["responses"], (method, path)


def test_hoisting_rewrites_nested_blocks_and_refuses_two_schemas_under_one_name() -> None:
    inner = {"$defs": {"Leaf": {"type": "integer"}}, "items": {"$ref": "#/$defs/Leaf"}}
    body = {"$defs": {"Node": inner}, "properties": {"n": {"$ref": "#/$defs/Node"}}}
    document = {"paths": {"/x": {"post": {"requestBody": {"schema": body}}}}}
    hoisted = hoist_defs(document)
    schemas = hoisted["components"]["schemas"]
    assert schemas["Leaf"] == {"type": "integer"}
    assert schemas["Node"] == {"items": {"$ref": "#/components/schemas/Leaf"}}
    assert body == {"properties": {"n": {"$ref": "#/components/schemas/Node"}}}
    clash = {"paths": {"/y": {"get": {"schema": {"$defs": {"Leaf": {"type": "string"}}}}}}}
    clash["components"] = {"schemas": {"Leaf": {"type": "integer"}}}
    with pytest.raises(ValueError, match="Leaf"):
        hoist_defs(clash)
