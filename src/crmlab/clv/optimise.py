"""Fitting a CLV model: the penalised negative log-likelihood on log parameters, minimised with
BFGS from a warm start, its standard errors, and the penalty search whose hint names only a value
that was checked to fit the data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import minimize

from crmlab.errors import ModelError
from crmlab.clv.shared import GRAD_TOL, Rows, WARM_SAMPLE_ROWS, WARM_START_ROWS


# --------------------------------------------------------------------------- optimisation


def _objective(loglik: Callable, data: Rows, penalizer: float) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
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
    if not res.success and np.max(np.abs(grad)) > GRAD_TOL:
        raise ModelError(
            f"{what} did not converge ({res.message.rstrip('.')}; largest gradient "
            f"{np.max(np.abs(grad)):.2g} after {res.nit} iterations){_hinted(hint)}"
        )
    return res.x, value, int(res.nit), res.hess_inv


def fit_log_params(
    loglik: Callable, rows: Rows, penalizer: float, x0: np.ndarray, what: str, hint: str
) -> tuple[Callable, np.ndarray, float, int]:
    """Minimise the objective over the log-parameters: (objective, optimum, value, iterations).

    With many distinct rows, BFGS first runs on a seeded subsample of them (their weights kept, so
    the subsample's likelihood estimates the full one without bias) and then polishes on all rows
    from that optimum and its inverse-Hessian estimate: the same optimum in a few full passes."""
    fun = _objective(loglik, rows, penalizer)
    hess_inv0 = None
    if rows.x.size > WARM_START_ROWS:
        pick = np.sort(np.random.default_rng(0).choice(rows.x.size, WARM_SAMPLE_ROWS, replace=False))
        sample = Rows.build(rows.x[pick], tuple(c[pick] for c in rows.cols), rows.w[pick])
        try:
            x0, _, _, hess_inv0 = _minimise(_objective(loglik, sample, penalizer), x0, what, hint)
            hess_inv0 = 0.5 * (hess_inv0 + hess_inv0.T)
            np.linalg.cholesky(hess_inv0)
        except (ModelError, np.linalg.LinAlgError):  # the subsample alone may not identify the model
            hess_inv0 = None
    log_params, value, nit, _ = _minimise(fun, x0, what, hint, hess_inv0)
    return fun, log_params, value, nit


def log_param_covariance(fun: Callable, log_params: np.ndarray, n: float) -> np.ndarray | None:
    """Asymptotic covariance of the log-parameters: the inverse observed information of the (mean)
    objective, by forward differences of its gradient (k + 1 evaluations), divided by ``n``. None
    when the information is not positive definite (no strict minimum)."""
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
    return 0.5 * (cov + cov.T)


def standard_errors(fun: Callable, log_params: np.ndarray, n: float) -> np.ndarray | None:
    """Asymptotic standard errors of exp(log_params) (:func:`log_param_covariance` mapped through the
    delta method); None when the information is not positive definite."""
    cov = log_param_covariance(fun, log_params, n)
    return None if cov is None else np.exp(log_params) * np.sqrt(np.diag(cov))


def _hinted(hint: str) -> str:
    return f"; {hint}" if hint else ""


def verified_penalty(fit: Callable[[float], Any], current: float,
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


def none_fit(key: str, tried: list[float]) -> str:
    return f"no larger {key} ({', '.join(f'{p:g}' for p in tried)}) fits these data either" if tried else ""


def not_identified(what: str, names: tuple[str, ...], values: np.ndarray, hint: str, note: str = "") -> ModelError:
    shown = ", ".join(f"{k}={v:.3g}" for k, v in zip(names, values))
    return ModelError(
        f"{what}: the data do not identify the model (the fit ended at {shown}{note}, where the likelihood is "
        f"flat or still rising towards the edge of the parameter space){_hinted(hint)}"
    )


