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


@registry_app.command("list")
def list_cmd(tracking_uri: TrackingUri = DEFAULT_TRACKING_URI) -> None:
    """Registered models with their version count and aliases."""
    with _registry(tracking_uri) as registry:
        rows = registry.list_models()
    if not rows:
        typer.echo(f"no registered models in {tracking_uri}")
        return
    for row in rows:
        row["aliases"] = ", ".join(f"{a}=v{v}" for a, v in row["aliases"].items()) or "-"
    typer.echo(_table(rows, ["name", "versions", "latest", "aliases"]))


@registry_app.command("show")
def show_cmd(
    ref: Annotated[str, typer.Argument(help="NAME (all versions), NAME@alias or NAME/VERSION.")],
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One version with its lineage tags and gate decision, or every version of a model."""
    from slipway.registry.client import parse_ref

    name, alias, version = parse_ref(ref)
    with _registry(tracking_uri) as registry:
        if alias or version:
            info = registry.describe(ref)
            if as_json:
                typer.echo(json.dumps(info, indent=2))
                return
            aliases = ", ".join(info["aliases"]) or "-"
            typer.echo(f"{info['name']} version {info['version']}  aliases: {aliases}")
            typer.echo(f"source: {info['source']}\nrun: {info['run_id']}  {info['created']}")
            for key, value in sorted(info["tags"].items()):
                typer.echo(f"  {key}: {value}")
            return
        rows = registry.versions(name)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        row["aliases"] = ", ".join(row["aliases"]) or "-"
    typer.echo(_table(rows, ["version", "aliases", "test_accuracy", "decision", "reason"]))


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
    typer.echo(f"{name}: production v{previous or '-'} -> v{version}")


@registry_app.command("rollback")
def rollback_cmd(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    reason: Annotated[str, typer.Option(help="Why, recorded on both versions.")] = "manual",
    tracking_uri: TrackingUri = DEFAULT_TRACKING_URI,
) -> None:
    """Move `production` back to the version that held it before the current one."""
    with _registry(tracking_uri) as registry:
        current, previous = registry.rollback(name, reason)
    typer.echo(f"{name}: production rolled back v{current} -> v{previous} ({reason})")


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
