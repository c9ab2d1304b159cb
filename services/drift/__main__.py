"""`python -m services.drift`: run the drift monitor with settings from `SLIPWAY_DRIFT_*`."""

from services.drift.server import main

if __name__ == "__main__":
    main()
