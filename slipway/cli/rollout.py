"""`slipway rollout`: promote or roll back the live candidate from what Prometheus saw.

`--once` for a Job or CronJob; without it, a loop every `--interval` seconds (a Deployment).
The criteria are the experiment's `rollout` section (`--config`, `--set rollout.key=value`).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Any

import typer

from slipway.cli.experiment import ConfigFile, ModelName, Sets, field_help, resolve
from slipway.errors import SlipwayError

log = logging.getLogger(__name__)

Window = Annotated[str | None, typer.Option(help=field_help("rollout.window"))]
MinRequests = Annotated[int | None, typer.Option(help=field_help("rollout.min_requests"))]
TrackingUri = Annotated[
    str | None,
    typer.Option(envvar="MLFLOW_TRACKING_URI", help=field_help("tracking.uri")),
]


def _step_report(step: Any) -> dict[str, Any]:
    decision = step.decision
    if decision is None:
        return {"action": "none", "reason": "no candidate (no staging alias)"}
    report: dict[str, Any] = {
        "action": decision.action,
        "version": decision.version,
        "passed": decision.passed,
        "failed": decision.failed,
        "pending": decision.pending,
    }
    if step.measurement is not None:
        report["measured"] = step.measurement.metrics()
    if step.run_id:
        report["mlflow_run_id"] = step.run_id
    return report


def rollout(
    prometheus: Annotated[
        str,
        typer.Option(envvar="SLIPWAY_PROMETHEUS_URL", help="Prometheus base URL."),
    ] = "http://127.0.0.1:9090",
    config: ConfigFile = None,
    sets: Sets = None,
    model_name: ModelName = None,
    tracking_uri: TrackingUri = None,
    window: Window = None,
    min_requests: MinRequests = None,
    selector: Annotated[
        str,
        typer.Option(
            envvar="SLIPWAY_ROLLOUT_SELECTOR",
            help='Extra PromQL label matchers for every query, e.g. namespace="prod".',
        ),
    ] = "",
    once: Annotated[
        bool, typer.Option("--once", help="One step, then exit (Job/CronJob).")
    ] = False,
    interval: Annotated[float, typer.Option(min=1, help="Seconds between steps (loop).")] = 60.0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and log; change nothing.")
    ] = False,
    pod_name: Annotated[
        str, typer.Option(envvar="POD_NAME", help="This pod, the object of Kubernetes Events.")
    ] = "",
) -> None:
    """Judge the candidate (the staging alias) over a window; promote, roll back or wait."""
    from slipway.prometheus import PrometheusClient
    from slipway.registry.client import DEFAULT_TRACKING_URI, Registry
    from slipway.rollout.controller import Controller
    from slipway.rollout.decision import Limits

    options = locals()
    extra = [f"rollout.window={window}"] if window is not None else []
    if min_requests is not None:
        extra.append(f"rollout.min_requests={min_requests}")
    options["sets"] = [*(sets or []), *extra]
    experiment = resolve(options)
    controller = Controller(
        registry=Registry(experiment.tracking.uri or DEFAULT_TRACKING_URI),
        prometheus=PrometheusClient(prometheus),
        name=experiment.model.name,
        limits=Limits.of(experiment.rollout, experiment.promotion),
        experiment=experiment.tracking.experiment,
        selector=selector,
        pod=pod_name,
        dry_run=dry_run,
    )
    while True:
        try:
            step = controller.step()
        except SlipwayError:
            if once:
                raise
            log.exception("rollout step failed; next try in %.0f s", interval)
        else:
            typer.echo(json.dumps(_step_report(step), sort_keys=True))
        if once:
            return
        time.sleep(interval)


def register(app: typer.Typer) -> None:
    app.command("rollout")(rollout)
