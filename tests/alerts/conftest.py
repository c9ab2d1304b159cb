"""The chart's alert rules, rendered once per session with the default parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.render import write_rules_file


@pytest.fixture(scope="session")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rules_file(tmp_path_factory.mktemp("rules") / "slipway-rules.yaml")


@pytest.fixture(scope="session")
def alert_rules(rules_file: Path) -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(rules_file.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}
