"""The traffic story the live tests tell, phase by phase, with what the webhook saw after each.

normal -> bad requests (4xx) -> server errors (fault) -> recover -> stalls (fault) -> recover
-> overload (tiny queue, many clients) -> recover -> inverted images -> normal images.
Every phase is bounded by a request count and a deadline; a deadline missed fails with the
phase's name and the processes' logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.e2e.processes import wait_for
from tests.e2e.stack import Stack
from tests.e2e.traffic import Traffic

# Short `for:` and windows for the chart's rules; every other parameter keeps its default.
RULE_PARAMS: dict[str, Any] = {
    "rateWindow": "10s",
    "errorRatioFor": "2s",
    "sheddingFor": "2s",
    "latencyFor": "2s",
    "latencySloSeconds": 2,
    "driftFor": "2s",
    "predictionLogDropFor": "2s",
    "noReadyFor": "1m",
    "driftMonitorDownFor": "1m",
}
# A small queue so that a burst of clients is shed; a small log file so that it rotates; an
# embedding test soon and often, so its dashboard panel has data (its alert's `for:` stays 15m).
SERVICE_ENV = {
    "SLIPWAY_MAX_QUEUE": "8",
    "SLIPWAY_MAX_BATCH_SIZE": "8",
    "SLIPWAY_PREDICTION_LOG_MAX_BYTES": str(64 * 1024),
    "SLIPWAY_EMBEDDING_MIN_SAMPLES": "20",
    "SLIPWAY_EMBEDDING_DRIFT_INTERVAL_S": "2",
}
STALL_SECONDS = 3.0
INFERENCE_ALERTS = (
    "InferenceErrorRatioHigh",
    "InferenceLatencySloBreached",
    "InferenceOverloadShedding",
)
PHASE_TIMEOUT = 60.0

AlertKey = tuple[str, str]  # (alertname, feature or "")


def key(alert: dict[str, Any]) -> AlertKey:
    return alert["labels"]["alertname"], alert["labels"].get("feature", "")


@dataclass
class Scenario:
    """What happened: per phase, the alert keys that had fired by its end, and timings."""

    stack: Stack
    fired_after: dict[str, set[AlertKey]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    reports: dict[str, Any] = field(default_factory=dict)
    drift: dict[str, dict[str, Any]] = field(default_factory=dict)
    error_alert_during_4xx: list[dict[str, Any]] = field(default_factory=list)

    def fired(self) -> set[AlertKey]:
        return {key(a) for a in self.stack.webhook.alerts() if a["status"] == "firing"}

    def last_status(self) -> dict[AlertKey, str]:
        status: dict[AlertKey, str] = {}
        for alert in self.stack.webhook.alerts():
            status[key(alert)] = alert["status"]
        return status

    def firing(self, name: str) -> bool:
        return any(k[0] == name and s == "firing" for k, s in self.last_status().items())

    def resolved(self, name: str) -> bool:
        keys = [k for k in self.last_status() if k[0] == name]
        return bool(keys) and all(self.last_status()[k] == "resolved" for k in keys)


def drive_until(
    what: str, batch: Callable[[], Any], done: Callable[[], bool], timeout: float = PHASE_TIMEOUT
) -> None:
    """Send batches until `done()`, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch()
        if done():
            return
    raise AssertionError(f"timed out after {timeout:.0f} s: {what}")


def drift_summary(stack: Stack) -> dict[str, Any]:
    return httpx.get(stack.drift + "/v1/drift", timeout=10, trust_env=False).json()


def _fault(stack: Stack, mode: str, seconds: float = 1.0) -> None:
    response = httpx.post(
        stack.inference + "/admin/fault", json={"mode": mode, "seconds": seconds}, timeout=10
    )
    assert response.status_code == 200, response.text


def _window_settled(stack: Stack, logged: int) -> dict[str, Any] | None:
    """The drift summary once the monitor has read `logged` records and judged them."""
    summary = drift_summary(stack)
    return summary if summary["records_read"] >= logged and summary["judged"] else None


