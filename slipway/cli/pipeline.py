"""`slipway pipeline compile | run --local | submit`: the training pipeline from a terminal,
or with `--search` the hyperparameter search pipeline over the experiment's `search` section.

Every command reads the same experiment (`--config`, `--set`, shortcuts; see
`slipway.cli.experiment`), so `run --local` and `submit` train the same model from the same
command line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from slipway.cli.experiment import (
    Arch,
    ConfigFile,
    Data,
    Epochs,
    Image,
    ModelName,
    Parallelism,
    Search,
    Sets,
    TrackingUri,
    Trials,
    resolve,
)
from slipway.config.experiment import ExperimentConfig
from slipway.errors import SlipwayError
from slipway.registry.client import DEFAULT_TRACKING_URI
from slipway.registry.ref import version_model_id

pipeline_app = typer.Typer(
    help="Training pipeline: compile to KFP IR YAML, run locally (kfp.local), submit to KFP.",
    no_args_is_help=True,
)
WORK = Path(".slipway")
IR_DIR = Path("build/pipelines")
Fresh = Annotated[bool, typer.Option("--fresh", help="Ignore cached steps; run everything.")]


def _pipeline(experiment: ExperimentConfig, search: bool) -> dict[str, Any]:
    """How to build, name and call the training pipeline or, with `search`, the search's.

    A search needs a search space; its rounds and parallelism shape the compiled graph.
    """
    from functools import partial

    if not search:
        from pipelines.training import PIPELINE_NAME, build_pipeline, run_arguments

        return {"build": build_pipeline, "name": PIPELINE_NAME, "arguments": run_arguments}
    from pipelines.search import PIPELINE_NAME, build_search_pipeline, search_arguments

    if not experiment.search.space:
        raise SlipwayError(
            "--search needs a search space: search.space in the experiment file "
            "(docs/training.md, Hyperparameter search)"
        )
    build = partial(build_search_pipeline, shape=experiment.search)
    return {"build": build, "name": PIPELINE_NAME, "arguments": search_arguments}


@pipeline_app.command("compile")
def compile_cmd(
    out: Annotated[
        Path | None,
        typer.Option(
            help="IR YAML to write [default: build/pipelines/training.yaml or search.yaml]."
        ),
    ] = None,
    config: ConfigFile = None,
    sets: Sets = None,
    image: Image = None,
    search: Search = False,
    parallelism: Parallelism = None,
) -> None:
    """Compile the pipeline to KFP IR YAML for upload to a cluster (cluster section applied)."""
    from pipelines.run import compile_pipeline

    experiment = resolve(locals())
    chosen = _pipeline(experiment, search)
    out = out or IR_DIR / ("search.yaml" if search else "training.yaml")
    compile_pipeline(out, experiment.cluster, chosen["build"])
    typer.echo(f"wrote {out} (image {experiment.cluster.image})")


def _local_experiment(experiment: ExperimentConfig) -> ExperimentConfig:
    """A local run reads a folder on this machine and records to the local MLflow by default."""
    from slipway.registry.client import absolute_tracking_uri

    source = experiment.data.source
    if "://" not in source:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise SlipwayError(
                f"--data must name an existing dataset folder or URI, got {source!r}"
            )
        experiment.data.source = str(folder.resolve())
    experiment.tracking.uri = absolute_tracking_uri(experiment.tracking.uri or DEFAULT_TRACKING_URI)
    return experiment


@pipeline_app.command("run")
def run_cmd(
    local: Annotated[bool, typer.Option("--local", help="Run on this machine.")] = False,
    config: ConfigFile = None,
    sets: Sets = None,
    data: Data = None,
    model_name: ModelName = None,
    arch: Arch = None,
    epochs: Epochs = None,
    tracking_uri: TrackingUri = None,
    work: Annotated[Path, typer.Option(help="Pipeline root and checkpoints go here.")] = WORK,
    fresh: Fresh = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Stream every step's output (else: to a log file).")
    ] = False,
    search: Search = False,
    trials: Trials = None,
    parallelism: Parallelism = None,
) -> None:
    """Run the whole pipeline locally and print a summary (use `submit` for a cluster)."""
    from pipelines.run import run_local
    from slipway.registry.lineage import git_revision

    if not local:
        raise SlipwayError("only --local runs here; use `slipway pipeline submit --host URL`")
    experiment = _local_experiment(resolve(locals()))
    chosen = _pipeline(experiment, search)
    arguments = chosen["arguments"](experiment, git_commit=git_revision(Path.cwd()))
    arguments["checkpoint_root"] = str((work / "checkpoints").resolve())
    log_file = None if verbose else work / "logs" / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}.log"
    if log_file:
        typer.echo(f"step output goes to {log_file} (--verbose shows it here)")
    outputs = run_local(
        arguments,
        (work / "pipeline-root").resolve(),
        fresh=fresh,
        opts=experiment.cluster,
        log_file=log_file,
        build=chosen["build"],
    )
    if search:
        typer.echo(f"search: best trial {outputs['best_trial']} of {experiment.search.n_trials}")
    _print_summary(experiment.tracking.uri, experiment.model.name, outputs)


def _print_summary(tracking_uri: str, name: str, outputs: dict[str, Any]) -> None:
    """What a person wants after a run: data identity, quality, speed, and where it went.

    The numbers are the registered version's model metrics and params, as the MLflow UI shows
    them.
    """
    import re

    from slipway.registry.client import PRODUCTION, Registry

    registry = Registry(tracking_uri)
    version = registry.get(f"{name}/{outputs['version']}")
    metrics, params, tags = registry.metrics(version), registry.params(version), version.tags or {}
    production = registry.alias_version(name, PRODUCTION)

    def metric(key: str, fmt: str = ".4f") -> str:
        value = metrics.get(key)
        return format(value, fmt) if value is not None else "-"

    batches = sorted(
        {int(m[1]) for k in metrics if (m := re.fullmatch(r"latency_b(\d+)_p95_ms", k))}
    )
    latency = "; ".join(
        f"batch {b}: p50 {metric(f'latency_b{b}_p50_ms', '.2f')} ms, "
        f"p95 {metric(f'latency_b{b}_p95_ms', '.2f')} ms"
        for b in batches
    )
    model_id = version_model_id(version)
    rows = [
        ("pipeline", f"finished in {outputs['seconds']:.0f} s (kfp.local)"),
        ("dataset fingerprint", tags.get("dataset_fingerprint", "-")),
        ("model", f"{params.get('arch', '-')}, best epoch {params.get('best_epoch', '-')}"),
        (
            "test metrics",
            f"accuracy {metric('test_accuracy')}, macro-F1 {metric('test_macro_f1')}, "
            f"ECE {metric('test_ece')}",
        ),
        (
            "export parity",
            f"ONNX max abs diff {metric('onnx_max_abs_diff', '.2e')}, "
            f"TorchScript {metric('torchscript_max_abs_diff', '.2e')}",
        ),
        ("latency (ORT CPU)", latency or "-"),
        ("registered", f"{name} version {outputs['version']} (alias staging)"),
        ("MLflow model", f"models:/{model_id} (run {version.run_id})" if model_id else "-"),
        ("promotion", f"{outputs['decision']}: {outputs['reason']}"),
        ("production", f"{name} version {production.version}" if production else "none"),
        ("MLflow", tracking_uri),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        typer.echo(f"{label.ljust(width)}  {value}")


@pipeline_app.command("submit")
def submit_cmd(
    host: Annotated[
        str, typer.Option(help="KFP API URL, e.g. https://kubeflow.example.com/pipeline")
    ],
    namespace: Annotated[str | None, typer.Option(help="Kubeflow profile namespace.")] = None,
    experiment_name: Annotated[str, typer.Option("--experiment", help="KFP experiment.")] = (
        "slipway"
    ),
    token: Annotated[str | None, typer.Option(envvar="KFP_TOKEN", help="Bearer token.")] = None,
    cookie: Annotated[str | None, typer.Option(help="Session cookie (Dex/oauth2-proxy).")] = None,
    ssl_ca_cert: Annotated[str | None, typer.Option(help="CA bundle for the API's TLS.")] = None,
    schedule: Annotated[str | None, typer.Option(help="Cron: a recurring run.")] = None,
    run_name: Annotated[str | None, typer.Option(help="Run or schedule name.")] = None,
    config: ConfigFile = None,
    sets: Sets = None,
    data: Data = None,
    model_name: ModelName = None,
    arch: Arch = None,
    epochs: Epochs = None,
    tracking_uri: TrackingUri = None,
    image: Image = None,
    fresh: Fresh = False,
    search: Search = False,
    trials: Trials = None,
    parallelism: Parallelism = None,
) -> None:
    """Compile and submit to a KFP cluster: one run, or a recurring run with --schedule."""
    from pipelines.run import submit
    from slipway.registry.lineage import git_revision

    experiment = resolve(locals())
    chosen = _pipeline(experiment, search)
    result = submit(
        host,
        chosen["arguments"](experiment, git_commit=git_revision(Path.cwd())),
        experiment=experiment_name,
        namespace=namespace,
        token=token,
        cookie=cookie,
        ssl_ca_cert=ssl_ca_cert,
        schedule=schedule,
        run_name=run_name,
        fresh=fresh,
        opts=experiment.cluster,
        build=chosen["build"],
        name=chosen["name"],
    )
    for key, value in result.items():
        typer.echo(f"{key}: {value}")


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
