"""Why a customer is at risk: global importance and each customer's top reasons.

Contributions are SHAP values on the log-odds scale from LightGBM itself (``pred_contrib=True``,
TreeSHAP); no extra package. A reason reads ``"recency_days high (+0.42)"``: the feature, whether
its value is above ("high") or below ("low") the training median (a category is shown as
``plan=basic``; a missing value as ``missing``), and its contribution to the churn log-odds.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from crmlab.churn.models import LightGBMChurn, feature_frame

__all__ = ["global_importance", "reason_text", "shap_values", "top_reasons"]


def shap_values(model: LightGBMChurn, X: pd.DataFrame) -> pd.DataFrame:
    """Per-row contributions (one column per feature, plus ``bias``), summing to the log-odds."""
    return model.contributions(X)


def global_importance(model: LightGBMChurn, X: pd.DataFrame | None = None) -> pd.DataFrame:
    """``feature``, ``gain`` (total split gain), ``gain_share`` and, when ``X`` is given,
    ``mean_abs_shap``; sorted by the latter (else by gain), largest first."""
    booster = model.booster_
    gain = booster.feature_importance(importance_type="gain", iteration=model.best_iteration_)
    out = pd.DataFrame({"feature": booster.feature_name(), "gain": gain.astype(float)})
    total = out["gain"].sum()
    out["gain_share"] = out["gain"] / total if total > 0 else 0.0
    key = "gain"
    if X is not None:
        contrib = shap_values(model, X).drop(columns="bias")
        out["mean_abs_shap"] = contrib.abs().mean().to_numpy()
        key = "mean_abs_shap"
    return out.sort_values([key, "feature"], ascending=[False, True], kind="stable").reset_index(drop=True)


def reason_text(feature: str, value: object, contribution: float, median: float | None) -> str:
    """One reason, e.g. ``"recency_days high (+0.42)"`` or ``"plan=basic (-0.10)"``."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        what = f"{feature} missing"
    elif median is None:
        what = f"{feature}={value}"
    else:
        what = f"{feature} {'high' if float(value) > median else 'low'}"
    return f"{what} ({contribution:+.2f})"


def top_reasons(model: LightGBMChurn, X: pd.DataFrame, n: int = 3, *, risk_only: bool = False,
                method: str = "shap") -> pd.DataFrame:
    """Each row's ``n`` largest contributions by absolute size (only the positive ones, pushing
    towards churn, with ``risk_only``): columns ``reason_1``..``reason_n`` (text), ``feature_i``
    and ``contribution_i``; index as ``X``. Fewer than ``n`` qualifying features leave None/NaN.

    Vectorised over rows (the texts of :func:`reason_text`, built column-wise): scoring a whole
    customer base calls this on every chunk. ``method``: ``"shap"`` (exact TreeSHAP) or ``"path"``
    (:meth:`LightGBMChurn.path_contributions`, much faster on large bases).
    """
    if method not in ("shap", "path"):
        raise ValueError(f"reasons method must be 'shap' or 'path', got {method!r}")
    contrib = (shap_values(model, X) if method == "shap" else model.path_contributions(X)).drop(columns="bias")
    Xf = feature_frame(X)[list(contrib.columns)]
    values = contrib.to_numpy()
    key = np.where(values > 0, values, -np.inf) if risk_only else np.abs(values)
    order = np.argsort(-key, axis=1, kind="stable")[:, :n]
    names = np.asarray(contrib.columns, dtype=object)
    medians = np.array([model.feature_medians_.get(c, np.nan) for c in names], dtype=np.float64)
    is_cat = np.array([c not in model.feature_medians_ for c in names])
    numeric = np.column_stack([
        Xf[c].to_numpy(dtype=np.float64, na_value=np.nan) if not cat else np.zeros(len(Xf))
        for c, cat in zip(names, is_cat, strict=True)
    ]) if len(names) else np.zeros((len(Xf), 0))
    rows = np.arange(len(Xf))
    out: dict[str, Any] = {}
    for j in range(min(n, values.shape[1])):
        cols = order[:, j]
        k = key[rows, cols]
        ok = np.isfinite(k) & (k != 0)
        v = values[rows, cols]
        feat = names[cols]
        x = numeric[rows, cols]
        cat = is_cat[cols]
        what = np.where(x > medians[cols], " high", " low").astype(object)
        what[~cat & np.isnan(x)] = " missing"
        if cat.any():
            for c in np.unique(cols[cat]):
                at = cols == c
                raw = Xf.iloc[:, c].astype(object).to_numpy()[at]
                what[at] = [" missing" if r is None or r is pd.NA or (isinstance(r, float) and np.isnan(r))
                            else f"={r}" for r in raw]
        signs = np.char.mod("%+.2f", v).astype(object)
        text = feat + what + " (" + signs + ")"
        out[f"reason_{j + 1}"] = np.where(ok, text, None)
        out[f"feature_{j + 1}"] = np.where(ok, feat, None)
        out[f"contribution_{j + 1}"] = np.where(ok, v, np.nan)
    return pd.DataFrame(out, index=contrib.index)
