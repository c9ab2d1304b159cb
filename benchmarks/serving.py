"""Serving benchmark: the slipway service against the raw model and a naive FastAPI server.

Same machine, same run, scenarios alternated A-B-A-B over `--rounds`, ResNet-18 at 224x224
(random init, exported to ONNX and TorchScript into a temporary model folder):

  raw           in-process onnxruntime at batch 1 and the best batch: the limit
  pool          the same forwards issued from a thread pool (what a `def` endpoint does)
  service c=N   `python -m services.inference` (dynamic batching, one inference thread),
                multipart upload to /v1/predict
  oip-binary c=N  the same service over the Open Inference Protocol: REST with the binary
                tensor data extension (a BYTES `image` input, outputs in binary)
  grpc c=N      the same service over OIP gRPC (ModelInfer, raw_input_contents)
  naive c=N     FastAPI, one torch forward per request in a `def` endpoint
  overload      open-loop arrivals at `--overload` x the service's measured capacity

The load generator is `slipway.loadtest`, the one `slipway loadtest` runs, in a process of its
own so that it takes little CPU from the server. Usage:

  python benchmarks/serving.py --seconds 10 --rounds 2 --json bench.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import File, UploadFile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPINNING = False  # onnxruntime intra-op spin-waiting (the service's default); --spin turns it on


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
    return out


def make_image(size: int = 224) -> bytes:
    """A JPEG with smooth structure and some noise, like a photo at the model's size."""
    from PIL import Image

    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size] / size
    base = np.stack([np.sin(6 * x), np.cos(5 * y), np.sin(4 * (x + y))], axis=-1) * 0.5 + 0.5
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


def raw_onnx(model_dir: Path, threads: int, batch: int, seconds: float) -> dict[str, float]:
    """Forwards of `batch` images back to back on one thread; req_s counts images."""
    from services.inference.backends import OnnxBackend

    backend = OnnxBackend(model_dir, "cpu", threads, SPINNING)
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


# Naive baseline server ----------------------------------------------------------------------


def naive_app(model_dir: Path, threads: int) -> Any:
    """What people write first: torch eager, one forward per request, in a `def` endpoint."""
    import torch
    from fastapi import FastAPI
    from PIL import Image

    from slipway.contract.card import load_card
    from slipway.training.models import load_trained

    if threads:
        torch.set_num_threads(threads)
    card = load_card(model_dir)
    model = load_trained(model_dir)
    app = FastAPI()

    @app.get("/readyz")
    def ready() -> dict[str, str]:
        return {"status": "ready"}

    @app.post("/v1/predict")
    def predict(files: list[UploadFile] = File(...)) -> dict[str, Any]:
        results = []
        for upload in files:
            image = Image.open(io.BytesIO(upload.file.read()))
            tensor = torch.from_numpy(card.transform(image))[None]
            with torch.inference_mode():
                probs = torch.softmax(model(tensor), dim=1)[0]
            top = int(probs.argmax())
            results.append({"top_class": card.classes[top], "confidence": float(probs[top])})
        return {"predictions": results}

    return app


# Load generator (runs in its own process) --------------------------------------------------


def loadgen(
    mode: str,
    url: str,
    image: bytes,
    level: float,
    seconds: float,
    kind: str = "multipart",
    model: str = "",
) -> dict:
    """`slipway.loadtest` (what `slipway loadtest` runs): a closed loop of `level` clients, or
    open-loop arrivals at `level` req/s (how overload really looks), of one request kind."""
    from slipway.loadtest import endpoint, run_load, run_open_loop

    url = endpoint(url, kind, model)  # type: ignore[arg-type]
    payloads = [("a.jpg", image, "image/jpeg")]
    options: dict[str, Any] = {"top_k": None, "timeout_s": 60, "kind": kind, "model": model}
    if mode == "closed":
        coro = run_load(url, payloads, int(level), seconds, **options)
    else:
        coro = run_open_loop(url, payloads, level, seconds, **options)
    report = asyncio.run(coro)
    codes = {200: report.ok} if report.ok else {}
    for key, count in report.errors.items():  # a status code, or a transport error's name
        code = int(key) if key.isdigit() else 0
        codes[code] = codes.get(code, 0) + count
    req_s = report.ok / report.duration_s if report.duration_s else 0.0
    out = {"req_s": req_s, "p50_ms": report.p50_ms, "p99_ms": report.p99_ms, "count": report.ok}
    out["codes"] = codes
    if mode == "open":
        out.update(offered_req_s=report.requests / seconds, max_ms=report.max_ms)
    return out


