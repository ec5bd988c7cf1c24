"""How often customers buy: BG/NBD, MBG/NBD, Pareto/NBD and NBD (no dropout) likelihoods, closed
forms and :class:`TransactionModel` (see :mod:`crmlab.clv.models` for the conventions and papers)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.special import digamma, expit, gammaln

from crmlab.errors import ModelError
from crmlab.clv.optimise import fit_log_params, log_param_covariance, none_fit, not_identified, verified_penalty
from crmlab.clv.shared import DICT_VERSION, LOG_PARAM_LIMIT, PARAM_NAMES, Rows, TIME_PARAMS, TRANSACTION_KINDS, TRANSACTION_PENALTIES, check_penalizer, check_rfm, check_weights, expm1_ratio, json_safe, log_hyp2f1, one_minus_hyp, read_header, read_params, to_array, unique_rows


# --------------------------------------------------------------------------- BG/NBD


def _bgnbd_loglik(params: np.ndarray, d: Rows, grad: bool):
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
    r, alpha, a, b = (params[k] for k in PARAM_NAMES["bgnbd"])
    log_odds_dead = np.log(a / (b + np.maximum(x, 1.0) - 1.0)) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
    return np.where(x == 0, 1.0, expit(-log_odds_dead))


def _bgnbd_if_alive(params: Mapping[str, float], t: float, x, T) -> np.ndarray:
    """Expected purchases in (T, T + t] of a customer alive at T: FHL 2005a eq. 10 without its
    P(alive) factor (the unconditional eq. 9 with the posterior r + x, alpha + T, b + x)."""
    r, alpha, a, b = (params[k] for k in PARAM_NAMES["bgnbd"])
    tail = one_minus_hyp(r + x, b + x, a + b + x - 1.0, t / (alpha + T + t),
                          (r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    return (a + b + x - 1.0) / (a - 1.0) * tail


def _bgnbd_unconditional(params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
    """E[X(t)] for a customer who has just made the first purchase, BG/NBD (FHL 2005a, eq. 9)."""
    r, alpha, a, b = (params[k] for k in PARAM_NAMES["bgnbd"])
    tail = one_minus_hyp(r, b, a + b - 1.0, t / (alpha + t), r * (np.log(alpha) - np.log(alpha + t)))
    return (a + b - 1.0) / (a - 1.0) * tail


# --------------------------------------------------------------------------- MBG/NBD


def _mbgnbd_loglik(params: np.ndarray, d: Rows, grad: bool):
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
    r, alpha, a, b = (params[k] for k in PARAM_NAMES["mbgnbd"])
    log_odds_dead = np.log(a / (b + x)) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
    return expit(-log_odds_dead)


def _mbgnbd_if_alive(params: Mapping[str, float], t: float, x, T) -> np.ndarray:
    """Expected purchases in (T, T + t] of a customer alive at T, MBG/NBD (Wagner and Hoppe 2008)."""
    r, alpha, a, b = (params[k] for k in PARAM_NAMES["mbgnbd"])
    tail = one_minus_hyp(r + x, b + x + 1.0, a + b + x, t / (alpha + T + t),
                          (r + x) * (np.log(alpha + T) - np.log(alpha + T + t)))
    return (a + b + x) / (a - 1.0) * tail


def _mbgnbd_unconditional(params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
    """E[X(t)] for a new customer, MBG/NBD (Batislam et al. 2007)."""
    r, alpha, a, b = (params[k] for k in PARAM_NAMES["mbgnbd"])
    return b / (a - 1.0) * one_minus_hyp(r, b + 1.0, a + b, t / (alpha + t), r * (np.log(alpha) - np.log(alpha + t)))


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
        l1 = log_hyp2f1(rsx, second, rsx + 1.0, gap / (top + tx)) - rsx * np.log(top + tx)
        l2 = log_hyp2f1(rsx, second, rsx + 1.0, gap / (top + T)) - rsx * np.log(top + T)
        # log A0 = log(exp(l1) - exp(l2)), l2 <= l1 (A0 = 0 when t_x = T)
        log_a0 = l1 + np.log(-np.expm1(l2 - l1))
        alive = -(r + x) * np.log(alpha + T) - s * np.log(beta + T)
        died = np.log(s) - np.log(rsx) + log_a0
    return alive, died


def _pareto_loglik(params: np.ndarray, d: Rows, grad: bool):
    """Weighted sum of the Pareto/NBD log-likelihood (note 009, eq. 18). No analytic gradient (the
    hypergeometric terms depend on the parameters through their arguments): the optimiser uses
    central differences."""
    r, alpha, s, beta = params
    lvl = gammaln(r + d.xs) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    alive, died = _pareto_terms(params, d.x, *d.cols)
    return np.dot(d.wx, lvl) + np.dot(d.w, np.logaddexp(alive, died)), None


def _pareto_p_alive(params: Mapping[str, float], x, tx, T) -> np.ndarray:
    """P(alive | x, t_x, T) for Pareto/NBD (note 009, eq. 36)."""
    alive, died = _pareto_terms([params[k] for k in PARAM_NAMES["pareto_nbd"]], x, tx, T)
    return expit(alive - died)


def _pareto_if_alive(params: Mapping[str, float], t: float, x, T) -> np.ndarray:
    """Expected purchases in (T, T + t] of a customer alive at T: note 009 eq. 41 without P(alive),
    (r + x)(beta + T) / ((alpha + T)(s - 1)) [1 - ((beta + T) / (beta + T + t))^(s - 1)]."""
    r, alpha, s, beta = (params[k] for k in PARAM_NAMES["pareto_nbd"])
    return (r + x) * (beta + T) / (alpha + T) * expm1_ratio(s - 1.0, np.log1p(t / (beta + T)))


def _pareto_unconditional(params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
    """E[X(t)] for a new customer, Pareto/NBD (note 009, eq. 27)."""
    r, alpha, s, beta = (params[k] for k in PARAM_NAMES["pareto_nbd"])
    return r * beta / alpha * expm1_ratio(s - 1.0, np.log1p(t / beta))


# --------------------------------------------------------------------------- NBD (no dropout)


def _nbd_loglik(params: np.ndarray, d: Rows, grad: bool):
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
    r, alpha = (params[k] for k in PARAM_NAMES["nbd"])
    return (r + x) / (alpha + T) * t


def _nbd_unconditional(params: Mapping[str, float], t: np.ndarray) -> np.ndarray:
    """E[X(t)] = r t / alpha for a new customer."""
    r, alpha = (params[k] for k in PARAM_NAMES["nbd"])
    return r * np.asarray(t, dtype=np.float64) / alpha


_LOGLIK = {"bgnbd": _bgnbd_loglik, "pareto_nbd": _pareto_loglik, "mbgnbd": _mbgnbd_loglik, "nbd": _nbd_loglik}
P_ALIVE = {"bgnbd": _bgnbd_p_alive, "pareto_nbd": _pareto_p_alive, "mbgnbd": _mbgnbd_p_alive, "nbd": _nbd_p_alive}
IF_ALIVE = {"bgnbd": _bgnbd_if_alive, "pareto_nbd": _pareto_if_alive, "mbgnbd": _mbgnbd_if_alive,
             "nbd": _nbd_if_alive}
_UNCONDITIONAL = {"bgnbd": _bgnbd_unconditional, "pareto_nbd": _pareto_unconditional, "mbgnbd": _mbgnbd_unconditional,
                  "nbd": _nbd_unconditional}


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
        penalizer = check_penalizer(self.penalizer, "clv.penalizer")
        x, tx, age = check_rfm(frequency, recency, T)
        w = check_weights(weights, x.size)
        (ux, utx, uT), inverse, counts = unique_rows(x, tx, age)
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

        pen, tried = verified_penalty(lambda v: attempt(self.kind, v), penalizer, TRANSACTION_PENALTIES)
        if pen is not None:
            return f"clv.penalizer={pen:g} fits these data (checked)"
        if self.kind != "nbd":
            try:
                attempt("nbd", 0.0)
                return "clv.model=nbd (purchases without dropout) fits these data (checked)"
            except ModelError:
                pass
        failed = [none_fit("clv.penalizer", tried), "the NBD model does not fit either" if self.kind != "nbd" else ""]
        return "; ".join(f for f in failed if f) + (f"; {int(round(uw[ux > 0].sum()))} of {int(round(uw.sum()))} "
                                                    "customers have a repeat purchase")

    def _fit_rows(self, penalizer: float, ux, utx, uT, uw) -> None:
        """Maximum likelihood on weighted unique rows; sets ``params_`` and ``report_``."""
        scale = 1.0 / uT.max()  # as lifetimes: the oldest customer has T = 1 while optimising
        names = PARAM_NAMES[self.kind]
        hint = ""
        what = f"{self.kind} fit on {int(round(uw.sum()))} customers"
        rows = Rows.build(ux, (utx * scale, uT * scale), uw)
        fun, log_params, value, nit = fit_log_params(_LOGLIK[self.kind], rows, penalizer, np.full(len(names), 0.1),
                                                      what, hint)
        note = ", time scaled so that the oldest customer has T = 1"
        if np.any(np.abs(log_params) > LOG_PARAM_LIMIT):
            raise not_identified(what, names, np.exp(log_params), hint, note)
        cov = log_param_covariance(fun, log_params, uw.sum())
        if cov is None:
            raise not_identified(what, names, np.exp(log_params), hint, note)
        se = np.exp(log_params) * np.sqrt(np.diag(cov))
        params = dict(zip(names, np.exp(log_params).tolist()))
        std_errors = dict(zip(names, se.tolist()))
        for name in TIME_PARAMS[self.kind]:
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
            # of the log-parameters in the input time unit (rescaling time shifts log alpha by a constant)
            "log_param_cov": cov.tolist(),
        }

    # ----------------------------------------------------------------- scoring

    def _check_fitted(self) -> None:
        if not hasattr(self, "params_"):
            raise ModelError("this TransactionModel is not fitted yet: call fit(frequency, recency, T) first, "
                             "or load one with TransactionModel.from_dict()")

    def _on_unique_rows(self, fn: Callable, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Evaluate ``fn(x, t_x, T)`` once per distinct history and broadcast back to the customers."""
        self._check_fitted()
        x, tx, age = check_rfm(frequency, recency, T)
        (ux, utx, uT), inverse, _ = unique_rows(x, tx, age)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            out = np.asarray(fn(ux, utx, uT), dtype=np.float64)
        return out[inverse]

    def predict_purchases(self, t: float, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Expected number of purchases in the next ``t`` time units, given each customer's history
        (BG/NBD: FHL 2005a eq. 10; Pareto/NBD: note 009 eq. 41; MBG/NBD: Wagner and Hoppe 2008)."""
        t = _check_horizon(t)
        p_alive, if_alive, params = P_ALIVE[self.kind], IF_ALIVE[self.kind], self.params_

        def expected(x: np.ndarray, tx: np.ndarray, age: np.ndarray) -> np.ndarray:
            # E[X(t) | alive] depends on (x, T) only: evaluate the hypergeometric terms per distinct pair
            (px, pT), pair, _ = unique_rows(x, age)
            return p_alive(params, x, tx, age) * if_alive(params, t, px, pT)[pair]

        return self._on_unique_rows(expected, frequency, recency, T)

    def probability_alive(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Probability that each customer is still active at the cut-off, given the history
        (BG/NBD: Fader, Hardie and Lee 2008, note 021; Pareto/NBD: note 009 eq. 36)."""
        fn = P_ALIVE[self.kind]
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
        grid = to_array("times", times)
        births = to_array("first_purchase", first_purchase)
        if not (np.all(np.isfinite(grid)) and np.all(np.isfinite(births))):
            raise ModelError("times and first_purchase must be finite")
        (ub,), _, counts = unique_rows(births)
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
            "version": DICT_VERSION,
            "kind": self.kind,
            "penalizer": float(self.penalizer),
            "params": {k: float(v) for k, v in self.params_.items()},
            "report": json_safe(self.report_),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TransactionModel:
        """Rebuild a fitted model from :meth:`to_dict` output (no code is unpickled)."""
        kind = read_header(data, "TransactionModel")
        if kind not in TRANSACTION_KINDS:
            raise ModelError(f"TransactionModel dict: unknown kind {kind!r}; expected one of {', '.join(TRANSACTION_KINDS)}")
        model = cls(kind=kind, penalizer=float(data.get("penalizer", 0.0)))
        model.params_ = read_params(data, PARAM_NAMES[kind], "TransactionModel")
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


