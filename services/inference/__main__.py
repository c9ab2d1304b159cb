"""`python -m services.inference`: serve with settings from `SLIPWAY_*` environment variables."""

from services.inference.server import main

if __name__ == "__main__":
    main()
