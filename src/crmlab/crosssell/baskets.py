"""Baskets and purchase histories as sparse matrices, from the clean transactions at explicit cut-offs.

A *basket* is one order: the purchase rows (``amount >= 0``) sharing ``customer_id`` and ``order_id``;
a purchase row without an order id (or every row, when the table has no ``order_id``) belongs to the
basket of its customer and calendar day. Its items are the distinct values of the item column
(``crosssell.item_column``: ``product_id`` or ``category``) on those rows; a row without an item is
left out. Returns (``amount < 0``) are not purchases.

A row belongs to the window ``(after, as_of]`` when its calendar day does (the features' convention:
``as_of`` is a whole day). :func:`basket_matrix` gives the baskets x items matrix and the customers x
items history of one window, both binary ``scipy.sparse`` CSR matrices; items are numbered in sorted
order of their text (or by a given vocabulary, other items then dropped), customers likewise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import polars as pl
import scipy.sparse as sp

from crmlab.errors import DataError
from crmlab.features.frames import as_of_date, day_expr, day_number, example_row, source_name, to_polars

__all__ = ["SEPARATOR", "Baskets", "basket_matrix", "binary_csr", "join_items", "purchase_lines", "split_items"]

#: What joins a customer's items in the ``items_bought`` text column the scorer reads.
SEPARATOR = "|"


@dataclass
class Baskets:
    """The baskets and histories of one window: ``matrix`` (baskets x items), ``history`` (customers x
    items), ``items`` and ``customers`` (the text of each column and row), ``basket_customer`` (each
    basket's row in ``customers``)."""

    matrix: sp.csr_matrix
    history: sp.csr_matrix
    items: np.ndarray
    customers: np.ndarray
    basket_customer: np.ndarray

    @property
    def n_baskets(self) -> int:
        return int(self.matrix.shape[0])


def binary_csr(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    """A 0/1 CSR matrix (float32) with a one at each (row, col), repeats counted once."""
    m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def purchase_lines(transactions: pd.DataFrame, *, item_column: str, as_of: date | str,
                   after: date | str | None = None) -> pl.DataFrame:
    """The purchase rows of ``(after, as_of]`` with an item: ``customer_id``, ``item`` (text), ``day``
    and ``basket`` (the order id, or null)."""
    table = "transactions"
    if item_column not in transactions.columns:
        raise DataError(f"no {item_column!r} column for crosssell.item_column", file=source_name(transactions, table),
                        column=item_column, expected=f"a product or category column; found {list(transactions.columns)}")
    cols = ["customer_id", "ts", "amount", item_column, *(["order_id"] if "order_id" in transactions.columns else [])]
    df = to_polars(transactions, cols, table)
    hi = day_number(as_of_date(as_of))
    lo = day_number(as_of_date(after)) if after is not None else None
    day = day_expr(df, "ts", transactions, table)
    keep = (pl.col("day") <= hi) & (pl.col("amount") >= 0) & pl.col("item").is_not_null()
    if lo is not None:
        keep &= pl.col("day") > lo
    order = pl.col("order_id") if "order_id" in cols else pl.lit(None, dtype=pl.String)
    out = df.lazy().select(customer_id=pl.col("customer_id"), item=pl.col(item_column).cast(pl.String), day=day,
                           order=order, amount=pl.col("amount")).filter(keep).drop("amount").collect()
    if out["item"].str.contains(SEPARATOR, literal=True).any():
        row = int(np.flatnonzero(transactions[item_column].astype("string").str.contains(SEPARATOR, regex=False)
                                 .fillna(False).to_numpy())[0])
        raise DataError(f"an item holds {SEPARATOR!r}, which joins a customer's items for scoring",
                        file=source_name(transactions, table), column=item_column,
                        expected=f"items without {SEPARATOR!r}", example=example_row(transactions, row))
    return out


def _codes(values: pl.Series, vocabulary: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Each value's position in the sorted vocabulary (-1: not in it) and the vocabulary."""
    if vocabulary is None:
        vocabulary = np.asarray(values.unique().sort().to_list(), dtype=object)
    lookup = pl.DataFrame({"v": pl.Series(list(vocabulary), dtype=pl.String),
                           "code": np.arange(len(vocabulary), dtype=np.int64)})
    codes = (pl.DataFrame({"v": values}).join(lookup, on="v", how="left", maintain_order="left")["code"]
             .fill_null(-1).to_numpy())
    return codes, vocabulary


def basket_matrix(transactions: pd.DataFrame, *, item_column: str, as_of: date | str, after: date | str | None = None,
                  items: np.ndarray | None = None, customers: np.ndarray | None = None) -> Baskets:
    """The baskets and customer histories of the purchase rows in ``(after, as_of]`` (module doc).
    ``items`` / ``customers``: fixed vocabularies (rows outside them are dropped); default: the window's own."""
    lines = purchase_lines(transactions, item_column=item_column, as_of=as_of, after=after)
    item, items = _codes(lines["item"], items)
    cust, customers = _codes(lines["customer_id"], customers)
    keep = (item >= 0) & (cust >= 0)
    lines, item, cust = lines.filter(pl.Series(keep)), item[keep], cust[keep]
    # an order is one basket; a row without an order id joins its customer's basket of the day
    key = lines.select(c=pl.Series(cust), o=pl.col("order"),
                       d=pl.when(pl.col("order").is_null()).then(pl.col("day")).otherwise(-1))
    basket = key.select(pl.struct("c", "o", "d").rank("dense")).to_series().to_numpy().astype(np.int64) - 1
    n_baskets = int(basket.max()) + 1 if len(basket) else 0
    basket_customer = np.zeros(n_baskets, dtype=np.int64)
    basket_customer[basket] = cust
    return Baskets(
        matrix=binary_csr(basket, item, (n_baskets, len(items))),
        history=binary_csr(cust, item, (len(customers), len(items))),
        items=np.asarray(items, dtype=object), customers=np.asarray(customers, dtype=object),
        basket_customer=basket_customer,
    )


def join_items(history: sp.csr_matrix, items: np.ndarray) -> list[str]:
    """Each row's items as one text, joined by :data:`SEPARATOR` (the scorer's ``items_bought``)."""
    history = history.tocsr()
    names = np.asarray(items, dtype=object)
    return [SEPARATOR.join(names[history.indices[a:b]]) for a, b in zip(history.indptr[:-1], history.indptr[1:],
                                                                         strict=True)]


def split_items(texts: pd.Series, items: np.ndarray) -> sp.csr_matrix:
    """The inverse of :func:`join_items` on a vocabulary: rows x items, 0/1; unknown items are ignored,
    an empty or missing text is no history."""
    s = pl.from_pandas(pd.Series(texts, dtype="string").reset_index(drop=True)).alias("t")
    exploded = (pl.DataFrame({"t": s, "row": np.arange(len(s), dtype=np.int64)})
                .with_columns(pl.col("t").str.split(SEPARATOR)).explode("t")
                .filter(pl.col("t").is_not_null() & (pl.col("t") != "")))
    code, _ = _codes(exploded["t"], np.asarray(items, dtype=object))
    rows = exploded["row"].to_numpy()
    keep = code >= 0
    return binary_csr(rows[keep], code[keep], (len(s), len(items)))
