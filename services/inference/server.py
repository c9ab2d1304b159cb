"""Run the app under uvicorn, with the gRPC server in the same event loop, and a graceful SIGTERM.

On the first SIGTERM (or Ctrl-C) the service reports not ready and keeps answering for
DRAIN_SECONDS, so load balancers stop sending it traffic; then the gRPC server refuses new calls
and finishes the accepted ones, uvicorn stops accepting, waits for every accepted request, and
the lifespan flushes the prediction log. A second signal forces the exit.

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
from socket import socket
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from services.environment import load_settings
from services.inference.app import create_app
from services.inference.service import InferenceService
from services.inference.settings import Settings, parse_assignments
from slipway.errors import ConfigError

if TYPE_CHECKING:
    from services.inference.grpc_server import GrpcServer

log = logging.getLogger(__name__)


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose first exit signal starts a drain period instead of stopping, and
    which runs the gRPC server (when given) from its start to its shutdown."""

    def __init__(
        self,
        config: uvicorn.Config,
        service: InferenceService,
        drain_seconds: float,
        grpc: GrpcServer | None = None,
        grace_seconds: float = 30.0,
    ) -> None:
        super().__init__(config)
        self.service = service
        self.drain_seconds = drain_seconds
        self.grpc = grpc
        self.grace_seconds = grace_seconds
        self.failed = False
        self._draining = False
        self._timer: threading.Timer | None = None

    async def startup(self, sockets: list[socket] | None = None) -> None:
        if self.grpc is not None:
            try:
                await self.grpc.start()
            except OSError as exc:
                log.error("%s", exc)
                self.failed = self.should_exit = True
                return
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn could not bind its port
            if self.grpc is not None:
                await self.grpc.stop(0)
            raise

    async def shutdown(self, sockets: list[socket] | None = None) -> None:
        if self.grpc is not None:
            await self.grpc.stop(0 if self.force_exit else self.grace_seconds)
        await super().shutdown(sockets)

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
    grace = int(settings.request_timeout_s) + 5
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=grace,
        timeout_keep_alive=5,
    )
    grpc = None
    if settings.grpc_port:
        # Imported here: the stubs register the `inference.*` protobuf names process-wide.
        from services.inference.grpc_server import GrpcServer

        grpc = GrpcServer(app.state.dataplane, settings, app.state.metrics)
    server = DrainingServer(config, app.state.service, settings.drain_seconds, grpc, grace)
    try:
        server.run()
    except KeyboardInterrupt:
        # uvicorn re-raises the stopping signal after a clean shutdown; Ctrl-C is not an error.
        log.info("stopped")
    if server.failed:
        sys.exit(1)


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
