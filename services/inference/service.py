"""The serving core: served models, the batcher, the prediction log, and one predict path.

Every way in is a thin shell over `InferenceService`: the v1 routes and the web page directly,
the Open Inference Protocol (REST and gRPC) through `dataplane.DataPlane`; so every protocol
gets the same preprocessing, batching, metrics and log. Which slot answers a request for the main
model (canary), and the shadow copies, are `variants.Variants`' decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import numpy as np
from starlette.concurrency import run_in_threadpool

from services.inference.admission import LoopLag, claim
from services.inference.batching import InferenceWorker
from services.inference.embeddings import EmbeddingWindows
from services.inference.errors import ModelNotFoundError, UnavailableError
from services.inference.images import Prepared, pixel_count, prepare_many
from services.inference.metrics import CANARY, PRODUCTION, Metrics
from services.inference.model import LoadedModel, ModelSlot
from services.inference.predlog import PredictionLog
from services.inference.queued import Prediction
from services.inference.reload import Loader, thaw_heap
from services.inference.settings import Settings
from services.inference.source import ModelSource
from services.inference.variants import Variants
from slipway.contract.card import load_card
from slipway.errors import SlipwayError

log = logging.getLogger(__name__)


@dataclass
class Answer:
    """Predictions for one request, all from the same model version."""

    model: LoadedModel
    inputs: list[Prepared]
    predictions: list[Prediction]
    variant: str


def served_name(settings: Settings, source: ModelSource) -> str:
    """MODEL_NAME, else the registered model name, else the local folder card's name."""
    if settings.model_name:
        return settings.model_name
    if source.registered_name:
        return source.registered_name
    try:
        return load_card(source.ref.local_path()).name
    except SlipwayError:
        return "model"


