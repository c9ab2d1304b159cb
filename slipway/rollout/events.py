"""A Kubernetes Event per rollout decision, best effort, only when running inside a cluster.

The Event is attached to the pod running the controller (`POD_NAME`/namespace from the
downward API or the service account), so `kubectl get events` and the CronJob's pod show it.
It is one authenticated POST to the API server with the pod's service account, written with
the standard library: the official client would add about 126 MB to the serving image, which
runs the controller, for this one call.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from slipway.rollout.decision import RolloutDecision

log = logging.getLogger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
REASONS = {"promote": "CandidatePromoted", "rollback": "CandidateRolledBack"}
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Cluster:
    """Where and as whom the pod reaches the API server."""

    api: str  # https://host:port
    token: str
    namespace: str
    ca_file: Path | None = None

    @classmethod
    def in_cluster(cls, account: Path = SERVICE_ACCOUNT) -> Cluster | None:
        """The pod's own API server and service account; None outside a cluster (the same
        test as the official client: the service variables and the token file)."""
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        token_file = account / "token"
        if not host or not token_file.is_file():
            return None
        namespace_file = account / "namespace"
        namespace = namespace_file.read_text().strip() if namespace_file.is_file() else "default"
        host = f"[{host}]" if ":" in host else host  # an IPv6 service address
        ca_file = account / "ca.crt"
        return cls(
            api=f"https://{host}:{port}",
            token=token_file.read_text().strip(),
            namespace=namespace,
            ca_file=ca_file if ca_file.is_file() else None,
        )

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST JSON to the API server; the created object, or raises."""
        request = urllib.request.Request(
            self.api + path,
            data=json.dumps(body).encode(),
            method="POST",
            headers={
                "Authorization": f"Bearer {self.token}",
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        context = None
        if self.api.startswith("https://"):
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        with urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context) as response:
            return json.loads(response.read() or b"{}")


def event_body(name: str, decision: RolloutDecision, pod: str, namespace: str) -> dict[str, Any]:
    """The core/v1 Event of one decision, attached to the controller's pod."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{pod or 'slipway-rollout'}.rollout."},
        "involvedObject": {"kind": "Pod", "name": pod, "namespace": namespace},
        "reason": REASONS[decision.action],
        "message": f"{name} v{decision.version}: {decision.reason}"[:1024],
        "type": "Normal" if decision.action == "promote" else "Warning",
        "source": {"component": "slipway-rollout"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def record_event(
    name: str,
    decision: RolloutDecision,
    pod: str,
    namespace: str = "",
    cluster: Cluster | None = None,
) -> bool:
    """Create the Event; False (with a log line) when not in a cluster or the API refused.
    `cluster` defaults to the pod's own (`Cluster.in_cluster`)."""
    if decision.action not in REASONS:
        return False
    cluster = cluster or Cluster.in_cluster()
    if cluster is None:
        log.info("not running in a cluster: no Kubernetes Event, the log line is the record")
        return False
    namespace = namespace or cluster.namespace
    body = event_body(name, decision, pod, namespace)
    try:
        cluster.post(f"/api/v1/namespaces/{namespace}/events", body)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        # Best effort: the decision is already in MLflow and the log.
        log.warning("could not create a Kubernetes Event: %s", exc)
        return False
    return True
