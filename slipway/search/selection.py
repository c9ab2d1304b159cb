"""Picking the winner of a search, and the trials as a table and a picture.

The winner is the completed trial with the best objective among those within the latency
budget; ties go to the lower trial index, so the choice is reproducible. Pruned and failed
trials never win. The table (Markdown and CSV) and the parameters-vs-objective scatter
(one panel per searched parameter) are what the parent MLflow run and the KFP UI show.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from slipway.config.search import SearchConfig
from slipway.errors import SlipwayError


class SearchError(SlipwayError):
    """No trial can win: every trial failed or was pruned, or none is within the budget."""


def feasible(trial: dict[str, Any], search: SearchConfig) -> bool:
    if trial.get("status") != "completed" or trial.get(search.objective) is None:
        return False
    if search.max_latency_ms is None:
        return True
    latency = trial.get("latency_ms")
    return latency is not None and latency <= search.max_latency_ms


def pick_best(trials: list[dict[str, Any]], search: SearchConfig) -> dict[str, Any]:
    """The winning trial, or SearchError saying why there is none."""
    candidates = [t for t in trials if feasible(t, search)]
    if not candidates:
        counts = {s: sum(t.get("status") == s for t in trials) for s in ("failed", "pruned")}
        completed = len(trials) - sum(counts.values())
        if completed and search.max_latency_ms is not None:
            raise SearchError(
                f"none of the {completed} completed trials is within the latency budget of "
                f"{search.max_latency_ms} ms (search.max_latency_ms)"
            )
        first = next((t.get("reason") for t in trials if t.get("status") == "failed"), "")
        raise SearchError(
            f"no trial completed ({counts['failed']} failed, {counts['pruned']} pruned)"
            + (f"; first failure: {first}" if first else "")
        )
    sign = -1.0 if search.maximize else 1.0
    return min(candidates, key=lambda t: (sign * float(t[search.objective]), int(t["index"])))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1:
        return str(int(value))  # an int that went through a pipeline parameter (JSON number)
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.4f}"
    return str(value)


def table_rows(trials: list[dict[str, Any]], search: SearchConfig, best: int | None) -> list:
    keys = list(search.space)
    header = ["trial", "round", *keys, "status", "epochs", "val_accuracy", "val_loss"]
    header += ["latency_ms", "reused", "mlflow_run"]
    rows = [header]
    for t in sorted(trials, key=lambda t: int(t["index"])):
        mark = " (best)" if best is not None and int(t["index"]) == best else ""
        rows.append(
            [
                f"{int(t['index'])}{mark}",
                str(int(t.get("round", 0))),
                *(_fmt(t["params"].get(k)) for k in keys),
                str(t.get("status")),
                str(t.get("epochs_run", "-")),
                _fmt(t.get("val_accuracy")),
                _fmt(t.get("val_loss")),
                _fmt(t.get("latency_ms")),
                "yes" if t.get("reused") else "no",
                str(t.get("mlflow_run_id") or "-"),
            ]
        )
    return rows


def markdown_table(trials: list[dict[str, Any]], search: SearchConfig, best: int | None) -> str:
    rows = table_rows(trials, search, best)
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in rows[1:]]
    return "\n".join(lines) + "\n"


def csv_table(trials: list[dict[str, Any]], search: SearchConfig, best: int | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    for row in table_rows(trials, search, best):
        writer.writerow(row)
    return out.getvalue()


def _numeric(values: list[Any]) -> tuple[list[float], list[str] | None]:
    """Positions of the values on an axis: the numbers, or category indices and labels."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    labels = sorted({str(v) for v in values})
    return [float(labels.index(str(v))) for v in values], labels


def scatter_png(
    trials: list[dict[str, Any]], search: SearchConfig, best: int | None, path: Path
) -> Path:
    """One panel per searched parameter: its value vs the objective, colour = status."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(search.space) or ["trial"]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.5), squeeze=False)
    colours = {"completed": "tab:blue", "pruned": "tab:orange", "failed": "tab:red"}
    scored = [t for t in trials if t.get(search.objective) is not None]
    for ax, key in zip(axes[0], keys, strict=True):
        values = [t["params"].get(key, t["index"]) for t in scored]
        xs, labels = _numeric(values) if values else ([], None)
        ys = [float(t[search.objective]) for t in scored]
        for x, y, t in zip(xs, ys, scored, strict=True):
            is_best = best is not None and int(t["index"]) == best
            ax.scatter(
                x,
                y,
                c=colours.get(str(t.get("status")), "grey"),
                marker="*" if is_best else "o",
                s=160 if is_best else 40,
            )
        param = search.space.get(key)
        if labels is None and param is not None and param.log and xs and min(xs) > 0:
            ax.set_xscale("log")
        if labels is not None:
            ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
        ax.set_xlabel(key)
        ax.set_ylabel(search.objective)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=s) for s, c in colours.items()]
    axes[0][-1].legend(handles=handles, fontsize=8)
    fig.suptitle(f"{search.method} search: {len(trials)} trials (star: best)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def trial_epochs(trials: list[dict[str, Any]], epochs_each: int) -> tuple[int, int]:
    """(epochs trained, epochs a search without pruning would have trained)."""
    fresh = [t for t in trials if not t.get("reused")]
    run = sum(int(t.get("epochs_run") or 0) for t in fresh)
    full = sum(int(t["params"].get("training.epochs", epochs_each)) for t in fresh)
    return run, full
