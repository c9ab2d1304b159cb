"""`slipway pipeline compile | run --local | submit`: the training pipeline from a terminal."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from slipway.errors import SlipwayError
from slipway.registry.client import DEFAULT_TRACKING_URI

pipeline_app = typer.Typer(
    help="Training pipeline: compile to KFP IR YAML, run locally (kfp.local), submit to KFP.",
    no_args_is_help=True,
)
WORK = Path(".slipway")

# Run parameters shared by `run` and `submit`; None means "the pipeline's default".
Data = Annotated[
    str | None, typer.Option("--data", help="ImageFolder: path, PVC path, s3://, gs://")
]
ModelName = Annotated[str | None, typer.Option(help="Registered model name.")]
Arch = Annotated[str | None, typer.Option(help="torchvision architecture.")]
Epochs = Annotated[int | None, typer.Option(min=1)]
BatchSize = Annotated[int | None, typer.Option(min=1)]
Lr = Annotated[float | None, typer.Option(min=0.0)]
ImageSize = Annotated[int | None, typer.Option(min=8)]
Seed = Annotated[int | None, typer.Option()]
Workers = Annotated[int | None, typer.Option("--workers", min=0, help="DataLoader workers.")]
MaxBatches = Annotated[
    int | None, typer.Option("--max-batches", min=0, help="Cap batches per epoch (0: all).")
]
Margin = Annotated[float | None, typer.Option(help="Accuracy a candidate may lose vs production.")]
Slo = Annotated[float | None, typer.Option("--max-p95-ms", help="Batch-1 p95 latency SLO (ms).")]
MinAcc = Annotated[float | None, typer.Option(help="Accuracy floor for every candidate.")]
Sets = Annotated[
    list[str] | None, typer.Option("--set", help="Any other pipeline parameter: KEY=VALUE.")
]
Fresh = Annotated[bool, typer.Option("--fresh", help="Ignore cached steps; run everything.")]
Image = Annotated[str | None, typer.Option(help="Training image (default: TRAIN_IMAGE).")]
GpuSelector = Annotated[
    list[str] | None,
    typer.Option("--gpu-node-selector", help="KEY=VALUE label of GPU nodes (repeatable)."),
]
GpuTaint = Annotated[str | None, typer.Option(help="Taint key on GPU nodes to tolerate.")]
NoGpu = Annotated[bool, typer.Option("--no-gpu", help="Train on CPU nodes (no accelerator).")]
Pvc = Annotated[str | None, typer.Option(help="PVC with datasets and checkpoints.")]


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    pairs = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SlipwayError(f"{what} must look like KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def _params(given: dict[str, Any], sets: list[str] | None) -> dict[str, Any]:
    """Pipeline arguments from the options given, checked against the pipeline's parameters."""
    from pipelines.training import build_pipeline

    known = build_pipeline().component_spec.inputs or {}
    params = {k: v for k, v in given.items() if v is not None}
    for key, value in _pairs(sets, "--set").items():
        if key not in known:
            raise SlipwayError(f"unknown pipeline parameter {key!r}; known: {', '.join(known)}")
        params[key] = _typed(value, known[key].type)
    return params


def _typed(value: str, kfp_type: str) -> Any:
    try:
        return {"NUMBER_INTEGER": int, "NUMBER_DOUBLE": float}.get(kfp_type, str)(value)
    except ValueError as exc:
        raise SlipwayError(f"{value!r} is not a valid {kfp_type.lower()}") from exc


def _options(
    image: str | None,
    selectors: list[str] | None,
    taint: str | None,
    no_gpu: bool,
    pvc: str | None,
) -> Any:
    from pipelines.training import ClusterOptions

    changes: dict[str, Any] = {"use_gpu": not no_gpu}
    if image:
        changes["image"] = image
    if selectors:
        changes["gpu_node_selector"] = _pairs(selectors, "--gpu-node-selector")
    if taint:
        changes["gpu_toleration_key"] = taint
    if pvc:
        changes["pvc_name"] = pvc
    return ClusterOptions(**changes)


@pipeline_app.command("compile")
def compile_cmd(
    out: Annotated[Path, typer.Option(help="IR YAML to write.")] = Path(
        "build/pipelines/training.yaml"
    ),
    image: Image = None,
    gpu_node_selector: GpuSelector = None,
    gpu_taint: GpuTaint = None,
    no_gpu: NoGpu = False,
    pvc: Pvc = None,
) -> None:
    """Compile the pipeline to KFP IR YAML for upload to a cluster."""
    from pipelines.run import compile_pipeline

    opts = _options(image, gpu_node_selector, gpu_taint, no_gpu, pvc)
    compile_pipeline(out, opts)
    typer.echo(f"wrote {out} (image {opts.image})")


