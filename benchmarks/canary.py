"""What canary and shadow cost the production path: the same closed-loop load against the
service with `CANARY_MODE` off, canary (weight 0.5) and shadow, one ResNet-18 at `--size`,
production and candidate the same model folder copied (another version, the same cost).

Reports per mode: requests/s, p50 and p99 latency as the client sees them, the share answered
by the candidate, and for shadow the copies predicted versus shed.

  python benchmarks/canary.py --seconds 8 --concurrency 8 --size 64
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from serving import run_loadgen, serve  # noqa: E402
from serving_limits import make_image, make_model  # noqa: E402


def _sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for match in re.finditer(rf"^{name}{{([^}}]*)}} (\S+)$", text, re.M):
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[1]))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match[2])
    return total


def run(mode: str, model: Path, candidate: Path, image: Path, args: argparse.Namespace, work: Path):
    import httpx

    settings: dict[str, Any] = {"staging_source": candidate, "canary_mode": mode}
    if mode == "canary":
        settings["canary_weight"] = 0.5
    with serve("service", model, args.threads, work / f"{mode}.log", **settings) as server:
        result = run_loadgen(server.url, image, "closed", args.concurrency, args.seconds)
        text = httpx.get(server.url + "/metrics", timeout=10, trust_env=False).text
    requests = "slipway_inference_requests_total"
    canary = _sum(text, requests, variant="canary", code="2xx", route="/v1/predict")
    total = _sum(text, requests, code="2xx", route="/v1/predict")
    shadow = "slipway_inference_shadow_requests_total"
    copied = sum(_sum(text, shadow, result=r) for r in ("agree", "disagree", "error"))
    return {
        "mode": mode,
        "req_s": round(result["req_s"], 1),
        "p50_ms": round(result["p50_ms"], 1),
        "p99_ms": round(result["p99_ms"], 1),
        "canary_share": round(canary / total, 3) if total else 0.0,
        "shadow_copied": int(copied),
        "shadow_shed": int(_sum(text, shadow, result="shed")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--size", type=int, default=64, help="image size of the model")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = make_model(work / "model", image_size=args.size)
        candidate = work / "candidate"
        shutil.copytree(model, candidate)
        card = json.loads((candidate / "model_card.json").read_text())
        card["metrics"] = {**card.get("metrics", {}), "candidate": 1.0}  # another version
        (candidate / "model_card.json").write_text(json.dumps(card))
        image = work / "image.jpg"
        image.write_bytes(make_image(args.size))
        rows = [
            run(mode, model, candidate, image, args, work) for mode in ("off", "canary", "shadow")
        ]
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
