"""The notebooks in notebooks/: committed without outputs, and executed top to bottom so they cannot rot."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_is_a_lecture_notebook():
    assert ROOT / "notebooks" / "lecture.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    """Outputs belong to a run, not to the repository (they bloat diffs and go stale)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    dirty = [
        i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"])
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing"


def _kernel_or_skip() -> None:
    for module in ("nbformat", "nbclient", "ipykernel"):
        pytest.importorskip(
            module, reason=f"{module} is missing: pip install -e '.[dev]' to run the notebooks"
        )


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_top_to_bottom(path):
    """Every cell runs without error in a fresh kernel, from the notebook's own folder (well under 3 minutes)."""
    _kernel_or_skip()
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    t0 = time.perf_counter()
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    seconds = time.perf_counter() - t0
    assert seconds < 180, f"{path.name} took {seconds:.0f} s; keep its budgets small"
    text = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "Traceback" not in text
