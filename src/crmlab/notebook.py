"""What the notebooks in ``notebooks/`` share: finding the project's configs and taking overrides.

A notebook starts with ``cfg = notebook_config()``. It reads ``configs/`` of the project (the folder
holding ``pyproject.toml`` above the notebook) and applies overrides from the environment variable
``CRMLAB_SET`` (``key=value`` pairs separated by newlines or ``;``), so the tests can run every
notebook on small synthetic data with a throw-away MLflow store, and you can point one at your data
without editing it::

    CRMLAB_SET="project.data.transactions.path=data/orders.csv" jupyter lab
"""

from __future__ import annotations

import os
from pathlib import Path

from crmlab.config import CrmlabConfig, load_config

__all__ = ["notebook_config", "project_root"]


def project_root(start: str | Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) with a ``configs/``
    folder and a ``pyproject.toml``; the working directory when there is none."""
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "configs").is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    return here


def notebook_config(*overrides: str) -> CrmlabConfig:
    """The project's config with ``CRMLAB_SET`` and then ``overrides`` applied; relative output
    paths (MLflow store, models, outputs) are those of the project root, as on the command line."""
    root = project_root()
    env = os.environ.get("CRMLAB_SET", "")
    sets = [s.strip() for s in env.replace(";", "\n").splitlines() if s.strip()]
    os.chdir(root)
    return load_config(root / "configs", [*sets, *overrides])
