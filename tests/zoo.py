"""A zoo of user-shaped data sets (issue 14 item 10), each written as files under a folder.

None uses crmlab's canonical column names, so ``crmlab init`` has to map every one of them; none
uses the demo data's dates. Every generator is seeded and returns a :class:`ZooData` naming the
files, the number of customers a score table should hold, and what ``init`` should find.

a. ``b2b``: an order log of 30 business accounts over one year, with long gaps between orders;
b. ``telecom``: a subscription table with a churn label and no transactions (and names, e-mails and
   phone numbers under an export's headers);
c. ``shop``: a single-year web shop (order lines) plus a customer table;
d. ``marketplace``: two years, most buyers buy once;
e. ``sales``: a weekly sales table of three stores whose series start and end on different dates;
f. ``minimal``: only a customer, a date and an amount, under headers no dictionary knows;
g. ``chinese``: a GB18030 export with Chinese headers, dates like 2024年3月4日 and amounts like ¥1,234.50.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["ZOO", "ZooData", "make"]


@dataclass(frozen=True)
class ZooData:
    name: str
    files: list[Path]  # positional arguments of `crmlab init`
    customers: Path | None = None  # --customers
    n_customers: int | None = None  # rows of a score table (None: nothing to score)
    mapping: dict[str, dict[str, str]] = field(default_factory=dict)  # kind -> canonical -> header init must pick


def _orders(rng: np.random.Generator, ids: list[str], start: str, end: str, *, rate_days: np.ndarray,
            stop_share: float, amount: tuple[float, float]) -> pd.DataFrame:
    """Purchases of each customer as a renewal process from a first purchase, stopping for good
    after a geometric number of orders for ``stop_share`` of them."""
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    span = (t1 - t0).days
    rows = []
    for cid, rate in zip(ids, rate_days, strict=True):
        day = int(rng.integers(0, max(1, span * 0.7)))
        stops = rng.random() < stop_share
        left = int(rng.geometric(0.35)) if stops else 10**6
        mean_spend = rng.gamma(4.0, amount[0] / 4.0)
        while day <= span and left > 0:
            rows.append((cid, t0 + pd.Timedelta(days=day), round(float(rng.gamma(6.0, mean_spend / 6.0)) + amount[1], 2)))
            left -= 1
            day += max(1, int(rng.exponential(rate)))
    return pd.DataFrame(rows, columns=["cid", "ts", "amount"]).sort_values("ts", kind="stable").reset_index(drop=True)


def b2b(folder: Path, seed: int = 1) -> ZooData:
    rng = np.random.default_rng(seed)
    ids = [f"ACME-{i:03d}" for i in range(30)]
    tx = _orders(rng, ids, "2023-01-09", "2023-12-29", rate_days=rng.uniform(35, 120, 30), stop_share=0.3,
                 amount=(4000.0, 250.0))
    df = pd.DataFrame({"Invoice No": [f"INV{10000 + i}" for i in range(len(tx))], "Account ID": tx["cid"],
                       "Invoice Date": tx["ts"].dt.strftime("%Y-%m-%d"), "Net Amount": tx["amount"].map("{:.2f}".format),
                       "Sales Rep": rng.choice(["North", "South"], len(tx))})
    path = folder / "b2b_invoices.csv"
    df.to_csv(path, index=False)
    return ZooData("b2b", [path], n_customers=tx["cid"].nunique(),
                   mapping={"transactions": {"customer_id": "Account ID", "ts": "Invoice Date", "amount": "Net Amount",
                                             "order_id": "Invoice No"}})


def telecom(folder: Path, seed: int = 2) -> ZooData:
    rng = np.random.default_rng(seed)
    n = 600
    contract = rng.choice(["Month-to-month", "One year", "Two year"], n, p=[0.55, 0.25, 0.2])
    tenure = rng.integers(1, 72, n)
    charges = rng.uniform(18, 118, n).round(2)
    logit = -0.6 + 1.6 * (contract == "Month-to-month") - 0.035 * tenure + 0.012 * (charges - 65)
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    df = pd.DataFrame({"CustomerID": [f"{7000 + i}-TEL" for i in range(n)], "Gender": rng.choice(["Female", "Male"], n),
                       "SeniorCitizen": rng.integers(0, 2, n), "Tenure": tenure, "Contract": contract,
                       "MonthlyCharges": charges, "Exited": np.where(churn, "Yes", "No"),
                       # personal data under a real export's headers: never a feature, never in an artifact
                       "Full Name": [f"Person{i:04d} Zoo" for i in range(n)],
                       "E-mail Address": [f"person{i:04d}@example.org" for i in range(n)],
                       "Mobile Phone": [f"+44 7700 9{i:05d}" for i in range(n)]})
    path = folder / "telco_customers.csv"
    df.to_csv(path, index=False)
    return ZooData("telecom", [path], n_customers=n,
                   mapping={"customers": {"customer_id": "CustomerID", "churn": "Exited", "name": "Full Name",
                                          "email": "E-mail Address", "phone": "Mobile Phone"}})


def shop(folder: Path, seed: int = 3) -> ZooData:
    rng = np.random.default_rng(seed)
    n = 700
    ids = [str(12000 + i) for i in range(n)]
    tx = _orders(rng, ids, "2023-01-02", "2023-12-30", rate_days=rng.gamma(2.0, 40.0, n), stop_share=0.5,
                 amount=(35.0, 2.0))
    lines = tx.loc[tx.index.repeat(rng.integers(1, 4, len(tx)))].reset_index(names="order")
    qty = rng.integers(1, 4, len(lines))
    df = pd.DataFrame({"InvoiceNo": [f"5{o:05d}" for o in lines["order"]], "StockCode": rng.choice(
        [f"SKU{k:03d}" for k in range(40)], len(lines)), "Quantity": qty,
        "InvoiceDate": lines["ts"].dt.strftime("%m/%d/%Y %H:%M").str.replace("00:00", "10:30"),
        "Revenue": (lines["amount"] / 2).round(2), "CustomerID": lines["cid"],
        "Country": rng.choice(["United Kingdom", "France", "Germany"], len(lines), p=[0.8, 0.1, 0.1])})
    path = folder / "online_retail_2023.csv"
    df.to_csv(path, index=False)
    first = tx.groupby("cid")["ts"].min()
    cust = pd.DataFrame({"CustomerID": first.index, "SignupDate": (first - pd.to_timedelta(
        rng.integers(0, 60, len(first)), unit="D")).dt.strftime("%Y-%m-%d").to_numpy(),
        "Segment": rng.choice(["consumer", "trade"], len(first))})
    cpath = folder / "shop_customers.csv"
    cust.to_csv(cpath, index=False)
    return ZooData("shop", [path], customers=cpath, n_customers=len(cust),
                   mapping={"transactions": {"customer_id": "CustomerID", "ts": "InvoiceDate", "amount": "Revenue",
                                             "order_id": "InvoiceNo", "product_id": "StockCode", "quantity": "Quantity",
                                             "region": "Country"},
                            "customers": {"customer_id": "CustomerID", "signup_date": "SignupDate"}})


def marketplace(folder: Path, seed: int = 4) -> ZooData:
    rng = np.random.default_rng(seed)
    n = 2500
    ids = [f"u{rng.integers(10**6, 10**7)}_{i}" for i in range(n)]
    repeat = rng.random(n) < 0.15
    tx = _orders(rng, ids, "2022-07-01", "2024-06-30", rate_days=np.where(repeat, 60.0, 10**6), stop_share=0.0,
                 amount=(45.0, 5.0))
    df = pd.DataFrame({"order_id": [f"O{i:07d}" for i in range(len(tx))], "buyer_id": tx["cid"],
                       "order_date": tx["ts"].dt.strftime("%Y-%m-%d"), "total": tx["amount"],
                       "category": rng.choice(["home", "toys", "books", "garden"], len(tx))})
    path = folder / "marketplace_orders.csv"
    df.to_csv(path, index=False)
    return ZooData("marketplace", [path], n_customers=tx["cid"].nunique(),
                   mapping={"transactions": {"customer_id": "buyer_id", "ts": "order_date", "amount": "total",
                                             "order_id": "order_id", "category": "category"}})


def sales(folder: Path, seed: int = 5) -> ZooData:
    rng = np.random.default_rng(seed)
    spans = {"Store 1": ("2019-01-07", "2023-06-26", 5200.0), "Store 2": ("2020-06-01", "2024-03-25", 800.0),
             "Store 3": ("2018-01-01", "2022-12-26", 21000.0)}
    parts = []
    for store, (a, b, level) in spans.items():
        weeks = pd.date_range(a, b, freq="W-MON")
        season = 1 + 0.2 * np.sin(2 * np.pi * weeks.isocalendar().week.to_numpy() / 52)
        value = level * season * rng.lognormal(0, 0.08, len(weeks))
        parts.append(pd.DataFrame({"Store": store, "Week": weeks.strftime("%Y-%m-%d"), "Weekly_Sales": value.round(2)}))
    df = pd.concat(parts, ignore_index=True)
    path = folder / "store_weekly_sales.csv"
    df.to_csv(path, index=False)
    return ZooData("sales", [path], n_customers=None,
                   mapping={"sales": {"series_id": "Store", "period": "Week", "value": "Weekly_Sales"}})


def minimal(folder: Path, seed: int = 6) -> ZooData:
    rng = np.random.default_rng(seed)
    n = 400
    ids = [f"K{i:05d}" for i in range(n)]
    tx = _orders(rng, ids, "2022-03-01", "2024-02-29", rate_days=rng.gamma(2.0, 45.0, n), stop_share=0.4,
                 amount=(60.0, 3.0))
    df = pd.DataFrame({"Kunde": tx["cid"], "Datum": tx["ts"].dt.strftime("%Y-%m-%d"),
                       "Betrag": tx["amount"].map("{:.2f}".format)})
    path = folder / "export.csv"
    df.to_csv(path, index=False)
    return ZooData("minimal", [path], n_customers=tx["cid"].nunique(),
                   mapping={"transactions": {"customer_id": "Kunde", "ts": "Datum", "amount": "Betrag"}})


def chinese(folder: Path, seed: int = 7) -> ZooData:
    rng = np.random.default_rng(seed)
    n = 300
    ids = [f"VIP{i:05d}" for i in range(n)]
    tx = _orders(rng, ids, "2023-01-01", "2024-06-30", rate_days=rng.gamma(2.0, 40.0, n), stop_share=0.4,
                 amount=(900.0, 20.0))
    df = pd.DataFrame({"订单号": [f"DD{i:08d}" for i in range(len(tx))], "客户编号": tx["cid"],
                       "下单时间": [f"{t.year}年{t.month}月{t.day}日" for t in tx["ts"]],
                       "实付金额": [f"¥{a:,.2f}" for a in tx["amount"]],
                       "商品类别": rng.choice(["服装", "家电", "食品"], len(tx))})
    path = folder / "订单导出.csv"
    df.to_csv(path, index=False, encoding="gb18030")
    return ZooData("chinese", [path], n_customers=tx["cid"].nunique(),
                   mapping={"transactions": {"customer_id": "客户编号", "ts": "下单时间", "amount": "实付金额",
                                             "order_id": "订单号", "category": "商品类别"}})


ZOO: dict[str, Callable[..., ZooData]] = {"b2b": b2b, "telecom": telecom, "shop": shop, "marketplace": marketplace,
                                          "sales": sales, "minimal": minimal, "chinese": chinese}


def make(name: str, folder: Path) -> ZooData:
    """Write the data set ``name`` under ``folder`` (created) and describe it."""
    folder.mkdir(parents=True, exist_ok=True)
    return ZOO[name](folder)
