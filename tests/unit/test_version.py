"""One version: pyproject.toml's, read from the package metadata by everything else."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import yaml

import slipway
from slipway.config.cluster import SERVE_IMAGE, TRAIN_IMAGE

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_package_reports_the_pyproject_version() -> None:
    assert slipway.__version__ == VERSION


def test_images_chart_and_kserve_runtime_follow_it() -> None:
    assert TRAIN_IMAGE.endswith(f":{VERSION}")
    assert SERVE_IMAGE.endswith(f":{VERSION}")
    chart = yaml.safe_load((ROOT / "charts/inference/Chart.yaml").read_text())
    assert chart["appVersion"] == VERSION
    kserve = yaml.safe_load((ROOT / "k8s/kserve/kustomization.yaml").read_text())
    (image,) = kserve["images"]
    assert f"{image['name']}:{image['newTag']}" == SERVE_IMAGE


def test_the_makefile_tags_images_with_it() -> None:
    dry = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "--no-print-directory", "images"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    tags = re.findall(r" -t (\S+)", dry)
    assert sorted(tags) == sorted([SERVE_IMAGE, TRAIN_IMAGE])


def test_no_other_file_writes_the_version_down() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    allowed = {"pyproject.toml", "charts/inference/Chart.yaml", "k8s/kserve/kustomization.yaml"}
    pattern = re.compile(rf"(?<![\d.]){re.escape(VERSION)}(?![\d.])")
    found = []
    for name in tracked:
        path = ROOT / name
        if name in allowed or name.startswith("tests/schemas/") or not path.is_file():
            continue
        if path.suffix in {".json", ".png"}:
            continue
        text = path.read_text(errors="ignore")
        if pattern.search(text) and "slipway" in text:
            found += [
                f"{name}: {line.strip()}" for line in text.splitlines() if pattern.search(line)
            ]
    assert not found, "\n".join(found)
