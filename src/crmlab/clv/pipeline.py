"""The CLV pipeline: calibrate, evaluate on a holdout, refit, export, track; and score from a bundle.

Steps are pure functions named with verbs; :func:`train_clv` only wires them::

    prepare_data -> resolve_window -> split_calibration_holdout -> fit_models (calibration)
      -> predict_holdout -> evaluate_holdout (+ challenger on the same holdout)
      -> fit_models (all data up to as_of) -> score_rfm -> export_bundle -> log_training

Evaluation follows Fader, Hardie and Lee (2005a, "Counting Your Customers the Easy Way"): the models
are fitted on the purchase histories of a cohort up to ``calibration_end`` and judged on what the
same customers do in the ``holdout_weeks`` after it (per-customer error, the conditional
expectations by calibration frequency, the tracking of cumulative repeat purchases). The exported
model is then refitted on every customer's history up to ``as_of``.

:func:`score_clv` is what batch scoring and the MLflow pyfunc call: it loads only the JSON
parameters of a bundle (no pickles) and returns one row per customer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab.clv.evaluate import conditional_expectation_table, point_metrics, spend_metrics
from crmlab.clv.fallback import fit_purchase_model, fit_spend_model
from crmlab.clv.models import UNITS_PER_MONTH, SpendModel, TransactionModel, customer_lifetime_value
from crmlab.config import ClvConfig, CrmlabConfig, ProjectConfig, config_hash
from crmlab.errors import ConfigError, DataError, ModelError
from crmlab.export import Bundle, as_bundle, load_bundle, write_bundle
from crmlab.features import RFM_COLUMNS, calibration_holdout_split, rfm_summary
from crmlab.registry import check_evaluation
from crmlab.utils import Step, ids_unique, no_step
from crmlab.tracking import Run, Tracker
from crmlab.training import TrainingResult, register_pyfunc, training_run
from crmlab.workflow import prepare_data

__all__ = [
    "FEATURES",
    "INPUT_COLUMNS",
    "OUTPUT_COLUMNS",
    "REGISTERED_MODEL_NAME",
    "ClvModels",
    "ClvResult",
    "ClvSettings",
    "ClvWindow",
    "cumulative_repeat_purchases",
    "evaluate_bundle",
    "evaluate_holdout",
    "export_bundle",
    "fit_models",
    "log_training",
    "predict_holdout",
    "resolve_window",
    "run_notes",
    "score_clv",
    "score_rfm",
    "spend_metrics",
    "split_calibration_holdout",
    "train_clv",
]

#: The model inputs, in the order of the bundle manifest and the pyfunc signature.
FEATURES: list[str] = list(RFM_COLUMNS)
INPUT_COLUMNS: list[str] = ["customer_id", *FEATURES]
TRANSACTION_COLUMNS: list[str] = ["customer_id", "ts", "amount"]
OUTPUT_COLUMNS: list[str] = ["customer_id", "p_alive", "expected_purchases", "expected_spend", "clv"]
REGISTERED_MODEL_NAME = "crmlab-clv"
MAX_FREQUENCY = 7  # the conditional-expectation table and the histogram run 0..7+

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- small value types


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
        params = ", ".join(f"{k}={v:.4g}" for k, v in _named_params(self.models).items())
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


# --------------------------------------------------------------------------- steps


def run_notes(window: ClvWindow, calibration: ClvModels, final: ClvModels) -> list[str]:
    """What one training derived or fell back on: the window's notes, then the calibration fit's and
    the final fit's (:mod:`crmlab.clv.fallback`)."""
    return [*window.notes, *(f"calibration fit: {n}" for n in calibration.notes),
            *(f"final fit: {n}" for n in final.notes)]


def _local_days(ts: pd.Series) -> pd.Series:
    """Calendar day of each timestamp (local date of time-zone-aware ones), as datetime64 midnight."""
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)
    return ts.dt.normalize()


