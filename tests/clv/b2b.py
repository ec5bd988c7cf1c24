"""A small B2B order log a new user might bring: a few dozen accounts over one year, long gaps
between orders, some accounts that ordered once, large and uneven order values, the user's own
column names. Seeded; written as CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["B2B_COLUMNS", "b2b_orders", "write_b2b_orders"]

#: canonical name -> the log's own column name
B2B_COLUMNS = {"customer_id": "Account", "ts": "Order Date", "amount": "Net Amount"}


def b2b_orders(n_accounts: int = 30, *, seed: int = 7, year: int = 2011) -> pd.DataFrame:
    """One row per order: ``Account`` (ACC-0001...), ``Order Date`` (ISO date), ``Net Amount``.

    Every account keeps buying for the whole year (no dropout at all), at its own slow rate (an order
    every one to five months on average); about a third order once only; order values are
    lognormal around a few thousand with a heavy tail."""
    rng = np.random.default_rng(seed)
    start, end = pd.Timestamp(f"{year}-01-01"), pd.Timestamp(f"{year}-12-31")
    rows = []
    for i in range(n_accounts):
        account = f"ACC-{i + 1:04d}"
        first = start + pd.Timedelta(days=int(rng.integers(0, 240)))
        one_time = rng.random() < 0.33
        gap_days = rng.uniform(30, 150)  # mean days between orders of this account
        level = rng.lognormal(np.log(3000), 0.8)  # the account's typical order value
        t = first
        while t <= end:
            rows.append((account, t.date().isoformat(), round(float(level * rng.lognormal(0, 0.5)), 2)))
            if one_time:
                break
            t = t + pd.Timedelta(days=max(1, int(rng.exponential(gap_days))))
    df = pd.DataFrame(rows, columns=list(B2B_COLUMNS.values()))
    return df.sort_values(["Order Date", "Account"], kind="stable").reset_index(drop=True)


def write_b2b_orders(path: str | Path, n_accounts: int = 30, *, seed: int = 7) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    b2b_orders(n_accounts, seed=seed).to_csv(path, index=False)
    return path
