"""The drift monitor: a window of served traffic, judged against the reference.

The window comes from the prediction log (`source=log`: the newest records, one sliding
window) or from Prometheus (`source=prometheus`: the service's histograms over a time range,
`services.drift.source`). Either way it holds one model version only, the newest, so a
promotion never mixes versions in one verdict, and it is counted over the reference's bins
(`services.drift.window`), so both sources give the same numbers.

Per feature it reports one score (PSI) and a decision:
- brightness, contrast: drift if PSI > psi_threshold or the KS p-value < ks_pvalue;
- predicted_class: drift if the PSI of the predicted-class mix > psi_threshold;
- confidence: drift if PSI > psi_threshold or the mean confidence fell by more than
  confidence_drop below the reference's (a rise in confidence alone is no alarm).
"""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.drift import stats
from services.drift.embedding import EmbeddingDrift, load_embedding_reference
from services.drift.logreader import Position, RotatingLogReader
from services.drift.reference import resolve_reference
from services.drift.settings import Settings
from services.drift.source import PrometheusSource
from services.drift.window import NUMERIC, Record, Window, from_records

log = logging.getLogger(__name__)

FEATURES = ("brightness", "contrast", "predicted_class", "confidence")
KS_FEATURES = ("brightness", "contrast")


@dataclass
class FeatureResult:
    """One feature's verdict; `score` is the PSI, `pvalue` the KS p-value where tested."""

    score: float = math.nan
    threshold: float = math.nan
    detected: bool = False
    pvalue: float | None = None
    reference_mean: float | None = None
    current_mean: float | None = None


