"""`slipway drift serve|check|report`: the drift monitor from the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from slipway.errors import SlipwayError

drift_app = typer.Typer(
    help="Drift of served traffic against the model's reference statistics.",
    no_args_is_help=True,
)

ReferenceOpt = Annotated[
    str | None,
    typer.Option(
        help="reference.json, a model folder, or a model reference (models:/<name>@<alias>, "
        "models:/<name>/<version>, models:/<name>, runs:/..., an object-store URI)."
    ),
]
LogOpt = Annotated[
    Path | None,
    typer.Option("--log", help="The service's prediction log, or a glob of one log per replica."),
]
WindowOpt = Annotated[int | None, typer.Option(min=1, help="Newest records to judge.")]
MinOpt = Annotated[int | None, typer.Option(min=1, help="Records needed to judge drift.")]


def _settings(**overrides: Any) -> Any:
    """Settings from SLIPWAY_DRIFT_* env vars, with the options given on the command line."""
    from services.drift.settings import Settings
    from services.environment import load_settings

    given = {key: value for key, value in overrides.items() if value is not None}
    return load_settings(Settings, **given)


def _evaluate_offline(reference: str | None, log: Path | None, **overrides: Any) -> Any:
    """One cycle of the monitor's own loop (`DriftMonitor.run_once`) on the log as it is now."""
    from services.drift.monitor import DriftMonitor, log_paths

    settings = _settings(reference=reference, prediction_log_path=log, **overrides)
    pattern = str(settings.prediction_log_path)
    if not any(Path(path).exists() for path in log_paths(pattern)):
        raise SlipwayError(f"prediction log not found: {pattern}")
    monitor = DriftMonitor.from_settings(settings)
    return monitor, monitor.run_once()


@drift_app.command("serve")
def serve(
    reference: ReferenceOpt = None,
    log: LogOpt = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8081).")] = None,
    host: Annotated[str | None, typer.Option(help="Address (default 127.0.0.1).")] = None,
) -> None:
    """Run the drift monitor service (same as `python -m services.drift`)."""
    from services.drift import server

    server.serve(_settings(reference=reference, prediction_log_path=log, port=port, host=host))


@drift_app.command("check")
def check(
    reference: ReferenceOpt = None,
    log: LogOpt = None,
    window: WindowOpt = None,
    min_records: MinOpt = None,
) -> None:
    """Judge the newest records of a prediction log once; exit 1 when drift is detected."""
    _, evaluation = _evaluate_offline(reference, log, window=window, min_records=min_records)
    typer.echo(json.dumps(evaluation.to_dict(), indent=2))
    if evaluation.drift:
        raise typer.Exit(1)


@drift_app.command("report")
def report(
    out: Annotated[Path, typer.Option(help="HTML file to write.")],
    url: Annotated[
        str | None, typer.Option(help="Fetch the report from a running drift monitor.")
    ] = None,
    reference: ReferenceOpt = None,
    log: LogOpt = None,
    window: WindowOpt = None,
    min_records: MinOpt = None,
) -> None:
    """Write a self-contained HTML report: reference vs current histograms per feature."""
    if url:
        import httpx

        response = httpx.get(url.rstrip("/") + "/report", timeout=30)
        if response.status_code != 200:
            raise SlipwayError(f"{url} answered {response.status_code}: {response.text[:200]}")
        page = response.text
    else:
        from services.drift.report import render_report

        monitor, evaluation = _evaluate_offline(
            reference, log, window=window, min_records=min_records
        )
        page = render_report(monitor, evaluation)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(drift_app, name="drift")
