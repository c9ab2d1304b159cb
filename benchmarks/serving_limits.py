"""The serving benchmark's model and its in-process limits (`benchmarks/serving.py` uses them).

The model is a random-init 3-channel ResNet-18 exported to ONNX and TorchScript, plus its INT8
model quantized the way the export step does (calibrated on synthetic photos, since the weights
are random the accuracy gate means nothing here and the card marks it servable). The limits are
back-to-back forwards on one thread for every backend x precision, and OpenVINO with a batch in
flight on each of its streams.
"""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

SPINNING = False  # onnxruntime intra-op spin-waiting (the service's default); --spin turns it on
RUNTIMES = (("onnxruntime", "fp32"), ("onnxruntime", "int8"), ("openvino", "fp32"),
            ("openvino", "int8"))  # fmt: skip

# Host -----------------------------------------------------------------------------------------


def host_ticks() -> tuple[int, int, int] | None:
    """The host's CPU ticks so far (all, idle + iowait, steal) from /proc/stat; None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    steal = fields[7] if len(fields) > 7 else 0
    return sum(fields[:8]), fields[3] + fields[4], steal


def host_share(before: tuple[int, int, int] | None) -> dict[str, float]:
    """The share of the host's CPU time since `before` that was idle and that the hypervisor
    took (steal): a run on a busy host shows it here, not only in slower rows."""
    after = host_ticks()
    if before is None or after is None or after[0] <= before[0]:
        return {}
    total = after[0] - before[0]
    return {"idle": (after[1] - before[1]) / total, "steal": (after[2] - before[2]) / total}


# Model and image ----------------------------------------------------------------------------


def make_model(out: Path, image_size: int = 224, classes: int = 10) -> Path:
    """A random-init 3-channel ResNet-18 model folder with model.onnx and model.ts."""
    import torch

    from slipway.contract.card import WEIGHTS_FILE, ModelCard
    from slipway.contract.preprocessing import Preprocessing
    from slipway.training.export import export_onnx, export_torchscript
    from slipway.training.models import build_model

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    prep = Preprocessing(
        image_size=image_size, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
    )
    model = build_model("resnet18", classes, 3).eval()
    torch.save(model.state_dict(), out / WEIGHTS_FILE)
    names = [f"class{i}" for i in range(classes)]
    ModelCard(name="bench", arch="resnet18", classes=names, preprocessing=prep.to_dict()).save(out)
    export_onnx(out)
    export_torchscript(out)
    quantize(out, image_size)
    return out


def quantize(model_dir: Path, image_size: int, count: int = 32) -> None:
    """model.int8.onnx calibrated on `count` synthetic photos, marked servable in the card."""
    from PIL import Image

    from slipway.config.export import Int8Config
    from slipway.contract.card import ONNX_INT8_FILE, load_card
    from slipway.training.quantize import quantize_int8

    card = load_card(model_dir)
    photos = [
        card.transform(Image.open(io.BytesIO(make_image(image_size, seed))))
        for seed in range(count)
    ]
    quantize_int8(model_dir, np.stack(photos), Int8Config())
    card.export["int8"] = {"file": ONNX_INT8_FILE, "servable": True, "reason": "benchmark"}
    card.save(model_dir)


def make_image(size: int = 224, seed: int = 0) -> bytes:
    """A JPEG with smooth structure and some noise, like a photo at the model's size."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    f = 1 + seed % 5
    base = np.stack([np.sin(f * 6 * x), np.cos(5 * y), np.sin(4 * (x + y))], axis=-1) * 0.5 + 0.5
    pixels = np.clip(base * 220 + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


# Raw model throughput -----------------------------------------------------------------------


def _stats(latencies: list[float], count: int, seconds: float) -> dict[str, float]:
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    return {
        "req_s": count / seconds if seconds else 0.0,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "count": count,
    }


def _inputs(model_dir: Path, batch: int) -> np.ndarray:
    from slipway.contract.card import load_card

    shape = load_card(model_dir).transform.input_shape
    return np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)


def raw_forwards(
    model_dir: Path, threads: int, batch: int, seconds: float, runtime: tuple[str, str]
) -> dict[str, float]:
    """Forwards of `batch` images back to back on one thread; req_s counts images."""
    from services.inference.backends import load_backend

    backend = load_backend(runtime[0], model_dir, "cpu", threads, SPINNING, runtime[1])
    data = _inputs(model_dir, batch)
    for _ in range(3):
        backend.forward(data)
    latencies: list[float] = []
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        t = time.perf_counter()
        backend.forward(data)
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - began
    return _stats(latencies, len(latencies) * batch, elapsed)


def streamed_forwards(
    model_dir: Path, threads: int, batch: int, seconds: float, precision: str
) -> dict[str, float]:
    """OpenVINO with a batch in flight on each of its streams (as the service runs a deep
    queue): a new batch starts as soon as one ends; req_s counts images."""
    from services.inference.backends import OpenVinoBackend

    backend = OpenVinoBackend(model_dir, "cpu", threads, precision, streams=0)
    data = _inputs(model_dir, batch)
    ended = threading.Condition()
    done: list[int] = []

    def run(index: int) -> Any:
        def finished() -> None:
            with ended:
                done.append(index)
                ended.notify()

        return backend.start(data, finished)

    def one_each(warm: bool) -> tuple[list[float], int]:
        latencies: list[float] = []
        started = {i: (time.perf_counter(), run(i)) for i in range(backend.streams)}
        stop = time.perf_counter() + (0 if warm else seconds)
        while started:
            with ended:
                ended.wait_for(lambda: bool(done))
                index = done.pop(0)
            began, running = started.pop(index)
            running.result()
            latencies.append(time.perf_counter() - began)
            if time.perf_counter() < stop:
                started[index] = (time.perf_counter(), run(index))
        return latencies, len(latencies) * batch

    one_each(warm=True)
    began = time.perf_counter()
    latencies, images = one_each(warm=False)
    return _stats(latencies, images, time.perf_counter() - began)


def pooled_forwards(
    model_dir: Path, threads: int, workers: int, seconds: float, runtime: str
) -> dict[str, float]:
    """Batch-1 forwards issued from a pool of `workers` threads, as a `def` endpoint would."""
    if runtime == "torch":
        import torch

        from slipway.training.models import load_trained

        if threads:
            torch.set_num_threads(threads)
        model = load_trained(model_dir)

        def forward(data: np.ndarray) -> None:
            with torch.inference_mode():
                model(torch.from_numpy(data))
    else:
        from services.inference.backends import OnnxBackend

        forward = OnnxBackend(model_dir, "cpu", threads, SPINNING).forward  # type: ignore[assignment]
    data = _inputs(model_dir, 1)
    forward(data)
    latencies: list[float] = []
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def loop() -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            forward(data)
            with lock:
                latencies.append(time.perf_counter() - t)

    began = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(loop) for _ in range(workers)]:
            future.result()
    return _stats(latencies, len(latencies), time.perf_counter() - began)
