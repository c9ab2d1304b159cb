"""The drift window from Prometheus: the service's drift histograms over a time range.

Every inference pod exports, per loaded model version, histograms of brightness, contrast and
confidence whose buckets are the reference's bin edges, and counts per predicted class. The
window is their `increase()` over `prometheus_range`, summed over pods, for the newest version
the pods serve, evaluated at the newest scrape, so no shared volume is needed and a promotion
never mixes versions.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from services.drift.settings import Settings
from services.drift.window import NUMERIC, Window, edges_of
from slipway.errors import SlipwayError
from slipway.prometheus import PrometheusClient, label_selector

log = logging.getLogger(__name__)

P = "slipway_inference_"
HISTOGRAMS = {
    "brightness": P + "input_brightness",
    "contrast": P + "input_contrast",
    "confidence": P + "prediction_confidence",
}
CLASSES = P + "predictions_total"
MODEL_INFO = P + "model_info"


class SourceError(SlipwayError):
    """Prometheus holds no usable drift histograms for the model (or other bins)."""


def _version_key(version: str) -> tuple[int, float, str]:
    return (1, float(version), "") if version.isdigit() else (0, 0.0, version)


class PrometheusSource:
    """Reads windows for one served model from one Prometheus."""

    def __init__(self, settings: Settings, client: PrometheusClient | None = None) -> None:
        self.settings = settings
        self.client = client or PrometheusClient(settings.prometheus_url)

    def _sel(self, **labels: str) -> str:
        return label_selector(
            {"model": self.settings.model_name, **labels}, self.settings.prometheus_selector
        )

    def version(self) -> str | None:
        """The newest version the pods serve now (several during a rolling update)."""
        found = self.client.by_label(f"max by (version) ({MODEL_INFO}{self._sel()})", "version")
        return max(found, key=_version_key) if found else None

    def window(self, reference: Mapping[str, Any], at: float | None = None) -> Window:
        """The window of the newest version, at `at` (default: the newest scrape)."""
        version = self.version()
        if version is None:
            return Window(version="", size=0.0)
        sel = self._sel(version=version)
        if at is None:
            at = self.client.value(f"max(timestamp({HISTOGRAMS['confidence']}_count{sel}))")
        r = self.settings.prometheus_range
        size = self.client.value(f"sum(increase({HISTOGRAMS['confidence']}_count{sel}[{r}]))", at)
        window = Window(version=version, size=size or 0.0)
        for feature in NUMERIC:
            name = HISTOGRAMS[feature]
            buckets = self.client.by_label(
                f"sum by (le) (increase({name}_bucket{sel}[{r}]))", "le", at
            )
            window.counts[feature] = bins(buckets, edges_of(reference, feature), name)
            window.sums[feature] = (
                self.client.value(f"sum(increase({name}_sum{sel}[{r}]))", at) or 0.0
            )
        window.classes = self.client.by_label(
            f"sum by (class) (increase({CLASSES}{sel}[{r}]))", "class", at
        )
        return window


def bins(cumulative: Mapping[str, float], edges: list[float], name: str) -> np.ndarray:
    """Counts per reference bin from cumulative `le` buckets; what lies above the last edge
    joins the last bin (the reference's outer bins are open)."""
    if not cumulative:
        return np.zeros(len(edges) - 1)
    bounds = sorted((float(le), count) for le, count in cumulative.items())
    finite = [le for le, _ in bounds if math.isfinite(le)]
    if len(finite) != len(edges) - 1 or not np.allclose(finite, edges[1:], atol=1e-6):
        raise SourceError(
            f"{name} buckets {finite} are not the reference's bin edges {edges[1:]}; "
            "the service and the reference disagree on the bins"
        )
    totals = np.array([count for _, count in bounds], dtype=np.float64)
    counts = np.diff(np.concatenate([[0.0], totals]))
    counts[-2] += counts[-1]
    return np.clip(counts[:-1], 0.0, None)
