"""The training pipeline: prepare -> train -> evaluate -> export -> register.

All cluster wiring lives here, none in the components: the GPU accelerator and node pool
(selector + toleration) for the train task only, CPU/memory requests and limits, a memory-backed
/dev/shm for DataLoader workers, the PVC with datasets and checkpoints, MLflow settings from a
ConfigMap and credentials from a Secret, retries with backoff, and which steps may be cached.
kfp.local ignores the Kubernetes settings, so the same pipeline runs on a laptop.
"""

import json
from typing import Any, NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl.graph_component import GraphComponent

from components.evaluate_model import evaluate_model
from components.export_model import export_model
from components.prepare_dataset import prepare_dataset
from components.register_model import register_model
from components.train_model import train_model
from slipway.config.cluster import ClusterOptions, Resources
from slipway.config.experiment import ExperimentConfig

PIPELINE_NAME = "slipway-training"
# Environment a pod may take from the cluster: MLflow's own variables, nothing slipway reads.
MLFLOW_CONFIG_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_S3_ENDPOINT_URL")
MLFLOW_SECRET_KEYS = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
# The pipeline's parameters: one per experiment section (its defaults are the section's), and
# the run-time scale and lineage values. `run_arguments` builds them from an ExperimentConfig.
SECTIONS = ("data", "model", "training", "promotion", "tracking")
SECTION_DEFAULTS = ExperimentConfig().model_dump(mode="json", exclude_none=True)  # IR has no null


class PipelineOutputs(NamedTuple):
    version: str
    decision: str
    reason: str


def _resources(task: dsl.PipelineTask, res: Resources) -> None:
    task.set_cpu_request(res.cpu_request).set_cpu_limit(res.cpu_limit)
    task.set_memory_request(res.memory_request).set_memory_limit(res.memory_limit)


def _wire(task: dsl.PipelineTask, opts: ClusterOptions, mlflow: bool, retries: int) -> None:
    """What every step gets: image, PVC, resources, MLflow env, retries."""
    task.set_container_image(opts.image)
    kubernetes.mount_pvc(task, pvc_name=opts.pvc_name, mount_path=opts.mount_path)
    if mlflow:
        kubernetes.use_config_map_as_env(
            task, opts.mlflow_config_map, {k: k for k in MLFLOW_CONFIG_KEYS}, optional=True
        )
        kubernetes.use_secret_as_env(
            task, opts.mlflow_secret, {k: k for k in MLFLOW_SECRET_KEYS}, optional=True
        )
    if retries:
        task.set_retry(
            num_retries=retries,
            backoff_duration=opts.retry_backoff,
            backoff_factor=opts.retry_backoff_factor,
            backoff_max_duration=opts.retry_backoff_max,
        )


def _gpu(task: dsl.PipelineTask, opts: ClusterOptions, gpus: Any) -> None:
    task.set_accelerator_type(opts.gpu_resource).set_accelerator_limit(gpus)
    for key, value in opts.gpu_node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    kubernetes.add_toleration(
        task, key=opts.gpu_toleration_key, operator="Exists", effect=opts.gpu_toleration_effect
    )


def _placement(opts: ClusterOptions) -> str:
    """Node selector and toleration of the GPU pool, for the pods of a multi-node job."""
    toleration = {
        "key": opts.gpu_toleration_key,
        "operator": "Exists",
        "effect": opts.gpu_toleration_effect,
    }
    return json.dumps({"node_selector": opts.gpu_node_selector, "tolerations": [toleration]})


def wire_train_task(task: dsl.PipelineTask, opts: ClusterOptions, gpus: Any) -> None:
    """What a task that trains in its own pod gets: the train image settings, resources and
    retries, a memory-backed /dev/shm, and the GPU pool (accelerator, selector, toleration).
    The training pipeline's train task and every search trial are wired by this one function."""
    _wire(task, opts, mlflow=True, retries=opts.train_retries)
    _resources(task, opts.train_resources)
    kubernetes.empty_dir_mount(
        task, volume_name="dshm", mount_path="/dev/shm", medium="Memory", size_limit=opts.shm_size
    )
    if opts.use_gpu:
        _gpu(task, opts, gpus)


def wire_step(task: dsl.PipelineTask, opts: ClusterOptions, mlflow: bool = True) -> None:
    """What every CPU step gets: image, PVC, step resources, MLflow env, step retries."""
    _wire(task, opts, mlflow=mlflow, retries=opts.step_retries)
    _resources(task, opts.step_resources)


def prepare_step(data: Any, opts: ClusterOptions) -> Any:
    """The cached prepare-dataset task of a pipeline; its `dataset` output."""
    prepare = prepare_dataset(data=data).set_display_name("prepare dataset")
    prepare.set_caching_options(enable_caching=True)
    wire_step(prepare, opts, mlflow=False)
    return prepare.outputs["dataset"]


