"""Benchmark: the KPI tables (by period, overall, cohorts, RFM segments, lifecycle stages) on CDNOW
replicated, against the code they replaced, in the same process.

    .venv/bin/python benchmarks/bench_kpis.py [--replicas 144] [--period M] [--no-before] [--cleaning]

The embedded CDNOW log (69,659 rows, 23,570 customers) is replicated ``--replicas`` times with
distinct customer ids (144: 10,030,896 rows, 3,394,080 customers), and
:func:`crmlab.kpis.compute_kpis` runs on it at as_of 1998-06-30 without the BG/NBD CLV
(``kpis.clv_source=none``; benchmarks/bench_clv.py times that model) and without CAC. Then the same
call of benchmarks/kpis_before.py (the module before issue 20's speed work) on the same data: its
wall time, the ratio, and whether every table is the same to the last bit. Also printed: the new
code's time per step and the process's peak RSS. Timings on a shared machine are noisy: read the
ratio. Target (issue 20): the KPIs of 10M rows in at most 8 s.

``--cleaning`` also writes the log to a Parquet file and times what ``crmlab kpis`` does before the
KPIs: loading, cleaning and fingerprinting it (:func:`crmlab.workflow.prepare_data`), which the KPIs
share with every other command.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from crmlab.config import load_config  # noqa: E402
from crmlab.data.io import load_cdnow  # noqa: E402
from crmlab.kpis import PurchaseLog, cohort_retention, compute_kpis, period_kpis, rfm_segments  # noqa: E402

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


def before_module():
    """benchmarks/kpis_before.py, the KPIs as they were computed before."""
    spec = importlib.util.spec_from_file_location("crmlab_kpis_before", Path(__file__).with_name("kpis_before.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def timed(label: str, fn):
    """Run fn; print its wall time and the process's CPU time over it (all threads; on a busy shared
    machine the CPU time moves less than the wall time)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{label:<36} {wall:8.2f} s  (CPU {cpu:6.2f} s)", flush=True)
    return out, wall, cpu


def same_tables(a, b) -> list[str]:
    """Names of the tables that differ (exact comparison)."""
    differ = []
    for name, df in a.tables().items():
        try:
            pd.testing.assert_frame_equal(df, b.tables()[name], check_exact=True)
        except (AssertionError, KeyError):
            differ.append(name)
    return differ


def cleaning(tx: pd.DataFrame, cfg_sets: list[str]) -> None:
    from crmlab.workflow import prepare_data

    with tempfile.TemporaryDirectory(prefix="bench-kpis-") as tmp:
        path = Path(tmp) / "tx.parquet"
        tx.to_parquet(path, index=False)
        cfg = load_config(None, [*cfg_sets, f"project.data.transactions.path={path}", f"project.as_of={AS_OF}",
                                 f"project.output.dir={Path(tmp) / 'out'}"])
        timed("load + clean + fingerprint (shared)", lambda: prepare_data(cfg.project))


def steps(tx: pd.DataFrame, period: str) -> None:
    print("steps (new code, one purchase log shared as compute_kpis shares it):")
    lg, _, _ = timed("  purchase log", lambda: PurchaseLog.from_transactions(tx, as_of=AS_OF, period=period))
    timed("  sort by customer and day", lg.by_customer)
    timed("  period_kpis", lambda: period_kpis(lg, as_of=AS_OF, period=period))
    timed("  cohort_retention", lambda: cohort_retention(lg, as_of=AS_OF, period=period))
    timed("  rfm_segments", lambda: rfm_segments(lg, as_of=AS_OF))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=144)
    ap.add_argument("--period", default="M", choices=["M", "W", "Q"])
    ap.add_argument("--no-before", action="store_true", help="skip the previous code (its run takes 30+ s)")
    ap.add_argument("--cleaning", action="store_true", help="also time loading and cleaning the log from Parquet")
    args, _ = ap.parse_known_args()
    tx, _, _ = timed(f"data x{args.replicas}", lambda: make_data(args.replicas))
    print(f"{len(tx):,} rows, {tx['customer_id'].nunique():,} customers")
    sets = ["kpis.clv_source=none", f"kpis.period={args.period}"]
    cfg = load_config(None, sets)

    steps(tx, args.period)

    result, new, new_cpu = timed("compute_kpis (everything), new", lambda: compute_kpis(cfg, tx, as_of=AS_OF))
    print(f"active customers {result.value('active_customers'):,.0f}, retention {result.value('retention_rate'):.4f}")
    if not args.no_before:
        old_result, old, old_cpu = timed("compute_kpis (everything), before", lambda: before_module().compute_kpis(
            cfg, tx, as_of=AS_OF))
        differ = same_tables(old_result, result)
        print(f"speed-up {old / new:.1f}x wall, {old_cpu / new_cpu:.1f}x CPU (before {old:.2f} s / new {new:.2f} s, "
              "same process and data); "
              + (f"tables that DIFFER: {differ}" if differ else f"all {len(result.tables())} tables identical"))
    if args.cleaning:
        cleaning(tx, sets)
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB:.2f} GB")


if __name__ == "__main__":
    main()
