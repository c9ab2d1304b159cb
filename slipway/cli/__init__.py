"""The `slipway` command line. Sub-command groups live in sibling modules.

Heavy imports (torch, kfp, services) happen inside the commands that need them, so `--help`
stays fast and the import direction rules hold.
"""

from __future__ import annotations

import logging
import sys

import typer

from slipway.cli import config, core, drift, loadtest, pipeline, registry, rollout, serve
from slipway.errors import SlipwayError

app = typer.Typer(
    name="slipway",
    help="From an image-classification dataset to an autoscaled, monitored inference service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config.register(app)
core.register(app)
drift.register(app)
loadtest.register(app)
pipeline.register(app)
registry.register(app)
rollout.register(app)
serve.register(app)


def main() -> None:
    """Console-script entry point: user mistakes print one line and exit 2, never a trace."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except SlipwayError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(2)
