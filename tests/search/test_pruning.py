"""The pruning rules on numbers (the MLflow side runs in tests/pipelines/test_search.py)."""

from __future__ import annotations

from slipway.config.search import PruningConfig
from slipway.search.pruning import prune_reason


def test_median_rule_stops_only_trials_worse_than_the_median() -> None:
    rule = PruningConfig(rule="median", warmup_epochs=1, min_trials=2)
    others = [0.5, 0.7, 0.9]
    assert prune_reason(rule, True, 2, 0.6, others) is not None
    assert "median 0.7000 of 3 trials" in prune_reason(rule, True, 2, 0.6, others)
    assert prune_reason(rule, True, 2, 0.7, others) is None  # equal is not worse
    assert prune_reason(rule, True, 2, 0.8, others) is None
    # minimizing a loss: higher is worse
    assert prune_reason(rule, False, 2, 0.8, others) is not None
    assert prune_reason(rule, False, 2, 0.6, others) is None


def test_no_rule_during_warmup_or_without_enough_siblings() -> None:
    rule = PruningConfig(rule="median", warmup_epochs=2, min_trials=3)
    assert prune_reason(rule, True, 2, 0.0, [0.9, 0.9, 0.9]) is None  # warm-up
    assert prune_reason(rule, True, 3, 0.0, [0.9, 0.9]) is None  # too few siblings
    assert prune_reason(rule, True, 3, 0.0, [0.9, 0.9, 0.9]) is not None
    assert prune_reason(PruningConfig(rule="none"), True, 5, 0.0, [1.0] * 5) is None


def test_successive_halving_keeps_the_best_share() -> None:
    rule = PruningConfig(rule="halving", warmup_epochs=0, min_trials=1, reduction_factor=2)
    others = [0.9, 0.8, 0.3]  # four trials: the best two continue
    assert prune_reason(rule, True, 1, 0.95, others) is None
    assert prune_reason(rule, True, 1, 0.85, others) is None
    assert "ranks 3 of 4" in prune_reason(rule, True, 1, 0.5, others)
    rule4 = rule.model_copy(update={"reduction_factor": 4})
    assert prune_reason(rule4, True, 1, 0.85, others) is not None  # only the best one
