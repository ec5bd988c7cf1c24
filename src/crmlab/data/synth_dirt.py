"""Dirt on the synthetic tables, each dirty row labelled with its kind (the ground truth the cleaning tests check against): duplicates, broken copies, unparseable and future dates, other formats, missing values."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from crmlab.data.synth_base import (
    ACQUISITION_CHANNELS,
    CLEAN_LABEL,
    DATE_FORMATS,
    PHONE_STYLES,
    PLANS,
    TABLE_KINDS,
    SynthParams,
    assign_kinds,
    draw_acquisition_cost,
    email_variant,
    format_amounts,
    format_dates,
    format_phone,
    int_text,
    numbered_ids,
    pick_some,
    seconds_to_datetime,
)


def _date_variant_rates(params: SynthParams, main: str) -> dict[str, float]:
    kinds = [k for k in DATE_FORMATS if k != main]
    return {k: params.date_format_rate / len(kinds) for k in kinds}


def _unparseable_dates(rng: np.random.Generator, seconds: np.ndarray) -> np.ndarray:
    years = pd.DatetimeIndex(seconds_to_datetime(seconds)).year.to_numpy()
    words = rng.random(seconds.size) < 0.5
    return np.array(["not a date" if w else f"{y}-13-45" for w, y in zip(words.tolist(), years.tolist(), strict=True)],
                    dtype=object)


def _future_dates(seconds: np.ndarray) -> np.ndarray:
    ts = pd.DatetimeIndex(seconds_to_datetime(seconds))
    return np.array([
        f"2099-{m:02d}-{min(d, 28):02d} {h:02d}:{mi:02d}:{s:02d}"
        for m, d, h, mi, s in zip(ts.month, ts.day, ts.hour, ts.minute, ts.second, strict=True)
    ], dtype=object)


def text_series(values: np.ndarray) -> pd.Series:
    """A pandas ``str`` column (what ``read_csv(dtype=str)`` gives) from an object array, NaN -> missing."""
    return pd.Series(pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True), dtype="str")


def _frame(columns: Mapping[str, np.ndarray], order: np.ndarray) -> pd.DataFrame:
    """Text columns, rows taken in ``order``."""
    take = pa.array(np.asarray(order, dtype=np.int64))
    return pd.DataFrame({
        k: pd.Series(pa.array(np.asarray(v, dtype=object), type=pa.string(), from_pandas=True).take(take),
                     dtype="str")
        for k, v in columns.items()
    })


def _count(table: str, labels: np.ndarray, extra: Mapping[str, int], counts: dict[str, dict[str, int]]) -> None:
    found = pd.Series(labels).value_counts().to_dict()
    counts[table] = {k: int(found.get(k, 0)) + int(extra.get(k, 0)) for k in TABLE_KINDS[table]}


def _broken_copies(rng: np.random.Generator, cols: Mapping[str, np.ndarray], ts_s: np.ndarray, pool: np.ndarray,
                   base: int, rates: Mapping[str, float]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Copies of rows of ``pool`` (``round(rate * base)`` per kind) with one field broken: the date
    ('date_unparseable', 'date_future'), the amount ('amount_unparseable') or the customer id
    ('empty_customer_id'). Returns the copied columns and each copy's kind."""
    src_parts, label_parts = [], []
    for kind, rate in rates.items():
        src = pick_some(rng, pool, int(round(rate * base)))
        src_parts.append(src)
        label_parts.append(np.full(src.size, kind, dtype=object))
    src = np.concatenate(src_parts)
    labels = np.concatenate(label_parts)
    extra = {k: v[src].copy() for k, v in cols.items()}
    rows = labels == "date_unparseable"
    extra["ts"][rows] = _unparseable_dates(rng, ts_s[src[rows]])
    rows = labels == "date_future"
    extra["ts"][rows] = _future_dates(ts_s[src[rows]])
    if "amount_unparseable" in rates:
        rows = np.flatnonzero(labels == "amount_unparseable")
        word = (rng.random(rows.size) < 0.5).tolist()
        extra["amount"][rows] = ["abc" if w else a.replace(".", "..") for w, a in
                                 zip(word, extra["amount"][rows].tolist(), strict=True)]
    extra["customer_id"][labels == "empty_customer_id"] = np.nan
    return extra, labels


