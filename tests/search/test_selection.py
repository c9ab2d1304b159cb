"""Picking the winner, and the summary table and picture."""

from __future__ import annotations

from pathlib import Path

import pytest

from slipway.config.search import SearchConfig
from slipway.search.selection import (
    SearchError,
    csv_table,
    markdown_table,
    pick_best,
    scatter_png,
    trial_epochs,
)

SPACE = {"training.lr": {"choice": [0.1, 0.01, 0.001]}, "training.arch": {"value": "resnet18"}}


def _trial(index: int, status: str, acc: float | None, loss: float | None, lat: float = 5.0):
    params = {"training.lr": [0.1, 0.01, 0.001, 0.0001][index % 4], "training.arch": "resnet18"}
    row = {"index": index, "round": 0, "params": params, "status": status, "epochs_run": 2}
    row.update(
        {"val_accuracy": acc, "val_loss": loss, "latency_ms": lat, "mlflow_run_id": f"r{index}"}
    )
    return row


TRIALS = [
    _trial(0, "completed", 0.80, 0.50, lat=20.0),
    _trial(1, "completed", 0.70, 0.40),
    _trial(2, "pruned", 0.95, 0.10),  # pruned trials never win, whatever they showed
    _trial(3, "failed", None, None),
]


def test_best_by_objective_among_completed_trials() -> None:
    accuracy = SearchConfig.model_validate({"space": SPACE})
    assert pick_best(TRIALS, accuracy)["index"] == 0
    loss = SearchConfig.model_validate({"space": SPACE, "objective": "val_loss"})
    assert pick_best(TRIALS, loss)["index"] == 1


def test_latency_budget_is_a_constraint() -> None:
    budget = SearchConfig.model_validate({"space": SPACE, "max_latency_ms": 10})
    assert pick_best(TRIALS, budget)["index"] == 1  # trial 0 is more accurate but too slow
    tight = SearchConfig.model_validate({"space": SPACE, "max_latency_ms": 1})
    with pytest.raises(SearchError, match=r"latency budget of 1\.0 ms"):
        pick_best(TRIALS, tight)


def test_ties_go_to_the_first_trial() -> None:
    search = SearchConfig.model_validate({"space": SPACE})
    tied = [_trial(2, "completed", 0.7, 0.4), _trial(1, "completed", 0.7, 0.4)]
    assert pick_best(tied, search)["index"] == 1


def test_no_winner_when_every_trial_failed_or_was_pruned() -> None:
    search = SearchConfig.model_validate({"space": SPACE})
    failed = [{**_trial(0, "failed", None, None), "reason": "ModelError: diverged"}]
    with pytest.raises(SearchError, match=r"1 failed, 1 pruned.*diverged"):
        pick_best([*failed, _trial(1, "pruned", 0.1, 2.0)], search)


def test_table_and_picture(tmp_path: Path) -> None:
    search = SearchConfig.model_validate({"space": SPACE})
    table = markdown_table(TRIALS, search, best=0)
    lines = table.splitlines()
    assert lines[0].startswith("| trial | round | training.arch | training.lr | status |")
    assert len(lines) == 2 + len(TRIALS)
    assert "| 0 (best) |" in lines[2] and "| pruned |" in lines[4] and "| failed |" in lines[5]
    assert csv_table(TRIALS, search, 0).splitlines()[1].startswith("0 (best),0,resnet18,0.1000")
    png = scatter_png(TRIALS, search, 0, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_pruning_savings_count_fresh_trials_only() -> None:
    rows = [{**TRIALS[0]}, {**TRIALS[2], "epochs_run": 1}, {**TRIALS[1], "reused": True}]
    assert trial_epochs(rows, 2) == (3, 4)
