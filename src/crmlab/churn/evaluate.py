"""How churn models are judged: the metrics on the validation rows, the leaderboard and its gain verdict, the decision rule (threshold), the reliability table and the feature importance (gain and SHAP)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from crmlab.churn.blend import CrossValidation
from crmlab.churn.data import ChurnDataset
from crmlab.churn.explain import global_importance
from crmlab.churn.metrics import (
    best_f1_threshold,
    calibration_table,
    capacity_threshold,
    classification_metrics,
    compare_auc,
    lift_at,
    profit_targets,
    realised_profit,
)
from crmlab.churn.models import LightGBMChurn
from crmlab.config import ChurnConfig
from crmlab.errors import ConfigError

_SHAP_ROWS = 10_000  # validation rows the global mean |SHAP| is computed on (seeded sample)


def churn_metrics(y: Any, prob: Any, k_percent: float) -> dict[str, float]:
    """:func:`~crmlab.churn.metrics.classification_metrics` with lift and recall at the top k%
    under the names the registry's leaderboard shows (``lift_at_k``, ``recall_at_k``)."""
    m = classification_metrics(y, prob, k_percent)
    m["recall_at_k"] = m.pop(f"recall_top_{k_percent:g}pct")
    m["lift_at_k"] = lift_at(y, prob, k_percent)
    return m


