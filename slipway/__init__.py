"""slipway: from an image-classification dataset to a monitored inference service.

The version comes from the package metadata (pyproject.toml), the one place it is written; the
image tags, the pipeline's component image and the chart's appVersion follow it.
"""

from importlib import metadata

try:
    __version__ = metadata.version("slipway")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+unknown"
