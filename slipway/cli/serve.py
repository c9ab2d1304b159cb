"""`slipway serve`: run the inference service in the foreground (Ctrl-C stops it gracefully).

Each option is one field of `services.inference.settings.Settings`: the parameter is named
after the field and the help text is the field's description (read when help is shown, so
`services` is imported only by the command). `ALIASES` keeps the few spellings that differ from
a field's name; `--set FIELD=VALUE` reaches every other field. Precedence: defaults < `SLIPWAY_*`
environment < `--set` < options.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperOption

# Settings field -> the option spelling kept for it (the Makefile's and README's commands).
ALIASES: dict[str, str] = {
    "model_source": "--model",
    "mlflow_tracking_uri": "--tracking-uri",
    "prediction_log_path": "--prediction-log",
}


def _option(field: str) -> Any:
    """The option of one Settings field: `--field-name`, plus its alias if it has one."""
    spellings = [ALIASES[field]] if field in ALIASES else []
    return typer.Option(*spellings, "--" + field.replace("_", "-"))


class SettingsCommand(TyperCommand):
    """A command whose options' help texts are the descriptions of the Settings fields."""

    def format_help(self, ctx: typer.Context, formatter: Any) -> None:
        from services.inference.settings import Settings

        for param in self.params:
            field = Settings.model_fields.get(param.name or "")
            if isinstance(param, TyperOption) and field is not None and field.description:
                param.help = field.description
        super().format_help(ctx, formatter)


def serve_cmd(
    model_source: Annotated[str | None, _option("model_source")] = None,
    model_name: Annotated[str | None, _option("model_name")] = None,
    staging_source: Annotated[str | None, _option("staging_source")] = None,
    mlflow_tracking_uri: Annotated[str | None, _option("mlflow_tracking_uri")] = None,
    host: Annotated[str | None, _option("host")] = None,
    port: Annotated[int | None, _option("port")] = None,
    grpc_port: Annotated[int | None, _option("grpc_port")] = None,
    backend: Annotated[str | None, _option("backend")] = None,
    device: Annotated[str | None, _option("device")] = None,
    threads: Annotated[int | None, _option("threads")] = None,
    max_batch_size: Annotated[int | None, _option("max_batch_size")] = None,
    max_batch_wait_ms: Annotated[float | None, _option("max_batch_wait_ms")] = None,
    max_queue: Annotated[int | None, _option("max_queue")] = None,
    reload_interval_s: Annotated[float | None, _option("reload_interval_s")] = None,
    prediction_log_path: Annotated[str | None, _option("prediction_log_path")] = None,
    log_level: Annotated[str | None, _option("log_level")] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option(
            "--set", metavar="FIELD=VALUE", help="Any other setting by its field (repeatable)."
        ),
    ] = None,
) -> None:
    """Serve a model: /v1/predict, Open Inference Protocol v2 (REST and gRPC), /metrics, web page.

    Options and --set override the SLIPWAY_* environment variables (docs/configuration.md).
    """
    # The parameters so far, each named after the Settings field it sets.
    options = {name: value for name, value in locals().items() if name != "sets"}
    from services.environment import load_settings
    from services.inference.server import serve
    from services.inference.settings import Settings, parse_assignments

    overrides = parse_assignments(sets or [])
    overrides.update((name, value) for name, value in options.items() if value is not None)
    settings = load_settings(Settings, **overrides)
    url = f"http://{settings.host}:{settings.port}"
    typer.echo(f"web page:  {url}/")
    typer.echo(f"API docs:  {url}/docs")
    typer.echo(f"predict:   curl -s -F files=@IMAGE.png '{url}/v1/predict?top_k=3'")
    if settings.grpc_port:
        typer.echo(f"gRPC:      {settings.host}:{settings.grpc_port} (Open Inference Protocol)")
    serve(settings)


def register(app: typer.Typer) -> None:
    app.command("serve", cls=SettingsCommand)(serve_cmd)
