"""The written documents point at things that exist: every relative link and #anchor of the Markdown files and the
notebooks' prose, and every repository path they name in backticks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARKDOWN = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", ROOT / "data" / "README.md"]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

LINK = re.compile(r"\]\(([^)\s]+)\)")
# a repository file named in prose, e.g. `benchmarks/results/bench-epoch-h100.json`
NAMED_PATH = re.compile(r"`((?:benchmarks|unet_helpers|notebooks|tests|data)/[\w./+-]+\.(?:py|json|txt|md|ipynb|log))`")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    return {github_anchor(line.lstrip("#")) for line in markdown.splitlines() if line.startswith("#")}


def notebook_markdown(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def documents() -> list:
    return [pytest.param(p, p.read_text(), id=p.relative_to(ROOT).as_posix()) for p in MARKDOWN] + [
        pytest.param(p, notebook_markdown(p), id=p.relative_to(ROOT).as_posix()) for p in NOTEBOOKS
    ]


def test_github_anchor_matches_githubs_rule() -> None:
    assert github_anchor("The flagship candidates: the winners' levers together") == (
        "the-flagship-candidates-the-winners-levers-together"
    )
    assert github_anchor("Notebook 09's denoiser: generated pairs worth training on?") == (
        "notebook-09s-denoiser-generated-pairs-worth-training-on"
    )


@pytest.mark.parametrize("path,text", documents())
def test_relative_links_and_anchors_resolve(path: Path, text: str) -> None:
    broken = []
    for target in LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
            broken.append(f"{target}: no heading with the anchor #{anchor} in {linked.name}")
    assert not broken, f"{path.relative_to(ROOT)}: " + "; ".join(broken)


@pytest.mark.parametrize("path,text", documents())
def test_named_repository_files_exist(path: Path, text: str) -> None:
    # data/ holds the downloaded data, which git ignores: only its README is the repository's
    named = {name for name in NAMED_PATH.findall(text) if not name.startswith("data/") or name == "data/README.md"}
    missing = sorted(name for name in named if not (ROOT / name).exists())
    assert not missing, f"{path.relative_to(ROOT)} names files that are not in the repository: {missing}"