@pipeline_app.command("run")
def run_cmd(
    local: Annotated[bool, typer.Option("--local", help="Run on this machine.")] = False,
    data: Data = None,
    model_name: ModelName = None,
    arch: Arch = None,
    epochs: Epochs = None,
    batch_size: BatchSize = None,
    lr: Lr = None,
    image_size: ImageSize = None,
    seed: Seed = None,
    workers: Workers = None,
    max_batches: MaxBatches = None,
    accuracy_margin: Margin = None,
    max_p95_ms: Slo = None,
    min_accuracy: MinAcc = None,
    tracking_uri: Annotated[str, typer.Option(help="MLflow URI.")] = DEFAULT_TRACKING_URI,
    work: Annotated[Path, typer.Option(help="Pipeline root and checkpoints go here.")] = WORK,
    sets: Sets = None,
    fresh: Fresh = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Stream every step's output (else: to a log file).")
    ] = False,
) -> None:
    """Run the whole pipeline locally and print a summary (use `submit` for a cluster)."""
    from pipelines.run import run_local
    from slipway.registry.client import absolute_tracking_uri
    from slipway.registry.lineage import git_revision

    if not local:
        raise SlipwayError("only --local runs here; use `slipway pipeline submit --host URL`")
    if not data or ("://" not in data and not Path(data).expanduser().is_dir()):
        raise SlipwayError(f"--data must name an existing dataset folder or URI, got {data!r}")
    uri = absolute_tracking_uri(tracking_uri)
    given = dict(
        source_uri=data if "://" in data else str(Path(data).expanduser().resolve()),
        model_name=model_name,
        arch=arch,
        epochs=epochs or 3,
        batch_size=batch_size,
        lr=lr,
        image_size=image_size,
        seed=seed,
        num_workers=workers or 0,
        max_batches_per_epoch=max_batches,
        accuracy_margin=accuracy_margin,
        max_p95_latency_ms=max_p95_ms,
        min_accuracy=min_accuracy,
        mlflow_tracking_uri=uri,
        checkpoint_root=str((work / "checkpoints").resolve()),
        git_commit=git_revision(Path.cwd()),
    )
    log_file = None if verbose else work / "logs" / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}.log"
    if log_file:
        typer.echo(f"step output goes to {log_file} (--verbose shows it here)")
    outputs = run_local(
        _params(given, sets), (work / "pipeline-root").resolve(), fresh=fresh, log_file=log_file
    )
    _print_summary(uri, model_name or "slipway-classifier", outputs)


def _print_summary(tracking_uri: str, name: str, outputs: dict[str, Any]) -> None:
    """What a person wants after a run: data identity, quality, speed, and where it went."""
    import re

    from slipway.registry.client import PRODUCTION, Registry

    registry = Registry(tracking_uri)
    tags = registry.describe(f"{name}/{outputs['version']}")["tags"]
    production = registry.alias_version(name, PRODUCTION)

    def metric(key: str, fmt: str = ".4f") -> str:
        value = tags.get(f"metric.{key}")
        return format(float(value), fmt) if value is not None else "-"

    batches = sorted({int(m) for m in re.findall(r"metric\.latency_b(\d+)_p95_ms", " ".join(tags))})
    latency = "; ".join(
        f"batch {b}: p50 {metric(f'latency_b{b}_p50_ms', '.2f')} ms, "
        f"p95 {metric(f'latency_b{b}_p95_ms', '.2f')} ms"
        for b in batches
    )
    rows = [
        ("pipeline", f"finished in {outputs['seconds']:.0f} s (kfp.local)"),
        ("dataset fingerprint", tags.get("dataset_fingerprint", "-")),
        ("model", f"{tags.get('arch', '-')}, best epoch {tags.get('param.best_epoch', '-')}"),
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
    experiment: Annotated[str, typer.Option(help="KFP experiment.")] = "slipway",
    token: Annotated[str | None, typer.Option(envvar="KFP_TOKEN", help="Bearer token.")] = None,
    cookie: Annotated[str | None, typer.Option(help="Session cookie (Dex/oauth2-proxy).")] = None,
    ssl_ca_cert: Annotated[str | None, typer.Option(help="CA bundle for the API's TLS.")] = None,
    schedule: Annotated[str | None, typer.Option(help="Cron: a recurring run.")] = None,
    run_name: Annotated[str | None, typer.Option(help="Run or schedule name.")] = None,
    data: Data = None,
    model_name: ModelName = None,
    arch: Arch = None,
    epochs: Epochs = None,
    gpus_per_node: Annotated[
        int | None, typer.Option(min=1, help="GPUs per training node (torchrun when > 1).")
    ] = None,
    nodes: Annotated[
        int | None, typer.Option(min=1, help="Training nodes; > 1 runs a Kubeflow TrainJob.")
    ] = None,
    job_kind: Annotated[
        str | None, typer.Option(help="TrainJob (Trainer v2) or PyTorchJob (Training Operator).")
    ] = None,
    accuracy_margin: Margin = None,
    max_p95_ms: Slo = None,
    min_accuracy: MinAcc = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow URI (else ConfigMap).")] = None,
    image: Image = None,
    gpu_node_selector: GpuSelector = None,
    gpu_taint: GpuTaint = None,
    no_gpu: NoGpu = False,
    pvc: Pvc = None,
    sets: Sets = None,
    fresh: Fresh = False,
) -> None:
    """Compile and submit to a KFP cluster: one run, or a recurring run with --schedule."""
    from pipelines.run import submit
    from slipway.registry.lineage import git_revision

    given = dict(
        source_uri=data,
        model_name=model_name,
        arch=arch,
        epochs=epochs,
        gpus_per_node=gpus_per_node,
        nodes=nodes,
        training_job_kind=job_kind,
        accuracy_margin=accuracy_margin,
        max_p95_latency_ms=max_p95_ms,
        min_accuracy=min_accuracy,
        mlflow_tracking_uri=tracking_uri,
        git_commit=git_revision(Path.cwd()) or None,
    )
    result = submit(
        host,
        _params(given, sets),
        experiment=experiment,
        namespace=namespace,
        token=token,
        cookie=cookie,
        ssl_ca_cert=ssl_ca_cert,
        schedule=schedule,
        run_name=run_name,
        fresh=fresh,
        opts=_options(image, gpu_node_selector, gpu_taint, no_gpu, pvc),
    )
    for key, value in result.items():
        typer.echo(f"{key}: {value}")


def register(app: typer.Typer) -> None:
    app.add_typer(pipeline_app, name="pipeline")
