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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import digamma, expit, gammaln, hyp2f1

from crmlab.errors import ModelError, format_row

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

TRANSACTION_KINDS = ("bgnbd", "pareto_nbd", "mbgnbd", "nbd")
SPEND_KINDS = ("gamma_gamma", "mean")
SPEND_RULES = ("exclude", "floor")
#: Penalties tried, smallest first, before a hint names one (only one that was checked to fit the data).
TRANSACTION_PENALTIES = (0.001, 0.01, 0.1, 1.0)
SPEND_PENALTIES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2)
#: Length of one (average Gregorian) month in each time unit.
UNITS_PER_MONTH = {"D": 30.4375, "W": 30.4375 / 7.0, "M": 1.0}

_PARAM_NAMES = {
    "bgnbd": ("r", "alpha", "a", "b"),
    "pareto_nbd": ("r", "alpha", "s", "beta"),
    "mbgnbd": ("r", "alpha", "a", "b"),
    "nbd": ("r", "alpha"),
    "gamma_gamma": ("p", "q", "v"),
    "mean": ("mean",),
}
# Parameters measured in (1 / time): rescaled when the time axis is scaled for the optimiser.
_TIME_PARAMS = {"bgnbd": ("alpha",), "pareto_nbd": ("alpha", "beta"), "mbgnbd": ("alpha",), "nbd": ("alpha",)}
_FLOOR_SPEND = 0.01
# A fitted parameter (in scaled units) outside exp(+-_LOG_PARAM_LIMIT) means the optimiser ran off to
# a boundary of the parameter space: the data do not identify the model without a penalty.
_LOG_PARAM_LIMIT = 18.0
# Largest |gradient| of the mean negative log-likelihood accepted when the optimiser stops on
# "precision loss" (the usual BFGS ending at an optimum that is flat to machine precision).
_GRAD_TOL = 1e-4
# Above this many distinct rows, fits start from the optimum on a subsample of this many rows.
_WARM_START_ROWS = 200_000
_WARM_SAMPLE_ROWS = 50_000
_DICT_VERSION = 1


# --------------------------------------------------------------------------- input checks


def _to_array(name: str, values: Any) -> np.ndarray:
    """``values`` (numpy, pandas, list) as a 1-D float64 array; NaN for missing."""
    try:
        if isinstance(values, (pd.Series, pd.Index)):
            arr = values.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{name} must be numeric, got values that cannot be read as numbers ({exc})") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ModelError(f"{name} must be one-dimensional (one value per customer), got shape {arr.shape}")
    return arr


def _labels(values: Any) -> pd.Index | None:
    return values.index if isinstance(values, pd.Series) else None


def _example(mask: np.ndarray, columns: Mapping[str, np.ndarray], index: pd.Index | None) -> str:
    """' (n of N customers); example row {...}' for the first row where ``mask`` holds."""
    pos = int(np.flatnonzero(mask)[0])
    row: dict[str, Any] = {"index": index[pos] if index is not None else pos}
    row.update({k: float(v[pos]) for k, v in columns.items()})
    return f" ({int(mask.sum())} of {mask.size} customers); example row {format_row(row)}"


def _check_columns(columns: dict[str, np.ndarray], index: pd.Index | None) -> None:
    sizes = {k: v.size for k, v in columns.items()}
    if len(set(sizes.values())) > 1:
        raise ModelError(f"inputs must have one value per customer and the same length, got lengths {sizes}")
    if not next(iter(sizes.values())):
        raise ModelError("no customers: the inputs are empty")
    for name, arr in columns.items():
        bad = ~np.isfinite(arr)
        if bad.any():
            raise ModelError(f"{name} has missing or infinite values" + _example(bad, columns, index))


