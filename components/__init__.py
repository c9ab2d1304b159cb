"""KFP components of the training pipeline: thin shells over `slipway.steps`.

Each component runs in the training image `TRAIN_IMAGE` (built from Dockerfile.train, with
slipway, torch, kfp and mlflow inside; its tag is the package version); nothing is pip-installed
when a step starts. Locally, kfp.local runs the same functions in this virtual environment. The
pipeline may replace the image when it is compiled (`slipway pipeline compile --image ...`).

Settings arrive as one dict per experiment section (`slipway.config.experiment`), validated by
that section's model inside the step: a setting is defined once, with its default, there.
"""

from slipway.config.cluster import TRAIN_IMAGE

__all__ = ["TRAIN_IMAGE"]
