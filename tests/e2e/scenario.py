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
# A small queue so that a burst of clients is shed; a small log file so that it rotates.
SERVICE_ENV = {
    "SLIPWAY_MAX_QUEUE": "8",
    "SLIPWAY_MAX_BATCH_SIZE": "8",
    "SLIPWAY_PREDICTION_LOG_MAX_BYTES": str(64 * 1024),
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


def run(stack: Stack, traffic: Traffic) -> Scenario:
    s = Scenario(stack)

    def phase(name: str, body: Callable[[], None]) -> None:
        began = time.monotonic()
        try:
            body()
        except AssertionError as exc:
            raise AssertionError(f"phase {name!r}: {exc}\n{stack.logs()}") from None
        s.seconds[name] = round(time.monotonic() - began, 1)
        s.fired_after[name] = s.fired()

    def normal() -> None:
        s.reports["normal"] = traffic.normal_batch(len(traffic.normal))
        s.drift["normal"] = wait_for(
            "the drift window to fill with normal traffic",
            lambda: _window_settled(stack, logged_predictions(stack)),
            PHASE_TIMEOUT,
        )

    def bad_requests() -> None:
        s.reports["bad"] = traffic.bad_batch(60)
        wait_for(
            "Prometheus to see the 4xx responses",
            lambda: stack.query(
                'sum(rate(slipway_inference_requests_total{job="inference",code="4xx"}[10s])) > 0'
            ),
            30,
        )
        # Give the error-ratio rule time to evaluate (and its `for:` to pass) with the 4xx in
        # its window: it must stay silent.
        end = time.monotonic() + 6
        while time.monotonic() < end:
            s.error_alert_during_4xx += stack.active_alerts("InferenceErrorRatioHigh")
            time.sleep(0.5)

    def server_errors() -> None:
        _fault(stack, "error")
        drive_until(
            "InferenceErrorRatioHigh to fire on injected 5xx",
            lambda: traffic.normal_batch(8),
            lambda: s.firing("InferenceErrorRatioHigh"),
        )
        s.reports["errors"] = traffic.normal_batch(8)
        _fault(stack, "off")
        drive_until(
            "InferenceErrorRatioHigh to resolve on normal traffic",
            lambda: traffic.normal_batch(8),
            lambda: s.resolved("InferenceErrorRatioHigh"),
        )

    def stalls() -> None:
        _fault(stack, "slow", STALL_SECONDS)
        drive_until(
            "InferenceLatencySloBreached to fire on stalled batches",
            lambda: traffic.normal_batch(4),
            lambda: s.firing("InferenceLatencySloBreached"),
        )
        _fault(stack, "off")
        drive_until(
            "InferenceLatencySloBreached to resolve on normal traffic",
            lambda: traffic.normal_batch(8),
            lambda: s.resolved("InferenceLatencySloBreached"),
        )

    def overload() -> None:
        def burst() -> None:
            s.reports["overload"] = traffic.normal_batch(150, concurrency=48)

        drive_until(
            "InferenceOverloadShedding to fire on a burst of clients",
            burst,
            lambda: s.firing("InferenceOverloadShedding"),
        )
        drive_until(
            "every inference alert to resolve on normal traffic",
            lambda: traffic.normal_batch(8),
            lambda: all(s.resolved(n) for n in INFERENCE_ALERTS),
        )

    def drift() -> None:
        s.reports["shifted"] = traffic.shifted_batch(len(traffic.shifted))
        shifted = wait_for(
            "the drift monitor to judge the inverted images",
            lambda: _window_settled(stack, logged_predictions(stack)),
            PHASE_TIMEOUT,
        )
        s.drift["shifted"] = shifted
        detected = {f for f, r in shifted["features"].items() if r["detected"]}
        wait_for(
            f"InferenceInputDrift to fire for {sorted(detected)}",
            lambda: {k[1] for k in s.fired() if k[0] == "InferenceInputDrift"} >= detected,
            PHASE_TIMEOUT,
        )

    def recover() -> None:
        s.reports["recovered"] = traffic.normal_batch(len(traffic.normal))
        s.drift["recovered"] = wait_for(
            "the drift window to hold only normal traffic again",
            lambda: _window_settled(stack, logged_predictions(stack)),
            PHASE_TIMEOUT,
        )
        wait_for(
            "InferenceInputDrift to resolve",
            lambda: s.resolved("InferenceInputDrift"),
            PHASE_TIMEOUT,
        )

    for name, body in (
        ("normal", normal),
        ("bad_requests", bad_requests),
        ("server_errors", server_errors),
        ("stalls", stalls),
        ("overload", overload),
        ("drift", drift),
        ("recover", recover),
    ):
        phase(name, body)
    return s
