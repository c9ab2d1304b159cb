"""`slipway config show`: the experiment a run command would use, resolved and validated."""

from __future__ import annotations

import typer

from slipway.cli.experiment import ConfigFile, Sets, resolve
from slipway.config.experiment import to_yaml

config_app = typer.Typer(help="Experiment configuration.", no_args_is_help=True)


@config_app.command("show")
def show_cmd(config: ConfigFile = None, sets: Sets = None) -> None:
    """Print the resolved experiment (defaults < file < --set) as YAML."""
    typer.echo(to_yaml(resolve(locals())), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
