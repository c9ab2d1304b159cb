"""Each component through kfp.local (SubprocessRunner, this venv), asserting on its artifacts."""

import json
import shutil
from pathlib import Path

import pytest
from kfp import dsl, local

from components.evaluate_model import evaluate_model
from components.export_model import export_model
from components.prepare_dataset import prepare_dataset
from components.register_model import register_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*non-Python base image"),
    pytest.mark.filterwarnings("ignore:.*no effect in the current local runner"),
]


def _init(root: Path) -> None:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))


@pytest.fixture(scope="module")
def prepared(demo_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dsl.Dataset:
    """The demo subset as prepared by the component itself (one bad file added to a copy)."""
    data = tmp_path_factory.mktemp("src") / "data"
    shutil.copytree(demo_data, data)
    (data / "bag" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    _init(tmp_path_factory.mktemp("root"))
    task = prepare_dataset(data={"source": f"file://{data}"})
    return task.outputs["dataset"]


def test_prepare_writes_manifest_reference_and_reports_rejections(prepared, demo_data) -> None:
    from slipway.data.scan import scan_dataset

    folder = Path(prepared.path)
    names = {p.name for p in folder.iterdir()}
    assert names == {"manifest.json", "reference.json", "rejected.json"}
    meta = prepared.metadata
    assert meta["rejected_files"] == 1
    assert meta["rejected"][0].startswith("bag/broken.png: ")
    expected = scan_dataset(demo_data, progress=False)
    assert int(meta["total_images"]) == len(expected.samples)
    assert meta["fingerprint"] == expected.fingerprint  # same images, wherever they are
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["fingerprint"] == meta["fingerprint"]
    assert {s["sha256"] for s in manifest["samples"]} == {s.sha256 for s in expected.samples}
    assert int(meta["test_images"]) == expected.counts()["test"]
    reference = json.loads((folder / "reference.json").read_text())
    assert set(reference["class_frequencies"]) == set(expected.classes)
    assert len(reference["channel_stats"]["gray_mean"]) == 1
    assert sum(reference["brightness"]["counts"]) == expected.counts()["train"]


def test_prepare_refuses_a_mostly_broken_dataset(
    tmp_path: Path, demo_data: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        shutil.copy(next((demo_data / "bag").iterdir()), data / name / "ok.png")
        for index in range(5):
            (data / name / f"bad{index}.png").write_bytes(b"")
    _init(tmp_path / "root")
    with pytest.raises(RuntimeError, match="FAILURE"):
        prepare_dataset(data={"source": str(data)})
    assert "10 of 12 files are unusable (more than 10%)" in capfd.readouterr().out


def test_evaluate_export_register_chain(
    prepared, trained_model: Path, tmp_path: Path, demo_data: Path
) -> None:
    """A trained model folder goes through evaluate -> export -> register, as in the pipeline."""
    model_src = tmp_path / "trained"
    shutil.copytree(trained_model, model_src)
    for name in ("report.json", "report.md", "model.onnx", "model.ts"):
        (model_src / name).unlink()
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    @dsl.pipeline(name="component-chain")
    def chain() -> str:
        dataset = dsl.importer(
            artifact_uri=prepared.uri, artifact_class=dsl.Dataset, metadata=prepared.metadata
        )
        model = dsl.importer(artifact_uri=str(model_src), artifact_class=dsl.Model)
        tracking = {"uri": uri}
        model_config = {"name": "chain", "parity_images": 16, "latency_batch_size": 4}
        evaluated = evaluate_model(dataset=dataset.output, model=model.output, tracking=tracking)
        exported = export_model(
            dataset=dataset.output,
            model=evaluated.outputs["evaluated_model"],
            model_config=model_config,
            tracking=tracking,
        )
        registered = register_model(
            dataset=dataset.output,
            model=exported.outputs["exported_model"],
            model_config=model_config,
            promotion={"max_p95_latency_ms": 10_000.0, "min_accuracy": 0.0},
            tracking=tracking,
            pipeline_run_id="run-42",
            git_commit="0123abc",
        )
        return registered.outputs["version"]

    _init(tmp_path / "root")
    run = chain()
    assert run.output == "1"
    steps = {p.name: p for p in next((tmp_path / "root").iterdir()).iterdir()}

    evaluated = steps["evaluate-model"]
    folder = evaluated / "evaluated_model"
    report = json.loads((folder / "report.json").read_text())
    metrics = json.loads((evaluated / "executor_output.json").read_text())["artifacts"]
    metric_meta = metrics["metrics"]["artifacts"][0]["metadata"]
    assert metric_meta["accuracy"] == pytest.approx(report["accuracy"])
    assert 0.0 <= metric_meta["ece"] <= 1.0
    confusion = metrics["classification"]["artifacts"][0]["metadata"]["confusionMatrix"]
    assert sum(map(sum, (r["row"] for r in confusion["rows"]))) == report["n"]
    assert (evaluated / "report").read_text().startswith("# Evaluation on the test split")

    exported = steps["export-model"] / "exported_model"
    assert {"model.onnx", "model.ts", "report.json"} <= {p.name for p in exported.iterdir()}
    card = json.loads((exported / "model_card.json").read_text())
    assert card["export"]["onnx_max_abs_diff"] <= 1e-3
    assert card["export"]["latency_b4_p95_ms"] >= card["export"]["latency_b4_p50_ms"] > 0
    assert card["export"]["parity_images"] == 16

    from slipway.registry.client import Registry

    registry = Registry(uri)
    tags = registry.describe("chain/1")["tags"]
    assert tags["pipeline_run_id"] == "run-42" and tags["git_commit"] == "0123abc"
    assert tags["dataset_fingerprint"] == prepared.metadata["fingerprint"]
    assert tags["promotion_decision"] == "promoted"
    assert str(registry.alias_version("chain", "production").version) == "1"
    summary = (steps["register-model"] / "summary").read_text()
    assert "chain version 1: promoted" in summary
