"""The generated docs match the code, the generator follows changes, and the links resolve."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from slipway.config.experiment import ExperimentConfig

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def test_generated_docs_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/gen_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + "\nrun: python scripts/gen_docs.py"


def _mini_repo(tmp_path: Path) -> Path:
    """The files the generator reads and writes, copied under tmp_path."""
    for rel in (
        "docs/configuration.md",
        "charts/inference/README.md",
        "charts/inference/values.yaml",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    return tmp_path


def test_check_names_the_stale_file_and_write_fixes_it(
    gen_docs: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _mini_repo(tmp_path)
    values = root / "charts/inference/values.yaml"
    old = "# -- Largest batch the batcher forms."
    assert old in values.read_text()
    values.write_text(values.read_text().replace(old, "# -- Images per forward, at most."))

    assert gen_docs.main(["--check"], root=root) == 1
    err = capsys.readouterr().err
    assert "charts/inference/README.md is out of date" in err
    assert "-| server.maxBatchSize | int | `16` | Largest batch the batcher forms. |" in err
    assert "+| server.maxBatchSize | int | `16` | Images per forward, at most. |" in err
    assert "docs/configuration.md" not in err

    assert gen_docs.main([], root=root) == 0
    assert (
        "| server.maxBatchSize | int | `16` | Images per forward, at most. |"
        in (root / "charts/inference/README.md").read_text()
    )
    assert gen_docs.main(["--check"], root=root) == 0


def test_a_missing_generated_file_is_stale(gen_docs: ModuleType, tmp_path: Path) -> None:
    root = _mini_repo(tmp_path)
    (root / "docs/configuration.md").unlink()
    assert list(gen_docs.stale(root)) == [Path("docs/configuration.md")]


def test_values_rows_follow_the_comments(gen_docs: ModuleType) -> None:
    text = """\
# -- (int) Replicas.
replicas: 2
image:
  # -- Repository of the
  # image, two lines.
  repository: ghcr.io/x
# -- Resources: one row, whole object.
resources:
  limits:
    cpu: "2"
params:
  # -- Selector.
  selector: ""
hosts:
  # -- Hosts.
  - host: a
"""
    rows, missing = gen_docs.chart_rows(text)
    assert [(r.key, r.type, r.default, r.description) for r in rows] == [
        ("replicas", "int", "2", "Replicas."),
        ("image.repository", "string", "ghcr.io/x", "Repository of the image, two lines."),
        ("resources", "object", '{"limits": {"cpu": "2"}}', "Resources: one row, whole object."),
        ("params.selector", "string", '""', "Selector."),
    ]
    assert missing == ["hosts"]


def test_an_undocumented_value_is_an_error(gen_docs: ModuleType) -> None:
    readme = f"x\n{gen_docs.TABLE_START}\n{gen_docs.TABLE_END}\n"
    with pytest.raises(ValueError, match=r"no `# --` comment on server\.newKey"):
        gen_docs.chart_readme(readme, "server:\n  newKey: 1\n")


def test_every_chart_value_is_documented(gen_docs: ModuleType) -> None:
    rows, missing = gen_docs.chart_rows((ROOT / "charts/inference/values.yaml").read_text())
    assert missing == []
    assert {"image.repository", "prometheusRule.params.errorRatioFor", "drift.window"} <= {
        r.key for r in rows
    }


def test_every_experiment_key_is_in_the_configuration_reference(gen_docs: ModuleType) -> None:
    text = (DOCS / "configuration.md").read_text()
    keys = []
    for name, field in ExperimentConfig.model_fields.items():
        keys += [row.key for row in gen_docs.model_rows(field.annotation, f"{name}.")]
    assert "cluster.train_resources.cpu_request" in keys  # nested models are walked
    assert [key for key in keys if f"| `{key}` |" not in text] == []


def test_the_service_settings_are_in_the_configuration_reference() -> None:
    from services.drift.settings import Settings as Drift
    from services.inference.settings import Settings as Inference

    text = (DOCS / "configuration.md").read_text()
    names = [f"SLIPWAY_{n.upper()}" for n in Inference.model_fields]
    names += [f"SLIPWAY_DRIFT_{n.upper()}" for n in Drift.model_fields]
    assert [n for n in names if f"| `{n}` |" not in text] == []


# --- the README and the links between the docs --------------------------------------------------


def _links(path: Path) -> list[str]:
    text = _INLINE_CODE.sub("", _FENCE.sub("", path.read_text()))
    return _LINK.findall(text)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = _FENCE.sub("", path.read_text())
    return {_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, re.M)}


def _broken(path: Path) -> list[str]:
    broken = []
    for target in _links(path):
        if re.match(r"^[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    return broken


def test_readme_is_short_and_states_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    assert "make run" in text
    assert "make test" in text


def test_readme_links_every_docs_page() -> None:
    linked = {
        (README.parent / t.partition("#")[0]).resolve()
        for t in _links(README)
        if t.startswith("docs/")
    }
    pages = {p.resolve() for p in DOCS.glob("*.md")}
    assert pages, "docs/ has no pages"
    assert pages <= linked, f"not linked from README.md: {sorted(p.name for p in pages - linked)}"


@pytest.mark.parametrize(
    "path",
    [README, *sorted(DOCS.glob("*.md")), ROOT / "charts/inference/README.md"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_relative_links_resolve(path: Path) -> None:
    assert _broken(path) == []


def test_the_link_checker_finds_broken_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "a.md").write_text("# Title\n\n## Some part\n")
    page = tmp_path / "b.md"
    page.write_text(
        "[ok](a.md#some-part) [gone](nope.md) [bad anchor](a.md#other) `[code](x.md)`\n"
        "```\n[fenced](y.md)\n```\n[web](https://example.com)\n"
    )
    assert _broken(page) == ["b.md: nope.md (no such file)", "b.md: a.md#other (no such heading)"]
