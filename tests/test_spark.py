"""Scoring on Spark in local mode equals scoring with pandas, customer for customer (issue 17 item 5).

Skipped without PySpark or Java, except under CI=true, where both must be there.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pandas as pd
import pytest

from crmlab.config import load_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory):
    """The embedded CDNOW log, cleaned to Parquet, with CLV, churn and segmentation trained on it."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("PySpark is a dev dependency: it must be installed under CI")
        pytest.skip("PySpark is not installed (pip install 'crmlab[spark]')")
    if shutil.which("java") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Java is needed for Spark under CI")
        pytest.skip("no Java for Spark")
    from crmlab import pipelines
    from crmlab.workflow import prepare_data

    root = tmp_path_factory.mktemp("spark")
    cfg = load_config(None, ["project.tracking.enabled=false", f"project.output.dir={root / 'outputs'}",
                             f"project.output.models_dir={root / 'models'}"])
    prepare_data(cfg.project, out_dir=root / "clean")
    for name in ("clv", "churn", "segmentation"):
        pipelines.get(name).load("trainer")(cfg)
    return root, cfg


def test_spark_scores_equal_pandas_scores_for_every_customer(cdnow):
    from crmlab.scoring import score_customers
    from crmlab.spark import score_on_spark

    root, cfg = cdnow
    expected = score_customers(cfg, source="models").sort_values("customer_id").reset_index(drop=True)
    summary = score_on_spark(cfg, root / "scores_spark", clean_dir=root / "clean", source="models", buckets=4,
                             master="local[2]")
    got = pd.read_parquet(root / "scores_spark").sort_values("customer_id").reset_index(drop=True)
    assert summary["rows"] == len(got) == len(expected) == 23_570
    assert list(got.columns) == list(expected.columns)  # one customer_id, the same columns in the same order
    assert got["customer_id"].is_unique
    for col in expected.columns:
        a, b = expected[col], got[col]
        if col == "as_of":
            assert (pd.to_datetime(a) == pd.to_datetime(b)).all()
        elif pd.api.types.is_float_dtype(a):
            np.testing.assert_allclose(b.to_numpy(float), a.to_numpy(float), rtol=1e-9, atol=1e-12, err_msg=col)
        elif pd.api.types.is_bool_dtype(a) or pd.api.types.is_integer_dtype(a):
            assert (a.to_numpy() == b.to_numpy()).all(), col
        else:  # text: exactly, and a missing reason is null on both sides, never the string 'nan'
            assert a.isna().equals(b.isna()), col
            assert (a[a.notna()].astype(str) == b[b.notna()].astype(str)).all(), col
            assert not (b.astype(str) == "nan").any(), col


def test_the_command_line_scores_on_spark(cdnow, capsys):
    from crmlab.cli import main

    root, _ = cdnow
    (root / "no-configs").mkdir(exist_ok=True)
    flags = ["-c", str(root / "no-configs"), "--set", "project.tracking.enabled=false",
             "--set", f"project.output.dir={root / 'outputs'}", "--set", f"project.output.models_dir={root / 'models'}",
             "--set", "project.scoring.spark_master=local[2]"]
    out = root / "cli_scores"
    assert main([*flags, "score", "--engine", "spark", "--clean-dir", str(root / "clean"), "--model", "clv",
                 "--out", str(out)]) == 0
    assert "23,570 customers scored on Spark" in " ".join(capsys.readouterr().out.split())
    assert list(pd.read_parquet(out).columns) == ["customer_id", "as_of", "p_alive", "expected_purchases",
                                                  "expected_spend", "clv", "clv_low", "clv_high", "clv_model_version",
                                                  "lifecycle_stage", "lifecycle_overdue", "lifecycle_spend_trend",
                                                  "lifecycle_usual_gap_days"]
    # a folder without clean tables is one line, exit 2
    assert main([*flags, "score", "--engine", "spark", "--clean-dir", str(root / "nothing"), "--out", str(out)]) == 2
    assert "no clean tables here" in capsys.readouterr().err


def _sorted(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[col]):
            out[col] = out[col].astype("datetime64[us]")
    return out.sort_values(list(out.columns), kind="stable", na_position="first").reset_index(drop=True)


