"""Diagnostic plots of the CLV pipeline (matplotlib, Agg canvas, no pyplot state) and the model
quantities they need.

* repeat purchases in the calibration period, actual vs model (FHL 2005a, figure 3), from
  :func:`probability_of_purchases`, P(X(t) = x);
* conditional expectations: mean holdout purchases by calibration frequency (figure 4);
* cumulative repeat purchases over time, actual vs model (figure 2);
* P(alive) and expected purchases over a frequency x recency grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from scipy.special import betaln
from scipy.stats import nbinom

from crmlab.clv.models import TransactionModel
from crmlab.errors import ModelError
from crmlab.plotting import Figure

__all__ = [
    "plot_conditional_expectations",
    "plot_cumulative_repeat_purchases",
    "plot_frequency_recency_matrix",
    "plot_repeat_purchase_histogram",
    "probability_of_purchases",
    "repeat_purchase_histogram",
]

_UNIT_NAMES = {"D": "days", "W": "weeks", "M": "months"}
_GAUSS_NODES = 96


def _figure(width: float = 7.0, height: float = 4.5) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


# --------------------------------------------------------------------------- P(X(t) = x)


def _nbd_pmf_sf(r: float, alpha: float, t: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NBD counts of a gamma(r, alpha) mixture of Poisson processes over (0, t]: P(N = x) and
    P(N >= x) (= 1 for x = 0), broadcasting ``t`` against ``x``."""
    p = alpha / (alpha + t)
    return nbinom.pmf(x, r, p), np.where(x > 0, nbinom.sf(x - 1, r, p), 1.0)


def probability_of_purchases(model: TransactionModel, t: Any, x: Any) -> np.ndarray:
    """P(X(t) = x): the probability that a customer makes ``x`` repeat purchases in the first ``t``
    time units after the first purchase, for each ``t`` (rows) and ``x`` (columns).

    * BG/NBD, Fader, Hardie and Lee (2005a), eq. 8:
      B(a, b+x)/B(a, b) NB(x; r, alpha, t) + 1{x>0} B(a+1, b+x-1)/B(a, b) [1 - sum_{j<x} NB(j)].
    * MBG/NBD (a drop-out chance also at time 0), the same argument:
      B(a, b+x+1)/B(a, b) NB(x) + B(a+1, b+x)/B(a, b) [1 - sum_{j<x} NB(j)].
    * NBD (no dropout): NB(x; r, alpha, t).
    * Pareto/NBD, integrating over the exponential lifetime:
      NB(x; t) (beta/(beta+t))^s + int_0^t s beta^s (beta+u)^-(s+1) NB(x; u) du (Gauss-Legendre).
    """
    model._check_fitted()
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))[:, None]
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))[None, :]
    if np.any(~np.isfinite(t)) or np.any(t < 0) or np.any(x < 0) or np.any(x != np.floor(x)):
        raise ModelError("t must be finite and >= 0 and x whole numbers >= 0")
    prm = model.params_
    r, alpha = prm["r"], prm["alpha"]
    if model.kind == "nbd":  # nobody drops out: the NBD counts themselves
        return _nbd_pmf_sf(r, alpha, t, x)[0]
    if model.kind in ("bgnbd", "mbgnbd"):
        a, b = prm["a"], prm["b"]
        pmf, sf = _nbd_pmf_sf(r, alpha, t, x)
        shift = 1.0 if model.kind == "mbgnbd" else 0.0
        alive = np.exp(betaln(a, b + x + shift) - betaln(a, b))
        with np.errstate(invalid="ignore", divide="ignore"):
            died = np.exp(betaln(a + 1.0, np.maximum(b + x + shift - 1.0, 1e-300)) - betaln(a, b))
        if shift == 0.0:
            died = np.where(x > 0, died, 0.0)
        return alive * pmf + died * sf
    s, beta = prm["s"], prm["beta"]
    nodes, weights = np.polynomial.legendre.leggauss(_GAUSS_NODES)
    u = (nodes[None, :] + 1.0) / 2.0 * t  # (n_t, nodes), on (0, t)
    du = weights[None, :] * t / 2.0
    density = s * beta**s * (beta + u) ** -(s + 1.0)  # density of the lifetime at u
    pmf_u = nbinom.pmf(x[:, :, None], r, (alpha / (alpha + u))[:, None, :])  # (n_t, n_x, nodes)
    died = np.einsum("tn,txn->tx", density * du, pmf_u)
    return nbinom.pmf(x, r, alpha / (alpha + t)) * (beta / (beta + t)) ** s + died


def repeat_purchase_histogram(model: TransactionModel, frequency: Any, T: Any, *, max_frequency: int = 7) -> pd.DataFrame:
    """Customers with 0, 1, ..., ``max_frequency``+ repeat purchases in the calibration period:
    actual counts and the model's expectation sum_i P(X(T_i) = x)."""
    freq = np.asarray(frequency, dtype=np.float64)
    ages = np.asarray(T, dtype=np.float64)
    ts, counts = np.unique(ages, return_counts=True)
    probs = probability_of_purchases(model, ts, np.arange(max_frequency))
    expected = counts @ probs
    expected = np.append(expected, counts.sum() - expected.sum())
    actual = np.bincount(np.minimum(freq.astype(np.int64), max_frequency), minlength=max_frequency + 1)
    labels = [str(i) for i in range(max_frequency)] + [f"{max_frequency}+"]
    return pd.DataFrame({"label": labels, "frequency": np.arange(max_frequency + 1),
                         "actual": actual.astype(np.float64), "expected": expected})


