"""`slipway serve`: run the inference service in the foreground (Ctrl-C stops it gracefully)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from slipway.errors import SlipwayError


def serve_cmd(
    model: Annotated[
        str | None,
        typer.Option(help="Model folder or models:/<name>@<alias> (env SLIPWAY_MODEL_SOURCE)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Served model name.")] = None,
    staging: Annotated[
        str | None, typer.Option(help="Second model served as <name>-staging.")
    ] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    backend: Annotated[str | None, typer.Option(help="onnxruntime or torch.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda.")] = None,
    threads: Annotated[int | None, typer.Option(help="Intra-op threads (0: default).")] = None,
    max_batch_size: Annotated[int | None, typer.Option(help="Largest batch.")] = None,
    max_batch_wait_ms: Annotated[float | None, typer.Option(help="Longest batch wait.")] = None,
    max_queue: Annotated[int | None, typer.Option(help="Queued images before 503.")] = None,
    reload_interval: Annotated[
        float | None, typer.Option(help="Seconds between source checks (0: off).")
    ] = None,
    prediction_log: Annotated[Path | None, typer.Option(help="JSONL prediction log.")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING.")] = None,
) -> None:
    """Serve a model over HTTP: /v1/predict, Open Inference Protocol v2, /metrics, web page.

    Options override the SLIPWAY_* environment variables, which configure everything else.
    """
    from services.inference.server import serve
    from services.inference.settings import Settings

    given: dict[str, Any] = {
        "model_source": model,
        "model_name": name,
        "staging_source": staging,
        "mlflow_tracking_uri": tracking_uri,
        "host": host,
        "port": port,
        "backend": backend,
        "device": device,
        "threads": threads,
        "max_batch_size": max_batch_size,
        "max_batch_wait_ms": max_batch_wait_ms,
        "max_queue": max_queue,
        "reload_interval_s": reload_interval,
        "prediction_log_path": str(prediction_log) if prediction_log else None,
        "log_level": log_level,
    }
    from pydantic import ValidationError

    try:
        settings = Settings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise SlipwayError(f"invalid serving settings: {problems}") from exc
    url = f"http://{settings.host}:{settings.port}"
    typer.echo(f"web page:  {url}/")
    typer.echo(f"API docs:  {url}/docs")
    typer.echo(f"predict:   curl -s -F files=@IMAGE.png '{url}/v1/predict?top_k=3'")
    serve(settings)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