def dirty_transactions(rng: np.random.Generator, params: SynthParams, tx: Mapping[str, np.ndarray],
                        uses_dup: np.ndarray, n_purch: int, counts: dict[str, dict[str, int]]) -> pd.DataFrame:
    m = tx["order_id"].size
    ts_s, amount = tx["ts_s"], tx["amount"]
    cols: dict[str, np.ndarray] = {
        "order_id": tx["order_id"].copy(),
        "customer_id": tx["raw_customer_id"].copy(),
        "ts": format_dates(ts_s, "date_iso_datetime"),
        "amount": format_amounts(amount),
        "quantity": int_text(tx["quantity"]),
        "category": tx["category"].copy(),
        "channel": tx["channel"].copy(),
        **({"product_id": tx["product_id"].copy()} if "product_id" in tx else {}),
    }
    labels = np.full(m, CLEAN_LABEL, dtype=object)
    labels[n_purch:] = "return"
    purchases = np.arange(n_purch)
    amount_rates = {k: params.amount_format_rate / 3 for k in ("amount_dollar", "amount_usd", "amount_padded")}
    assign_kinds(rng, labels, purchases, {
        **_date_variant_rates(params, "date_iso_datetime"), **amount_rates,
        "category_variant": params.category_variant_rate, "missing_category": params.missing_category_rate,
        "missing_quantity": params.missing_quantity_rate, "missing_channel": params.missing_channel_rate,
    })
    big = np.flatnonzero((labels[:n_purch] == CLEAN_LABEL) & (amount[:n_purch] >= 1000))
    labels[big[rng.random(big.size) < 0.5]] = "amount_thousands"

    for kind in DATE_FORMATS:
        rows = np.flatnonzero(labels == kind)
        cols["ts"][rows] = format_dates(ts_s[rows], kind)
    fmt = {
        "amount_dollar": lambda x: f"${x:,.2f}",
        "amount_thousands": lambda x: f"{x:,.2f}",
        "amount_usd": lambda x: f"USD {x:.2f}",
        "amount_padded": lambda x: " " + (f"{x:.2f}".rstrip("0").rstrip(".")) + " ",
    }
    for kind, f in fmt.items():
        rows = np.flatnonzero(labels == kind)
        cols["amount"][rows] = [f(x) for x in amount[rows].tolist()]
    rows = np.flatnonzero(labels == "category_variant")
    style = rng.integers(0, 3, rows.size)
    cols["category"][rows] = [
        (c.capitalize(), f" {c} ", c.upper())[i]
        for c, i in zip(cols["category"][rows].tolist(), style.tolist(), strict=True)
    ]
    for col in ("category", "quantity", "channel"):
        cols[col][labels == f"missing_{col}"] = np.nan

    # extra rows: copies of untouched purchases (true id) with one field broken, under new order ids
    pool = np.flatnonzero((labels[:n_purch] == CLEAN_LABEL) & ~uses_dup[:n_purch])
    extra, extra_labels = _broken_copies(rng, cols, ts_s, pool, n_purch, {
        "date_unparseable": params.unparseable_date_rate, "date_future": params.future_date_rate,
        "amount_unparseable": params.unparseable_amount_rate, "empty_customer_id": params.empty_customer_id_rate,
    })
    width = len(cols["order_id"][0]) - 1
    extra["order_id"] = numbered_ids("O", np.arange(n_purch + 1, n_purch + 1 + extra_labels.size), width)

    # exact repeats of untouched purchases
    dup_src = pick_some(rng, pool, int(round(params.exact_duplicate_rate * m)))
    all_cols = {k: np.concatenate([cols[k], extra[k], cols[k][dup_src]]) for k in cols}
    all_labels = np.concatenate([labels, extra_labels, np.full(dup_src.size, "exact_duplicate", dtype=object)])
    order = rng.permutation(all_labels.size)
    _count("transactions", all_labels, {"duplicate_id": int(uses_dup.sum())}, counts)
    return _frame(all_cols, order)