def _check_rfm(frequency: Any, recency: Any, T: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate (frequency, recency, T); raise ModelError naming the problem and an example row."""
    index = _labels(frequency)
    cols = {"frequency": _to_array("frequency", frequency), "recency": _to_array("recency", recency),
            "T": _to_array("T", T)}
    _check_columns(cols, index)
    x, tx, age = cols["frequency"], cols["recency"], cols["T"]
    checks = [
        (x < 0, "frequency must be >= 0 (number of repeat purchases)"),
        (x != np.floor(x), "frequency must be a whole number (number of repeat purchase periods)"),
        (tx < 0, "recency must be >= 0 (age at the last purchase)"),
        (age < 0, "T must be >= 0 (age at the cut-off)"),
        (tx > age, "recency must be <= T (the last purchase cannot come after the cut-off)"),
        ((x == 0) & (tx != 0), "recency must be 0 when frequency is 0 (no repeat purchase)"),
    ]
    for bad, problem in checks:
        if bad.any():
            raise ModelError(problem + _example(bad, cols, index))
    return x, tx, age


def _check_weights(weights: Any, n: int) -> np.ndarray | None:
    if weights is None:
        return None
    w = _to_array("weights", weights)
    if w.size != n:
        raise ModelError(f"weights must have one value per customer: got {w.size} weights for {n} customers")
    bad = ~np.isfinite(w) | (w < 0)
    if bad.any():
        raise ModelError("weights must be finite and >= 0" + _example(bad, {"weights": w}, _labels(weights)))
    if w.sum() <= 0:
        raise ModelError("weights sum to 0: nothing to fit")
    return w


def _check_penalizer(penalizer: Any, key: str) -> float:
    try:
        pen = float(penalizer)
    except (TypeError, ValueError):
        raise ModelError(f"penalizer must be a number >= 0, got {penalizer!r}") from None
    if not np.isfinite(pen) or pen < 0:
        raise ModelError(f"penalizer must be a finite number >= 0, got {penalizer!r} (set {key})")
    return pen


# --------------------------------------------------------------------------- unique rows


def _unique_rows(*columns: np.ndarray) -> tuple[tuple[np.ndarray, ...], np.ndarray, np.ndarray]:
    """The distinct rows of the stacked ``columns``, with inverse and counts.

    Same result as ``np.unique(np.column_stack(columns), axis=0, return_inverse=True,
    return_counts=True)`` (rows in lexicographic order), but hash-based: each column is factorised
    and the codes are combined into one integer key, which is linear in the number of rows where
    ``np.unique(axis=0)`` sorts (about 50 times faster on 3.4 million rows).
    """
    codes: np.ndarray | None = None
    uniques = []
    size = 1
    for col in columns:
        code, uniq = pd.factorize(col, sort=True)
        uniques.append(np.asarray(uniq))
        size *= max(len(uniq), 1)
        codes = code.astype(np.int64) if codes is None else codes * len(uniq) + code
    if size >= 2**62:  # the combined key would overflow: fall back to a sort
        stacked = np.column_stack(columns)
        rows, inverse, counts = np.unique(stacked, axis=0, return_inverse=True, return_counts=True)
        return tuple(rows.T), inverse.ravel(), counts
    inverse, keys = pd.factorize(codes, sort=True)
    counts = np.bincount(inverse, minlength=len(keys))
    out = []
    rest = np.asarray(keys)
    for uniq in reversed(uniques):
        out.append(uniq[rest % len(uniq)])
        rest = rest // len(uniq)
    return tuple(reversed(out)), inverse, counts


# --------------------------------------------------------------------------- hypergeometric helpers


def _log_hyp2f1(a: Any, b: Any, c: Any, z: Any) -> np.ndarray:
    """log 2F1(a, b; c; z) for 0 <= z < 1, with Euler's transformation
    2F1(a, b; c; z) = (1 - z)^(c - a - b) 2F1(c - a, c - b; c; z) where the direct sum overflows."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        direct = np.log(hyp2f1(a, b, c, z))
        needs = ~np.isfinite(direct)
        if np.any(needs):
            alt = np.log(hyp2f1(c - a, c - b, c, z)) + (c - a - b) * np.log1p(-z)
            direct = np.where(needs, alt, direct)
    return direct


def _one_minus_hyp(a: Any, b: Any, c: Any, z: Any, log_ratio: Any) -> np.ndarray:
    """1 - 2F1(a, b; c; z) exp(log_ratio), in logs where 2F1 is positive (no overflow) and directly
    where it is not: with c = a + b + x - 1 < 0 (BG/NBD with a + b < 1, penalised fits) 2F1 can be
    negative and its logarithm undefined, while the expectation itself is fine."""
    out = -np.expm1(_log_hyp2f1(a, b, c, z) + log_ratio)
    bad = ~np.isfinite(out)
    if np.any(bad):
        with np.errstate(over="ignore", invalid="ignore"):
            direct = 1.0 - hyp2f1(a, b, c, z) * np.exp(log_ratio)
        out = np.where(bad, direct, out)
    return out


def _expm1_ratio(u: Any, log_ratio: Any) -> np.ndarray:
    """(1 - exp(-u L)) / u, continuous at u = 0 (where it is L); ``log_ratio`` is L >= 0."""
    u = np.asarray(u, dtype=float)
    small = np.abs(u) < 1e-10
    safe_u = np.where(small, 1.0, u)
    return np.where(small, log_ratio, -np.expm1(-safe_u * log_ratio) / safe_u)


# --------------------------------------------------------------------------- data for the likelihoods


@dataclass(frozen=True)
class _Rows:
    """Weighted unique rows for a likelihood. Terms that depend on the parameters and the frequency
    only (the gamma and beta functions) are evaluated once per distinct frequency ``xs`` and summed
    with the weights ``wx``; only the terms that also involve recency, T or spend run per row."""

    x: np.ndarray
    cols: tuple[np.ndarray, ...]  # (t_x, T) scaled, or (m,) for Gamma-Gamma
    w: np.ndarray
    xs: np.ndarray
    xi: np.ndarray
    wx: np.ndarray

    @classmethod
    def build(cls, x: np.ndarray, cols: tuple[np.ndarray, ...], w: np.ndarray) -> _Rows:
        xi, xs = pd.factorize(x, sort=True)
        return cls(x, cols, w, np.asarray(xs, dtype=np.float64), xi, np.bincount(xi, weights=w, minlength=len(xs)))


# --------------------------------------------------------------------------- BG/NBD


def _bgnbd_loglik(params: np.ndarray, d: _Rows, grad: bool):
    """Weighted sum of the BG/NBD log-likelihood (FHL 2005a, eq. 6) and, if ``grad``, its gradient.

    LL = log G(r+x) - log G(r) + r log(alpha) + log B(a, b+x) - log B(a, b)
         + log[(alpha+T)^-(r+x) + 1{x>0} a / (b+x-1) (alpha+t_x)^-(r+x)]
    """
    r, alpha, a, b = params
    tx, T = d.cols
    xs, x = d.xs, d.x
    lvl = (gammaln(r + xs) - gammaln(r) + r * np.log(alpha) + gammaln(a + b) + gammaln(b + xs) - gammaln(b)
           - gammaln(a + b + xs))
    log_aT, log_atx = np.log(alpha + T), np.log(alpha + tx)
    bx = b + np.maximum(x, 1.0) - 1.0
    a3 = -(r + x) * log_aT
    a4 = np.where(x > 0, np.log(a) - np.log(bx) - (r + x) * log_atx, -np.inf)
    mix = np.logaddexp(a3, a4)
    total = np.dot(d.wx, lvl) + np.dot(d.w, mix)
    if not grad:
        return total, None
    w4 = np.exp(a4 - mix) * d.w  # weight of the "dropped out right after the last purchase" branch
    w3 = d.w - w4
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + xs)
    g_r = np.dot(d.wx, digamma(r + xs) - digamma(r) + np.log(alpha)) - np.dot(w3, log_aT) - np.dot(w4, log_atx)
    g_alpha = d.wx.sum() * r / alpha - np.dot(w3, (r + x) / (alpha + T)) - np.dot(w4, (r + x) / (alpha + tx))
    g_a = np.dot(d.wx, psi_ab - psi_abx) + w4.sum() / a
    g_b = np.dot(d.wx, psi_ab + digamma(b + xs) - digamma(b) - psi_abx) - np.dot(w4, 1.0 / bx)
    return total, np.array([g_r, g_alpha, g_a, g_b])


def _bgnbd_p_alive(params: Mapping[str, float], x, tx, T) -> np.ndarray:
    """P(alive | x, t_x, T) for BG/NBD (Fader, Hardie and Lee 2008, note 021, eq. 2); 1 when x = 0."""
    r, alpha, a, b = (params[k] for k in _PARAM_NAMES["bgnbd"])
    log_odds_dead = np.log(a / (b + np.maximum(x, 1.0) - 1.0)) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
    return np.where(x == 0, 1.0, expit(-log_odds_dead))


