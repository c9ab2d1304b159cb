"""Explanations: occlusion sensitivity of the top class, through the same batcher as predictions.

One explanation is `cells + 1` images (the original and one occluded copy per patch position),
admitted as a block when the expected wait of the queue *ahead* of it is within a smaller
budget than predictions get (`explain_queue_budget_ms`, by default a quarter), so as load grows
explanations are refused with 503 + Retry-After while predictions are still served. The number
of images is bounded by `explain_max_forwards`; asking for a finer grid than that is a 400.
Nothing of an explanation reaches the prediction metrics or the prediction log: its images are
not traffic. With the torch backend, Grad-CAM of the top class is added (one more forward and
backward on the inference thread).
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from services.inference import occlusion
from services.inference.backends import TorchBackend
from services.inference.errors import BadInputError, UnavailableError
from services.inference.images import Prepared, prepare_many
from services.inference.model import LoadedModel, ModelSlot
from services.inference.overlay import overlay_png
from services.inference.service import InferenceService

EXPLAIN_SHED = "explain_shed"  # the rejection reason of an explanation over its budget


@dataclass
class Explanation:
    model: LoadedModel
    prepared: Prepared
    top_index: int
    probability: float
    layout: occlusion.OcclusionPlan
    grid: np.ndarray
    saliency: np.ndarray
    gradcam: np.ndarray | None = None

    def png(self) -> bytes:
        return overlay_png(self.prepared.array, self.saliency, self.model.transform)

    def to_dict(self, latency_ms: float) -> dict[str, object]:
        return {
            "model": self.model.served_name,
            "version": self.model.version,
            "top_class": self.model.classes[self.top_index],
            "confidence": self.probability,
            "method": "occlusion",
            "patch": self.layout.patch,
            "stride": self.layout.stride,
            "forwards": self.layout.forwards,
            "grid": [[round(float(v), 6) for v in row] for row in self.grid],
            "grid_origin": list(self.layout.starts),
            "overlay_png": base64.b64encode(self.png()).decode("ascii"),
            "gradcam": None
            if self.gradcam is None
            else {
                "grid": [[round(float(v), 6) for v in row] for row in self.gradcam],
                "overlay_png": base64.b64encode(
                    overlay_png(self.prepared.array, self.gradcam, self.model.transform)
                ).decode("ascii"),
            },
            "width": self.prepared.width,
            "height": self.prepared.height,
            "latency_ms": round(latency_ms, 3),
        }


def resolve_plan(
    service: InferenceService, model: LoadedModel, patch: int | None, stride: int | None
) -> occlusion.OcclusionPlan:
    """The request's patch and stride, else the settings', else an eighth of the input and half
    a patch; 400 when they do not fit this model's input or need more forwards than allowed
    (what fits depends on the loaded model, not on the request's shape)."""
    settings = service.settings
    size = model.transform.image_size
    side = patch or settings.explain_patch or max(1, size // 8)
    step = stride or settings.explain_stride or max(1, side // 2)
    try:
        layout = occlusion.plan(size, side, step)
    except ValueError as exc:
        raise BadInputError(str(exc)) from None
    if layout.forwards > settings.explain_max_forwards:
        raise BadInputError(
            f"patch {side} with stride {step} on a {size}x{size} input needs {layout.forwards} "
            f"forwards; the limit is {settings.explain_max_forwards} (use a larger patch or "
            f"stride)"
        )
    return layout


async def explain_file(
    service: InferenceService,
    slot: ModelSlot,
    label: str,
    payload: bytes,
    patch: int | None = None,
    stride: int | None = None,
) -> Explanation:
    """Decode one image and compute its occlusion map with batched forwards."""
    model = service.current(slot)
    layout = resolve_plan(service, model, patch, stride)
    worker = service.worker
    worker.admit(
        slot, layout.forwards, service.settings.explain_budget_s, EXPLAIN_SHED, ahead_only=True
    )
    try:
        (prepared,) = await run_in_threadpool(
            prepare_many, [(label, payload)], model.transform, service.settings.max_image_pixels
        )
        arrays = [prepared.array, *occlusion.occluded(prepared.array, layout)]
    except BaseException:
        worker.release(layout.forwards)
        raise
    predictions = await worker.submit(slot, arrays)
    if any(p.model is not predictions[0].model for p in predictions):
        raise UnavailableError("the model version changed during the explanation; retry")
    probs = np.stack([p.probs for p in predictions])
    top = int(np.argmax(probs[0]))
    grid, saliency = occlusion.sensitivity(float(probs[0, top]), probs[1:, top], layout)
    model = predictions[0].model
    gradcam = None
    backend = model.backend
    if isinstance(backend, TorchBackend):  # gradients exist only there
        gradcam = await worker.call(lambda: backend.gradcam(prepared.array, top))
    return Explanation(model, prepared, top, float(probs[0, top]), layout, grid, saliency, gradcam)


def elapsed_ms(began: float) -> float:
    return (time.perf_counter() - began) * 1000
