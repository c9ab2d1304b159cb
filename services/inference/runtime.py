"""Which backend and precision serve a model: fixed by settings, or `auto`, measured at load.

`auto` opens every servable combination this host has (CPU: onnxruntime and, when installed,
OpenVINO; FP32 and, only when the export's accuracy gate passed, INT8. CUDA: TorchScript in FP16
and FP32, onnxruntime FP32), times a few forwards of each on the inference thread within a
small time budget, and keeps the fastest; a candidate earlier in the order (INT8 before FP32,
OpenVINO before onnxruntime: OpenVINO serves FP32 on streams) unless a later one measured more
than `AUTO_MARGIN` faster. An INT8 model that failed its gate is never a
candidate; asking for it explicitly is a load error. An FP16 candidate is kept only when its
probabilities agree with the FP32 model's within `FP16_MAX_PROB_DIFF` on the warm-up batch.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.inference.backends import PRECISIONS, Backend, load_backend, softmax
from services.inference.cpus import available_cpus
from services.inference.settings import Settings
from slipway.contract.card import ONNX_INT8_FILE, int8_servable
from slipway.errors import ModelError

log = logging.getLogger(__name__)

AUTO_BATCH = 8  # the batch the per-image cost is also measured at (what load makes)
MAX_REPEATS = 10
# A later candidate is chosen over an earlier one only when it measured this much faster: a
# warm-up of a few seconds is noisier than that, and the order is a measured preference.
AUTO_MARGIN = 0.10
FP16_MAX_PROB_DIFF = 0.01  # most an FP16 probability may differ from FP32's to be servable


@dataclass(frozen=True)
class RuntimeOptions:
    """How to open a model: the settings' choices with the thread count resolved."""

    backend: str = "auto"
    precision: str = "auto"
    device: str = "cpu"
    threads: int = 1
    streams: int | str = 1  # OpenVINO streams, or "auto" (`streams_for`)
    spinning: bool = False
    autotune_s: float = 3.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RuntimeOptions:
        return cls(
            backend=settings.backend,
            precision=settings.precision,
            device=settings.device,
            threads=settings.threads or available_cpus(),
            streams=settings.streams,
            spinning=settings.intra_op_spinning,
            autotune_s=settings.autotune_seconds,
        )


def streams_for(setting: int | str, precision: str) -> int:
    """OpenVINO streams for a model of `precision`: the setting, or for `auto` as many as the
    throughput hint picks (0) at FP32 and one batch at a time at INT8. On 2 cores FP32 served
    0.07x its raw limit more with two streams (median of five A-B rounds), INT8 0.03x less with
    a longer tail: the less the model's share of a request's CPU, the less streams give."""
    if setting != "auto":
        return int(setting)
    return 0 if precision == "fp32" else 1


def candidates(
    options: RuntimeOptions, folder: Path, export: dict[str, Any]
) -> list[tuple[str, str]]:
    """(backend, precision) pairs to open, best guess first; never an INT8 that failed its gate."""
    if options.backend != "auto":
        backends = [options.backend]
    elif options.device == "cuda" or options.precision == "fp16":
        backends = ["torch", "onnxruntime"]
    else:
        backends = ["openvino", "onnxruntime"]
    int8_ok = int8_servable(export) and (folder / ONNX_INT8_FILE).is_file()
    if options.precision == "int8":
        if not int8_ok:
            why = (export.get("int8") or {}).get("reason", "the export made no INT8 model")
            raise ModelError(f"PRECISION=int8 but the INT8 model is not servable: {why}")
        precisions = ["int8"]
    elif options.precision in ("fp32", "fp16"):
        precisions = [options.precision]
    elif options.device == "cuda":
        precisions = ["fp16", "fp32"]
    else:
        precisions = ["int8", "fp32"] if int8_ok else ["fp32"]
    pairs = [
        (backend, precision)
        for precision in precisions
        for backend in backends
        if precision in PRECISIONS.get(backend, ("fp32",))
    ]
    if not pairs:
        raise ModelError(
            f"BACKEND={options.backend} does not serve PRECISION={options.precision}: "
            + "; ".join(f"{b}: {', '.join(p)}" for b, p in PRECISIONS.items())
        )
    return pairs