# --------------------------------------------------------------------------- figures


def plot_repeat_purchase_histogram(histogram: pd.DataFrame, time_unit: str = "W") -> Figure:
    """Bars of :func:`repeat_purchase_histogram`: actual vs model."""
    fig = _figure()
    ax = fig.add_subplot()
    pos = np.arange(len(histogram))
    ax.bar(pos - 0.2, histogram["actual"], width=0.4, label="actual", color="#444444")
    ax.bar(pos + 0.2, histogram["expected"], width=0.4, label="model", color="#4c8bd6")
    ax.set_xticks(pos, histogram["label"])
    ax.set_xlabel("repeat purchases in the calibration period")
    ax.set_ylabel("customers")
    ax.set_title("Repeat purchases per customer: actual vs model")
    ax.legend()
    return fig


def plot_conditional_expectations(table: pd.DataFrame, window: Any = None) -> Figure:
    """Mean holdout purchases by calibration frequency, actual vs model."""
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(table["label"], table["actual"], marker="o", color="#444444", label="actual")
    ax.plot(table["label"], table["predicted"], marker="s", linestyle="--", color="#4c8bd6", label="model")
    ax.set_xlabel("repeat purchases in the calibration period")
    ax.set_ylabel("mean purchases in the holdout")
    title = "Conditional expectations"
    if window is not None:
        title += f": holdout {window.calibration_end} to {window.holdout_end}"
    ax.set_title(title)
    ax.legend()
    return fig


def plot_cumulative_repeat_purchases(tracking: pd.DataFrame, window: Any = None) -> Figure:
    """Cumulative repeat purchases of the cohort over time, actual vs model, with the end of
    calibration marked (frame from :func:`crmlab.clv.pipeline.cumulative_repeat_purchases`)."""
    fig = _figure(8.0, 4.5)
    ax = fig.add_subplot()
    ax.plot(tracking["date"], tracking["actual"], color="#444444", label="actual")
    ax.plot(tracking["date"], tracking["expected"], color="#4c8bd6", linestyle="--", label="model")
    if window is not None:
        ax.axvline(pd.Timestamp(window.calibration_end), color="#999999", linestyle=":", label="end of calibration")
    ax.set_ylabel("cumulative repeat purchases")
    ax.set_title("Tracking cumulative repeat purchases")
    ax.legend()
    fig.autofmt_xdate()
    return fig


def _grid(model: TransactionModel, rfm: pd.DataFrame, max_frequency: int | None, n_recency: int
          ) -> tuple[np.ndarray, np.ndarray, float]:
    freq = rfm["frequency"].to_numpy(dtype=np.float64)
    if max_frequency is None:
        max_frequency = int(np.clip(np.nanquantile(freq, 0.995), 5, 40)) if freq.size else 10
    T = float(np.nanmax(rfm["T"].to_numpy(dtype=np.float64)))
    return np.arange(max_frequency + 1, dtype=np.float64), np.linspace(0.0, T, n_recency), T


def plot_frequency_recency_matrix(
    model: TransactionModel,
    rfm: pd.DataFrame,
    *,
    what: str = "p_alive",
    time_unit: str = "W",
    t: float = 1.0,
    max_frequency: int | None = None,
    n_recency: int = 40,
) -> Figure:
    """Heat map of P(alive) (``what="p_alive"``) or expected purchases in the next ``t`` units
    (``what="expected_purchases"``) over frequency x recency, for a customer as old as the oldest
    one (T = max T). Cells that no history can have (frequency 0 with recency > 0) are blank."""
    if what not in ("p_alive", "expected_purchases"):
        raise ValueError(f"what={what!r} should be 'p_alive' or 'expected_purchases'")
    freqs, recs, T = _grid(model, rfm, max_frequency, n_recency)
    fx, rx = np.meshgrid(freqs, recs, indexing="ij")
    valid = (fx > 0) | (rx == 0)
    values = np.full(fx.shape, np.nan)
    x, tx, age = fx[valid], rx[valid], np.full(int(valid.sum()), T)
    if what == "p_alive":
        values[valid] = model.probability_alive(x, tx, age)
    else:
        values[valid] = model.predict_purchases(t, x, tx, age)
    unit = _UNIT_NAMES.get(time_unit, time_unit)
    fig = _figure(7.5, 5.5)
    ax = fig.add_subplot()
    image = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis",
                      extent=(recs[0], recs[-1], freqs[0] - 0.5, freqs[-1] + 0.5))
    ax.set_xlabel(f"recency (age at last purchase, {unit})")
    ax.set_ylabel("frequency (repeat purchases)")
    if what == "p_alive":
        ax.set_title(f"P(alive) for a customer of age T = {T:.0f} {unit}")
        fig.colorbar(image, ax=ax, label="P(alive)")
    else:
        ax.set_title(f"Expected purchases in the next {t:.3g} {unit} (T = {T:.0f} {unit})")
        fig.colorbar(image, ax=ax, label="expected purchases")
    return fig
