"""The cross-sell bundle: item names and counts as JSON, co-occurrence counts as arrays, the report
tables; the scorer batch scoring and the pyfunc call, and what ``crmlab score`` hands it.

The scorer's input is one row per customer: ``customer_id`` and ``items_bought``, the items the
customer bought up to the cut-off joined by ``|`` (an empty or missing value: no purchase known).
``crmlab score`` builds that column from the clean transactions (:func:`add_purchased_items`, the
record's ``score_inputs``); a pyfunc caller passes it. The output: ``customer_id``,
``next_product_1..k`` (items, best first; missing when fewer are left) and ``next_product_score_1..k``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from crmlab.crosssell.baskets import SEPARATOR, join_items, purchase_lines, split_items
from crmlab.crosssell.evaluate import per_customer_metrics, summarise
from crmlab.crosssell.models import Recommender
from crmlab.crosssell.result import CrosssellResult
from crmlab.errors import ModelError
from crmlab.export import Bundle, as_bundle, write_bundle
from crmlab.utils import ids_unique

__all__ = ["INPUT_COLUMNS", "add_purchased_items", "evaluate_bundle", "export_bundle", "output_columns",
           "recommend_frame", "score_crosssell"]

INPUT_COLUMNS: list[str] = ["customer_id", "items_bought"]


def output_columns(k: int) -> list[str]:
    return ["customer_id", *(f"next_product_{i}" for i in range(1, k + 1)),
            *(f"next_product_score_{i}" for i in range(1, k + 1))]


def export_bundle(path: str | Path, model: Recommender, *, as_of: date, cutoff: date, horizon_days: int,
                  item_column: str, k: int, metrics: dict[str, float], leaderboard: pd.DataFrame,
                  rules: pd.DataFrame, shipped_because: str, config_digest: str) -> Path:
    """Write the model to a bundle folder: parameters (items, settings) as JSON, the counts as arrays,
    ``report_leaderboard.csv`` and ``report_rules.csv`` (read by the HTML report), a manifest saying
    which model shipped and why."""
    params, arrays = model.to_bundle()
    params["k"] = int(k)
    manifest = {
        "model": model.kind,
        "shipped_because": shipped_because,
        "item_column": item_column,
        "k": int(k),
        "features": [],
        "input_columns": INPUT_COLUMNS,
        "output_columns": output_columns(k),
        "training_window": {"as_of": as_of.isoformat(), "holdout_start": cutoff.isoformat(),
                            "horizon_days": int(horizon_days)},
        "n_items": len(model.items_),
        "n_baskets": int(model.co_.n_baskets),
        "metrics": {key: (float(v) if np.isfinite(v) else None) for key, v in metrics.items()},
        "config_hash": config_digest,
    }
    texts = {"report_leaderboard.csv": leaderboard.to_csv(index=False), "report_rules.csv": rules.to_csv(index=False)}
    return write_bundle(path, pipeline="crosssell", params=params, manifest=manifest, arrays=arrays, texts=texts)


def _model(bundle: Bundle) -> tuple[Recommender, int]:
    model = Recommender.from_bundle(bundle.params, bundle.arrays)
    try:
        k = int(bundle.params["k"])
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{bundle.path}: the crosssell bundle lacks k; retrain") from None
    return model, k


def recommend_frame(model: Recommender, customer_id: pd.Series, items_bought: pd.Series, k: int) -> pd.DataFrame:
    """The scorer's output for one model (module doc)."""
    history = split_items(items_bought, model.items_)
    idx, val = model.recommend(history, k)
    names = np.append(np.asarray(model.items_, dtype=object), None)  # -1 -> None
    out: dict[str, Any] = {"customer_id": customer_id.reset_index(drop=True)}
    for i in range(k):
        out[f"next_product_{i + 1}"] = pd.Series(names[idx[:, i]], dtype="string")
    for i in range(k):
        out[f"next_product_score_{i + 1}"] = val[:, i]
    return pd.DataFrame(out)


