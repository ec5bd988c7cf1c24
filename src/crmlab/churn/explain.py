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

from crmlab.churn import _paths
from crmlab.churn.models import LightGBMChurn, feature_frame
from crmlab.utils import text_column

__all__ = ["blend_reasons", "global_importance", "reason_arrays", "reason_text", "reasons_and_probability", "shap_values",
           "top_reasons"]


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

    Vectorised over rows (the texts of :func:`reason_text`, each distinct one formatted once): scoring a whole
    customer base calls this on every chunk. ``method``: ``"shap"`` (exact TreeSHAP) or ``"path"``
    (:meth:`LightGBMChurn.path_contributions`, much faster on large bases).
    """
    out, index = reason_arrays(model, X, n, risk_only=risk_only, method=method)
    return pd.DataFrame(out, index=index)


def reason_arrays(model: LightGBMChurn, X: pd.DataFrame, n: int = 3, *, risk_only: bool = False,
                  method: str = "shap") -> tuple[dict[str, np.ndarray], pd.Index]:
    """:func:`top_reasons` as plain NumPy columns (texts as object arrays) and the index, without
    building a DataFrame (whose string columns pandas would convert): what scoring uses."""
    out, index, _ = reasons_and_probability(model, X, n, risk_only=risk_only, method=method)
    return out, index


def reasons_and_probability(model: LightGBMChurn, X: pd.DataFrame, n: int = 3, *, risk_only: bool = False,
                            method: str = "shap", text: str = "object"
                            ) -> tuple[dict[str, Any], pd.Index, np.ndarray | None]:
    """:func:`reason_arrays` plus, with ``method="path"``, the churn probability from the same walk
    of the trees (identical to ``model.predict_proba(X)[:, 1]``; None for ``"shap"``). ``text``: as
    :func:`reason_columns`."""
    if method not in ("shap", "path"):
        raise ValueError(f"reasons method must be 'shap' or 'path', got {method!r}")
    prob = None
    if method == "path":
        Xm = model._prepare(X)
        prob, top, top_values = model.top_path_reasons(Xm, min(n, Xm.shape[1]), risk_only=risk_only)
        columns, index = [str(c) for c in Xm.columns], Xm.index
    else:
        contrib = shap_values(model, X).drop(columns="bias")
        values = contrib.to_numpy()
        top = _paths.top_columns(values, min(n, values.shape[1]), risk_only=risk_only)
        top_values = np.take_along_axis(values, np.maximum(top, 0), axis=1) if values.shape[1] else top * 0.0
        columns, index = list(contrib.columns), contrib.index
    return _reasons_of(model, X, columns, top, top_values, text), index, prob


def linear_reasons(model: Any, X: pd.DataFrame, n: int = 3, *, text: str = "object"
                   ) -> tuple[dict[str, Any], np.ndarray]:
    """The reasons of a :class:`~crmlab.churn.models.LinearChurn` (the features whose log-odds
    contributions push churn up the most, the same texts as LightGBM's) and its churn probability."""
    contrib = model.contributions(X)
    prob = 1.0 / (1.0 + np.exp(-model.log_odds(contrib)))
    top = _paths.top_columns(contrib, min(n, contrib.shape[1]), risk_only=True)
    top_values = np.take_along_axis(contrib, np.maximum(top, 0), axis=1) if contrib.shape[1] else top * 0.0
    return reason_columns(top, top_values, model.features, X[model.features], model.medians, text=text), prob


def blend_reasons(lightgbm: LightGBMChurn, linear: Any, weight: float, X: pd.DataFrame, X_linear: pd.DataFrame,
                  n: int = 3, *, method: str = "path", text: str = "object"
                  ) -> tuple[dict[str, Any] | None, np.ndarray]:
    """The reasons and churn probability of a blend: its log-odds are ``weight`` x LightGBM's plus
    ``1 - weight`` x the logistic regression's, so each feature's contribution is the same mix of
    its two contributions (LightGBM's by ``method``, ``"path"`` or ``"shap"``; ``"none"``: no
    reasons) and they add up to the blend's log-odds exactly. ``X`` is LightGBM's input,
    ``X_linear`` the regression's (its categories as text). ``text``: the reasons as object arrays or
    as pandas ``str`` arrays (``"str"``, what scoring writes; see :func:`reason_columns`).

    With path reasons, a regression on the very same numbers (``X_linear is X``, no category) is not
    evaluated on its own: its terms are computed in the compiled walk of the trees, row by row, with
    NumPy's rounding (the same reasons and probability, bit for bit, without a rows x features matrix)."""
    columns = [str(c) for c in lightgbm.feature_names_in_]
    if method == "path" and X_linear is X and linear.fused_terms(columns, 1 - weight) is not None:
        prob, top, top_values = lightgbm.top_path_reasons(X, min(n, len(columns)), risk_only=True, scale=weight,
                                                          linear=linear)
        return _reasons_of(lightgbm, X, columns, top, top_values, text), prob
    lin = linear.contributions(X_linear)
    lin_log_odds = linear.log_odds(lin)
    if method == "none":
        raw = weight * lightgbm.decision_function(X) + (1 - weight) * lin_log_odds
        return None, 1.0 / (1.0 + np.exp(-raw))
    if linear.features == columns:  # both fitted on the same frame: the same columns in the same order
        lin_cols = lin
    else:
        at = {f: i for i, f in enumerate(linear.features)}
        lin_cols = np.zeros((len(X), len(columns)))
        for j, c in enumerate(columns):
            if c in at:
                lin_cols[:, j] = lin[:, at[c]]
    lin_cols *= 1 - weight  # in place: a chunk of a large base is scored here
    if method == "path":  # one compiled walk of the trees, the regression's part added feature by feature
        prob, top, top_values = lightgbm.top_path_reasons(X, min(n, len(columns)), risk_only=True, scale=weight,
                                                          extra=lin_cols, extra_raw=(1 - weight) * lin_log_odds)
        return _reasons_of(lightgbm, X, columns, top, top_values, text), prob
    trees = lightgbm.contributions(X)
    values = weight * trees[columns].to_numpy() + lin_cols
    raw = weight * trees.to_numpy().sum(axis=1) + (1 - weight) * lin_log_odds
    top = _paths.top_columns(values, min(n, values.shape[1]), risk_only=True)
    top_values = np.take_along_axis(values, np.maximum(top, 0), axis=1) if values.shape[1] else top * 0.0
    return _reasons_of(lightgbm, X, columns, top, top_values, text), 1.0 / (1.0 + np.exp(-raw))


def _reasons_of(model: LightGBMChurn, X: pd.DataFrame, columns: list[str], top: np.ndarray, top_values: np.ndarray,
                text: str) -> dict[str, Any]:
    """:func:`reason_columns` of LightGBM's features, each row's values at its top columns read at
    once from the model's input when that is one float matrix (no column-by-column lookups)."""
    Xf = feature_frame(X)[columns]
    at_top = None
    matrix = _paths.float_block(Xf) if len(Xf) else None  # None with a category among the features
    if matrix is not None:
        at_top = matrix[np.arange(len(Xf))[:, None], np.maximum(top, 0)] if top.shape[1] else top * 0.0
    return reason_columns(top, top_values, columns, Xf, model.feature_medians_, at_top=at_top, text=text)


def reason_columns(top: np.ndarray, top_values: np.ndarray, columns: list[str], Xf: pd.DataFrame,
                   feature_medians: dict[str, float], *, at_top: np.ndarray | None = None,
                   text: str = "object") -> dict[str, Any]:
    """``reason_<j>``, ``feature_<j>``, ``contribution_<j>`` from each row's top feature indexes and
    contributions: a number "high"/"low" against its training median, a category by its value.
    ``at_top`` (optional): each row's values at its top columns (``Xf``'s numbers), which spares
    reading them from ``Xf`` column by column. ``text="str"``: the reasons as pandas ``str`` arrays
    built from the few distinct texts (what a DataFrame column of them is; no per-row Python object)."""
    names = np.asarray(columns, dtype=object)
    medians = np.array([feature_medians.get(c, np.nan) for c in names], dtype=np.float64)
    is_cat = np.array([c not in feature_medians for c in names])
    # every distinct "<feature><what>" once: numbers " high" / " low" / " missing", categories
    # "=<value>" / " missing"; a reason's text is prefix_text[prefix_base[feature] + its code]
    prefixes: list[str] = []
    prefix_base = np.zeros(len(names), dtype=np.int64)
    cat_codes: dict[int, np.ndarray] = {}
    for c, (name, cat) in enumerate(zip(names, is_cat, strict=True)):
        prefix_base[c] = len(prefixes)
        if cat:
            col_codes, uniques = pd.factorize(Xf.iloc[:, c])
            prefixes += [f"{name}={u}" for u in uniques] + [f"{name} missing"]
            cat_codes[c] = np.where(col_codes < 0, len(uniques), col_codes)
        else:
            prefixes += [f"{name} high", f"{name} low", f"{name} missing"]
    prefix_text = np.array(prefixes, dtype=object)
    out: dict[str, Any] = {}
    for j in range(top.shape[1]):
        ok = top[:, j] >= 0
        cols = np.where(ok, top[:, j], 0)
        v = np.where(ok, top_values[:, j], np.nan)
        if at_top is not None and not is_cat.any():  # every reason a number, its value at hand
            x = at_top[:, j]
            with np.errstate(invalid="ignore"):
                code = np.where(np.isnan(x), 2, np.where(x > medians[cols], 0, 1))
        else:
            code = np.zeros(len(Xf), dtype=np.int64)
            for c in np.unique(cols[ok]):
                at = np.flatnonzero(ok & (cols == c))
                if is_cat[c]:
                    code[at] = cat_codes[c][at]
                else:
                    x = Xf.iloc[at, c].to_numpy(dtype=np.float64, na_value=np.nan)
                    code[at] = np.where(np.isnan(x), 2, np.where(x > medians[c], 0, 1))
        out[f"reason_{j + 1}"] = _texts(prefix_base[cols] + code, v, ok, prefix_text, text)
        out[f"feature_{j + 1}"] = np.where(ok, names[cols], None)
        out[f"contribution_{j + 1}"] = np.where(ok, v, np.nan)
    return out


def _texts(prefix: np.ndarray, v: np.ndarray, ok: np.ndarray, prefix_text: np.ndarray, kind: str = "object") -> Any:
    """``prefix_text[prefix] + " (%+.2f)" % v`` where ``ok``, else None; each distinct text is
    formatted once (a customer base has few: prefix x contribution in hundredths), except values
    within a hair of a half-hundredth, formatted one by one so the rounding is exactly printf's.
    ``kind="str"``: a pandas ``str`` array (Arrow), taken from the distinct texts in one step."""
    n = len(v)
    pick = np.full(n, -1, dtype=np.int64)  # each row's text in `table`; -1: None
    table: list[str] = []
    if ok.any():
        cents = np.where(ok, v, 0.0) * 100
        lower = np.floor(cents)
        tie = ok & (np.abs(cents - lower - 0.5) < 1e-6)
        easy = ok & ~tie
        hundredths = np.rint(cents).astype(np.int64)
        # "-0.00" and "+0.00" differ: the sign is part of the key
        code = hundredths * 2 + np.signbit(v)
        code -= code[easy].min() if easy.any() else 0
        key = prefix * (int(code[easy].max()) + 1 if easy.any() else 1) + code
        at = np.flatnonzero(easy)
        # distinct keys by hashing (any row of a key formats to the same text: its value is not near a tie)
        inverse, uniques = pd.factorize(key[at])
        first = np.full(len(uniques), len(at), dtype=np.int64)
        np.minimum.at(first, inverse, np.arange(len(at)))
        table = [f"{prefix_text[p]} ({x:+.2f})" for p, x in zip(prefix[at[first]], v[at[first]], strict=True)]
        pick[at] = inverse
        for i in np.flatnonzero(tie):
            pick[i] = len(table)
            table.append(f"{prefix_text[prefix[i]]} ({v[i]:+.2f})")
    if kind == "str":
        return text_column(table, pick)
    text = np.full(n, None, dtype=object)
    if table:
        text[pick >= 0] = np.array(table, dtype=object)[pick[pick >= 0]]
    return text