def test_cleaning_on_spark_gives_the_rows_rejects_and_fills_of_pandas(cdnow, tmp_path):
    """Dirty synthetic CSVs (duplicates, broken dates and amounts, future dates, missing ids, ages to
    fill with the median) cleaned per customer bucket on Spark: the same clean rows, the same rejects
    with the same reasons, the same median filled in, as the pandas cleaner on the whole tables."""
    from crmlab.data.synth import write_synthetic
    from crmlab.spark_clean import clean_on_spark
    from crmlab.workflow import prepare_data

    paths = write_synthetic(tmp_path / "synth", n_customers=600, seed=5)
    cfg_sets = ["project.tracking.enabled=false", f"project.output.dir={tmp_path / 'out'}",
                f"project.data.customers.path={paths['customers']}", "project.cleaning.max_date=2024-12-31",
                "project.cleaning.dedupe_customers=false"]  # persons by e-mail: one machine only
    cfg = load_config(None, [*cfg_sets, f"project.data.transactions.path={paths['transactions']}"])
    expected = prepare_data(cfg.project)
    # Spark reads the same log split into two files, through a glob
    raw = pd.read_csv(paths["transactions"], dtype=str, keep_default_na=False)
    (tmp_path / "parts").mkdir()
    raw.iloc[: len(raw) // 2].to_csv(tmp_path / "parts" / "tx-1.csv", index=False)
    raw.iloc[len(raw) // 2:].to_csv(tmp_path / "parts" / "tx-2.csv", index=False)
    cfg = load_config(None, [*cfg_sets, f"project.data.transactions.path={tmp_path / 'parts' / 'tx-*.csv'}"])
    summary = clean_on_spark(cfg, tmp_path / "clean_spark", buckets=5)
    report = expected.cleaning.report.to_dict()["tables"]
    for name in ("transactions", "customers"):
        got, want = summary["tables"][name], report[name]
        for key in ("input_rows", "clean_rows", "rejected_rows", "exact_duplicates", "rejected"):
            assert got[key] == want[key], (name, key)
        clean = pd.read_parquet(tmp_path / "clean_spark" / name)
        pd.testing.assert_frame_equal(_sorted(clean), _sorted(getattr(expected.tables, name)), check_dtype=False)
        rejects = tmp_path / "clean_spark" / f"rejects_{name}"
        got_reasons = (pd.read_parquet(rejects)["_reason"].value_counts().to_dict()
                       if any(rejects.glob("*.parquet")) else {})
        assert got_reasons == expected.cleaning.rejects[name]["_reason"].value_counts().to_dict()
    assert summary["tables"]["customers"]["imputed"]["age"] == report["customers"]["imputed"]["age"]
    assert report["transactions"]["rejected_rows"] > 0 and report["customers"]["imputed"]["age"]["count"] > 0


def test_the_command_line_reads_cleans_and_scores_the_raw_log_on_spark(cdnow, capsys):
    """`crmlab score --engine spark` without --clean-dir: Spark reads the configured log (here the embedded
    CDNOW), cleans it by bucket and scores it; the scores equal the pandas path's."""
    from crmlab.cli import main
    from crmlab.scoring import score_customers

    root, cfg = cdnow
    flags = ["-c", str(root / "no-configs"), "--set", "project.tracking.enabled=false",
             "--set", f"project.output.dir={root / 'outputs'}", "--set", f"project.output.models_dir={root / 'models'}",
             "--set", "project.scoring.spark_master=local[2]"]
    (root / "no-configs").mkdir(exist_ok=True)
    out = root / "raw_scores"
    assert main([*flags, "score", "--engine", "spark", "--source", "models", "--out", str(out)]) == 0, \
        capsys.readouterr().err[-2000:]
    assert (root / "outputs" / "clean_spark" / "transactions").is_dir()
    got = pd.read_parquet(out).sort_values("customer_id").reset_index(drop=True)
    want = score_customers(cfg, source="models").sort_values("customer_id").reset_index(drop=True)
    assert len(got) == len(want) == 23_570
    num = [c for c in want.columns if pd.api.types.is_float_dtype(want[c])]
    np.testing.assert_allclose(got[num].to_numpy(float), want[num].to_numpy(float), rtol=1e-9, atol=1e-12)
    assert got["churn_reason_1"].fillna("<null>").tolist() == want["churn_reason_1"].fillna("<null>").tolist()
    capsys.readouterr()
    # a source Spark cannot read is one line, exit 2, before any job runs
    assert main([*flags, "--set", f"project.data.transactions.path={root / 'missing.csv'}",
                 "data", "clean", "--engine", "spark"]) == 2
    err = capsys.readouterr().err
    assert "missing.csv" in err and "file not found" in err and "Traceback" not in err
