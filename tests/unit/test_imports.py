"""Imports go one way: pipelines -> components -> slipway, services -> slipway.

Nothing imports services or pipelines except the CLI, which does so inside its commands; the
core never imports kfp or fastapi at module level.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("slipway", "components", "pipelines", "services")
FORBIDDEN: dict[str, set[str]] = {
    "slipway": {"components", "pipelines", "services", "kfp", "fastapi", "starlette", "uvicorn"},
    "components": {"pipelines", "services", "fastapi"},
    "pipelines": {"services", "fastapi"},
    "services": {"components", "pipelines", "kfp"},
}


def _imports(tree: ast.AST, top_level_only: bool) -> list[tuple[int, str]]:
    nodes = tree.body if top_level_only else list(ast.walk(tree))  # type: ignore[attr-defined]
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
        elif isinstance(node, ast.If | ast.Try) and top_level_only:
            found += _imports(ast.Module(body=node.body, type_ignores=[]), True)
    return found


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", PACKAGES)
def test_module_level_imports_go_one_way(package: str) -> None:
    bad = []
    for path in _files(package):
        tree = ast.parse(path.read_text())
        for line, name in _imports(tree, top_level_only=True):
            if name in FORBIDDEN[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_only_the_cli_reaches_services_and_pipelines_lazily() -> None:
    bad = []
    for path in _files("slipway"):
        if path.relative_to(ROOT).parts[:2] == ("slipway", "cli"):
            continue
        for line, name in _imports(ast.parse(path.read_text()), top_level_only=False):
            if name in {"services", "pipelines", "components"}:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_core_imports_without_kfp_or_fastapi() -> None:
    import subprocess
    import sys

    code = (
        "import sys, importlib, pkgutil, slipway\n"
        "for m in pkgutil.walk_packages(slipway.__path__, 'slipway.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in ('kfp', 'fastapi', 'services', 'pipelines') if n in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
