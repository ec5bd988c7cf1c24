"""A LightGBM challenger to BG/NBD x Gamma-Gamma: a regressor of a customer's spend in the holdout
from the shared customer features at the end of calibration, judged on the same holdout by the same
code (:func:`crmlab.clv.evaluate.spend_metrics`).

Trained honestly: the regressor never sees the holdout. It learns from an earlier window that ends
at ``calibration_end``: features at ``t0 = calibration_end - L``, target = net spend in
``(t0, calibration_end]``, then predicts holdout spend from the features at ``calibration_end``.
``L`` is the holdout length when the data before ``calibration_end`` are at least twice that long;
otherwise (CDNOW's paper split: 39 weeks of calibration, 39 of holdout) ``L`` is half the history
before ``calibration_end`` and the predictions are scaled by ``holdout / L`` (a constant spend rate,
which the report states).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from crmlab.clv.evaluate import spend_metrics
from crmlab.config import ProjectConfig
from crmlab.features import build_features_from_tables, calibration_holdout_split

__all__ = ["LGBM_PARAMS", "SpendChallenger", "compare_spend_models", "fit_challenger", "predict_challenger"]

log = logging.getLogger(__name__)

#: Fixed, modest settings: deterministic on 2 threads for a given seed (no tuning on the holdout).
LGBM_PARAMS: dict[str, Any] = {
    "objective": "regression",
    "n_estimators": 300,
    "learning_rate": 0.03,
    "num_leaves": 15,
    "min_child_samples": 40,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.8,
    "reg_lambda": 1.0,
    "num_threads": 2,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
MIN_TRAIN_CUSTOMERS = 50
# metric -> whether higher is better
_DIRECTION = {"mae": False, "rmse": False, "spearman": True, "total_pct_error": False,
              "top_decile_share": True, "gini": True}


@dataclass
class SpendChallenger:
    """A fitted challenger: the LightGBM model and the window it learnt from."""

    model: Any
    feature_names: list[str]
    train_as_of: date
    target_days: int
    holdout_days: int
    n_train: int
    seed: int

    @property
    def scale(self) -> float:
        """Holdout length / training target length: 1 unless the history was too short."""
        return self.holdout_days / self.target_days

    def report(self) -> dict[str, Any]:
        return {
            "model": "lightgbm.LGBMRegressor",
            "params": {**LGBM_PARAMS, "random_state": self.seed},
            "train_features_as_of": self.train_as_of.isoformat(),
            "target_days": self.target_days,
            "holdout_days": self.holdout_days,
            "prediction_scale": self.scale,
            "n_train_customers": self.n_train,
            "n_features": len(self.feature_names),
        }

    def importance(self) -> pd.DataFrame:
        booster = self.model.booster_
        return (pd.DataFrame({"feature": self.feature_names,
                              "gain": booster.feature_importance(importance_type="gain"),
                              "splits": booster.feature_importance(importance_type="split")})
                .sort_values("gain", ascending=False, kind="stable").reset_index(drop=True))


def _feature_matrix(feats: pd.DataFrame, columns: Sequence[str] | None = None) -> pd.DataFrame:
    X = feats.drop(columns=["customer_id"])
    if columns is None:
        return X
    missing = [c for c in columns if c not in X.columns]
    for c in missing:  # an interaction kind not seen at this date: none of that kind
        X[c] = 0 if c.startswith("interaction_") else np.nan
    return X[list(columns)]


def fit_challenger(tables: Any, project: ProjectConfig, window: Any, *, seed: int) -> SpendChallenger | None:
    """Fit the LightGBM spend regressor on the window before ``calibration_end``; None (with a
    warning) when there is too little history or too few customers to learn from."""
    from lightgbm import LGBMRegressor

    holdout_days = window.holdout_days
    history = (window.calibration_end - window.first_date).days
    target_days = min(holdout_days, history // 2)
    if target_days < 7:
        log.warning("challenger skipped: only %d days of history before calibration_end=%s",
                     history, window.calibration_end)
        return None
    t0 = window.calibration_end - timedelta(days=target_days)
    if target_days < holdout_days:
        log.warning("challenger: the history before calibration_end=%s is shorter than twice the holdout; it learns "
                    "spend over %d days from features at %s and its predictions are scaled by %.3g",
                    window.calibration_end, target_days, t0, holdout_days / target_days)
    target = calibration_holdout_split(tables.transactions, calibration_end=t0, holdout_end=window.calibration_end,
                                       calibration_start=window.calibration_start, time_unit=project.time_unit)
    if len(target) < MIN_TRAIN_CUSTOMERS:
        log.warning("challenger skipped: %d customers with a purchase by %s (need %d)", len(target), t0,
                    MIN_TRAIN_CUSTOMERS)
        return None
    feats = build_features_from_tables(tables, as_of=t0, cfg=project)
    feats = feats.merge(target[["customer_id", "amount_sum_holdout"]], on="customer_id", how="inner")
    X = _feature_matrix(feats.drop(columns=["amount_sum_holdout"]))
    y = feats["amount_sum_holdout"].to_numpy(dtype=np.float64)
    model = LGBMRegressor(**LGBM_PARAMS, random_state=seed).fit(X, y)
    return SpendChallenger(model, list(X.columns), t0, target_days, holdout_days, len(feats), seed)


def predict_challenger(challenger: SpendChallenger, tables: Any, project: ProjectConfig, window: Any,
                       customer_ids: Sequence[str] | pd.Series) -> np.ndarray:
    """Predicted holdout spend for ``customer_ids`` (in their order) from the features at
    ``calibration_end``, scaled to the holdout length."""
    feats = build_features_from_tables(tables, as_of=window.calibration_end, cfg=project)
    ids = pd.Series(np.asarray(customer_ids), dtype="str")
    feats = feats.set_index(feats["customer_id"].astype("str")).reindex(ids)
    if feats["customer_id"].isna().any():
        missing = ids[feats["customer_id"].isna().to_numpy()].iloc[0]
        raise ValueError(f"customer {missing!r} of the holdout cohort has no features at {window.calibration_end}")
    X = _feature_matrix(feats.reset_index(drop=True), challenger.feature_names)
    return challenger.model.predict(X) * challenger.scale


def compare_spend_models(actual: np.ndarray, predictions: Mapping[str, np.ndarray]
                         ) -> tuple[pd.DataFrame, dict[str, dict[str, float]]]:
    """Side-by-side spend metrics of each model and, per metric, which model wins (lower MAE, RMSE
    and absolute total % error; higher Spearman, top-decile share and Gini)."""
    scores = {name: spend_metrics(actual, pred) for name, pred in predictions.items()}
    rows = []
    for metric, higher in _DIRECTION.items():
        values = {name: s[metric] for name, s in scores.items()}
        keyed = {n: (abs(v) if metric == "total_pct_error" else v) for n, v in values.items() if np.isfinite(v)}
        winner = (max if higher else min)(keyed, key=keyed.get) if keyed else None
        rows.append({"metric": metric, **values, "better": "higher" if higher else "lower", "winner": winner})
    return pd.DataFrame(rows), scores
