"""Batch scoring on Spark, for a customer base beyond one machine (``crmlab score --engine spark``).

Spark reads the clean tables (the Parquet files ``crmlab data clean`` writes, with or without
``--engine spark`` (:mod:`crmlab.spark_clean`), or any Parquet in crmlab's canonical columns and types), splits the customers into buckets by a hash of their id, and
scores each bucket with ``groupBy(bucket).cogroup(...).applyInPandas``: every bucket's transactions and
customer rows go to one Python worker, which calls :func:`crmlab.scoring.iter_score_chunks`, the very
function of the pandas path, so a customer gets the same scores on both engines (tested on CDNOW to
1e-9, strings exactly). What the pandas path takes from the whole base is fixed on the driver first:
the cut-off date and the levels of the customer table's text attributes. The scores are written as a
Parquet dataset (a folder), moved into place when complete; nulls stay nulls, one ``customer_id``.

PySpark is an optional extra (``pip install crmlab[spark]``; Java 17+). ``project.scoring.spark_master``
chooses the cluster (default ``local[*]``, this machine's cores).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from crmlab.config import CrmlabConfig
from crmlab.data.io import Tables
from crmlab.errors import ConfigError, DataError
from crmlab.utils import replace_folder

__all__ = ["score_on_spark"]

log = logging.getLogger(__name__)

_SPARK_TYPES = {"b": "boolean", "i": "bigint", "u": "bigint", "f": "double", "M": "timestamp"}


def session(master: str) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("--engine spark needs PySpark: pip install 'crmlab[spark]' (and Java 17 or newer)") from None
    # the workers run this interpreter, which has crmlab and its dependencies
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (SparkSession.builder.master(master).appName("crmlab-score")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.session.timeZone", "UTC")
            .getOrCreate())


def _schema(sample: pd.DataFrame) -> str:
    """The Spark DDL schema of the score columns, from a scored sample's pandas dtypes."""
    cols = []
    for name, dtype in sample.dtypes.items():
        kind = getattr(dtype, "kind", "O")
        spark_type = "date" if name == "as_of" else _SPARK_TYPES.get(kind, "string")
        cols.append(f"`{name}` {spark_type}")
    return ", ".join(cols)


