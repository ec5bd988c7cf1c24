"""Churn metrics, decision thresholds and risk tiers.

``y`` is 1 for a churner; ``score`` a churn probability or any score that ranks churners higher.
"Top k%" always means the ``ceil(k/100 * n)`` highest scores (ties broken by position, stably).

Expected profit of a retention offer (:func:`expected_profit`): offering it to customer ``i``
costs ``offer_cost`` whether or not they would churn; if they would churn (probability ``p_i``)
the offer keeps them with probability ``save_rate``, which saves their value ``v_i`` (e.g. CLV
over the horizon, or margin)::

    E[profit_i] = p_i * save_rate * v_i - offer_cost

A customer is worth targeting when that is positive, i.e. when ``p_i > offer_cost / (save_rate * v_i)``.

Whether one model really ranks better than another on the same rows (:func:`compare_auc`):
DeLong, DeLong and Clarke-Pearson (1988), "Comparing the areas under two or more correlated
receiver operating characteristic curves", with the midrank algorithm of Sun and Xu (2014). It
is the paired test: both scores are judged on the same customers, so their AUCs are correlated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

__all__ = [
    "best_f1_threshold",
    "calibration_table",
    "capacity_threshold",
    "classification_metrics",
    "compare_auc",
    "expected_profit",
    "lift_at",
    "profit_targets",
    "realised_profit",
    "recall_at",
    "risk_tiers",
    "top_k_mask",
]


def _arrays(y: Any, score: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    s = np.asarray(score, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"y and score should be 1-d of one length, got shapes {y.shape} and {s.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y should hold 0/1 labels")
    return y, s


def top_k_mask(score: Any, k_percent: float) -> np.ndarray:
    """True for the ``ceil(k_percent/100 * n)`` highest scores (first by position among ties)."""
    if not 0 < k_percent <= 100:
        raise ValueError(f"k_percent={k_percent!r} should be in (0, 100]")
    s = np.asarray(score, dtype=float)
    k = math.ceil(round(k_percent / 100 * s.size, 9))
    mask = np.zeros(s.size, dtype=bool)
    mask[np.argsort(-s, kind="stable")[:k]] = True
    return mask


def lift_at(y: Any, score: Any, k_percent: float = 10.0) -> float:
    """Churn rate in the top ``k_percent`` of scores divided by the overall churn rate."""
    y, s = _arrays(y, score)
    return float(y[top_k_mask(s, k_percent)].mean() / y.mean())


def recall_at(y: Any, score: Any, k_percent: float = 10.0) -> float:
    """Share of all churners found in the top ``k_percent`` of scores."""
    y, s = _arrays(y, score)
    return float(y[top_k_mask(s, k_percent)].sum() / y.sum())


def calibration_table(y: Any, prob: Any, n_bins: int = 10, strategy: str = "quantile") -> pd.DataFrame:
    """Reliability table: per bin of predicted probability, ``n``, ``mean_predicted``,
    ``observed_rate`` and their ``gap``. ``strategy``: "quantile" (equal counts) or "uniform"."""
    y, p = _arrays(y, prob)
    if strategy == "quantile":
        edges = np.unique(np.quantile(p, np.linspace(0, 1, n_bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0, 1, n_bins + 1)
    else:
        raise ValueError(f"strategy={strategy!r}: choose 'quantile' or 'uniform'")
    bins = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    df = pd.DataFrame({"bin": bins, "p": p, "y": y})
    out = df.groupby("bin").agg(n=("y", "size"), mean_predicted=("p", "mean"), observed_rate=("y", "mean"))
    out.insert(0, "lower", edges[out.index.to_numpy()])
    out.insert(1, "upper", edges[out.index.to_numpy() + 1])
    out["gap"] = out["observed_rate"] - out["mean_predicted"]
    return out.reset_index(drop=True)


def classification_metrics(y: Any, prob: Any, k_percent: float = 10.0) -> dict[str, float]:
    """ROC AUC, PR AUC (average precision), log loss, Brier score, lift in the top decile and
    recall in the top ``k_percent``. Log loss and Brier assume ``prob`` is a probability."""
    y, p = _arrays(y, prob)
    pc = np.clip(p, 1e-15, 1 - 1e-15)
    return {
        "roc_auc": float(skm.roc_auc_score(y, p)),
        "pr_auc": float(skm.average_precision_score(y, p)),
        "log_loss": float(-np.mean(y * np.log(pc) + (1 - y) * np.log(1 - pc))),
        "brier": float(np.mean((p - y) ** 2)),
        "lift_top_decile": lift_at(y, p, 10.0),
        f"recall_top_{k_percent:g}pct": recall_at(y, p, k_percent),
        "churn_rate": float(y.mean()),
        "n": int(y.size),
    }


def _delong_components(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUC of each row of ``scores`` (k x n) and DeLong's structural components: ``v10`` (k x
    churners), each churner's share of non-churners it outranks, and ``v01`` (k x non-churners),
    each non-churner's share of churners that outrank it (ties count half)."""
    from scipy.stats import rankdata

    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    rank_all = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    rank_pos, rank_neg = rankdata(pos, axis=1), rankdata(neg, axis=1)
    v10 = (rank_all[:, :m] - rank_pos) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_neg) / m
    return v10.mean(axis=1), v10, v01


