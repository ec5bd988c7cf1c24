"""Benchmark the lifecycle stages on the CDNOW log replicated to 10 million transactions (3.4 million customers).

Times the two passes ``crmlab score`` and ``crmlab kpis`` make: the base's typical gap (one polars group-by
over the log) and the stage of every customer (:func:`crmlab.lifecycle.lifecycle_stages`: the past rows
sorted by customer and day once, every input a numpy segment reduction, the rules one ``np.select``).
Printed: wall time of each, customers per stage.

    .venv/bin/python benchmarks/bench_lifecycle.py [--replicas 144] [--order time|customer]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import GB, make_data, peak_bytes, reset_peak  # noqa: E402

from crmlab.config import LifecycleConfig  # noqa: E402
from crmlab.lifecycle import lifecycle_stages, typical_gap_days  # noqa: E402

AS_OF = "1998-06-30"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=144, help="copies of CDNOW (144: 10.0M transactions)")
    parser.add_argument("--order", choices=("time", "customer"), default="time",
                        help="row order of the log (time: as an export comes; customer: already grouped)")
    args, _ = parser.parse_known_args()
    t0 = time.perf_counter()
    tx = make_data(args.replicas, extra_columns=False, order=args.order)
    print(f"data: {len(tx):,} transactions, {tx['customer_id'].nunique():,} customers, {args.order} order "
          f"(made in {time.perf_counter() - t0:.1f} s)")
    reset_peak()
    t0 = time.perf_counter()
    gap = typical_gap_days(tx, as_of=AS_OF)
    t_gap = time.perf_counter() - t0
    t0 = time.perf_counter()
    stages = lifecycle_stages(tx, as_of=AS_OF, cfg=LifecycleConfig(), typical_gap=gap)
    t_stages = time.perf_counter() - t0
    counts = stages["lifecycle_stage"].value_counts()
    print(f"typical gap {gap:.1f} days: {t_gap:.2f} s | stages of {len(stages):,} customers: {t_stages:.2f} s | "
          f"peak RSS {peak_bytes() / GB:.2f} GB")
    print(", ".join(f"{s} {n:,}" for s, n in counts.items()))


if __name__ == "__main__":
    main()
