"""Where a model came from: source revision, the exact test split it was judged on, and the
lineage tags a re-registered version keeps.

A registered version carries these so that anyone can answer "which code and which data made
the model now in production?" and so that two models are only compared on identical test data.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from slipway.contract.mlmodel import read_layout
from slipway.data.scan import DatasetScan, fingerprint
from slipway.registry.client import Registry
from slipway.registry.ref import ModelRef


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


# Version tags that describe where a model came from; they travel with a re-registration.
LINEAGE_TAGS = (
    "dataset_fingerprint",
    "test_split_fingerprint",
    "dataset_uri",
    "arch",
    "classes",
    "git_commit",
    "pipeline_run_id",
    "mlflow_run_id",
)


def register_from(registry: Registry, ref: str | ModelRef, name: str) -> str:
    """Register a model folder, or an earlier version, as a new MLflow-model version of `name`.

    This is how a version registered before slipway logged MLflow models (a folder of run
    artifacts) becomes one: its files are logged as a LoggedModel of its own run, its lineage
    tags are carried over, and the new version gets alias `staging` (promote it by hand).
    """
    parsed = ref if isinstance(ref, ModelRef) else ModelRef.parse(ref)
    tags: dict[str, str] = {"registered_from": str(parsed)}
    run_id = ""
    if parsed.is_registry:
        version = registry.get(parsed)
        tags.update({k: v for k, v in (version.tags or {}).items() if k in LINEAGE_TAGS})
        run_id = version.run_id or ""
    with tempfile.TemporaryDirectory(prefix="slipway-register-") as tmp:
        if parsed.is_local:
            folder = read_layout(parsed.local_path(), str(parsed)).folder
        else:
            folder = registry.download(parsed, tmp)
            run_id = run_id or registry.resolve(parsed).run_id
        if not run_id:
            experiment = registry.experiment_id()
            run_id = registry.client.create_run(experiment, run_name=f"register {name}").info.run_id
            registry.client.set_terminated(run_id)
        tags.setdefault("mlflow_run_id", run_id)
        return registry.register(name, folder, run_id, tags)
