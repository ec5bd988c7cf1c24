"""How much customers spend: the Gamma-Gamma likelihood and :class:`SpendModel` (Gamma-Gamma or the
population mean); see :mod:`crmlab.clv.models` for the conventions and papers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import digamma, gammaln

from crmlab.errors import ModelError
from crmlab.clv.optimise import fit_log_params, log_param_covariance, none_fit, not_identified, verified_penalty
from crmlab.clv.shared import DICT_VERSION, json_float, FLOOR_SPEND, LOG_PARAM_LIMIT, PARAM_NAMES, Rows, SPEND_KINDS, SPEND_PENALTIES, SPEND_RULES, check_penalizer, check_weights, example_row, index_labels, json_safe, read_header, read_params, to_array, unique_rows


# --------------------------------------------------------------------------- Gamma-Gamma


def _gamma_gamma_loglik(params: np.ndarray, d: Rows, grad: bool):
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
        index = index_labels(frequency)
        cols = {"frequency": to_array("frequency", frequency),
                "monetary_value": to_array("monetary_value", monetary_value)}
        x, m = cols["frequency"], cols["monetary_value"]
        if x.size != m.size:
            raise ModelError(f"frequency and monetary_value must have the same length, got {x.size} and {m.size}")
        if not x.size:
            raise ModelError("no customers: the inputs are empty")
        bad = ~np.isfinite(x)
        if bad.any():
            raise ModelError("frequency has missing or infinite values" + example_row(bad, cols, index))
        for bad, problem in ((x < 0, "frequency must be >= 0 (number of repeat purchases)"),
                             (x != np.floor(x), "frequency must be a whole number (number of repeat purchases)"),
                             ((x > 0) & ~np.isfinite(m),
                              "monetary_value is missing or infinite for a repeat customer (frequency > 0)")):
            if bad.any():
                raise ModelError(problem + example_row(bad, cols, index))
        return x, m

    def _apply_rule(self, x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(spend after the rule, mask of repeat customers scored as the population mean)."""
        nonpositive = (x > 0) & (m <= 0)
        if self.spend_rule == "floor":
            return np.where(nonpositive, FLOOR_SPEND, m), np.zeros_like(nonpositive)
        return m, nonpositive

    def fit(self, frequency: Any, monetary_value: Any, weights: Any = None, *, search_hint: bool = True) -> SpendModel:
        """Fit on the repeat customers (frequency > 0) among the customers given; one-time buyers and,
        under ``spend_rule="exclude"``, non-positive spends are left out. Returns ``self``.

        A Gamma-Gamma fit that fails names a larger penalty only when one of :data:`SPEND_PENALTIES`
        was checked to fit these data (with ``search_hint``)."""
        self._check_rule()
        penalizer = check_penalizer(self.penalizer, "clv.gg_penalizer")
        x, m = self._check_inputs(frequency, monetary_value)
        w = check_weights(weights, x.size)
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
        (ux, um), inverse, _ = unique_rows(x[use], spend[use])
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
            "freq_spend_corr": json_float(_weighted_corr(x[use], spend[use], w[use])),
        }
        if self.kind == "mean":
            self.params_ = {"mean": mean_spend}
            # var(log mean) ~ var(spend) / (n mean^2), the delta method on the sample mean
            var = float(np.dot(uw, (um - mean_spend) ** 2) / uw.sum()) if uw.sum() > 1 else 0.0
            self.report_ = {"spend_rule": self.spend_rule, **counts, "population_mean_spend": mean_spend,
                            "log_param_cov": [[var / (uw.sum() * mean_spend**2) if mean_spend > 0 else 0.0]]}
            return self
        if ux.size < 3:
            raise ModelError(f"Gamma-Gamma needs at least 3 distinct (frequency, spend) rows to fit 3 parameters, "
                             f"got {ux.size}")
        try:
            self._fit_gamma_gamma(penalizer, ux, um, uw, mean_spend, counts)
        except ModelError as exc:
            if not search_hint:
                raise
            pen, tried = verified_penalty(
                lambda v: SpendModel(v, self.spend_rule)._fit_gamma_gamma(v, ux, um, uw, mean_spend, counts),
                penalizer, SPEND_PENALTIES)
            remedy = (f"clv.gg_penalizer={pen:g} fits these data (checked)" if pen is not None else
                      "; ".join(filter(None, [none_fit("clv.gg_penalizer", tried),
                                              "clv.spend_model=mean (the population mean spend) always fits"])))
            raise ModelError(f"{exc}; {remedy}") from None
        return self

    def _fit_gamma_gamma(self, penalizer: float, ux, um, uw, mean_spend: float, counts: dict[str, Any]) -> None:
        hint = ("check monetary_value for extreme outliers (the model needs mean spends that vary between "
                "customers)")
        what = f"Gamma-Gamma fit on {int(round(uw.sum()))} repeat customers"
        # start: p = q = e^0.1 (as lifetimes) and v such that the population mean p v / (q - 1) = mean spend
        x0 = np.array([0.1, 0.1, np.log(mean_spend * (np.exp(0.1) - 1.0) / np.exp(0.1))])
        fun, log_params, value, nit = fit_log_params(_gamma_gamma_loglik, Rows.build(ux, (um,), uw), penalizer, x0,
                                                      what, hint)
        p, q, v = np.exp(log_params)
        scale_free = log_params - np.array([0.0, 0.0, np.log(mean_spend)])
        cov = log_param_covariance(fun, log_params, uw.sum())
        if np.any(np.abs(scale_free) > LOG_PARAM_LIMIT) or cov is None:
            raise not_identified(what, ("p", "q", "v"), np.exp(log_params), hint)
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
            "std_errors": {k: float(s) for k, s in zip(("p", "q", "v"), np.exp(log_params) * np.sqrt(np.diag(cov)))},
            "log_param_cov": cov.tolist(),
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
        return gamma_gamma_spend(self.params_, x, np.where(x > 0, spend, 0.0), as_mean)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe description of the fitted model (kind, params, penalizer, spend_rule, report)."""
        self._check_fitted()
        return {
            "model": "SpendModel",
            "version": DICT_VERSION,
            "kind": self.kind,
            "penalizer": float(self.penalizer),
            "spend_rule": self.spend_rule,
            "params": {k: float(v) for k, v in self.params_.items()},
            "report": json_safe(self.report_),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpendModel:
        """Rebuild a fitted model from :meth:`to_dict` output (no code is unpickled)."""
        kind = read_header(data, "SpendModel")
        if kind not in SPEND_KINDS:
            raise ModelError(f"SpendModel dict: unknown kind {kind!r}; expected one of {', '.join(SPEND_KINDS)}")
        model = cls(penalizer=float(data.get("penalizer", 0.0)), spend_rule=str(data.get("spend_rule", "exclude")),
                    kind=kind)
        model._check_rule()
        model.params_ = read_params(data, PARAM_NAMES[kind], "SpendModel")
        if kind == "gamma_gamma" and model.params_["q"] <= 1.0:
            raise ModelError(f"SpendModel dict: q must be > 1 for a finite mean spend, got {model.params_['q']}")
        model.report_ = dict(data.get("report") or {})
        return model


def gamma_gamma_spend(params: Mapping[str, float], x: np.ndarray, repeat_spend: np.ndarray, as_mean: np.ndarray
                      ) -> np.ndarray:
    """E[Z | x, m] of :meth:`SpendModel.conditional_expected_spend` from checked inputs: ``repeat_spend``
    the spend after the rule where x > 0 (else 0), ``as_mean`` the rows scored as the population mean."""
    p, q, v = (params[k] for k in ("p", "q", "v"))
    px = p * x
    with np.errstate(invalid="ignore"):
        out = (p * v + px * repeat_spend) / (px + q - 1.0)
    return np.where(as_mean, p * v / (q - 1.0), out)


def _weighted_corr(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    if x.size < 2:
        return float("nan")
    mx, my = np.average(x, weights=w), np.average(y, weights=w)
    cov = np.average((x - mx) * (y - my), weights=w)
    var = np.average((x - mx) ** 2, weights=w) * np.average((y - my) ** 2, weights=w)
    return float(cov / np.sqrt(var)) if var > 0 else float("nan")


