"""A registered model runs where this checkout is not (issue 17 item 4).

Every pyfunc used to list ``crmlab==0.1.0`` in its requirements, a package on no index, so MLflow could
not rebuild its environment. Now crmlab's code travels in the model (``code_paths``) and the
requirements name only public packages. The test installs a registered model's ``requirements.txt``
into a new virtualenv that has no crmlab, loads the model there with plain MLflow and checks that it
predicts what the model predicts here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import synthetic_project

pytestmark = pytest.mark.slow

PIPELINES = ("clv", "churn")

PREDICT = r"""
import importlib.util, json, sys
assert importlib.util.find_spec("crmlab") is None, "crmlab is installed in the fresh environment"
import mlflow.pyfunc
from mlflow.models import Model
out = {}
for name, path in json.loads(sys.argv[1]).items():
    example = Model.load(path).load_input_example(path)
    pred = mlflow.pyfunc.load_model(path).predict(example)
    out[name] = json.loads(pred.to_json(orient="split", double_precision=15))
import crmlab  # the code logged with the models (one process imports it once: the first model's copy)
assert any(crmlab.__file__.startswith(p) for p in json.loads(sys.argv[1]).values()), crmlab.__file__
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """CLV and churn trained through the command line; each registered model version downloaded."""
    import mlflow

    from crmlab.cli import main
    from crmlab.config import load_config

    root = tmp_path_factory.mktemp("portable")
    sets = [*synthetic_project(root, n_customers=300, seed=3, tables=("transactions", "customers")),
            "clv.challenger=false"]
    (root / "no-configs").mkdir()
    flags = ["-c", str(root / "no-configs"), *[a for s in sets for a in ("--set", s)]]
    for pipeline in PIPELINES:
        assert main([*flags, "train", pipeline]) == 0
    tracking = load_config(root / "no-configs", sets).project.tracking
    mlflow.set_tracking_uri(tracking.uri)
    paths = {}
    for pipeline in PIPELINES:
        paths[pipeline] = mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/crmlab-{pipeline}@champion", dst_path=str(root / "download" / pipeline))
    return root, paths, flags


def test_requirements_name_only_public_packages_and_the_code_travels(registered):
    _, paths, _ = registered
    for path in map(Path, paths.values()):
        reqs = [r.strip() for r in (path / "requirements.txt").read_text().splitlines() if r.strip()]
        assert not [r for r in reqs if r.lower().startswith("crmlab")], reqs
        assert all("==" in r for r in reqs if not r.startswith("-")), reqs  # pinned to what it was trained with
        assert {"lightgbm", "pandas", "mlflow"} <= {r.split("==")[0].lower() for r in reqs}
        assert (path / "code" / "crmlab" / "export.py").is_file()


def test_a_fresh_virtualenv_without_crmlab_predicts_the_same(registered, tmp_path):
    import mlflow.pyfunc
    from mlflow.models import Model

    _, paths, _ = registered
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    reqs = sorted({line for p in paths.values()
                   for line in (Path(p) / "requirements.txt").read_text().splitlines() if line.strip()})
    (tmp_path / "requirements.txt").write_text("\n".join(reqs) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-r", str(tmp_path / "requirements.txt")],
                   check=True, env=env, timeout=1500)
    run = subprocess.run([str(python), "-c", PREDICT, json.dumps(paths)], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    there = json.loads(run.stdout.strip().splitlines()[-1])
    for name, path in paths.items():
        example = Model.load(path).load_input_example(path)
        here = mlflow.pyfunc.load_model(path).predict(example)
        got = pd.DataFrame(**there[name])
        assert list(got.columns) == list(here.columns)
        pd.testing.assert_frame_equal(got.reset_index(drop=True), here.reset_index(drop=True), check_dtype=False,
                                      rtol=1e-9)


@pytest.mark.parametrize("keep", [0.3, 0.7, 0.95, 0.999])
def test_a_cut_lightgbm_model_is_one_line_not_an_abort(registered, tmp_path, keep):
    """issue 15 item 11: a truncated LightGBM model whose checksum was updated aborted the process
    (rc -6, `terminate called without an active exception`; -11 when cut after its trees)."""
    import shutil

    from .conftest import reseal_bundle

    root, _, flags = registered
    models = tmp_path / "models"
    shutil.copytree(root / "models" / "churn", models / "churn")
    model = models / "churn" / "lightgbm.txt"
    text = model.read_text()
    model.write_text(text[: int(len(text) * keep)])
    reseal_bundle(models / "churn")
    run = subprocess.run([sys.executable, "-m", "crmlab", *flags, "--set", f"project.output.models_dir={models}",
                          "score", "--source", "models", "--model", "churn", "--out", str(tmp_path / "s.parquet")],
                         capture_output=True, text=True, cwd=tmp_path, timeout=600)
    errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert run.returncode == 2, run.stderr[-2000:]
    assert len(errors) == 1 and str(model) in errors[0] and "not a whole LightGBM model" in errors[0], errors
    assert "Traceback" not in run.stderr and not (tmp_path / "s.parquet").exists()
