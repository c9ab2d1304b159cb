"""The embedding reference of a model folder: a PCA projection and projected training samples.

`embedding.npz` sits beside the ONNX model. It holds the mean and the principal axes fitted on
penultimate-layer vectors of a spread sample of the *training* split, and those vectors already
projected (`reference`); with an INT8 model, the same images through it, projected with the same
axes (`reference_int8`), so an INT8 server is compared with what INT8 makes of the training data
and quantization noise is not mistaken for drift. Serving projects each sampled request the same
way, so drift is tested in 16-32 dimensions instead of the backbone's hundreds. Only NumPy is
needed to read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from slipway.errors import ModelError

EMBEDDING_FILE = "embedding.npz"
EMBEDDING_OUTPUT = "embedding"  # the second output of the exported models
DEFAULT_COMPONENTS = 16


@dataclass(frozen=True)
class Projection:
    """PCA: `(x - mean) @ components.T`; `reference` is the projected training sample."""

    mean: np.ndarray  # (D,)
    components: np.ndarray  # (k, D)
    reference: np.ndarray  # (n, k)
    explained_variance_ratio: np.ndarray  # (k,)
    reference_int8: np.ndarray | None = None  # (n, k), the same images through the INT8 model

    def reference_for(self, precision: str) -> np.ndarray:
        """The projected training sample as the model of `precision` computes it."""
        if precision == "int8" and self.reference_int8 is not None:
            return self.reference_int8
        return self.reference

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @property
    def features(self) -> int:
        return int(self.components.shape[1])

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """(n, D) embeddings -> (n, k) float32 coordinates."""
        if vectors.ndim != 2 or vectors.shape[1] != self.features:
            raise ModelError(
                f"embedding of shape {tuple(vectors.shape)} does not match the projection's "
                f"{self.features} features"
            )
        return ((vectors.astype(np.float32) - self.mean) @ self.components.T).astype(np.float32)

    def save(self, model_dir: str | os.PathLike[str]) -> Path:
        path = Path(model_dir) / EMBEDDING_FILE
        extra = {} if self.reference_int8 is None else {"reference_int8": self.reference_int8}
        np.savez_compressed(
            path,
            mean=self.mean,
            components=self.components,
            reference=self.reference,
            explained_variance_ratio=self.explained_variance_ratio,
            **extra,
        )
        return path


def with_int8_reference(projection: Projection, vectors: np.ndarray) -> Projection:
    """`projection` with the INT8 model's (n, D) embeddings of the same images added."""
    return replace(projection, reference_int8=projection.project(vectors))


def fit_projection(vectors: np.ndarray, dims: int = DEFAULT_COMPONENTS) -> Projection:
    """PCA of (n, D) training embeddings by SVD; keeps min(dims, n - 1, D) axes."""
    if vectors.ndim != 2 or len(vectors) < 2:
        raise ModelError("a projection needs at least two embedding vectors")
    data = vectors.astype(np.float64)
    mean = data.mean(axis=0)
    centred = data - mean
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    keep = max(1, min(dims, len(data) - 1, data.shape[1]))
    variance = singular**2
    ratio = variance[:keep] / max(float(variance.sum()), 1e-12)
    components = axes[:keep].astype(np.float32)
    mean32 = mean.astype(np.float32)
    reference = ((vectors.astype(np.float32) - mean32) @ components.T).astype(np.float32)
    return Projection(mean32, components, reference, ratio.astype(np.float32))


def load_projection(model_dir: str | os.PathLike[str]) -> Projection | None:
    """The folder's projection, or None when the export wrote none (an older model)."""
    path = Path(model_dir) / EMBEDDING_FILE
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return Projection(
                mean=data["mean"].astype(np.float32),
                components=data["components"].astype(np.float32),
                reference=data["reference"].astype(np.float32),
                explained_variance_ratio=data["explained_variance_ratio"].astype(np.float32),
                reference_int8=data["reference_int8"].astype(np.float32)
                if "reference_int8" in data.files
                else None,
            )
    except (OSError, KeyError, ValueError) as exc:
        raise ModelError(f"{path} is not a valid embedding reference: {exc}") from exc
