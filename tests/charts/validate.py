"""Offline validation of rendered objects: kubernetes-validate for core kinds, the CRD JSON
schemas in tests/schemas/crds/ for custom resources."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tests.charts.render import REPO

SCHEMAS = REPO / "tests" / "schemas"
KUBERNETES_VALIDATE = Path(sys.executable).with_name("kubernetes-validate")


class ManifestLoader(yaml.SafeLoader):
    """SafeLoader that reads a bare `=` (kustomize writes `matchType: =`) as a string, not as
    YAML 1.1's `value` tag."""


ManifestLoader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_scalar)


def load_manifests(text: str) -> list[dict[str, Any]]:
    """The objects of a manifest stream, empty documents dropped."""
    return [doc for doc in yaml.load_all(text, Loader=ManifestLoader) if doc]


def crd_schema_path(doc: dict[str, Any]) -> Path | None:
    """Schema file of a custom resource (`crds/<group>/<kind>_<version>.json`), if one is kept."""
    group, _, version = doc["apiVersion"].rpartition("/")
    if not group:
        return None
    path = SCHEMAS / "crds" / group / f"{doc['kind'].lower()}_{version}.json"
    return path if path.is_file() else None


@cache
def _validator(path: Path) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(path.read_text()))


def crd_errors(doc: dict[str, Any]) -> list[str]:
    """Schema violations of one custom resource; raises if no schema is kept for its kind."""
    path = crd_schema_path(doc)
    if path is None:
        raise LookupError(f"no CRD schema for {doc['apiVersion']} {doc['kind']}")
    return [
        f"{doc['kind']}/{doc['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}"
        for e in _validator(path).iter_errors(doc)
    ]


def kubernetes_validate(docs: list[dict[str, Any]], kube_version: str, workdir: Path) -> str:
    """Run `kubernetes-validate --strict` on the objects; return its output, fail on errors.

    Custom resources only draw a warning from it; they are checked with `crd_errors`.
    """
    path = workdir / f"objects-{kube_version}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    result = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "-k", kube_version, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output