#: Holdout length when ``clv.holdout_weeks`` is auto and the data are long enough (FHL 2005a's split).
DEFAULT_HOLDOUT_WEEKS = 39
#: An auto holdout is at most this share of the data's span, so calibration keeps the rest.
MAX_HOLDOUT_SHARE = 1 / 3


def _is_auto(value: Any) -> bool:
    return value is None or value == "auto"


def resolve_window(clv: ClvConfig, transactions: pd.DataFrame, as_of: date, time_unit: str) -> ClvWindow:
    """The calibration and holdout dates, derived from the data unless the config fixes them.

    * ``calibration_end`` auto: ``as_of - holdout``; the holdout ends on ``as_of`` (nothing after
      the cut-off is used).
    * ``holdout_weeks`` auto: 39 weeks, or a third of the span from the first transaction to
      ``as_of`` when that is shorter (to the weeks between an explicit ``calibration_end`` and
      ``as_of`` when those are fewer); the window's ``notes`` say so.
    * ``calibration_start`` auto: no lower bound (the cohort starts with the first transaction).

    Explicit values win, and fail with a ConfigError when they cannot fit in the data."""
    if transactions is None or transactions.empty:
        raise DataError("the CLV pipeline needs a transactions table with rows", column="ts")
    days = _local_days(transactions["ts"])
    past = days[days <= pd.Timestamp(as_of)]
    if past.empty:
        raise DataError(f"no transaction on or before the cut-off project.as_of={as_of}", column="ts")
    first, last = past.min().date(), past.max().date()
    span_days = (as_of - first).days
    notes: list[str] = []
    explicit_end = None if _is_auto(clv.calibration_end) else clv.calibration_end
    if _is_auto(clv.holdout_weeks):
        room = span_days if explicit_end is None else (as_of - explicit_end).days
        allowed = int(room * MAX_HOLDOUT_SHARE // 7) if explicit_end is None else room // 7
        weeks = min(DEFAULT_HOLDOUT_WEEKS, allowed)
        if weeks < 1:
            if explicit_end is None:
                raise DataError(
                    f"the data span {span_days} days ({first} to project.as_of={as_of}): a CLV calibration and "
                    f"holdout need at least 21 days (a week of holdout after two weeks of calibration)", column="ts")
            raise ConfigError(f"clv.calibration_end={explicit_end} leaves {room} days before project.as_of={as_of}: "
                              "no room for a holdout of a week; set an earlier clv.calibration_end or leave it auto")
        if weeks < DEFAULT_HOLDOUT_WEEKS:
            why = (f"the data span {span_days / 7:.0f} weeks ({first} to {as_of}) and calibration keeps two thirds"
                   if explicit_end is None else f"clv.calibration_end={explicit_end} is {room / 7:.0f} weeks before "
                   f"project.as_of={as_of}")
            notes.append(f"holdout shortened from {DEFAULT_HOLDOUT_WEEKS} to {weeks} weeks: {why}")
            log.info("CLV %s", notes[-1])
    else:
        weeks = int(clv.holdout_weeks)
    holdout = timedelta(days=7 * weeks)
    cal_end = explicit_end or as_of - holdout
    hold_end = cal_end + holdout
    if hold_end > as_of:
        raise ConfigError(
            f"clv.calibration_end={cal_end} plus clv.holdout_weeks={weeks} ends on {hold_end}, after the "
            f"cut-off project.as_of={as_of}: the holdout would need data after the cut-off; set an earlier "
            "clv.calibration_end (or leave it auto for as_of minus the holdout) or fewer clv.holdout_weeks"
        )
    if cal_end <= first:
        what = (f"clv.calibration_end={cal_end}" if explicit_end is not None else
                f"clv.holdout_weeks={weeks} puts the calibration end (project.as_of={as_of} minus the holdout) on {cal_end}, which")
        raise ConfigError(
            f"{what} is on or before the first transaction ({first}): no history to calibrate on; "
            + ("set a later clv.calibration_end or leave it auto" if explicit_end is not None else
               f"the data span {span_days} days: set fewer clv.holdout_weeks (or leave it auto)")
        )
    if last <= cal_end:  # nothing happened in the holdout: every metric would compare with zeros
        raise DataError(
            f"the CLV holdout {cal_end} -> {hold_end} holds no transaction: the last one is on {last}, "
            f"{(as_of - last).days} days before the cut-off project.as_of={as_of}; a model evaluated on no data "
            f"is not exported; set project.as_of on or before {last} (or leave it auto: the last transaction)",
            column="ts")
    if last < as_of:
        notes.append(f"the holdout's last {(as_of - last).days} days (after the last transaction, {last}, up to "
                     f"project.as_of={as_of}) hold no data: customers look inactive there")
        log.warning("CLV %s", notes[-1])
    cal_start = None if _is_auto(clv.calibration_start) else clv.calibration_start
    if cal_start is not None and cal_start > cal_end:
        raise ConfigError(f"clv.calibration_start={cal_start} is after clv.calibration_end={cal_end}")
    return ClvWindow(first, last, as_of, cal_start, cal_end, hold_end, time_unit, weeks, tuple(notes))


def split_calibration_holdout(transactions: pd.DataFrame, window: ClvWindow) -> pd.DataFrame:
    """Calibration RFM (``*_cal``) and holdout outcomes (``*_holdout``) of the cohort, one row per
    customer (:func:`crmlab.features.calibration_holdout_split`)."""
    split = calibration_holdout_split(
        transactions,
        calibration_end=window.calibration_end,
        holdout_end=window.holdout_end,
        calibration_start=window.calibration_start,
        time_unit=window.time_unit,
    )
    if split.empty:
        since = f" since clv.calibration_start={window.calibration_start}" if window.calibration_start else ""
        raise ModelError(f"no customer made a first purchase{since} on or before clv.calibration_end="
                         f"{window.calibration_end}: nothing to calibrate on")
    return split


def calibration_rfm(split: pd.DataFrame) -> pd.DataFrame:
    """The calibration columns of a split under the model's names (frequency, recency, T, monetary_value)."""
    return split[["customer_id", *(f"{c}_cal" for c in FEATURES)]].set_axis(INPUT_COLUMNS, axis=1)


def fit_models(rfm: pd.DataFrame, clv: ClvConfig) -> ClvModels:
    """Fit the configured purchase model (``clv.model``, ``clv.penalizer``) and spend model
    (``clv.spend_model``, ``clv.gg_penalizer``, ``clv.spend_rule``) on one RFM row per customer; with
    ``clv.fallback``, a model that does not fit is replaced as :mod:`crmlab.clv.fallback` says, and
    the returned models carry notes saying so."""
    transaction, notes = fit_purchase_model(rfm["frequency"], rfm["recency"], rfm["T"], clv)
    spend, spend_notes = fit_spend_model(rfm["frequency"], rfm["monetary_value"], clv)
    return ClvModels(transaction, spend, tuple(notes + spend_notes))


def score_rfm(models: ClvModels, rfm: pd.DataFrame, settings: ClvSettings) -> pd.DataFrame:
    """One row per customer: P(alive) at the cut-off, expected purchases over the horizon, expected
    spend per purchase (Gamma-Gamma) and discounted CLV over the horizon (with the margin).

    Rows whose frequency, recency or T is missing (customers without a purchase in a features
    frame) get missing scores; ``monetary_value`` may be missing where ``frequency`` is 0.
    """
    ids = rfm["customer_id"].reset_index(drop=True)  # kept as is: converting text ids to objects is slow
    x = rfm["frequency"].to_numpy(dtype=np.float64, na_value=np.nan)
    tx = rfm["recency"].to_numpy(dtype=np.float64, na_value=np.nan)
    age = rfm["T"].to_numpy(dtype=np.float64, na_value=np.nan)
    m = rfm["monetary_value"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(x) & np.isfinite(tx) & np.isfinite(age)
    m = np.where(ok & (x == 0) & ~np.isfinite(m), 0.0, m)
    out = {name: np.full(len(ids), np.nan) for name in OUTPUT_COLUMNS[1:]}
    if ok.any():
        xo, txo, ageo, mo = x[ok], tx[ok], age[ok], m[ok]
        tm, sm = models.transaction, models.spend
        out["p_alive"][ok] = tm.probability_alive(xo, txo, ageo)
        out["expected_purchases"][ok] = tm.predict_purchases(settings.horizon_units, xo, txo, ageo)
        out["expected_spend"][ok] = sm.conditional_expected_spend(xo, mo)
        out["clv"][ok] = customer_lifetime_value(
            tm, sm, xo, txo, ageo, mo,
            horizon_months=settings.horizon_months,
            discount_rate_monthly=settings.discount_rate_monthly,
            margin=settings.margin,
            time_unit=settings.time_unit,
        )
    return pd.DataFrame({"customer_id": ids, **out})


def predict_holdout(models: ClvModels, split: pd.DataFrame) -> pd.DataFrame:
    """Per cohort customer: actual and predicted holdout purchases and spend.

    Predicted spend = expected holdout purchases x expected spend per purchase (Gamma-Gamma);
    actual spend is the customer's net holdout amount (returns subtracted).
    """
    duration = float(split["duration_holdout"].iloc[0])
    x, tx, age = split["frequency_cal"], split["recency_cal"], split["T_cal"]
    purchases = models.transaction.predict_purchases(duration, x, tx, age)
    spend = models.spend.conditional_expected_spend(x, split["monetary_value_cal"])
    return pd.DataFrame({
        "customer_id": split["customer_id"].to_numpy(),
        "frequency_cal": split["frequency_cal"].to_numpy(),
        "actual_purchases": split["frequency_holdout"].to_numpy(dtype=np.float64),
        "predicted_purchases": purchases,
        "expected_spend": spend,
        "actual_spend": split["amount_sum_holdout"].to_numpy(dtype=np.float64),
        "predicted_spend": purchases * spend,
    })


def evaluate_holdout(holdout: pd.DataFrame, spend_model: SpendModel) -> tuple[dict[str, float], pd.DataFrame]:
    """Holdout metrics (``purchases_*``, ``spend_*``, Gamma-Gamma diagnostics ``gg_*``) and the
    conditional-expectation table by calibration frequency 0..7+."""
    metrics: dict[str, float] = {"holdout_customers": float(len(holdout))}
    metrics.update(point_metrics(holdout["actual_purchases"], holdout["predicted_purchases"], prefix="purchases_"))
    metrics.update({f"spend_{k}": v for k, v in spend_metrics(holdout["actual_spend"].to_numpy(),
                                                               holdout["predicted_spend"].to_numpy()).items()})
    report = spend_model.report_
    corr = report.get("freq_spend_corr")
    metrics.update({
        "gg_freq_spend_corr": float("nan") if corr is None else float(corr),
        "gg_n_nonpositive_spend": float(report.get("n_nonpositive_spend", 0)),
        "gg_n_excluded": float(report.get("n_excluded", 0)),
        "gg_n_floored": float(report.get("n_floored", 0)),
    })
    table = conditional_expectation_table(
        holdout["frequency_cal"].to_numpy(), holdout["actual_purchases"].to_numpy(),
        holdout["predicted_purchases"].to_numpy(), max_frequency=MAX_FREQUENCY,
    )
    return metrics, table


def cumulative_repeat_purchases(
    transactions: pd.DataFrame, split: pd.DataFrame, window: ClvWindow, model: TransactionModel, *, max_points: int = 400
) -> pd.DataFrame:
    """Cumulative repeat purchases of the cohort, actual and expected by ``model``, on a grid of
    dates from the cohort's first purchase to the end of the holdout (FHL 2005a, figure 2).

    A repeat purchase is a purchase day after the customer's first; the expectation is
    :meth:`TransactionModel.expected_repeat_purchases_cumulative` from each customer's first day.
    """
    from crmlab.features import TIME_UNITS

    unit = TIME_UNITS[window.time_unit]
    tx = transactions.loc[transactions["amount"] >= 0, ["customer_id", "ts"]]
    tx = pd.DataFrame({"customer_id": tx["customer_id"].astype("str"), "day": _local_days(tx["ts"])})
    tx = tx[tx["customer_id"].isin(set(split["customer_id"].astype("str")))]
    tx = tx.drop_duplicates().sort_values(["customer_id", "day"], kind="stable")
    first = tx.groupby("customer_id", sort=False)["day"].transform("min")
    repeat = tx.loc[tx["day"] > first, "day"]
    repeat = repeat[repeat <= pd.Timestamp(window.holdout_end)]

    cal_end = pd.Timestamp(window.calibration_end)
    origin = cal_end - pd.to_timedelta(split["T_cal"].max() * unit, unit="D")
    origin = origin.normalize()
    span_units = (pd.Timestamp(window.holdout_end) - origin).days / unit
    step = max(1.0, math.ceil(span_units / max_points))
    times = np.arange(step, span_units + step / 2, step)
    dates = origin + pd.to_timedelta(times * unit, unit="D")
    births = ((cal_end - origin).days / unit) - split["T_cal"].to_numpy(dtype=np.float64)
    counts = np.searchsorted(np.sort(repeat.to_numpy()), dates.floor("D").to_numpy(), side="right")
    expected = model.expected_repeat_purchases_cumulative(times, births)
    return pd.DataFrame({"date": dates.floor("D"), "time": times, "actual": counts.astype(np.float64),
                         "expected": expected, "holdout": dates.floor("D") > cal_end})


def export_bundle(
    path: str | Path,
    models: ClvModels,
    settings: ClvSettings,
    window: ClvWindow,
    *,
    metrics: Mapping[str, float],
    config_digest: str,
    notes: Sequence[str] | None = None,
) -> Path:
    """Write the refitted models to a bundle folder: JSON parameters and a manifest (features, time
    unit, horizon, training window, holdout metrics, config hash) and the notes on what was derived or
    fell back (default: the models' own). No pickles."""
    params = {**models.to_dict(), "clv": settings.to_dict()}
    manifest = {
        "features": FEATURES,
        "input_columns": INPUT_COLUMNS,
        "output_columns": OUTPUT_COLUMNS,
        "time_unit": settings.time_unit,
        "horizon_months": settings.horizon_months,
        "model": models.transaction.kind,
        "spend_model": models.spend.kind,
        "penalizer": float(models.transaction.penalizer),
        "gg_penalizer": float(models.spend.penalizer),
        "notes": list(models.notes if notes is None else notes),
        "training_window": window.to_dict(),
        "n_customers": models.transaction.report_.get("n_customers"),
        "metrics": {k: (float(v) if np.isfinite(v) else None) for k, v in metrics.items()},
        "config_hash": config_digest,
    }
    return write_bundle(path, pipeline="clv", params=params, manifest=manifest)


def _models_from_bundle(bundle: Bundle) -> tuple[ClvModels, ClvSettings]:
    params = bundle.params
    missing = [k for k in ("transaction_model", "spend_model", "clv") if k not in params]
    if missing:
        raise ModelError(f"{bundle.path}: params.json lacks {missing}; not a CLV bundle of this crmlab, retrain")
    models = ClvModels(TransactionModel.from_dict(params["transaction_model"]), SpendModel.from_dict(params["spend_model"]))
    return models, ClvSettings.from_dict(params["clv"])


def score_clv(
    features_or_transactions: pd.DataFrame,
    bundle: Bundle | str | Path,
    *,
    as_of: date | str | None = None,
) -> pd.DataFrame:
    """Score customers with an exported CLV bundle: one row per customer with ``customer_id``,
    ``p_alive``, ``expected_purchases`` (over the bundle's horizon), ``expected_spend`` (expected
    spend per purchase) and ``clv`` (discounted, with margin, over the horizon).

    The input is either a features frame (``customer_id``, ``frequency``, ``recency``, ``T``,
    ``monetary_value`` in the bundle's time unit; other columns are ignored; rows keep their order)
    or a clean transaction log (``customer_id``, ``ts``, ``amount``), from which the RFM summary is
    built at ``as_of`` (default: its last date); then rows are sorted by customer id.
    """
    bundle = as_bundle(bundle, "clv")
    models, settings = _models_from_bundle(bundle)
    df = features_or_transactions
    if not isinstance(df, pd.DataFrame):
        raise ModelError(f"score_clv needs a pandas DataFrame, got {type(df).__name__}")
    columns = set(map(str, df.columns))
    missing_features = [c for c in INPUT_COLUMNS if c not in columns]
    if missing_features:
        missing_tx = [c for c in TRANSACTION_COLUMNS if c not in columns]
        if missing_tx:
            tx_like = {"ts", "amount"} & columns
            raise ModelError(
                "CLV scoring input: missing column(s) "
                + (f"{missing_tx} of a transaction log (customer_id, ts, amount)" if tx_like else
                   f"{missing_features} of a features frame ({', '.join(INPUT_COLUMNS)})")
                + (f" or {missing_features} of a features frame" if tx_like else
                   f" or {missing_tx} of a transaction log (customer_id, ts, amount)")
                + f"; got columns {sorted(columns)[:12]}"
            )
        if as_of is None:
            if df.empty:
                raise ModelError("CLV scoring input: the transaction log is empty")
            as_of = pd.Timestamp(df["ts"].max())
        rfm = rfm_summary(df, as_of=as_of, time_unit=settings.time_unit)
    else:
        rfm = df[INPUT_COLUMNS]
        if not ids_unique(rfm["customer_id"]):
            dup = rfm["customer_id"].duplicated()
            raise ModelError(f"CLV scoring input: customer_id must be unique in a features frame; "
                             f"{int(dup.sum())} repeated, e.g. {rfm['customer_id'][dup].iloc[0]!r}")
    return score_rfm(models, rfm, settings)


def evaluate_bundle(bundle: Bundle | str | Path, result: ClvResult) -> dict[str, float]:
    """The holdout metrics of another exported model's specification (the registry's champion, say)
    on the holdout of ``result``, computed like ``result.metrics``, so a retraining compares like
    with like: the champion's model kind, penalizers and spend rule are fitted on the same
    calibration period as the challenger and judged on the same holdout. (Its exported parameters
    were refitted on data that may include this holdout, which would flatter it.)"""
    bundle = as_bundle(bundle, "clv")
    models, settings = _models_from_bundle(bundle)
    if settings.time_unit != result.window.time_unit:
        raise ModelError(f"{bundle.path}: time unit {settings.time_unit!r}, the new run uses "
                         f"{result.window.time_unit!r}; compare models of the same time unit")
    spec = ClvConfig(model=models.transaction.kind, penalizer=models.transaction.penalizer,
                     spend_model=models.spend.kind, gg_penalizer=models.spend.penalizer,
                     spend_rule=models.spend.spend_rule)
    split = result.split
    calibrated = fit_models(calibration_rfm(split), spec)
    metrics, _ = evaluate_holdout(predict_holdout(calibrated, split), calibrated.spend)
    return metrics


# --------------------------------------------------------------------------- tracking


def _named_params(models: ClvModels) -> dict[str, float]:
    prefix = "gg_" if models.spend.kind == "gamma_gamma" else "spend_"
    return {**models.transaction.params_, **{f"{prefix}{k}": v for k, v in models.spend.params_.items()}}


def log_training(run: Run, result: ClvResult, *, transactions: pd.DataFrame, split: pd.DataFrame,
                 registered_model_name: str | None = REGISTERED_MODEL_NAME) -> None:
    """Log one training to its MLflow run: metrics, parameters, the report, the holdout tables, the
    plots and the model (as a pyfunc over the bundle, with a signature, registered)."""
    if not run.active:
        return
    from crmlab.clv import plots

    cal, final = result.calibration_models, result.models
    run.log_params({
        "window": result.window.to_dict(),
        "calibration_model": _named_params(cal),
        "model": _named_params(final),
        "shipped": {"purchase_model": final.transaction.kind, "penalizer": final.transaction.penalizer,
                    "spend_model": final.spend.kind, "gg_penalizer": final.spend.penalizer},
    })
    run.set_tags({"crmlab.model": final.transaction.kind, "crmlab.clv.purchase_model": final.transaction.kind,
                  "crmlab.clv.spend_model": final.spend.kind,
                  **({"crmlab.clv.notes": " | ".join(result.notes)[:4900]} if result.notes else {})})
    run.log_metrics(result.metrics)
    run.log_metrics({"final_customers": float(final.transaction.report_["n_customers"]),
                     "final_log_likelihood": float(final.transaction.report_["log_likelihood"])})
    report = {
        "window": result.window.to_dict(),
        "settings": result.settings.to_dict(),
        "calibration": cal.to_dict(),
        "final": final.to_dict(),
        "metrics": result.metrics,
        "notes": result.notes,
        "challenger": result.challenger_report,
        "bundle": str(result.bundle_path),
    }
    run.log_dict(report, "clv_report.json")
    run.log_table(result.conditional_expectations, "holdout/conditional_expectations.csv")

    histogram = plots.repeat_purchase_histogram(cal.transaction, split["frequency_cal"], split["T_cal"],
                                                max_frequency=MAX_FREQUENCY)
    run.log_table(histogram, "holdout/repeat_purchase_histogram.csv")
    tracking = cumulative_repeat_purchases(transactions, split, result.window, cal.transaction)
    run.log_table(tracking, "holdout/cumulative_repeat_purchases.csv")
    if result.comparison is not None:
        run.log_table(result.comparison, "challenger/comparison.csv")
        run.log_dict(result.challenger_report or {}, "challenger/report.json")
        importance = result.challenger_importance
        if importance is not None:
            run.log_table(importance, "challenger/feature_importance.csv")

    unit = result.window.time_unit
    rfm = result.final_rfm
    figures = {
        "plots/repeat_purchase_histogram.png": plots.plot_repeat_purchase_histogram(histogram, unit),
        "plots/conditional_expectations.png": plots.plot_conditional_expectations(
            result.conditional_expectations, result.window),
        "plots/cumulative_repeat_purchases.png": plots.plot_cumulative_repeat_purchases(tracking, result.window),
        "plots/p_alive_matrix.png": plots.plot_frequency_recency_matrix(
            final.transaction, rfm, what="p_alive", time_unit=unit),
        "plots/expected_purchases_matrix.png": plots.plot_frequency_recency_matrix(
            final.transaction, rfm, what="expected_purchases", time_unit=unit, t=result.settings.horizon_units),
    }
    for name, fig in figures.items():
        run.log_figure(fig, name)

    example = rfm[INPUT_COLUMNS].head(20).reset_index(drop=True)
    register_pyfunc(result, input_example=example,
                    output_example=score_clv(example, load_bundle(result.bundle_path, pipeline="clv")),
                    registered_model_name=registered_model_name)


# --------------------------------------------------------------------------- wiring


def train_clv(cfg: CrmlabConfig, *, tracker: Tracker | None = None, step: Step | None = None) -> ClvResult:
    """Train the CLV pipeline end to end (see the module doc) and return what it produced.

    ``step(text)`` is a context manager wrapped around each step (the CLI shows progress with it).
    """
    from crmlab.clv.challenger import compare_spend_models, fit_challenger, predict_challenger

    step = step or no_step
    project, clv = cfg.project, cfg.clv
    settings = ClvSettings.from_config(clv, project)
    with step("Loading and cleaning the data"):
        prepared = prepare_data(project)
    tx = prepared.tables.transactions
    if tx is None:
        raise ConfigError("the CLV pipeline needs transactions: project.data.transactions is null")
    window = resolve_window(clv, tx, prepared.as_of, project.time_unit)

    with training_run(cfg, "clv", tracker=tracker, fingerprint=prepared.fingerprint, cleaning=prepared.cleaning,
                      tags={"crmlab.model": clv.model}) as tr:
        with step(f"Fitting {clv.model} + {clv.spend_model} on the calibration period to {window.calibration_end}"):
            split = split_calibration_holdout(tx, window)
            cal_models = fit_models(calibration_rfm(split), clv)
        with step(f"Evaluating on the {window.holdout_weeks}-week holdout to {window.holdout_end}"):
            holdout = predict_holdout(cal_models, split)
            metrics, ce_table = evaluate_holdout(holdout, cal_models.spend)
            if not holdout["actual_purchases"].sum() > 0:
                raise DataError(f"the CLV holdout {window.calibration_end} -> {window.holdout_end}: none of the "
                                f"{len(holdout):,} calibration customers bought in it, so the model cannot be "
                                "evaluated; set an earlier project.as_of or a longer clv.holdout_weeks", column="ts")
            check_evaluation("clv", metrics, what=f"holdout {window.calibration_end} -> {window.holdout_end}")
        comparison = challenger = challenger_report = challenger_importance = None
        if clv.challenger:
            with step("Training the LightGBM challenger on an earlier window"):
                challenger = fit_challenger(prepared.tables, project, window, seed=project.seed)
                if challenger is not None:
                    predicted = predict_challenger(challenger, prepared.tables, project, window, holdout["customer_id"])
                    comparison, challenger_metrics = compare_spend_models(
                        holdout["actual_spend"].to_numpy(),
                        {f"{cal_models.transaction.kind}_{cal_models.spend.kind}": holdout["predicted_spend"].to_numpy(),
                         "lightgbm": predicted},
                    )
                    holdout["challenger_spend"] = predicted
                    metrics.update({f"challenger_spend_{k}": v for k, v in challenger_metrics["lightgbm"].items()})
                    metrics["challenger_wins"] = float((comparison["winner"] == "lightgbm").sum())
                    challenger_report = {**challenger.report(), "comparison": comparison.to_dict("records")}
                    challenger_importance = challenger.importance()
        with step(f"Refitting on all data up to {window.as_of}"):
            rfm = rfm_summary(tx, as_of=window.as_of, time_unit=project.time_unit)
            # the specification that was evaluated on the holdout (after any fallback) is the one refitted
            models = fit_models(rfm, cal_models.spec(clv))
            scores = score_rfm(models, rfm, settings)
        with step("Exporting the model bundle"):
            bundle_path = export_bundle(
                Path(project.output.models_dir) / "clv", models, settings, window,
                metrics=metrics, config_digest=config_hash(cfg.section("clv")),
                notes=run_notes(window, cal_models, models),
            )
        result = ClvResult(
            window=window, settings=settings, calibration_models=cal_models, models=models, holdout=holdout,
            metrics=metrics, conditional_expectations=ce_table, scores=scores, bundle_path=bundle_path,
            fingerprint=prepared.fingerprint, comparison=comparison, challenger=challenger, split=split,
            final_rfm=rfm, challenger_report=challenger_report, challenger_importance=challenger_importance,
            **tr.ids(),
        )
        if tr.active:
            with step("Logging the run, plots and model to MLflow"):
                log_training(tr.run, result, transactions=tx, split=split)
    return result
