"""`python -m services.drift`: run the drift monitor under uvicorn with env settings."""

from __future__ import annotations

import logging

import uvicorn

from services.drift.app import create_app
from services.drift.settings import Settings


def main() -> None:
    settings = Settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


if __name__ == "__main__":
    main()
