"""INT8 export on the demo model: parity with FP32, the accuracy gate, and what serving may pick."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from slipway.config.export import Int8Config
from slipway.contract.card import (
    ONNX_INT8_FILE,
    load_card,
    served_measurement,
    served_precision,
)
from slipway.data.scan import scan_dataset
from slipway.errors import ModelError
from slipway.training.export import export_model
from slipway.training.parity import parity_inputs
from slipway.training.quantize import export_int8, int8_decision

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8_model(trained_model: Path, demo_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """The demo model exported again, now with its INT8 variant (the pipeline's export)."""
    folder = tmp_path_factory.mktemp("int8") / "model"
    shutil.copytree(trained_model, folder)
    scan = scan_dataset(demo_data, progress=False)
    export_model(folder, parity_inputs(folder, scan, 16), batch_sizes=(1, 4), scan=scan,
                 int8=Int8Config())  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def failed_int8_model(int8_model: Path, demo_data: Path, tmp_path_factory):
    """The same model with an INT8 variant calibrated on one constant image: it must fail."""
    folder = tmp_path_factory.mktemp("int8-bad") / "model"
    shutil.copytree(int8_model, folder)
    scan = scan_dataset(demo_data, progress=False)
    shape = load_card(folder).transform.input_shape
    constant = np.zeros((4, *shape), dtype=np.float32)
    card = load_card(folder)
    card.export.update(export_int8(folder, scan, Int8Config(), (1,), calibration=constant))
    card.export["serve_precision"] = served_precision(card.export)
    card.save(folder)
    return folder


def test_int8_agrees_with_fp32_on_the_demo_test_split(int8_model: Path) -> None:
    export = load_card(int8_model).export
    assert (int8_model / ONNX_INT8_FILE).is_file()
    assert ONNX_INT8_FILE in export["files"]
    assert export["int8_test_images"] > 0
    assert export["int8_top1_agreement"] >= 0.99
    assert 0 <= export["int8_max_abs_prob_diff"] < 0.5
    assert export["int8"]["servable"] is True and export["int8_servable"] == 1
    assert export["int8"]["calibration_split"] == "train"
    assert export["int8"]["method"] == "minmax"
    for key in ("int8_test_accuracy", "int8_test_macro_f1", "int8_latency_b1_p95_ms"):
        assert export[key] > 0


def test_the_gate_refuses_a_variant_calibrated_on_a_constant_image(failed_int8_model: Path):
    export = load_card(failed_int8_model).export
    assert export["int8"]["servable"] is False and export["int8_servable"] == 0
    assert "FP32 stays the served model" in export["int8"]["reason"]
    assert export["int8_test_accuracy"] < export["fp32_onnx_test_accuracy"] - 0.005
    assert served_precision(export) == "fp32"
    assert served_measurement(export, "latency_b1_p95_ms") == export["latency_b1_p95_ms"]


def test_decision_margin_is_in_points() -> None:
    figures = {"fp32_onnx_test_accuracy": 0.900, "int8_test_accuracy": 0.896}
    assert int8_decision(figures, 0.5)[0] is True
    assert int8_decision(figures, 0.3)[0] is False
    assert int8_decision({**figures, "int8_test_accuracy": 0.91}, 0.0)[0] is True


def test_the_served_measurement_follows_the_served_variant() -> None:
    export = {
        "latency_b1_p95_ms": 10.0,
        "latency_b1_p50_ms": 9.0,
        "int8_latency_b1_p95_ms": 4.0,
        "int8_latency_b1_p50_ms": 3.0,
        "int8": {"servable": True},
    }
    assert served_precision(export) == "int8"
    assert served_measurement(export, "latency_b1_p95_ms") == 4.0
    slower = {**export, "int8_latency_b1_p50_ms": 12.0}
    assert served_precision(slower) == "fp32"
    assert served_measurement({**export, "int8": {"servable": False}}, "latency_b1_p95_ms") == 10


def test_serving_never_picks_an_int8_that_failed_its_gate(failed_int8_model: Path) -> None:
    from services.inference.model import load_version
    from services.inference.runtime import RuntimeOptions, candidates
    from services.inference.source import ModelSource

    export = load_card(failed_int8_model).export
    auto = RuntimeOptions(threads=1, autotune_s=0.2)
    pairs = candidates(auto, failed_int8_model, export)
    assert pairs and all(precision == "fp32" for _, precision in pairs)
    with pytest.raises(ModelError, match="not servable"):
        candidates(RuntimeOptions(precision="int8"), failed_int8_model, export)
    source = ModelSource(str(failed_int8_model))
    model = load_version(source, source.resolve(), "demo", auto)
    model.warm(4)
    assert model.backend.precision == "fp32"
    assert model.about()["runtime"]["int8"]["servable"] is False


def test_auto_may_pick_a_servable_int8_and_says_what_it_measured(int8_model: Path) -> None:
    from services.inference.model import load_version
    from services.inference.runtime import AUTO_MARGIN, RuntimeOptions
    from services.inference.source import ModelSource

    source = ModelSource(str(int8_model))
    model = load_version(
        source, source.resolve(), "demo", RuntimeOptions(threads=1, autotune_s=0.2)
    )
    assert {b.precision for b in model.candidates} == {"fp32", "int8"}
    model.warm(4)
    table = model.about()["runtime"]["autotune"]
    assert len(table) == len({(r["backend"], r["precision"]) for r in table}) >= 2
    chosen = [r for r in table if r.get("chosen")]
    fastest = min(r["score_ms"] for r in table)
    assert len(chosen) == 1 and chosen[0]["score_ms"] <= fastest * (1 + AUTO_MARGIN)
    earlier = table[: table.index(chosen[0])]  # candidates before it: all clearly slower
    assert all(r["score_ms"] > fastest * (1 + AUTO_MARGIN) for r in earlier)
    assert (model.backend.name, model.backend.precision) == (
        chosen[0]["backend"], chosen[0]["precision"],
    )  # fmt: skip
