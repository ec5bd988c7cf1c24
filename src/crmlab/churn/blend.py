"""The blend of LightGBM and the logistic regression, and the repeated cross-validation that chooses between models.

The blend's churn log-odds are ``w * LightGBM's + (1 - w) * the logistic regression's``: two models
that err differently (trees draw steps and interactions, the regression draws slopes) average out
part of each other's error. ``w`` is chosen by ROC AUC on predictions out of fold
(:func:`blend_weight`), never on the rows the blend is judged on.

:func:`cross_validate` repeats a stratified k-fold split of the training part (contract mode): each
model is fitted on k-1 folds and judged on the last, for every fold of every repeat; the blend of a
fold uses a ``w`` chosen on the out-of-fold predictions of the other folds of the same repeat, so
its figure is as honest as the others'. :func:`corrected_interval` compares two models over those
folds with the corrected resampled t-test (Nadeau and Bengio 2003; Bouckaert and Frank 2004):
the folds share training rows, so the plain standard error would be too small.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from crmlab.churn.models import LightGBMChurn, LogisticChurn, inner_lightgbm

__all__ = ["BlendChurn", "CrossValidation", "blend_weight", "corrected_interval", "cross_validate", "log_odds",
           "repeats_for"]

#: The weights :func:`blend_weight` tries: LightGBM's share of the log-odds.
WEIGHTS = np.round(np.linspace(0.0, 1.0, 21), 2)
#: Training rows up to which ``cv_repeats: auto`` repeats the cross-validation three times.
AUTO_REPEAT_ROWS = 20_000


def log_odds(model: Any, X: pd.DataFrame) -> np.ndarray:
    """A churn model's log-odds: LightGBM's raw score (before any calibration), else the logit of its probability."""
    if isinstance(model, BlendChurn):
        return model.decision_function(X)
    inner = inner_lightgbm(model)
    if isinstance(inner, LightGBMChurn):
        return inner.decision_function(X)
    p = np.clip(model.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
    return np.log(p / (1 - p))


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score)) if np.unique(y).size == 2 else math.nan


def blend_weight(y: Any, lightgbm: np.ndarray, logistic: np.ndarray) -> float:
    """LightGBM's weight in the blend: the one of :data:`WEIGHTS` with the best ROC AUC of
    ``w * lightgbm + (1 - w) * logistic`` (log-odds) on these rows; among equals the nearest to 0.5."""
    y = np.asarray(y)
    aucs = np.array([_auc(y, w * lightgbm + (1 - w) * logistic) for w in WEIGHTS])
    if not np.isfinite(aucs).any():
        return 0.5
    best = np.flatnonzero(aucs >= np.nanmax(aucs) - 1e-12)
    return float(WEIGHTS[best[np.argmin(np.abs(WEIGHTS[best] - 0.5))]])


class BlendChurn:
    """A fitted blend: ``w`` x the LightGBM's log-odds (uncalibrated) + ``(1 - w)`` x the logistic regression's."""

    def __init__(self, lightgbm: Any, logistic: LogisticChurn, weight: float) -> None:
        self.lightgbm = lightgbm
        self.logistic = logistic
        self.weight = float(weight)
        self.classes_ = np.array([0, 1])

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        return {"weight": self.weight}

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return self.weight * log_odds(self.lightgbm, X) + (1 - self.weight) * log_odds(self.logistic, X)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int8)


def repeats_for(setting: int | str, n_rows: int) -> int:
    """``churn.cv_repeats``: a number as it is; auto: 3 up to :data:`AUTO_REPEAT_ROWS` rows, else 1."""
    if setting != "auto":
        return int(setting)
    return 3 if n_rows <= AUTO_REPEAT_ROWS else 1


@dataclass
class CrossValidation:
    """The repeated cross-validation of the training part: each model's ROC AUC per fold (rows: one
    per fold and repeat, columns: models), the folds' test share, and the blend's weight chosen on
    every out-of-fold prediction (the one the shipped blend uses)."""

    aucs: pd.DataFrame
    folds: int
    repeats: int
    test_share: float
    weight: float | None = None
    weights: list[float] = field(default_factory=list)

    def mean(self, model: str) -> float:
        return float(self.aucs[model].mean())

    def sd(self, model: str) -> float:
        return float(self.aucs[model].std(ddof=1)) if len(self.aucs) > 1 else math.nan

    def compare(self, a: str, b: str) -> dict[str, float]:
        """``a``'s mean ROC AUC minus ``b``'s over the folds, with its corrected 95% interval and p-value."""
        return corrected_interval(self.aucs[a].to_numpy() - self.aucs[b].to_numpy(), self.test_share)


def corrected_interval(diff: np.ndarray, test_share: float, level: float = 0.95) -> dict[str, float]:
    """Mean of per-fold differences, its 95% interval and two-sided p-value by the corrected resampled
    t-test: variance ``(1/J + n_test/n_train) * s^2`` over the ``J`` folds of all repeats, ``J - 1``
    degrees of freedom (Nadeau and Bengio 2003, as Bouckaert and Frank 2004 apply it to repeated k-fold)."""
    from scipy import stats

    d = np.asarray(diff, dtype=np.float64)
    d = d[np.isfinite(d)]
    j = d.size
    mean = float(d.mean()) if j else math.nan
    if j < 2:
        return {"diff": mean, "low": math.nan, "high": math.nan, "p_value": math.nan}
    var = (1 / j + test_share / (1 - test_share)) * float(d.var(ddof=1))
    if var <= 0:
        return {"diff": mean, "low": mean, "high": mean, "p_value": 0.0 if mean else 1.0}
    se = math.sqrt(var)
    q = float(stats.t.ppf(0.5 + level / 2, j - 1))
    p = float(2 * stats.t.sf(abs(mean) / se, j - 1))
    return {"diff": mean, "low": mean - q * se, "high": mean + q * se, "p_value": p}


def cross_validate(X: pd.DataFrame, y: Any, specs: Mapping[str, Callable[[], Any]], *, folds: int, repeats: int,
                   seed: int, blend: bool) -> CrossValidation | None:
    """Repeated stratified k-fold ROC AUC of each model (``specs``: name -> a function making an
    unfitted model) on ``X, y``; with ``blend`` (and both ``lightgbm`` and ``logistic`` in ``specs``)
    the blend too (module doc). Fewer folds than asked when the rarer class has fewer rows; None
    when not even two are possible."""
    from sklearn.model_selection import RepeatedStratifiedKFold

    y = np.asarray(y, dtype=np.int8)
    folds = min(folds, int(np.bincount(y, minlength=2).min()))
    if folds < 2:
        return None
    blend = blend and {"lightgbm", "logistic"} <= set(specs)
    rows: list[dict[str, float]] = []
    pooled: dict[str, list[np.ndarray]] = {"lightgbm": [], "logistic": [], "y": []}
    weights: list[float] = []
    splitter = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    splits = list(splitter.split(np.zeros(len(y)), y))
    for r in range(repeats):
        oof = {name: np.full(len(y), np.nan) for name in specs}
        part = splits[r * folds:(r + 1) * folds]
        fold_rows = []
        for tr, va in part:
            row: dict[str, float] = {}
            for name, make in specs.items():
                model = make().fit(X.iloc[tr], y[tr])
                oof[name][va] = log_odds(model, X.iloc[va])
                row[name] = _auc(y[va], oof[name][va])
            fold_rows.append(row)
        if blend:
            for (_, va), row in zip(part, fold_rows, strict=True):
                rest = np.ones(len(y), dtype=bool)
                rest[va] = False
                w = blend_weight(y[rest], oof["lightgbm"][rest], oof["logistic"][rest])
                weights.append(w)
                row["blend"] = _auc(y[va], w * oof["lightgbm"][va] + (1 - w) * oof["logistic"][va])
            pooled["lightgbm"].append(oof["lightgbm"])
            pooled["logistic"].append(oof["logistic"])
            pooled["y"].append(y)
        rows.extend(fold_rows)
    weight = None
    if blend:
        weight = blend_weight(np.concatenate(pooled["y"]), np.concatenate(pooled["lightgbm"]),
                              np.concatenate(pooled["logistic"]))
    return CrossValidation(pd.DataFrame(rows), folds, repeats, 1 / folds, weight, weights)