def score_crosssell(frame: pd.DataFrame, bundle: Bundle | str | Path) -> pd.DataFrame:
    """Recommend the bundle's ``k`` items to each input row (``customer_id``, ``items_bought``; other
    columns are ignored): one output row per input row, in order (module doc). Each row is scored on its
    own history alone."""
    b = as_bundle(bundle, "crosssell")
    model, k = _model(b)
    if not isinstance(frame, pd.DataFrame):
        raise ModelError(f"score_crosssell needs a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in INPUT_COLUMNS if c not in frame.columns]
    if missing:
        raise ModelError(f"crosssell scoring input: missing column(s) {missing}: one row per customer with "
                         f"customer_id and items_bought (the items bought, joined by {SEPARATOR!r}; crmlab score "
                         f"builds it from the transactions); got columns {sorted(map(str, frame.columns))[:12]}")
    if not ids_unique(frame["customer_id"]):
        dup = frame["customer_id"].duplicated()
        raise ModelError(f"crosssell scoring input: customer_id must be unique; {int(dup.sum())} repeated, e.g. "
                         f"{frame['customer_id'][dup].iloc[0]!r}")
    return recommend_frame(model, frame["customer_id"], frame["items_bought"], k)


def add_purchased_items(features: pd.DataFrame, tables: Any, bundle: Bundle, *, as_of: date) -> pd.DataFrame:
    """``features`` with ``items_bought``: each customer's distinct items (the bundle's ``item_column``)
    bought on or before ``as_of``, sorted and joined (what ``crmlab score`` passes the scorer)."""
    column = str(bundle.manifest.get("item_column", "product_id"))
    out = features[["customer_id"]].copy()
    tx = getattr(tables, "transactions", None)
    if tx is None or tx.empty:
        out["items_bought"] = pd.Series([""] * len(out), dtype="string", index=out.index)
        return out
    lines = purchase_lines(tx, item_column=column, as_of=as_of)
    per = (lines.group_by("customer_id")
           .agg(items_bought=pl.col("item").unique().sort().str.join(SEPARATOR)).to_pandas())
    ids = features["customer_id"].astype("string").reset_index(drop=True)
    joined = pd.DataFrame({"customer_id": ids}).merge(
        per.assign(customer_id=per["customer_id"].astype("string")), on="customer_id", how="left", validate="1:1")
    out["items_bought"] = joined["items_bought"].astype("string").fillna("").to_numpy()
    return out


def evaluate_bundle(bundle: Bundle | str | Path, result: CrosssellResult) -> dict[str, float]:
    """Another exported model (the registry's champion, say) judged on ``result``'s holdout at
    ``result.k``: the same customers, histories and relevant items. A model fitted on purchases after
    the holdout's start has seen the answers, so its *specification* (kind and settings) is refitted on
    the baskets the challenger learnt from and judged instead (``refitted`` = 1): the two are then
    compared on the same data, as specifications."""
    b = as_bundle(bundle, "crosssell")
    model, _ = _model(b)
    holdout = result.holdout
    fitted_to = (b.manifest.get("training_window") or {}).get("as_of")
    refitted = fitted_to is None or date.fromisoformat(str(fitted_to)) > holdout.cutoff
    if refitted:
        model = Recommender(model.kind, smoothing=model.smoothing, min_item_count=model.min_item_count,
                            min_pair_count=model.min_pair_count, min_lift=model.min_lift).fit(holdout.baskets,
                                                                                             holdout.items)
    texts = pd.Series(join_items(holdout.history, holdout.items), dtype="string")
    recs = recommend_frame(model, pd.Series(holdout.customers), texts, result.k)
    position = {name: i for i, name in enumerate(holdout.items)}
    idx = np.column_stack([recs[f"next_product_{i + 1}"].map(lambda v: position.get(v, -1) if isinstance(v, str)
                                                              else -1).to_numpy(dtype=np.int64)
                           for i in range(result.k)])
    per = per_customer_metrics(idx, holdout.relevant, result.k)
    return {**summarise(per, idx, result.k, int(model.candidates_.sum())), "refitted": float(refitted)}
