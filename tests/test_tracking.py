from __future__ import annotations

import json
import time

import mlflow
import pandas as pd
import pytest

from crmlab.errors import CrmlabError
from crmlab.tracking import Tracker, code_version, data_fingerprint, flatten, scrub_pii


def _people() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "email": ["x@example.com", "y@example.com", "z@example.com"],
            "contact": ["Ann.Lee@Example.com", "bo@mail.org", "cy@mail.org"],  # unnamed PII column
            "tel": ["+1 (555) 123-4567", "555.123.4568", "5551234569"],
            "age": [30, 40, 50],
            "plan": ["basic", "plus", "basic"],
        }
    )


def test_scrub_pii_drops_named_and_detected_columns():
    safe = scrub_pii(_people())
    assert list(safe.columns) == ["customer_id", "age", "plan"]


def test_flatten():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None, "e": {}}) == {"a.b": 1, "a.c": "[1, 2]", "d": "null", "e": "{}"}


def test_fingerprint_changes_with_data_and_ignores_personal_columns():
    df = _people()
    fp = data_fingerprint({"customers": df})["customers"]
    assert fp["rows"] == 3 and fp["customers"] == 3
    other_email = df.assign(email=["q@example.com", "y@example.com", "z@example.com"])
    assert data_fingerprint({"customers": other_email})["customers"]["sha256"] == fp["sha256"]
    other_age = df.assign(age=[31, 40, 50])
    assert data_fingerprint({"customers": other_age})["customers"]["sha256"] != fp["sha256"]
    # row order does not matter
    assert data_fingerprint({"customers": df.iloc[::-1]})["customers"]["sha256"] == fp["sha256"]


def test_run_logs_config_fingerprint_code_metrics_and_tables(tracking):
    tracker = Tracker(tracking)
    fp = data_fingerprint({"customers": _people()})
    with tracker.start_run("unit", pipeline="test", config={"clv": {"penalizer": 0.1}}, fingerprint=fp) as run:
        run.log_metrics({"auc": 0.8, "nested": {"mae": 1.5}, "bad": float("nan")})
        run.log_table(_people(), "tables/people.csv")
    got = mlflow.MlflowClient(tracker.uri).get_run(run.run_id)
    assert got.data.params["clv.penalizer"] == "0.1"
    assert got.data.params["data.customers.rows"] == "3"
    assert got.data.metrics == {"auc": 0.8, "nested.mae": 1.5}
    assert got.data.tags["crmlab.pipeline"] == "test"
    assert got.data.tags["crmlab_version"] == code_version()["crmlab_version"]
    art = tracking.artifact_dir
    files = {p.name for p in art.rglob("*") if p.is_file()}
    assert {"config.json", "data_fingerprint.json", "people.csv"} <= files
    logged = pd.read_csv(next(art.rglob("people.csv")))
    assert list(logged.columns) == ["customer_id", "age", "plan"]
    assert json.loads(next(art.rglob("config.json")).read_text()) == {"clv": {"penalizer": 0.1}}


def test_a_run_logs_each_table_of_the_fingerprint_as_a_dataset(tracking, tmp_path):
    """issue 20: the MLflow UI's Dataset column. A dataset per table, digest = the fingerprint's hash of
    the rows, source = where the table was read, schema from the dtypes, the counts as its profile."""
    people = _people().assign(signup_date=pd.to_datetime(["2024-01-01", "2024-02-01", "2024-03-01"]))
    orders = pd.DataFrame({"customer_id": ["a", "b"], "amount": [1.5, 2.0], "n": [1, 2]})
    (tmp_path / "people.csv").write_text("x")
    fp = data_fingerprint({"customers": people, "transactions": orders, "surveys": None})
    fp["sources"] = {"customers": str(tmp_path / "people.csv"),
                     "transactions": "postgresql://crmlab@db:5432/crm (table crm.orders)"}
    fp["as_of"] = "2024-03-31"
    tracker = Tracker(tracking)
    with tracker.start_run("unit", pipeline="test", fingerprint=fp,
                           tables={"customers": people, "transactions": orders}) as run:
        pass
    got = {d.dataset.name: d for d in mlflow.MlflowClient(tracker.uri).get_run(run.run_id).inputs.dataset_inputs}
    assert set(got) == {"customers", "transactions"}
    customers, transactions = got["customers"].dataset, got["transactions"].dataset
    assert customers.digest == fp["customers"]["sha256"] and transactions.digest == fp["transactions"]["sha256"]
    assert (customers.source_type, json.loads(customers.source)) == ("local", {"uri": str(tmp_path / "people.csv")})
    assert transactions.source_type == "postgresql"
    assert json.loads(customers.profile) == {"num_rows": 3, "num_columns": 7, "customers": 3,
                                             "date_min": "2024-01-01", "date_max": "2024-03-01"}
    schema = {c["name"]: c["type"] for c in json.loads(transactions.schema)["mlflow_colspec"]}
    assert schema == {"customer_id": "string", "amount": "double", "n": "long"}
    assert [(t.key, t.value) for t in got["customers"].tags] == [("mlflow.data.context", "training")]
    # nothing personal in what was logged: names and types only, no value
    logged = customers.to_proto().SerializeToString().decode("utf-8", "replace")
    assert "example.com" not in logged and "555.123" not in logged


