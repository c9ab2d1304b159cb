"""The promotion gate: register a candidate's decision and move the production alias.

The rule itself (`slipway.promotion.rule.decide`) is free of MLflow; this module feeds it the
candidate's and production's measurements on the same test split.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from slipway.config.promotion import PromotionPolicy
from slipway.contract.card import load_card, served_measurement
from slipway.data.scan import DatasetScan
from slipway.errors import DataError, ModelError, SlipwayError
from slipway.promotion.rule import Decision, decide
from slipway.registry.client import PRODUCTION, Registry, RegistryError
from slipway.registry.lineage import split_fingerprint
from slipway.training.evaluation import REPORT_JSON, evaluate

log = logging.getLogger(__name__)


def gate(
    registry: Registry,
    name: str,
    version: str,
    model_dir: str | os.PathLike[str],
    scan: DatasetScan,
    policy: PromotionPolicy,
) -> Decision:
    """Compare candidate `version` with production on the same test split; promote or not.

    Same split means the same test files with the same content (`split_fingerprint`). When
    production was measured on other test data, it is re-evaluated on the candidate's test
    split; when that is impossible (other classes, unreadable model), the candidate is
    refused with that reason and a person decides with `slipway registry promote`.
    """
    report = json.loads((Path(model_dir) / REPORT_JSON).read_text())
    accuracy = float(report["accuracy"])
    # The SLO applies to the variant that will be served: INT8 once it passed its gate.
    p95 = served_measurement(load_card(model_dir).export, policy.latency_key)
    production = registry.alias_version(name, PRODUCTION)
    if production is None or str(production.version) == str(version):
        decision = decide(accuracy, p95, policy)
    else:
        prod_version = str(production.version)
        try:
            prod_accuracy, how = _production_accuracy(registry, production, scan)
        except (SlipwayError, OSError, KeyError, ValueError) as exc:
            decision = Decision(
                False,
                f"production v{prod_version} cannot be compared on this test split ({exc}); "
                f"promote by hand with `slipway registry promote {name} {version}`",
                production_version=prod_version,
            )
        else:
            decision = decide(accuracy, p95, policy, prod_accuracy, prod_version)
            if how:
                decision = Decision(
                    decision.promote, f"{decision.reason} ({how})", *_prod_fields(decision)
                )
    tags = {
        "promotion_decision": decision.label,
        "promotion_reason": decision.reason,
        "compared_with_production_version": decision.production_version,
    }
    if decision.production_accuracy is not None:
        tags["production_test_accuracy"] = f"{decision.production_accuracy:.6f}"
    registry.set_tags(name, version, tags)
    if decision.promote:
        registry.promote(name, version, decision.reason)
    log.info("%s v%s %s: %s", name, version, decision.label, decision.reason)
    return decision


def _production_accuracy(
    registry: Registry, production: Any, scan: DatasetScan
) -> tuple[float, str]:
    """Production's accuracy on `scan`'s test split: its recorded metric when it was measured
    on that split, else re-evaluated."""
    tags = production.tags or {}
    wanted = split_fingerprint(scan)
    recorded = registry.metrics(production).get("test_accuracy")
    if tags.get("test_split_fingerprint") == wanted and recorded is not None:
        return float(recorded), ""
    with tempfile.TemporaryDirectory(prefix="slipway-production-") as tmp:
        folder = registry.download(f"{production.name}/{production.version}", tmp)
        try:
            report = evaluate(folder, scan, "test", write=False)
        except (DataError, ModelError) as exc:
            raise RegistryError(str(exc)) from exc
    return float(report["accuracy"]), "production re-evaluated on this test split"


def _prod_fields(decision: Decision) -> tuple[str, float | None]:
    return decision.production_version, decision.production_accuracy
