"""The CLV pipeline's value types (window, settings, fitted models, the training's result) and its column contract."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd

from crmlab.clv.purchase import TransactionModel
from crmlab.clv.shared import UNITS_PER_MONTH
from crmlab.clv.spend import SpendModel
from crmlab.config import ClvConfig, ProjectConfig
from crmlab.errors import ModelError
from crmlab.features import RFM_COLUMNS
from crmlab.training import TrainingResult

#: The model inputs, in the order of the bundle manifest and the pyfunc signature.
FEATURES: list[str] = list(RFM_COLUMNS)


INPUT_COLUMNS: list[str] = ["customer_id", *FEATURES]


TRANSACTION_COLUMNS: list[str] = ["customer_id", "ts", "amount"]


OUTPUT_COLUMNS: list[str] = ["customer_id", "p_alive", "expected_purchases", "expected_spend", "clv"]


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

    @classmethod
    def from_config(cls, clv: ClvConfig, project: ProjectConfig) -> ClvSettings:
        return cls(clv.horizon_months, clv.discount_rate_monthly, clv.margin, project.time_unit)

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClvSettings:
        try:
            settings = cls(int(data["horizon_months"]), float(data["discount_rate_monthly"]),
                           float(data["margin"]), str(data["time_unit"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"CLV bundle: the 'clv' settings are incomplete or invalid ({exc!r}); retrain") from None
        if settings.time_unit not in UNITS_PER_MONTH:
            raise ModelError(f"CLV bundle: time_unit={settings.time_unit!r} is not one of {list(UNITS_PER_MONTH)}")
        return settings


@dataclass(frozen=True)
class ClvModels:
    """A fitted purchase model and spend model, and notes on any fallback that chose them
    (:mod:`crmlab.clv.fallback`)."""

    transaction: TransactionModel
    spend: SpendModel
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"transaction_model": self.transaction.to_dict(), "spend_model": self.spend.to_dict()}

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
