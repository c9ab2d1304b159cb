"""The rollout rule alone: promote, roll back or wait, with every reason."""

from __future__ import annotations

import dataclasses

import pytest

from slipway.config.experiment import load_experiment
from slipway.config.promotion import PromotionPolicy
from slipway.config.rollout import RolloutCriteria
from slipway.errors import ConfigError
from slipway.procs import free_port
from slipway.prometheus import PrometheusClient, PrometheusError
from slipway.rollout.decision import Limits, decide
from slipway.rollout.events import record_event
from slipway.rollout.measure import Measurement, Queries

LIMITS = Limits(
    window="5m",
    min_requests=100,
    max_error_ratio=0.02,
    max_p95_latency_ms=200.0,
    min_shadow_agreement=0.9,
    max_confidence_shift=0.1,
)
GOOD = Measurement(
    requests=400,
    errors=2,
    p95_latency_ms=50.0,
    candidate_confidence=0.81,
    production_confidence=0.80,
    shadow_judged=0,
    shadow_agreed=0,
    serving_versions=("3",),
)


def measured(**changes: object) -> Measurement:
    return dataclasses.replace(GOOD, **changes)


def test_a_candidate_that_meets_every_criterion_is_promoted_with_the_reasons() -> None:
    decision = decide("3", GOOD, LIMITS)
    assert decision.action == "promote"
    assert decision.failed == [] and decision.pending == []
    assert "error ratio 0.50% <= 2.00%" in decision.reason
    assert "p95 latency 50.0 ms <= 200 ms" in decision.reason


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"errors": 40}, "error ratio 10.00% > 2.00%"),
        ({"p95_latency_ms": 450.0}, "p95 latency 450.0 ms > 200 ms"),
        ({"candidate_confidence": 0.6}, "mean confidence shift -0.200 beyond"),
        ({"shadow_judged": 200, "shadow_agreed": 150}, "shadow agreement 75.00% < 90.00%"),
    ],
)
def test_any_failing_criterion_rolls_back_and_says_which(
    change: dict[str, float], expected: str
) -> None:
    decision = decide("3", measured(**change), LIMITS)
    assert decision.action == "rollback"
    assert len(decision.failed) == 1 and decision.failed[0].startswith(expected), decision
    assert decision.reason == decision.failed[0]


def test_every_failure_is_listed() -> None:
    decision = decide("3", measured(errors=40, p95_latency_ms=999.0), LIMITS)
    assert decision.action == "rollback" and len(decision.failed) == 2


def test_too_little_traffic_waits_even_when_everything_else_holds() -> None:
    decision = decide("3", measured(requests=20, errors=0), LIMITS)
    assert decision.action == "wait"
    assert decision.reason == "20 candidate requests in 5m, need 100"


def test_errors_on_little_traffic_wait_until_they_exceed_what_min_requests_allows() -> None:
    # 1 error in 10 requests is 10 %, but 99 good requests more would bring it to 1 %.
    assert decide("3", measured(requests=10, errors=1), LIMITS).action == "wait"
    # 3 errors can no longer stay within 2 % of 100 requests: roll back now.
    assert decide("3", measured(requests=10, errors=3), LIMITS).action == "rollback"


def test_nothing_is_judged_before_the_pods_serve_the_candidate_version() -> None:
    decision = decide("4", measured(errors=300), LIMITS)
    assert decision.action == "wait"
    assert decision.reason == "the pods serve v3 as the candidate, not v4 yet"


def test_shadow_agreement_needs_enough_shadowed_requests() -> None:
    decision = decide("3", measured(shadow_judged=20, shadow_agreed=2), LIMITS)
    assert decision.action == "wait" and "20 shadowed requests" in decision.reason


def test_the_latency_bar_defaults_to_the_promotion_slo_and_can_be_set() -> None:
    experiment = load_experiment(overrides=["promotion.max_p95_latency_ms=75"])
    assert Limits.of(experiment.rollout, experiment.promotion).max_p95_latency_ms == 75
    own = RolloutCriteria(max_p95_latency_ms=300)
    assert Limits.of(own, PromotionPolicy()).max_p95_latency_ms == 300


def test_the_window_must_be_a_prometheus_duration() -> None:
    with pytest.raises(ConfigError, match=r"rollout\.window"):
        load_experiment(overrides=["rollout.window=ten minutes"])


def test_queries_select_the_candidate_and_production_by_model_label() -> None:
    queries = Queries("fashion", "5m", 'namespace="prod"')
    assert queries.requests("fashion-staging", code="5xx") == (
        "sum(increase(slipway_inference_requests_total"
        '{model="fashion-staging",code="5xx",namespace="prod"}[5m]))'
    )
    assert '{model="fashion",result=~"agree",namespace="prod"}' in queries.shadow("agree")


def test_an_unreachable_prometheus_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PrometheusError, match=f"cannot reach Prometheus at {url}"):
        PrometheusClient(url, timeout_s=2).query("up")
    with pytest.raises(PrometheusError, match="must start with http"):
        PrometheusClient("prometheus:9090")


def test_outside_a_cluster_the_event_is_skipped_and_says_so(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    decision = decide("3", GOOD, LIMITS)
    with caplog.at_level("INFO", logger="slipway.rollout.events"):
        assert record_event("fashion", decision, pod="rollout-abc") is False
    assert "not running in a cluster" in caplog.text
    # A wait is not an event at all.
    assert record_event("fashion", decide("3", measured(requests=1), LIMITS), pod="x") is False