def _to_spark_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The scores as Spark receives them: text with None (never the string 'nan'), dates as dates."""
    out = frame.reindex(columns=columns)
    for col in out.columns:
        s = out[col]
        if col == "as_of":
            out[col] = pd.to_datetime(s).dt.date
        elif getattr(s.dtype, "kind", "O") not in "biufM":
            out[col] = s.astype(object).where(s.notna(), None)
    return out


def _typical_gap(cfg: CrmlabConfig, tx: Any, as_of: date) -> float | None:
    """The lifecycle stages' typical gap of the whole base (:func:`crmlab.lifecycle.typical_gap_days`),
    computed once by Spark so that every bucket judges its customers by the same one; None when the
    config gives it or no lifecycle columns are wanted."""
    lc = cfg.lifecycle
    if tx is None or not lc.in_scores:
        return None
    if lc.typical_gap_days != "auto":
        return float(lc.typical_gap_days)
    from pyspark.sql import functions as F

    day = F.to_date("ts")
    per = (tx.where((day <= F.lit(as_of.isoformat()).cast("date")) & (F.col("amount") >= 0))
           .groupBy("customer_id")
           .agg(F.countDistinct(day).alias("n"), F.datediff(F.max(day), F.min(day)).alias("span"))
           .where(F.col("n") >= 2)
           .select((F.col("span") / (F.col("n") - 1)).alias("gap")))
    median = per.agg(F.expr("percentile(gap, 0.5)")).first()[0]  # exact, the middle two averaged as numpy does
    return None if median is None else float(median)


def score_on_spark(cfg: CrmlabConfig, out: str | Path, *, clean_dir: str | Path, as_of: date | str | None = None,
                   pipelines: list[str] | None = None, source: str | None = None, buckets: int | None = None,
                   master: str | None = None) -> dict[str, Any]:
    """Score every customer of the clean tables in ``clean_dir`` on Spark into the Parquet folder ``out``.

    Returns a summary like :func:`crmlab.scoring.write_scores`' (path, rows, as_of, models)."""
    from crmlab.scoring import iter_score_chunks, open_models

    clean = Path(clean_dir)
    # `crmlab data clean` writes <table>.parquet files, `crmlab data clean --engine spark` <table>/ folders
    tx_path, cust_path = (next((p for p in (clean / f"{t}.parquet", clean / t) if p.exists()), clean / f"{t}.parquet")
                          for t in ("transactions", "customers"))
    if not tx_path.exists() and not cust_path.exists():
        raise DataError("no clean tables here (transactions.parquet, customers.parquet)", file=str(clean),
                        expected="the folder `crmlab data clean --out DIR` writes (--clean-dir)")
    out = Path(out)
    if out.suffix.lower() in (".csv",):
        raise ConfigError(f"--out {out}: the Spark engine writes a Parquet folder, e.g. --out scores_spark")
    spark = session(master or cfg.project.scoring.spark_master)
    from pyspark.sql import functions as F

    tx = spark.read.parquet(str(tx_path)) if tx_path.exists() else None
    cust = spark.read.parquet(str(cust_path)) if cust_path.exists() else None
    # what the pandas path takes from the whole base, fixed here once
    if as_of is not None:
        as_of_d = pd.Timestamp(as_of).date()
    elif cfg.project.as_of is not None:
        as_of_d = cfg.project.as_of
    elif tx is not None:
        as_of_d = pd.Timestamp(tx.agg(F.max("ts")).first()[0]).date()
    elif "signup_date" in cust.columns and cust.agg(F.max("signup_date")).first()[0] is not None:
        as_of_d = pd.Timestamp(cust.agg(F.max("signup_date")).first()[0]).date()  # as the pandas path does
    else:
        as_of_d = date.today()
    levels: dict[str, list[str]] = {}
    if cust is not None:
        text_cols = [f.name for f in cust.schema.fields if f.dataType.simpleString() == "string" and f.name != "customer_id"]
        for col in text_cols:
            levels[col] = sorted(str(r[0]) for r in cust.select(col).where(F.col(col).isNotNull()).distinct().collect())
    n = buckets or max(2, spark.sparkContext.defaultParallelism * 2)
    typical_gap = _typical_gap(cfg, tx, as_of_d)

    with open_models(cfg, pipelines=pipelines, source=source) as models:
        # the output schema, from a few customers scored here
        some = [r[0] for r in (tx if tx is not None else cust).select("customer_id").distinct().limit(20).collect()]
        sample_tables = Tables(
            transactions=tx.where(F.col("customer_id").isin(some)).toPandas() if tx is not None else None,
            customers=cust.where(F.col("customer_id").isin(some)).toPandas() if cust is not None else None)
        sample = pd.concat(list(iter_score_chunks(sample_tables, cfg, models, as_of=as_of_d, levels=levels,
                                                  typical_gap=typical_gap)), ignore_index=True)
        columns = list(sample.columns)
        schema = _schema(sample)
        project, scoring_models = cfg, models

        names = [k for k, v in (("transactions", tx), ("customers", cust)) if v is not None]

        def score_bucket(frames: tuple[pd.DataFrame, ...]) -> pd.DataFrame:
            if not any(len(f) for f in frames):
                return _to_spark_frame(sample.iloc[0:0], columns)
            # a side without rows in this bucket stays an empty table, as a chunk of the pandas path would see it
            tables = Tables(**{k: f.drop(columns="_bucket") for k, f in zip(names, frames, strict=True)})
            scored = list(iter_score_chunks(tables, project, scoring_models, as_of=as_of_d, levels=levels,
                                            typical_gap=typical_gap))
            frame = pd.concat(scored, ignore_index=True) if scored else sample.iloc[0:0]
            return _to_spark_frame(frame, columns)

        bucket = (F.abs(F.hash("customer_id")) % F.lit(n)).alias("_bucket")
        if tx is not None and cust is not None:
            grouped = tx.withColumn("_bucket", bucket).groupBy("_bucket").cogroup(
                cust.withColumn("_bucket", bucket).groupBy("_bucket"))
            def both(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
                return score_bucket((left, right))

            scores = grouped.applyInPandas(both, schema=schema)
        else:
            def one(frame: pd.DataFrame) -> pd.DataFrame:
                return score_bucket((frame,))

            only = (tx if tx is not None else cust).withColumn("_bucket", bucket)
            scores = only.groupBy("_bucket").applyInPandas(one, schema=schema)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            scores.write.mode("overwrite").parquet(str(tmp / "scores"))
            rows = spark.read.parquet(str(tmp / "scores")).count()
            replace_folder(tmp / "scores", out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        summary = {"path": out, "rows": int(rows), "as_of": as_of_d, "buckets": n,
                   "models": {p: {"version": m.version, "source": m.source} for p, m in models.items()}}
    log.info("%s customers scored on Spark (%s, %d buckets) -> %s", f"{rows:,}", spark.sparkContext.master, n, out)
    return summary
