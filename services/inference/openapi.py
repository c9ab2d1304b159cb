"""The OpenAPI document as the service behaves: FastAPI's, with three corrections.

Request bodies a route declares by hand (`openapi_extra`, e.g. a pydantic model's
`model_json_schema()`) carry their sub-schemas in `$defs` and refer to them as `#/$defs/Name`.
Inside an OpenAPI document such a reference points at the document's root, where nothing is, so
clients and checkers cannot resolve it. Here each `$defs` entry becomes
`#/components/schemas/Name` and its references are rewritten. FastAPI's own 422 shape is
replaced by the `{"error": ...}` body the service answers with, and the bearer scheme is
declared only when the service has a token. Built once per app, on first use.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

DEFS_PREFIX = "#/$defs/"
COMPONENTS_PREFIX = "#/components/schemas/"
ERROR_BODY = "ErrorBody"


def hoist_defs(document: dict[str, Any]) -> dict[str, Any]:
    """Move every `$defs` of `document` into `components.schemas`; rewrite the references.

    Innermost `$defs` first, so each reference is rewritten by the block it belongs to. Two
    different schemas under one name are a `ValueError`: one of them needs another title.
    """
    components: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})

    def visit(node: Any) -> None:
        if isinstance(node, list):
            for item in node:
                visit(item)
            return
        if not isinstance(node, dict):
            return
        for value in list(node.values()):
            visit(value)
        defs = node.pop("$defs", None)
        if not isinstance(defs, dict):
            return
        _rewrite(node, set(defs))
        _rewrite(defs, set(defs))
        for name, schema in defs.items():
            if components.setdefault(name, schema) != schema:
                raise ValueError(f"two different OpenAPI schemas are named {name!r}")

    visit(document.get("paths", {}))
    for schema in list(components.values()):
        visit(schema)
    return document


def _rewrite(node: Any, names: set[str]) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite(item, names)
    elif isinstance(node, dict):
        ref = node.get("$ref")
        if (
            isinstance(ref, str)
            and ref.startswith(DEFS_PREFIX)
            and ref[len(DEFS_PREFIX) :] in names
        ):
            node["$ref"] = COMPONENTS_PREFIX + ref[len(DEFS_PREFIX) :]
        for value in node.values():
            _rewrite(value, names)


def validation_errors_as_error_body(document: dict[str, Any]) -> dict[str, Any]:
    """Document 422s as they are answered: `{"error": ...}`, not FastAPI's `{"detail": [...]}`.

    The service maps request validation errors to its one error shape (`errors.py`); FastAPI
    still declares its own shape for every route with parameters.
    """
    fastapi_shape = COMPONENTS_PREFIX + "HTTPValidationError"
    schemas = document.get("components", {}).get("schemas", {})
    if ERROR_BODY not in schemas:
        return document
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422", {})
            schema = response.get("content", {}).get("application/json", {}).get("schema", {})
            if schema.get("$ref") == fastapi_shape:
                schema["$ref"] = COMPONENTS_PREFIX + ERROR_BODY
    if fastapi_shape not in json.dumps(document.get("paths", {})):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


def bearer_security(document: dict[str, Any], enabled: bool) -> dict[str, Any]:
    """With a token configured, every guarded operation documents its 401; without one,
    nothing is guarded and the document says so (no security requirements at all)."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if "security" not in operation:
                continue
            if not enabled:
                del operation["security"]
                continue
            operation.setdefault("responses", {}).setdefault(
                "401",
                {
                    "description": "Missing or wrong bearer token.",
                    "content": {
                        "application/json": {"schema": {"$ref": COMPONENTS_PREFIX + ERROR_BODY}}
                    },
                },
            )
    if not enabled:
        components = document.get("components", {})
        components.pop("securitySchemes", None)
    return document


def openapi_builder(app: FastAPI, auth: bool) -> Callable[[], dict[str, Any]]:
    """`app.openapi`: FastAPI's document with `$defs` hoisted, 422s as `ErrorBody` and the
    bearer scheme only when `auth` (a token is configured); built on first use."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = hoist_defs(FastAPI.openapi(app))
            document = validation_errors_as_error_body(document)
            app.openapi_schema = bearer_security(document, auth)
        return app.openapi_schema

    return build
