"""Carry out a rollout decision on the MLflow registry, which every inference pod follows.

promote:  `production` -> the candidate version, `staging` deleted (pods load it as production
          and stop serving a candidate);
rollback: `staging` deleted (pods send all traffic to production), the version tagged
          `slipway.rollout=rejected` with the reason.
Each decision is also an MLflow run with the measured values, and a log line.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from slipway.registry.client import PRODUCTION, STAGING, Registry
from slipway.rollout.decision import Limits, RolloutDecision
from slipway.rollout.measure import Measurement

log = logging.getLogger(__name__)

TAG = "slipway.rollout"
REASON_TAG = "slipway.rollout.reason"
AT_TAG = "slipway.rollout.at"
OUTCOME = {"promote": "promoted", "rollback": "rejected"}


def candidate_version(registry: Registry, name: str) -> str | None:
    """The version the `staging` alias names now, or None (no candidate)."""
    version = registry.alias_version(name, STAGING)
    return None if version is None else str(version.version)


def apply(
    registry: Registry,
    name: str,
    decision: RolloutDecision,
    measurement: Measurement,
    limits: Limits,
    experiment: str,
) -> str | None:
    """Act on a promote or rollback (a wait changes nothing); the MLflow run id of the record.

    The alias is re-read first: if another actor moved `staging` since the measurement, the
    decision is about a version that is no longer the candidate and nothing is done.
    """
    if decision.action == "wait":
        return None
    if candidate_version(registry, name) != decision.version:
        log.warning("%s: staging no longer names v%s; decision dropped", name, decision.version)
        return None
    reason = f"rollout: {decision.reason}"
    if decision.action == "promote":
        registry.promote(name, decision.version, reason)
    registry.client.delete_registered_model_alias(name, STAGING)
    outcome = OUTCOME[decision.action]
    at = datetime.now(UTC).isoformat(timespec="seconds")
    registry.set_tags(
        name, decision.version, {TAG: outcome, REASON_TAG: decision.reason[:5000], AT_TAG: at}
    )
    run_id = record_run(registry, name, decision, measurement, limits, experiment)
    target = f"{PRODUCTION} -> v{decision.version}" if outcome == "promoted" else "staging removed"
    log.info("%s v%s %s (%s): %s", name, decision.version, outcome, target, decision.reason)
    return run_id


def record_run(
    registry: Registry,
    name: str,
    decision: RolloutDecision,
    measurement: Measurement,
    limits: Limits,
    experiment: str,
) -> str:
    """An MLflow run holding the criteria (params), the measured values (metrics), the outcome."""
    client = registry.client
    tags: dict[str, Any] = {
        "mlflow.runName": f"rollout {name} v{decision.version}: {OUTCOME[decision.action]}",
        TAG: OUTCOME[decision.action],
        REASON_TAG: decision.reason[:5000],
        "slipway.model": name,
        "slipway.version": decision.version,
    }
    run = client.create_run(registry.experiment_id(experiment), tags=tags)
    run_id = run.info.run_id
    for key, value in asdict(limits).items():
        client.log_param(run_id, key, value)
    for key, value in measurement.metrics().items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id)
    return run_id
