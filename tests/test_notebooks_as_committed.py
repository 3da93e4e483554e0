"""What a learner sees first: the committed notebooks, checked as files (nbval runs them; this reads them)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
USES_DATA = [p for p in NOTEBOOKS if p.name[:2] in {"03", "04", "05", "06", "07", "08", "09"}]


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _text_outputs(path: Path) -> str:
    texts = []
    for cell in _cells(path):
        for output in cell.get("outputs", []):
            texts.append("".join(output.get("text", "")))
            texts.append("".join(output.get("data", {}).get("text/plain", "")))
    return "\n".join(texts)


def test_the_notebooks_in_order():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07", "08", "09"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_executed_top_to_bottom_in_one_kernel(notebook):
    counts = [c["execution_count"] for c in _cells(notebook) if c["cell_type"] == "code"]
    assert counts == list(range(1, len(counts) + 1)), "run it top to bottom in a fresh kernel before committing"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_configuration_cell_right_after_the_setup_cell(notebook):
    code = ["".join(c["source"]) for c in _cells(notebook) if c["cell_type"] == "code"]
    assert code[0].startswith("# Setup:") and code[1].startswith("# Configuration:")
    assert sum(s.startswith("# Configuration:") for s in code) == 1


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_local_paths_and_no_errors_in_the_outputs(notebook):
    text = _text_outputs(notebook)
    assert not re.search(r"(/home/|/work/|/tmp/|/Users/|[A-Z]:\\\\)", text), "a local path leaked into the outputs"
    for cell in _cells(notebook):
        assert all(o["output_type"] != "error" for o in cell.get("outputs", []))


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_small_enough_to_open_quickly(notebook):
    assert notebook.stat().st_size < 1_500_000
    for cell in _cells(notebook):
        for output in cell.get("outputs", []):
            for kind, data in output.get("data", {}).items():
                if kind.startswith("image/"):
                    assert len(base64.b64decode("".join(data))) < 200_000, f"an embedded {kind} over 200 KB"


@pytest.mark.parametrize("notebook", USES_DATA, ids=lambda p: p.stem)
def test_data_notebooks_were_run_on_the_real_data_with_fast_mode_off(notebook):
    text = _text_outputs(notebook)
    assert "Data: Kaggle TGS Salt Identification Challenge" in text and "OFFLINE STAND-IN" not in text
    assert "fast mode: True" not in text and "mode: fast" not in text


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_stale_progress_bars(notebook):
    """tqdm's bars are widgets that close when done: committed, they would show as frozen text or 'Loading widget'."""
    assert "widgets" not in json.loads(notebook.read_text())["metadata"]
    for cell in _cells(notebook):
        for output in cell.get("outputs", []):
            assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {})
