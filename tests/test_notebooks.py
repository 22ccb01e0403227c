"""Every notebook in notebooks/ runs top to bottom without error.

The notebooks read ``FLOWLEARN_FAST`` and shrink their epochs and data when it is set, so the whole set fits in the
test-time budget; the committed outputs come from full runs (``python notebooks/execute.py``).
"""

import os
import pathlib

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    # The kernel inherits this process's environment: FAST mode, a plotting backend with no screen, and a working
    # directory of its own so that files a notebook writes (exports, checkpoints) land in tmp_path.
    monkeypatch.setenv("FLOWLEARN_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # The kernel runs in tmp_path, where `import flowlearn` would find an installed copy (pip install . is not
    # editable) rather than this checkout: put the checkout first.
    checkout_first = [str(NOTEBOOK_DIR.parent), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, checkout_first)))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=300,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert not errors, f"{path.name} produced errors: {errors}"


def test_notebooks_are_committed_with_outputs():
    # The notebooks are read on the code host as much as they are run: each one ships its outputs.
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
        with_output = [cell for cell in code_cells if cell.get("outputs")]
        assert with_output, f"{path.name} has no outputs committed; run python notebooks/execute.py {path.name}"
