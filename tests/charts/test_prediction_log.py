"""The prediction log on the shared claim: every inference pod writes its own file, the drift
monitor reads them all. Checked on the rendered objects and with the services' real settings,
log writer and log reader."""

from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Any

import pytest

from services.drift.monitor import DriftMonitor
from services.drift.settings import Settings as DriftSettings
from services.environment import load_settings
from services.inference.metrics import Metrics
from services.inference.predlog import PredictionLog
from services.inference.settings import Settings as InferenceSettings
from tests.charts.objects import (
    DRIFT,
    FULLNAME,
    container_env,
    env_of,
    find,
    kinds,
    pod_environment,
    render,
)
from tests.charts.render import template

PODS = ("slipway-inference-7d9f8c6b5-x2k4q", "slipway-inference-7d9f8c6b5-p9m3z")
REFERENCE = {"classes": ["a", "b"], "predicted_class_frequencies": {"a": 0.5, "b": 0.5}}


def settings_from(environment: dict[str, str], cls: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A service's Settings as the pod would build them from `environment` (an unknown
    `SLIPWAY_*` name is refused, as at the service's start)."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return load_settings(cls)


def test_service_settings_accept_what_the_chart_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SLIPWAY_* value the chart sets passes the field's validation (that every name is
    a field is `test_config_keys`)."""
    docs = render({"staging.enabled": True, "drift.enabled": True, "drift.source": "log"})
    environment = pod_environment(docs, pod_name=PODS[0])
    settings = settings_from(environment, InferenceSettings, monkeypatch)
    assert settings.staging_source == "models:/demo@staging"
    assert settings.host == "0.0.0.0" and settings.prediction_log_backups == 5


def test_drift_settings_accept_what_the_chart_sets(monkeypatch: pytest.MonkeyPatch) -> None:
    environment = env_of(
        render({"drift.enabled": True, "drift.source": "log", "drift.referenceRefreshSeconds": 60}),
        DRIFT,
    )
    settings = settings_from(environment, DriftSettings, monkeypatch)
    assert str(settings.prediction_log_path) == "/var/lib/slipway/predictions/*.jsonl"
    assert settings.state_path == Path("/var/lib/slipway/predictions/drift-state.json")
    assert (settings.reference_refresh_s, settings.window, settings.min_records) == (60, 1000, 100)


def test_a_window_smaller_than_min_records_is_refused() -> None:
    values = {
        "drift.enabled": True,
        "drift.source": "log",
        "drift.window": 50,
        "drift.minRecords": 100,
    }
    result = template(values=values, check=False)
    assert result.returncode != 0
    assert "drift.minRecords (100) must not exceed drift.window (50)" in result.stderr


def test_each_pod_writes_its_own_log_and_the_monitor_reads_them_all(render_scenario) -> None:
    rendered = render_scenario("drift")
    assert "SLIPWAY_PREDICTION_LOG_PATH" not in env_of(rendered.docs)  # only in env, per pod
    env = container_env(rendered.docs)
    names = [entry["name"] for entry in env]
    assert names.index("POD_NAME") < names.index("SLIPWAY_PREDICTION_LOG_PATH")
    (pod_name,) = [entry for entry in env if entry["name"] == "POD_NAME"]
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    (path,) = [entry for entry in env if entry["name"] == "SLIPWAY_PREDICTION_LOG_PATH"]
    assert path["value"] == "/var/lib/slipway/predictions/$(POD_NAME).jsonl"

    pattern = env_of(rendered.docs, DRIFT)["SLIPWAY_DRIFT_PREDICTION_LOG_PATH"]
    assert pattern == "/var/lib/slipway/predictions/*.jsonl"
    written = [pod_environment(rendered.docs, pod_name=pod)["SLIPWAY_PREDICTION_LOG_PATH"]
               for pod in PODS]  # fmt: skip
    assert len(set(written)) == 2
    assert all(fnmatch.fnmatch(file, pattern) for file in written)
    assert not fnmatch.fnmatch(written[0] + ".1", pattern)
    state = env_of(rendered.docs, DRIFT)["SLIPWAY_DRIFT_STATE_PATH"]
    assert not fnmatch.fnmatch(state, pattern)

    # Both Deployments mount the same claim at the folder of the logs.
    claim = rendered.one("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for name in (FULLNAME, DRIFT):
        spec = rendered.one("Deployment", name)["spec"]["template"]["spec"]
        (volume,) = [v for v in spec["volumes"] if v["name"] == "predictions"]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "predictions"]
        assert mount["mountPath"] == "/var/lib/slipway/predictions"


def test_without_the_drift_monitor_the_log_stays_in_the_pod() -> None:
    docs = render({"predictionLog.enabled": True})
    assert env_of(docs)["SLIPWAY_PREDICTION_LOG_PATH"] == (
        "/var/lib/slipway/predictions/predictions.jsonl"
    )
    assert not [entry for entry in container_env(docs) if entry["name"] == "POD_NAME"]
    spec = find(docs, "Deployment")["spec"]["template"]["spec"]
    (volume,) = [v for v in spec["volumes"] if v["name"] == "predictions"]
    assert volume["emptyDir"] == {"sizeLimit": "512Mi"}
    assert "PersistentVolumeClaim" not in kinds(docs)


def test_drift_state_and_logs_survive_on_an_existing_claim() -> None:
    docs = render(
        {
            "drift.enabled": True,
            "drift.source": "log",
            "drift.sharedVolume.existingClaim": "shared-logs",
        }
    )
    assert "PersistentVolumeClaim" not in kinds(docs)
    for name in (FULLNAME, DRIFT):
        spec = find(docs, "Deployment", name)["spec"]["template"]["spec"]
        (volume,) = [v for v in spec["volumes"] if v["name"] == "predictions"]
        assert volume["persistentVolumeClaim"]["claimName"] == "shared-logs"


def _write(pod: str, log: InferenceSettings, first: int, count: int) -> None:
    """One pod's life: start the service's log writer, log `count` predictions, stop."""
    writer = PredictionLog(
        log.prediction_log_path,
        Metrics(),
        max_bytes=log.prediction_log_max_bytes,
        backups=log.prediction_log_backups,
    )
    writer.start()
    for i in range(first, first + count):
        writer.write({"ts": float(i), "pod": pod, "top_class": "a", "confidence": 0.9,
                      "brightness": i / 1000, "contrast": 0.5})  # fmt: skip
    writer.close()


def test_rendered_paths_with_the_real_writer_and_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two pods rotate their own files; the monitor, configured as the chart configures it,
    reads every record once, across rotations and a restart of the monitor."""
    claim = tmp_path / "claim"
    docs = render({
        "drift.enabled": True, "drift.source": "log", "predictionLog.mountPath": str(claim),
        "predictionLog.maxBytes": 2048, "predictionLog.backups": 3,
    })  # fmt: skip
    logs = {pod: settings_from(pod_environment(docs, pod_name=pod), InferenceSettings,
                               monkeypatch) for pod in PODS}  # fmt: skip
    assert {log.prediction_log_path for log in logs.values()} == {
        str(claim / f"{pod}.jsonl") for pod in PODS
    }
    drift = settings_from(env_of(docs, DRIFT), DriftSettings, monkeypatch)
    monitor = DriftMonitor(REFERENCE, drift)
    expected: list[int] = []
    for round_ in range(3):
        for n, pod in enumerate(PODS):
            first = 100 * (2 * round_ + n)
            _write(pod, logs[pod], first, 30)  # about 3 KB: each round rotates each file
            expected += range(first, first + 30)
        assert monitor.poll() == 60
        monitor.save_state()
        if round_ == 1:  # the monitor restarts from its state file on the claim
            monitor = DriftMonitor(REFERENCE, drift)
            assert monitor.poll() == 0
    assert sorted(Path(path).name for path in monitor.readers) == sorted(f"{p}.jsonl" for p in PODS)
    assert all((claim / f"{pod}.jsonl.1").is_file() for pod in PODS), "no log rotated"
    read = sorted(round(record[0] * 1000) for record in monitor.window)
    assert read == sorted(expected)
    assert monitor.invalid == 0


def test_the_default_drift_source_is_prometheus_and_needs_no_shared_volume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    docs = render({"drift.enabled": True})
    assert "PersistentVolumeClaim" not in kinds(docs)
    for deployment in (d for d in docs if d["kind"] == "Deployment"):
        volumes = deployment["spec"]["template"]["spec"]["volumes"]
        assert all("persistentVolumeClaim" not in volume for volume in volumes), volumes
    assert env_of(docs)["SLIPWAY_PREDICTION_LOG_PATH"] == ""  # no log needed
    settings = settings_from(env_of(docs, DRIFT), DriftSettings, monkeypatch)
    assert (settings.source, settings.model_name) == ("prometheus", "demo")
    assert settings.prometheus_url == "http://prometheus-operated.monitoring.svc:9090"
    assert settings.prometheus_selector == 'namespace="ml-serving"'
    assert settings.state_path is None
