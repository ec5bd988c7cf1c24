"""What the notebooks in ``notebooks/`` share: finding the project's configs and taking overrides.

A notebook starts with ``cfg = notebook_config()``. It reads ``configs/`` of the project and applies
overrides from the environment variable ``CRMLAB_SET`` (``key=value`` pairs separated by newlines or
``;``), so the tests can run every notebook on small synthetic data with a throw-away MLflow store,
and you can point one at your data without editing it::

    CRMLAB_SET="project.data.transactions.path=data/orders.csv" jupyter lab

The project is, first found first: ``notebook_config(project=...)``, the folder in the environment
variable ``CRMLAB_PROJECT``, or the nearest folder at or above the working directory holding
``configs/project.yaml`` (what ``crmlab init`` writes) or ``configs/`` next to a ``pyproject.toml``
(this repository). A notebook copied anywhere else finds none: it then runs on the default settings
and writes its MLflow store and models to its own folder, and prints one line saying so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from crmlab.config import CrmlabConfig, load_config
from crmlab.errors import ConfigError
from crmlab.tracking import absolute_uri

__all__ = ["PROJECT_ENV", "find_project", "notebook_config", "resolve_project"]

PROJECT_ENV = "CRMLAB_PROJECT"


def _is_project(folder: Path) -> bool:
    configs = folder / "configs"
    return (configs / "project.yaml").is_file() or (configs.is_dir() and (folder / "pyproject.toml").is_file())


def find_project(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) holding
    ``configs/project.yaml``, or ``configs/`` and a ``pyproject.toml``; None when there is none."""
    here = Path(start or Path.cwd()).expanduser().resolve()
    return next((folder for folder in (here, *here.parents) if _is_project(folder)), None)


def resolve_project(project: str | Path | None = None) -> tuple[Path, str | None]:
    """The project folder and how it was found (``"argument"``, ``CRMLAB_PROJECT``, ``"found"``), or
    the working directory and None when there is no project. A given folder (argument or environment
    variable) without ``configs/`` is an error naming it, never a silent fallback to the defaults."""
    for given, how in ((project, "argument"), (os.environ.get(PROJECT_ENV) or None, PROJECT_ENV)):
        if given is None:
            continue
        folder = Path(given).expanduser().resolve()
        if not (folder / "configs").is_dir():
            name = "notebook_config(project=...)" if how == "argument" else f"{PROJECT_ENV}={given}"
            raise ConfigError(f"{name}: {folder} has no configs/ folder; give the folder of a crmlab project "
                              "(the one holding configs/, e.g. written by `crmlab init`)")
        return folder, how
    found = find_project()
    return (found, "found") if found is not None else (Path.cwd().resolve(), None)


def _where(cfg: CrmlabConfig, root: Path) -> str:
    """Where the runs of ``cfg`` write, from ``root``: the MLflow store, the models, the outputs."""
    tracking = cfg.project.tracking
    store = absolute_uri(tracking.uri) if tracking.enabled else "off (project.tracking.enabled=false)"
    return (f"MLflow store {store}, models {(root / cfg.project.output.models_dir).resolve()}, "
            f"outputs {(root / cfg.project.output.dir).resolve()}")


def notebook_config(*overrides: str, project: str | Path | None = None) -> CrmlabConfig:
    """The project's config with ``CRMLAB_SET`` and then ``overrides`` applied; relative output
    paths (MLflow store, models, outputs) are those of the project root, as on the command line.

    Prints one line: the settings it read and where the runs write (on stderr, as a warning, when
    no project was found and the defaults are used)."""
    root, how = resolve_project(project)
    env = os.environ.get("CRMLAB_SET", "")
    sets = [s.strip() for s in env.replace(";", "\n").splitlines() if s.strip()]
    os.chdir(root)
    cfg = load_config(root / "configs" if how else None, [*sets, *overrides])
    extra = f" + {len(sets)} CRMLAB_SET override(s)" if sets else ""
    extra += f" + {len(overrides)} override(s)" if overrides else ""
    if how is None:
        print(f"crmlab: no project at or above {root} (no configs/project.yaml; set {PROJECT_ENV} or "
              f"notebook_config(project=...)): default settings{extra}; writes {_where(cfg, root)}",
              file=sys.stderr)
    else:
        print(f"crmlab project {root}: settings from {root / 'configs'}{extra}; writes {_where(cfg, root)}")
    return cfg
