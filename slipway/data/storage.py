"""Where datasets live: a local folder, a mounted PVC, or an fsspec URI such as s3:// or gs://."""

from __future__ import annotations

import os
from typing import Any

import fsspec


def open_root(uri: str | os.PathLike[str]) -> tuple[Any, str]:
    """Return an fsspec filesystem and the root path inside it for a folder URI or local path.

    Remote schemes need their fsspec driver installed (s3fs for s3://, gcsfs for gs://); the
    error then names the package to install.
    """
    text = os.fspath(uri)
    try:
        fs, root = fsspec.core.url_to_fs(text)
    except ImportError as exc:  # pragma: no cover - depends on optional drivers
        raise ImportError(f"cannot open {text!r}: {exc}") from exc
    return fs, root.rstrip("/") or "/"


def is_remote(uri: str | os.PathLike[str]) -> bool:
    """True for URIs with a scheme other than file://."""
    text = os.fspath(uri)
    return "://" in text and not text.startswith("file://")