def logged_predictions(stack: Stack) -> int:
    text = httpx.get(stack.inference + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith("slipway_inference_prediction_log_written_total "):
            return int(float(line.split()[-1]))
    raise AssertionError("slipway_inference_prediction_log_written_total missing")


class Story:
    """The phases, one method each; `run` plays them in order and records what each left."""

    def __init__(self, stack: Stack, traffic: Traffic) -> None:
        self.stack, self.traffic = stack, traffic
        self.s = Scenario(stack)

    def _settled(self, what: str) -> dict[str, Any]:
        """Wait until the drift monitor has read and judged everything logged so far."""
        return wait_for(
            what, lambda: _window_settled(self.stack, logged_predictions(self.stack)), PHASE_TIMEOUT
        )

    def normal(self) -> None:
        self.s.reports["normal"] = self.traffic.normal_batch(len(self.traffic.normal))
        self.s.drift["normal"] = self._settled("the drift window to fill with normal traffic")

    def bad_requests(self) -> None:
        self.s.reports["bad"] = self.traffic.bad_batch(60)
        wait_for(
            "Prometheus to see the 4xx responses",
            lambda: self.stack.query(
                'sum(rate(slipway_inference_requests_total{job="inference",code="4xx"}[10s])) > 0'
            ),
            30,
        )
        # Give the error-ratio rule time to evaluate (and its `for:` to pass) with the 4xx in
        # its window: it must stay silent.
        end = time.monotonic() + 6
        while time.monotonic() < end:
            self.s.error_alert_during_4xx += self.stack.active_alerts("InferenceErrorRatioHigh")
            time.sleep(0.5)

    def _fault_fires(self, mode: str, seconds: float, alert: str, batch: int) -> None:
        """Inject a fault until `alert` fires, then clear it until the alert resolves."""
        _fault(self.stack, mode, seconds)
        drive_until(
            f"{alert} to fire on fault {mode!r}",
            lambda: self.traffic.normal_batch(batch),
            lambda: self.s.firing(alert),
        )
        if mode == "error":
            self.s.reports["errors"] = self.traffic.normal_batch(8)
        _fault(self.stack, "off")
        drive_until(
            f"{alert} to resolve on normal traffic",
            lambda: self.traffic.normal_batch(8),
            lambda: self.s.resolved(alert),
        )

    def server_errors(self) -> None:
        self._fault_fires("error", 1.0, "InferenceErrorRatioHigh", 8)

    def stalls(self) -> None:
        self._fault_fires("slow", STALL_SECONDS, "InferenceLatencySloBreached", 4)

    def overload(self) -> None:
        def burst() -> None:
            self.s.reports["overload"] = self.traffic.normal_batch(150, concurrency=48)

        drive_until(
            "InferenceOverloadShedding to fire on a burst of clients",
            burst,
            lambda: self.s.firing("InferenceOverloadShedding"),
        )
        drive_until(
            "every inference alert to resolve on normal traffic",
            lambda: self.traffic.normal_batch(8),
            lambda: all(self.s.resolved(n) for n in INFERENCE_ALERTS),
        )

    def drift(self) -> None:
        self.s.reports["shifted"] = self.traffic.shifted_batch(len(self.traffic.shifted))
        shifted = self._settled("the drift monitor to judge the inverted images")
        self.s.drift["shifted"] = shifted
        detected = {f for f, r in shifted["features"].items() if r["detected"]}
        wait_for(
            f"InferenceInputDrift to fire for {sorted(detected)}",
            lambda: {k[1] for k in self.s.fired() if k[0] == "InferenceInputDrift"} >= detected,
            PHASE_TIMEOUT,
        )

    def recover(self) -> None:
        self.s.reports["recovered"] = self.traffic.normal_batch(len(self.traffic.normal))
        self.s.drift["recovered"] = self._settled(
            "the drift window to hold only normal traffic again"
        )
        wait_for(
            "InferenceInputDrift to resolve",
            lambda: self.s.resolved("InferenceInputDrift"),
            PHASE_TIMEOUT,
        )


PHASES = ("normal", "bad_requests", "server_errors", "stalls", "overload", "drift", "recover")


def run(stack: Stack, traffic: Traffic) -> Scenario:
    """Play every phase; a failed phase names itself and carries the processes' logs."""
    story = Story(stack, traffic)
    for name in PHASES:
        began = time.monotonic()
        try:
            getattr(story, name)()
        except AssertionError as exc:
            raise AssertionError(f"phase {name!r}: {exc}\n{stack.logs()}") from None
        story.s.seconds[name] = round(time.monotonic() - began, 1)
        story.s.fired_after[name] = story.s.fired()
    return story.s
