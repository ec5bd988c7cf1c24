"""Fits that ship something honest when the configured model does not fit the data.

A small log (a few dozen B2B accounts over a year) often does not identify BG/NBD: the optimum lies on
the boundary a -> 0 where nobody ever drops out, which is the NBD model (Ehrenberg 1959; FHL 2005a);
Gamma-Gamma may find no finite mean spend (q <= 1). With ``clv.fallback`` (the default) the pipeline
then, instead of failing with a hint nobody checked:

* purchases: fits the NBD model (no dropout) and the configured model with the smallest larger
  penalty of :data:`~crmlab.clv.models.TRANSACTION_PENALTIES` that fits; when both fit, the
  penalised model ships only if its log-likelihood beats NBD's by a likelihood-ratio statistic above
  :data:`LR_CRITICAL` (dropout that the data support), else NBD, the simpler model;
* spend: the smallest larger Gamma-Gamma penalty of :data:`~crmlab.clv.models.SPEND_PENALTIES` that
  fits, else the population mean spend for every customer.

Each returns the fitted model and notes saying what failed and what shipped; the pipeline logs them,
prints them and records them in the MLflow run and the bundle's manifest.
"""

from __future__ import annotations

import logging
from typing import Any

from crmlab.clv.purchase import TransactionModel
from crmlab.clv.shared import SPEND_PENALTIES, TRANSACTION_PENALTIES
from crmlab.clv.spend import SpendModel
from crmlab.config import ClvConfig
from crmlab.errors import ModelError

__all__ = ["LR_CRITICAL", "fit_purchase_model", "fit_spend_model"]

log = logging.getLogger(__name__)

#: 2 x log-likelihood gain a penalised dropout model needs over NBD to ship: the 5% critical value of
#: the likelihood-ratio test of one boundary parameter (half chi-square(0), half chi-square(1)).
LR_CRITICAL = 2.71


def _reason(exc: Exception) -> str:
    """A fit error's message (fitted with ``search_hint=False``, it names no remedy)."""
    return str(exc)


def fit_purchase_model(frequency: Any, recency: Any, T: Any, clv: ClvConfig) -> tuple[TransactionModel, list[str]]:
    """The configured purchase model, or the fallback of the module doc; (model, notes).

    Raises ModelError when nothing fits (the message lists what was tried and names no untried value),
    or, with ``clv.fallback`` false, the configured model's own error (whose remedy, if any, was checked)."""
    kind, pen = clv.model, clv.penalizer
    if not clv.fallback:
        return TransactionModel(kind, pen).fit(frequency, recency, T), []
    try:
        return TransactionModel(kind, pen).fit(frequency, recency, T, search_hint=False), []
    except ModelError as exc:
        if "has a repeat purchase" in str(exc) or "T = 0" in str(exc):
            raise  # no model can learn from these data: the message says why
        failed = f"{kind} (clv.penalizer={pen:g}) did not fit: {_reason(exc)}"
    penalised = None
    for p in TRANSACTION_PENALTIES:
        if p <= pen:
            continue
        try:
            penalised = TransactionModel(kind, p).fit(frequency, recency, T, search_hint=False)
            break
        except ModelError:
            continue
    nbd = None
    if kind != "nbd":
        for p in (0.0, *TRANSACTION_PENALTIES):
            try:
                nbd = TransactionModel("nbd", p).fit(frequency, recency, T, search_hint=False)
                break
            except ModelError:
                continue
    if penalised is None and nbd is None:
        tried = f"clv.penalizer up to {TRANSACTION_PENALTIES[-1]:g}" + (" and the NBD model" if kind != "nbd" else "")
        raise ModelError(f"{failed}; {tried} do not fit these data either")
    if penalised is not None and nbd is not None:
        lr = 2.0 * (penalised.report_["log_likelihood"] - nbd.report_["log_likelihood"])
        chosen = penalised if lr > LR_CRITICAL else nbd
        why = (f"the penalised {kind} (clv.penalizer={penalised.penalizer:g}) fits better than NBD (no dropout) by a "
               f"likelihood ratio of {lr:.2f} > {LR_CRITICAL}" if chosen is penalised else
               f"the penalised {kind} (clv.penalizer={penalised.penalizer:g}) fits no better than NBD (likelihood "
               f"ratio {max(lr, 0.0):.2f} <= {LR_CRITICAL}): the data show no dropout")
    elif nbd is not None:
        chosen, why = nbd, f"no clv.penalizer up to {TRANSACTION_PENALTIES[-1]:g} makes {kind} fit, NBD does"
    else:
        chosen, why = penalised, "the smallest larger penalty that fits"
    shipped = ("nbd (the NBD model: purchases without dropout, BG/NBD's limit a -> 0; P(alive) = 1)"
               if chosen.kind == "nbd" else
               f"{chosen.kind} with clv.penalizer={chosen.penalizer:g}")
    if chosen.kind == "nbd" and chosen.penalizer:
        shipped += f" with clv.penalizer={chosen.penalizer:g}"
    note = f"{failed}; shipped {shipped}: {why}"
    log.warning("CLV purchase model: %s", note)
    return chosen, [note]


def fit_spend_model(frequency: Any, monetary_value: Any, clv: ClvConfig) -> tuple[SpendModel, list[str]]:
    """The configured spend model, or the fallback of the module doc; (model, notes)."""
    if clv.spend_model == "mean":
        return SpendModel(clv.gg_penalizer, clv.spend_rule, kind="mean").fit(frequency, monetary_value), []
    pen = clv.gg_penalizer
    if not clv.fallback:
        return SpendModel(pen, clv.spend_rule).fit(frequency, monetary_value), []
    try:
        return SpendModel(pen, clv.spend_rule).fit(frequency, monetary_value, search_hint=False), []
    except ModelError as exc:
        if "needs repeat customers" in str(exc):
            raise
        failed = f"Gamma-Gamma (clv.gg_penalizer={pen:g}) did not fit: {_reason(exc)}"
    for p in SPEND_PENALTIES:
        if p <= pen:
            continue
        try:
            model = SpendModel(p, clv.spend_rule).fit(frequency, monetary_value, search_hint=False)
        except ModelError:
            continue
        note = f"{failed}; shipped Gamma-Gamma with clv.gg_penalizer={p:g}, the smallest larger penalty that fits"
        log.warning("CLV spend model: %s", note)
        return model, [note]
    model = SpendModel(pen, clv.spend_rule, kind="mean").fit(frequency, monetary_value)
    note = (f"{failed}; no clv.gg_penalizer up to {SPEND_PENALTIES[-1]:g} fits either: shipped the population mean "
            f"spend ({model.params_['mean']:,.2f} per purchase, over {model.report_['n_fit']} repeat customers) "
            "for every customer")
    log.warning("CLV spend model: %s", note)
    return model, [note]