def test_failed_block_marks_run_failed(tracking):
    tracker = Tracker(tracking)
    with pytest.raises(RuntimeError):
        with tracker.start_run("boom", pipeline="test") as run:
            raise RuntimeError("x")
    assert mlflow.MlflowClient(tracker.uri).get_run(run.run_id).info.status == "FAILED"


def test_nested_runs_are_children(tracking):
    tracker = Tracker(tracking)
    with tracker.start_run("parent", pipeline="test") as parent:
        with tracker.start_run("child", pipeline="test", nested=True) as child:
            pass
    tags = mlflow.MlflowClient(tracker.uri).get_run(child.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.run_id


def test_disabled_tracking_logs_nothing(tracking, tmp_path):
    cfg = tracking.model_copy(update={"enabled": False, "uri": f"sqlite:///{tmp_path / 'off.db'}"})
    with Tracker(cfg).start_run("off", pipeline="test", config={"a": 1}) as run:
        run.log_metrics({"x": 1})
    assert run.run_id is None and not (tmp_path / "off.db").exists()


def test_unusable_store_gives_clear_error(tmp_path):
    from crmlab.config import TrackingConfig

    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = TrackingConfig(uri=f"sqlite:///{blocker}/sub/mlflow.db", artifact_dir=tmp_path / "a")
    with pytest.raises(CrmlabError, match=r"cannot open the MLflow tracking store .*project\.tracking\.uri"):
        with Tracker(cfg).start_run("x", pipeline="test"):
            pass


_AT_THE_SAME_MOMENT = """
import sys, time
from pathlib import Path

from crmlab.cli import main  # imported before the start signal: the race is about the store, not imports
import mlflow  # noqa: F401

go = Path(sys.argv[1])
while not go.exists():
    time.sleep(0.002)
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_two_trainings_at_once_on_a_fresh_store(tmp_path):
    """issue 15 item 12: two trainings starting together on a new SQLite store raced MLflow's schema
    creation (``duplicate column name``); both must succeed, and so must two more on the store that
    now exists, each registering its version."""
    import os
    import subprocess
    import sys

    from crmlab.config import load_config
    from crmlab.registry import _client

    from .conftest import synthetic_project

    sets = synthetic_project(tmp_path, n_customers=200, seed=7)
    (tmp_path / "no-configs").mkdir()
    script = tmp_path / "at_once.py"
    script.write_text(_AT_THE_SAME_MOMENT)

    def pair(round_: int) -> None:
        go = tmp_path / f"go{round_}"
        procs = []
        for i in (1, 2):
            moved = [s.replace(str(tmp_path / "models"), str(tmp_path / f"models{round_}{i}"))
                     .replace(str(tmp_path / "outputs"), str(tmp_path / f"outputs{round_}{i}")) for s in sets]
            args = [sys.executable, str(script), str(go), "-c", str(tmp_path / "no-configs"),
                    *[a for s in [*moved, "clv.challenger=false"] for a in ("--set", s)], "train", "clv"]
            procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                          cwd=tmp_path, env={**os.environ, "COLUMNS": "200"}))
        time.sleep(6)  # both have imported crmlab and MLflow and wait for the signal
        go.touch()
        outs = [p.communicate(timeout=300)[0] for p in procs]
        for p, text in zip(procs, outs):
            assert p.returncode == 0, text[-2000:]

    assert not (tmp_path / "mlflow.db").exists()
    pair(1)
    pair(2)
    cfg = load_config(tmp_path / "no-configs", sets)
    versions = _client(cfg.project.tracking).search_model_versions("name = 'crmlab-clv'")
    assert sorted(int(v.version) for v in versions) == [1, 2, 3, 4]
