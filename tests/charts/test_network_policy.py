"""Who the inference NetworkPolicy admits, evaluated on the rendered policy: the release
namespace, Prometheus, and with an Ingress the ingress controller, wherever the common
controllers install themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.charts.netpol import Source, admits, peer_admits, selector_matches
from tests.charts.objects import FULLNAME, find, render
from tests.charts.render import KUBE_VERSIONS, NAMESPACE
from tests.charts.validate import kubernetes_validate

# Where each controller runs when installed as its project documents (namespace, pod labels,
# extra namespace labels). A default that misses one of these times out behind it.
COMMON_CONTROLLERS: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "ingress-nginx": ("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"}, {}),
    "NGINX Ingress Controller (F5)": ("nginx-ingress", {"app": "nginx-ingress"}, {}),
    "NGINX Gateway Fabric": ("nginx-gateway", {"app.kubernetes.io/name": "nginx-gateway"}, {}),
    "MicroK8s ingress add-on": ("ingress", {"name": "nginx-ingress-microk8s"}, {}),
    "k3s Traefik, RKE2 ingress-nginx": ("kube-system", {"app.kubernetes.io/name": "traefik"}, {}),
    "Traefik (helm chart)": ("traefik", {"app.kubernetes.io/name": "traefik"}, {}),
    "HAProxy Kubernetes Ingress": ("haproxy-controller", {"run": "haproxy-ingress"}, {}),
    "Contour / Envoy": ("projectcontour", {"app.kubernetes.io/component": "envoy"}, {}),
    "Istio ingress gateway (istioctl)": ("istio-system", {"istio": "ingressgateway"}, {}),
    "Istio gateway (helm)": ("istio-ingress", {"istio": "ingress"}, {}),
    "Envoy Gateway": ("envoy-gateway-system", {"app.kubernetes.io/name": "envoy"}, {}),
    "Kong": ("kong", {"app.kubernetes.io/name": "kong"}, {}),
    "AKS application routing": ("app-routing-system", {"app": "nginx"}, {}),
    "OpenShift router": (
        "openshift-ingress",
        {"ingresscontroller.operator.openshift.io/deployment-ingresscontroller": "default"},
        {"policy-group.network.openshift.io/ingress": ""},
    ),
}
STRANGERS = [
    Source("default", {"app": "web"}),
    Source("team-a", {"app.kubernetes.io/name": "ingress-nginx"}),  # a look-alike elsewhere
    Source("monitoring", {"app.kubernetes.io/name": "grafana"}),
]
PROMETHEUS = Source("monitoring", {"app.kubernetes.io/name": "prometheus"})
NEIGHBOUR = Source(NAMESPACE, {"app": "client"})


def policy(values: dict[str, Any]) -> dict[str, Any]:
    return find(render(values), "NetworkPolicy", FULLNAME)


@pytest.fixture(scope="module")
def with_ingress() -> dict[str, Any]:
    return policy({"ingress.enabled": True})


@pytest.mark.parametrize("controller", COMMON_CONTROLLERS)
def test_ingress_on_admits_the_common_controllers(controller: str, with_ingress) -> None:
    namespace, pod_labels, namespace_labels = COMMON_CONTROLLERS[controller]
    source = Source(namespace, pod_labels, namespace_labels)
    assert admits(with_ingress, source, "http")
    assert not admits(with_ingress, source, 9090)  # only the HTTP port


@pytest.mark.parametrize("controller", COMMON_CONTROLLERS)
def test_ingress_off_admits_no_controller(controller: str) -> None:
    namespace, pod_labels, namespace_labels = COMMON_CONTROLLERS[controller]
    assert not admits(policy({}), Source(namespace, pod_labels, namespace_labels), "http")


def test_ingress_on_still_admits_the_namespace_and_prometheus_only(with_ingress) -> None:
    assert admits(with_ingress, NEIGHBOUR, "http")
    assert admits(with_ingress, PROMETHEUS, "http")
    for stranger in STRANGERS:
        assert not admits(with_ingress, stranger, "http"), stranger


def test_ingress_controller_peers_narrow_to_one_controller(render_scenario) -> None:
    """full-monitoring names ingress-nginx's pods: other controllers and other pods of that
    namespace are out, and the namespace's own pods stay in."""
    narrowed = render_scenario("full-monitoring").one("NetworkPolicy", FULLNAME)
    nginx = COMMON_CONTROLLERS["ingress-nginx"]
    assert admits(narrowed, Source(nginx[0], nginx[1]), "http")
    assert not admits(narrowed, Source("ingress-nginx", {"app": "debug"}), "http")
    assert not admits(narrowed, Source("traefik", {"app.kubernetes.io/name": "traefik"}), "http")
    assert admits(narrowed, NEIGHBOUR, "http")


def test_allowed_sources_and_the_ingress_controller_both_get_in() -> None:
    sources = [{"namespaceSelector": {"matchLabels": {"team": "apps"}}}]
    both = policy({"ingress.enabled": True, "networkPolicy.allowedSources": sources})
    assert admits(both, Source("shop", {"app": "shop"}, {"team": "apps"}), "http")
    assert admits(both, Source("traefik", {"app.kubernetes.io/name": "traefik"}), "http")
    assert not admits(both, NEIGHBOUR, "http")  # allowedSources replace the namespace default


def test_empty_ingress_controller_peers_add_nothing() -> None:
    closed = policy({"ingress.enabled": True, "networkPolicy.ingressControllerPeers": []})
    assert not admits(closed, Source("ingress-nginx"), "http")
    assert admits(closed, NEIGHBOUR, "http")


def test_policy_with_the_default_peers_is_valid(with_ingress, tmp_path: Path) -> None:
    output = kubernetes_validate([with_ingress], KUBE_VERSIONS[0], tmp_path)
    assert f"passed for resource networkpolicy/{FULLNAME}" in output, output


def test_the_evaluator_follows_the_api_semantics() -> None:
    """The Python model of NetworkPolicy is only worth its verdicts: check it on known cases."""
    labels = {"app": "a", "tier": "web"}
    assert selector_matches({}, labels)
    assert selector_matches({"matchExpressions": [{"key": "x", "operator": "NotIn",
                                                   "values": ["1"]}]}, labels)  # fmt: skip
    assert not selector_matches({"matchExpressions": [{"key": "x", "operator": "Exists"}]}, labels)
    assert not selector_matches({"matchLabels": {"app": "a", "tier": "db"}}, labels)
    pods_only = {"podSelector": {"matchLabels": {"app": "a"}}}
    assert peer_admits(pods_only, "ns", Source("ns", labels))
    assert not peer_admits(pods_only, "ns", Source("other", labels))  # own namespace only
    both = {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "b"}}}
    assert not peer_admits(both, "ns", Source("other", labels))
    assert not peer_admits({"ipBlock": {"cidr": "0.0.0.0/0"}}, "ns", Source("ns", labels))
    open_rule = {"metadata": {"namespace": "ns"}, "spec": {"policyTypes": ["Ingress"],
                                                           "ingress": [{}]}}  # fmt: skip
    assert admits(open_rule, Source("any"), 1234)
    closed = {"metadata": {"namespace": "ns"}, "spec": {"policyTypes": ["Ingress"]}}
    assert not admits(closed, Source("ns"), 1234)
