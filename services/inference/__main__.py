"""`python -m services.inference`: serve with settings from `SLIPWAY_*` environment variables."""

from services.inference.server import serve
from services.inference.settings import Settings

if __name__ == "__main__":
    serve(Settings())
