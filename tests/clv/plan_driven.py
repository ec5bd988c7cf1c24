"""A customer base whose purchases BG/NBD cannot describe: the rate depends on the customer's plan
(an attribute of the customer table, which BG/NBD never sees) and changes with tenure.

Each customer signs up (and buys) at a uniform time over two years and then buys at Poisson rates
that switch after ``switch_weeks`` of tenure: ``basic`` customers buy often at first and then rarely
(0.5 then 0.03 a week), ``premium`` customers the other way round (0.1 then 0.6 a week). Nobody drops
out. A stationary-rate model extrapolates each customer's past rate; the truth is that young
customers are about to change pace in a direction their plan tells. Seeded; written as clean CSVs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["AS_OF", "RATES", "plan_driven_tables", "write_plan_driven"]

START = pd.Timestamp("2022-01-03")
WEEKS = 104
AS_OF = (START + pd.Timedelta(weeks=WEEKS) - pd.Timedelta(days=1)).date()
#: plan -> (weekly rate before the switch, after it)
RATES = {"basic": (0.5, 0.03), "premium": (0.1, 0.6)}


def plan_driven_tables(n: int = 3000, *, seed: int = 3, switch_weeks: float = 12.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(customers: customer_id, signup_date, plan; transactions: customer_id, ts, amount)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:05d}" for i in range(n)])
    plan = np.where(rng.random(n) < 0.5, "basic", "premium")
    signup = rng.uniform(0, WEEKS - 4, n)  # weeks after START
    early = np.where(plan == "basic", RATES["basic"][0], RATES["premium"][0])
    late = np.where(plan == "basic", RATES["basic"][1], RATES["premium"][1])
    rows_id, rows_t = [ids], [signup]
    for week in range(WEEKS):  # purchases in each calendar week, at the rate of the customer's tenure then
        lo = np.maximum(signup, week)
        hi = np.full(n, week + 1.0)
        span = np.clip(hi - lo, 0, None)
        tenure = lo - signup
        rate = np.where(tenure < switch_weeks, early, late)
        k = rng.poisson(rate * span)
        who = np.repeat(np.arange(n), k)
        rows_id.append(ids[who])
        rows_t.append(lo[who] + rng.random(who.size) * span[who])
    t = np.concatenate(rows_t)
    tx = pd.DataFrame({"customer_id": np.concatenate(rows_id),
                       "ts": START + pd.to_timedelta(np.round(t * 7 * 24 * 60), unit="min"),
                       "amount": np.round(rng.lognormal(np.log(30), 0.4, t.size), 2)})
    tx = tx[tx["ts"] < pd.Timestamp(AS_OF) + pd.Timedelta(days=1)]
    customers = pd.DataFrame({"customer_id": ids, "signup_date": (START + pd.to_timedelta(np.floor(signup * 7), unit="D")),
                              "plan": plan})
    return customers, tx.sort_values(["ts", "customer_id"], kind="stable").reset_index(drop=True)


def write_plan_driven(folder: str | Path, n: int = 3000, *, seed: int = 3) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    customers, tx = plan_driven_tables(n, seed=seed)
    paths = {"customers": folder / "customers.csv", "transactions": folder / "transactions.csv"}
    customers.assign(signup_date=customers["signup_date"].dt.strftime("%Y-%m-%d")).to_csv(paths["customers"], index=False)
    tx.assign(ts=tx["ts"].dt.strftime("%Y-%m-%d %H:%M:%S")).to_csv(paths["transactions"], index=False)
    return paths
