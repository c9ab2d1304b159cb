"""The layers of the code, as import-linter contracts in pyproject.toml, and what they mean at
run time: the serving process and the core load no kfp, the serving process no torch."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> subprocess.CompletedProcess[str]:
    tool = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    return subprocess.run(
        [tool, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


def test_import_contracts_are_kept() -> None:
    result = _lint_imports()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
    for contract in ("Top level", "Serving and drift", "torch-free", "Compiling a pipeline"):
        assert f"{contract}" in result.stdout


def _loaded_after(statement: str, names: tuple[str, ...]) -> list[str]:
    code = f"import sys\n{statement}\nprint(','.join(n for n in {names!r} if n in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [name for name in out.stdout.strip().split(",") if name]


def test_the_serving_app_loads_no_torch_and_no_kfp() -> None:
    statement = "import services.inference.app, services.drift.app"
    assert _loaded_after(statement, ("torch", "torchvision", "kfp")) == []


def test_the_whole_core_imports_without_kfp_fastapi_or_services() -> None:
    statement = (
        "import importlib, pkgutil, slipway\n"
        "for m in pkgutil.walk_packages(slipway.__path__, 'slipway.'):\n"
        "    if not m.name.startswith('slipway.cli'): importlib.import_module(m.name)"
    )
    names = ("kfp", "fastapi", "services", "pipelines", "components")
    assert _loaded_after(statement, names) == []


def test_the_config_layer_loads_no_torch_or_mlflow() -> None:
    statement = "import slipway.config.experiment, slipway.config.env, slipway.contract.card"
    assert _loaded_after(statement, ("torch", "mlflow", "kfp")) == []
