"""Per-customer CLV intervals from the uncertainty of the fitted parameters (the delta method).

A maximum-likelihood fit is asymptotically normal around the true parameters, with the inverse
observed information as covariance (``report_["log_param_cov"]`` of :class:`TransactionModel` and
:class:`SpendModel`, on the log-parameters). Each customer's CLV is a smooth function of the
parameters, so log CLV is about normal with variance ``g' Sigma g``, ``g`` its gradient in the
log-parameters (central differences, 2k + 1 evaluations of the closed forms per distinct history,
vectorised). The interval ``CLV * exp(+-z sd)`` stays positive.

What it covers: the *expected* CLV the model would give with the true parameters (estimation error
of the purchase and spend models). It is not a prediction interval of what the customer will
actually spend (a Poisson count around that expectation, much wider), and a LightGBM purchase
challenger's own estimation error is not in it: its share of a blend is treated as fixed (see
:func:`clv_bounds`).

The delta method instead of sampling parameter vectors: sampling needs a few hundred evaluations of
the closed forms per distinct history for stable quantiles; the gradient needs 2k + 1 (9 for BG/NBD),
so intervals for 3.4 million customers cost a few scorings (``benchmarks/bench_clv_quality.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.stats import norm

from crmlab.clv.purchase import IF_ALIVE, P_ALIVE, TransactionModel
from crmlab.clv.shared import PARAM_NAMES, unique_rows
from crmlab.clv.spend import SpendModel, gamma_gamma_spend
from crmlab.errors import ModelError

__all__ = ["STEP", "clv_bounds", "history_scores", "log_cov", "log_variance_from_gradients", "purchase_log_variance",
           "purchase_paths", "spend_and_log_variance", "spend_log_variance"]

#: Central-difference step in the log-parameters.
STEP = 1e-4


def purchase_paths(kind: str, params: Mapping[str, float], x: np.ndarray, tx: np.ndarray, T: np.ndarray, *,
                   horizon_months: int, units_per_month: float, discount_rate_monthly: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(expected purchases over the horizon, the same discounted month by month) for each row: what
    :func:`crmlab.clv.models.customer_lifetime_value` sums, without the spend. Rows should be distinct
    histories; the hypergeometric terms run once per distinct (x, T)."""
    (px, pT), pair, _ = unique_rows(x, T)
    _, E, D = _paths(kind, params, x, tx, T, (px, pT, pair), horizon_months=horizon_months,
                     units_per_month=units_per_month, discount_rate_monthly=discount_rate_monthly)
    return E, D


