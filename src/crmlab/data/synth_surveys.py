"""A synthetic surveys table tied to churn, for the synthetic CRM of :mod:`crmlab.data.synth`.

Generated from a :class:`~crmlab.data.synth.SynthData` after the fact, with its own random stream
(``seed`` spawned apart from the CRM's), so the customers, transactions and interactions of a seed are
the same with or without surveys.

The process (:class:`SurveyParams`), per true person:

* relationship NPS surveys (0-10) while the person is a customer, from the first purchase to the
  dropout (the last purchase) or the end: Poisson in time at ``rate_per_year``;
* in the ``SynthParams.pre_dropout_weeks`` before a dropout, one more survey with probability
  ``pre_dropout_answer``: the unhappy answer that foreshadows the churn;
* a score is drawn from ``happy`` (weights of 0..10) outside that window and from ``unhappy`` inside
  it, so detractors (0-6) churn more: the survey features carry a real signal for churn;
* a few dirty rows (``dirty_share``): a score of 11 or an empty one, which cleaning rejects.

Columns: ``customer_id`` (the true id), ``ts`` (text, ``%Y-%m-%d %H:%M:%S``), ``score`` (text), ``kind``
(``nps``), ``comment`` (a canned remark for the score's band; no personal data).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from crmlab.data.synth import SynthData, generate_synthetic
from crmlab.data.synth_base import DEFAULT_PARAMS, SynthParams, epoch_seconds
from crmlab.utils import write_table_atomic

__all__ = ["SurveyParams", "synthetic_surveys", "write_synthetic_surveys"]

_YEAR_S = 365.25 * 86400
_WEEK_S = 7 * 86400


@dataclass(frozen=True)
class SurveyParams:
    rate_per_year: float = 0.8
    pre_dropout_answer: float = 0.6
    #: weights of the scores 0..10: mostly promoters and passives, 12% detractors
    happy: tuple[float, ...] = (0.5, 0.5, 0.5, 1, 1.5, 2, 6, 14, 20, 24, 30)
    #: in the weeks before a dropout: 70% detractors
    unhappy: tuple[float, ...] = (8, 7, 8, 10, 10, 12, 15, 12, 9, 5, 4)
    dirty_share: float = 0.01


_COMMENTS = {
    "detractor": ("delivery was late again", "support never answered", "prices went up", "not worth it"),
    "passive": ("ok overall", "fine, nothing special", "decent service"),
    "promoter": ("great service", "love the selection", "fast delivery", "always helpful"),
}


def _band(score: np.ndarray) -> np.ndarray:
    return np.where(score <= 6, "detractor", np.where(score <= 8, "passive", "promoter"))


def synthetic_surveys(data: SynthData, *, seed: int, params: SurveyParams = SurveyParams()) -> pd.DataFrame:
    """The raw (all-text) surveys table of a synthetic CRM (module doc)."""
    rng = np.random.default_rng([int(seed), 0x5EE5])  # a stream of its own: the CRM's streams are untouched
    truth = data.truth
    end_s = epoch_seconds(data.params.end)
    first = truth["signup_ts"].astype("datetime64[s]").astype(np.int64).to_numpy()
    dropped = truth["dropout_ts"].notna().to_numpy()
    drop = np.where(dropped, truth["dropout_ts"].fillna(pd.Timestamp(0)).astype("datetime64[s]").astype(np.int64)
                    .to_numpy(), end_s)
    span = np.maximum(drop - first, 0).astype(np.float64)
    n = rng.poisson(params.rate_per_year * span / _YEAR_S)
    owner = np.repeat(np.arange(len(truth)), n)
    ts = first[owner] + rng.random(owner.size) * span[owner]
    pre_lo = np.maximum(first, drop - int(data.params.pre_dropout_weeks * _WEEK_S))
    unhappy = dropped[owner] & (ts >= pre_lo[owner])
    extra = np.flatnonzero(dropped & (rng.random(len(truth)) < params.pre_dropout_answer) & (drop > pre_lo))
    owner = np.concatenate([owner, extra])
    ts = np.concatenate([ts, pre_lo[extra] + rng.random(extra.size) * (drop[extra] - pre_lo[extra])])
    unhappy = np.concatenate([unhappy, np.ones(extra.size, dtype=bool)])
    happy_p = np.asarray(params.happy, dtype=np.float64) / np.sum(params.happy)
    unhappy_p = np.asarray(params.unhappy, dtype=np.float64) / np.sum(params.unhappy)
    score = np.where(unhappy, rng.choice(11, size=owner.size, p=unhappy_p), rng.choice(11, size=owner.size, p=happy_p))
    band = _band(score)
    comment = np.array([_COMMENTS[b][i % len(_COMMENTS[b])] for b, i in
                        zip(band, rng.integers(0, 12, size=owner.size), strict=True)], dtype=object)
    text = score.astype(str).astype(object)
    dirty = rng.random(owner.size) < params.dirty_share
    text[dirty] = np.where(rng.random(int(dirty.sum())) < 0.5, "11", None)
    order = np.argsort(ts, kind="stable")
    out = pd.DataFrame({
        "customer_id": truth["customer_id"].to_numpy()[owner][order],
        "ts": pd.to_datetime(np.floor(ts[order]).astype(np.int64), unit="s").strftime("%Y-%m-%d %H:%M:%S"),
        "score": text[order],
        "kind": "nps",
        "comment": comment[order],
    })
    return out.astype({"customer_id": "str", "ts": "str", "kind": "str", "comment": "str"})


def write_synthetic_surveys(out_dir: str | Path, n_customers: int = 5000, seed: int = 0,
                            params: SynthParams = DEFAULT_PARAMS,
                            survey_params: SurveyParams = SurveyParams()) -> Path:
    """Write ``surveys.csv`` of the synthetic CRM of (``n_customers``, ``seed``) under ``out_dir`` (the
    folder :func:`crmlab.data.synth.write_synthetic` writes the other tables to); returns its path."""
    data = generate_synthetic(n_customers, seed, params)
    return write_table_atomic(synthetic_surveys(data, seed=seed, params=survey_params), Path(out_dir) / "surveys.csv")
