"""The CLV pipeline's value types (window, settings, fitted models, the training's result) and its column contract."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from crmlab.clv.purchase import TransactionModel
from crmlab.clv.shared import UNITS_PER_MONTH, feature_matrix
from crmlab.clv.spend import SpendModel
from crmlab.config import ClvConfig, ProjectConfig
from crmlab.errors import ModelError
from crmlab.features import RFM_COLUMNS
from crmlab.training import TrainingResult

#: The model inputs, in the order of the bundle manifest and the pyfunc signature.
FEATURES: list[str] = list(RFM_COLUMNS)


INPUT_COLUMNS: list[str] = ["customer_id", *FEATURES]


TRANSACTION_COLUMNS: list[str] = ["customer_id", "ts", "amount"]


OUTPUT_COLUMNS: list[str] = ["customer_id", "p_alive", "expected_purchases", "expected_spend", "clv", "clv_low",
                              "clv_high"]


MAX_FREQUENCY = 7  # the conditional-expectation table and the histogram run 0..7+


@dataclass(frozen=True)
class ClvWindow:
    """The dates of one training: the data, the calibration period and the holdout.

    The cohort is the customers whose first purchase is in ``[calibration_start, calibration_end]``
    (no lower bound when ``calibration_start`` is None); the holdout is ``(calibration_end,
    holdout_end]``; the exported model is refitted on everything on or before ``as_of``.
    """

    first_date: date
    last_date: date
    as_of: date
    calibration_start: date | None
    calibration_end: date
    holdout_end: date
    time_unit: str
    holdout_weeks: int | None = None
    notes: tuple[str, ...] = ()

    @property
    def holdout_days(self) -> int:
        return (self.holdout_end - self.calibration_end).days

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_date": self.first_date.isoformat(),
            "last_date": self.last_date.isoformat(),
            "as_of": self.as_of.isoformat(),
            "calibration_start": self.calibration_start.isoformat() if self.calibration_start else None,
            "calibration_end": self.calibration_end.isoformat(),
            "holdout_end": self.holdout_end.isoformat(),
            "time_unit": self.time_unit,
            "holdout_weeks": self.holdout_weeks,
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class ClvSettings:
    """How fitted models turn into scores: the CLV horizon, discount, margin and time unit."""

    horizon_months: int = 12
    discount_rate_monthly: float = 0.01
    margin: float = 1.0
    time_unit: str = "W"
    interval: float = 0.8

    @classmethod
    def from_config(cls, clv: ClvConfig, project: ProjectConfig) -> ClvSettings:
        return cls(clv.horizon_months, clv.discount_rate_monthly, clv.margin, project.time_unit, clv.interval)

    @property
    def horizon_days(self) -> int:
        """The horizon in whole days (a month is 30.4375 days)."""
        return int(round(self.horizon_months * UNITS_PER_MONTH["D"]))

    @property
    def horizon_units(self) -> float:
        """The horizon in the model's time unit (a month is 30.4375 days)."""
        return self.horizon_months * UNITS_PER_MONTH[self.time_unit]

    def to_dict(self) -> dict[str, Any]:
        return {
            "horizon_months": int(self.horizon_months),
            "discount_rate_monthly": float(self.discount_rate_monthly),
            "margin": float(self.margin),
            "time_unit": self.time_unit,
            "interval": float(self.interval),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClvSettings:
        try:
            settings = cls(int(data["horizon_months"]), float(data["discount_rate_monthly"]),
                           float(data["margin"]), str(data["time_unit"]), float(data.get("interval", 0.8)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"CLV bundle: the 'clv' settings are incomplete or invalid ({exc!r}); retrain") from None
        if not 0.0 < settings.interval < 1.0:
            raise ModelError(f"CLV bundle: interval={settings.interval!r} must be between 0 and 1; retrain")
        if settings.time_unit not in UNITS_PER_MONTH:
            raise ModelError(f"CLV bundle: time_unit={settings.time_unit!r} is not one of {list(UNITS_PER_MONTH)}")
        return settings


@dataclass(frozen=True)
class ShippedPurchases:
    """Which model predicts each customer's expected purchases: the parametric purchase model
    (``weight`` 1), the LightGBM challenger (``name`` "lightgbm", ``weight`` 0) or their blend
    (``weight`` on the parametric model), and why (:func:`crmlab.clv.evaluate.choose_shipped`).
    ``booster`` predicts purchase periods over ``target_days`` from the shared features in
    ``feature_names``; ``scale`` turns that into the CLV horizon."""

    name: str
    weight: float = 1.0
    because: str = ""
    booster: Any = None
    feature_names: tuple[str, ...] = ()
    scale: float = 1.0
    target_days: int | None = None
    feature_windows: tuple[int, ...] = ()

    @property
    def uses_lightgbm(self) -> bool:
        return self.weight < 1.0

    def challenger_purchases(self, feats: pd.DataFrame) -> np.ndarray:
        """LightGBM's expected purchases over the horizon for each row of a shared features frame."""
        missing = [c for c in self.feature_names if c not in feats.columns and not c.startswith("interaction_")]
        if missing:
            raise ModelError(
                f"CLV scoring input: the shipped purchase model ({self.name}) needs the shared customer features; "
                f"missing {missing[:8]}{' ...' if len(missing) > 8 else ''} (pass the frame of "
                "crmlab.features.build_features_from_tables, as crmlab score does)")
        X = feature_matrix(feats, list(self.feature_names))
        for col in X.columns:  # text attributes (MLflow's schema has no categories): LightGBM maps the levels
            if X[col].dtype == object or isinstance(X[col].dtype, pd.StringDtype):
                X[col] = X[col].astype("category")
        try:
            return self.booster.predict(X) * self.scale
        except Exception as exc:  # LightGBM's own errors (a text column where it learnt numbers, ...)
            kinds = {c: str(X[c].dtype) for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])}
            raise ModelError(f"CLV scoring input: the shipped purchase model ({self.name}) cannot read the features "
                             f"({type(exc).__name__}: {str(exc)[:200]}); non-numeric columns: {kinds}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "weight": float(self.weight), "because": self.because,
                "feature_names": list(self.feature_names), "scale": float(self.scale),
                "target_days": self.target_days, "feature_windows": list(self.feature_windows)}