def run_loadgen(
    url: str,
    image_path: Path,
    mode: str,
    level: float,
    seconds: float,
    kind: str = "multipart",
    model: str = "",
) -> dict:
    """Run the load generator in a separate process and return its JSON."""
    cmd = [
        sys.executable, __file__, "--loadgen", mode, "--url", url,
        "--image", str(image_path), "--level", str(level), "--seconds", str(seconds),
        "--kind", kind, "--served-name", model,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 180)
    return json.loads(out.stdout.strip().splitlines()[-1])


# Servers ------------------------------------------------------------------------------------


def serve(kind: str, model_dir: Path, threads: int, log: Path, **settings: Any) -> Any:
    """The slipway service (with these settings) or the naive server, ready, as a context."""
    from services.inference.server import command
    from slipway.procs import free_port, start_server

    port = free_port()
    env = {"PYTHONPATH": str(ROOT), "NO_PROXY": "127.0.0.1"}
    if kind == "service":
        grpc_port = free_port()
        argv = command(
            {
                "model_source": model_dir, "port": port, "grpc_port": grpc_port,
                "host": "127.0.0.1", "threads": threads, "reload_interval_s": 0,
                "log_level": "WARNING", "intra_op_spinning": SPINNING, **settings,
            }
        )  # fmt: skip
        env["SLIPWAY_GRPC_PORT"] = str(grpc_port)  # where `grpc_url` finds it
    else:
        argv = [
            sys.executable, __file__, "--naive-server", "--model", str(model_dir),
            "--port", str(port), "--threads", str(threads),
        ]  # fmt: skip
    return start_server(argv, f"http://127.0.0.1:{port}", env, timeout=180, log=log, cwd=ROOT)


def grpc_url(server: Any) -> str:
    return f"grpc://127.0.0.1:{server.env['SLIPWAY_GRPC_PORT']}"


def served_name(url: str) -> str:
    import httpx

    return str(httpx.get(url + "/v1/models", timeout=10, trust_env=False).json()["default"])


# Driver -------------------------------------------------------------------------------------


def _merge(runs: list[dict]) -> dict:
    """Median throughput and latency over rounds."""
    keys = ("req_s", "p50_ms", "p99_ms")
    merged = {k: float(np.median([r[k] for r in runs])) for k in keys}
    merged["rounds"] = len(runs)
    for extra in ("codes", "offered_req_s", "max_ms"):
        if extra in runs[-1]:
            merged[extra] = runs[-1][extra]
    return merged


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    print(f"model folder and logs in {work}", flush=True)
    model_dir = make_model(work / "model", args.image_size)
    image_path = work / "image.jpg"
    image_path.write_bytes(make_image(args.image_size))
    levels = [int(c) for c in args.concurrency.split(",")]
    runs: dict[str, list[dict]] = {}
    with contextlib.ExitStack() as stack:
        urls, servers = {}, {}
        for kind in ("service", "naive"):
            server = serve(kind, model_dir, args.threads, work / f"{kind}.log")
            servers[kind] = stack.enter_context(server)
            urls[kind] = servers[kind].url
        model = served_name(urls["service"])
        # (scenario, URL, request kind): the service over each protocol, then the naive server.
        clients = [
            ("service", urls["service"], "multipart"),
            ("oip-binary", urls["service"], "oip-binary"),
            ("grpc", grpc_url(servers["service"]), "grpc"),
            ("naive", urls["naive"], "multipart"),
        ]
        for round_no in range(args.rounds):
            print(f"round {round_no + 1}/{args.rounds}", flush=True)
            scenarios: list[tuple[str, Any]] = [
                ("raw b=1", lambda: raw_onnx(model_dir, args.threads, 1, args.seconds)),
                (f"raw b={args.best_batch}",
                 lambda: raw_onnx(model_dir, args.threads, args.best_batch, args.seconds)),
                ("onnx pool x4 b=1",
                 lambda: pooled_forwards(model_dir, args.threads, 4, args.seconds, "onnx")),
                ("torch pool x4 b=1",
                 lambda: pooled_forwards(model_dir, args.threads, 4, args.seconds, "torch")),
                ("torch 1 thread b=1",
                 lambda: pooled_forwards(model_dir, args.threads, 1, args.seconds, "torch")),
            ]  # fmt: skip
            for level in levels:
                for label, url, request in clients:
                    scenarios.append(
                        (f"{label} c={level}",
                         lambda u=url, c=level, k=request:
                             run_loadgen(u, image_path, "closed", c, args.seconds, k, model))
                    )  # fmt: skip
            for name, run in scenarios:
                result = run()
                runs.setdefault(name, []).append(result)
                print(f"  {name:<20} {result['req_s']:8.1f} req/s  p50 {result['p50_ms']:7.1f} ms",
                      flush=True)  # fmt: skip
    results = {name: _merge(r) for name, r in runs.items()}
    results.update(overload(args, model_dir, image_path, work, results))
    return {"config": vars(args), "results": results}


