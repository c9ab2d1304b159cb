"""`slipway registry list | show | promote | rollback`: the MLflow registry from a terminal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from slipway.registry.client import DEFAULT_TRACKING_URI

registry_app = typer.Typer(
    help="Registered models: versions, aliases, gated promotion, rollback.", no_args_is_help=True
)

TrackingUri = Annotated[
    str,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        help="MLflow tracking/registry URI (default: the local SQLite store).",
    ),
]


@contextmanager
def _registry(tracking_uri: str) -> Iterator[Any]:
    """A Registry whose MLflow and connection failures become one-line errors."""
    from mlflow.exceptions import MlflowException

    from slipway.registry.client import Registry, RegistryError

    try:
        yield Registry(tracking_uri)
    except MlflowException as exc:
        raise RegistryError(exc.message.splitlines()[0]) from exc
    except OSError as exc:
        raise RegistryError(f"cannot reach MLflow at {tracking_uri}: {exc}") from exc


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[str(row.get(c, "")) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


HEADLINE = ("test_accuracy", "test_macro_f1", "test_ece", "best_val_accuracy", "latency_b1_p95_ms")


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


@registry_app.command("list")
def list_cmd(tracking_uri: TrackingUri = DEFAULT_TRACKING_URI) -> None:
    """Registered models: version count, aliases, and production's test accuracy."""
    with _registry(tracking_uri) as registry:
        rows = registry.list_models()
    if not rows:
        typer.echo(f"no registered models in {tracking_uri}")
        return
    for row in rows:
        row["aliases"] = ", ".join(f"{a}=v{v}" for a, v in row["aliases"].items()) or "-"
        row["production accuracy"] = _accuracy(row.pop("production_test_accuracy"))
    typer.echo(_table(rows, ["name", "versions", "latest", "aliases", "production accuracy"]))


def _print_version(info: dict[str, Any]) -> None:
    aliases = ", ".join(info["aliases"]) or "-"
    kind = "MLflow model " + info["model_id"] if info["model_id"] else "folder (previous format)"
    typer.echo(f"{info['name']} version {info['version']}  aliases: {aliases}")
    typer.echo(f"model: {kind}\nsource: {info['source']}\nrun: {info['run_id']}  {info['created']}")
    metrics = info["metrics"]
    keys = [k for k in HEADLINE if k in metrics] + sorted(k for k in metrics if k not in HEADLINE)
    typer.echo("metrics:")
    for key in keys:
        typer.echo(f"  {key}: {metrics[key]:.6g}")
    typer.echo("tags:")
    for key, value in sorted(info["tags"].items()):
        typer.echo(f"  {key}: {value}")


@registry_app.command("show")
def show_cmd(
    ref: Annotated[
        str,
        typer.Argument(
            help="NAME (all versions), NAME@alias, NAME/VERSION, or the models:/ forms."
        ),
    ],
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One version with its metrics (from its model and run), lineage and gate decision, or
    every version of a model."""
    from slipway.registry.ref import ModelRef, RefKind

    parsed = ModelRef.parse(ref, registered=True)
    with _registry(tracking_uri) as registry:
        if parsed.kind is not RefKind.LATEST:
            info = registry.describe(parsed)
            if as_json:
                typer.echo(json.dumps(info, indent=2))
            else:
                _print_version(info)
            return
        rows = registry.versions(parsed.name)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        row["aliases"] = ", ".join(row["aliases"]) or "-"
    typer.echo(_table(rows, ["version", "aliases", "test_accuracy", "decision", "reason"]))


def _production_move(registry: Any, name: str, before: str, after: str) -> str:
    """`v1 -> v2 (test accuracy 0.8638 -> 0.8701)`, the accuracies from the versions' models."""
    accuracy = [
        registry.metrics(registry.get(f"{name}/{v}")).get("test_accuracy") if v else None
        for v in (before, after)
    ]
    return (
        f"v{before or '-'} -> v{after} "
        f"(test accuracy {_accuracy(accuracy[0])} -> {_accuracy(accuracy[1])})"
    )


@registry_app.command("promote")
def promote_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version to point `production` at.")],
    reason: Annotated[str, typer.Option(help="Why, recorded on the version.")] = "manual",
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
) -> None:
    """Move `production` to VERSION by hand, bypassing the gate (recorded as manual)."""
    with _registry(tracking_uri) as registry:
        previous = registry.promote(name, version, f"manual promotion: {reason}")
        move = _production_move(registry, name, previous, version)
    typer.echo(f"{name}: production {move}")


@registry_app.command("rollback")
def rollback_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    reason: Annotated[str, typer.Option(help="Why, recorded on both versions.")] = "manual",
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
) -> None:
    """Move `production` back to the version that held it before the current one."""
    with _registry(tracking_uri) as registry:
        current, previous = registry.rollback(name, reason)
        move = _production_move(registry, name, current, previous)
    typer.echo(f"{name}: production rolled back {move} ({reason})")


@registry_app.command("register")
def register_cmd(
    source: Annotated[
        str,
        typer.Argument(
            help="A model folder, or a registered version (models:/NAME/VERSION) to register "
            "again as an MLflow model."
        ),
    ],
    name: Annotated[str, typer.Option(help="Registered model name of the new version.")],
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
) -> None:
    """Register a model folder as a new MLflow-model version (alias staging).

    Also turns a version registered by an older slipway (a folder of files, no MLmodel) into
    an MLflow model: its files, metrics and lineage are carried over.
    """
    from slipway.registry.lineage import register_from

    with _registry(tracking_uri) as registry:
        version = register_from(registry, source, name)
    typer.echo(f"registered {name} version {version} (alias staging) from {source}")


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
