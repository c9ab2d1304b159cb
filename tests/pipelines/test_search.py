"""The search pipeline: compiled IR, errors before anything runs, and a real kfp.local search
with MLflow on SQLite (parent and child runs, pruning, the winner registered, a rerun reusing
every trial)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from slipway.cli import app
from slipway.registry.client import Registry

ROOT = Path(__file__).resolve().parents[2]


def _tasks(spec: dict[str, Any]) -> dict[str, Any]:
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def test_kfp_compiles_the_module_level_search_pipeline(tmp_path: Path) -> None:
    out = tmp_path / "search.yaml"
    kfp = Path(sys.executable).parent / "kfp"
    result = subprocess.run(
        [str(kfp), "dsl", "compile", "--py", "pipelines/search.py", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    spec = next(yaml.safe_load_all(out.read_text()))
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2  # SearchConfig().parallelism
    assert "suggest-trials" in loop["parameterIterator"]["items"]["inputParameter"]


def test_compiled_search_has_parallel_rounds_and_trials_wired_like_training(
    tmp_path: Path,
) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "search": {
                    "method": "tpe",
                    "rounds": 2,
                    "space": {"training.lr": {"low": 1e-4, "high": 1e-2, "log": True}},
                }
            }
        )
    )
    cli = CliRunner()
    out = tmp_path / "search.yaml"
    args = ["pipeline", "compile", "--search", "--config", str(config), "--parallelism", "3"]
    result = cli.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    spec, platform = yaml.safe_load_all(out.read_text())
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    tasks = _tasks(spec)
    loops = {name: task for name, task in tasks.items() if "parameterIterator" in task}
    assert len(loops) == 2
    assert {task["iteratorPolicy"]["parallelismLimit"] for task in loops.values()} == {3}
    # round 1 suggests from round 0's collected results
    assert "collect-trials" in tasks["suggest-trials-2"]["dependentTasks"]

    training_out = tmp_path / "training.yaml"
    assert cli.invoke(app, ["pipeline", "compile", "--out", str(training_out)]).exit_code == 0
    train_spec, train_platform = yaml.safe_load_all(training_out.read_text())
    train_executors = train_platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    container = spec["deploymentSpec"]["executors"]["exec-train-trial"]["container"]
    train_container = train_spec["deploymentSpec"]["executors"]["exec-train-model"]["container"]
    assert container["resources"] == train_container["resources"]
    assert container["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert executors["exec-train-trial"] == train_executors["exec-train-model"]
    assert executors["exec-train-trial"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert executors["exec-train-trial"]["nodeSelector"]["labels"] == {
        "nvidia.com/gpu.present": "true"
    }
    for step in ("start-search", "suggest-trials", "collect-trials", "select-trial"):
        assert "tolerations" not in executors[f"exec-{step}"], step
        assert (
            "accelerator"
            not in spec["deploymentSpec"]["executors"][f"exec-{step}"]["container"]["resources"]
        )
    assert tasks["train-trial"]["retryPolicy"]["maxRetryCount"] == 3


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["search.space={training.lr: {low: 0.1, high: 0.01}}"], "search.space.training.lr"),
        (["search.space={training.nope: {choice: [1]}}"], "training.nope: unknown parameter"),
        ([], "--search needs a search space"),
    ],
)
def test_a_bad_search_fails_before_anything_runs(
    tmp_path: Path, demo_data: Path, sets: list[str], message: str
) -> None:
    work = tmp_path / "work"
    args = ["pipeline", "run", "--local", "--search", "--data", str(demo_data)]
    args += ["--work", str(work), "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    args += [item for s in sets for item in ("--set", s)]
    code = "from slipway.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not work.exists() and not (tmp_path / "m.db").exists()


EXPERIMENT = {
    "model": {"name": "searched", "parity_images": 8},
    "training": {"epochs": 2, "batch_size": 32, "image_size": 16, "max_batches_per_epoch": 4},
    "promotion": {"max_p95_latency_ms": 10_000.0, "min_accuracy": 0.0},
    "search": {
        "method": "grid",
        "n_trials": 4,
        # sequential, so pruning compares with the same siblings every time
        "parallelism": 1,
        # trials 2 and 3 barely move from their random initial weights
        "space": {
            "training.lr": {"choice": [3e-3, 1e-7]},
            "training.weight_decay": {"choice": [1e-4, 0.0]},
        },
        "pruning": {"rule": "median", "warmup_epochs": 0, "min_trials": 2},
    },
}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*non-Python base image")
@pytest.mark.filterwarnings("ignore:.*no effect in the current local runner")
def test_local_search_tracks_prunes_and_registers_the_best_trial(
    demo_data: Path, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    config = tmp_path / "experiment.yaml"
    config.write_text(yaml.safe_dump({**EXPERIMENT, "data": {"source": str(demo_data)}}))
    args = ["pipeline", "run", "--local", "--search", "--config", str(config)]
    args += ["--tracking-uri", uri, "--work", str(tmp_path / "work")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "search: best trial" in result.output

    registry = Registry(uri)
    client = registry.client
    experiment_id = registry.experiment_id("slipway")
    parents = client.search_runs([experiment_id], filter_string="tags.search = 'parent'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.method"] == "grid"
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    by_index = {int(run.data.tags["trial_index"]): run for run in children}
    seen = sorted(
        (run.data.tags["trial_index"], run.data.params.get("training.lr"), run.info.status)
        for run in children
    )
    assert sorted(by_index) == [0, 1, 2, 3] and len(children) == 4, seen
    for index, run in by_index.items():
        assert run.data.params["training.lr"] == ("0.003" if index < 2 else "1e-07"), seen
        assert "trial_val_accuracy" in run.data.metrics
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps == ([1, 2] if index < 2 else [1])
    for index in (2, 3):
        pruned = by_index[index]
        assert pruned.data.tags["trial_status"] == "pruned", index
        assert "worse than the median" in pruned.data.tags["trial_reason"]
        assert pruned.info.status == "KILLED"
    for index in (0, 1):
        assert by_index[index].data.tags["trial_status"] == "completed"
        assert by_index[index].info.status == "FINISHED"

    best = min(
        (by_index[i] for i in (0, 1)),
        key=lambda run: (
            -run.data.metrics["trial_val_accuracy"],
            int(run.data.tags["trial_index"]),
        ),
    )
    assert parent.data.tags["best_trial_run_id"] == best.info.run_id
    version = registry.describe("searched/1")
    assert version["tags"]["mlflow_run_id"] == best.info.run_id
    assert "test_accuracy" in version["metrics"]
    assert parent.data.metrics["trials_pruned"] == 2
    assert parent.data.metrics["trial_epochs_run"] == 6  # of 8 without pruning
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "search")}
    assert {"search/trials.md", "search/trials.csv", "search/params_vs_objective.png"} <= artifacts
    summaries = list((tmp_path / "work" / "pipeline-root").rglob("select-trial/summary"))
    assert len(summaries) == 1
    table = summaries[0].read_text()
    assert table.count("| pruned |") == 2 and "(best)" in table

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    rerun = client.search_runs([experiment_id], filter_string="tags.search = 'parent'")
    assert [run.info.run_id for run in rerun] == [parent.info.run_id]
    children_again = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    assert len(children_again) == 4  # every finished trial was reused, none trained again
    assert registry.describe("searched/2")["tags"]["mlflow_run_id"] == best.info.run_id
