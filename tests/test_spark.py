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
                                                  "expected_spend", "clv", "clv_model_version"]
    # a folder without clean tables is one line, exit 2
    assert main([*flags, "score", "--engine", "spark", "--clean-dir", str(root / "nothing"), "--out", str(out)]) == 2
    assert "no clean tables here" in capsys.readouterr().err
