"""`SearchConfig`: a hyperparameter search over the `training` section, stated in the experiment.

    search:
      method: tpe              # grid | random | tpe
      n_trials: 8
      parallelism: 2
      rounds: 2
      space:
        training.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
        training.batch_size: {choice: [32, 64, 128]}
        training.arch: {value: resnet18}

Every parameter is checked here, when the experiment is loaded (before anything is compiled or
runs): a key that is not a `training` setting, an empty choice, low > high, a log range that
starts at or below zero, and values the training setting itself refuses are each one error
naming the key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from slipway.config.base import Section
from slipway.config.training import TrainConfig

SEARCHABLE_SECTION = "training"


class ParamSpace(Section):
    """One searched parameter: a choice list, a range, or a fixed value (exactly one)."""

    choice: list[Any] | None = Field(None, description="Values to choose from.")
    low: float | None = Field(None, description="Range: lowest value (inclusive).")
    high: float | None = Field(None, description="Range: highest value (inclusive).")
    log: bool = Field(False, description="Range: sample on a log scale (low must be > 0).")
    type: Literal["float", "int"] = Field("float", description="Range: float or int values.")
    value: Any = Field(None, description="A fixed value (the same in every trial).")

    @model_validator(mode="after")
    def _one_kind(self) -> ParamSpace:
        kinds = [
            name
            for name, given in (
                ("choice", self.choice is not None),
                ("range", self.low is not None or self.high is not None),
                ("value", self.value is not None),
            )
            if given
        ]
        if len(kinds) != 1:
            raise ValueError("give exactly one of choice, low/high (a range) or value")
        if self.choice is not None and not self.choice:
            raise ValueError("choice is empty")
        if kinds == ["range"]:
            if self.low is None or self.high is None:
                raise ValueError("a range needs both low and high")
            if self.low > self.high:
                raise ValueError(f"low ({self.low}) > high ({self.high})")
            if self.log and self.low <= 0:
                raise ValueError(f"a log range needs low > 0 (got {self.low})")
        return self

    @property
    def kind(self) -> str:
        if self.choice is not None:
            return "choice"
        return "value" if self.value is not None else "range"

    def bounds(self) -> tuple[float, float]:
        """(low, high) of a range, as ints for an int range."""
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return int(self.low), int(self.high)
        return self.low, self.high


class PruningConfig(Section):
    """Stopping trials that are far behind their siblings at the same epoch."""

    rule: Literal["none", "median", "halving"] = Field(
        "median",
        description="median: stop a trial worse than the median of the other trials at the "
        "same epoch; halving: keep only the best 1/reduction_factor at each epoch (successive "
        "halving); none: every trial runs all its epochs.",
    )
    warmup_epochs: int = Field(1, ge=0, description="Epochs every trial runs before any stop.")
    min_trials: int = Field(
        2, ge=1, description="Other trials that must have reached an epoch before comparing."
    )
    reduction_factor: int = Field(2, ge=2, description="halving: keep the best 1/this share.")


class SearchConfig(Section):
    """A hyperparameter search: trials of the training section, the best one registered."""

    method: Literal["grid", "random", "tpe"] = Field(
        "random",
        description="grid: every combination (ranges take grid_points values); random: "
        "independent draws; tpe: Optuna's TPE, each round conditioned on the earlier ones.",
    )
    space: dict[str, ParamSpace] = Field(
        default_factory=dict,
        description="Searched parameters by key (training.lr, training.arch, ...): "
        "{choice: [...]}, {low, high, log, type} or {value}.",
    )
    n_trials: int = Field(8, ge=1, description="Trials in all (grid: at most this many).")
    parallelism: int = Field(
        2, ge=1, description="Trials running at once (compiled into the pipeline graph)."
    )
    rounds: int = Field(
        1,
        ge=1,
        description="Successive rounds of parallel trials (compiled into the graph); tpe "
        "conditions each round on the results of the ones before.",
    )
    grid_points: int = Field(3, ge=2, description="grid: values taken from each range.")
    seed: int = Field(0, description="Seed of the sampler: the same seed, the same trials.")
    objective: Literal["val_accuracy", "val_loss"] = Field(
        "val_accuracy",
        description="What picks the best trial: validation accuracy (max) or loss (min).",
    )
    max_latency_ms: float | None = Field(
        None,
        gt=0,
        description="Latency budget: trials whose batch-1 p95 CPU forward (torch, measured "
        "after training) is slower cannot win; empty: no budget.",
    )
    pruning: PruningConfig = Field(default_factory=PruningConfig)

    @field_validator("space")
    @classmethod
    def _known_keys(cls, space: dict[str, ParamSpace]) -> dict[str, ParamSpace]:
        """Checked, and sorted by key: a pipeline parameter (a protobuf Struct) does not keep
        the order of a mapping, and the grid's order and the samplers' draws follow it."""
        for key, param in space.items():
            check_param(key, param)
        return dict(sorted(space.items()))

    @property
    def maximize(self) -> bool:
        return self.objective == "val_accuracy"

    def trials_per_round(self) -> int:
        return -(-self.n_trials // self.rounds)


def searchable_keys() -> list[str]:
    return [f"{SEARCHABLE_SECTION}.{name}" for name in TrainConfig.model_fields]


def check_param(key: str, param: ParamSpace) -> None:
    """Refuse a key that is not a training setting, and values that setting refuses."""
    section, _, name = key.partition(".")
    if section != SEARCHABLE_SECTION or name not in TrainConfig.model_fields:
        raise ValueError(f"{key}: unknown parameter; searchable: {', '.join(searchable_keys())}")
    if param.kind == "choice":
        values = list(param.choice or [])
    elif param.kind == "value":
        values = [param.value]
    else:
        values = list(param.bounds())
    for value in values:
        try:
            TrainConfig.model_validate({name: value})
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise ValueError(f"{key}: {value!r} is not a valid value: {reason}") from None
