"""A self-contained HTML drift report: reference vs current histograms as inline SVG.

No JavaScript, no CDN, no plotting library: the page opens offline and the serving image needs
nothing beyond NumPy to draw it.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence

import numpy as np

from services.drift.monitor import DriftMonitor, Evaluation
from services.drift.settings import Settings
from services.drift.window import NUMERIC, Window

WIDTH, HEIGHT = 560, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 28, 56
REFERENCE_COLOR, CURRENT_COLOR = "#3b6ea5", "#e07b39"
NICE_STEPS = (0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2)


def _bars_svg(
    title: str,
    labels: Sequence[str],
    reference: np.ndarray,
    current: np.ndarray,
    tick_every: int = 1,
) -> str:
    """Grouped bars of two distributions (shares that each sum to 1)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    highest = max(float(np.max(reference, initial=0)), float(np.max(current, initial=0)))
    step = next((s for s in NICE_STEPS if s * 5 >= highest), 0.2)
    ticks = max(math.ceil(highest / step - 1e-9), 1)
    top = step * ticks
    slot = plot_w / max(len(labels), 1)
    bar = slot * 0.4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" font-size="14" '
        f'font-weight="bold">{html.escape(title)}</text>',
    ]
    parts += _grid(step, ticks)
    for i, label in enumerate(labels):
        x = LEFT + i * slot + slot * 0.1
        for offset, share, color in (
            (0, reference[i], REFERENCE_COLOR),
            (bar, current[i], CURRENT_COLOR),
        ):
            h = plot_h * float(share) / top
            parts.append(
                f'<rect x="{x + offset:.1f}" y="{TOP + plot_h - h:.1f}" '
                f'width="{bar:.1f}" height="{h:.1f}" fill="{color}"/>'
            )
        if i % tick_every == 0:
            tx, ty = LEFT + i * slot + slot / 2, TOP + plot_h + 12
            parts.append(
                f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="9" text-anchor="end" '
                f'transform="rotate(-30 {tx:.1f} {ty:.1f})">{html.escape(label)}</text>'
            )
    parts.append(
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{TOP + plot_h}" '
        f'y2="{TOP + plot_h}" stroke="#333"/>'
    )
    parts += _legend()
    parts.append("</svg>")
    return "".join(parts)


def _grid(step: float, ticks: int) -> list[str]:
    """Horizontal grid lines with their share labels."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    parts = []
    for i in range(ticks + 1):
        y = TOP + plot_h - plot_h * i / ticks
        parts.append(
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
        )
        parts.append(
            f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="10">{step * i:.3g}</text>'
        )
    return parts


def _legend() -> list[str]:
    legend_y = HEIGHT - 8
    parts = []
    for k, (name, color) in enumerate((("reference", REFERENCE_COLOR), ("current", CURRENT_COLOR))):
        lx = LEFT + k * 110
        parts.append(f'<rect x="{lx}" y="{legend_y - 9}" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{lx + 14}" y="{legend_y}" font-size="11">{name}</text>')
    return parts


def _shares(counts: np.ndarray) -> np.ndarray:
    return counts / max(float(counts.sum()), 1.0)


def feature_svg(monitor: DriftMonitor, feature: str, window: Window) -> str:
    """Histogram of one feature, reference vs the judged window."""
    if feature in NUMERIC:
        stored = monitor.reference[feature]
        edges = np.asarray(stored["edges"], dtype=np.float64)
        reference = _shares(np.asarray(stored["counts"], dtype=np.float64))
        current = _shares(window.counts[feature])
        labels = [f"{edge:.2f}" for edge in edges[:-1]]
        return _bars_svg(f"{feature}: share per bin", labels, reference, current, tick_every=2)
    frequencies = monitor.reference["predicted_class_frequencies"]
    names = list(frequencies)
    reference = np.array([frequencies[n] for n in names], dtype=np.float64)
    seen = np.array([window.classes.get(n, 0.0) for n in names], dtype=np.float64)
    return _bars_svg("predicted class: share", names, _shares(reference), _shares(seen))


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}"


def _source(s: Settings) -> str:
    if s.source == "prometheus":
        return f"Prometheus {s.prometheus_url}, the last {s.prometheus_range}"
    return f"prediction log {s.prediction_log_path}, the newest {s.window} records"


def embedding_section(result: dict | None) -> str:
    """The MMD test of logged embeddings: a line saying why there is none, or its table."""
    if result is None:
        return (
            "<h2>Embedding drift</h2><p>Not tested: the log holds too few embeddings of the "
            "served version, or the reference model has no embedding.npz.</p>"
        )
    state = "DRIFT" if result["detected"] else "ok"
    color = "#b00020" if result["detected"] else "#2e7d32"
    return (
        "<h2>Embedding drift</h2>"
        "<p>MMD two-sample test (RBF kernel, median bandwidth, permutation p-value) of the "
        "projected penultimate-layer embeddings logged for the newest version, against the "
        "training sample of the reference model.</p>"
        "<table><tr><th>version</th><th>MMD&#178;</th><th>p-value</th><th>threshold</th>"
        "<th>logged points</th><th>reference points</th><th>state</th></tr>"
        f"<tr><td>{html.escape(str(result['version']))}</td><td>{_fmt(result['mmd2'], 4)}</td>"
        f"<td>{_fmt(result['p_value'])}</td><td>{_fmt(result['threshold'])}</td>"
        f"<td>{result['points']}</td><td>{result['reference_points']}</td>"
        f'<td style="color:{color};font-weight:bold">{state}</td></tr></table>'
    )


def render_report(monitor: DriftMonitor, evaluation: Evaluation, source: str = "") -> str:
    """The whole page as one HTML string."""
    rows = []
    for name, result in evaluation.features.items():
        state = "DRIFT" if result.detected else "ok"
        color = "#b00020" if result.detected else "#2e7d32"
        rows.append(
            f"<tr><td>{name}</td><td>{_fmt(result.score)}</td><td>{_fmt(result.pvalue)}</td>"
            f"<td>{_fmt(result.threshold)}</td><td>{_fmt(result.reference_mean)}</td>"
            f"<td>{_fmt(result.current_mean)}</td>"
            f'<td style="color:{color};font-weight:bold">{state}</td></tr>'
        )
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(evaluation.timestamp))
    verdict = (
        "not enough records yet"
        if not evaluation.judged
        else ("drift detected" if evaluation.drift else "no drift")
    )
    window = monitor.last_window or monitor.log_window()
    plots = "".join(
        f"<figure>{feature_svg(monitor, feature, window)}</figure>"
        for feature in ("brightness", "contrast", "confidence", "predicted_class")
    )
    s = monitor.settings
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>slipway drift report</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 12px 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
figure {{ display: inline-block; margin: 8px; border: 1px solid #eee; }}
</style></head><body>
<h1>Drift report: {html.escape(verdict)}</h1>
<p>Reference: {html.escape(source or s.reference)}<br>
Window source: {html.escape(_source(s))}<br>
Window: {evaluation.window_size} record(s) of version {html.escape(evaluation.version or "-")}
(judged from {s.min_records}); evaluated {when}.<br>
Thresholds: PSI &gt; {s.psi_threshold}, KS p-value &lt; {s.ks_pvalue},
mean confidence drop &gt; {s.confidence_drop}.</p>
<table><tr><th>feature</th><th>PSI</th><th>KS p-value</th><th>PSI threshold</th>
<th>reference mean</th><th>current mean</th><th>state</th></tr>
{"".join(rows)}</table>
{embedding_section(evaluation.embedding)}
{plots}
</body></html>
"""