def open_candidates(
    folder: Path, options: RuntimeOptions, pairs: list[tuple[str, str]]
) -> list[Backend]:
    """Open each pair; under `auto` a pair that cannot open here (no openvino) is skipped."""
    opened: list[Backend] = []
    errors: list[str] = []
    for backend, precision in pairs:
        try:
            opened.append(
                load_backend(
                    backend,
                    folder,
                    options.device,
                    options.threads,
                    options.spinning,
                    precision,
                    streams_for(options.streams, precision),
                )
            )
        except ModelError as exc:
            if len(pairs) == 1:
                raise
            errors.append(f"{backend}/{precision}: {exc}")
            log.info("auto: %s/%s not available: %s", backend, precision, exc)
    if not opened:
        raise ModelError("no backend could open the model: " + "; ".join(errors))
    return opened


def _per_image_ms(backend: Backend, batch: np.ndarray, deadline: float) -> float:
    """Median milliseconds per image of back-to-back forwards, at least two, until `deadline`."""
    backend.forward(batch)  # the first call of a batch size compiles or allocates
    times: list[float] = []
    while len(times) < 2 or (len(times) < MAX_REPEATS and time.perf_counter() < deadline):
        began = time.perf_counter()
        backend.forward(batch)
        times.append(time.perf_counter() - began)
    return float(np.median(times)) * 1000 / len(batch)


def pick_fastest(
    backends: list[Backend], input_shape: tuple[int, ...], max_batch: int, budget_s: float
) -> tuple[Backend, list[dict[str, Any]]]:
    """The first backend (in `candidates` order) whose per-image cost, the mean of batch 1 and
    batch `AUTO_BATCH`, is within `AUTO_MARGIN` of the lowest.

    Each candidate gets an equal share of `budget_s`; a candidate always runs at least two timed
    forwards per batch size, so a tiny budget still compares them. Runs on the inference thread.
    """
    if len(backends) == 1:
        return backends[0], []
    refused = _fp16_disagreements(backends, input_shape)
    backends = [b for b in backends if id(b) not in refused]
    share = budget_s / len(backends) / 2
    sizes = sorted({1, min(AUTO_BATCH, max_batch)})
    rng = np.random.default_rng(0)
    table: list[dict[str, Any]] = []
    for backend in backends:
        row: dict[str, Any] = {"backend": backend.name, "precision": backend.precision}
        for size in sizes:
            batch = rng.standard_normal((size, *input_shape)).astype(np.float32)
            row[f"b{size}_ms_per_image"] = round(
                _per_image_ms(backend, batch, time.perf_counter() + share), 3
            )
        row["score_ms"] = round(float(np.mean([row[f"b{s}_ms_per_image"] for s in sizes])), 3)
        table.append(row)
    fastest = min(row["score_ms"] for row in table)
    best = next(i for i, row in enumerate(table) if row["score_ms"] <= fastest * (1 + AUTO_MARGIN))
    table[best]["chosen"] = True
    table += refused.values()
    for row in table:
        log.info(
            "auto: %-11s %-4s %s ms/image%s",
            row["backend"], row["precision"],
            ", ".join(f"{k[:-13]} {v}" for k, v in row.items() if k.endswith("_ms_per_image")),
            "  <- chosen" if row.get("chosen") else "",
        )  # fmt: skip
    return backends[best], table


def _fp16_disagreements(
    backends: list[Backend], input_shape: tuple[int, ...]
) -> dict[int, dict[str, Any]]:
    """FP16 candidates whose probabilities differ from an FP32 candidate's by more than
    `FP16_MAX_PROB_DIFF` on a seeded batch, by `id`, with the autotune row saying why."""
    reference = next((b for b in backends if b.precision == "fp32"), None)
    if reference is None:
        return {}
    batch = np.random.default_rng(0).standard_normal((AUTO_BATCH, *input_shape))
    batch = batch.astype(np.float32)
    expected = softmax(reference.forward(batch))
    refused: dict[int, dict[str, Any]] = {}
    for backend in backends:
        if backend.precision != "fp16":
            continue
        diff = float(np.abs(softmax(backend.forward(batch)) - expected).max())
        if diff > FP16_MAX_PROB_DIFF:
            log.warning(
                "auto: %s fp16 refused: probabilities differ from fp32 by %.4f (> %g)",
                backend.name, diff, FP16_MAX_PROB_DIFF,
            )  # fmt: skip
            refused[id(backend)] = {
                "backend": backend.name,
                "precision": "fp16",
                "refused": f"max |dprob| vs fp32 {diff:.4f} > {FP16_MAX_PROB_DIFF}",
            }
    return refused
