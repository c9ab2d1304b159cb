"""Run the app under uvicorn with a graceful SIGTERM.

On the first SIGTERM (or Ctrl-C) the service reports not ready and keeps answering for
DRAIN_SECONDS, so load balancers stop sending it traffic; then uvicorn stops accepting, waits
for every accepted request, and the lifespan flushes the prediction log. A second signal forces
the exit.

`main` is `python -m services.inference`; `command` is how another program (the `slipway
loadtest --model` command, the benchmark, the tests) starts it without importing it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType

import uvicorn

from services.environment import load_settings
from services.inference.app import create_app
from services.inference.service import InferenceService
from services.inference.settings import Settings, parse_assignments
from slipway.errors import ConfigError

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal starts a drain period instead of stopping."""

    def __init__(
        self, config: uvicorn.Config, service: InferenceService, drain_seconds: float
    ) -> None:
        super().__init__(config)
        self.service = service
        self.drain_seconds = drain_seconds
        self._draining = False
        self._timer: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining:
            log.warning("second signal: stopping now")
            self.force_exit = self.force_exit or sig == signal.SIGINT
            super().handle_exit(sig, frame)
            return
        self._draining = True
        service = self.service
        service.draining = True
        for name in service.slots:
            service.metrics.ready.labels(name).set(0)
        log.info("signal %s: not ready; draining for %g s", sig, self.drain_seconds)
        self._timer = threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame))
        self._timer.daemon = True
        self._timer.start()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def serve(settings: Settings) -> None:
    """Serve in the foreground until a signal; blocks."""
    configure_logging(settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=int(settings.request_timeout_s) + 5,
        timeout_keep_alive=5,
    )
    try:
        DrainingServer(config, app.state.service, settings.drain_seconds).run()
    except KeyboardInterrupt:
        # uvicorn re-raises the stopping signal after a clean shutdown; Ctrl-C is not an error.
        log.info("stopped")


def command(overrides: Mapping[str, object] | None = None) -> list[str]:
    """`python -m services.inference --set FIELD=VALUE ...` with this interpreter.

    The `SLIPWAY_*` environment still applies; `overrides` (field names) win over it. An
    unknown field fails here, before anything starts.
    """
    sets = [f"{name}={_text(value)}" for name, value in (overrides or {}).items()]
    parse_assignments(sets)
    return [sys.executable, "-m", "services.inference", *(f"--set={item}" for item in sets)]


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def main(argv: Sequence[str] | None = None) -> None:
    """Build the settings from the environment and `--set`, then serve; a configuration
    mistake exits 1 with one message, no traceback."""
    parser = argparse.ArgumentParser(
        prog="python -m services.inference",
        description="Serve a model; settings come from SLIPWAY_* environment variables.",
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="Override one setting by its field name (repeatable).",
    )
    args = parser.parse_args(argv)
    try:
        settings = load_settings(Settings, **parse_assignments(args.sets))
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    serve(settings)
