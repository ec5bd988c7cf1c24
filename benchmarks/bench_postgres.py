"""Benchmark PostgreSQL as source and destination: CDNOW replicated (144: 10.0M transactions, 3.39M
customers) read from a table and scored back into one, next to the same base read from Parquet and
scored into a Parquet file.

A throw-away cluster is started (initdb/pg_ctl in a temp folder, as the tests do) and the transactions
are loaded into it with the ADBC driver (COPY). Each ``crmlab score`` then runs in a process of its own
under ``/usr/bin/time``: printed are its wall time and peak RSS (the whole process: reading, cleaning,
features, every model, writing), for both paths, and whether the two score tables agree.

    .venv/bin/python benchmarks/bench_postgres.py [--replicas 144] [--model clv ...]
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(REPO))
from bench_features import make_data  # noqa: E402

from crmlab.config import load_config  # noqa: E402
from crmlab.pipelines import customer_models  # noqa: E402
from crmlab.pipelines import get as pipeline_record  # noqa: E402
from tests.pg_cluster import running_cluster  # noqa: E402

PASSWORD = "bench"


def timed_cli(args: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of ``crmlab <args>`` in its own process."""
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "crmlab", *args]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if run.returncode != 0:
        sys.exit(run.stderr[-3000:])
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr).group(1))
    return seconds, peak_kb / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=144, help="copies of CDNOW (144: 10.0M transactions)")
    parser.add_argument("--model", action="append", choices=customer_models())
    args, _ = parser.parse_known_args()
    logging.basicConfig(level=logging.WARNING)
    import adbc_driver_postgresql.dbapi as pg

    work = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    base = ["project.tracking.enabled=false", f"project.output.dir={work / 'out'}",
            f"project.output.models_dir={work / 'models'}", "project.as_of=1998-06-30",
            "project.cleaning.max_date=1998-06-30"]
    cfg = load_config(REPO / "configs", base)
    models = args.model or list(customer_models())
    for name in models:
        pipeline_record(name).load("trainer")(cfg)
    tx = make_data(args.replicas, extra_columns=False, order="customer")
    tx.to_parquet(work / "tx.parquet", index=False)
    print(f"data: {len(tx):,} transactions, {tx['customer_id'].nunique():,} customers; models: {', '.join(models)}")
    with running_cluster(PASSWORD) as (host, port):
        uri = f"postgresql://crmlab@{host}:{port}/postgres"
        t0 = time.perf_counter()
        with pg.connect(uri) as conn, conn.cursor() as cur:
            cur.execute("CREATE SCHEMA crm")
            cur.adbc_ingest("tx", pa.Table.from_pandas(tx, preserve_index=False), mode="create", db_schema_name="crm")
            conn.commit()
        print(f"loaded into PostgreSQL (COPY) in {time.perf_counter() - t0:.1f} s")
        del tx
        model_args = [a for m in models for a in ("--model", m)]
        sets = [a for s in base for a in ("--set", s)]
        common = ["-c", str(REPO / "configs"), *sets]
        t_pg, m_pg = timed_cli([*common, "--set", f"project.data.transactions={{uri: '{uri}', table: crm.tx}}",
                                "score", "--source", "models", *model_args,
                                "--out", f"{uri}?table=marts.scores"], work)
        t_pq, m_pq = timed_cli([*common, "--set", f"project.data.transactions.path={work / 'tx.parquet'}",
                                "score", "--source", "models", *model_args, "--out", str(work / "scores.parquet")],
                               work)
        with pg.connect(uri) as conn, conn.cursor() as cur:
            cur.execute("SELECT * FROM marts.scores ORDER BY customer_id")
            from_pg = cur.fetch_arrow_table().to_pandas()
    from_pq = pd.read_parquet(work / "scores.parquet").sort_values("customer_id").reset_index(drop=True)
    equal = len(from_pg) == len(from_pq) and bool(
        (from_pg["customer_id"].to_numpy() == from_pq["customer_id"].to_numpy()).all()
        and all(np.allclose(from_pg[c], from_pq[c], rtol=1e-9, equal_nan=True)
                for c in from_pq.columns if pd.api.types.is_float_dtype(from_pq[c])))
    print(f"PostgreSQL -> PostgreSQL: {t_pg:6.1f} s, peak {m_pg:.2f} GB | Parquet -> Parquet: {t_pq:6.1f} s, "
          f"peak {m_pq:.2f} GB | x{t_pg / t_pq:.1f} time, x{m_pg / m_pq:.1f} memory | {len(from_pg):,} rows, "
          f"equal: {equal}")


if __name__ == "__main__":
    main()
