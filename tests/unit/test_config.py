"""The experiment file: one clear error per mistake, `--set` overrides, `slipway config show`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from slipway.config.experiment import ExperimentConfig, load_experiment, parse_override
from slipway.errors import ConfigError
from tests.helpers import run_cli


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_a_file_and_overrides_resolve_in_order(tmp_path: Path) -> None:
    path = _write(tmp_path, "training: {epochs: 7, lr: 0.01}\nmodel: {name: fashion}\n")
    config = load_experiment(path, ["training.epochs=9", "cluster.gpu_node_selector={pool: a}"])
    assert config.training.epochs == 9  # --set wins over the file
    assert config.training.lr == 0.01
    assert config.model.name == "fashion"
    assert config.cluster.gpu_node_selector == {"pool": "a"}
    assert config.promotion == ExperimentConfig().promotion  # untouched sections: defaults


def test_an_unknown_key_names_the_key_and_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "training:\n  epoch: 5\n")
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    assert str(caught.value) == f"{path}: training.epoch: unknown key"


def test_a_wrong_type_names_the_key_the_value_and_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "training:\n  epochs: many\n")
    with pytest.raises(ConfigError) as caught:
        load_experiment(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: training.epochs: ")
    assert "'many'" in message and "\n" not in message


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nope\.yaml"):
        load_experiment(tmp_path / "nope.yaml")


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_experiment(_write(tmp_path, "- a\n- b\n"))


def test_overrides_keep_text_for_the_field_to_convert() -> None:
    assert parse_override("model.name=2024") == (["model", "name"], "2024")
    assert load_experiment(None, ["model.name=2024"]).model.name == "2024"
    assert (
        load_experiment(
            None, ["training.max_batches_per_epoch=null"]
        ).training.max_batches_per_epoch
        is None
    )
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override("epochs")


def test_an_out_of_range_override_is_refused_before_anything_runs() -> None:
    with pytest.raises(
        ConfigError, match=r"command line: training\.epochs: .*greater than or equal to 1"
    ):
        load_experiment(None, ["training.epochs=0"])


def test_config_show_prints_the_resolved_experiment(tmp_path: Path) -> None:
    path = _write(tmp_path, "training: {epochs: 7}\n")
    result = run_cli("config", "show", "--config", str(path), "--set", "data.source=/data/x")
    assert result.returncode == 0, result.stderr
    shown = yaml.safe_load(result.stdout)
    assert shown["training"]["epochs"] == 7
    assert shown["data"]["source"] == "/data/x"
    assert ExperimentConfig.model_validate(shown).training.epochs == 7


def test_config_show_reports_a_bad_file_in_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "promotion: {min_accuracy: 2}\n")
    result = run_cli("config", "show", "--config", str(path))
    assert result.returncode == 2
    assert f"{path}: promotion.min_accuracy" in result.stderr
    assert "Traceback" not in result.stderr
