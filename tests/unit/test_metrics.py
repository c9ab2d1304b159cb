from __future__ import annotations

import numpy as np
import pytest

from slipway.training.metrics import classification_report, expected_calibration_error


def test_matches_scikit_learn() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=500)
    probs = rng.dirichlet(np.ones(4), size=500)
    probs[np.arange(250), labels[:250]] += 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    report = classification_report(labels, probs, ["a", "b", "c", "d"])
    preds = probs.argmax(1)
    assert report["accuracy"] == pytest.approx(sklearn_metrics.accuracy_score(labels, preds))
    assert report["macro_f1"] == pytest.approx(
        sklearn_metrics.f1_score(labels, preds, average="macro")
    )
    assert report["confusion_matrix"] == sklearn_metrics.confusion_matrix(labels, preds).tolist()
    assert report["nll"] == pytest.approx(sklearn_metrics.log_loss(labels, probs))


def test_calibration_error_is_zero_when_confidence_matches_accuracy() -> None:
    probs = np.array([[0.75, 0.25]] * 4)
    labels = np.array([0, 0, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)
    assert expected_calibration_error(probs, np.array([1, 1, 1, 1])) == pytest.approx(0.75)