def _paths(kind: str, params: Mapping[str, float], x: np.ndarray, tx: np.ndarray, T: np.ndarray,
           pairs: tuple[np.ndarray, np.ndarray, np.ndarray], *, horizon_months: int, units_per_month: float,
           discount_rate_monthly: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(P(alive), E, D) of :func:`purchase_paths`, the distinct (x, T) pairs given (``(px, pT, pair)``)."""
    p_alive, if_alive = P_ALIVE[kind], IF_ALIVE[kind]
    px, pT, pair = pairs
    total = np.zeros(px.size)
    previous = np.zeros(px.size)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for month in range(1, int(horizon_months) + 1):
            cumulative = if_alive(params, month * units_per_month, px, pT)
            total += (cumulative - previous) / (1.0 + discount_rate_monthly) ** month
            previous = cumulative
        alive = p_alive(params, x, tx, T)
    return alive, alive * previous[pair], alive * total[pair]


def history_scores(model: TransactionModel, x: np.ndarray, tx: np.ndarray, T: np.ndarray, settings: Any,
                   units_per_month: float, *, gradients: bool = True
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Everything scoring needs from the purchase model, per row of distinct histories ``(x, tx, T)``:
    P(alive), expected purchases over the horizon (E), the same discounted month by month (D) and, with
    ``gradients``, d log E / d log theta and d log D / d log theta (central differences, :data:`STEP`).
    The same arithmetic as :meth:`TransactionModel.probability_alive`, :meth:`~TransactionModel.predict_purchases`
    and :func:`crmlab.clv.models.customer_lifetime_value`, so the same numbers, with the distinct (x, T)
    pairs found once for all 2k + 1 parameter sets."""
    names = PARAM_NAMES[model.kind]
    kw = {"horizon_months": settings.horizon_months, "units_per_month": units_per_month,
          "discount_rate_monthly": settings.discount_rate_monthly}
    (px, pT), pair, _ = unique_rows(x, T)
    pairs = (px, pT, pair)
    alive, E, D = _paths(model.kind, model.params_, x, tx, T, pairs, **kw)
    if not gradients:
        return alive, E, D, None, None
    gE = np.empty((x.size, len(names)))
    gD = np.empty((x.size, len(names)))
    with np.errstate(divide="ignore", invalid="ignore"):
        for j, name in enumerate(names):
            up = {**model.params_, name: model.params_[name] * np.exp(STEP)}
            down = {**model.params_, name: model.params_[name] * np.exp(-STEP)}
            _, Eu, Du = _paths(model.kind, up, x, tx, T, pairs, **kw)
            _, Ed, Dd = _paths(model.kind, down, x, tx, T, pairs, **kw)
            gE[:, j] = (np.log(Eu) - np.log(Ed)) / (2 * STEP)
            gD[:, j] = (np.log(Du) - np.log(Dd)) / (2 * STEP)
    return alive, E, D, np.nan_to_num(gE, copy=False), np.nan_to_num(gD, copy=False)


def log_cov(report: Mapping[str, Any], k: int, what: str) -> np.ndarray | None:
    """The covariance of a fitted model's log-parameters from its report; None when the model was
    fitted by an older crmlab (no covariance stored)."""
    raw = report.get("log_param_cov")
    if raw is None:
        return None
    cov = np.asarray(raw, dtype=np.float64)
    if cov.shape != (k, k) or not np.all(np.isfinite(cov)):
        raise ModelError(f"{what}: log_param_cov must be a finite {k}x{k} matrix, got shape {cov.shape}")
    return cov


def _quad(grad: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """g' Sigma g per row of ``grad`` (rows x k)."""
    return np.einsum("ij,jk,ik->i", grad, cov, grad)


def _purchase_log_gradients(model: TransactionModel, x, tx, T, settings: Any, units_per_month: float
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(E, D, d log E / d log theta, d log D / d log theta) per row (distinct histories)."""
    _, E, D, gE, gD = history_scores(model, x, tx, T, settings, units_per_month)
    return E, D, gE, gD


def purchase_log_variance(model: TransactionModel, x: np.ndarray, tx: np.ndarray, T: np.ndarray, settings: Any,
                          units_per_month: float, *, weight: float = 1.0, challenger: np.ndarray | None = None
                          ) -> np.ndarray:
    """Variance of log(D / E * shipped) per customer from the purchase model's parameters, where
    shipped = weight * E + (1 - weight) * challenger (weight 1: the parametric model alone)."""
    cov = log_cov(model.report_, len(PARAM_NAMES[model.kind]), f"{model.kind} model")
    if cov is None:
        return np.full(x.size, np.nan)
    (ux, utx, uT), inverse, _ = unique_rows(x, tx, T)
    E, _, gE, gD = _purchase_log_gradients(model, ux, utx, uT, settings, units_per_month)
    return log_variance_from_gradients(E, gE, gD, cov, inverse, weight=weight, challenger=challenger)


def log_variance_from_gradients(E: np.ndarray, gE: np.ndarray, gD: np.ndarray, cov: np.ndarray, inverse: np.ndarray,
                                *, weight: float = 1.0, challenger: np.ndarray | None = None) -> np.ndarray:
    """:func:`purchase_log_variance` per customer from the distinct histories' E and gradients
    (:func:`history_scores`) and each customer's history (``inverse``)."""
    if challenger is None or weight >= 1.0:
        return _quad(gD, cov)[inverse]
    # the challenger differs per customer: the gradients per distinct history, combined per customer
    E, gE, gD = E[inverse], gE[inverse], gD[inverse]
    shipped = weight * E + (1.0 - weight) * challenger
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(shipped > 0, weight * E / shipped, 0.0)
    g = gD - gE + share[:, None] * gE
    return _quad(g, cov)


def spend_log_variance(model: SpendModel, x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Variance of log E[spend | x, m] per customer from the spend model's parameters."""
    return spend_and_log_variance(model, x, m)[1]


def spend_and_log_variance(model: SpendModel, x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(E[spend | x, m], the variance of its log from the spend model's parameters) per customer: the
    inputs checked once for the 2k + 1 evaluations (the same numbers as
    :meth:`SpendModel.conditional_expected_spend` and central differences of its log)."""
    names = PARAM_NAMES[model.kind]
    cov = log_cov(model.report_, len(names), f"{model.kind} spend model")
    if cov is None or model.kind == "mean":
        spend = model.conditional_expected_spend(x, m)
        return spend, np.full(spend.size, np.nan if cov is None else float(cov[0, 0]))
    model._check_fitted()
    model._check_rule()
    x, m = model._check_inputs(x, m)
    rule_spend, as_mean = model._apply_rule(x, m)
    repeat = np.where(x > 0, rule_spend, 0.0)
    spend = gamma_gamma_spend(model.params_, x, repeat, as_mean)  # conditional_expected_spend's numbers
    # one-time buyers all share one spend (and gradient), so do the customers scored as the population
    # mean: one representative row of each, then every repeat customer's own row
    one_time, own = x == 0, (x > 0) & ~as_mean
    rows = np.concatenate([np.flatnonzero(own), np.flatnonzero(one_time)[:1], np.flatnonzero(as_mean)[:1]])
    xr, repeat_r, as_mean_r = x[rows], repeat[rows], as_mean[rows]
    grad = np.empty((rows.size, len(names)))
    for j, name in enumerate(names):
        values = []
        for sign in (1.0, -1.0):
            params = {**model.params_, name: model.params_[name] * np.exp(sign * STEP)}
            with np.errstate(divide="ignore", invalid="ignore"):
                values.append(np.log(gamma_gamma_spend(params, xr, repeat_r, as_mean_r)))
        grad[:, j] = (values[0] - values[1]) / (2 * STEP)
    quad = _quad(np.nan_to_num(grad, copy=False), cov)
    var = np.empty(x.size)
    n_own = int(own.sum())
    var[own] = quad[:n_own]
    at = n_own
    for group in (one_time, as_mean):
        if at < rows.size and group[rows[at]]:
            var[group] = quad[at]
            at += 1
    return spend, var


def clv_bounds(clv: np.ndarray, purchase_var: np.ndarray, spend_var: np.ndarray, level: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of the central ``level`` interval of each CLV: ``clv * exp(-+z sd)`` with
    ``sd**2`` the sum of the purchase and spend variances of log CLV (their parameters are estimated
    separately, so independent)."""
    if not 0.0 < level < 1.0:
        raise ModelError(f"the CLV interval level must be between 0 and 1, got {level!r}")
    z = float(norm.ppf(0.5 + level / 2.0))
    sd = np.sqrt(np.maximum(purchase_var + spend_var, 0.0))
    return clv * np.exp(-z * sd), clv * np.exp(z * sd)
