"""Compile the training pipeline, run it on this machine with kfp.local, or submit it to KFP."""

import contextlib
import io
import logging
import re
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from kfp.dsl.graph_component import GraphComponent

from pipelines.training import PIPELINE_NAME, build_pipeline
from slipway.config.cluster import ClusterOptions
from slipway.errors import SlipwayError

log = logging.getLogger(__name__)

DEFAULT_IR = Path("build/pipelines/training.yaml")
# Builds a pipeline for cluster options: `build_pipeline`, or the search's for one search shape.
Builder = Callable[[ClusterOptions], GraphComponent]


class SubmitError(SlipwayError):
    """The KFP API could not be reached or refused the request."""


class LocalRunError(SlipwayError):
    """A step of a local pipeline run failed; its log is above the message."""


def compile_pipeline(
    out: Path = DEFAULT_IR, opts: ClusterOptions | None = None, build: Builder = build_pipeline
) -> Path:
    """Write the pipeline as KFP IR YAML (pipeline spec + Kubernetes platform spec)."""
    from kfp import compiler

    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build(opts or ClusterOptions()), str(out))
    return out


class _StatusTee(io.TextIOBase):
    """Everything to the log file; kfp.local's step status lines also to the terminal."""

    STATUS = re.compile(r"Executing task|finished with status|Running pipeline|cache hit")

    def __init__(self, log: TextIO, terminal: TextIO) -> None:
        self.log, self.terminal, self.pending = log, terminal, ""

    def write(self, text: str) -> int:
        self.log.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if self.STATUS.search(line):
                self.terminal.write(line + "\n")
                self.terminal.flush()
        return len(text)

    def flush(self) -> None:
        self.log.flush()


def run_local(
    params: dict[str, Any],
    pipeline_root: Path,
    fresh: bool = False,
    opts: ClusterOptions | None = None,
    log_file: Path | None = None,
    build: Builder = build_pipeline,
) -> dict[str, Any]:
    """Run the whole pipeline (`build`'s) with kfp.local in this environment; return its outputs.

    `SubprocessRunner(use_venv=False)` runs each step as a process of this virtual environment,
    which is what the training image is on the cluster. Caching is on unless `fresh`; train and
    register are never cached. With `log_file`, the steps' own output (long executor JSON
    included) goes there and only kfp's step status lines reach the terminal.
    """
    from kfp import local

    pipeline_root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        enable_caching=not fresh,
    )
    pipeline = build((opts or ClusterOptions()).for_local_run())
    began = time.perf_counter()
    where = f"the step's log is in {log_file}" if log_file else "the step's log is above"
    with contextlib.ExitStack() as stack:
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            stream = stack.enter_context(log_file.open("w"))
            stack.enter_context(contextlib.redirect_stdout(_StatusTee(stream, sys.stdout)))
        try:
            with warnings.catch_warnings():
                # Expected: kfp.local ignores resources and runs the image's code in this venv.
                warnings.filterwarnings("ignore", message=".*no effect in the current local")
                warnings.filterwarnings("ignore", message=".*custom or non-Python base image")
                task = pipeline(**params)
        except RuntimeError as exc:
            raise LocalRunError(f"the pipeline failed: {exc} ({where})") from exc
    return {**task.outputs, "seconds": time.perf_counter() - began}


def to_kfp_cron(expression: str) -> str:
    """KFP schedules take six cron fields (seconds first); accept the usual five as well."""
    fields = expression.split()
    if len(fields) == 5:
        return " ".join(["0", *fields])
    if len(fields) == 6:
        return expression
    raise SubmitError(f"--schedule needs a cron expression of 5 or 6 fields, got {expression!r}")


