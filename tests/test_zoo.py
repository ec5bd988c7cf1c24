"""The zoo (issue 14 item 10): user-shaped data sets through the real command line.

For each data set of :mod:`tests.zoo`: ``crmlab init <files> --yes``, then ``crmlab train`` of every
pipeline and ``crmlab score``, each in a subprocess from the project's folder (MLflow store, outputs
and models inside it). Each command must either succeed with its output files or stop with exit
code 2 and one named, actionable ``error:`` line; never a traceback.

A pipeline that cannot ship what it was configured with on a data set (BG/NBD on 30 accounts,
K-means on too few customers) ships its fallback and must say so: NOTES lists the note each such
case prints.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from crmlab.config import load_config

from .conftest import REPO
from .zoo import ZOO, make

pytestmark = pytest.mark.slow

PIPELINES = ("clv", "churn", "segmentation", "forecast")
OK = "ok"


#: (data set, command) -> a regex that the run's output must match: the fallback it shipped, said.
NOTES = {
    ("b2b", "clv"): r"note: .*shipped nbd",
    ("b2b", "segmentation"): r"note: .*(RFM|rfm)",
}


#: data set -> command -> OK, or a regex the one error line must match; optional xfail mark.
EXPECT: dict[str, dict[str, tuple[str, object]]] = {
    "b2b": {"clv": (OK, None), "churn": (OK, None), "segmentation": (OK, None), "forecast": (OK, None),
            "score": (OK, None)},
    "telecom": {"clv": (r"CLV pipeline needs transactions", None),
                "churn": (OK, None),
                "segmentation": (r"segmentation pipeline needs transactions", None),
                "forecast": (r"forecast pipeline needs transactions or project\.data\.sales", None),
                "score": (OK, None)},
    "shop": {p: (OK, None) for p in (*PIPELINES, "score")},
    "marketplace": {"clv": (OK, None), "churn": (OK, None), "segmentation": (OK, None), "forecast": (OK, None),
                    "score": (OK, None)},
    "sales": {"clv": (r"no transactions or customers table.*project\.data\.transactions\.path", None),
              "churn": (r"no transactions or customers table.*project\.data\.transactions\.path", None),
              "segmentation": (r"no transactions or customers table.*project\.data\.transactions\.path", None),
              "forecast": (OK, None),
              "score": (r"no transactions or customers table.*project\.data\.transactions\.path", None)},
    "minimal": {p: (OK, None) for p in (*PIPELINES, "score")},
    "chinese": {p: (OK, None) for p in (*PIPELINES, "score")},
}


class Project:
    """One zoo data set in its own folder, ``crmlab init`` run once; commands run lazily, once each."""

    def __init__(self, name: str, root: Path) -> None:
        self.name, self.root = name, root
        self.data = make(name, root / "data")
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")]),
                    "COLUMNS": "200"}
        self.results: dict[str, subprocess.CompletedProcess] = {}
        args = ["init", *(str(f.relative_to(root)) for f in self.data.files)]
        if self.data.customers is not None:
            args += ["--customers", str(self.data.customers.relative_to(root))]
        self.init = self.crmlab(*args, "--yes", "--dir", "configs")

    def crmlab(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "crmlab", *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)

    def result(self, command: str) -> subprocess.CompletedProcess:
        if command not in self.results:
            if command == "score":
                for p in PIPELINES:
                    self.result(p)
                self.results[command] = self.crmlab("score")
            else:
                self.results[command] = self.crmlab("train", command)
        return self.results[command]


@pytest.fixture(scope="module")
def projects(tmp_path_factory):
    made: dict[str, Project] = {}

    def get(name: str) -> Project:
        if name not in made:
            made[name] = Project(name, tmp_path_factory.mktemp(f"zoo_{name}"))
        return made[name]

    return get


def _assert_no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def _assert_named_error(proc: subprocess.CompletedProcess, pattern: str) -> None:
    _assert_no_traceback(proc)
    assert proc.returncode == 2, f"exit {proc.returncode}; stderr: {proc.stderr[-2000:]}"
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert re.search(pattern, errors[0]), errors[0]


def _check_sales_forecast(project: Project) -> None:
    """Each series of a ragged sales table is forecast from its own last period, at its own level
    (or left out with a note naming it as stale), and the value is not called 'revenue'."""
    train = project.result("forecast")
    assert "revenue" not in train.stdout.splitlines()[0], train.stdout
    fc = project.crmlab("forecast", "--out", "forecast.csv")
    assert fc.returncode == 0, fc.stderr[-2000:]
    table = pd.read_csv(project.root / "forecast.csv")
    sales = pd.read_csv(project.data.files[0])
    for store, hist in sales.groupby("Store"):
        rows = table[table["series_id"] == store]
        if rows.empty:
            assert re.search(rf"{store}.*stale|stale.*{store}", train.stdout + train.stderr), (store, train.stdout)
            continue
        level = hist["Weekly_Sales"].tail(13).mean()
        assert 0.5 * level < rows["forecast"].mean() < 2 * level, (store, level, rows["forecast"].mean())
        assert pd.Timestamp(rows["period"].min()) > pd.Timestamp(hist["Week"].max())


CASES = [pytest.param(name, cmd, marks=[mark] if mark else [], id=f"{name}-{cmd}")
         for name, cmds in EXPECT.items() for cmd, (_, mark) in cmds.items()]


@pytest.mark.parametrize("name", list(ZOO))
def test_init_maps_the_zoo_data_set(projects, name):
    project = projects(name)
    _assert_no_traceback(project.init)
    assert project.init.returncode == 0, project.init.stderr[-2000:]
    cfg = load_config(project.root / "configs")
    for kind, expected in project.data.mapping.items():
        source = getattr(cfg.project.data, kind)
        assert source is not None, kind
        assert {k: source.columns.get(k) for k in expected} == expected
    assert "What your data can support" in project.init.stdout


@pytest.mark.parametrize(("name", "command"), CASES)
def test_zoo_command(projects, name, command):
    project = projects(name)
    expected, _ = EXPECT[name][command]
    proc = project.result(command)
    if expected != OK:
        _assert_named_error(proc, expected)
        return
    _assert_no_traceback(proc)
    assert proc.returncode == 0, proc.stderr[-2000:]
    if command == "score":
        scores = pd.read_parquet(project.root / "outputs" / "scores.parquet")
        assert len(scores) == project.data.n_customers and scores["customer_id"].is_unique
        trained = [p for p in ("churn", "clv", "segmentation") if project.result(p).returncode == 0]
        assert trained and all(f"{p}_model_version" in scores.columns for p in trained)
        return
    assert (project.root / "models" / command / "manifest.json").is_file()
    if (name, command) in NOTES:
        assert re.search(NOTES[name, command], proc.stdout + proc.stderr), proc.stdout[-3000:]
    if name == "sales" and command == "forecast":
        _check_sales_forecast(project)


@pytest.mark.parametrize("name", ["b2b", "shop", "marketplace", "minimal", "chinese"])
def test_init_says_the_windows_that_training_uses(projects, name):
    """init prints the churn horizon and the CLV holdout it leaves to auto; training resolves auto
    with the same rules, so the two never disagree."""
    project = projects(name)
    said = project.init.stdout
    horizon = re.search(r"churn\s+\w+\s+horizon (\d+) days", said).group(1)
    cal_end = re.search(r"clv\s+\w+\s+.*calibration to (\d{4}-\d\d-\d\d)", said).group(1)
    assert f"churn = no purchase in {horizon} days" in project.result("churn").stdout
    assert f"holdout {cal_end} ->" in project.result("clv").stdout


def test_personal_data_of_the_telecom_export_stays_out_of_models_outputs_and_tracking(projects):
    """init maps 'Full Name', 'E-mail Address' and 'Mobile Phone' to name/email/phone, which are
    personal data: after training churn and scoring, no file of the project holds one of them."""
    project = projects("telecom")
    assert project.result("churn").returncode == 0 and project.result("score").returncode == 0
    people = pd.read_csv(project.data.files[0], dtype=str)
    needles = [v.encode() for col in ("Full Name", "E-mail Address", "Mobile Phone") for v in people[col].head(50)]
    leaks = []
    for path in project.root.rglob("*"):
        if path.is_file() and "data" not in path.relative_to(project.root).parts[:1]:
            blob = path.read_bytes()
            leaks += [(str(path.relative_to(project.root)), n.decode()) for n in needles if n in blob]
    assert leaks == []