def after_training(
    opts: ClusterOptions, dataset: Any, model: Any, mlflow_run: Any, p: dict[str, Any]
) -> dsl.PipelineTask:
    """evaluate -> export -> register on a trained model folder and its MLflow run; returns
    the register task. The training pipeline and the search (on its winner) both end so."""
    evaluate = evaluate_model(
        dataset=dataset,
        model=model,
        tracking=p["tracking"],
        mlflow_run_id=mlflow_run,
    ).set_display_name("evaluate model")
    export = export_model(
        dataset=dataset,
        model=evaluate.outputs["evaluated_model"],
        model_config=p["model"],
        tracking=p["tracking"],
        mlflow_run_id=mlflow_run,
    ).set_display_name("export model")
    register = register_model(
        dataset=dataset,
        model=export.outputs["exported_model"],
        model_config=p["model"],
        promotion=p["promotion"],
        tracking=p["tracking"],
        mlflow_run_id=mlflow_run,
        pipeline_run_id=p["run_id"],
        git_commit=p["git_commit"],
    ).set_display_name("register model")
    for task in (evaluate, export):
        task.set_caching_options(enable_caching=True)
    register.set_caching_options(enable_caching=False)  # side effects: never replay it
    for task in (evaluate, export, register):
        wire_step(task, opts)
    return register


def build_pipeline(opts: ClusterOptions | None = None) -> GraphComponent:
    """The `@dsl.pipeline` for these cluster options (compile it, or call it under kfp.local).

    `nodes` == 1 trains in the train task itself, on `gpus_per_node` GPUs of the GPU pool
    (torchrun when more than one). `nodes` > 1 takes the other branch: a CPU task that runs a
    Kubeflow TrainJob (or PyTorchJob) of `nodes` x `gpus_per_node` processes on the GPU pool,
    sharing the PVC, and waits for it. Evaluate, export and register follow either branch.
    """
    opts = opts or ClusterOptions()

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Image classifier: prepare, train on GPU, evaluate, export, register + gate.",
    )
    def training_pipeline(
        data: dict = SECTION_DEFAULTS["data"],
        model: dict = SECTION_DEFAULTS["model"],
        training: dict = SECTION_DEFAULTS["training"],
        promotion: dict = SECTION_DEFAULTS["promotion"],
        tracking: dict = SECTION_DEFAULTS["tracking"],
        gpus_per_node: int = opts.gpus_per_node,
        nodes: int = opts.nodes,
        job_kind: str = opts.job_kind,
        checkpoint_root: str = opts.checkpoint_root,
        git_commit: str = "",
    ) -> PipelineOutputs:
        params = dict(locals())
        params["run_id"] = dsl.PIPELINE_JOB_ID_PLACEHOLDER
        dataset = prepare_step(data, opts)
        train_args = dict(
            dataset=dataset,
            config=training,
            data=data,
            model_config=model,
            promotion=promotion,
            tracking=tracking,
            gpus=gpus_per_node,
            checkpoint_root=checkpoint_root,
            pipeline_run_id=params["run_id"],
            git_commit=git_commit,
        )
        with dsl.If(nodes == 1, name="one-node"):
            train = train_model(**train_args).set_display_name("train model")
            train.set_caching_options(enable_caching=False)
            wire_train_task(train, opts, gpus_per_node)
            one = after_training(
                opts, dataset, train.outputs["model"], train.outputs["mlflow_run_id"], params
            )
        with dsl.Else(name="multi-node"):
            launch = train_model(
                **train_args,
                nodes=nodes,
                job_kind=job_kind,
                job_image=opts.image,
                job_volume_claim=opts.pvc_name,
                job_mount_path=opts.mount_path,
                job_placement=_placement(opts),
            ).set_display_name("train as a cluster job")
            launch.set_caching_options(enable_caching=False)
            _wire(launch, opts, mlflow=True, retries=opts.train_retries)
            _resources(launch, opts.step_resources)
            many = after_training(
                opts, dataset, launch.outputs["model"], launch.outputs["mlflow_run_id"], params
            )
        return PipelineOutputs(
            *(
                dsl.OneOf(one.outputs[key], many.outputs[key])
                for key in ("version", "decision", "reason")
            )
        )

    return training_pipeline


def run_arguments(config: ExperimentConfig, git_commit: str = "") -> dict[str, Any]:
    """The pipeline's arguments for one run of `config`: the same for kfp.local and KFP."""
    dumped = config.model_dump(mode="json", exclude_none=True)
    return {
        **{section: dumped[section] for section in SECTIONS},
        "gpus_per_node": config.cluster.gpus_per_node,
        "nodes": config.cluster.nodes,
        "job_kind": config.cluster.job_kind,
        "checkpoint_root": config.cluster.checkpoint_root,
        "git_commit": git_commit,
    }


# The pipeline with the default cluster options, for `kfp dsl compile --py pipelines/training.py`.
training_pipeline = build_pipeline()