class InferenceService:
    """Everything a request needs, owned by one app."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.worker = InferenceWorker(
            metrics,
            max_batch=settings.max_batch_size,
            max_wait_s=settings.max_batch_wait_ms / 1000.0,
            max_queue=settings.max_queue,
            timeout_s=settings.request_timeout_s,
            budget_s=settings.admission_budget_s,
            embeddings=settings.embedding_sample_rate > 0,
        )
        self.loop_lag = LoopLag(self.worker)
        self.embeddings = EmbeddingWindows(settings, metrics)
        self.loader = Loader(settings, self.worker, metrics)
        cache = settings.model_cache_dir
        main_source = ModelSource(settings.model_source, settings.mlflow_tracking_uri, cache)
        self.main = ModelSlot(served_name(settings, main_source), main_source)
        self.slots: dict[str, ModelSlot] = {self.main.name: self.main}
        staging: ModelSlot | None = None
        if settings.staging_source:
            source = ModelSource(settings.staging_source, settings.mlflow_tracking_uri, cache)
            staging = ModelSlot(f"{self.main.name}-staging", source)
            self.slots[staging.name] = staging
        self.predlog: PredictionLog | None = None
        if settings.prediction_log_path:
            self.predlog = PredictionLog(
                settings.prediction_log_path,
                metrics,
                max_bytes=settings.prediction_log_max_bytes,
                backups=settings.prediction_log_backups,
            )
        self.draining = False
        self._tasks: list[asyncio.Task[None]] = []
        for slot in self.slots.values():
            metrics.init_model(slot.name, [], CANARY if slot is staging else PRODUCTION)
        self.variants = Variants(
            settings, self.main, staging, self.worker, metrics, lambda: self.draining,
            self._observe,
        )  # fmt: skip

    @property
    def ready(self) -> bool:
        """Ready for traffic: the main model is loaded and the service is not draining.

        A staging model that is missing or broken does not take production traffic down; its
        own state shows on `/v2/models/<name>-staging/ready` and `slipway_inference_ready`.
        """
        return not self.draining and self.main.ready

    async def start(self) -> None:
        """Start the inference thread, the log writer and each slot's loader (in background)."""
        self.worker.start()
        self.loop_lag.start()
        if self.predlog:
            self.predlog.start()
        for slot in self.slots.values():
            task = asyncio.create_task(self._follow(slot), name=f"follow-{slot.name}")
            self._tasks.append(task)
        if self.embeddings.enabled:
            self._tasks.append(asyncio.create_task(self._test_embeddings(), name="embedding-mmd"))

    async def _test_embeddings(self) -> None:
        """Run the embedding drift test every interval, off the loop and the inference thread."""
        while True:
            await asyncio.sleep(self.settings.embedding_drift_interval_s)
            try:
                await asyncio.to_thread(self.embeddings.evaluate)
            except Exception:
                log.exception("embedding drift test failed")

    async def _follow(self, slot: ModelSlot) -> None:
        await self.loader.follow(slot, lambda: self.draining)

    async def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ready and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.ready

    async def stop(self) -> None:
        """Report not ready, finish every accepted request, flush the log."""
        self.draining = True
        for slot in self.slots.values():
            self.metrics.ready.labels(slot.name).set(0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.loop_lag.stop()
        await self.variants.stop()
        await asyncio.to_thread(self.worker.close, self.settings.request_timeout_s)
        if self.predlog:
            await asyncio.to_thread(self.predlog.close)
        thaw_heap()
        log.info("stopped: every accepted request answered, prediction log flushed")

    def slot(self, name: str | None) -> ModelSlot:
        """The served model called `name` (default: the main one), or 404."""
        if not name:
            return self.main
        slot = self.slots.get(name)
        if slot is None:
            known = ", ".join(sorted(self.slots))
            raise ModelNotFoundError(f"unknown model {name!r}; served models: {known}")
        return slot

    def current(self, slot: ModelSlot) -> LoadedModel:
        """The slot's loaded version, or 503 while it is still loading or draining."""
        model = slot.current
        if model is None:
            error = self.loader.last_error.get(slot.name, "")
            detail = f": {error}" if error else ""
            raise UnavailableError(f"model {slot.name} is not ready yet{detail}")
        return model

    def _admit(self, slot: ModelSlot, count: int) -> float:
        """Reserve room for `count` images (taking over the request's held room) or raise 503;
        when their answers are due (time.monotonic())."""
        arrived, held = claim()
        self.worker.admit(slot, count, held=held)
        return self.worker.deadline(arrived)

    async def predict_files(
        self, slot: ModelSlot, payloads: list[tuple[str, bytes]], route: str
    ) -> Answer:
        """Decode, preprocess (small uploads on the loop, larger on a thread) and predict."""
        began = time.perf_counter()
        model = self.current(slot)
        due = self._admit(slot, len(payloads))
        gauge = self.metrics.in_flight.labels(slot.name)
        gauge.inc()
        try:
            try:
                limits = (model.transform, self.settings.max_image_pixels)
                if pixel_count(payloads) <= self.settings.inline_decode_max_pixels:
                    inputs = prepare_many(payloads, *limits)
                else:
                    inputs = await run_in_threadpool(prepare_many, payloads, *limits)
            except BaseException:
                self.worker.release(len(payloads))
                raise
            return await self._run(slot, inputs, route, began, due, payloads)
        finally:
            gauge.dec()

    async def predict_tensors(self, slot: ModelSlot, inputs: list[Prepared], route: str) -> Answer:
        """Predict already preprocessed float32 (C, H, W) inputs."""
        began = time.perf_counter()
        self.current(slot)
        due = self._admit(slot, len(inputs))
        gauge = self.metrics.in_flight.labels(slot.name)
        gauge.inc()
        try:
            return await self._run(slot, inputs, route, began, due)
        finally:
            gauge.dec()

    async def _run(
        self,
        slot: ModelSlot,
        inputs: list[Prepared],
        route: str,
        began: float,
        due: float,
        payloads: list[tuple[str, bytes]] | None = None,
    ) -> Answer:
        predictions = await self.worker.submit(slot, [p.array for p in inputs], due)
        variant = self.variants.variant_of(slot.name)
        points = self._observe(inputs, predictions)
        self._log(inputs, predictions, points, route, variant, began)
        if self.variants.shadows(slot):
            self.variants.shadow(predictions, inputs, payloads)
        return Answer(predictions[0].model, inputs, predictions, variant)

    def _observe(
        self, inputs: list[Prepared], predictions: list[Prediction]
    ) -> list[np.ndarray | None]:
        """The prediction metrics of the model that answered, and the embedding windows; the
        projected embedding of each sampled prediction (None where not sampled)."""
        m = self.metrics
        points: list[np.ndarray | None] = []
        for item, pred in zip(inputs, predictions, strict=True):
            model = pred.model
            top = int(np.argmax(pred.probs))
            m.observe_prediction(
                model.served_name, model.version, model.classes[top], float(pred.probs[top]),
                (item.brightness, item.contrast),
            )  # fmt: skip
            point = None
            if pred.embedding is not None:
                point = self.embeddings.add(
                    model.served_name, model.version, model.projection, pred.embedding,
                    model.backend.precision,
                )  # fmt: skip
            points.append(point)
        return points

    def _log(
        self,
        inputs: list[Prepared],
        predictions: list[Prediction],
        points: list[np.ndarray | None],
        route: str,
        variant: str,
        began: float,
    ) -> None:
        if not self.predlog:
            return
        now = time.time()
        latency_ms = (time.perf_counter() - began) * 1000
        for item, pred, point in zip(inputs, predictions, points, strict=True):
            model = pred.model
            top = int(np.argmax(pred.probs))
            record = {
                "ts": now,
                "model": model.served_name,
                "variant": variant,
                "version": model.version,
                "route": route,
                "top_class": model.classes[top],
                "confidence": round(float(pred.probs[top]), 6),
                "latency_ms": round(latency_ms, 3),
                "width": item.width,
                "height": item.height,
                "brightness": round(item.brightness, 6),
                "contrast": round(item.contrast, 6),
            }
            if point is not None:  # a sampled request: its projected embedding
                record["embedding"] = [round(float(v), 4) for v in point]
            self.predlog.write(record)
