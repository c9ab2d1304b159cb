"""Cost of embedding capture on serving throughput, and explanation latency per image.

ResNet-18 (random init) exported with its `embedding` output into a temporary folder, with an
`embedding.npz` reference fitted on synthetic photos. Three measurements, same machine, same run:

  forward         in-process: backend.forward (logits only) vs backend.infer (logits and
                  embedding) + projecting every row (sample rate 1, the worst case), batch 8;
                  and the per-image cost of EmbeddingWindows.add (sampling, projection,
                  ring buffer, gauge) at sample rate 1
  service         `python -m services.inference`, closed loop of raw-body uploads, embedding
                  capture off (sample rate 0) vs on at the default rate and at rate 1;
                  alternated over `--rounds`
  explain         sequential `POST /v1/explain` at the default settings (15 x 15 grid)

Usage:

  python benchmarks/embeddings.py --image-size 224 --seconds 5 --rounds 2 --explain 3
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serving import run_loadgen, serve  # noqa: E402
from serving_limits import make_image, make_model  # noqa: E402

PINNED = {"backend": "onnxruntime", "precision": "fp32"}


def add_reference(model_dir: Path, count: int = 48) -> None:
    """embedding.npz from the model's embeddings of synthetic photos (no data set needed)."""
    from PIL import Image

    from services.inference.backends import load_backend
    from slipway.contract.card import load_card
    from slipway.embedding.projection import fit_projection

    transform = load_card(model_dir).transform
    photos = np.stack(
        [
            transform(Image.open(io.BytesIO(make_image(transform.image_size, s))))
            for s in range(count)
        ]
    )
    backend = load_backend("onnxruntime", model_dir, "cpu", 1)
    _, embedding = backend.infer(photos)
    assert embedding is not None
    fit_projection(embedding).save(model_dir)


def forward_cost(model_dir: Path, threads: int, seconds: float) -> dict[str, float]:
    """Images/s of forward() vs infer() + projection of every row, alternated in 1 s slices."""
    from services.inference.backends import load_backend
    from slipway.contract.card import load_card
    from slipway.embedding.projection import load_projection

    backend = load_backend("onnxruntime", model_dir, "cpu", threads)
    projection = load_projection(model_dir)
    assert projection is not None
    shape = load_card(model_dir).transform.input_shape
    batch = np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)

    def logits_only() -> None:
        backend.forward(batch)

    def with_embedding() -> None:
        _, embedding = backend.infer(batch)
        projection.project(embedding)

    done = {"logits": 0, "embedding": 0}
    spent = {"logits": 0.0, "embedding": 0.0}
    for fn in (logits_only, with_embedding):
        fn()
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for name, fn in (("logits", logits_only), ("embedding", with_embedding)):
            slice_end = time.perf_counter() + 0.5
            began = time.perf_counter()
            while time.perf_counter() < slice_end:
                fn()
                done[name] += len(batch)
            spent[name] += time.perf_counter() - began
    return {name: done[name] / spent[name] for name in done}


def capture_overhead_us(model_dir: Path, count: int = 20000) -> float:
    """Microseconds per served image of what the service adds on the event loop at sample
    rate 1: sampling, projection, ring buffer and gauge (`EmbeddingWindows.add`)."""
    from services.inference.embeddings import EmbeddingWindows
    from services.inference.metrics import Metrics
    from services.inference.settings import Settings
    from slipway.embedding.projection import load_projection

    projection = load_projection(model_dir)
    windows = EmbeddingWindows(Settings(embedding_sample_rate=1.0), Metrics())
    vectors = np.random.default_rng(0).standard_normal((count, projection.features))
    vectors = vectors.astype(np.float32)
    began = time.perf_counter()
    for vector in vectors:
        windows.add("bench", "1", projection, vector)
    return (time.perf_counter() - began) / count * 1e6


def explain_latency(url: str, image: bytes, count: int) -> dict[str, float]:
    times, body = [], {}
    for _ in range(count):
        began = time.perf_counter()
        response = httpx.post(
            url + "/v1/explain",
            content=image,
            headers={"Content-Type": "image/jpeg"},
            timeout=300,
            trust_env=False,
        )
        times.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
        body = response.json()
    return {
        "p50_ms": float(np.median(times)),
        "mean_ms": float(np.mean(times)),
        "forwards": body["forwards"],
        "ms_per_forward": float(np.median(times)) / body["forwards"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=5.0, help="per load-test run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--explain", type=int, default=3, help="explanations timed")
    parser.add_argument("--rates", default="0,0.1,1", help="capture rates; the first is the base")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slipway-bench-emb-") as tmp:
        measure(args, Path(tmp))


def measure(args: argparse.Namespace, work: Path) -> None:
    """Build a model in `work`, then print the forward, capture and served costs."""
    model_dir = make_model(work / "model", args.image_size)
    add_reference(model_dir)
    image_path = work / "image.jpg"
    image_path.write_bytes(make_image(args.image_size))
    print(f"ResNet-18 {args.image_size}x{args.image_size}, {args.threads} thread(s)", flush=True)

    rates = forward_cost(model_dir, args.threads, args.seconds)
    cost = 100 * (1 - rates["embedding"] / rates["logits"])
    print(
        f"forward b8: logits {rates['logits']:.1f} img/s, logits+embedding+projection "
        f"{rates['embedding']:.1f} img/s ({cost:+.1f} % cost)",
        flush=True,
    )
    overhead = capture_overhead_us(model_dir)
    per_image_us = 1e6 / rates["logits"]
    print(
        f"capture on the event loop: {overhead:.1f} us per sampled image "
        f"({100 * overhead / per_image_us:.2f} % of the {per_image_us / 1000:.1f} ms forward)",
        flush=True,
    )
    runs: dict[str, list[float]] = {}
    with contextlib.ExitStack() as stack:
        servers = {
            rate: stack.enter_context(
                serve(
                    "service",
                    model_dir,
                    args.threads,
                    work / f"rate{rate}.log",
                    embedding_sample_rate=rate,
                    **PINNED,
                )
            )
            for rate in [float(r) for r in args.rates.split(",")]
        }
        for round_no in range(args.rounds):
            for rate, server in servers.items():
                result = run_loadgen(
                    server.url, image_path, "closed", args.concurrency, args.seconds, "raw"
                )
                runs.setdefault(f"rate {rate:g}", []).append(result["req_s"])
                print(
                    f"  round {round_no + 1} capture rate {rate:<4g} {result['req_s']:7.1f} req/s  "
                    f"p50 {result['p50_ms']:6.1f} ms",
                    flush=True,
                )
        explained = explain_latency(
            list(servers.values())[-1].url, image_path.read_bytes(), args.explain
        )
    base = float(np.mean(next(iter(runs.values()))))
    for name, values in runs.items():
        mean = float(np.mean(values))
        change = 100 * (mean / base - 1)
        print(f"service c={args.concurrency} {name:<9} {mean:7.1f} req/s ({change:+.1f} %)")
    print(
        f"explain (default settings): {explained['forwards']} forwards, p50 "
        f"{explained['p50_ms']:.0f} ms per image ({explained['ms_per_forward']:.2f} ms/forward)"
    )


if __name__ == "__main__":
    main()
