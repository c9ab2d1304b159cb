"""NetworkPolicy ingress semantics, evaluated in Python: does a rendered policy admit a pod of a
given namespace to a port? Follows the Kubernetes API reference (NetworkPolicySpec,
NetworkPolicyPeer, LabelSelector), for pod sources; `ipBlock` peers admit no pod here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server (>= 1.21)


@dataclass(frozen=True)
class Source:
    """A pod that opens a connection: its namespace (with the namespace's labels) and labels."""

    namespace: str
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)

    def all_namespace_labels(self) -> dict[str, str]:
        return {**self.namespace_labels, NAME_LABEL: self.namespace}


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector: every matchLabels pair and every matchExpression; `{}` matches all."""
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
        if operator not in {"In", "NotIn", "Exists", "DoesNotExist"}:
            raise ValueError(f"unknown operator {operator}")
    return True


def peer_admits(peer: Mapping[str, Any], policy_namespace: str, source: Source) -> bool:
    """One NetworkPolicyPeer. A podSelector alone means pods of the policy's own namespace; a
    namespaceSelector alone, every pod of the matching namespaces; both, the matching pods of
    the matching namespaces."""
    if "ipBlock" in peer:
        return False
    namespaces, pods = peer.get("namespaceSelector"), peer.get("podSelector")
    if namespaces is None and pods is None:
        raise ValueError(f"empty NetworkPolicyPeer {peer}")
    if namespaces is None:
        in_namespace = source.namespace == policy_namespace
    else:
        in_namespace = selector_matches(namespaces, source.all_namespace_labels())
    return in_namespace and (pods is None or selector_matches(pods, source.pod_labels))


def admits(policy: Mapping[str, Any], source: Source, port: str | int) -> bool:
    """Whether the policy lets `source` connect to `port` (a number or a port name) of the pods
    it selects. A rule without `ports` covers every port, one without `from` every source."""
    spec = policy["spec"]
    if "Ingress" not in spec.get("policyTypes", ["Ingress"]):
        return True
    namespace = policy["metadata"]["namespace"]
    for rule in spec.get("ingress") or []:
        ports = rule.get("ports")
        if ports and not any(entry.get("port") in (port, None) for entry in ports):
            continue
        peers = rule.get("from")
        if not peers or any(peer_admits(peer, namespace, source) for peer in peers):
            return True
    return False
