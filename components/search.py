"""Components of the search pipeline: open the search, suggest a round, train a trial, collect
a round, select the winner. Thin shells over `slipway.search`."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from components import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def start_search(
    dataset: Input[Dataset],
    search: dict,
    training: dict,
    tracking: dict,
    pipeline_run_id: str = "",
    git_commit: str = "",
) -> NamedTuple("SearchStart", [("parent_run_id", str), ("search_key", str)]):
    """Open the search's parent MLflow run, or reopen the one an earlier run of it left.

    Args:
        dataset: Output of prepare_dataset (its fingerprint is part of the search's identity).
        search: The experiment's `search` section (`SearchConfig`).
        training: The experiment's `training` section: what every trial starts from.
        tracking: The experiment's `tracking` section (MLflow URI and experiment).
        pipeline_run_id: KFP run id, recorded on the parent run.
        git_commit: Source revision, recorded on the parent run.
    """
    from collections import namedtuple

    from slipway.config.experiment import TrackingConfig
    from slipway.config.search import SearchConfig
    from slipway.search.parent import start_search as start

    run_id, key = start(
        dataset.path,
        SearchConfig.model_validate(search),
        training,
        TrackingConfig.model_validate(tracking),
        {"pipeline_run_id": pipeline_run_id, "git_commit": git_commit},
    )
    return namedtuple("SearchStart", ["parent_run_id", "search_key"])(run_id, key)


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def suggest_trials(
    search: dict,
    round_index: int,
    rounds: int,
    history: list,
    parent_run_id: str,
    search_key: str,
) -> list:
    """The trials of one round: grid or random slices, or TPE conditioned on `history`.

    The list is the task's single output, which kfp.local's ParallelFor can iterate; each item
    carries the search's run and key, so a trial task takes nothing else from upstream tasks.

    Args:
        search: The experiment's `search` section (`SearchConfig`).
        round_index: Which round (0-based).
        rounds: Rounds in the compiled graph (they win over `search.rounds`).
        history: Result rows of the trials of the earlier rounds.
        parent_run_id: The search's MLflow run.
        search_key: The search's identity.
    """
    from slipway.config.search import SearchConfig
    from slipway.search.space import suggest

    config = SearchConfig.model_validate({**search, "rounds": int(rounds)})
    trials = suggest(config, int(round_index), list(history))
    return [{**t, "parent_run_id": parent_run_id, "search_key": search_key} for t in trials]


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train_trial(
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    trial: dict,
    training: dict,
    search: dict,
    tracking: dict,
    data: dict,
    model_config: dict,
    promotion: dict,
    gpus: int = 1,
    checkpoint_root: str = "/mnt/slipway/checkpoints",
) -> NamedTuple("TrialOutputs", [("result", dict)]):
    """Train one trial as a child run of the search; pruned or failed trials say so in `result`.

    Args:
        dataset: Output of prepare_dataset.
        metrics: The trial's validation metrics and status (1 completed, 0 pruned, -1 failed).
        trial: {"index", "round", "params", "parent_run_id", "search_key"} from
            suggest_trials.
        training: The experiment's `training` section; the trial's params replace its keys.
        search: The experiment's `search` section (objective and pruning rule).
        tracking: The experiment's `tracking` section (MLflow URI and experiment).
        data: The experiment's `data` section, recorded on the trial's run.
        model_config: The experiment's `model` section, recorded on the trial's run.
        promotion: The experiment's `promotion` section, recorded on the trial's run.
        gpus: GPUs of this trial's node; more than one trains with torchrun.
        checkpoint_root: Folder on a persistent volume: trials resume and keep their model.
    """
    from collections import namedtuple

    from slipway.config.experiment import TrackingConfig
    from slipway.config.search import SearchConfig
    from slipway.search.trial import run_trial

    result = run_trial(
        dataset.path,
        trial,
        training,
        SearchConfig.model_validate(search),
        TrackingConfig.model_validate(tracking),
        trial["parent_run_id"],
        trial["search_key"],
        checkpoint_root,
        gpus=gpus,
        record={"data": data, "model": model_config, "promotion": promotion},
    )
    code = {"completed": 1.0, "pruned": 0.0}.get(result["status"], -1.0)
    metrics.log_metric("status", code)
    for key in ("val_accuracy", "val_loss", "epochs_run", "latency_ms"):
        if result.get(key) is not None:
            metrics.log_metric(key, float(result[key]))
    metrics.metadata["status"] = result["status"]
    known = {key: value for key, value in result.items() if value is not None}  # IR has no null
    return namedtuple("TrialOutputs", ["result"])(known)


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def collect_trials(history: list, results: list) -> NamedTuple("Collected", [("history", list)]):
    """The result rows so far: the earlier rounds' and this round's, by trial index.

    Args:
        history: Result rows of the earlier rounds.
        results: This round's result rows (the ParallelFor's collected outputs).
    """
    from collections import namedtuple

    rows = sorted([*history, *results], key=lambda row: int(row["index"]))
    return namedtuple("Collected", ["history"])(rows)


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def select_trial(
    best_model: Output[Model],
    winner: Output[Metrics],
    summary: Output[Markdown],
    trials: list,
    search: dict,
    training: dict,
    tracking: dict,
    parent_run_id: str,
) -> NamedTuple("Selected", [("mlflow_run_id", str), ("best_trial", int)]):
    """Pick the best trial by the objective within the latency budget; summarize the search.

    Fails only when no trial can win (every one failed or was pruned, or none is within the
    budget).

    Args:
        best_model: The winner's model folder, for evaluate, export and register.
        winner: The winner's validation metrics and latency.
        summary: The table of every trial as Markdown.
        trials: Result rows of every round.
        search: The experiment's `search` section.
        training: The experiment's `training` section (epochs of a trial without pruning).
        tracking: The experiment's `tracking` section.
        parent_run_id: The search's MLflow run: the table, CSV and picture go there.
    """
    import shutil
    from collections import namedtuple

    from slipway.config.experiment import TrackingConfig
    from slipway.config.search import SearchConfig
    from slipway.config.training import TrainConfig
    from slipway.search.parent import finish_search

    config = SearchConfig.model_validate(search)
    best, table = finish_search(
        list(trials),
        config,
        TrackingConfig.model_validate(tracking),
        parent_run_id,
        TrainConfig.model_validate(training).epochs,
    )
    shutil.copytree(best["model_path"], best_model.path, dirs_exist_ok=True)
    for key in ("val_accuracy", "val_loss", "latency_ms"):
        if best.get(key) is not None:
            winner.log_metric(key, float(best[key]))
    winner.log_metric("trial", float(best["index"]))
    best_model.metadata.update({"trial": int(best["index"]), "params": best["params"]})
    with open(summary.path, "w") as out:
        out.write(f"# Search: best trial {int(best['index'])}\n\n{table}")
    selected = namedtuple("Selected", ["mlflow_run_id", "best_trial"])
    return selected(best["mlflow_run_id"], int(best["index"]))
