"""The search's parent MLflow run: opened (or reopened) before the trials, closed with the
summary after them.

Its identity is the search key (the space, method, seed, objective, pruning, base training
settings and the data fingerprint), so rerunning the same search continues the same parent
run, and its trials, found by their keys among its children, are reused.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from slipway.config.experiment import TrackingConfig
from slipway.config.search import SearchConfig
from slipway.registry.client import Registry
from slipway.registry.tracking import flatten, log_metrics, log_params
from slipway.search.selection import (
    SearchError,
    csv_table,
    markdown_table,
    pick_best,
    scatter_png,
    trial_epochs,
)
from slipway.search.space import search_key
from slipway.search.trial import PARENT_TAG, SEARCH_TAG
from slipway.steps import load_dataset

SUMMARY_DIR = "search"


def start_search(
    dataset_dir: str | Path,
    search: SearchConfig,
    training: dict[str, Any],
    tracking: TrackingConfig,
    tags: dict[str, str],
) -> tuple[str, str]:
    """Open the parent run of this search, or reopen the one a former run of it left;
    returns (parent run id, search key)."""
    fingerprint = load_dataset(dataset_dir).fingerprint
    key = search_key(search, training, fingerprint)
    registry = Registry(tracking.uri)
    experiment_id = registry.experiment_id(tracking.experiment)
    found = registry.client.search_runs(
        [experiment_id], filter_string=f"tags.{SEARCH_TAG} = '{key}' and tags.search = 'parent'"
    )
    if found:
        run_id = found[0].info.run_id
        registry.client.update_run(run_id, status="RUNNING")
        return run_id, key
    run = registry.client.create_run(
        experiment_id,
        run_name=f"search-{search.method}-{key[:8]}",
        tags={**tags, SEARCH_TAG: key, "search": "parent"},
    )
    run_id = run.info.run_id
    params = flatten({"search": search.model_dump(mode="json", exclude={"space"})})
    params.update(
        {f"space.{k}": json.dumps(v.model_dump(exclude_none=True)) for k, v in search.space.items()}
    )
    params.update(flatten({"training": training}))
    params["dataset_fingerprint"] = fingerprint
    log_params(registry, run_id, params)
    return run_id, key


def finish_search(
    trials: list[dict[str, Any]],
    search: SearchConfig,
    tracking: TrackingConfig,
    parent_run_id: str,
    epochs_each: int,
) -> tuple[dict[str, Any], str]:
    """Pick the winner, log the table, CSV and picture on the parent run and close it;
    returns (the winning trial, the table as Markdown). Raises SearchError if none can win."""
    registry = Registry(tracking.uri)
    client = registry.client
    try:
        best = pick_best(trials, search)
    except SearchError:
        client.set_terminated(parent_run_id, status="FAILED")
        raise
    index = int(best["index"])
    table = markdown_table(trials, search, index)
    run, full = trial_epochs(trials, epochs_each)
    counts = {
        s: sum(t.get("status") == s for t in trials) for s in ("completed", "pruned", "failed")
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "trials.md").write_text(table)
        (folder / "trials.csv").write_text(csv_table(trials, search, index))
        (folder / "trials.json").write_text(json.dumps(trials, indent=1, default=str))
        scatter_png(trials, search, index, folder / "params_vs_objective.png")
        for name in ("trials.md", "trials.csv", "trials.json", "params_vs_objective.png"):
            client.log_artifact(parent_run_id, str(folder / name), SUMMARY_DIR)
    metrics = {
        f"best_{search.objective}": float(best[search.objective]),
        "trials_completed": counts["completed"],
        "trials_pruned": counts["pruned"],
        "trials_failed": counts["failed"],
        "trial_epochs_run": run,
        "trial_epochs_full": full,
    }
    log_metrics(registry, parent_run_id, metrics)
    client.set_tag(parent_run_id, "best_trial", str(index))
    client.set_tag(parent_run_id, "best_trial_run_id", best["mlflow_run_id"])
    client.set_terminated(parent_run_id, status="FINISHED")
    return best, table


def children(registry: Registry, experiment_id: str, parent_run_id: str) -> list[Any]:
    """The trial runs of a search (for the CLI summary and tests)."""
    return registry.client.search_runs(
        [experiment_id], filter_string=f"tags.{PARENT_TAG} = '{parent_run_id}'"
    )
