"""KFP components of the training pipeline: thin shells over `slipway.steps`.

Each component runs in the training image `TRAIN_IMAGE` (built from Dockerfile.train, with
slipway, torch, kfp and mlflow inside); nothing is pip-installed when a step starts. Locally,
kfp.local runs the same functions in this virtual environment. The pipeline may replace the
image when it is compiled (`slipway pipeline compile --image ...`).
"""

TRAIN_IMAGE = "ghcr.io/slipway/train:0.1.0"
