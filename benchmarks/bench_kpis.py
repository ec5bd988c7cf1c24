"""Benchmark: the KPI tables (by period, overall, cohorts, RFM segments) on CDNOW replicated.

    .venv/bin/python benchmarks/bench_kpis.py [--replicas 144] [--period M]

The embedded CDNOW log (69,659 rows, 23,570 customers) is replicated ``--replicas`` times with
distinct customer ids (144: 10,030,896 rows, 3,394,080 customers), and
:func:`crmlab.kpis.compute_kpis` runs on it at as_of 1998-06-30 without the BG/NBD CLV
(``kpis.clv_source=none``; benchmarks/bench_clv.py times that model) and without CAC. Prints wall
time per step and the process's peak RSS (``resource.getrusage``).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from crmlab.config import load_config  # noqa: E402
from crmlab.data.io import load_cdnow  # noqa: E402
from crmlab.kpis import cohort_retention, compute_kpis, period_kpis, rfm_segments  # noqa: E402

AS_OF = date(1998, 6, 30)
GB = 1024**3


def make_data(replicas: int) -> pd.DataFrame:
    base = load_cdnow()
    n = len(base)
    ids = base["customer_id"].to_numpy().astype(str)
    rep = np.repeat(np.arange(replicas), n)
    return pd.DataFrame({
        "customer_id": pd.array(np.char.add(np.tile(ids, replicas), np.char.add("-", rep.astype(str))), dtype="str"),
        "ts": np.tile(base["ts"].to_numpy(), replicas),
        "amount": np.tile(base["amount"].to_numpy(), replicas),
    })


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    print(f"{label:<32} {time.perf_counter() - start:8.2f} s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=144)
    ap.add_argument("--period", default="M", choices=["M", "W", "Q"])
    args, _ = ap.parse_known_args()
    tx = timed(f"data x{args.replicas}", lambda: make_data(args.replicas))
    print(f"{len(tx):,} rows, {tx['customer_id'].nunique():,} customers")
    cfg = load_config(None, ["kpis.clv_source=none", f"kpis.period={args.period}"])
    timed("period_kpis", lambda: period_kpis(tx, as_of=AS_OF, period=args.period))
    timed("cohort_retention", lambda: cohort_retention(tx, as_of=AS_OF))
    timed("rfm_segments", lambda: rfm_segments(tx, as_of=AS_OF))
    result = timed("compute_kpis (everything)", lambda: compute_kpis(cfg, tx, as_of=AS_OF))
    print(f"active customers {result.value('active_customers'):,.0f}, retention {result.value('retention_rate'):.4f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB:.2f} GB")


if __name__ == "__main__":
    main()
