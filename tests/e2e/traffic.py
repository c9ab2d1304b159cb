"""Traffic for the live tests: real images, inverted images, bad uploads, in bounded batches."""

from __future__ import annotations

import asyncio
import io
import random
from pathlib import Path

from PIL import Image, ImageOps

from slipway.loadtest import LoadReport, run_load

Payload = tuple[str, bytes, str]


def _inverted(payload: Payload) -> Payload:
    name, body, kind = payload
    image = ImageOps.invert(Image.open(io.BytesIO(body)).convert("L"))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "inv-" + name, out.getvalue(), kind


class Traffic:
    """Every demo image once per pass, in a fixed shuffled order, continued across batches.

    Consecutive successful requests therefore cover the data set evenly, so the drift window
    holds the same mix as the data set whenever it is full of normal traffic.
    """

    def __init__(self, images: Path, url: str, seed: int = 0) -> None:
        paths = sorted(images.rglob("*.png"))
        random.Random(seed).shuffle(paths)
        self.normal: list[Payload] = [(p.name, p.read_bytes(), "image/png") for p in paths]
        self.shifted = [_inverted(p) for p in self.normal]
        self.bad: list[Payload] = [
            ("broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png"),
            ("notes.txt", b"hello", "text/plain"),
            ("empty.png", b"", "image/png"),
        ]
        self.url = url + "/v1/predict"
        self.cursor = 0

    def _next(self, pool: list[Payload], count: int) -> list[Payload]:
        start = self.cursor
        self.cursor += count
        return [pool[(start + i) % len(pool)] for i in range(count)]

    def send(
        self, payloads: list[Payload], concurrency: int = 4, timeout_s: float = 30.0
    ) -> LoadReport:
        """Each payload once (bounded by count and by a generous time limit)."""
        return asyncio.run(
            run_load(
                self.url,
                payloads,
                concurrency=concurrency,
                duration_s=120.0,
                max_requests=len(payloads),
                timeout_s=timeout_s,
            )
        )

    def normal_batch(self, count: int, concurrency: int = 4) -> LoadReport:
        return self.send(self._next(self.normal, count), concurrency)

    def shifted_batch(self, count: int, concurrency: int = 4) -> LoadReport:
        return self.send(self._next(self.shifted, count), concurrency)

    def bad_batch(self, count: int, concurrency: int = 4) -> LoadReport:
        return self.send([self.bad[i % len(self.bad)] for i in range(count)], concurrency)
