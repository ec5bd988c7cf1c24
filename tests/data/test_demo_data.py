"""Issue 14 item 5: the embedded CDNOW demo log is used only when no data is configured at all,
says so on every run, and is never mixed with a table of the user's own."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import date

import numpy as np
import pandas as pd
import pytest

from crmlab.config import DataConfig, TableSource, load_config
from crmlab.data.io import CDNOW_NAME, load_tables
from crmlab.errors import ConfigError
from crmlab.scoring import contract_as_of
from crmlab.workflow import prepare_data

from ..conftest import REPO
from ..conftest import empty_config_dir

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}


def _contract_csv(path, n=200, seed=0, signup=True):
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    churn = rng.random(n) < 1 / (1 + np.exp(1.0 + 0.04 * tenure - 2.0 * (rng.random(n) < 0.4)))
    df = pd.DataFrame({"AccountNo": [f"A{i:04d}" for i in range(n)], "TenureMonths": tenure,
                       "Plan": rng.choice(["monthly", "yearly"], n), "Exited": churn.astype(int)})
    if signup:
        df["Opened"] = (pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 500, n), unit="D")
                        ).strftime("%Y-%m-%d")
    df.to_csv(path, index=False)
    return path


def test_customers_with_a_label_load_no_demo_transactions(tmp_path):
    path = _contract_csv(tmp_path / "accounts.csv")
    data = DataConfig(customers=TableSource(path=path, columns={"customer_id": "AccountNo"}))
    tables = load_tables(data)
    assert tables.transactions is None
    assert len(tables.customers) == 200 and CDNOW_NAME not in tables.sources.values()


def test_no_data_configured_uses_the_demo_log_and_says_so(caplog, monkeypatch):
    monkeypatch.setattr("crmlab.data.io._demo_announced", False)  # said once per process
    with caplog.at_level(logging.WARNING, logger="crmlab.data.io"):
        tables = load_tables(DataConfig())
    assert tables.transactions["customer_id"].nunique() == 23_570
    lines = [r.getMessage() for r in caplog.records if "CDNOW" in r.getMessage()]
    assert len(lines) == 1 and "no data configured" in lines[0]


def test_every_command_on_the_demo_data_says_so_on_stderr(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "crmlab", "-c", str(empty_config_dir(tmp_path)), "data", "clean"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("no data configured: using the CDNOW demo log") == 1


def test_demo_transactions_next_to_own_customers_is_a_named_error(tmp_path):
    path = _contract_csv(tmp_path / "accounts.csv")
    data = DataConfig(transactions=TableSource(), customers=TableSource(path=path))
    with pytest.raises(ConfigError, match=r"project\.data\.transactions.*accounts\.csv.*never mixed"):
        load_tables(data)


def test_own_sales_table_alone_never_loads_the_demo_log(tmp_path):
    sales = tmp_path / "sales.csv"
    pd.DataFrame({"period": ["2024-01", "2024-02"], "value": [1, 2]}).to_csv(sales, index=False)
    with pytest.raises(Exception, match="no transactions or customers table"):
        load_tables(DataConfig(sales=TableSource(path=sales)))


def test_shipped_project_yaml_plus_own_customers_is_not_mixed(tmp_path):
    path = _contract_csv(tmp_path / "accounts.csv")
    cfg = load_config(REPO / "configs", [f"project.data.customers.path={path}",
                                         "project.data.customers.columns.customer_id=AccountNo"])
    prepared = prepare_data(cfg.project)
    assert prepared.tables.transactions is None and prepared.as_of is None


def test_contract_as_of_is_the_latest_signup_else_today(tmp_path):
    cfg = load_config(empty_config_dir(tmp_path), [f"project.data.customers.path={_contract_csv(tmp_path / 'a.csv')}",
                                          "project.data.customers.columns.customer_id=AccountNo",
                                          "project.data.customers.columns.signup_date=Opened"])
    tables = prepare_data(cfg.project).tables
    expected = pd.to_datetime(pd.read_csv(tmp_path / "a.csv")["Opened"]).max().date()
    assert contract_as_of(tables) == expected
    cfg = load_config(empty_config_dir(tmp_path), [f"project.data.customers.path={_contract_csv(tmp_path / 'b.csv', signup=False)}",
                                          "project.data.customers.columns.customer_id=AccountNo"])
    tables = prepare_data(cfg.project).tables
    assert contract_as_of(tables, today=date(2031, 5, 6)) == date(2031, 5, 6)


@pytest.mark.slow
def test_score_of_a_contract_table_needs_no_as_of(tmp_path):
    path = _contract_csv(tmp_path / "accounts.csv", n=300, signup=False)
    sets = [f"project.data.customers.path={path}", "project.data.customers.columns.customer_id=AccountNo",
            "churn.label_column=Exited", f"project.tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"project.tracking.artifact_dir={tmp_path / 'mlartifacts'}", "churn.cv_folds=3"]
    args = [a for s in sets for a in ("--set", s)]
    run = lambda *cmd: subprocess.run([sys.executable, "-m", "crmlab", "-c", str(empty_config_dir(tmp_path)), *args, *cmd],
                                      capture_output=True, text=True, cwd=tmp_path, timeout=300, env=ENV)
    train = run("train", "churn")
    assert train.returncode == 0, train.stderr[-2000:]
    score = run("score", "--model", "churn", "--out", "scores.csv")
    assert score.returncode == 0, score.stderr[-2000:]
    assert "Traceback" not in score.stderr
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 300  # the 300 accounts, no CDNOW customer beside them
    today = str(date.today())
    assert (scores["as_of"].astype(str).str[:10] == today).all()
    assert f"scored at {today}" in score.stdout and "today" in score.stderr
