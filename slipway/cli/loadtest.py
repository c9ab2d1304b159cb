"""`slipway loadtest`: throughput, latency percentiles and errors of a running service."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from slipway.procs import ServerProcess


def loadtest_cmd(
    images: Annotated[Path, typer.Option(help="Folder of images to send (searched recursively).")],
    url: Annotated[str | None, typer.Option(help="Service base URL or full endpoint URL.")] = None,
    model: Annotated[
        Path | None, typer.Option(help="Instead of --url: serve this model folder locally.")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 4,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds of load.")] = 10.0,
    max_requests: Annotated[int | None, typer.Option(min=1, help="Stop after this many.")] = None,
    slo_p95_ms: Annotated[
        float | None, typer.Option(help="Exit 1 unless p95 latency is within this many ms.")
    ] = None,
    max_error_rate: Annotated[
        float,
        typer.Option(min=0.0, max=1.0, help="Largest share of failed requests the SLO allows."),
    ] = 0.01,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Closed-loop load: N concurrent clients send images for S seconds."""
    from slipway.errors import SlipwayError
    from slipway.loadtest import measure_service

    if (url is None) == (model is None):
        raise SlipwayError("give exactly one of --url and --model")
    with contextlib.ExitStack() as stack:
        if model is not None:
            url = stack.enter_context(local_service(model)).url
        assert url is not None
        report = measure_service(
            url, images, concurrency, duration, max_requests=max_requests, progress=True
        )
    typer.echo(report.summary())
    if json_out:
        json_out.write_text(json.dumps(report.to_dict(), indent=2))
    if slo_p95_ms is not None and not report.meets_slo(slo_p95_ms, max_error_rate):
        typer.echo(f"SLO missed: p95 <= {slo_p95_ms} ms, error rate <= {max_error_rate}", err=True)
        raise typer.Exit(1)


def local_service(model: Path) -> contextlib.AbstractContextManager[ServerProcess]:
    """The inference service on a model folder, on a free loopback port, until the exit."""
    from services.inference.server import command
    from slipway.procs import free_port, start_server

    port = free_port()
    argv = command(
        {
            "model_source": model.resolve(),
            "host": "127.0.0.1",
            "port": port,
            "reload_interval_s": 0,
            "drain_seconds": 0,
        }
    )
    return start_server(argv, f"http://127.0.0.1:{port}")


def register(app: typer.Typer) -> None:
    app.command("loadtest")(loadtest_cmd)
