"""What a segment is, in words and numbers: profiles, readable names, migration between dates.

Profile of a segment: its customers, their share of the base and of revenue, and for each
clustering feature the segment's median and its *lift* = segment median / base median (segment
mean / base mean where the base median is 0, as for the frequency of a base of mostly one-time
buyers).

Names come from the profile, not from the cluster number. Each segment's customers have a mean
percentile rank (0..1) in the base on each feature; with recency and frequency among the features
those read as the segment's RFM quintile scores and give the marketer's names of the RFM grid
(recent + frequent = ``champions``; lapsed + rare = ``hibernating``; ...: the map of the RFM
baseline), otherwise the two features that set the segment most apart from the base name it
(``high_tenure_days_low_txn_count_90d``). Two segments that would share a name are told apart by
money when they differ in it, else by the feature on which they differ most
(``loyal_high_value`` / ``loyal_low_value``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from crmlab.segmentation.rfm import MONETARY_COLUMNS, NO_PURCHASE

__all__ = ["HIGH", "LOW", "migration_matrix", "name_segments", "percentile_profile", "profile_segments"]

#: Mean percentile ranks at or above HIGH are "high", at or below LOW "low".
HIGH, LOW = 0.6, 0.4


def profile_segments(features: pd.DataFrame, labels: np.ndarray, columns: Sequence[str], names: Sequence[str],
                     revenue: str | None = None) -> pd.DataFrame:
    """One row per segment id (0..k-1): ``segment``, ``name``, ``customers``, ``share``,
    ``revenue_share`` (of ``revenue``, when given), each feature's median and ``lift_<feature>``."""
    k = len(names)
    frame = features[list(columns)].astype("float64").reset_index(drop=True)
    frame["_segment"] = labels
    grouped = frame.groupby("_segment")
    counts = np.bincount(labels, minlength=k)
    out = pd.DataFrame({"segment": np.arange(k), "name": list(names), "customers": counts,
                        "share": counts / max(len(labels), 1)})
    if revenue is not None:
        money = features[revenue].to_numpy(dtype=np.float64, na_value=0.0)
        money = np.where(np.isfinite(money), money, 0.0)
        total = money.sum()
        out["revenue_share"] = np.bincount(labels, weights=money, minlength=k) / total if total else np.nan
    medians = grouped[list(columns)].median().reindex(range(k))
    means = grouped[list(columns)].mean().reindex(range(k))
    for col in columns:
        base_median, base_mean = frame[col].median(), frame[col].mean()
        out[col] = medians[col].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            lift = medians[col] / base_median if base_median else means[col] / base_mean
        out[f"lift_{col}"] = lift.to_numpy()
    return out


def percentile_profile(features: pd.DataFrame, labels: np.ndarray, columns: Sequence[str], k: int) -> pd.DataFrame:
    """Mean percentile rank in the base of each segment (rows 0..k-1) on each column; missing values
    are ignored. Tied customers take the lowest rank of their tie, so a segment of one-time buyers
    reads as the least frequent however many one-time buyers the base has."""
    ranks = features[list(columns)].astype("float64").rank(pct=True, method="min").reset_index(drop=True)
    ranks["_segment"] = labels
    return ranks.groupby("_segment")[list(columns)].mean().reindex(range(k))


def _level(p: float) -> str:
    return "high" if p >= HIGH else "low" if p <= LOW else "mid"


def _quintile(p: float) -> int:
    return int(np.clip(np.ceil(p * 5), 1, 5))


#: how a clash between two segments of the same name is told apart: feature -> (word if higher, if lower)
_WORDS = {"recency_days": ("less_recent", "more_recent"), "frequency": ("more_frequent", "less_frequent"),
          "monetary_value": ("high_value", "low_value"), "amount_sum_total": ("high_value", "low_value")}


def _descriptor(row: pd.Series, columns: Sequence[str], n: int) -> str:
    deviation = (row[list(columns)] - 0.5).abs().sort_values(ascending=False, kind="stable")
    parts = []
    for c in deviation.index[:n]:
        level = _level(row[c])
        parts.append(f"{level if level != 'mid' else ('higher' if row[c] > 0.5 else 'lower')}_{c}")
    return "_".join(parts)


def name_segments(ranks: pd.DataFrame) -> list[str]:
    """Readable, unique names from a :func:`percentile_profile` (module doc).

    With ``recency_days`` and ``frequency`` among the columns, a segment's mean percentile ranks
    are read as RFM quintile scores (``ceil(5 * rank)``, recency reversed) and named by
    :data:`crmlab.kpis.RFM_SEGMENT_MAP`, the map of the RFM baseline; otherwise by its two most
    distinctive features."""
    from crmlab.segmentation.rfm import rfm_segment_names

    columns = list(ranks.columns)
    rfm = "recency_days" in columns and "frequency" in columns
    lookup = rfm_segment_names()
    names = pd.Series([lookup[_quintile(1.0 - row["recency_days"]) * 6 + _quintile(row["frequency"])] if rfm
                       else _descriptor(row, columns, 2) for _, row in ranks.iterrows()],
                      index=ranks.index, dtype=object)
    monetary = next((c for c in MONETARY_COLUMNS if c in columns), None)
    for name, idx in names.groupby(names).groups.items():
        if len(idx) < 2:
            continue
        # the feature on which the clashing segments differ most tells them apart (money first)
        spread = ranks.loc[idx].max() - ranks.loc[idx].min()
        col = monetary if monetary is not None and spread[monetary] >= 0.1 else str(spread.idxmax())
        higher, lower = _WORDS.get(col, (f"higher_{col}", f"lower_{col}"))
        order = ranks.loc[idx, col].rank(method="first")
        for i in idx:
            word = higher if order[i] == len(idx) else lower if order[i] == 1 else f"mid{int(order[i]) - 1}_{col}"
            names[i] = f"{name}_{word}"
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if seen[name] == 1 else f"{name}_{seen[name]}")
    return unique


def migration_matrix(before: pd.DataFrame, after: pd.DataFrame, *, column: str = "segment_name") -> pd.DataFrame:
    """Customers by segment at the earlier date (rows) and at the later one (columns).

    Both frames hold ``customer_id`` and ``column``, one row per customer. A customer present at
    one date only is counted under ``not_a_customer`` at the other, so every customer of either
    date is counted exactly once: the matrix sums to the size of their union, row sums are the
    earlier segment sizes and column sums the later ones.
    """
    merged = before[["customer_id", column]].merge(after[["customer_id", column]], on="customer_id", how="outer",
                                                   suffixes=("_from", "_to"), validate="1:1")
    frm = merged[f"{column}_from"].astype("string").fillna("not_a_customer")
    to = merged[f"{column}_to"].astype("string").fillna("not_a_customer")
    table = pd.crosstab(frm.rename("from"), to.rename("to"))
    order = [n for n in [*pd.unique(before[column].astype("string")), *pd.unique(after[column].astype("string")),
                         NO_PURCHASE, "not_a_customer"] if n in set(table.index) | set(table.columns)]
    order = list(dict.fromkeys(order))
    return table.reindex(index=[n for n in order if n in table.index],
                         columns=[n for n in order if n in table.columns], fill_value=0)
