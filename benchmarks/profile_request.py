"""Where one request's CPU goes: client, HTTP and parsing, decode + preprocessing, model.

Runs the service (`auto`, or `--backend`/`--precision`) on the serving benchmark's model,
sends requests for `--seconds` from `--concurrency` closed-loop clients of `slipway.loadtest`
(multipart, then raw-body), and splits the CPU seconds per request:

  server total    the service process's `process_cpu_seconds_total` delta / requests
  loop thread     the CPU of the event loop's thread alone (/proc/PID/task): HTTP, routing,
                  multipart, decode + preprocessing of small uploads, the answer's JSON;
                  measured, where model, decode and multipart are timed in process
  other threads   server total - loop thread: the batcher's thread and the runtime's threads
  model           process CPU per image of the runtime `auto` chose, at the mean batch size
                  the service formed (`slipway_inference_batch_size`), timed in process
  decode+prep     `services.inference.images.prepare` of the same image, timed in process
  multipart       Starlette's multipart parser on the same body, timed in process
  rest            server total - model - decode - multipart: HTTP, routing, batcher, JSON
  client          the load generator process's user+system CPU / requests

  python benchmarks/profile_request.py --seconds 10 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serving import run_loadgen, serve  # noqa: E402
from serving_limits import make_image, make_model  # noqa: E402


def _metric(text: str, name: str) -> float:
    return sum(float(m) for m in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def _scrape(url: str) -> tuple[float, float, float, float]:
    import httpx

    text = httpx.get(url + "/metrics", trust_env=False, timeout=10).text
    return (
        _metric(text, "process_cpu_seconds_total"),
        _metric(text, "slipway_inference_batch_size_sum"),
        _metric(text, "slipway_inference_batch_size_count"),
        sum(
            float(value)
            for labels, value in re.findall(
                r"^slipway_inference_requests_total{([^}]*)} (\S+)$", text, re.M
            )
            if 'code="2xx"' in labels and 'route="/v1/predict"' in labels
        ),
    )


def _loop_cpu_s(pid: int) -> float:
    """CPU seconds so far of process `pid`'s main thread, the one the event loop runs on
    (Linux /proc; 0 elsewhere)."""
    try:
        stat = Path(f"/proc/{pid}/task/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _per_call_ms(fn, repeats: int = 300) -> float:
    fn()
    began = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - began) * 1000 / repeats


def in_process(model_dir: Path, image: bytes) -> dict[str, float]:
    """CPU ms of decode + preprocessing and of multipart parsing for one request, one thread."""
    from starlette.datastructures import Headers
    from starlette.formparsers import MultiPartParser

    from services.inference.images import prepare
    from slipway.contract.card import load_card

    transform = load_card(model_dir).transform
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = Headers({"content-type": f"multipart/form-data; boundary={boundary}"})

    async def stream():
        yield body

    async def parse() -> None:
        form = await MultiPartParser(headers, stream()).parse()
        await form.getlist("files")[0].read()
        await form.close()

    return {
        "decode_prep_ms": _per_call_ms(lambda: prepare(image, transform, 25_000_000, "a")),
        "multipart_ms": _per_call_ms(lambda: asyncio.run(parse())),
    }


def model_cpu_ms(model_dir: Path, url: str, batch: int, threads: int) -> float:
    """Process CPU ms per image of the backend the service chose, at `batch`."""
    import httpx
    import numpy as np

    from services.inference.backends import load_backend
    from slipway.contract.card import load_card

    chosen = httpx.get(url + "/v1/models", trust_env=False, timeout=10).json()["details"][0]
    backend = load_backend(chosen["backend"], model_dir, "cpu", threads, False, chosen["precision"])
    shape = load_card(model_dir).transform.input_shape
    data = np.random.default_rng(0).standard_normal((batch, *shape)).astype(np.float32)
    return _per_call_ms(lambda: backend.forward(data), repeats=20) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", default="auto", help="auto|onnxruntime|openvino|torch")
    parser.add_argument("--precision", default="auto", help="auto|fp32|int8")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="slipway-profile-") as tmp:
        rows = profile(args, Path(tmp))
    print(f"{'route':<10}{'req/s':>8}{'server':>8}{'loop':>8}{'others':>8}{'model':>8}{'decode':>8}{'multip':>8}"
          f"{'rest':>8}{'client':>8}   (CPU ms per request)")  # fmt: skip
    for kind, req_s, *ms in rows:
        print(f"{kind:<10}{req_s:8.1f}" + "".join(f"{v:8.2f}" for v in ms))


def profile(args: argparse.Namespace, work: Path) -> list[tuple]:
    """Serve a fresh model from `work` and split each route's CPU per request."""
    pinned = {"backend": args.backend, "precision": args.precision}
    model_dir = make_model(work / "model")
    image_path = work / "image.jpg"
    image_path.write_bytes(make_image())
    local = in_process(model_dir, image_path.read_bytes())
    rows = []
    with serve("service", model_dir, args.threads, work / "service.log", **pinned) as server:
        for kind in ("multipart", "raw"):
            cpu0, images0, batches0, count0 = _scrape(server.url)
            loop0 = _loop_cpu_s(server.proc.pid)
            child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = run_loadgen(
                server.url, image_path, "closed", args.concurrency, args.seconds, kind
            )
            child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu1, images1, batches1, count1 = _scrape(server.url)
            loop_s = _loop_cpu_s(server.proc.pid) - loop0
            n = max(count1 - count0, 1)
            server_ms = (cpu1 - cpu0) * 1000 / n
            batch = max(1, round((images1 - images0) / max(batches1 - batches0, 1)))
            model_ms = model_cpu_ms(model_dir, server.url, batch, args.threads)
            client_ms = (
                (child1.ru_utime - child0.ru_utime + child1.ru_stime - child0.ru_stime) * 1000 / n
            )
            decode = local["decode_prep_ms"]
            parsing = local["multipart_ms"] if kind == "multipart" else 0.0
            rest = server_ms - model_ms - decode - parsing
            loop_ms = loop_s * 1000 / n
            rows.append(
                (
                    kind,
                    out["req_s"],
                    server_ms,
                    loop_ms,
                    server_ms - loop_ms,
                    model_ms,
                    decode,
                    parsing,
                    rest,
                    client_ms,
                )
            )
    return rows


if __name__ == "__main__":
    main()
