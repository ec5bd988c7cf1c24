"""A tiny hand-made CRM for the KPI and report tests: 6 customers, 12 transactions over January to
March 2024 (plus one in April, after the cut-off), acquisition costs, marketing spend and a funnel.
The expected figures are worked out by hand in tests/test_kpis.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

AS_OF = date(2024, 3, 31)

# customer, date, amount (negative = return); no order_id, so every purchase row is an order
TRANSACTIONS = [
    ("A", "2024-01-05", 100.0), ("A", "2024-02-10", 50.0), ("A", "2024-03-15", 30.0),
    ("B", "2024-01-20", 200.0), ("B", "2024-01-25", -20.0),
    ("C", "2024-02-03", 80.0), ("C", "2024-02-20", 40.0), ("C", "2024-03-01", 60.0),
    ("D", "2024-03-10", 120.0),
    ("E", "2024-01-30", 60.0), ("E", "2024-03-28", 90.0),
    ("E", "2024-04-02", 999.0),  # after as_of: must change nothing
]
# F signed up (and cost 25) but never bought
CUSTOMERS = {
    "customer_id": ["A", "B", "C", "D", "E", "F"],
    "acquisition_cost": [30.0, 50.0, 20.0, 40.0, 10.0, 25.0],
    "acquisition_channel": ["search", "social", "search", "social", "search", "search"],
    "plan": ["gold", "basic", "gold", "basic", "basic", "gold"],
}
MARKETING_SPEND = {
    "period": ["2024-01", "2024-01", "2024-02", "2024-03", "2024-03", "2024-04"],
    "channel": ["search", "social", "search", "social", "search", "search"],
    "spend": [60.0, 30.0, 40.0, 50.0, 30.0, 500.0],  # April is after as_of
}
# one row per lead (its furthest stage) or per stage reached (L7, L8); L5 and L8 were lost
LEADS = {
    "lead_id": ["L1", "L2", "L3", "L4", "L5", "L6", "L7", "L7", "L7", "L8", "L8", "L8"],
    "stage": ["won", "opportunity", "qualified", "lead", "lost", "Qualified",
              "lead", "qualified", "opportunity", "lead", "qualified", "lost"],
}


def transactions() -> pd.DataFrame:
    df = pd.DataFrame(TRANSACTIONS, columns=["customer_id", "ts", "amount"])
    return df.assign(ts=pd.to_datetime(df["ts"]))


def customers() -> pd.DataFrame:
    return pd.DataFrame(CUSTOMERS)


def write_hand_data(folder: Path, *, spend: bool = True, leads: bool = True) -> list[str]:
    """Write the tables as CSV files under ``folder`` and return the ``--set`` overrides that use them."""
    folder.mkdir(parents=True, exist_ok=True)
    transactions().assign(ts=lambda d: d["ts"].dt.strftime("%Y-%m-%d")).to_csv(folder / "tx.csv", index=False)
    customers().to_csv(folder / "customers.csv", index=False)
    sets = [f"project.data.transactions.path={folder / 'tx.csv'}",
            f"project.data.customers.path={folder / 'customers.csv'}",
            f"project.as_of={AS_OF}"]
    if spend:
        pd.DataFrame(MARKETING_SPEND).to_csv(folder / "spend.csv", index=False)
        sets.append(f"project.data.marketing_spend.path={folder / 'spend.csv'}")
    if leads:
        pd.DataFrame(LEADS).to_csv(folder / "leads.csv", index=False)
        sets.append(f"project.data.leads.path={folder / 'leads.csv'}")
    return sets
