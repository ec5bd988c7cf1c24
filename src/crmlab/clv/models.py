"""Probabilistic customer-base models: how often customers buy (BG/NBD, Pareto/NBD, MBG/NBD) and how
much they spend (Gamma-Gamma), and the discounted customer lifetime value they imply.

Inputs are one row per customer in the convention of lifetimes and of the papers: ``frequency`` (x,
the number of repeat purchase periods), ``recency`` (t_x, the age of the customer at the last
purchase), ``T`` (the age of the customer at the cut-off) and ``monetary_value`` (the mean spend of
the repeat purchases), all times in one unit (weeks by default).

Everything is vectorised and works on *weighted unique rows*: customers with the same
(frequency, recency, T) share one likelihood term and one score, so fitting and scoring cost grows
with the number of distinct histories, not the number of customers (terms that depend on the
frequency alone, or on frequency and T alone, are evaluated once per distinct value or pair). The
likelihoods, their analytic gradients (numerical for Pareto/NBD) and the closed forms are written in
numpy/scipy (no autograd, no pickles, no global warning filters, no printing); they are those of
lifetimes 0.11, with the same time scaling and penalty, so the same data and penalizer give the same
parameters (cross-checked formula by formula in ``tests/clv/test_models.py``).

References
----------
* Schmittlein, Morrison and Colombo (1987), "Counting Your Customers: Who Are They and What Will
  They Do Next?", Management Science 33 (1), 1-24 (Pareto/NBD).
* Fader and Hardie (2005), "A Note on Deriving the Pareto/NBD Model and Related Expressions",
  http://brucehardie.com/notes/009/ (Pareto/NBD likelihood, P(alive), conditional expectation).
* Fader, Hardie and Lee (2005a), "Counting Your Customers the Easy Way: An Alternative to the
  Pareto/NBD Model", Marketing Science 24 (2), 275-284 (BG/NBD).
* Fader, Hardie and Lee (2005b), "RFM and CLV: Using Iso-Value Curves for Customer Base Analysis",
  Journal of Marketing Research 42 (4), 415-430; and Fader and Hardie (2013), "The Gamma-Gamma
  Model of Monetary Value", http://brucehardie.com/notes/025/ (Gamma-Gamma).
* Batislam, Denizel and Filiztekin (2007), "Empirical validation and comparison of models for
  customer base analysis", International Journal of Research in Marketing 24 (3), 201-209; and
  Wagner and Hoppe (2008) (MBG/NBD).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crmlab.clv.purchase import IF_ALIVE, P_ALIVE, TransactionModel
from crmlab.clv.shared import (  # the constants users and the other modules import from here
    PARAM_NAMES,
    SPEND_KINDS,
    SPEND_PENALTIES,
    SPEND_RULES,
    TRANSACTION_KINDS,
    TRANSACTION_PENALTIES,
    UNITS_PER_MONTH,
    check_rfm,
    unique_rows,
)
from crmlab.clv.spend import SpendModel
from crmlab.errors import ModelError
import pandas as pd
from crmlab.clv.fallback import fit_purchase_model, fit_spend_model
from crmlab.config import ClvConfig
from crmlab.clv.result import ClvModels, ClvSettings, OUTPUT_COLUMNS


# --------------------------------------------------------------------------- CLV


def customer_lifetime_value(
    transaction_model: TransactionModel,
    spend_model: SpendModel,
    frequency: Any,
    recency: Any,
    T: Any,
    monetary_value: Any,
    *,
    horizon_months: int = 12,
    discount_rate_monthly: float = 0.01,
    margin: float = 1.0,
    time_unit: str = "W",
    units_per_month: float | None = None,
) -> np.ndarray:
    """Discounted customer lifetime value over ``horizon_months``, one value per customer.

    CLV = margin * E[spend | x, m] * sum_{i=1..H} (E[X(i months) | x, t_x, T] - E[X(i-1 months) | ...])
    / (1 + d)^i, the formula of lifetimes' ``GammaGammaFitter.customer_lifetime_value`` (after Fader,
    Hardie and Lee 2005b): each month's expected purchases are valued at the Gamma-Gamma expected
    spend and discounted at the end of that month. Expected purchases are computed once per distinct
    (frequency, recency, T) and broadcast back.

    ``time_unit`` ("D", "W", "M") is the unit of recency and T; a month is 30.4375 days (W: 4.348
    weeks). ``units_per_month`` overrides it (lifetimes uses 4.345 weeks and 30 days).
    """
    transaction_model._check_fitted()
    spend_model._check_fitted()
    units_per_month = _check_clv_settings(horizon_months, discount_rate_monthly, margin, time_unit, units_per_month)
    p_alive, if_alive = P_ALIVE[transaction_model.kind], IF_ALIVE[transaction_model.kind]
    params = transaction_model.params_

    def discounted_purchases(x: np.ndarray, tx: np.ndarray, age: np.ndarray) -> np.ndarray:
        # E[X(t) | history] = P(alive | x, t_x, T) * E[X(t) | alive, x, T]: P(alive) once per history,
        # the monthly hypergeometric terms once per distinct (x, T)
        (px, pT), pair, _ = unique_rows(x, age)
        total = np.zeros(px.size)
        previous = np.zeros(px.size)
        for month in range(1, int(horizon_months) + 1):
            cumulative = if_alive(params, month * units_per_month, px, pT)
            total += (cumulative - previous) / (1.0 + discount_rate_monthly) ** month
            previous = cumulative
        return p_alive(params, x, tx, age) * total[pair]

    purchases = transaction_model._on_unique_rows(discounted_purchases, frequency, recency, T)
    spend = spend_model.conditional_expected_spend(frequency, monetary_value)
    if spend.size != purchases.size:
        raise ModelError(f"monetary_value must have one value per customer: got {spend.size} for {purchases.size}")
    return margin * spend * purchases

def _check_clv_settings(horizon_months: Any, discount_rate_monthly: float, margin: float, time_unit: str,
                        units_per_month: float | None) -> float:
    """Validate the CLV settings; returns the length of a month in the time unit."""
    if units_per_month is None:
        if time_unit not in UNITS_PER_MONTH:
            raise ModelError(f"time_unit={time_unit!r} is not valid; choose one of {', '.join(UNITS_PER_MONTH)}")
        units_per_month = UNITS_PER_MONTH[time_unit]
    if not (np.isfinite(units_per_month) and units_per_month > 0):
        raise ModelError(f"units_per_month must be > 0, got {units_per_month!r}")
    if int(horizon_months) != horizon_months or horizon_months < 1:
        raise ModelError(f"horizon_months must be a whole number >= 1, got {horizon_months!r}")
    if not (np.isfinite(discount_rate_monthly) and discount_rate_monthly > -1):
        raise ModelError(f"discount_rate_monthly must be > -1, got {discount_rate_monthly!r}")
    if not (np.isfinite(margin) and margin > 0):
        raise ModelError(f"margin must be > 0, got {margin!r}")
    return float(units_per_month)


__all__ = [
    "SPEND_KINDS",
    "SPEND_PENALTIES",
    "SPEND_RULES",
    "TRANSACTION_PENALTIES",
    "TRANSACTION_KINDS",
    "UNITS_PER_MONTH",
    "SpendModel",
    "TransactionModel",
    "customer_lifetime_value",
]


def fit_models(rfm: pd.DataFrame, clv: ClvConfig) -> ClvModels:
    """Fit the configured purchase model (``clv.model``, ``clv.penalizer``) and spend model
    (``clv.spend_model``, ``clv.gg_penalizer``, ``clv.spend_rule``) on one RFM row per customer; with
    ``clv.fallback``, a model that does not fit is replaced as :mod:`crmlab.clv.fallback` says, and
    the returned models carry notes saying so."""
    transaction, notes = fit_purchase_model(rfm["frequency"], rfm["recency"], rfm["T"], clv)
    spend, spend_notes = fit_spend_model(rfm["frequency"], rfm["monetary_value"], clv)
    return ClvModels(transaction, spend, tuple(notes + spend_notes))


def score_rfm(models: ClvModels, rfm: pd.DataFrame, settings: ClvSettings, *,
              features: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per customer: P(alive) at the cut-off, expected purchases over the horizon, expected
    spend per purchase (Gamma-Gamma), discounted CLV over the horizon (with the margin) and its
    interval ``clv_low``..``clv_high`` at ``settings.interval`` (:mod:`crmlab.clv.interval`).

    When the shipped purchase model (``models.purchases``) is LightGBM or a blend, expected purchases
    are its, and CLV keeps the purchase model's month-by-month discounting: CLV = margin x spend x
    shipped purchases x (discounted / undiscounted purchases of the purchase model). It needs the
    shared customer ``features``, aligned with ``rfm``.

    Rows whose frequency, recency or T is missing (customers without a purchase in a features
    frame) get missing scores; ``monetary_value`` may be missing where ``frequency`` is 0.
    """
    from crmlab.clv.interval import clv_bounds, history_scores, log_cov, log_variance_from_gradients, spend_and_log_variance

    ids = rfm["customer_id"].reset_index(drop=True)  # kept as is: converting text ids to objects is slow
    x = rfm["frequency"].to_numpy(dtype=np.float64, na_value=np.nan)
    tx = rfm["recency"].to_numpy(dtype=np.float64, na_value=np.nan)
    age = rfm["T"].to_numpy(dtype=np.float64, na_value=np.nan)
    m = rfm["monetary_value"].to_numpy(dtype=np.float64, na_value=np.nan)
    ok = np.isfinite(x) & np.isfinite(tx) & np.isfinite(age)
    m = np.where(ok & (x == 0) & ~np.isfinite(m), 0.0, m)
    everyone = bool(ok.all())  # the usual case: no masked copies, the scores are the output columns
    out: dict[str, np.ndarray] = {}

    def put(name: str, values: np.ndarray) -> None:
        if everyone:
            out[name] = values
        else:
            out[name] = np.full(len(ids), np.nan)
            out[name][ok] = values

    shipped = models.purchases
    challenger = None
    if shipped is not None and shipped.uses_lightgbm:
        if features is None or len(features) != len(ids):
            raise ModelError(f"the shipped purchase model ({shipped.name}) needs the shared customer features of "
                             "the customers scored")
        challenger = shipped.challenger_purchases(features.reset_index(drop=True))
        challenger = challenger if everyone else challenger[ok]
    if ok.any():
        xo, txo, ageo, mo = (x, tx, age, m) if everyone else (x[ok], tx[ok], age[ok], m[ok])
        tm, sm = models.transaction, models.spend
        tm._check_fitted()
        sm._check_fitted()
        units_per_month = _check_clv_settings(settings.horizon_months, settings.discount_rate_monthly, settings.margin,
                                              settings.time_unit, None)
        xo, txo, ageo = check_rfm(xo, txo, ageo)
        # every purchase-model score is a function of the history (x, t_x, T): computed once per distinct
        # history (P(alive), expected and discounted purchases, their gradients for the interval) and
        # broadcast back; the same numbers as probability_alive, predict_purchases and customer_lifetime_value
        (ux, utx, uT), inverse, _ = unique_rows(xo, txo, ageo)
        cov = log_cov(tm.report_, len(PARAM_NAMES[tm.kind]), f"{tm.kind} model")
        alive, E, D, gE, gD = history_scores(tm, ux, utx, uT, settings, units_per_month, gradients=cov is not None)
        put("p_alive", alive[inverse])
        parametric = E[inverse]
        spend, spend_var = spend_and_log_variance(sm, xo, mo)
        if spend.size != parametric.size:
            raise ModelError(f"monetary_value must have one value per customer: got {spend.size} for {parametric.size}")
        put("expected_spend", spend)
        clv = settings.margin * spend * D[inverse]
        weight = 1.0
        if challenger is None:
            purchases = parametric
        else:
            weight = shipped.weight
            purchases = weight * parametric + (1.0 - weight) * challenger
            # discounted value per expected purchase, from the purchase model's timing (a customer it expects
            # nothing from: a constant rate over the horizon)
            months = np.arange(1, settings.horizon_months + 1)
            flat = float(np.mean((1.0 + settings.discount_rate_monthly) ** -months))
            with np.errstate(divide="ignore", invalid="ignore"):
                per_purchase = np.where(parametric > 0, clv / parametric, settings.margin * spend * flat)
            clv = per_purchase * purchases
        put("expected_purchases", purchases)
        put("clv", clv)
        purchase_var = (np.full(xo.size, np.nan) if cov is None else
                        log_variance_from_gradients(E, gE, gD, cov, inverse, weight=weight, challenger=challenger))
        low, high = clv_bounds(clv, purchase_var, spend_var, settings.interval)
        put("clv_low", low)
        put("clv_high", high)
    for name in OUTPUT_COLUMNS[1:]:
        if name not in out:
            out[name] = np.full(len(ids), np.nan)
    return pd.DataFrame({"customer_id": ids, **{name: out[name] for name in OUTPUT_COLUMNS[1:]}})
