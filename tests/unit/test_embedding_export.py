"""The exported models' second output is the penultimate layer, and its reference loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from slipway.contract.card import load_card
from slipway.embedding.projection import EMBEDDING_FILE, EMBEDDING_OUTPUT, load_projection
from slipway.training.embedding import penultimate
from slipway.training.export import INPUT_NAME, OUTPUT_NAME, onnx_session
from slipway.training.models import load_trained

pytestmark = pytest.mark.slow


def _inputs(folder: Path, count: int = 6) -> np.ndarray:
    shape = load_card(folder).transform.input_shape
    return np.random.default_rng(3).standard_normal((count, *shape)).astype(np.float32)


def test_onnx_embedding_equals_the_torch_penultimate_layer(trained_model: Path) -> None:
    inputs = _inputs(trained_model)
    session = onnx_session(trained_model / "model.onnx")
    names = [o.name for o in session.get_outputs()]
    assert names == [OUTPUT_NAME, EMBEDDING_OUTPUT]  # logits stay first for every client
    logits, embedding = session.run(None, {INPUT_NAME: inputs})
    model = load_trained(trained_model)
    expected = penultimate(model, inputs)
    assert embedding.shape == (len(inputs), 512)
    np.testing.assert_allclose(embedding, expected, atol=1e-4)
    import torch

    with torch.inference_mode():
        eager_logits = model(torch.from_numpy(inputs)).numpy()
    np.testing.assert_allclose(logits, eager_logits, atol=1e-4)
    # The features are those the head reads: the head applied to them gives the logits.
    head = model.fc
    np.testing.assert_allclose(
        embedding @ head.weight.detach().numpy().T + head.bias.detach().numpy(),
        logits,
        atol=1e-3,
    )


def test_torchscript_returns_logits_then_embedding(trained_model: Path) -> None:
    import torch

    inputs = _inputs(trained_model)
    scripted = torch.jit.load(str(trained_model / "model.ts"))
    with torch.inference_mode():
        logits, embedding, fmap = (t.numpy() for t in scripted(torch.from_numpy(inputs)))
    assert fmap.ndim == 4 and fmap.shape[:2] == (len(inputs), 512)  # for Grad-CAM
    expected = penultimate(load_trained(trained_model), inputs)
    np.testing.assert_allclose(embedding, expected, atol=1e-4)
    assert logits.shape == (len(inputs), 10)


def test_reference_and_projection_load_from_the_model_folder(trained_model: Path) -> None:
    card = load_card(trained_model)
    assert card.export["embedding"]["file"] == EMBEDDING_FILE
    assert EMBEDDING_FILE in card.export["files"]
    projection = load_projection(trained_model)
    assert projection is not None
    assert 16 <= projection.dims <= 32 and projection.features == 512
    assert len(projection.reference) == card.export["embedding"]["reference_images"] >= 100
    # Projecting the training sample again reproduces the stored reference.
    session = onnx_session(trained_model / "model.onnx")
    embedding = session.run([EMBEDDING_OUTPUT], {INPUT_NAME: _inputs(trained_model, 3)})[0]
    assert projection.project(embedding).shape == (3, projection.dims)
    assert card.export["onnx_embedding_max_abs_diff"] < 1e-4


def test_the_int8_qdq_model_keeps_the_embedding_output(model_copy: Path, demo_data: Path) -> None:
    from slipway.config.export import Int8Config
    from slipway.data.scan import scan_dataset
    from slipway.training.embedding import add_int8_reference
    from slipway.training.quantize import quantize_int8

    inputs = _inputs(model_copy, 16)
    path = quantize_int8(model_copy, inputs, Int8Config())
    session = onnx_session(path)
    assert [o.name for o in session.get_outputs()] == [OUTPUT_NAME, EMBEDDING_OUTPUT]
    logits, embedding = session.run(None, {INPUT_NAME: inputs[:4]})
    fp32 = onnx_session(model_copy / "model.onnx").run(None, {INPUT_NAME: inputs[:4]})[1]
    assert logits.shape == (4, 10) and embedding.shape == fp32.shape
    cosine = (
        (embedding * fp32).sum(1) / np.linalg.norm(embedding, axis=1) / np.linalg.norm(fp32, axis=1)
    )
    assert cosine.min() > 0.9  # the same features, quantized
    # The INT8 model's own view of the training sample, projected with the same axes.
    projection = add_int8_reference(model_copy, scan_dataset(demo_data, progress=False))
    assert projection is not None and projection.reference_int8 is not None
    loaded = load_projection(model_copy)
    assert loaded is not None and loaded.reference_int8 is not None
    assert loaded.reference_int8.shape == loaded.reference.shape
    assert loaded.reference_for("int8") is loaded.reference_int8
    assert loaded.reference_for("fp32") is loaded.reference
    spread = float(loaded.reference.std())
    assert 0 < float(np.abs(loaded.reference_int8 - loaded.reference).mean()) < 0.5 * spread
