"""A Kubernetes Event per rollout decision, best effort, only when running inside a cluster.

The Event is attached to the pod running the controller (`POD_NAME`/namespace from the
downward API or the service account), so `kubectl get events` and the CronJob's pod show it.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

from slipway.rollout.decision import RolloutDecision

log = logging.getLogger(__name__)

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
REASONS = {"promote": "CandidatePromoted", "rollback": "CandidateRolledBack"}


def record_event(name: str, decision: RolloutDecision, pod: str, namespace: str = "") -> bool:
    """Create the Event; False (with a log line) when not in a cluster or the API refused."""
    if decision.action not in REASONS:
        return False
    try:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException
    except ImportError:
        log.info("kubernetes client not installed: no Kubernetes Event")
        return False
    try:
        config.load_incluster_config()
    except ConfigException:
        log.info("not running in a cluster: no Kubernetes Event, the log line is the record")
        return False
    namespace = namespace or _namespace()
    now = datetime.now(UTC)
    event = client.CoreV1Event(
        metadata=client.V1ObjectMeta(generate_name=f"{pod or 'slipway-rollout'}.rollout."),
        involved_object=client.V1ObjectReference(kind="Pod", name=pod, namespace=namespace),
        reason=REASONS[decision.action],
        message=f"{name} v{decision.version}: {decision.reason}"[:1024],
        type="Normal" if decision.action == "promote" else "Warning",
        source=client.V1EventSource(component="slipway-rollout"),
        first_timestamp=now,
        last_timestamp=now,
        count=1,
    )
    try:
        client.CoreV1Api().create_namespaced_event(namespace, event)
    except Exception as exc:  # best effort: the decision is already in MLflow and the log
        log.warning("could not create a Kubernetes Event: %s", exc)
        return False
    return True


def _namespace() -> str:
    try:
        return NAMESPACE_FILE.read_text().strip()
    except OSError:
        return "default"