@dataclass(frozen=True)
class ClvModels:
    """A fitted purchase model and spend model, notes on any fallback that chose them
    (:mod:`crmlab.clv.fallback`) and, when it is not the purchase model alone, the shipped model of
    expected purchases."""

    transaction: TransactionModel
    spend: SpendModel
    notes: tuple[str, ...] = ()
    purchases: ShippedPurchases | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"transaction_model": self.transaction.to_dict(), "spend_model": self.spend.to_dict()}

    @property
    def shipped(self) -> str:
        """The purchase model that predicts expected purchases (the purchase model's kind, lightgbm or blend)."""
        return self.transaction.kind if self.purchases is None else self.purchases.name

    @property
    def label(self) -> str:
        """What shipped, e.g. ``bgnbd + gamma_gamma`` or ``nbd + mean``."""
        return f"{self.transaction.kind} + {self.spend.kind}"

    def spec(self, clv: ClvConfig) -> ClvConfig:
        """``clv`` with the model kinds and penalties of these models (to refit the same specification)."""
        return clv.model_copy(update={"model": self.transaction.kind, "penalizer": float(self.transaction.penalizer),
                                      "spend_model": self.spend.kind, "gg_penalizer": float(self.spend.penalizer)})


@dataclass(kw_only=True)
class ClvResult(TrainingResult):
    """Everything one training produced (what the CLI prints and the tests check): ``split`` is the
    calibration/holdout split, ``final_rfm`` the RFM of all customers the shipped models were refitted
    on, ``challenger_report`` and ``challenger_importance`` the LightGBM spend challenger's (when run)."""

    window: ClvWindow
    settings: ClvSettings
    calibration_models: ClvModels
    models: ClvModels
    holdout: pd.DataFrame
    conditional_expectations: pd.DataFrame
    scores: pd.DataFrame
    split: Any
    final_rfm: pd.DataFrame
    comparison: pd.DataFrame | None = None
    challenger: Any = None
    challenger_report: dict[str, Any] | None = None
    challenger_importance: pd.DataFrame | None = None
    purchase_leaderboard: pd.DataFrame | None = None
    conditional_expectations_by_model: pd.DataFrame | None = None
    purchase_challenger: Any = None
    shipped: str | None = None
    shipped_because: str | None = None

    @property
    def notes(self) -> list[str]:
        """What was derived or fell back: the window's notes, then the calibration's and the final fit's."""
        return run_notes(self.window, self.calibration_models, self.models)

    def summary(self) -> list[str]:
        """A few lines for the CLI: the fitted model, the holdout figures, the challenger's verdict."""
        m, w = self.metrics, self.window
        params = ", ".join(f"{k}={v:.4g}" for k, v in named_params(self.models).items())
        lines = [
            f"{self.models.label} refitted to {w.as_of} on "
            f"{int(self.models.transaction.report_['n_customers']):,} customers: {params}",
            f"holdout {w.calibration_end} -> {w.holdout_end}: purchases MAE {m['purchases_mae']:.3f}, "
            f"total {m['purchases_total_predicted']:,.0f} predicted vs {m['purchases_total_actual']:,.0f} actual "
            f"({m['purchases_total_pct_error']:+.1f}%); spend Gini {m['spend_gini']:.3f}, "
            f"top-decile share {m['spend_top_decile_share']:.1%}",
        ]
        if self.shipped is not None:
            lines.append(f"expected purchases shipped: {self.shipped}: {self.shipped_because}")
        lines.extend(f"note: {n}" for n in self.notes)
        if self.comparison is not None:
            wins = self.comparison.groupby("winner")["metric"].apply(lambda s: ", ".join(s))
            lines.append("challenger comparison: " + "; ".join(f"{k} wins {v}" for k, v in wins.items()))
        lines.append(f"bundle: {self.bundle_path}")
        return lines


def run_notes(window: ClvWindow, calibration: ClvModels, final: ClvModels) -> list[str]:
    """What one training derived or fell back on: the window's notes, then the calibration fit's and
    the final fit's (:mod:`crmlab.clv.fallback`)."""
    return [*window.notes, *(f"calibration fit: {n}" for n in calibration.notes),
            *(f"final fit: {n}" for n in final.notes)]


def named_params(models: ClvModels) -> dict[str, float]:
    prefix = "gg_" if models.spend.kind == "gamma_gamma" else "spend_"
    return {**models.transaction.params_, **{f"{prefix}{k}": v for k, v in models.spend.params_.items()}}
