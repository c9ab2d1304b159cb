"""One source of truth: every default the pipeline, its components and the CLI carry is the one
defined in `slipway.config`, checked on the compiled IR as KFP reads it."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from slipway.config.cluster import ClusterOptions
from slipway.config.experiment import ExperimentConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The IR as `kfp dsl compile --py pipelines/training.py` writes it (no slipway code)."""
    out = tmp_path_factory.mktemp("ir") / "training.yaml"
    kfp = Path(sys.executable).parent / "kfp"
    result = subprocess.run(
        [
            str(kfp),
            "dsl",
            "compile",
            "--py",
            str(ROOT / "pipelines/training.py"),
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return next(yaml.safe_load_all(out.read_text()))


def _defaults(spec: dict[str, Any], component: str | None = None) -> dict[str, Any]:
    where = spec["root"] if component is None else spec["components"][component]
    return {
        name: p.get("defaultValue")
        for name, p in where["inputDefinitions"].get("parameters", {}).items()
    }


def test_compiled_section_defaults_are_the_config_defaults(compiled: dict[str, Any]) -> None:
    defaults = _defaults(compiled)
    expected = ExperimentConfig().model_dump(mode="json", exclude_none=True)
    for section in ("data", "model", "training", "promotion", "tracking"):
        assert defaults[section] == expected[section], section


def test_compiled_scale_defaults_are_the_cluster_defaults(compiled: dict[str, Any]) -> None:
    defaults, cluster = _defaults(compiled), ClusterOptions()
    assert defaults["gpus_per_node"] == cluster.gpus_per_node
    assert defaults["nodes"] == cluster.nodes
    assert defaults["job_kind"] == cluster.job_kind
    assert defaults["checkpoint_root"] == cluster.checkpoint_root


def test_the_train_component_repeats_no_setting_with_another_default() -> None:
    from components.train_model import train_model

    params = inspect.signature(train_model.python_func).parameters
    cluster = ClusterOptions()
    mirrored = {
        "gpus": cluster.gpus_per_node,
        "nodes": cluster.nodes,
        "job_kind": cluster.job_kind,
        "job_mount_path": cluster.mount_path,
        "checkpoint_root": cluster.checkpoint_root,
    }
    for name, value in mirrored.items():
        assert params[name].default == value, name
    # settings come in whole sections, without defaults of their own
    for section in ("config", "tracking", "data", "model_config", "promotion"):
        assert params[section].default is inspect.Parameter.empty


def test_no_component_declares_a_training_or_promotion_setting() -> None:
    """Settings reach components as section dicts, never as loose parameters."""
    from components import evaluate_model, export_model, prepare_dataset, register_model
    from components.train_model import train_model
    from slipway.config.promotion import PromotionPolicy
    from slipway.config.training import TrainConfig

    settings = set(TrainConfig.model_fields) | set(PromotionPolicy.model_fields)
    for component in (
        prepare_dataset.prepare_dataset,
        train_model,
        evaluate_model.evaluate_model,
        export_model.export_model,
        register_model.register_model,
    ):
        loose = settings & set(inspect.signature(component.python_func).parameters)
        assert not loose, f"{component.name}: {loose}"


def test_cli_shortcuts_name_real_keys_and_carry_no_defaults() -> None:
    from slipway.cli.experiment import SHORTCUTS, field_help
    from slipway.cli.pipeline import run_cmd, submit_cmd

    for key in SHORTCUTS.values():
        assert field_help(key).endswith(f"[{key}]")
    for command in (run_cmd, submit_cmd):
        for name, param in inspect.signature(command).parameters.items():
            if name in SHORTCUTS:
                assert param.default is None, f"{command.__name__} --{name}"
