"""The reliability suite: every case of :mod:`tests.reliability.cases` ends as promised."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ..conftest import synthetic_project
from .cases import CASES
from .suite import Case, check, copy_trained, data_project, run_cli


@pytest.fixture(scope="session")
def trained_template(tmp_path_factory) -> Path:
    """A project with relative paths whose CLV model was trained once and whose base was scored."""
    import yaml

    root = tmp_path_factory.mktemp("reliability_trained")
    sets = synthetic_project(root, n_customers=400, seed=5, tables=("transactions", "customers"))
    paths = {s.split("=", 1)[0]: s.split("=", 1)[1] for s in sets}
    project = {
        "data": {t: {"path": str(Path(paths[f"project.data.{t}.path"]).relative_to(root))}
                 for t in ("transactions", "customers")},
        "cleaning": {"max_date": "2024-12-31"},
        "tracking": {"uri": "sqlite:///mlflow.db", "artifact_dir": "mlartifacts"},
        "output": {"dir": "outputs", "models_dir": "models"},
    }
    (root / "configs").mkdir()
    (root / "configs" / "project.yaml").write_text(yaml.safe_dump(project), encoding="utf-8")
    (root / "configs" / "clv.yaml").write_text("holdout_weeks: 26\nchallenger: false\n", encoding="utf-8")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        for argv in (["-c", "configs", "train", "clv"], ["-c", "configs", "score", "--out", "scores.parquet"]):
            code, _, err = run_cli(argv)
            assert code == 0, err[-2000:]
    finally:
        os.chdir(cwd)
    return root


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: Case, tmp_path: Path, request) -> None:
    if case.project == "trained":
        copy_trained(request.getfixturevalue("trained_template"), tmp_path, case.config)
    else:
        data_project(case, tmp_path)
    check(case, tmp_path)


def test_case_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
