"""How recommendations are judged: top-k ranking metrics on a time holdout and a paired comparison.

For a customer with relevant items ``R`` (the catalogue items first bought in the holdout) and a list
``L`` of ``k`` recommendations (best first; ``rel_i`` = 1 when the i-th is in ``R``):

* hit@k = 1 when ``|L cap R| >= 1``; precision@k = ``|L cap R| / k``; recall@k = ``|L cap R| / |R|``;
* AP@k = ``sum_i rel_i * precision@i / min(|R|, k)`` (the usual MAP@k normalisation);
* hit rate, precision, recall and MAP are their means over the judged customers; coverage is the
  share of the recommendable items that appear in at least one list.

Two recommenders are compared on the same customers (:func:`compare_paired`): the exact sign test
(McNemar's test for paired binary outcomes) on the customers whose hit differs, and a paired
bootstrap of the mean difference of AP@k (customers resampled with replacement; a percentile
interval and the two-sided share of resampled means on the other side of zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["compare_paired", "per_customer_metrics", "summarise", "sign_test"]


def per_customer_metrics(recommended: np.ndarray, relevant: sp.csr_matrix, k: int) -> pd.DataFrame:
    """``hits``, ``hit``, ``precision``, ``recall`` and ``ap`` at ``k`` per row (module doc).
    ``recommended``: item indices (rows x >= k, -1 for none); ``relevant``: rows x items, 0/1."""
    rec = np.asarray(recommended)[:, :k]
    relevant = sp.csr_matrix(relevant)
    n = rec.shape[0]
    if relevant.shape[0] != n:
        raise ValueError(f"{n} recommendation rows for {relevant.shape[0]} relevance rows")
    rel = np.zeros(rec.shape, dtype=bool)
    ok = rec >= 0
    rows = np.broadcast_to(np.arange(n)[:, None], rec.shape)
    rel[ok] = np.asarray(relevant[rows[ok], rec[ok]]).ravel() > 0
    n_rel = np.diff(relevant.indptr).astype(np.float64)
    hits = rel.sum(axis=1)
    cum = np.cumsum(rel, axis=1)
    prec_at = cum / np.arange(1, k + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = (prec_at * rel).sum(axis=1) / np.minimum(n_rel, k)
        recall = hits / n_rel
    return pd.DataFrame({"hits": hits, "hit": (hits > 0).astype(np.float64), "precision": hits / k,
                         "recall": recall, "ap": ap})


def summarise(per_customer: pd.DataFrame, recommended: np.ndarray, k: int, n_candidates: int) -> dict[str, float]:
    """Hit rate, precision, recall, MAP (means over the rows) and coverage at ``k``."""
    rec = np.asarray(recommended)[:, :k]
    shown = np.unique(rec[rec >= 0]).size
    return {"hit_rate": float(per_customer["hit"].mean()), "precision": float(per_customer["precision"].mean()),
            "recall": float(per_customer["recall"].mean()), "map": float(per_customer["ap"].mean()),
            "coverage": shown / n_candidates if n_candidates else float("nan")}


def sign_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """The exact two-sided sign test of paired outcomes: ``wins`` (a > b), ``losses`` (a < b), ``p_value``."""
    from scipy.stats import binomtest

    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    wins, losses = int((diff > 0).sum()), int((diff < 0).sum())
    p = binomtest(wins, wins + losses, 0.5).pvalue if wins + losses else 1.0
    return {"wins": float(wins), "losses": float(losses), "p_value": float(p)}


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> dict[str, float]:
    """The mean of ``a - b`` over paired rows, a percentile interval from ``n_boot`` resamples of the
    rows, and the two-sided bootstrap p-value (twice the share of resampled means on the far side of 0)."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    n = diff.size
    if n == 0:
        nan = float("nan")
        return {"mean_diff": nan, "ci_low": nan, "ci_high": nan, "p_value": nan}
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    batch = max(1, 2_000_000 // n)  # resample in batches: bounded memory
    for lo in range(0, n_boot, batch):
        hi = min(n_boot, lo + batch)
        means[lo:hi] = diff[rng.integers(0, n, (hi - lo, n))].mean(axis=1)
    tail = (1 - level) / 2
    below, above = float((means <= 0).mean()), float((means >= 0).mean())
    return {"mean_diff": float(diff.mean()), "ci_low": float(np.quantile(means, tail)),
            "ci_high": float(np.quantile(means, 1 - tail)), "p_value": float(min(1.0, 2 * min(below, above)))}


def compare_paired(model: pd.DataFrame, baseline: pd.DataFrame, *, n_boot: int, seed: int) -> dict[str, float]:
    """The model against the baseline on the same customers (module doc): the sign test on hits
    (``hit_wins``, ``hit_losses``, ``hit_p_value``) and the paired bootstrap of AP
    (``ap_diff``, ``ap_diff_ci_low``, ``ap_diff_ci_high``, ``ap_p_value``)."""
    sign = sign_test(model["hit"], baseline["hit"])
    boot = paired_bootstrap(model["ap"], baseline["ap"], n_boot=n_boot, seed=seed)
    return {"hit_wins": sign["wins"], "hit_losses": sign["losses"], "hit_p_value": sign["p_value"],
            "ap_diff": boot["mean_diff"], "ap_diff_ci_low": boot["ci_low"], "ap_diff_ci_high": boot["ci_high"],
            "ap_p_value": boot["p_value"]}