def evaluate_models(models: Mapping[str, Any], ds: ChurnDataset, k_percent: float
                    ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every model's metrics on the validation rows, best ROC AUC first, and its predictions.

    Each baseline's row also says whether LightGBM really ranks better on these rows:
    ``lightgbm_gain`` (LightGBM's ROC AUC minus the baseline's), its 95% interval
    ``lightgbm_gain_low``/``_high`` and the p-value ``lightgbm_gain_p`` of DeLong's paired test
    (:func:`~crmlab.churn.metrics.compare_auc`); NaN on LightGBM's own row."""
    rows, predictions = [], {}
    for name, model in models.items():
        p = model.predict_proba(ds.X_valid)[:, 1]
        predictions[name] = p
        rows.append({"model": name, **churn_metrics(ds.y_valid, p, k_percent)})
    for row in rows:
        gain = {"diff": np.nan, "low": np.nan, "high": np.nan, "p_value": np.nan}
        if row["model"] != "lightgbm" and "lightgbm" in predictions:
            gain = compare_auc(ds.y_valid, predictions["lightgbm"], predictions[row["model"]])
        row.update({"lightgbm_gain": gain["diff"], "lightgbm_gain_low": gain["low"],
                    "lightgbm_gain_high": gain["high"], "lightgbm_gain_p": gain["p_value"]})
    board = pd.DataFrame(rows).sort_values("roc_auc", ascending=False, kind="stable").reset_index(drop=True)
    return board, predictions


#: The models a churn bundle can ship, in the order a tie prefers them (BG/NBD's P(alive) is a baseline only).
SHIPPABLE = ("lightgbm", "logistic", "blend")
NAMES = {"lightgbm": "LightGBM", "logistic": "the logistic regression", "blend": "the blend", "bgnbd": "BG/NBD"}


def choose_shipped(board: pd.DataFrame, ship: str, cv: CrossValidation | None = None) -> tuple[str, str]:
    """(the model to export, why, naming what it beat): ``ship`` when it names one. With ``"auto"``:

    * contract (``cv`` given): the shippable model with the best mean ROC AUC of the repeated
      cross-validation of the training part; the test rows only report. Each loser's gap comes with
      its corrected 95% interval (:func:`~crmlab.churn.blend.corrected_interval`).
    * transactions: LightGBM, unless the logistic regression or the blend ranks significantly better
      on the validation snapshot (DeLong's 95% interval of LightGBM's ROC AUC gain entirely below 0);
      then the best of those. A tie keeps LightGBM: its reasons follow the customer's own feature
      interactions, and a coin flip between equals would change the shipped family run to run.
    """
    rows = board.set_index("model")
    candidates = [m for m in SHIPPABLE if m in rows.index]
    if ship != "auto":
        if ship not in rows.index:
            raise ConfigError(f"churn.ship={ship}: there is no {ship} on the leaderboard "
                              f"({', '.join(rows.index)}); set churn.blend=true or choose another")
        return ship, f"churn.ship={ship}"
    if cv is not None:
        scored = [m for m in candidates if m in cv.aucs.columns]
        best = max(scored, key=lambda m: (round(cv.mean(m), 12), -scored.index(m)))
        beaten = []
        for other in scored:
            if other != best:
                c = cv.compare(best, other)
                beaten.append(f"{NAMES[other]} {cv.mean(other):.4f} ({c['diff']:+.4f}, 95% CI {c['low']:+.4f} to "
                              f"{c['high']:+.4f})")
        return best, (f"the best mean ROC AUC of the {cv.folds}-fold cross-validation of the training part, repeated "
                      f"{cv.repeats}x: {cv.mean(best):.4f}" + (f"; it beat {', '.join(beaten)}" if beaten else ""))
    if "lightgbm" not in rows.index:
        return candidates[0], f"{NAMES[candidates[0]]} (no LightGBM to compare with)"
    better = [m for m in candidates if m != "lightgbm" and rows.loc[m, "lightgbm_gain_high"] < 0]
    lines = {m: (f"{NAMES[m]} {rows.loc[m, 'roc_auc']:.4f} vs LightGBM {rows.loc['lightgbm', 'roc_auc']:.4f}: "
                 f"{-rows.loc[m, 'lightgbm_gain']:+.4f}, 95% CI {-rows.loc[m, 'lightgbm_gain_high']:+.4f} to "
                 f"{-rows.loc[m, 'lightgbm_gain_low']:+.4f}, DeLong p = {rows.loc[m, 'lightgbm_gain_p']:.3g}")
             for m in candidates if m != "lightgbm"}
    if better:
        best = max(better, key=lambda m: rows.loc[m, "roc_auc"])
        others = "; ".join(v for m, v in lines.items() if m != best)
        return best, (f"{NAMES[best]} ranks significantly better than LightGBM on the validation rows ({lines[best]})"
                      + (f"; {others}" if others else ""))
    if not lines:
        return "lightgbm", "LightGBM (no logistic baseline to compare with)"
    ci = "; ".join(lines.values())
    if all(rows.loc[m, "lightgbm_gain_low"] > 0 for m in lines):
        return "lightgbm", f"LightGBM ranks significantly better than {' and '.join(NAMES[m] for m in lines)} ({ci})"
    return "lightgbm", f"no model ranks significantly better than LightGBM ({ci}): LightGBM"


def mark_shipped(board: pd.DataFrame, shipped: str, cv: CrossValidation | None) -> pd.DataFrame:
    """The leaderboard with the cross-validation's mean and sd per model (contract) and a ``shipped`` column."""
    out = board.copy()
    if cv is not None:
        out["cv_roc_auc"] = [cv.mean(m) if m in cv.aucs.columns else np.nan for m in out["model"]]
        out["cv_roc_auc_sd"] = [cv.sd(m) if m in cv.aucs.columns else np.nan for m in out["model"]]
    out["shipped"] = out["model"] == shipped
    return out


def gain_verdict(row: Mapping[str, Any]) -> str:
    """One line on LightGBM against a baseline's leaderboard row: the ROC AUC gain, its 95%
    interval, DeLong's p-value and what they mean (better, worse or no significant difference)."""
    low, high = row["lightgbm_gain_low"], row["lightgbm_gain_high"]
    if row["model"] == "lightgbm_without_voice":  # the ablation: do the customer's-voice features help?
        verdict = ("the customer's-voice features help" if low > 0 else "LightGBM ranks better without them"
                   if high < 0 else "no significant difference: the customer's-voice features do not help here")
    else:
        other = "the blend" if row["model"] == "blend" else "the baseline"
        verdict = ("LightGBM ranks better" if low > 0 else f"{other} ranks better" if high < 0
                   else "no significant difference")
    return (f"LightGBM vs {row['model']}: ROC AUC {row['lightgbm_gain']:+.4f} (95% CI {low:+.4f} to {high:+.4f}, "
            f"DeLong p = {row['lightgbm_gain_p']:.3g}): {verdict}")


def customer_value(X: pd.DataFrame, column: str) -> np.ndarray:
    if column not in X.columns:
        raise ConfigError(f"churn.value_column={column!r} is not a feature; choose one of "
                          f"{[c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])][:12]}")
    return np.nan_to_num(X[column].to_numpy(dtype=np.float64, na_value=np.nan), nan=0.0)


def choose_decision(churn: ChurnConfig, y: Any, prob: np.ndarray, X: pd.DataFrame) -> dict[str, Any]:
    """The decision rule (``churn.threshold``) fixed on the validation rows and how it does there.

    ``best_f1`` and ``capacity`` give a probability threshold; ``profit`` flags each customer whose
    expected profit of an offer is positive (:mod:`crmlab.churn.metrics`), which needs calibrated
    probabilities to mean anything. Choosing the threshold on the rows it is reported on flatters
    precision and recall a little; the ranking metrics are unaffected.
    """
    y = np.asarray(y, dtype=np.int8)
    out: dict[str, Any] = {"rule": churn.threshold, "threshold": None}
    if churn.threshold == "profit":
        value = customer_value(X, churn.value_column)
        flagged = profit_targets(prob, value, offer_cost=churn.offer_cost, save_rate=churn.save_rate)
        out.update(offer_cost=churn.offer_cost, save_rate=churn.save_rate, value_column=churn.value_column,
                   realised_profit=realised_profit(y, flagged, value, offer_cost=churn.offer_cost,
                                                   save_rate=churn.save_rate))
    else:
        t = (best_f1_threshold(y, prob)[0] if churn.threshold == "best_f1"
             else capacity_threshold(prob, churn.top_k_percent))
        out["threshold"] = float(t)
        flagged = prob >= t
    tp = float((flagged & (y == 1)).sum())
    precision = tp / flagged.sum() if flagged.any() else 0.0
    recall = tp / max(int(y.sum()), 1)
    out.update(flagged_share=float(flagged.mean()), precision=float(precision), recall=float(recall),
               f1=float(2 * precision * recall / (precision + recall)) if precision + recall > 0 else 0.0)
    return out


def reliability_table(y: Any, predictions: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """The calibration curve of every model, in the report's columns (``model``, ``predicted``,
    ``observed``, ``count``): ten quantile bins of predicted probability each."""
    parts = []
    for name, p in predictions.items():
        t = calibration_table(y, p, n_bins=10)
        parts.append(pd.DataFrame({"model": name, "predicted": t["mean_predicted"], "observed": t["observed_rate"],
                                   "count": t["n"]}))
    return pd.concat(parts, ignore_index=True)


def importance_table(model: LightGBMChurn, X: pd.DataFrame, *, seed: int) -> pd.DataFrame:
    """Gain and mean |SHAP| per feature, SHAP on (a seeded sample of at most 10,000) validation rows."""
    sample = X if len(X) <= _SHAP_ROWS else X.sample(_SHAP_ROWS, random_state=seed)
    return global_importance(model, sample)
