"""One rollout step: find the candidate, measure it, decide, act, record."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from slipway.prometheus import PrometheusClient
from slipway.registry.client import Registry
from slipway.rollout.apply import apply, candidate_version
from slipway.rollout.decision import Limits, RolloutDecision, decide
from slipway.rollout.events import record_event
from slipway.rollout.measure import Measurement, Queries, measure

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    """What one step saw and did (`decision` is None when there was no candidate)."""

    decision: RolloutDecision | None
    measurement: Measurement | None = None
    run_id: str | None = None


@dataclass
class Controller:
    """Everything a rollout step needs; `dry_run` decides and logs but changes nothing."""

    registry: Registry
    prometheus: PrometheusClient
    name: str
    limits: Limits
    experiment: str
    selector: str = ""
    pod: str = ""
    dry_run: bool = False

    def step(self) -> Step:
        version = candidate_version(self.registry, self.name)
        if version is None:
            log.info("%s: no candidate (no staging alias); nothing to judge", self.name)
            return Step(None)
        measured = measure(self.prometheus, Queries(self.name, self.limits.window, self.selector))
        decision = decide(version, measured, self.limits)
        log.info(
            "%s v%s: %s (%s)", self.name, version, decision.action, decision.reason or "no data"
        )
        if self.dry_run or decision.action == "wait":
            return Step(decision, measured)
        run_id = apply(self.registry, self.name, decision, measured, self.limits, self.experiment)
        if run_id is not None:
            record_event(self.name, decision, self.pod)
        return Step(decision, measured, run_id)
