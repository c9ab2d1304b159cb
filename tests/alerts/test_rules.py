"""The chart's alert rules: promtool checks them, and a promtool unit test per alert shows it
silent one evaluation before its `for:` has passed and firing, with its labels and annotations,
at that moment."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.alerts.cases import CASES, HEALTHY_SERIES, AlertCase
from tests.charts.render import CHART, render_rule_groups, write_rules_file
from tests.helpers import require_tool

RUNBOOK = CHART / "RUNBOOK.md"
DEFAULT_RUNBOOK_URL = "https://github.com/slipway/slipway/blob/main/charts/inference/RUNBOOK.md"


def minutes(duration: str) -> int:
    """Whole minutes of a Prometheus duration such as `5m`, `1h`, `1h30m` or `0m`."""
    units = {"s": 1 / 60, "m": 1, "h": 60, "d": 1440}
    total = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", duration))
    assert total == int(total), f"{duration} is not whole minutes"
    return int(total)


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    path = require_tool("promtool")
    return subprocess.run([path, *args], capture_output=True, text=True, timeout=120)


def unit_test(rules_file: Path, series: dict[str, str], checks: list[dict[str, Any]],
              workdir: Path) -> subprocess.CompletedProcess[str]:  # fmt: skip
    test = {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series.items()],
                "alert_rule_test": checks,
            }
        ],
    }
    path = workdir / "test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False, width=1000))
    return promtool("test", "rules", str(path))


def test_promtool_accepts_the_rules(rules_file: Path, alert_rules: dict) -> None:
    result = promtool("check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules)} rules found" in result.stdout


def test_every_alert_has_a_unit_test(alert_rules: dict) -> None:
    assert {case.alert for case in CASES} == set(alert_rules)


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_alert_fires_exactly_when_for_has_passed(
    case: AlertCase, rules_file: Path, alert_rules: dict, tmp_path: Path
) -> None:
    rule = alert_rules[case.alert]
    hold = minutes(rule["for"])
    assert hold > 0, "an alert without `for:` would page on a single bad evaluation"
    fire_at = case.onset_min + hold
    expected = {
        "exp_labels": {"severity": rule["labels"]["severity"], **case.labels},
        "exp_annotations": {
            "summary": rule["annotations"]["summary"],
            "description": case.description,
            "runbook_url": f"{DEFAULT_RUNBOOK_URL}#{case.alert.lower()}",
        },
    }
    checks = [
        {"eval_time": f"{fire_at - 1}m", "alertname": case.alert, "exp_alerts": []},
        {"eval_time": f"{fire_at}m", "alertname": case.alert, "exp_alerts": [expected]},
    ]
    result = unit_test(rules_file, case.series, checks, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_a_healthy_release_raises_no_alert(
    rules_file: Path, alert_rules: dict, tmp_path: Path
) -> None:
    checks = [
        {"eval_time": f"{at}m", "alertname": name, "exp_alerts": []}
        for name in alert_rules
        for at in (30, 119)
    ]
    result = unit_test(rules_file, HEALTHY_SERIES, checks, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_conventions(alert_rules: dict) -> None:
    for name, rule in alert_rules.items():
        assert re.fullmatch(r"(Inference|DriftMonitor)([A-Z][a-z0-9]+)+", name), name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert "{{" not in annotations["summary"], f"{name}: summary must be constant"
        assert "$labels." in annotations["description"], name
        assert annotations["runbook_url"] == f"{DEFAULT_RUNBOOK_URL}#{name.lower()}"


def test_every_alert_has_a_runbook_section(alert_rules: dict) -> None:
    headings = re.findall(r"^## (\w+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    assert set(alert_rules) <= set(headings), set(alert_rules) - set(headings)
    for name in alert_rules:
        section = RUNBOOK.read_text().split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        for part in ("Meaning", "Impact", "Diagnosis", "Mitigation"):
            assert f"**{part}**" in section, f"{name}: runbook lacks {part}"


def test_parameters_override_every_duration_without_editing_the_files(tmp_path: Path) -> None:
    """What the live tests do: the same rule files with short `for:` and windows."""
    params = {
        "errorRatioFor": "30s", "latencyFor": "30s", "noReadyFor": "30s", "flappingFor": "30s",
        "unavailableFor": "30s", "sheddingFor": "30s", "hpaMaxedFor": "30s", "reloadFor": "30s",
        "predictionLogDropFor": "30s", "driftFor": "30s", "driftMonitorDownFor": "30s",
        "driftStaleFor": "30s", "embeddingDriftFor": "30s",
        "staleModelFor": "30s", "rateWindow": "20s", "reloadWindow": "40s",
        "flappingWindow": "50s", "selector": 'job="slipway"', "driftSelector": 'job="drift"',
        "hpaSelector": 'horizontalpodautoscaler="slipway"', "deploymentSelector": 'deployment="x"',
    }  # fmt: skip
    groups = render_rule_groups({"prometheusRule.params": params})
    alerts = [rule for group in groups for rule in group["rules"] if "alert" in rule]
    assert alerts and all(rule["for"] == "30s" for rule in alerts)
    exprs = "\n".join(rule["expr"] for rule in alerts)
    assert "[5m]" not in exprs and "[15m]" not in exprs
    assert "[20s]" in exprs and "[40s]" in exprs and "[50s]" in exprs
    assert 'namespace="ml-serving"' not in exprs
    path = write_rules_file(tmp_path / "short.yaml", {"prometheusRule.params": params})
    assert yaml.safe_load(path.read_text())["groups"] == groups
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_drift_alerts_only_with_the_drift_monitor() -> None:
    def names(drift: bool) -> set[str]:
        groups = render_rule_groups({"drift.enabled": drift})
        return {rule["alert"] for group in groups for rule in group["rules"]}

    drift_alerts = {"InferenceInputDrift", "DriftMonitorDown", "DriftMonitorStale"}
    assert drift_alerts <= names(True)
    assert not drift_alerts & names(False)
