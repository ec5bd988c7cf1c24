"""Every notebook runs top to bottom (on small synthetic data, a throw-away MLflow store), draws
its charts as images and is committed without outputs; the notebook helper finds the project from a
subfolder, an argument or ``CRMLAB_PROJECT``, and says where it writes when there is none."""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest

from .conftest import REPO, synthetic_project

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PLOT_CALL = re.compile(r"\bplot_\w+\(")  # a cell that calls one of crmlab's plot functions


def plot_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and PLOT_CALL.search(c.source)]


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
    for cell in plot_cells(nb):  # every chart is drawn, not shown as "<Figure size 700x450 with 1 Axes>"
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), f"{path.name}: no image for {cell.source!r}"
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            text = o.get("text", "") or o.get("data", {}).get("text/plain", "")
            if "<Figure size" in text:
                assert "image/png" in o.get("data", {}), f"{path.name}: a figure shown as text in {cell.source!r}"


def test_the_notebooks_plot():
    """The notebooks that show charts (the run test checks each one is an image)."""
    counts = {p.stem[:2]: len(plot_cells(nbformat.read(p, as_version=4))) for p in NOTEBOOKS}
    assert counts == {"01": 0, "02": 2, "03": 2, "04": 2, "05": 1, "06": 1, "07": 0}


def test_crmlab_figures_show_as_images_in_ipython():
    """IPython draws a crmlab figure (made without pyplot) as a PNG of its size, no inline backend needed;
    it is still a matplotlib Figure for everything else (savefig, mlflow.log_figure)."""
    import io

    import matplotlib.figure
    import pandas as pd
    from IPython.core.formatters import DisplayFormatter
    from PIL import Image

    from crmlab.crosssell.plots import plot_leaderboard

    board = pd.DataFrame({"model": ["itemitem"] * 2 + ["popularity"] * 2, "k": [1, 5] * 2,
                          "hit_rate": [0.2, 0.4, 0.1, 0.3], "map": [0.2, 0.25, 0.1, 0.15]})
    fig = plot_leaderboard(board)
    assert isinstance(fig, matplotlib.figure.Figure)
    data, _ = DisplayFormatter().format(fig)
    assert data["image/png"].startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(data["image/png"])).size == (900, 350)  # 9 x 3.5 inches at 100 dpi
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue() == data["image/png"]


# --------------------------------------------------------------------------- finding the project


def _project(folder: Path, name: str) -> Path:
    (folder / "configs").mkdir(parents=True)
    (folder / "configs" / "project.yaml").write_text(f"name: {name}\n")
    return folder


@pytest.fixture
def no_project_env(monkeypatch):
    monkeypatch.delenv("CRMLAB_PROJECT", raising=False)
    monkeypatch.delenv("CRMLAB_SET", raising=False)


def test_outside_a_project_it_says_where_it_writes(tmp_path, no_project_env, monkeypatch, capsys):
    from crmlab.config import load_config
    from crmlab.notebook import find_project, notebook_config

    here = tmp_path / "copied"
    here.mkdir()
    monkeypatch.chdir(here)
    assert find_project() is None
    cfg = notebook_config()
    assert cfg == load_config(None)  # the defaults
    assert Path.cwd() == here.resolve()
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"no project at or above {here.resolve()}" in err and "default settings" in err
    assert f"MLflow store sqlite:///{here.resolve() / 'mlflow.db'}," in err
    assert f"models {here.resolve() / 'models'}," in err


def test_from_a_subfolder_it_finds_the_project(tmp_path, no_project_env, monkeypatch, capsys):
    from crmlab.notebook import notebook_config

    root = _project(tmp_path / "shop", "shop").resolve()
    (root / "notebooks" / "mine").mkdir(parents=True)
    monkeypatch.chdir(root / "notebooks" / "mine")
    cfg = notebook_config("project.seed=7")
    assert (cfg.project.name, cfg.project.seed) == ("shop", 7)
    assert Path.cwd() == root  # relative outputs land in the project, as on the command line
    out = capsys.readouterr()
    assert out.err == ""
    assert out.out.splitlines() == [f"crmlab project {root}: settings from {root / 'configs'} + 1 override(s); "
                                    f"writes MLflow store sqlite:///{root / 'mlflow.db'}, models {root / 'models'}, "
                                    f"outputs {root / 'outputs'}"]


def test_the_repository_is_a_project(no_project_env, monkeypatch):
    from crmlab.notebook import find_project

    monkeypatch.chdir(REPO / "notebooks")
    assert find_project() == REPO.resolve()  # configs/ next to pyproject.toml


def test_an_explicit_project_or_crmlab_project(tmp_path, no_project_env, monkeypatch, capsys):
    from crmlab.errors import ConfigError
    from crmlab.notebook import notebook_config

    shop = _project(tmp_path / "shop", "shop").resolve()
    other = _project(tmp_path / "other", "other").resolve()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert notebook_config(project=shop).project.name == "shop"
    assert Path.cwd() == shop
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("CRMLAB_PROJECT", str(other))
    assert notebook_config().project.name == "other"
    assert Path.cwd() == other
    monkeypatch.chdir(shop)  # the variable beats the project around the working directory
    assert notebook_config().project.name == "other"
    assert notebook_config(project=shop).project.name == "shop"  # the argument beats the variable
    capsys.readouterr()
    monkeypatch.setenv("CRMLAB_PROJECT", str(elsewhere))  # not a project: an error, not the defaults
    with pytest.raises(ConfigError, match=f"CRMLAB_PROJECT={re.escape(str(elsewhere))}: .* has no configs/ folder"):
        notebook_config()
    with pytest.raises(ConfigError, match=r"notebook_config\(project=\.\.\.\): .*missing has no configs/"):
        notebook_config(project=tmp_path / "missing")
