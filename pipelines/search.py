"""The search pipeline: prepare once -> rounds of parallel trials -> the winner through
evaluate, export, register and the promotion gate.

    prepare -> start search (parent MLflow run)
            -> round 0: suggest -> ParallelFor(trials, parallelism) train trial -> collect
            -> round 1: suggest (TPE: conditioned on round 0) -> ... -> collect
            -> select the best -> evaluate -> export -> register + gate (the training
               pipeline's own tail)

The number of rounds and the parallelism shape the graph, so they are fixed when the pipeline
is built (from the experiment's `search` section; `slipway pipeline compile --search` and
`submit --search` build it from the same experiment). Every trial task is wired exactly like
the training pipeline's train task (`wire_train_task`: GPU pool, /dev/shm, resources, retries);
the other steps are CPU steps.
"""

from typing import Any, NamedTuple

from kfp import dsl
from kfp.dsl.graph_component import GraphComponent

from components.search import (
    collect_trials,
    select_trial,
    start_search,
    suggest_trials,
    train_trial,
)
from pipelines.training import (
    SECTION_DEFAULTS,
    SECTIONS,
    after_training,
    prepare_step,
    wire_step,
    wire_train_task,
)
from slipway.config.cluster import ClusterOptions
from slipway.config.experiment import ExperimentConfig
from slipway.config.search import SearchConfig

PIPELINE_NAME = "slipway-search"


class SearchOutputs(NamedTuple):
    version: str
    decision: str
    reason: str
    best_trial: int


def build_search_pipeline(
    opts: ClusterOptions | None = None, shape: SearchConfig | None = None
) -> GraphComponent:
    """The `@dsl.pipeline` of a search with `shape.rounds` rounds of `shape.parallelism`
    parallel trials; the search's other settings are the `search` parameter of each run."""
    opts = opts or ClusterOptions()
    shape = shape or SearchConfig()
    search_default = shape.model_dump(mode="json", exclude_none=True)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Hyperparameter search: parallel trials on the GPU pool, pruned and tracked; "
        "the best one evaluated, exported, registered and gated.",
    )
    def search_pipeline(
        data: dict = SECTION_DEFAULTS["data"],
        model: dict = SECTION_DEFAULTS["model"],
        training: dict = SECTION_DEFAULTS["training"],
        promotion: dict = SECTION_DEFAULTS["promotion"],
        tracking: dict = SECTION_DEFAULTS["tracking"],
        search: dict = search_default,
        gpus_per_node: int = opts.gpus_per_node,
        checkpoint_root: str = opts.checkpoint_root,
        git_commit: str = "",
    ) -> SearchOutputs:
        params = dict(locals())
        params["run_id"] = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        dataset = prepare_step(data, opts)
        start = start_search(
            dataset=dataset,
            search=search,
            training=training,
            tracking=tracking,
            pipeline_run_id=params["run_id"],
            git_commit=git_commit,
        ).set_display_name("start search")
        history: Any = []
        for index in range(shape.rounds):
            suggest = suggest_trials(
                search=search,
                round_index=index,
                rounds=shape.rounds,
                history=history,
                parent_run_id=start.outputs["parent_run_id"],
                search_key=start.outputs["search_key"],
            )
            suggest.set_display_name(f"suggest round {index}")
            with dsl.ParallelFor(
                suggest.output, parallelism=shape.parallelism, name=f"trials-{index}"
            ) as trial:
                train = train_trial(
                    dataset=dataset,
                    trial=trial,
                    training=training,
                    search=search,
                    tracking=tracking,
                    data=data,
                    model_config=model,
                    promotion=promotion,
                    gpus=gpus_per_node,
                    checkpoint_root=checkpoint_root,
                ).set_display_name(f"trial (round {index})")
                train.set_caching_options(enable_caching=False)
                wire_train_task(train, opts, gpus_per_node)
            collect = collect_trials(
                history=history, results=dsl.Collected(train.outputs["result"])
            ).set_display_name(f"collect round {index}")
            for task in (suggest, collect):
                task.set_caching_options(enable_caching=False)
                wire_step(task, opts, mlflow=False)
            history = collect.outputs["history"]
        select = select_trial(
            trials=history,
            search=search,
            training=training,
            tracking=tracking,
            parent_run_id=start.outputs["parent_run_id"],
        ).set_display_name("select best trial")
        for task in (start, select):
            task.set_caching_options(enable_caching=False)
            wire_step(task, opts)
        register = after_training(
            opts, dataset, select.outputs["best_model"], select.outputs["mlflow_run_id"], params
        )
        return SearchOutputs(
            register.outputs["version"],
            register.outputs["decision"],
            register.outputs["reason"],
            select.outputs["best_trial"],
        )

    return search_pipeline


def search_arguments(config: ExperimentConfig, git_commit: str = "") -> dict[str, Any]:
    """The search pipeline's arguments for `config`: the same for kfp.local and KFP."""
    dumped = config.model_dump(mode="json", exclude_none=True)
    return {
        **{section: dumped[section] for section in (*SECTIONS, "search")},
        "gpus_per_node": config.cluster.gpus_per_node,
        "checkpoint_root": config.cluster.checkpoint_root,
        "git_commit": git_commit,
    }


# With the default cluster options and search shape, for `kfp dsl compile --py pipelines/search.py`.
search_pipeline = build_search_pipeline()
