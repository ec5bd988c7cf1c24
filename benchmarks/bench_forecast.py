"""Benchmark: the forecast pipeline's series building at scale and its backtest on CDNOW weekly revenue.

    .venv/bin/python benchmarks/bench_forecast.py [--replicas 144] [--origins 8] [--horizon 13]

1. Series: the embedded CDNOW log replicated ``--replicas`` times (144: 10,030,896 rows), each copy
   in one of 8 regions, turned into weekly revenue, orders and active customers per region
   (:func:`crmlab.forecast.series.transaction_panel`, as_of 1998-06-30).
2. Backtest: CDNOW weekly revenue (78 weeks from Monday 1996-12-30; the partial last week is dropped) with
   the default config: ``--origins`` rolling origins, ``--horizon`` weeks, season 52. Per model:
   wall time of the whole backtest, MASE, RMSSE, sMAPE, WAPE, bias, and the leave-one-origin-out
   coverage of its conformal 80%/95% intervals (what it would get if it were shipped).
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

from crmlab.config import ForecastConfig  # noqa: E402
from crmlab.data.io import load_cdnow  # noqa: E402
from crmlab.forecast.backtest import backtest, interval_coverage, leaderboard, origin_indices  # noqa: E402
from crmlab.forecast.pipeline import model_factories  # noqa: E402
from crmlab.forecast.series import transaction_panel  # noqa: E402

AS_OF = date(1998, 6, 30)
GB = 1024**3


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    print(f"{label:<40} {time.perf_counter() - start:8.2f} s", flush=True)
    return out


def make_data(replicas: int) -> pd.DataFrame:
    base = load_cdnow()
    n = len(base)
    rep = np.repeat(np.arange(replicas), n)
    ids = np.char.add(np.tile(base["customer_id"].to_numpy().astype(str), replicas), np.char.add("-", rep.astype(str)))
    return pd.DataFrame({
        "customer_id": pd.array(ids, dtype="str"),
        "ts": np.tile(base["ts"].to_numpy(), replicas),
        "amount": np.tile(base["amount"].to_numpy(), replicas),
        "region": pd.array(np.char.add("r", (rep % 8).astype(str)), dtype="str"),
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=144)
    ap.add_argument("--origins", type=int, default=8)
    ap.add_argument("--horizon", type=int, default=13)
    args, _ = ap.parse_known_args()

    tx = timed(f"data x{args.replicas}", lambda: make_data(args.replicas))
    print(f"{len(tx):,} rows")
    for target in ("revenue", "orders", "active_customers"):
        p = timed(f"weekly {target} by region", lambda t=target: transaction_panel(
            tx, target=t, freq="W", as_of=AS_OF, group_by="region"))
    print(f"{len(p.series_ids)} series x {p.n_periods} weeks")
    del tx

    fc = ForecastConfig(horizon=args.horizon, origins=args.origins)
    panel = transaction_panel(load_cdnow(), target="revenue", freq="W", as_of=AS_OF)
    origins = origin_indices(panel.n_periods, fc.horizon, fc.origins, fc.origin_step or max(1, fc.horizon // 4))
    print(f"\nCDNOW weekly revenue: {panel.n_periods} weeks {panel.periods[0].date()}..{panel.periods[-1].date()}, "
          f"origins at weeks {origins}, horizon {fc.horizon}")
    rows = []
    for name, factory in model_factories(fc, 52, seed=42).items():
        start = time.perf_counter()
        bt = backtest(panel, {name: factory}, horizon=fc.horizon, origins=origins, season_length=52)
        seconds = time.perf_counter() - start
        row = leaderboard(bt).iloc[0].to_dict()
        rows.append({**row, **interval_coverage(bt.errors, fc.horizon), "seconds": seconds})
    board = pd.DataFrame(rows).sort_values("mase")
    cols = ["model", "mase", "rmsse", "smape", "wape", "bias", "coverage_80", "coverage_95", "seconds"]
    print(board[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB:.2f} GB")


if __name__ == "__main__":
    main()
