"""The registry wrapper against a real MLflow (SQLite in a temp folder) and a real model folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from slipway.config.promotion import PromotionPolicy
from slipway.errors import SlipwayError
from slipway.promotion.gate import gate
from slipway.promotion.rule import Decision, decide
from slipway.registry.client import (
    PRODUCTION,
    STAGING,
    Registry,
    RegistryError,
    absolute_tracking_uri,
)

POLICY = PromotionPolicy(accuracy_margin=0.0, max_p95_latency_ms=50.0, min_accuracy=0.5)


def test_first_model_is_promoted_when_it_meets_the_floor_and_slo() -> None:
    decision = decide(0.8, 3.0, POLICY)
    assert decision.promote and decision.label == "promoted"
    assert "first production version" in decision.reason


@pytest.mark.parametrize(
    ("accuracy", "p95", "production", "expected"),
    [
        (0.4, 3.0, None, "below the minimum"),
        (0.9, 80.0, None, "exceeds the SLO of 50 ms"),
        (0.9, None, None, "no latency_b1_p95_ms measurement"),
        (0.79, 3.0, 0.80, "worse than production v7 (0.8000) by more than the margin 0"),
    ],
)
def test_gate_rejections_say_why(
    accuracy: float, p95: float | None, production: float | None, expected: str
) -> None:
    decision = decide(accuracy, p95, POLICY, production, "7" if production else "")
    assert not decision.promote and decision.label == "rejected"
    assert expected in decision.reason


def test_margin_allows_a_slightly_worse_candidate() -> None:
    assert not decide(0.795, 3.0, POLICY, 0.80, "1").promote
    assert decide(0.795, 3.0, PromotionPolicy(accuracy_margin=0.01), 0.80, "1").promote
    assert decide(0.80, 3.0, POLICY, 0.80, "1").promote


def test_relative_sqlite_uri_becomes_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = absolute_tracking_uri("sqlite:///sub/mlflow.db")
    assert uri == f"sqlite:///{tmp_path / 'sub' / 'mlflow.db'}"
    assert (tmp_path / "sub").is_dir()
    assert absolute_tracking_uri("http://mlflow:5000") == "http://mlflow:5000"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Registry:
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return Registry(f"sqlite:///{db}")


@pytest.fixture(scope="module")
def scan(demo_data: Path):
    from slipway.data.scan import scan_dataset

    return scan_dataset(demo_data, progress=False)


def _register(registry: Registry, name: str, model: Path, scan) -> str:
    from slipway.steps import version_tags

    run_id = registry.client.create_run(registry.experiment_id()).info.run_id
    tags = version_tags(model, scan, {"git_commit": "abc", "pipeline_run_id": "p-1"})
    return registry.register(name, model, run_id, tags)


def test_registered_version_is_an_mlflow_model_and_a_model_folder_with_lineage(
    registry: Registry, trained_model: Path, scan, tmp_path: Path, monkeypatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    version = _register(registry, "folder", trained_model, scan)
    # registering leaves the process-wide MLflow settings as they were
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///elsewhere.db"
    assert mlflow.get_tracking_uri() == "sqlite:///elsewhere.db"
    assert str(registry.alias_version("folder", STAGING).version) == version
    assert registry.alias_version("folder", PRODUCTION) is None
    folder = registry.download("folder@staging", tmp_path / "dl")
    names = {p.name for p in folder.iterdir()}
    expected = {"model_card.json", "model.onnx", "model.ts", "reference.json", "report.json"}
    expected.add("embedding.npz")  # the embedding drift reference travels with the model
    assert expected | {"MLmodel", "confusion_matrix.png", "requirements.txt", "code"} <= names
    info = registry.describe(f"folder/{version}")
    assert info["format"] == "mlflow-model" and info["source"] == f"models:/{info['model_id']}"
    report = json.loads((trained_model / "report.json").read_text())
    metrics = info["metrics"]
    assert metrics["test_accuracy"] == pytest.approx(report["accuracy"], abs=1e-9)
    assert metrics["latency_b1_p95_ms"] > 0
    assert not [key for key in info["tags"] if key.startswith(("metric.", "param."))]
    assert info["params"]["arch"] == "resnet18" and info["params"]["epochs"] == "2"
    tags = info["tags"]
    assert tags["dataset_fingerprint"] == scan.fingerprint
    assert tags["git_commit"] == "abc" and tags["pipeline_run_id"] == "p-1"
    run = registry.client.get_run(info["run_id"])
    assert run.data.metrics["test_accuracy"] == pytest.approx(report["accuracy"], abs=1e-9)
    (dataset,) = run.inputs.dataset_inputs
    assert dataset.dataset.digest == scan.fingerprint[:32]
    assert json.loads(dataset.dataset.profile)["test"] == scan.counts()["test"]
    assert registry.list_models()[0]["name"] == "folder"


def test_gate_promotes_then_refuses_a_candidate_that_is_not_better_enough(
    registry: Registry, trained_model: Path, scan
) -> None:
    first = _register(registry, "gated", trained_model, scan)
    decision = gate(registry, "gated", first, trained_model, scan, POLICY)
    assert decision.promote
    assert str(registry.alias_version("gated", PRODUCTION).version) == first

    second = _register(registry, "gated", trained_model, scan)
    demanding = PromotionPolicy(accuracy_margin=-0.05, max_p95_latency_ms=50.0, min_accuracy=0.0)
    decision = gate(registry, "gated", second, trained_model, scan, demanding)
    assert not decision.promote
    assert f"worse than production v{first}" in decision.reason
    assert str(registry.alias_version("gated", PRODUCTION).version) == first
    assert str(registry.alias_version("gated", STAGING).version) == second
    tags = registry.describe(f"gated/{second}")["tags"]
    assert tags["promotion_decision"] == "rejected"
    assert tags["promotion_reason"] == decision.reason


def test_latency_slo_blocks_promotion(registry: Registry, trained_model: Path, scan) -> None:
    version = _register(registry, "slow", trained_model, scan)
    decision = gate(
        registry,
        "slow",
        version,
        trained_model,
        scan,
        PromotionPolicy(max_p95_latency_ms=1e-6, min_accuracy=0.0),
    )
    assert not decision.promote and "exceeds the SLO" in decision.reason
    assert registry.alias_version("slow", PRODUCTION) is None


def test_production_measured_on_other_test_data_is_re_evaluated(
    registry: Registry, trained_model: Path, scan
) -> None:
    first = _register(registry, "reeval", trained_model, scan)
    registry.promote("reeval", first, "seeded by the test")
    registry.set_tags("reeval", first, {"test_split_fingerprint": "another-split"})
    second = _register(registry, "reeval", trained_model, scan)
    decision = gate(registry, "reeval", second, trained_model, scan, POLICY)
    report = json.loads((trained_model / "report.json").read_text())
    assert "re-evaluated" in decision.reason
    assert decision.production_accuracy == pytest.approx(report["accuracy"], abs=1e-9)
    assert decision.promote


def test_promote_and_rollback_record_history_and_reason(
    registry: Registry, trained_model: Path, scan
) -> None:
    v1 = _register(registry, "roll", trained_model, scan)
    v2 = _register(registry, "roll", trained_model, scan)
    with pytest.raises(RegistryError, match="no production version"):
        registry.rollback("roll", "nothing yet")
    registry.promote("roll", v1, "first")
    assert registry.promote("roll", v2, "second") == v1
    assert registry.history("roll") == [v1, v2]
    assert registry.rollback("roll", "v2 misbehaves") == (v2, v1)
    assert str(registry.alias_version("roll", PRODUCTION).version) == v1
    assert registry.describe(f"roll/{v2}")["tags"]["rollback_reason"] == "v2 misbehaves"
    with pytest.raises(RegistryError, match="no earlier production version"):
        registry.rollback("roll", "again")
    rows = registry.versions("roll")
    assert [r["version"] for r in rows] == [v2, v1]
    assert PRODUCTION in rows[1]["aliases"]


def test_unknown_names_give_registry_errors(registry: Registry) -> None:
    with pytest.raises(RegistryError, match="no registered model named"):
        registry.get("nope")
    with pytest.raises(RegistryError):
        registry.get("nope@production")
    assert isinstance(Decision(True, "x").label, str)


def test_the_model_carries_all_the_slipway_code_its_pyfunc_needs(
    registry: Registry, trained_model: Path, scan, tmp_path: Path
) -> None:
    """The pyfunc loader imports from the model's own `code/`, and nothing with torch or MLflow."""
    import subprocess
    import sys

    version = _register(registry, "carried", trained_model, scan)
    root = registry.download(f"carried/{version}", tmp_path / "dl")
    code = root / "code"
    probe = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(code)!r})\n"
        "import slipway.pyfunc\n"
        f"model = slipway.pyfunc._load_pyfunc({str(root)!r})\n"
        "files = [m.__file__ for n, m in sys.modules.items() if n.startswith('slipway')]\n"
        "heavy = [n for n in ('torch', 'mlflow', 'kfp') if n in sys.modules]\n"
        "print(json.dumps({'files': files, 'heavy': heavy, 'classes': model.classes}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    assert loaded["files"] and all(f.startswith(str(code)) for f in loaded["files"]), loaded
    assert loaded["heavy"] == []
    assert loaded["classes"] == scan.classes


def test_a_local_folder_is_registered_as_staging_with_its_metrics(
    registry: Registry, trained_model: Path
) -> None:
    from slipway.registry.lineage import register_from

    version = register_from(registry, str(trained_model), "from-folder")
    info = registry.describe(f"from-folder/{version}")
    assert info["aliases"] == [STAGING] and info["format"] == "mlflow-model"
    assert info["tags"]["registered_from"] == str(trained_model)
    report = json.loads((trained_model / "report.json").read_text())
    assert info["metrics"]["test_accuracy"] == pytest.approx(report["accuracy"], abs=1e-9)
    with pytest.raises(SlipwayError, match="holds neither an MLmodel nor a model_card"):
        register_from(registry, str(trained_model / "checkpoints"), "from-folder")
