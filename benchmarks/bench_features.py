"""Benchmark: crmlab.features.build_features on CDNOW replicated to ~10 million transactions.

    .venv/bin/python benchmarks/bench_features.py [--replicas 144] [--extra-columns]
        [--order file|time] [--uuid-ids] [--repeat 1] [--no-lifetimes]

The embedded CDNOW log (69,659 rows, 23,570 customers) is replicated ``--replicas`` times with
distinct customer ids (144 replicas: 10,030,896 rows, 3,394,080 customers). ``--extra-columns`` adds
``category`` and ``channel`` text columns; ``--order time`` sorts the rows by date with customers
shuffled within a day, like a CRM export (the default keeps the file's order: by customer, then
date). The call is timed end to end, pandas in and pandas out, as_of 1997-09-30.

Memory: the process's peak RSS (``resource.getrusage``) and the increase over the RSS measured just
before the call. On Linux the kernel's peak counter is reset before the call (``/proc/self/clear_refs``),
so the peak is the call's own, not the data generation's.

For reference it then times lifetimes' ``summary_data_from_transaction_data`` (RFM only) on the same
data, measured the same way.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from crmlab.data.io import load_cdnow  # noqa: E402
from crmlab.features import build_features  # noqa: E402

AS_OF = "1997-09-30"
GB = 1024**3


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False when not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    """Peak RSS: VmHWM (honours a reset), else getrusage's ru_maxrss (KiB on Linux)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def long_ids(customer_id: pd.Series, seed: int) -> pd.Series:
    """Replace each customer id by a random UUID-like text id (36 characters)."""
    codes, uniques = pd.factorize(customer_id)
    rng = np.random.default_rng(seed)
    hexes = [f"{a:016x}{b:016x}" for a, b in rng.integers(0, 2**63, (len(uniques), 2), dtype=np.int64)]
    uuids = np.array([f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}" for h in hexes], dtype=object)
    return pd.Series(uuids[codes], dtype="str")


def make_data(replicas: int, *, extra_columns: bool, order: str, uuid_ids: bool = False, seed: int = 0) -> pd.DataFrame:
    base = load_cdnow()
    ids = pa.array(base["customer_id"].to_numpy(dtype=object), type=pa.string())
    width = len(str(replicas - 1))
    chunks = [pc.binary_join_element_wise(pa.scalar(f"{r:0{width}d}-"), ids, "") for r in range(replicas)]
    customer_id = pd.Series(pa.concat_arrays(chunks).to_pandas(), dtype="str")
    del chunks
    df = pd.DataFrame(
        {
            "customer_id": customer_id,
            "ts": np.tile(base["ts"].to_numpy(), replicas),
            "amount": np.tile(base["amount"].to_numpy(), replicas),
            "quantity": np.tile(base["quantity"].to_numpy(), replicas),
        }
    )
    del customer_id
    rng = np.random.default_rng(seed)
    if uuid_ids:
        df["customer_id"] = long_ids(df["customer_id"], seed)
    if extra_columns:
        cats = np.array(["classical", "country", "jazz", "pop", "rock", "soundtrack", "world", "other"])
        chans = np.array(["web", "phone", "mail", "store"])
        df["category"] = pd.Series(cats[rng.integers(0, len(cats), len(df))], dtype="str")
        df["channel"] = pd.Series(chans[rng.choice(len(chans), len(df), p=[0.6, 0.2, 0.15, 0.05])], dtype="str")
    if order == "time":
        perm = np.lexsort((rng.random(len(df)), df["ts"].to_numpy()))
        df = df.take(perm).reset_index(drop=True)
    return df


def measure(label: str, fn) -> tuple[float, object]:
    gc.collect()
    before = rss_bytes()
    exact = reset_peak()
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    peak = peak_bytes()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"{label}: {wall:6.2f} s | peak RSS {peak / GB:.2f} GB "
        f"(increase {(peak - before) / GB:.2f} GB over {before / GB:.2f} GB before the call"
        f"{'' if exact else '; peak counter not resettable, process-wide'}) | ru_maxrss {maxrss / GB:.2f} GB",
        flush=True,
    )
    return wall, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=144)
    ap.add_argument("--extra-columns", action="store_true", help="add category and channel columns")
    ap.add_argument("--order", choices=("file", "time"), default="file")
    ap.add_argument("--uuid-ids", action="store_true", help="36-character random ids instead of CDNOW-like ones")
    ap.add_argument("--repeat", type=int, default=1, help="time build_features this many times")
    ap.add_argument("--no-lifetimes", action="store_true", help="skip the lifetimes reference")
    args = ap.parse_args()

    t0 = time.perf_counter()
    tx = make_data(args.replicas, extra_columns=args.extra_columns, order=args.order, uuid_ids=args.uuid_ids)
    print(
        f"data: {len(tx):,} transactions, {args.replicas * 23_570:,} customers, columns {list(tx.columns)}, "
        f"order={args.order}{', UUID-like ids' if args.uuid_ids else ''}, made in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs",
        flush=True,
    )
    feats = None
    for i in range(args.repeat):
        del feats
        feats = None
        gc.collect()
        _, feats = measure(f"build_features #{i + 1}", lambda: build_features(tx, as_of=AS_OF, time_unit="W"))
    print(f"features: {feats.shape[0]:,} customers x {feats.shape[1]} columns, "
          f"{feats.memory_usage(deep=False).sum() / GB:.2f} GB", flush=True)
    del feats
    gc.collect()

    if not args.no_lifetimes:
        from lifetimes.utils import summary_data_from_transaction_data

        try:
            measure(
                "lifetimes summary_data_from_transaction_data (RFM only)",
                lambda: summary_data_from_transaction_data(
                    tx, "customer_id", "ts", monetary_value_col="amount", observation_period_end=AS_OF, freq="D"
                ),
            )
        except Exception as exc:  # noqa: BLE001 - a reference only
            print(f"lifetimes reference failed: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