def _bgnbd_if_alive(params: Mapping[str, float], t: float, x, T) -> np.ndarray:
    """Expected purchases in (T, T + t] of a customer alive at T: FHL 2005a eq. 10 without its
    P(alive) factor (the unconditional eq. 9 with the posterior r + x, alpha + T, b + x)."""
    r, alpha, a, b = (params[k] for k in _PARAM_NAMES["bgnbd"])
    tail = _one_minus_hyp(r + x, b + x, a + b + x - 1.0, t / (alpha + T + t),
                          (r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    return (a + b + x - 1.0) / (a - 1.0) * tail


def _bgnbd_unconditional(params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
    """E[X(t)] for a customer who has just made the first purchase, BG/NBD (FHL 2005a, eq. 9)."""
    r, alpha, a, b = (params[k] for k in _PARAM_NAMES["bgnbd"])
    tail = _one_minus_hyp(r, b, a + b - 1.0, t / (alpha + t), r * (np.log(alpha) - np.log(alpha + t)))
    return (a + b - 1.0) / (a - 1.0) * tail


# --------------------------------------------------------------------------- MBG/NBD


def _mbgnbd_loglik(params: np.ndarray, d: _Rows, grad: bool):
    """Weighted sum of the MBG/NBD log-likelihood (Batislam et al. 2007) and its gradient: as BG/NBD,
    but a customer may also drop out right after the first purchase."""
    r, alpha, a, b = params
    tx, T = d.cols
    xs, x = d.xs, d.x
    lvl = (gammaln(r + xs) - gammaln(r) + r * np.log(alpha) + gammaln(a + b) + gammaln(b + xs + 1.0) - gammaln(b)
           - gammaln(a + b + xs + 1.0))
    log_aT, log_atx = np.log(alpha + T), np.log(alpha + tx)
    a4 = np.log(a) - np.log(b + x) + (r + x) * (log_aT - log_atx)
    total = np.dot(d.wx, lvl) - np.dot(d.w, (r + x) * log_aT) + np.dot(d.w, np.logaddexp(a4, 0.0))
    if not grad:
        return total, None
    sig = expit(a4) * d.w
    psi_ab, psi_abx = digamma(a + b), digamma(a + b + xs + 1.0)
    g_r = (np.dot(d.wx, digamma(r + xs) - digamma(r) + np.log(alpha)) - np.dot(d.w, log_aT)
           + np.dot(sig, log_aT - log_atx))
    g_alpha = (d.wx.sum() * r / alpha - np.dot(d.w, (r + x) / (alpha + T))
               + np.dot(sig, (r + x) * (1.0 / (alpha + T) - 1.0 / (alpha + tx))))
    g_a = np.dot(d.wx, psi_ab - psi_abx) + sig.sum() / a
    g_b = np.dot(d.wx, psi_ab + digamma(b + xs + 1.0) - digamma(b) - psi_abx) - np.dot(sig, 1.0 / (b + x))
    return total, np.array([g_r, g_alpha, g_a, g_b])


def _mbgnbd_p_alive(params: Mapping[str, float], x, tx, T) -> np.ndarray:
    """P(alive | x, t_x, T) for MBG/NBD (Batislam et al. 2007, appendix A, eq. 5)."""
    r, alpha, a, b = (params[k] for k in _PARAM_NAMES["mbgnbd"])
    log_odds_dead = np.log(a / (b + x)) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
    return expit(-log_odds_dead)


def _mbgnbd_if_alive(params: Mapping[str, float], t: float, x, T) -> np.ndarray:
    """Expected purchases in (T, T + t] of a customer alive at T, MBG/NBD (Wagner and Hoppe 2008)."""
    r, alpha, a, b = (params[k] for k in _PARAM_NAMES["mbgnbd"])
    tail = _one_minus_hyp(r + x, b + x + 1.0, a + b + x, t / (alpha + T + t),
                          (r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    return (a + b + x) / (a - 1.0) * tail


def _mbgnbd_unconditional(params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
    """E[X(t)] for a new customer, MBG/NBD (Batislam et al. 2007)."""
    r, alpha, a, b = (params[k] for k in _PARAM_NAMES["mbgnbd"])
    return b / (a - 1.0) * _one_minus_hyp(r, b + 1.0, a + b, t / (alpha + t), r * (np.log(alpha) - np.log(alpha + t)))


# --------------------------------------------------------------------------- Pareto/NBD


def _pareto_terms(params, x, tx, T) -> tuple[np.ndarray, np.ndarray]:
    """Logs of the 'alive at T' and 'died in (t_x, T]' terms of the Pareto/NBD likelihood, without
    the common factor G(r+x) alpha^r beta^s / G(r) (note 009, eqs. 18-20)."""
    r, alpha, s, beta = params
    rsx = r + s + x
    if alpha >= beta:
        top, second = alpha, s + 1.0
    else:
        top, second = beta, r + x
    gap = abs(alpha - beta)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        l1 = _log_hyp2f1(rsx, second, rsx + 1.0, gap / (top + tx)) - rsx * np.log(top + tx)
        l2 = _log_hyp2f1(rsx, second, rsx + 1.0, gap / (top + T)) - rsx * np.log(top + T)
        # log A0 = log(exp(l1) - exp(l2)), l2 <= l1 (A0 = 0 when t_x = T)
        log_a0 = l1 + np.log(-np.expm1(l2 - l1))
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        died = np.log(s) - np.log(rsx) + log_a0
    return alive, died


def _pareto_loglik(params: np.ndarray, d: _Rows, grad: bool):
    """Weighted sum of the Pareto/NBD log-likelihood (note 009, eq. 18). No analytic gradient (the
    hypergeometric terms depend on the parameters through their arguments): the optimiser uses
    central differences."""
    r, alpha, s, beta = params
    lvl = gammaln(r + d.xs) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive, died = _pareto_terms(params, d.x, *d.cols)
    return np.dot(d.wx, lvl) + np.dot(d.w, np.logaddexp(alive, died)), None


def _pareto_p_alive(params: Mapping[str, float], x, tx, T) -> np.ndarray:
    """P(alive | x, t_x, T) for Pareto/NBD (note 009, eq. 36)."""
    alive, died = _pareto_terms([params[k] for k in _PARAM_NAMES["pareto_nbd"]], x, tx, T)
    return expit(alive - died)


def _pareto_if_alive(params: Mapping[str, float], t: float, x, T) -> np.ndarray:
    """Expected purchases in (T, T + t] of a customer alive at T: note 009 eq. 41 without P(alive),
    (r + x)(beta + T) / ((alpha + T)(s - 1)) [1 - ((beta + T) / (beta + T + t))^(s - 1)]."""
    r, alpha, s, beta = (params[k] for k in _PARAM_NAMES["pareto_nbd"])
    return (r + x) * (beta + T) / (alpha + T) * _expm1_ratio(s - 1.0, np.log1p(t / (beta + T)))


def _pareto_unconditional(params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
    """E[X(t)] for a new customer, Pareto/NBD (note 009, eq. 27)."""
    r, alpha, s, beta = (params[k] for k in _PARAM_NAMES["pareto_nbd"])
    return r * beta / alpha * _expm1_ratio(s - 1.0, np.log1p(t / beta))


# --------------------------------------------------------------------------- NBD (no dropout)


def _nbd_loglik(params: np.ndarray, d: _Rows, grad: bool):
    """Weighted sum of the NBD log-likelihood of the purchase times and its gradient: customers buy
    at Poisson rates lambda ~ gamma(r, alpha) and never drop out (Ehrenberg 1959; the limit of
    BG/NBD as a -> 0 and of Pareto/NBD as s -> 0, FHL 2005a section 3):
    LL = log G(r+x) - log G(r) + r log(alpha) - (r+x) log(alpha+T) (recency carries no information)."""
    r, alpha = params
    _, T = d.cols
    xs, x = d.xs, d.x
    lvl = gammaln(r + xs) - gammaln(r) + r * np.log(alpha)
    log_aT = np.log(alpha + T)
    total = np.dot(d.wx, lvl) - np.dot(d.w, (r + x) * log_aT)
    if not grad:
        return total, None
    g_r = np.dot(d.wx, digamma(r + xs) - digamma(r) + np.log(alpha)) - np.dot(d.w, log_aT)
    g_alpha = d.wx.sum() * r / alpha - np.dot(d.w, (r + x) / (alpha + T))
    return total, np.array([g_r, g_alpha])


def _nbd_p_alive(params: Mapping[str, float], x, tx, T) -> np.ndarray:
    """Nobody drops out: P(alive) = 1."""
    return np.ones(np.broadcast(np.asarray(x, dtype=np.float64), np.asarray(T, dtype=np.float64)).shape)


def _nbd_if_alive(params: Mapping[str, float], t: float, x, T) -> np.ndarray:
    """E[X(T, T + t] | x, T] = (r + x) / (alpha + T) t: the posterior mean rate gamma(r + x, alpha + T)
    times t."""
    r, alpha = (params[k] for k in _PARAM_NAMES["nbd"])
    return (r + x) / (alpha + T) * t


def _nbd_unconditional(params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
    """E[X(t)] = r t / alpha for a new customer."""
    r, alpha = (params[k] for k in _PARAM_NAMES["nbd"])
    return r * np.asarray(t, dtype=np.float64) / alpha


_LOGLIK = {"bgnbd": _bgnbd_loglik, "pareto_nbd": _pareto_loglik, "mbgnbd": _mbgnbd_loglik, "nbd": _nbd_loglik}
_P_ALIVE = {"bgnbd": _bgnbd_p_alive, "pareto_nbd": _pareto_p_alive, "mbgnbd": _mbgnbd_p_alive, "nbd": _nbd_p_alive}
_IF_ALIVE = {"bgnbd": _bgnbd_if_alive, "pareto_nbd": _pareto_if_alive, "mbgnbd": _mbgnbd_if_alive,
             "nbd": _nbd_if_alive}
_UNCONDITIONAL = {"bgnbd": _bgnbd_unconditional, "pareto_nbd": _pareto_unconditional, "mbgnbd": _mbgnbd_unconditional,
                  "nbd": _nbd_unconditional}


# --------------------------------------------------------------------------- Gamma-Gamma


def _gamma_gamma_loglik(params: np.ndarray, d: _Rows, grad: bool):
    """Weighted sum of the log-likelihood of the mean spend m over x repeat purchases (note 025,
    eq. 1a) and its gradient:
    LL = log G(px+q) - log G(px) - log G(q) + q log v + (px-1) log m + px log x - (px+q) log(xm+v)."""
    p, q, v = params
    (m,) = d.cols
    xs, x = d.xs, d.x
    pxs = p * xs
    log_m = np.log(m)
    log_xmv = np.log(x * m + v)
    lvl = gammaln(pxs + q) - gammaln(pxs) - gammaln(q) + q * np.log(v) + pxs * np.log(xs)
    total = np.dot(d.wx, lvl) + np.dot(d.w, (p * x - 1.0) * log_m - (p * x + q) * log_xmv)
    if not grad:
        return total, None
    psi = digamma(pxs + q)
    g_p = np.dot(d.wx, xs * (psi - digamma(pxs) + np.log(xs))) + np.dot(d.w * x, log_m - log_xmv)
    g_q = np.dot(d.wx, psi - digamma(q) + np.log(v)) - np.dot(d.w, log_xmv)
    g_v = d.wx.sum() * q / v - np.dot(d.w, (p * x + q) / (x * m + v))
    return total, np.array([g_p, g_q, g_v])


# --------------------------------------------------------------------------- optimisation


def _objective(loglik: Callable, data: _Rows, penalizer: float) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """Weighted mean negative log-likelihood plus ``penalizer * sum(params**2)`` (lifetimes' objective),
    as a function of the log-parameters, returning (value, gradient)."""
    total = data.w.sum()

    def value(log_params: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            params = np.exp(log_params)
            ll, _ = loglik(params, data, grad=False)
            out = -ll / total + penalizer * np.sum(params**2)
        return float(out) if np.isfinite(out) else np.inf

    def value_and_grad(log_params: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(all="ignore"):
            params = np.exp(log_params)
            ll, dll = loglik(params, data, grad=True)
            out = -ll / total + penalizer * np.sum(params**2)
            if dll is None:  # central differences in the log-parameters
                step = 1e-6
                grad = np.empty_like(log_params)
                for k in range(log_params.size):
                    e = np.zeros_like(log_params)
                    e[k] = step
                    grad[k] = (value(log_params + e) - value(log_params - e)) / (2 * step)
            else:
                grad = params * (-dll / total + 2.0 * penalizer * params)
        if not np.isfinite(out) or not np.all(np.isfinite(grad)):
            return np.inf, np.zeros_like(log_params)
        return float(out), grad

    return value_and_grad


def _minimise(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    what: str,
    hint: str,
    hess_inv0: np.ndarray | None = None,
) -> tuple[np.ndarray, float, int, np.ndarray]:
    """BFGS on the log-parameters; ModelError (with ``hint``) unless it ends at a finite optimum.
    Returns (log-parameters, objective, iterations, BFGS inverse-Hessian estimate)."""
    start_value, _ = fun(x0)
    if not np.isfinite(start_value):
        raise ModelError(f"{what}: the log-likelihood is not finite at the starting values{_hinted(hint)}")
    options: dict[str, Any] = {"gtol": 1e-7, "maxiter": 2000}
    if hess_inv0 is not None:
        options["hess_inv0"] = hess_inv0
    res = minimize(fun, x0, jac=True, method="BFGS", options=options)
    value, grad = float(res.fun), np.asarray(res.jac)
    if not np.isfinite(value):
        raise ModelError(f"{what}: the optimiser reached a non-finite log-likelihood{_hinted(hint)}")
    if not res.success and np.max(np.abs(grad)) > _GRAD_TOL:
        raise ModelError(
            f"{what} did not converge ({res.message.rstrip('.')}; largest gradient "
            f"{np.max(np.abs(grad)):.2g} after {res.nit} iterations){_hinted(hint)}"
        )
    return res.x, value, int(res.nit), res.hess_inv


def _fit_log_params(
    loglik: Callable, rows: _Rows, penalizer: float, x0: np.ndarray, what: str, hint: str
) -> tuple[Callable, np.ndarray, float, int]:
    """Minimise the objective over the log-parameters: (objective, optimum, value, iterations).

    With many distinct rows, BFGS first runs on a seeded subsample of them (their weights kept, so
    the subsample's likelihood estimates the full one without bias) and then polishes on all rows
    from that optimum and its inverse-Hessian estimate: the same optimum in a few full passes."""
    fun = _objective(loglik, rows, penalizer)
    hess_inv0 = None
    if rows.x.size > _WARM_START_ROWS:
        pick = np.sort(np.random.default_rng(0).choice(rows.x.size, _WARM_SAMPLE_ROWS, replace=False))
        sample = _Rows.build(rows.x[pick], tuple(c[pick] for c in rows.cols), rows.w[pick])
        try:
            x0, _, _, hess_inv0 = _minimise(_objective(loglik, sample, penalizer), x0, what, hint)
            hess_inv0 = 0.5 * (hess_inv0 + hess_inv0.T)
            np.linalg.cholesky(hess_inv0)
        except (ModelError, np.linalg.LinAlgError):  # the subsample alone may not identify the model
            hess_inv0 = None
    log_params, value, nit, _ = _minimise(fun, x0, what, hint, hess_inv0)
    return fun, log_params, value, nit


def _std_errors(fun: Callable, log_params: np.ndarray, n: float) -> np.ndarray | None:
    """Asymptotic standard errors of exp(log_params): the inverse observed information of the
    (mean) objective, by forward differences of its gradient (k + 1 evaluations), mapped through
    the delta method. None when the information is not positive definite (no strict minimum)."""
    step = 1e-5
    k = log_params.size
    hess = np.empty((k, k))
    grad0 = fun(log_params)[1]
    for j in range(k):
        e = np.zeros(k)
        e[j] = step
        hess[:, j] = (fun(log_params + e)[1] - grad0) / step
    hess = 0.5 * (hess + hess.T)
    try:
        np.linalg.cholesky(hess)
        cov = np.linalg.inv(hess) / n
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(cov)):
        return None
    return np.exp(log_params) * np.sqrt(np.diag(cov))


def _hinted(hint: str) -> str:
    return f"; {hint}" if hint else ""


def _verified_penalty(fit: Callable[[float], Any], current: float,
                      ladder: tuple[float, ...]) -> tuple[float | None, list[float]]:
    """(the smallest penalty of ``ladder`` above ``current`` with which ``fit(penalty)`` succeeds, else
    None; the penalties tried)."""
    tried = []
    for pen in ladder:
        if pen <= current:
            continue
        tried.append(pen)
        try:
            fit(pen)
        except ModelError:
            continue
        return pen, tried
    return None, tried


def _none_fit(key: str, tried: list[float]) -> str:
    return f"no larger {key} ({', '.join(f'{p:g}' for p in tried)}) fits these data either" if tried else ""


def _not_identified(what: str, names: tuple[str, ...], values: np.ndarray, hint: str, note: str = "") -> ModelError:
    shown = ", ".join(f"{k}={v:.3g}" for k, v in zip(names, values))
    return ModelError(
        f"{what}: the data do not identify the model (the fit ended at {shown}{note}, where the likelihood is "
        f"flat or still rising towards the edge of the parameter space){_hinted(hint)}"
    )


def _json_float(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


# --------------------------------------------------------------------------- TransactionModel


class TransactionModel:
    """How often customers buy: BG/NBD (default), Pareto/NBD or MBG/NBD, fitted by maximum likelihood
    on weighted unique (frequency, recency, T) rows.

    Parameters
    ----------
    kind : {"bgnbd", "pareto_nbd", "mbgnbd"}
        BG/NBD (Fader, Hardie and Lee 2005a), Pareto/NBD (Schmittlein, Morrison and Colombo 1987;
        Fader and Hardie 2005 note 009) or MBG/NBD (Batislam, Denizel and Filiztekin 2007).
    penalizer : float
        L2 penalty ``penalizer * sum(params**2)`` added to the mean negative log-likelihood, with the
        time axis scaled so that the oldest customer has T = 1: the objective of lifetimes'
        BetaGeoFitter, so the same value gives the same parameters. (lifetimes' ParetoNBDFitter adds
        its penalty to the *summed* likelihood, so there its penalizer is n times weaker.) A small
        value such as 0.001 keeps parameters finite on data that barely identify the model.

    Attributes
    ----------
    params_ : dict[str, float]
        Fitted parameters in the input time unit: r, alpha, a, b (BG/NBD, MBG/NBD) or
        r, alpha, s, beta (Pareto/NBD).
    report_ : dict
        n_customers, n_repeat, n_unique_rows, log_likelihood (total, without the penalty, in the
        input time unit, as the papers report it), iterations (BFGS, on all rows), std_errors
        (asymptotic, from the observed information of the penalised objective).
    """

    def __init__(self, kind: str = "bgnbd", penalizer: float = 0.0) -> None:
        self.kind = kind
        self.penalizer = penalizer

    def __repr__(self) -> str:
        return f"TransactionModel(kind={self.kind!r}, penalizer={self.penalizer!r})"

    # ----------------------------------------------------------------- fitting

    def fit(self, frequency: Any, recency: Any, T: Any, weights: Any = None, *,
            search_hint: bool = True) -> TransactionModel:
        """Fit the model to one row per customer (or to pre-aggregated rows with ``weights``, the
        number of customers sharing each row). Returns ``self``.

        Raises ModelError for invalid inputs (naming the problem and an example row) and when the
        optimiser does not reach a finite optimum inside the parameter space. Such an error names a
        remedy only when it was checked to work on these data: with ``search_hint`` the penalties of
        :data:`TRANSACTION_PENALTIES` above ``penalizer`` and the NBD model are tried first.
        (:func:`crmlab.clv.fallback.fit_purchase_model` ships such a remedy instead of failing.)
        """
        if self.kind not in TRANSACTION_KINDS:
            raise ModelError(f"kind={self.kind!r} is not a transaction model; choose one of {', '.join(TRANSACTION_KINDS)}")
        penalizer = _check_penalizer(self.penalizer, "clv.penalizer")
        x, tx, age = _check_rfm(frequency, recency, T)
        w = _check_weights(weights, x.size)
        (ux, utx, uT), inverse, counts = _unique_rows(x, tx, age)
        uw = counts.astype(np.float64) if w is None else np.bincount(inverse, weights=w, minlength=ux.size)
        keep = uw > 0
        ux, utx, uT, uw = ux[keep], utx[keep], uT[keep], uw[keep]
        if uT.max() <= 0:
            raise ModelError("every customer has T = 0 (first purchase on the cut-off date): nothing to fit")
        if not np.any(ux > 0):
            raise ModelError(f"none of the {int(round(uw.sum()))} customers has a repeat purchase (frequency > 0): "
                             "a purchase model cannot be fitted; check the cut-off date and the customer id mapping")

        try:
            self._fit_rows(penalizer, ux, utx, uT, uw)
        except ModelError as exc:
            if not search_hint:
                raise
            raise ModelError(f"{exc}; {self._remedy(penalizer, ux, utx, uT, uw)}") from None
        return self

    def _remedy(self, penalizer: float, ux, utx, uT, uw) -> str:
        """A remedy checked on the same rows: a larger penalty, else the NBD model, else none."""
        def attempt(kind: str, pen: float) -> None:
            TransactionModel(kind, pen)._fit_rows(pen, ux, utx, uT, uw)

        pen, tried = _verified_penalty(lambda v: attempt(self.kind, v), penalizer, TRANSACTION_PENALTIES)
        if pen is not None:
            return f"clv.penalizer={pen:g} fits these data (checked)"
        if self.kind != "nbd":
            try:
                attempt("nbd", 0.0)
                return "clv.model=nbd (purchases without dropout) fits these data (checked)"
            except ModelError:
                pass
        failed = [_none_fit("clv.penalizer", tried), "the NBD model does not fit either" if self.kind != "nbd" else ""]
        return "; ".join(f for f in failed if f) + (f"; {int(round(uw[ux > 0].sum()))} of {int(round(uw.sum()))} "
                                                    "customers have a repeat purchase")

    def _fit_rows(self, penalizer: float, ux, utx, uT, uw) -> None:
        """Maximum likelihood on weighted unique rows; sets ``params_`` and ``report_``."""
        scale = 1.0 / uT.max()  # as lifetimes: the oldest customer has T = 1 while optimising
        names = _PARAM_NAMES[self.kind]
        hint = ""
        what = f"{self.kind} fit on {int(round(uw.sum()))} customers"
        rows = _Rows.build(ux, (utx * scale, uT * scale), uw)
        fun, log_params, value, nit = _fit_log_params(_LOGLIK[self.kind], rows, penalizer, np.full(len(names), 0.1),
                                                      what, hint)
        note = ", time scaled so that the oldest customer has T = 1"
        if np.any(np.abs(log_params) > _LOG_PARAM_LIMIT):
            raise _not_identified(what, names, np.exp(log_params), hint, note)
        se = _std_errors(fun, log_params, uw.sum())
        if se is None:
            raise _not_identified(what, names, np.exp(log_params), hint, note)
        params = dict(zip(names, np.exp(log_params).tolist()))
        std_errors = dict(zip(names, se.tolist()))
        for name in _TIME_PARAMS[self.kind]:
            params[name] = float(params[name] / scale)
            std_errors[name] = float(std_errors[name] / scale)
        # log-likelihood in the input time unit: scaling time by c shifts each row by -x log c
        penalty = penalizer * float(np.sum(np.exp(log_params) ** 2))
        loglik = -(value - penalty) * uw.sum() + np.dot(uw, ux) * np.log(scale)
        self.params_ = params
        self.report_ = {
            "n_customers": int(round(uw.sum())),
            "n_repeat": int(round(uw[ux > 0].sum())),
            "n_unique_rows": int(ux.size),
            "log_likelihood": float(loglik),
            "iterations": nit,
            "std_errors": {k: float(v) for k, v in std_errors.items()},
        }

    # ----------------------------------------------------------------- scoring

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise ModelError("this TransactionModel is not fitted yet: call fit(frequency, recency, T) first, "
                             "or load one with TransactionModel.from_dict()")

    def _on_unique_rows(self, fn: Callable, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Evaluate ``fn(x, t_x, T)`` once per distinct history and broadcast back to the customers."""
        self._check_fitted()
        x, tx, age = _check_rfm(frequency, recency, T)
        (ux, utx, uT), inverse, _ = _unique_rows(x, tx, age)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = np.asarray(fn(ux, utx, uT), dtype=np.float64)
        return out[inverse]

    def predict_purchases(self, t: float, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Expected number of purchases in the next ``t`` time units, given each customer's history
        (BG/NBD: FHL 2005a eq. 10; Pareto/NBD: note 009 eq. 41; MBG/NBD: Wagner and Hoppe 2008)."""
        t = _check_horizon(t)
        p_alive, if_alive, params = _P_ALIVE[self.kind], _IF_ALIVE[self.kind], self.params_

        def expected(x: np.ndarray, tx: np.ndarray, age: np.ndarray) -> np.ndarray:
            # E[X(t) | alive] depends on (x, T) only: evaluate the hypergeometric terms per distinct pair
            (px, pT), pair, _ = _unique_rows(x, age)
            return p_alive(params, x, tx, age) * if_alive(params, t, px, pT)[pair]

        return self._on_unique_rows(expected, frequency, recency, T)

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Probability that each customer is still active at the cut-off, given the history
        (BG/NBD: Fader, Hardie and Lee 2008, note 021; Pareto/NBD: note 009 eq. 36)."""
        fn = _P_ALIVE[self.kind]
        return self._on_unique_rows(lambda x, tx, age: fn(self.params_, x, tx, age), frequency, recency, T)

    def expected_purchases_new(self, t: Any) -> np.ndarray | float:
        """Unconditional E[X(t)]: expected repeat purchases in the first ``t`` time units after the first
        purchase of a new customer (BG/NBD: FHL 2005a eq. 9). ``t`` may be a scalar or an array."""
        self._check_fitted()
        arr = np.asarray(t, dtype=np.float64)
        if not np.all(np.isfinite(arr)) or np.any(arr < 0):
            raise ModelError(f"t must be finite and >= 0, got {t!r}")
        with np.errstate(divide="ignore", invalid="ignore"):
            out = np.where(arr > 0, _UNCONDITIONAL[self.kind](self.params_, np.maximum(arr, 1e-300)), 0.0)
        return float(out) if out.ndim == 0 else out

    def expected_repeat_purchases_cumulative(self, times: Any, first_purchase: Any) -> np.ndarray:
        """Expected cumulative repeat purchases of a cohort at each of ``times``: the sum over customers of
        E[X(t - first_purchase_i)] (0 before the first purchase), as in the tracking plots of FHL
        2005a (figure 2). ``times`` and ``first_purchase`` are in the model's time unit on one axis
        (e.g. weeks since the start of the data)."""
        self._check_fitted()
        grid = _to_array("times", times)
        births = _to_array("first_purchase", first_purchase)
        if not (np.all(np.isfinite(grid)) and np.all(np.isfinite(births))):
            raise ModelError("times and first_purchase must be finite")
        (ub,), _, counts = _unique_rows(births)
        out = np.empty(grid.size)
        for i, t in enumerate(grid):
            age = t - ub
            alive = age > 0
            out[i] = np.dot(counts[alive], self.expected_purchases_new(age[alive])) if alive.any() else 0.0
        return out

    # ----------------------------------------------------------------- serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description of the fitted model (kind, params, penalizer, report)."""
        self._check_fitted()
        return {
            "model": "TransactionModel",
            "version": _DICT_VERSION,
            "kind": self.kind,
            "penalizer": float(self.penalizer),
            "params": {k: float(v) for k, v in self.params_.items()},
            "report": _json_safe(self.report_),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransactionModel:
        """Rebuild a fitted model from :meth:`to_dict` output (no code is unpickled)."""
        kind = _read_header(data, "TransactionModel")
        if kind not in TRANSACTION_KINDS:
            raise ModelError(f"TransactionModel dict: unknown kind {kind!r}; expected one of {', '.join(TRANSACTION_KINDS)}")
        model = cls(kind=kind, penalizer=float(data.get("penalizer", 0.0)))
        model.params_ = _read_params(data, _PARAM_NAMES[kind], "TransactionModel")
        model.report_ = dict(data.get("report") or {})
        return model


def _check_horizon(t: Any) -> float:
    try:
        value = float(t)
    except (TypeError, ValueError):
        raise ModelError(f"t must be a single number of time units >= 0, got {t!r}") from None
    if not np.isfinite(value) or value < 0:
        raise ModelError(f"t must be a finite number of time units >= 0, got {t!r}")
    return value


def _json_safe(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _json_float(value)
    return value


def _read_header(data: Mapping[str, Any], model: str) -> str:
    if not isinstance(data, Mapping) or data.get("model") != model:
        got = data.get("model") if isinstance(data, Mapping) else type(data).__name__
        raise ModelError(f"expected a {model} dict (from {model}.to_dict()), got model={got!r}")
    if data.get("version") != _DICT_VERSION:
        raise ModelError(f"{model} dict has version {data.get('version')!r}; this crmlab reads version {_DICT_VERSION}")
    return str(data.get("kind"))


def _read_params(data: Mapping[str, Any], names: tuple[str, ...], model: str) -> dict[str, float]:
    raw = data.get("params")
    if not isinstance(raw, Mapping) or set(raw) != set(names):
        raise ModelError(f"{model} dict: params must have exactly the keys {list(names)}, got {raw!r}")
    params = {k: float(raw[k]) for k in names}
    if not all(np.isfinite(v) and v > 0 for v in params.values()):
        raise ModelError(f"{model} dict: parameters must be finite and > 0, got {params}")
    return params


# --------------------------------------------------------------------------- SpendModel


class SpendModel:
    """How much customers spend per purchase: the Gamma-Gamma model (Fader, Hardie and Lee 2005b;
    Fader and Hardie 2013, note 025), fitted on repeat customers' mean repeat spend over weighted
    unique (frequency, monetary_value) rows; or, as the simplest fallback, the population mean spend.

    Parameters
    ----------
    kind : {"gamma_gamma", "mean"}
        "mean": every customer's expected spend per purchase is the (weighted) mean of the repeat
        customers' mean repeat spends, parameter ``mean`` (what Gamma-Gamma gives a one-time buyer).
    penalizer : float
        L2 penalty on (p, q, v) added to the mean negative log-likelihood (lifetimes'
        GammaGammaFitter objective; v is in money units, so the penalty depends on the currency).
    spend_rule : {"exclude", "floor"}
        Repeat customers whose mean repeat spend is zero or negative (returns, free orders): "exclude"
        leaves them out of the fit and scores them with the population mean spend; "floor" sets
        their spend to 0.01 in the fit and in scoring.

    Attributes
    ----------
    params_ : dict[str, float]
        p, q, v (Gamma-Gamma) or mean.
    report_ : dict
        n_customers, n_repeat, n_nonpositive_spend, n_excluded, n_floored, n_fit, n_unique_rows,
        freq_spend_corr (Pearson correlation of frequency and spend among the repeat customers in the
        fit; the model assumes they are about independent), population_mean_spend, log_likelihood
        (total, without the penalty), iterations, std_errors (as in TransactionModel).
    """

    def __init__(self, penalizer: float = 0.0, spend_rule: str = "exclude", kind: str = "gamma_gamma") -> None:
        self.penalizer = penalizer
        self.spend_rule = spend_rule
        self.kind = kind

    def __repr__(self) -> str:
        return f"SpendModel(penalizer={self.penalizer!r}, spend_rule={self.spend_rule!r}, kind={self.kind!r})"

    def _check_rule(self) -> None:
        if self.kind not in SPEND_KINDS:
            raise ModelError(f"kind={self.kind!r} is not a spend model; choose one of {', '.join(SPEND_KINDS)}")
        if self.spend_rule not in SPEND_RULES:
            raise ModelError(f"spend_rule={self.spend_rule!r} is not valid; choose one of {', '.join(SPEND_RULES)}")

    def _check_inputs(self, frequency: Any, monetary_value: Any) -> tuple[np.ndarray, np.ndarray]:
        index = _labels(frequency)
        cols = {"frequency": _to_array("frequency", frequency),
                "monetary_value": _to_array("monetary_value", monetary_value)}
        x, m = cols["frequency"], cols["monetary_value"]
        if x.size != m.size:
            raise ModelError(f"frequency and monetary_value must have the same length, got {x.size} and {m.size}")
        if not x.size:
            raise ModelError("no customers: the inputs are empty")
        bad = ~np.isfinite(x)
        if bad.any():
            raise ModelError("frequency has missing or infinite values" + _example(bad, cols, index))
        for bad, problem in ((x < 0, "frequency must be >= 0 (number of repeat purchases)"),
                             (x != np.floor(x), "frequency must be a whole number (number of repeat purchases)"),
                             ((x > 0) & ~np.isfinite(m),
                              "monetary_value is missing or infinite for a repeat customer (frequency > 0)")):
            if bad.any():
                raise ModelError(problem + _example(bad, cols, index))
        return x, m

    def _apply_rule(self, x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(spend after the rule, mask of repeat customers scored as the population mean)."""
        nonpositive = (x > 0) & (m <= 0)
        if self.spend_rule == "floor":
            return np.where(nonpositive, _FLOOR_SPEND, m), np.zeros_like(nonpositive)
        return m, nonpositive

    def fit(self, frequency: Any, monetary_value: Any, weights: Any = None, *, search_hint: bool = True) -> SpendModel:
        """Fit on the repeat customers (frequency > 0) among the customers given; one-time buyers and,
        under ``spend_rule="exclude"``, non-positive spends are left out. Returns ``self``.

        A Gamma-Gamma fit that fails names a larger penalty only when one of :data:`SPEND_PENALTIES`
        was checked to fit these data (with ``search_hint``)."""
        self._check_rule()
        penalizer = _check_penalizer(self.penalizer, "clv.gg_penalizer")
        x, m = self._check_inputs(frequency, monetary_value)
        w = _check_weights(weights, x.size)
        w = np.ones_like(x) if w is None else w
        nonpositive = (x > 0) & (m <= 0)
        spend, excluded = self._apply_rule(x, m)
        use = (x > 0) & ~excluded & (w > 0)
        if not use.any():
            raise ModelError(
                f"{'Gamma-Gamma' if self.kind == 'gamma_gamma' else 'the mean spend model'} needs repeat customers "
                f"with a positive mean spend; none among {x.size} customers "
                f"({int((x > 0).sum())} repeat customers, {int(nonpositive.sum())} with spend <= 0)"
            )
        (ux, um), inverse, _ = _unique_rows(x[use], spend[use])
        uw = np.bincount(inverse, weights=w[use], minlength=ux.size)
        mean_spend = float(np.dot(uw, um) / uw.sum())
        counts = {
            "n_customers": int(round(w.sum())),
            "n_repeat": int(round(w[x > 0].sum())),
            "n_nonpositive_spend": int(round(w[nonpositive].sum())),
            "n_excluded": int(round(w[nonpositive & excluded].sum())),
            "n_floored": int(round(w[nonpositive].sum())) if self.spend_rule == "floor" else 0,
            "n_fit": int(round(uw.sum())),
            "n_unique_rows": int(ux.size),
            "freq_spend_corr": _json_float(_weighted_corr(x[use], spend[use], w[use])),
        }
        if self.kind == "mean":
            self.params_ = {"mean": mean_spend}
            self.report_ = {"spend_rule": self.spend_rule, **counts, "population_mean_spend": mean_spend}
            return self
        if ux.size < 3:
            raise ModelError(f"Gamma-Gamma needs at least 3 distinct (frequency, spend) rows to fit 3 parameters, "
                             f"got {ux.size}")
        try:
            self._fit_gamma_gamma(penalizer, ux, um, uw, mean_spend, counts)
        except ModelError as exc:
            if not search_hint:
                raise
            pen, tried = _verified_penalty(
                lambda v: SpendModel(v, self.spend_rule)._fit_gamma_gamma(v, ux, um, uw, mean_spend, counts),
                penalizer, SPEND_PENALTIES)
            remedy = (f"clv.gg_penalizer={pen:g} fits these data (checked)" if pen is not None else
                      "; ".join(filter(None, [_none_fit("clv.gg_penalizer", tried),
                                              "clv.spend_model=mean (the population mean spend) always fits"])))
            raise ModelError(f"{exc}; {remedy}") from None
        return self

    def _fit_gamma_gamma(self, penalizer: float, ux, um, uw, mean_spend: float, counts: dict[str, Any]) -> None:
        hint = ("check monetary_value for extreme outliers (the model needs mean spends that vary between "
                "customers)")
        what = f"Gamma-Gamma fit on {int(round(uw.sum()))} repeat customers"
        # start: p = q = e^0.1 (as lifetimes) and v such that the population mean p v / (q - 1) = mean spend
        x0 = np.array([0.1, 0.1, np.log(mean_spend * (np.exp(0.1) - 1.0) / np.exp(0.1))])
        fun, log_params, value, nit = _fit_log_params(_gamma_gamma_loglik, _Rows.build(ux, (um,), uw), penalizer, x0,
                                                      what, hint)
        p, q, v = np.exp(log_params)
        scale_free = log_params - np.array([0.0, 0.0, np.log(mean_spend)])
        se = _std_errors(fun, log_params, uw.sum())
        if np.any(np.abs(scale_free) > _LOG_PARAM_LIMIT) or se is None:
            raise _not_identified(what, ("p", "q", "v"), np.exp(log_params), hint)
        if q <= 1.0:
            raise ModelError(
                f"{what}: q={q:.3g} <= 1, so the fitted spend distribution has no finite mean (a very heavy "
                f"tail of mean spends); {hint}"
            )
        penalty = penalizer * float(p**2 + q**2 + v**2)
        self.params_ = {"p": float(p), "q": float(q), "v": float(v)}
        self.report_ = {
            "spend_rule": self.spend_rule,
            **counts,
            "population_mean_spend": float(p * v / (q - 1.0)),
            "log_likelihood": float(-(value - penalty) * uw.sum()),
            "iterations": nit,
            "std_errors": {k: float(s) for k, s in zip(("p", "q", "v"), se)},
        }

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise ModelError("this SpendModel is not fitted yet: call fit(frequency, monetary_value) first, "
                             "or load one with SpendModel.from_dict()")

    @property
    def population_mean_spend(self) -> float:
        """E[Z] = p v / (q - 1): the expected mean spend of a customer with no repeat purchases (the
        ``mean`` parameter of the mean model)."""
        self._check_fitted()
        if self.kind == "mean":
            return self.params_["mean"]
        p, q, v = (self.params_[k] for k in ("p", "q", "v"))
        return p * v / (q - 1.0)

    def conditional_expected_spend(self, frequency: Any, monetary_value: Any) -> np.ndarray:
        """E[Z | x, m] = (p v + p x m) / (p x + q - 1) (note 025, eq. 5): a weighted average of the
        customer's mean spend and the population mean p v / (q - 1), which is what one-time buyers
        (x = 0; their monetary_value is ignored) and, under ``spend_rule="exclude"``, repeat customers
        with a non-positive spend get. Elementwise arithmetic, so no unique-row compression."""
        self._check_fitted()
        self._check_rule()
        x, m = self._check_inputs(frequency, monetary_value)
        if self.kind == "mean":
            return np.full(x.size, self.params_["mean"])
        spend, as_mean = self._apply_rule(x, m)
        p, q, v = (self.params_[k] for k in ("p", "q", "v"))
        px = p * x
        with np.errstate(invalid="ignore"):
            out = (p * v + px * np.where(x > 0, spend, 0.0)) / (px + q - 1.0)
        return np.where(as_mean, self.population_mean_spend, out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description of the fitted model (kind, params, penalizer, spend_rule, report)."""
        self._check_fitted()
        return {
            "model": "SpendModel",
            "version": _DICT_VERSION,
            "kind": self.kind,
            "penalizer": float(self.penalizer),
            "spend_rule": self.spend_rule,
            "params": {k: float(v) for k, v in self.params_.items()},
            "report": _json_safe(self.report_),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpendModel:
        """Rebuild a fitted model from :meth:`to_dict` output (no code is unpickled)."""
        kind = _read_header(data, "SpendModel")
        if kind not in SPEND_KINDS:
            raise ModelError(f"SpendModel dict: unknown kind {kind!r}; expected one of {', '.join(SPEND_KINDS)}")
        model = cls(penalizer=float(data.get("penalizer", 0.0)), spend_rule=str(data.get("spend_rule", "exclude")),
                    kind=kind)
        model._check_rule()
        model.params_ = _read_params(data, _PARAM_NAMES[kind], "SpendModel")
        if kind == "gamma_gamma" and model.params_["q"] <= 1.0:
            raise ModelError(f"SpendModel dict: q must be > 1 for a finite mean spend, got {model.params_['q']}")
        model.report_ = dict(data.get("report") or {})
        return model


def _weighted_corr(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    if x.size < 2:
        return float("nan")
    mx, my = np.average(x, weights=w), np.average(y, weights=w)
    cov = np.average((x - mx) * (y - my), weights=w)
    var = np.average((x - mx) ** 2, weights=w) * np.average((y - my) ** 2, weights=w)
    return float(cov / np.sqrt(var)) if var > 0 else float("nan")


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
    p_alive, if_alive = _P_ALIVE[transaction_model.kind], _IF_ALIVE[transaction_model.kind]
    params = transaction_model.params_

    def discounted_purchases(x: np.ndarray, tx: np.ndarray, age: np.ndarray) -> np.ndarray:
        # E[X(t) | history] = P(alive | x, t_x, T) * E[X(t) | alive, x, T]: P(alive) once per history,
        # the monthly hypergeometric terms once per distinct (x, T)
        (px, pT), pair, _ = _unique_rows(x, age)
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
