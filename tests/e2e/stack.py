"""The monitoring loop on loopback: inference service, drift monitor, Prometheus, Alertmanager.

Prometheus loads the chart's own alert rules, rendered by `tests/charts/render.py` from the
unchanged files under `charts/inference/files/alerts/` with test values for `for:`, windows and
selectors. Alertmanager sends every notification to a webhook this test process runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.processes import ServerProcess, Webhook, free_port, python_module, running, wait_for
from tests.helpers import require_tool

MODEL_NAME = "tiny"
INFERENCE_JOB = "inference"
DRIFT_JOB = "drift"
DRIFT_WINDOW = 600
# As the chart lays out the shared claim: one log per inference pod, read through a glob.
PREDICTION_LOG = "inference-0.jsonl"


@dataclass
class Stack:
    """URLs of the running parts and the webhook's inbox."""

    inference: str
    drift: str
    prometheus: str
    alertmanager: str
    webhook: Webhook
    work: Path
    prediction_logs: Path
    processes: dict[str, ServerProcess] = field(default_factory=dict)

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query against the live Prometheus; raises on a PromQL error."""
        response = httpx.get(
            self.prometheus + "/api/v1/query", params={"query": expr}, timeout=10, trust_env=False
        )
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"query failed: {expr}\n{body.get('error', body)}")
        return body["data"]["result"]

    def active_alerts(self, name: str | None = None) -> list[dict[str, Any]]:
        """Alerts Prometheus holds as pending or firing right now."""
        response = httpx.get(self.prometheus + "/api/v1/alerts", timeout=10, trust_env=False)
        alerts = response.json()["data"]["alerts"]
        return [a for a in alerts if name is None or a["labels"]["alertname"] == name]

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{process.output(1500)}" for name, process in self.processes.items()
        )


def prometheus_config(stack_ports: Mapping[str, int], rules: Path) -> dict[str, Any]:
    def job(name: str, port: int) -> dict[str, Any]:
        return {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}

    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "alerting": {
            "alertmanagers": [
                {"static_configs": [{"targets": [f"127.0.0.1:{stack_ports['alertmanager']}"]}]}
            ]
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            job(INFERENCE_JOB, stack_ports["inference"]),
            job(DRIFT_JOB, stack_ports["drift"]),
        ],
    }


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    return {
        "route": {
            "receiver": "webhook",
            "group_by": ["..."],
            "group_wait": "1s",
            "group_interval": "1s",
            "repeat_interval": "1h",
        },
        "receivers": [
            {"name": "webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        ],
    }


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def service_processes(
    model_dir: Path, work: Path, ports: Mapping[str, int], service_env: Mapping[str, str]
) -> tuple[ServerProcess, ServerProcess]:
    """The inference service and the drift monitor, sharing the log folder as the chart's pods
    share the claim."""
    log_dir = work / "predictions"
    inference = python_module(
        "inference",
        "services.inference",
        work,
        {
            "SLIPWAY_MODEL_SOURCE": str(model_dir),
            "SLIPWAY_MODEL_NAME": MODEL_NAME,
            "SLIPWAY_HOST": "127.0.0.1",
            "SLIPWAY_PORT": str(ports["inference"]),
            "SLIPWAY_GRPC_PORT": str(free_port()),
            "SLIPWAY_PREDICTION_LOG_PATH": str(log_dir / PREDICTION_LOG),
            "SLIPWAY_RELOAD_INTERVAL_S": "0",
            "SLIPWAY_FAULT_INJECTION": "true",
            "SLIPWAY_DRAIN_SECONDS": "0",
            "SLIPWAY_THREADS": "1",
            **service_env,
        },
        _url(ports["inference"]),
    )
    drift = python_module(
        "drift",
        "services.drift",
        work,
        {
            "SLIPWAY_DRIFT_PREDICTION_LOG_PATH": str(log_dir / "*.jsonl"),
            "SLIPWAY_DRIFT_REFERENCE": str(model_dir),
            "SLIPWAY_DRIFT_WINDOW": str(DRIFT_WINDOW),
            "SLIPWAY_DRIFT_MIN_RECORDS": str(DRIFT_WINDOW),
            "SLIPWAY_DRIFT_INTERVAL_S": "0.5",
            "SLIPWAY_DRIFT_STATE_PATH": str(log_dir / "drift-state.json"),
            "SLIPWAY_DRIFT_PORT": str(ports["drift"]),
        },
        _url(ports["drift"]),
    )
    return inference, drift


def monitoring_processes(
    work: Path, ports: Mapping[str, int], rules: Path, webhook_url: str
) -> tuple[ServerProcess, ServerProcess]:
    """Alertmanager (notifying the webhook) and Prometheus (scraping both services)."""
    (work / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(ports, rules)))
    (work / "alertmanager.yml").write_text(yaml.safe_dump(alertmanager_config(webhook_url)))
    alertmanager = ServerProcess(
        [
            require_tool("prometheus-alertmanager"),
            f"--config.file={work / 'alertmanager.yml'}",
            f"--storage.path={work / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{ports['alertmanager']}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        _url(ports["alertmanager"]),
        log=work / "alertmanager.log",
        name="alertmanager",
    )
    return alertmanager, prometheus_process(work, ports["prometheus"])


def prometheus_process(work: Path, port: int) -> ServerProcess:
    """The Prometheus binary with `work/prometheus.yml`, its data under `work`; not started."""
    return ServerProcess(
        [
            require_tool("prometheus"),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
            "--log.level=warn",
        ],
        _url(port),
        log=work / "prometheus.log",
        name="prometheus",
    )


@contextlib.contextmanager
def monitoring_stack(
    model_dir: Path, work: Path, rule_params: Mapping[str, Any], service_env: Mapping[str, str]
) -> Iterator[Stack]:
    """Start everything (Alertmanager before Prometheus), yield, stop everything."""
    from tests.charts.render import write_rules_file

    params = {
        "selector": f'job="{INFERENCE_JOB}"',
        "driftSelector": f'job="{DRIFT_JOB}"',
        **rule_params,
    }
    rules = write_rules_file(work / "rules.yaml", {"prometheusRule.params": params})
    ports = {name: free_port() for name in ("inference", "drift", "prometheus", "alertmanager")}
    inference, drift = service_processes(model_dir, work, ports, service_env)
    with Webhook() as webhook:
        alertmanager, prometheus = monitoring_processes(work, ports, rules, webhook.url)
        url = {name: _url(port) for name, port in ports.items()}
        stack = Stack(
            **url,
            webhook=webhook,
            work=work,
            prediction_logs=work / "predictions",
            processes={
                "inference": inference,
                "drift": drift,
                "alertmanager": alertmanager,
                "prometheus": prometheus,
            },
        )
        with running(inference, drift, alertmanager):
            inference.wait_ready(timeout=120)
            drift.wait_ready(timeout=60)
            alertmanager.wait_ready("/-/ready", timeout=60)
            with running(prometheus):
                prometheus.wait_ready("/-/ready", timeout=60)
                wait_for(
                    "Prometheus to scrape both targets",
                    lambda: len(stack.query('up{job=~"inference|drift"} == 1')) == 2,
                    60,
                )
                yield stack