def compare_auc(y: Any, score_a: Any, score_b: Any, *, level: float = 0.95) -> dict[str, float]:
    """DeLong's paired comparison of two ROC AUCs on the same rows (module doc).

    Returns ``auc_a``, ``auc_b``, ``diff`` (a - b), its standard error ``se``, the ``level``
    confidence interval ``low``/``high`` (normal) and the two-sided ``p_value`` of "no difference".
    """
    from scipy.stats import norm

    y, a = _arrays(y, score_a)
    _, b = _arrays(y, score_b)
    if y.min() == y.max():
        raise ValueError("comparing AUCs needs both classes in y")
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} should be in (0, 1)")
    auc, v10, v01 = _delong_components(y, np.vstack([a, b]))
    cov = np.cov(v10) / v10.shape[1] + np.cov(v01) / v01.shape[1]
    diff = float(auc[0] - auc[1])
    se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    z = norm.ppf(0.5 + level / 2)
    p = 1.0 if se == 0 else float(2 * norm.sf(abs(diff) / se))
    return {"auc_a": float(auc[0]), "auc_b": float(auc[1]), "diff": diff, "se": se,
            "low": float(diff - z * se), "high": float(diff + z * se), "p_value": p}


# --------------------------------------------------------------------------- thresholds


def best_f1_threshold(y: Any, score: Any) -> tuple[float, float]:
    """``(threshold, f1)`` maximising F1 when ``score >= threshold`` is called churn."""
    y, s = _arrays(y, score)
    precision, recall, thresholds = skm.precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)[:-1]
    i = int(np.argmax(f1))
    return float(thresholds[i]), float(f1[i])


def capacity_threshold(score: Any, k_percent: float) -> float:
    """Lowest score inside the top ``k_percent`` (a team that can call k% of the base)."""
    s = np.asarray(score, dtype=float)
    return float(s[top_k_mask(s, k_percent)].min())


def expected_profit(prob: Any, value: Any, *, offer_cost: float, save_rate: float = 1.0) -> np.ndarray:
    """``prob * save_rate * value - offer_cost`` per customer (see the module doc)."""
    if offer_cost < 0 or not 0 < save_rate <= 1:
        raise ValueError(f"offer_cost={offer_cost!r} should be >= 0 and save_rate={save_rate!r} in (0, 1]")
    p = np.asarray(prob, dtype=float)
    v = np.broadcast_to(np.asarray(value, dtype=float), p.shape)
    return p * save_rate * v - offer_cost


def profit_targets(prob: Any, value: Any, *, offer_cost: float, save_rate: float = 1.0) -> np.ndarray:
    """True where the offer has a positive expected profit."""
    return expected_profit(prob, value, offer_cost=offer_cost, save_rate=save_rate) > 0


def realised_profit(y: Any, targeted: Any, value: Any, *, offer_cost: float, save_rate: float = 1.0) -> float:
    """Profit of a targeting on known outcomes: ``sum over targeted (y_i * save_rate * v_i - offer_cost)``."""
    y = np.asarray(y, dtype=float)
    t = np.asarray(targeted, dtype=bool)
    v = np.broadcast_to(np.asarray(value, dtype=float), y.shape)
    return float(np.sum(t * (y * save_rate * v - offer_cost)))


def risk_tiers(prob: Any, edges: tuple[float, ...] = (0.3, 0.6),
               labels: tuple[str, ...] = ("low", "medium", "high")) -> pd.Categorical:
    """Ordered tiers of churn probability: ``prob < edges[0]`` is ``labels[0]``, ..., a probability
    equal to an edge goes to the higher tier."""
    if len(labels) != len(edges) + 1 or list(edges) != sorted(edges):
        raise ValueError(f"edges={edges} should be ascending with one fewer than labels={labels}")
    p = np.asarray(prob, dtype=float)
    codes = np.searchsorted(np.asarray(edges, dtype=float), p, side="right")
    return pd.Categorical.from_codes(codes, categories=list(labels), ordered=True)
