"""The experiment options every run command shares: `--config FILE`, `--set key=value`, and a
few shortcuts, each of which is exactly one experiment key (`SHORTCUTS`).

A setting is defined once, in `slipway.config`; the shortcuts' help texts are its descriptions.
Precedence: defaults < the file < `--set` < shortcuts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from slipway.config.experiment import ExperimentConfig, load_experiment

# Option name -> the experiment key it sets.
SHORTCUTS: dict[str, str] = {
    "data": "data.source",
    "model_name": "model.name",
    "arch": "training.arch",
    "epochs": "training.epochs",
    "image_size": "training.image_size",
    "gpus_per_node": "cluster.gpus_per_node",
    "tracking_uri": "tracking.uri",
    "image": "cluster.image",
    "trials": "search.n_trials",
    "parallelism": "search.parallelism",
}


def field_help(key: str) -> str:
    """The description of an experiment key, e.g. `training.epochs`."""
    model: type[BaseModel] = ExperimentConfig
    *sections, name = key.split(".")
    for section in sections:
        annotation = model.model_fields[section].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation
    description = model.model_fields[name].description or ""
    return f"{description} [{key}]"


ConfigFile = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Experiment YAML: data, model, training, promotion, tracking, "
        "cluster sections (see docs/configuration.md).",
    ),
]
Sets = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override one experiment key: section.key=value (repeatable)."),
]
Data = Annotated[str | None, typer.Option(help=field_help(SHORTCUTS["data"]))]
ModelName = Annotated[str | None, typer.Option(help=field_help(SHORTCUTS["model_name"]))]
Arch = Annotated[str | None, typer.Option(help=field_help(SHORTCUTS["arch"]))]
Epochs = Annotated[int | None, typer.Option(help=field_help(SHORTCUTS["epochs"]))]
ImageSize = Annotated[int | None, typer.Option(help=field_help(SHORTCUTS["image_size"]))]
GpusPerNode = Annotated[int | None, typer.Option(help=field_help(SHORTCUTS["gpus_per_node"]))]
TrackingUri = Annotated[str | None, typer.Option(help=field_help(SHORTCUTS["tracking_uri"]))]
Image = Annotated[str | None, typer.Option(help=field_help(SHORTCUTS["image"]))]
Trials = Annotated[int | None, typer.Option(help=field_help(SHORTCUTS["trials"]))]
Parallelism = Annotated[int | None, typer.Option(help=field_help(SHORTCUTS["parallelism"]))]
Search = Annotated[
    bool,
    typer.Option(
        "--search",
        help="The hyperparameter search pipeline over the experiment's `search` section "
        "(docs/training.md, Hyperparameter search) instead of one training run.",
    ),
]


def _format(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def resolve(options: dict[str, Any]) -> ExperimentConfig:
    """The experiment for one command, from its options (`locals()` of the command):
    `config` (the file), then `sets` (`--set`), then every shortcut option that was given."""
    overrides = list(options.get("sets") or [])
    for option, key in SHORTCUTS.items():
        if options.get(option) is not None:
            overrides.append(f"{key}={_format(options[option])}")
    return load_experiment(options.get("config"), overrides)
