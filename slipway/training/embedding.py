"""The penultimate-layer feature vector as a second model output, and its stored reference.

The exported graphs return `(logits, embedding)` from one forward: `embedding` is the input of
the classifier's last `Linear` layer (for torchvision's ResNets the pooled, flattened backbone
features), captured with a forward pre-hook, so no second pass and no change to the logits.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from slipway.contract.card import ONNX_FILE
from slipway.embedding.projection import (
    DEFAULT_COMPONENTS,
    EMBEDDING_OUTPUT,
    Projection,
    fit_projection,
)
from slipway.errors import ModelError

if TYPE_CHECKING:
    import torch

    from slipway.data.scan import DatasetScan

log = logging.getLogger(__name__)

REFERENCE_IMAGES = 512


def head_linear(model: torch.nn.Module) -> torch.nn.Module:
    """The classifier's last Linear layer (the one producing the logits)."""
    import torch

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not linears:
        raise ModelError("model has no Linear head; cannot expose its penultimate layer")
    return linears[-1]


def last_pool(model: torch.nn.Module) -> torch.nn.Module | None:
    """The last global pooling layer (its input is the last convolutional feature map)."""
    import torch

    pools = [m for m in model.modules() if isinstance(m, torch.nn.AdaptiveAvgPool2d)]
    return pools[-1] if pools else None


def add_int8_reference(
    model_dir: str | os.PathLike[str], scan: DatasetScan, count: int = REFERENCE_IMAGES
) -> Projection | None:
    """Add the INT8 model's projected reference to the folder's embedding.npz (same images)."""
    from slipway.contract.card import ONNX_INT8_FILE
    from slipway.embedding.projection import load_projection, with_int8_reference

    projection = load_projection(model_dir)
    if projection is None:
        return None
    vectors = onnx_embeddings(model_dir, ONNX_INT8_FILE, scan, count)
    updated = with_int8_reference(projection, vectors)
    updated.save(model_dir)
    return updated


def with_embedding(model: torch.nn.Module, feature_map: bool = False) -> torch.nn.Module:
    """`model` wrapped to return (logits, embedding) from the same forward; with `feature_map`
    (the TorchScript export, for Grad-CAM) also the last convolutional feature map when the
    architecture pools it with a module."""
    import torch

    class WithEmbedding(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner
            self._features: list[torch.Tensor] = []
            self._maps: list[torch.Tensor] = []
            head_linear(inner).register_forward_pre_hook(self._capture)
            pool = last_pool(inner) if feature_map else None
            if pool is not None:
                pool.register_forward_pre_hook(self._capture_map)

        def _capture(self, _: Any, args: tuple[torch.Tensor, ...]) -> None:
            self._features.append(args[0])

        def _capture_map(self, _: Any, args: tuple[torch.Tensor, ...]) -> None:
            self._maps.append(args[0])

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            self._features.clear()
            self._maps.clear()
            logits = self.inner(x)
            embedding = torch.flatten(self._features[-1], 1)
            if self._maps:
                return logits, embedding, self._maps[-1]
            return logits, embedding

    return WithEmbedding(model).eval()


def penultimate(model: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
    """Eager torch embeddings of `inputs` (what the exported output must equal)."""
    import torch

    with torch.inference_mode():
        return with_embedding(model)(torch.from_numpy(inputs))[1].numpy()


def onnx_embeddings(
    model_dir: str | os.PathLike[str], onnx_file: str, scan: DatasetScan, count: int
) -> np.ndarray:
    """Embeddings of `count` training images (spread over the split) through one ONNX model."""
    from pathlib import Path

    from slipway.training.export import INPUT_NAME, onnx_session
    from slipway.training.parity import batches, spread_samples

    samples = spread_samples(scan, "train", count)
    if len(samples) < 2:
        raise ModelError("the train split has fewer than two images; no embedding reference")
    session = onnx_session(Path(model_dir) / onnx_file)
    return np.concatenate(
        [
            session.run([EMBEDDING_OUTPUT], {INPUT_NAME: inputs})[0]
            for inputs, _ in batches(model_dir, scan, samples)
        ]
    )


def reference_projection(
    model_dir: str | os.PathLike[str],
    scan: DatasetScan,
    count: int = REFERENCE_IMAGES,
    dims: int = DEFAULT_COMPONENTS,
) -> Projection:
    """Embeddings of `count` training images through the exported FP32 ONNX model, PCA-fitted.

    The ONNX model, not eager torch, computes them: it is what serving runs.
    """
    projection = fit_projection(onnx_embeddings(model_dir, ONNX_FILE, scan, count), dims)
    log.info(
        "embedding reference: %d training images, %d -> %d dims (%.0f %% of variance)",
        len(projection.reference), projection.features, projection.dims,
        100 * float(projection.explained_variance_ratio.sum()),
    )  # fmt: skip
    return projection
