"""Look-ups in rendered chart objects, shared by the chart tests."""

from __future__ import annotations

from typing import Any

from tests.charts.render import RELEASE, render_docs, template

FULLNAME = f"{RELEASE}-inference"
DRIFT = f"{FULLNAME}-drift"


def render(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The objects of the chart rendered with `values` (nested or dotted keys)."""
    return render_docs(template(values=values).stdout)


def find(docs: list[dict[str, Any]], kind: str, name: str = FULLNAME) -> dict[str, Any]:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def kinds(docs: list[dict[str, Any]]) -> set[str]:
    return {d["kind"] for d in docs}


def env_of(docs: list[dict[str, Any]], configmap: str = FULLNAME) -> dict[str, str]:
    """The data of a ConfigMap: what its pods receive through `envFrom`."""
    return find(docs, "ConfigMap", configmap)["data"]


def container_env(docs: list[dict[str, Any]], deployment: str = FULLNAME) -> list[dict[str, Any]]:
    """The explicit `env` list of a Deployment's only container."""
    (container,) = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return container.get("env", [])


def pod_environment(
    docs: list[dict[str, Any]], deployment: str = FULLNAME, pod_name: str = "pod-0"
) -> dict[str, str]:
    """The environment the kubelet would give a pod: the ConfigMap's `envFrom`, then `env`
    (which wins), with `$(VAR)` expanded from earlier entries and `metadata.name` = `pod_name`.
    Secret references are left out."""
    environment = dict(env_of(docs, deployment))
    for entry in container_env(docs, deployment):
        if "value" in entry:
            value = entry["value"]
            for name, known in environment.items():
                value = value.replace(f"$({name})", known)
            environment[entry["name"]] = value
        elif entry["valueFrom"].get("fieldRef", {}).get("fieldPath") == "metadata.name":
            environment[entry["name"]] = pod_name
    return environment
