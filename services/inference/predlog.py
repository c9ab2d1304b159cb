"""The prediction log: one JSON line per prediction, for drift monitoring and audits.

A background thread writes from a bounded buffer, so a request never waits on the disk. When the
buffer is full the record is dropped and counted in a metric (never silently lost). Files rotate
by size: `<path>.1` is the newest backup, `<path>.<backups>` the oldest.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from pathlib import Path
from typing import Any

from services.inference.metrics import Metrics

log = logging.getLogger(__name__)

_STOP = object()


class PredictionLog:
    """Non-blocking JSONL writer with size-based rotation."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        metrics: Metrics,
        max_bytes: int = 50 * 1024 * 1024,
        backups: int = 5,
        buffer: int = 10_000,
    ) -> None:
        self.path = Path(path)
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.backups = backups
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=buffer)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._closed = False

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def write(self, record: dict[str, Any]) -> None:
        """Queue one record; drop and count it when the buffer is full or the log is closed."""
        if self._closed:
            self.metrics.predlog_dropped.inc()
            return
        try:
            self._queue.put_nowait(record)
        except queue.Full:
            self.metrics.predlog_dropped.inc()

    def close(self, timeout: float = 10.0) -> None:
        """Write everything buffered, then stop the writer."""
        if self._closed:
            return
        self._closed = True
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def _run(self) -> None:
        handle = self.path.open("a", encoding="utf-8")
        size = handle.tell()
        try:
            while True:
                record = self._queue.get()
                lines = []
                stop = record is _STOP
                if not stop:
                    lines.append(record)
                # Write whatever else is already waiting in one go.
                while not stop:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    stop = more is _STOP
                    if not stop:
                        lines.append(more)
                for item in lines:
                    text = json.dumps(item, separators=(",", ":")) + "\n"
                    if size and size + len(text) > self.max_bytes:
                        handle.close()
                        self._rotate()
                        handle = self.path.open("a", encoding="utf-8")
                        size = 0
                    handle.write(text)
                    size += len(text)
                handle.flush()
                if lines:
                    self.metrics.predlog_written.inc(len(lines))
                if stop:
                    return
        except OSError as exc:
            log.error("prediction log %s stopped: %s", self.path, exc)
        finally:
            handle.close()

    def _rotate(self) -> None:
        if self.backups <= 0:
            self.path.unlink(missing_ok=True)
            return
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
