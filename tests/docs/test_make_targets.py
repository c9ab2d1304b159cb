"""`make` with no target lists every target, and `make run` gets its demo data when it can.

scripts/demo-data.sh runs here against stand-ins for `id`, `sudo` and `apt-get` on PATH, so
every branch (present, root, passwordless sudo, neither, apt failing) runs without root and
without a network.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "demo-data.sh"
INSTRUCTION = "sudo apt-get install dataset-fashion-mnist"


def _targets() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    return re.findall(r"^([a-z][a-z0-9-]*):(?!=)", text, re.M)


def test_every_target_has_a_help_line() -> None:
    text = (ROOT / "Makefile").read_text()
    documented = re.findall(r"^## ([a-z][a-z0-9-]*): \S", text, re.M)
    assert sorted(set(_targets()) - set(documented)) == []


def test_make_without_a_target_prints_the_help() -> None:
    if not shutil.which("make"):
        pytest.skip("make is not installed")
    out = subprocess.run(
        ["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    listed = {line.split()[0]: line for line in out.stdout.splitlines() if line.strip()}
    assert set(listed) == set(_targets())
    assert "serve it on 127.0.0.1:8080" in listed["run"]
    assert "$(" not in out.stdout  # comments are printed as written: no unexpanded variables


def _stub(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(0o755)


def _run(
    tmp_path: Path, uid: int, sudo: str | None, apt: str
) -> tuple[subprocess.CompletedProcess[str], Path, Path]:
    bin_dir, data, log = tmp_path / "bin", tmp_path / "fashion-mnist", tmp_path / "apt.log"
    bin_dir.mkdir(exist_ok=True)
    _stub(bin_dir, "id", f"echo {uid}")
    _stub(bin_dir, "sudo", sudo if sudo is not None else "exit 1")
    _stub(bin_dir, "apt-get", apt)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FASHION_MNIST_DIR": str(data),
        "APT_LOG": str(log),
    }
    out = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    return out, data, log


APT_OK = """echo "$*" >> "$APT_LOG"
if [ "$1" = install ]; then mkdir -p "$FASHION_MNIST_DIR"
  touch "$FASHION_MNIST_DIR/train-images-idx3-ubyte.gz"; fi"""
SUDO_OK = """[ "$1" = -n ] && shift
echo "sudo $*" >> "$APT_LOG"
exec "$@"
"""


def test_present_data_needs_nothing(tmp_path: Path) -> None:
    (tmp_path / "fashion-mnist").mkdir()
    (tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz").touch()
    out, _, log = _run(tmp_path, uid=1000, sudo=None, apt="exit 1")
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
    assert not log.exists()


def test_root_installs_the_package_quietly(tmp_path: Path) -> None:
    out, data, log = _run(tmp_path, uid=0, sudo=None, apt=APT_OK)
    assert out.returncode == 0, out.stderr
    assert log.read_text().splitlines() == [
        "update -qq",
        "install -y -qq --no-install-recommends dataset-fashion-mnist",
    ]
    assert (data / "train-images-idx3-ubyte.gz").is_file()
    assert out.stderr == ""


def test_passwordless_sudo_installs_the_package(tmp_path: Path) -> None:
    out, _, log = _run(tmp_path, uid=1000, sudo=SUDO_OK, apt=APT_OK)
    assert out.returncode == 0, out.stderr
    lines = log.read_text().splitlines()
    assert "install -y -qq --no-install-recommends dataset-fashion-mnist" in lines
    assert any(line.startswith("sudo ") and "apt-get install" in line for line in lines)


def test_without_root_or_sudo_it_says_what_to_run(tmp_path: Path) -> None:
    out, _, log = _run(tmp_path, uid=1000, sudo=None, apt=APT_OK)
    assert out.returncode == 1
    assert len(out.stderr.splitlines()) == 1
    assert out.stderr.rstrip().endswith(INSTRUCTION)
    assert not log.exists()


def test_a_failing_install_shows_apt_output(tmp_path: Path) -> None:
    apt = 'echo "E: Unable to locate package" >&2; exit 100'
    out, _, _ = _run(tmp_path, uid=0, sudo=None, apt=apt)
    assert out.returncode == 1
    assert "E: Unable to locate package" in out.stderr
    assert INSTRUCTION in out.stderr