def preflight(
    host: str, token: str | None, cookie: str | None, ssl_ca_cert: str | None, timeout: float = 10
) -> None:
    """Ask the API's healthz once, so a wrong host or missing credentials fail fast and clearly.

    (`kfp.Client` would retry for half a minute and log traces before failing.)
    """
    import ssl
    import urllib.error
    import urllib.request

    if not host.startswith(("http://", "https://")):
        raise SubmitError(f"--host must be an http(s) URL, got {host!r}")
    request = urllib.request.Request(f"{host.rstrip('/')}/apis/v2beta1/healthz")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if cookie:
        request.add_header("Cookie", cookie)
    context = ssl.create_default_context(cafile=ssl_ca_cert) if host.startswith("https") else None
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            kind = response.headers.get("Content-Type", "")
            body = response.read(2048)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise SubmitError(
                f"{host} has no KFP API (HTTP 404 for /apis/v2beta1/healthz); "
                "the URL usually ends in /pipeline or is the ml-pipeline service"
            ) from None
        raise _explain(host, exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SubmitError(f"cannot reach the KFP API at {host}: {reason}") from None
    if "json" not in kind and body.lstrip().startswith(b"<"):
        raise SubmitError(
            f"{host} answered with a web page (a login redirect?): pass --cookie or --token"
        )


def _client(
    host: str,
    namespace: str | None,
    token: str | None,
    cookie: str | None,
    ssl_ca_cert: str | None,
) -> Any:
    import kfp

    kwargs: dict[str, Any] = {"host": host, "existing_token": token, "cookies": cookie}
    if namespace:
        kwargs["namespace"] = namespace
    if ssl_ca_cert:
        kwargs["ssl_ca_cert"] = ssl_ca_cert
    return kfp.Client(**kwargs)


def _explain(host: str, exc: Exception) -> SubmitError:
    """One line a person can act on, instead of a urllib3 / swagger trace."""
    status = getattr(exc, "status", None) or getattr(exc, "code", None)
    if status in (401, 403):
        return SubmitError(
            f"{host} refused the request (HTTP {status}): authentication failed; "
            "pass --token (a service-account token) or --cookie (authservice_session=...)"
        )
    if status is not None:
        reason = getattr(exc, "reason", "") or ""
        return SubmitError(f"{host} answered HTTP {status} {reason}".strip())
    text = str(exc)
    if "CERTIFICATE" in text.upper() or "SSL" in text.upper():
        return SubmitError(f"TLS to {host} failed; pass --ssl-ca-cert FILE ({text[:120]})")
    return SubmitError(f"cannot reach the KFP API at {host}: {type(exc).__name__}")


def submit(
    host: str,
    params: dict[str, Any],
    *,
    experiment: str = "slipway",
    namespace: str | None = None,
    token: str | None = None,
    cookie: str | None = None,
    ssl_ca_cert: str | None = None,
    schedule: str | None = None,
    run_name: str | None = None,
    fresh: bool = False,
    opts: ClusterOptions | None = None,
    build: Builder = build_pipeline,
    name: str = PIPELINE_NAME,
) -> dict[str, str]:
    """Compile and submit one run, or a recurring run when `schedule` (cron) is given.

    A recurring run always starts fresh (no cache): the data behind the same source URI may
    have changed since the last run, and a cached prepare step would hide that.
    """
    cron = to_kfp_cron(schedule) if schedule else None
    preflight(host, token, cookie, ssl_ca_cert)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
        package = compile_pipeline(Path(tmp) / f"{name}.yaml", opts, build)
        try:
            client = _client(host, namespace, token, cookie, ssl_ca_cert)
            exp = client.create_experiment(experiment, namespace=namespace)
            if cron:
                job = client.create_recurring_run(
                    experiment_id=exp.experiment_id,
                    job_name=run_name or f"{name}-schedule",
                    cron_expression=cron,
                    params=params,
                    pipeline_package_path=str(package),
                    enable_caching=False,
                    no_catchup=True,
                )
                return {"recurring_run_id": job.recurring_run_id, "schedule": cron}
            run = client.create_run_from_pipeline_package(
                str(package),
                arguments=params,
                run_name=run_name or f"{name} {time.strftime('%Y-%m-%d %H:%M:%S')}",
                experiment_id=exp.experiment_id,
                namespace=namespace,
                enable_caching=False if fresh else None,
            )
            return {"run_id": run.run_id, "url": f"{host.rstrip('/')}/#/runs/details/{run.run_id}"}
        except SubmitError:
            raise
        except Exception as exc:  # urllib3, swagger ApiException, JSON from a login page, ...
            log.debug("submit failed", exc_info=True)
            raise _explain(host, exc) from exc
