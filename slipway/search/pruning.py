"""Stopping a trial that is far behind its siblings at the same epoch.

Trials run in parallel pods, so they compare through MLflow: each trial is a child run of the
search's parent run and logs its validation metrics per epoch (step = epoch). After each epoch
a trial reads its siblings' values at that epoch and applies the rule; `TrialPrunedError` ends
it right after the epoch's checkpoint was written.

- median: worse than the median of the siblings' values at this epoch;
- halving (successive halving, asynchronous): outside the best 1/reduction_factor of all the
  trials that reached this epoch, itself included.

No rule applies during `warmup_epochs` or before `min_trials` siblings reached the epoch.
"""

from __future__ import annotations

import statistics
from typing import Any

from slipway.config.search import PruningConfig
from slipway.errors import SlipwayError


class TrialPrunedError(SlipwayError):
    """The trial stopped early: it was behind its siblings at `epoch`."""

    def __init__(self, epoch: int, value: float, reason: str) -> None:
        super().__init__(f"pruned after epoch {epoch}: {reason}")
        self.epoch, self.value, self.reason = epoch, value, reason


def _better(a: float, b: float, maximize: bool) -> bool:
    return a > b if maximize else a < b


def prune_reason(
    rule: PruningConfig, maximize: bool, epoch: int, value: float, others: list[float]
) -> str | None:
    """Why this trial should stop now, or None to continue."""
    if rule.rule == "none" or epoch <= rule.warmup_epochs or len(others) < rule.min_trials:
        return None
    if rule.rule == "median":
        median = statistics.median(others)
        if _better(median, value, maximize):
            return f"{value:.4f} is worse than the median {median:.4f} of {len(others)} trials"
        return None
    better = sum(1 for other in others if _better(other, value, maximize))
    keep = max(1, (len(others) + 1) // rule.reduction_factor)
    if better >= keep:
        return (
            f"{value:.4f} ranks {better + 1} of {len(others) + 1} trials; the best {keep} continue"
        )
    return None


class SiblingPruner:
    """`on_epoch` callback: compare with the other child runs of `parent_run_id` in MLflow."""

    def __init__(
        self,
        client: Any,
        run_id_of: Any,
        parent_run_id: str,
        experiment_id: str,
        metric: str,
        maximize: bool,
        rule: PruningConfig,
        last_epoch: int = 0,
    ) -> None:
        self.client, self.run_id_of, self.last_epoch = client, run_id_of, last_epoch
        self.parent, self.experiment_id = parent_run_id, experiment_id
        self.metric, self.maximize, self.rule = metric, maximize, rule

    def sibling_values(self, epoch: int, own: str) -> list[float]:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{self.parent}'"
        )
        values = []
        for run in runs:
            if run.info.run_id == own:
                continue
            history = self.client.get_metric_history(run.info.run_id, self.metric)
            at = [m.value for m in history if m.step == epoch]
            if at:
                values.append(at[-1])
        return values

    def __call__(self, epoch: Any) -> None:
        if self.rule.rule == "none" or epoch.epoch == self.last_epoch:
            return  # stopping after the last epoch saves nothing
        value = float(getattr(epoch, self.metric))
        others = self.sibling_values(epoch.epoch, self.run_id_of())
        reason = prune_reason(self.rule, self.maximize, epoch.epoch, value, others)
        if reason is not None:
            raise TrialPrunedError(epoch.epoch, value, reason)
