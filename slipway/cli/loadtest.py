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
    url: Annotated[
        str | None,
        typer.Option(help="Service base URL or full endpoint URL; grpc://HOST:PORT for gRPC."),
    ] = None,
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
    protocol: Annotated[
        str,
        typer.Option(
            help="multipart (/v1/predict), raw (/v1/predict, the image as the body), oip-binary "
            "(Open Inference Protocol REST, binary tensors) or grpc (Open Inference Protocol gRPC)."
        ),
    ] = "multipart",
    model_name: Annotated[
        str | None,
        typer.Option(help="Served model for oip-binary and grpc; default: the service's main."),
    ] = None,
    retry_after: Annotated[
        bool,
        typer.Option(
            "--retry-after/--ignore-retry-after",
            help="A client refused with 429/503 waits as its Retry-After asks before sending "
            "again (well-behaved clients); --ignore-retry-after sends again at once.",
        ),
    ] = True,
) -> None:
    """Closed-loop load: N concurrent clients send images for S seconds."""
    from slipway.errors import SlipwayError
    from slipway.loadtest import KINDS, measure_service

    if (url is None) == (model is None):
        raise SlipwayError("give exactly one of --url and --model")
    if protocol not in KINDS:
        raise SlipwayError(f"--protocol must be one of {', '.join(KINDS)}, got {protocol}")
    with contextlib.ExitStack() as stack:
        if model is not None:
            server = stack.enter_context(local_service(model))
            url = server.url
            if protocol == "grpc":
                url = f"grpc://127.0.0.1:{server.env['SLIPWAY_GRPC_PORT']}"
            if model_name is None and protocol not in ("multipart", "raw"):
                model_name = _main_model(server.url)
        assert url is not None
        if model_name is None and protocol not in ("multipart", "raw"):
            if protocol == "grpc":
                raise SlipwayError("--protocol grpc with --url needs --model-name")
            model_name = _main_model(url)
        report = measure_service(
            url,
            images,
            concurrency,
            duration,
            max_requests=max_requests,
            progress=True,
            kind=protocol,  # type: ignore[arg-type]  # checked against KINDS above
            model=model_name or "",
            retry_after=retry_after,
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

    port, grpc_port = free_port(), free_port()
    argv = command(
        {
            "model_source": model.resolve(),
            "host": "127.0.0.1",
            "port": port,
            "grpc_port": grpc_port,
            "reload_interval_s": 0,
            "drain_seconds": 0,
        }
    )
    # The environment carries the gRPC port too, so the caller can find it.
    env = {"SLIPWAY_GRPC_PORT": str(grpc_port)}
    return start_server(argv, f"http://127.0.0.1:{port}", env=env)


def _main_model(url: str) -> str:
    """The served name of the service's main model, from `GET /v1/models`."""
    import httpx

    base = url.split("/v1/", 1)[0].split("/v2/", 1)[0].rstrip("/")
    return str(httpx.get(f"{base}/v1/models", timeout=10, trust_env=False).json()["default"])


def register(app: typer.Typer) -> None:
    app.command("loadtest")(loadtest_cmd)
