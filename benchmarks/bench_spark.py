"""Benchmark ``crmlab score --engine spark`` (local mode) against the pandas path on CDNOW replicated.

Every customer model is trained on CDNOW itself (tracking off); the replicated transactions are written
as the clean Parquet table Spark reads; then the same base is scored by ``write_scores`` (pandas, one
process, chunked) and by ``score_on_spark`` (``local[N]``, buckets of customers through
``applyInPandas``). Printed: wall time of each, and whether the two agree (rows, and the CLV of every
customer to 1e-9). Spark pays a start-up and a serialisation cost that pays off only past one
machine's memory; this measures that cost on one machine.

    .venv/bin/python benchmarks/bench_spark.py [--replicas 12] [--master local[2]] [--buckets 8] [--raw]

With ``--raw`` the log is written as a raw CSV instead, and both paths start from it: pandas reads and
cleans it in one process (``prepare_data``) and scores; Spark reads the CSV, cleans it by customer bucket
(:mod:`crmlab.spark_clean`) and scores the clean folder. Both wall times include the cleaning.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import make_data  # noqa: E402

from crmlab.config import load_config  # noqa: E402
from crmlab.data.io import Tables  # noqa: E402
from crmlab.pipelines import customer_models  # noqa: E402
from crmlab.pipelines import get as pipeline_record  # noqa: E402
from crmlab.scoring import write_scores  # noqa: E402
from crmlab.spark import score_on_spark  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=12, help="copies of CDNOW (144: 10.0M transactions)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--buckets", type=int, default=8)
    parser.add_argument("--model", action="append", choices=customer_models())
    parser.add_argument("--raw", action="store_true", help="start both paths from a raw CSV (cleaning included)")
    args, _ = parser.parse_known_args()
    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="bench-spark-"))
    cfg = load_config(REPO / "configs", ["project.tracking.enabled=false", f"project.output.dir={work / 'out'}",
                                         f"project.output.models_dir={work / 'models'}", "project.as_of=1998-06-30"])
    models = args.model or list(customer_models())
    for name in models:
        pipeline_record(name).load("trainer")(cfg)
    tx = make_data(args.replicas, extra_columns=False, order="customer")
    (work / "clean").mkdir()
    if args.raw:
        tx.assign(ts=tx["ts"].dt.strftime("%Y-%m-%d")).to_csv(work / "raw.csv", index=False)
        cfg = load_config(REPO / "configs", ["project.tracking.enabled=false", f"project.output.dir={work / 'out'}",
                                             f"project.output.models_dir={work / 'models'}", "project.as_of=1998-06-30",
                                             f"project.data.transactions.path={work / 'raw.csv'}",
                                             f"project.scoring.spark_master={args.master}"])
    else:
        tx.to_parquet(work / "clean" / "transactions.parquet", index=False)
    print(f"data: {len(tx):,} transactions, {tx['customer_id'].nunique():,} customers; models: {', '.join(models)}"
          + ("; from a raw CSV, cleaning included" if args.raw else ""))
    del tx

    t0 = time.perf_counter()
    if args.raw:
        from crmlab.workflow import prepare_data

        tables = prepare_data(cfg.project).tables
    else:
        tables = Tables(transactions=pd.read_parquet(work / "clean" / "transactions.parquet"))
    write_scores(cfg, work / "pandas.parquet", tables=tables, pipelines=models, source="models", as_of="1998-06-30")
    del tables
    t_pandas = time.perf_counter() - t0
    t0 = time.perf_counter()
    if args.raw:
        from crmlab.spark import session
        from crmlab.spark_clean import clean_on_spark

        clean_on_spark(cfg, work / "clean", spark=session(args.master), buckets=args.buckets)
    summary = score_on_spark(cfg, work / "spark", clean_dir=work / "clean", pipelines=models, source="models",
                             as_of="1998-06-30", buckets=args.buckets, master=args.master)
    t_spark = time.perf_counter() - t0
    a = pd.read_parquet(work / "pandas.parquet").sort_values("customer_id").reset_index(drop=True)
    b = pd.read_parquet(work / "spark").sort_values("customer_id").reset_index(drop=True)
    same = len(a) == len(b) == summary["rows"] and (a["customer_id"].to_numpy() == b["customer_id"].to_numpy()).all()
    if same and "clv" in a.columns:
        same = bool(np.allclose(a["clv"], b["clv"], rtol=1e-9, atol=1e-12))
    print(f"pandas: {t_pandas:6.1f} s | spark {args.master}, {args.buckets} buckets: {t_spark:6.1f} s "
          f"(x{t_spark / t_pandas:.1f}) | {len(a):,} rows | equal: {same}")


if __name__ == "__main__":
    main()
