from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_cli


def test_help_lists_the_commands() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("data", "train", "evaluate", "export"):
        assert command in result.stdout


def test_missing_dataset_is_one_line_error(tmp_path: Path) -> None:
    result = run_cli("train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "m"))
    assert result.returncode == 2
    assert "dataset folder not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_arch_is_refused_before_any_work(demo_data: Path, tmp_path: Path) -> None:
    result = run_cli("train", "--data", str(demo_data), "--out", str(tmp_path / "m"), "--arch", "x")
    assert result.returncode == 2
    assert "training.arch: Input should be 'resnet18'" in result.stderr
    assert "(got 'x')" in result.stderr
    assert not (tmp_path / "m").exists()


def test_empty_class_is_reported(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "d" / cls).mkdir(parents=True)
    Image.new("L", (8, 8)).save(tmp_path / "d" / "a" / "x.png")
    result = run_cli("train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "m"))
    assert result.returncode == 2
    assert "without any valid image: b" in result.stderr


@pytest.mark.slow
def test_demo_then_inspect(tmp_path: Path) -> None:
    demo = run_cli("data", "demo", "--out", str(tmp_path / "d"), "--per-class", "3")
    if demo.returncode == 2 and "dataset-fashion-mnist" in demo.stderr:
        pytest.skip("dataset-fashion-mnist not installed")
    assert demo.returncode == 0, demo.stderr
    inspect = run_cli("data", "inspect", str(tmp_path / "d"))
    assert inspect.returncode == 0
    assert '"total": 30' in inspect.stdout