def overload(args: argparse.Namespace, model_dir: Path, image: Path, work: Path, results: dict):
    """Offer `--overload` x the measured capacity to a service with a short queue."""
    top = max(int(c) for c in args.concurrency.split(","))
    capacity = results[f"service c={top}"]["req_s"]
    queue = 2 * args.max_batch
    settings = {"max_queue": queue, "max_batch_size": args.max_batch}
    with serve("service", model_dir, args.threads, work / "overload.log", **settings) as server:
        result = run_loadgen(server.url, image, "open", args.overload * capacity, args.seconds)
    return {f"service overload x{args.overload:g} (queue {queue})": result}


def report(data: dict[str, Any]) -> str:
    results = data["results"]
    cfg = data["config"]
    limit = results[f"raw b={cfg['best_batch']}"]["req_s"]
    limit_b1 = results["raw b=1"]
    lines = [
        f"{'scenario':<36}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'x raw':>8}",
        "-" * 71,
    ]
    for name, r in results.items():
        lines.append(
            f"{name:<36}{r['req_s']:9.1f}{r['p50_ms']:9.1f}{r['p99_ms']:9.1f}"
            f"{r['req_s'] / limit:8.2f}"
        )
    top = max(int(c) for c in cfg["concurrency"].split(","))
    service, naive = results[f"service c={top}"], results[f"naive c={top}"]
    c1 = results.get("service c=1")
    over = next((r for n, r in results.items() if "overload" in n), None)
    lines.append("")
    lines.append(f"targets (raw limit {limit:.1f} img/s at batch {cfg['best_batch']}):")
    lines.append(
        f"  service c={top} >= 0.85 x raw: {service['req_s'] / limit:.2f}"
        f"  {'PASS' if service['req_s'] >= 0.85 * limit else 'MISS'}"
    )
    lines.append(
        f"  service c={top} >= 1.5 x naive: {service['req_s'] / max(naive['req_s'], 1e-9):.2f}"
        f"  {'PASS' if service['req_s'] >= 1.5 * naive['req_s'] else 'MISS'}"
    )
    for label in ("oip-binary", "grpc"):
        row = results.get(f"{label} c={top}")
        if row:
            lines.append(
                f"  {label} c={top}: {row['req_s'] / limit:.2f} x raw, "
                f"{row['req_s'] / max(service['req_s'], 1e-9):.2f} x multipart"
            )
    if c1:
        gap = c1["p50_ms"] - limit_b1["p50_ms"]
        lines.append(f"  service c=1 p50 - raw b=1 p50 <= 5 ms: {gap:.1f} ms"
                     f"  {'PASS' if gap <= 5 else 'MISS'}")  # fmt: skip
    if over:
        codes = {int(k): v for k, v in over["codes"].items()}
        total = sum(codes.values())
        ok, busy = codes.get(200, 0), codes.get(503, 0)
        lines.append(
            f"  overload: offered {over['offered_req_s']:.1f} req/s, {ok} answered "
            f"(p99 {over['p99_ms']:.0f} ms, max {over['max_ms']:.0f} ms), "
            f"{busy} got 503 ({busy / max(total, 1):.0%}), other {total - ok - busy}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="Duration of each scenario.")
    parser.add_argument("--rounds", type=int, default=2, help="A-B alternations.")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--concurrency", default="1,16")
    parser.add_argument("--best-batch", type=int, default=8)
    parser.add_argument("--max-batch", type=int, default=16)
    parser.add_argument("--overload", type=float, default=2.0)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    parser.add_argument(
        "--spin", action="store_true", help="onnxruntime with intra-op spin-waiting everywhere."
    )
    parser.add_argument("--loadgen", choices=("closed", "open"), help=argparse.SUPPRESS)
    parser.add_argument("--naive-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--image", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--level", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="multipart", help=argparse.SUPPRESS)
    parser.add_argument("--served-name", default="", help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global SPINNING
    SPINNING = args.spin
    if args.loadgen:
        image = args.image.read_bytes()
        result = loadgen(
            args.loadgen, args.url, image, args.level, args.seconds, args.kind, args.served_name
        )
        print(json.dumps(result))
        return
    if args.naive_server:
        import uvicorn

        app = naive_app(args.model, args.threads)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
        return
    data = benchmark(args)
    print()
    print(report(data))
    if args.json:
        args.json.write_text(json.dumps(data, indent=2, default=str))


if __name__ == "__main__":
    main()
