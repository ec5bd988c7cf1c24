"""End to end through the command line, on real files and a real MLflow store."""

from __future__ import annotations

import re
import sqlite3

import mlflow
import pandas as pd
import pytest

from crmlab.cli import main
from crmlab.data.synth import write_synthetic
from crmlab.demo import DEMO_PIPELINES

from .conftest import REPO


def _sets(tracking, tmp_path):
    return [
        "--set", f"project.tracking.uri={tracking.uri}",
        "--set", f"project.tracking.artifact_dir={tracking.artifact_dir}",
        "--set", f"project.output.dir={tmp_path / 'outputs'}",
        "--set", f"project.output.models_dir={tmp_path / 'models'}",
    ]


@pytest.mark.slow
def test_demo_on_embedded_cdnow(tracking, tmp_path, capsys, monkeypatch):
    from crmlab import workflow
    from crmlab.data import clean as cleaning

    cleaned = []  # the real cleaner, counted: the demo cleaned the same data 6 times (issue 16)

    def counting(*args, **kwargs):
        cleaned.append(1)
        return cleaning.clean_tables(*args, **kwargs)

    monkeypatch.setattr(workflow, "clean_tables", counting)
    monkeypatch.setattr(workflow, "_last", None)
    code = main(["-c", str(REPO / "configs"), *_sets(tracking, tmp_path), "demo"])
    assert len(cleaned) == 1
    out = capsys.readouterr().out
    assert code == 0, out
    feats = pd.read_parquet(tmp_path / "outputs" / "features.parquet")
    assert len(feats) == 23_570  # every CDNOW customer, one row each
    assert feats["customer_id"].is_unique
    assert (tmp_path / "outputs" / "clean" / "rejects_transactions.csv").exists()
    client = mlflow.MlflowClient(tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("crmlab").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert by_name["demo"].data.metrics["customers"] == 23_570
    # every pipeline of the demo trained, exported and registered its model, but cross-sell: CDNOW has no
    # product column, so it is skipped with a note naming the table and the key
    assert "note: crosssell skipped:" in out and "crosssell.item_column" in out
    assert not (tmp_path / "models" / "crosssell").exists()
    for pipeline in (p for p in DEMO_PIPELINES if p != "crosssell"):
        assert pipeline in by_name and by_name[pipeline].info.status == "FINISHED"
        assert (tmp_path / "models" / pipeline / "manifest.json").exists()
        assert str(client.get_model_version_by_alias(f"crmlab-{pipeline}", "champion").version) == "1"
    # the whole base scored, one row per customer, with each customer model's columns
    scores = pd.read_parquet(tmp_path / "outputs" / "scores.parquet")
    assert len(scores) == 23_570 and scores["customer_id"].is_unique
    expected = {"clv": "clv", "churn": "churn_probability", "segmentation": "segment_name"}
    for pipeline in set(DEMO_PIPELINES) & set(expected):
        assert scores[expected[pipeline]].notna().all(), pipeline
    assert (tmp_path / "outputs" / "report.html").stat().st_size > 50_000
    assert "mlflow ui --backend-store-uri" in out


def test_no_personal_data_reaches_mlflow(tracking, tmp_path, capsys):
    """Run the flow on synthetic data with personal data, then search the whole tracking store and
    every artifact for the generator's e-mail addresses and phone numbers."""
    paths = write_synthetic(tmp_path / "synth", n_customers=300, seed=3)
    customers = pd.read_csv(paths["customers"], dtype=str)
    emails = {e.strip().lower() for e in customers["email"].dropna()}
    phones = {"".join(ch for ch in p if ch.isdigit())[-10:] for p in customers["phone"].dropna()}
    assert emails and phones
    sets = _sets(tracking, tmp_path) + [
        "--set", f"project.data.transactions.path={paths['transactions']}",
        "--set", f"project.data.customers.path={paths['customers']}",
        "--set", f"project.data.interactions.path={paths['interactions']}",
        "--set", "project.cleaning.max_date=2024-12-31",
    ]
    (tmp_path / "no-configs").mkdir()  # an explicit --config-dir must exist; an empty one means defaults
    code = main(["-c", str(tmp_path / "no-configs"), *sets, "demo"])
    captured = capsys.readouterr()
    assert code == 0, captured.err

    blobs = []
    con = sqlite3.connect(tracking.uri.removeprefix("sqlite:///"))
    for (table,) in con.execute("select name from sqlite_master where type='table'"):
        for row in con.execute(f'select * from "{table}"'):
            blobs.append(" ".join(str(v) for v in row))
    con.close()
    files = [p for p in tracking.artifact_dir.rglob("*") if p.is_file()]
    assert any(p.name == "summary.csv" for p in files)
    blobs += [p.read_bytes().decode("utf-8", "replace") for p in files]
    blobs.append(captured.out + captured.err)
    text = "\n".join(blobs).lower()
    phone_like = {"".join(ch for ch in m if ch.isdigit())[-10:] for m in re.findall(r"\+?\d[\d ().-]{8,}\d", text)}
    leaked = [e for e in emails if e in text] + sorted(phones & phone_like)
    assert not leaked, f"personal data in the tracking store or artifacts: {leaked[:3]}"
