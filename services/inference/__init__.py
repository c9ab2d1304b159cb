"""The slipway inference service: FastAPI, dynamic batching, Open Inference Protocol v2.

Run it with `python -m services.inference` or `slipway serve`; configure it with `SLIPWAY_*`
environment variables (see `Settings`). With the default onnxruntime backend nothing here
imports torch.
"""

from services.inference.app import create_app
from services.inference.settings import Settings

__all__ = ["Settings", "create_app"]
