"""`ExperimentConfig`: one YAML file with the data, model, training, promotion, tracking and
cluster sections of a run, the hyperparameter `search` over the training section (used by
`slipway pipeline ... --search`), plus `--set section.key=value` overrides.

    data:      {source: /data/images, val_fraction: 0.1}
    training:  {arch: resnet18, epochs: 5}
    promotion: {max_p95_latency_ms: 50}
    rollout:   {window: 10m, max_error_ratio: 0.01}

Every error names the key and the file: an unknown key, a wrong type, a missing file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from slipway.config.base import Section
from slipway.config.cluster import ClusterOptions
from slipway.config.export import Int8Config
from slipway.config.promotion import PromotionPolicy
from slipway.config.rollout import RolloutCriteria
from slipway.config.search import SearchConfig
from slipway.config.training import TrainConfig
from slipway.errors import ConfigError


class DataConfig(Section):
    """The dataset and how it is split and checked."""

    source: str = Field(
        "/mnt/slipway/datasets/fashion-mnist",
        description="ImageFolder: local or PVC path, s3:// or gs:// URI.",
    )
    val_fraction: float = Field(0.1, ge=0, lt=1, description="Share of images for validation.")
    test_fraction: float = Field(0.1, ge=0, lt=1, description="Share of images for the test.")
    max_rejected_fraction: float = Field(
        0.1, ge=0, le=1, description="The run fails if more of the files are unusable."
    )


class ModelConfig(Section):
    """The registered model and the checks its export must pass."""

    name: str = Field("slipway-classifier", min_length=1, description="Registered model name.")
    parity_images: int = Field(64, ge=1, description="Test images of the export parity check.")
    parity_tolerance: float = Field(
        1e-3, gt=0, description="Largest |logit difference| allowed between eager and ONNX."
    )
    latency_batch_size: int = Field(
        8, ge=1, description="Batch size of the batch-N latency measurement."
    )
    int8: Int8Config = Field(default_factory=Int8Config)


class TrackingConfig(Section):
    """Where runs and model versions are recorded."""

    uri: str = Field(
        "",
        description="MLflow tracking URI; empty: MLFLOW_TRACKING_URI of the pod (cluster) or "
        "sqlite:///.slipway/mlflow.db (local runs).",
    )
    experiment: str = Field("slipway", min_length=1, description="MLflow experiment.")


class ExperimentConfig(Section):
    """Everything one pipeline run is told."""

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainConfig = Field(default_factory=TrainConfig)
    promotion: PromotionPolicy = Field(default_factory=PromotionPolicy)
    rollout: RolloutCriteria = Field(default_factory=RolloutCriteria)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    cluster: ClusterOptions = Field(default_factory=ClusterOptions)
    search: SearchConfig = Field(default_factory=SearchConfig)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`section.key=value` -> (["section", "key"], value).

    A mapping or list is read as YAML (`cluster.gpu_node_selector={pool: gpu}`), `null` as
    empty; any other value stays text for the field's own type to convert, so `model.name=2024`
    is a name and `training.epochs=5` a number.
    """
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set needs section.key=value, got {item!r}")
    try:
        parsed = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        parsed = raw
    value = parsed if parsed is None or isinstance(parsed, dict | list) else raw
    return key.strip().split("."), value


def _apply(tree: dict[str, Any], path: list[str], value: Any, item: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {item}: {'.'.join(path[:-1])} is not a section")
        node = child
    node[path[-1]] = value


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded


def describe_errors(exc: ValidationError, origin: str) -> str:
    """One line per problem, each naming the key: `exp.yaml: training.epochs: ...`."""
    lines = []
    for error in exc.errors():
        key = ".".join(str(p) for p in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        else:
            message = error["msg"]
            if error["type"] not in ("missing",) and "input" in error:
                message += f" (got {error['input']!r})"
        lines.append(f"{origin}: {key}: {message}")
    return "\n".join(lines)


def load_experiment(
    path: str | os.PathLike[str] | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """The experiment file (or the defaults) with `--set` overrides applied, validated."""
    tree = _read(Path(path)) if path else {}
    for item in overrides:
        keys, value = parse_override(item)
        _apply(tree, keys, value, item)
    origin = str(path) if path else "defaults"
    if overrides:
        origin = f"{path} + command line" if path else "command line"
    try:
        return ExperimentConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(describe_errors(exc, origin)) from None


def to_yaml(config: ExperimentConfig) -> str:
    """The resolved configuration as YAML, in field order (what `slipway config show` prints)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
