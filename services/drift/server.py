"""Run the drift monitor under uvicorn: `python -m services.drift` and `slipway drift serve`."""

from __future__ import annotations

import logging
import sys

import uvicorn

from services.drift.app import create_app
from services.drift.settings import Settings
from services.environment import load_settings
from slipway.errors import ConfigError


def serve(settings: Settings) -> None:
    """Serve in the foreground until a signal; blocks."""
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


def main() -> None:
    """Settings from `SLIPWAY_DRIFT_*` variables; a configuration mistake exits 1 with one
    message, no traceback."""
    try:
        settings = load_settings(Settings)
    except ConfigError as exc:
        sys.exit(f"error: {exc}")
    serve(settings)
