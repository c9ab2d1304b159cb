"""slipway: from an image-classification dataset to a monitored inference service.

The core package holds the logic shared by pipeline components, services and the CLI. It never
imports kfp or fastapi at module level, and torch only where a function needs it.
"""

__version__ = "0.1.0"
