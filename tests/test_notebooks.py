"""Every notebook runs top to bottom (on small synthetic data, a throw-away MLflow store) and is
committed without outputs."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from .conftest import REPO, synthetic_project

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_numbered_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert names and all(n[:2].isdigit() and n[2] == "_" for n in names)
    assert names[0].startswith("01_quickstart")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: clear the outputs"
            # no logic of their own: short cells that call crmlab
            assert len(cell.source.splitlines()) <= 8, f"{path.name}: a long cell belongs in crmlab"
            assert "def " not in cell.source and "class " not in cell.source


@pytest.fixture(scope="module")
def small_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    return root, synthetic_project(root, n_customers=600, seed=8,
                                   tables=("transactions", "customers", "interactions"))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, small_project, monkeypatch):
    from nbclient import NotebookClient

    root, sets = small_project
    monkeypatch.setenv("CRMLAB_SET", "\n".join(sets))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}})
    client.execute(env=dict(os.environ))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert (root / "mlflow.db").is_file()  # the notebook took the overrides: its runs went to the test's store
