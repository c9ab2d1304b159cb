"""Both Dockerfiles pass hadolint, and every ignored rule carries its reason on the line above."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import require_tool
from tests.images.podman import REPO

DOCKERFILES = ["Dockerfile.serve", "Dockerfile.train"]


def _hadolint() -> str:
    beside_python = Path(sys.executable).with_name("hadolint")
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("hadolint") or require_tool("hadolint")


def _final_stage(text: str) -> str:
    return re.split(r"^FROM\s", text, flags=re.MULTILINE)[-1]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_clean(name: str) -> None:
    result = subprocess.run(
        [_hadolint(), "--format", "json", str(REPO / name)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_ignored_rule_is_justified(name: str) -> None:
    lines = (REPO / name).read_text().splitlines()
    for n, line in enumerate(lines):
        if "hadolint ignore=" in line:
            above = lines[n - 1].strip() if n else ""
            assert above.startswith("#") and "hadolint ignore" not in above, (
                f"{name}:{n + 1}: an ignored rule needs a comment line above saying why"
            )


@pytest.mark.parametrize("name", DOCKERFILES)
def test_final_stage_runs_as_numeric_non_root_user(name: str) -> None:
    text = (REPO / name).read_text()
    uid = re.search(r"^ARG UID=(\d+)$", text, flags=re.MULTILINE)
    assert uid and int(uid.group(1)) >= 1000
    # The last USER wins for every image stage built on top of it.
    users = re.findall(r"^USER\s+(\S+)$", text, flags=re.MULTILINE)
    assert users and users[-1] == "${UID}:${UID}"
    assert "HEALTHCHECK" not in text  # Kubernetes probes (and KFP) decide liveness


def test_serve_entrypoint_and_train_has_none() -> None:
    serve = _final_stage((REPO / "Dockerfile.serve").read_text())
    assert re.findall(r"^ENTRYPOINT (.+)$", serve, flags=re.MULTILINE) == [
        '["python", "-m", "services.inference"]'
    ]
    train = (REPO / "Dockerfile.train").read_text()
    assert not re.search(r"^(ENTRYPOINT|CMD)\b", train, flags=re.MULTILINE)