@dataclass
class Evaluation:
    """The outcome of one evaluation of the window."""

    timestamp: float
    window_size: int
    min_records: int
    features: dict[str, FeatureResult] = field(default_factory=dict)
    version: str = ""
    embedding: dict[str, Any] | None = None  # the MMD test of logged embeddings, if any

    @property
    def judged(self) -> bool:
        """Whether the window held enough records to judge drift at all."""
        return self.window_size >= self.min_records

    @property
    def drift(self) -> bool:
        return any(result.detected for result in self.features.values())

    def to_dict(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            return None if isinstance(value, float) and not math.isfinite(value) else value

        return {
            "timestamp": self.timestamp,
            "version": self.version,
            "window_size": self.window_size,
            "min_records": self.min_records,
            "judged": self.judged,
            "drift_detected": self.drift,
            "features": {
                name: {key: clean(value) for key, value in asdict(result).items()}
                for name, result in self.features.items()
            },
            "embedding": self.embedding,
        }


def parse_record(line: str, classes: list[str]) -> Record | None:
    """(brightness, contrast, predicted class, confidence, version, model) of one log line, or
    None."""
    try:
        record = json.loads(line)
        top = record["top_class"]
        if isinstance(top, int) and 0 <= top < len(classes):
            top = classes[top]
        values = (
            float(record["brightness"]),
            float(record["contrast"]),
            str(top),
            float(record["confidence"]),
            str(record.get("version", "")),
            str(record.get("model", "")),
        )
    except (ValueError, KeyError, TypeError):
        return None
    if not all(math.isfinite(v) for v in (values[0], values[1], values[3])):
        return None
    return values


BACKUP = re.compile(r"\.\d+$")


def log_paths(pattern: str) -> list[str]:
    """The logs `pattern` names now: the path itself, or every file a glob matches except
    numbered backups (e.g. `/logs/*.jsonl`, one file per service replica)."""
    if glob.has_magic(pattern):
        return sorted(p for p in glob.glob(pattern) if not BACKUP.search(p))
    return [pattern]


def _timestamp(line: str) -> float:
    try:
        return float(json.loads(line).get("ts", 0.0))
    except (ValueError, TypeError, AttributeError):
        return 0.0


class DriftMonitor:
    """Reads new prediction-log records into the window and evaluates it on demand."""

    def __init__(self, reference: dict[str, Any], settings: Settings) -> None:
        self.settings = settings
        self.set_reference(reference)
        self.window: deque[Record] = deque(maxlen=settings.window)
        self.readers: dict[str, RotatingLogReader] = {}
        self._saved: dict[str, Position] = {}
        self.records_read = 0
        self.invalid = 0
        self.last: Evaluation | None = None
        self.last_window: Window | None = None
        self.embeddings = EmbeddingDrift(settings.window, settings.embedding_pvalue)
        self._load_state()

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftMonitor:
        """A monitor judging against the reference `settings` names (file, folder or models:/)."""
        monitor = cls(resolve_reference(settings.reference, settings.mlflow_tracking_uri), settings)
        monitor.embeddings.reference = load_embedding_reference(
            settings.reference, settings.mlflow_tracking_uri
        )
        return monitor

    def set_reference(self, reference: dict[str, Any]) -> None:
        """Judge against another reference from now on (the window is kept)."""
        self.reference = reference
        self.classes = list(reference.get("classes") or reference["predicted_class_frequencies"])

    def reference_size(self, feature: str) -> float:
        """How many samples the reference statistics of a feature were computed on."""
        counts = self.reference.get(feature, {}).get("counts") or []
        return float(sum(counts)) or float(self.reference.get("n", 1000))

    def log_window(self) -> Window:
        """The log window's records of the judged model (`model_name`; empty: every model) and
        of its newest version (the one that wrote the last record)."""
        model = self.settings.model_name
        records = [r for r in self.window if not model or r[5] == model]
        version = records[-1][4] if records else ""
        records = [r for r in records if r[4] == version]
        return from_records(records, self.reference, version)

    def poll(self) -> int:
        """Read what the service logged since the last poll; returns the number of records."""
        added = 0
        lines = [line for reader in self._current_readers() for line in reader.read_new()]
        parsed = [(parse_record(line, self.classes), line) for line in lines]
        if len(self.readers) > 1:  # several writers: newest last, by the records' timestamps
            parsed.sort(key=lambda item: _timestamp(item[1]))
        for record, line in parsed:
            if record is None:
                self.invalid += 1
                continue
            self.window.append(record)
            self.embeddings.observe(line)
            added += 1
        self.records_read += added
        return added

    def _current_readers(self) -> list[RotatingLogReader]:
        """One reader per log (`log_paths`), each following its own file's rotations.

        The reader of a log whose files are all gone (a replaced replica's, pruned) is dropped,
        and so is its saved position.
        """
        paths = log_paths(str(self.settings.prediction_log_path))
        for gone in [p for p, r in self.readers.items() if p not in paths and not r.chain()]:
            del self.readers[gone]
        for path in paths:
            if path not in self.readers:
                self.readers[path] = RotatingLogReader(path, self._saved.get(path))
        return [self.readers[path] for path in sorted(self.readers)]

    def evaluate(self, window: Window | None = None, now: float | None = None) -> Evaluation:
        """Judge a window (default: the log window) against the reference."""
        s = self.settings
        window = self.log_window() if window is None else window
        size = round(window.size)
        result = Evaluation(
            time.time() if now is None else now, size, s.min_records, version=window.version
        )
        for feature in FEATURES:
            result.features[feature] = FeatureResult(threshold=s.psi_threshold)
        if result.judged:
            for feature in NUMERIC:
                result.features[feature] = self._numeric(feature, window)
            score = stats.categorical_psi(
                self.reference["predicted_class_frequencies"],
                window.classes,
                self.reference_size("confidence"),
            )
            result.features["predicted_class"] = FeatureResult(
                score=score, threshold=s.psi_threshold, detected=score > s.psi_threshold
            )
        result.embedding = self.embeddings.evaluate()
        self.last, self.last_window = result, window
        return result

    def _numeric(self, feature: str, window: Window) -> FeatureResult:
        s = self.settings
        stored = self.reference[feature]
        reference = np.asarray(stored["counts"], dtype=np.float64)
        current = window.counts[feature]
        score = stats.psi(reference, current)
        ref_mean = float(stored.get("mean", math.nan))
        cur_mean = window.mean(feature)
        out = FeatureResult(
            score, s.psi_threshold, score > s.psi_threshold, None, ref_mean, cur_mean
        )
        if feature in KS_FEATURES:
            out.pvalue = stats.binned_ks_pvalue(reference, current)
            out.detected = out.detected or out.pvalue < s.ks_pvalue
        if feature == "confidence":
            out.detected = out.detected or (ref_mean - cur_mean) > s.confidence_drop
        return out

    def run_once(self) -> Evaluation:
        """One cycle of the service's loop: from the log, poll, evaluate and checkpoint; from
        Prometheus, read the window and evaluate."""
        if self.settings.source == "prometheus":
            return self.evaluate(PrometheusSource(self.settings).window(self.reference))
        self.poll()
        evaluation = self.evaluate()
        self.save_state()
        return evaluation

    def save_state(self) -> None:
        """Write offsets and the window atomically, so a restart resumes where this stopped."""
        path = self.settings.state_path
        if path is None:
            return
        state = {
            "positions": {
                path: reader.position.to_dict()
                for path, reader in self.readers.items()
                if reader.position is not None
            },
            "records_read": self.records_read,
            "window": list(self.window),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def _load_state(self) -> None:
        path: Path | None = self.settings.state_path
        if path is None or not path.is_file():
            return
        try:
            state = json.loads(path.read_text())
            self._saved = {
                path: Position.from_dict(position)
                for path, position in state.get("positions", {}).items()
            }
            self.records_read = int(state.get("records_read", 0))
            # Records saved before versions were kept belong to an unknown version ("").
            self.window.extend(
                (*record, "")[:5]
                for record in state.get("window", [])  # type: ignore[misc]
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable state file %s: %s", path, exc)
            return
        log.info("resumed from %s: %d record(s) in the window", path, len(self.window))
