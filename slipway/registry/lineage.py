"""Where a model came from: source revision and the exact test split it was judged on.

A registered version carries these so that anyone can answer "which code and which data made
the model now in production?" and so that two models are only compared on identical test data.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from slipway.data.scan import DatasetScan, fingerprint


def git_revision(path: str | os.PathLike[str] | None = None) -> str:
    """The commit checked out at `path` (default: this source tree), "-dirty" if changed.

    Returns "" outside a git work tree or without git (as inside a container image), so lineage
    degrades to "unknown" instead of failing a run.
    """
    where = Path(path) if path else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return ""
    return f"{commit}-dirty" if status else commit


def split_fingerprint(scan: DatasetScan, split: str = "test") -> str:
    """sha256 over the (path, content) pairs of one split only.

    Two models have been measured on the same test data exactly when these agree, even if the
    rest of the dataset (or the split fractions) changed.
    """
    return fingerprint([(s.path, s.sha256) for s in scan.split(split)])