def dirty_customers(rng: np.random.Generator, params: SynthParams, counts: dict[str, dict[str, int]], *,
                     true: dict[str, np.ndarray], dup: dict[str, np.ndarray]) -> pd.DataFrame:
    n = true["customer_id"].size
    cols: dict[str, np.ndarray] = {
        "customer_id": true["customer_id"].astype(object),
        "name": true["name"].astype(object),
        "email": true["email"].astype(object),
        "phone": np.array([format_phone(d, 0) for d in true["phone"].tolist()], dtype=object),
        "signup_date": format_dates(true["signup_s"], "date_iso_date"),
        "age": int_text(true["age"]),
        "gender": true["gender"].astype(object),
        "region": true["region"].astype(object),
        "plan": true["plan"].astype(object),
        "acquisition_channel": true["acquisition_channel"].astype(object),
        "acquisition_cost": format_amounts(true["acquisition_cost"]),
    }
    labels = np.full(n, CLEAN_LABEL, dtype=object)
    assign_kinds(rng, labels, np.arange(n), {
        **_date_variant_rates(params, "date_iso_date"), "missing_age": params.missing_age_rate,
        "missing_gender": params.missing_gender_rate, "missing_region": params.missing_region_rate,
    })
    for kind in DATE_FORMATS:
        rows = np.flatnonzero(labels == kind)
        cols["signup_date"][rows] = format_dates(true["signup_s"][rows], kind)
    for col in ("age", "gender", "region"):
        cols[col][labels == f"missing_{col}"] = np.nan

    # duplicate persons: same name, email in other case/spacing, phone in another format, later signup
    who = dup["owner"]
    k = who.size
    email_style = rng.integers(0, 4, k).tolist()
    phone_style = rng.integers(1, len(PHONE_STYLES), k).tolist()  # never the main style 0
    dup_acq = rng.integers(0, len(ACQUISITION_CHANNELS), k)
    dup_cols = {
        "customer_id": dup["customer_id"].astype(object),
        "name": true["name"][who].astype(object),
        "email": np.array([email_variant(e, i) for e, i in zip(true["email"][who].tolist(), email_style, strict=True)],
                          dtype=object),
        "phone": np.array([format_phone(d, i) for d, i in zip(true["phone"][who].tolist(), phone_style, strict=True)],
                          dtype=object),
        "signup_date": format_dates(dup["signup_s"], "date_iso_date"),
        "age": int_text(true["age"][who]),
        "gender": true["gender"][who].astype(object),
        "region": true["region"][who].astype(object),
        "plan": np.array(PLANS, dtype=object)[rng.integers(0, len(PLANS), k)],
        "acquisition_channel": np.array(ACQUISITION_CHANNELS, dtype=object)[dup_acq],
        "acquisition_cost": format_amounts(draw_acquisition_cost(rng, dup_acq)),
    }
    pool = np.flatnonzero(labels == CLEAN_LABEL)
    rep = pick_some(rng, pool, int(round(params.exact_duplicate_rate * n)))
    all_cols = {c: np.concatenate([cols[c], dup_cols[c], cols[c][rep]]) for c in cols}
    all_labels = np.concatenate([labels, np.full(k, "duplicate_person", dtype=object),
                                 np.full(rep.size, "exact_duplicate", dtype=object)])
    _count("customers", all_labels, {}, counts)
    return _frame(all_cols, rng.permutation(all_labels.size))


def _format_values(value: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Interaction values as text: counts and severities as integers, ticket hours with one decimal."""
    out = np.full(value.size, np.nan, dtype=object)
    whole = ~np.isnan(value) & (kind != "support_ticket")
    out[whole] = int_text(value[whole])
    hours = ~np.isnan(value) & (kind == "support_ticket")
    out[hours] = [f"{x:.1f}" for x in value[hours].tolist()]
    return out


def dirty_interactions(rng: np.random.Generator, params: SynthParams, ev: Mapping[str, np.ndarray],
                        uses_dup: np.ndarray, counts: dict[str, dict[str, int]]) -> pd.DataFrame:
    m = ev["ts_s"].size
    ts_s = ev["ts_s"]
    cols: dict[str, np.ndarray] = {
        "customer_id": ev["raw_customer_id"].copy(),
        "ts": format_dates(ts_s, "date_iso_datetime"),
        "kind": ev["kind"].copy(),
        "value": _format_values(ev["value"], ev["kind"]),
        **({"text": ev["text"].copy()} if "text" in ev else {}),
    }
    labels = np.full(m, CLEAN_LABEL, dtype=object)
    assign_kinds(rng, labels, np.arange(m), _date_variant_rates(params, "date_iso_datetime"))
    for kind in DATE_FORMATS:
        rows = np.flatnonzero(labels == kind)
        cols["ts"][rows] = format_dates(ts_s[rows], kind)
    # Interactions have no key of their own: a date written without its time can make two real events
    # look identical. Such rows keep the main format, so that every exact repeat is an injected one.
    # Only two rows written in the same alternative format can collide (every format differs).
    changed = np.flatnonzero(labels != CLEAN_LABEL)
    same = changed[_frame(cols, changed).duplicated(keep=False).to_numpy()]
    cols["ts"][same] = format_dates(ts_s[same], "date_iso_datetime")
    labels[same] = CLEAN_LABEL

    pool = np.flatnonzero((labels == CLEAN_LABEL) & ~uses_dup)
    extra, extra_labels = _broken_copies(rng, cols, ts_s, pool, m, {
        "date_unparseable": params.unparseable_date_rate, "date_future": params.future_date_rate,
    })
    # Broken copies must not repeat one another by accident ("not a date" hides what told two rows
    # apart); real rows never hold these date strings, so they cannot be repeated by a broken copy.
    keep = ~_frame(extra, np.arange(extra_labels.size)).duplicated(keep="first").to_numpy()
    extra = {k: v[keep] for k, v in extra.items()}
    extra_labels = extra_labels[keep]

    rep = pick_some(rng, pool, int(round(params.exact_duplicate_rate * m)))
    all_cols = {k: np.concatenate([cols[k], extra[k], cols[k][rep]]) for k in cols}
    all_labels = np.concatenate([labels, extra_labels, np.full(rep.size, "exact_duplicate", dtype=object)])
    _count("interactions", all_labels, {"duplicate_id": int(uses_dup.sum())}, counts)
    return _frame(all_cols, rng.permutation(all_labels.size))
