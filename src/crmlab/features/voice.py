"""Sentiment features per customer at a cut-off date, from texts of any source.

:func:`sentiment_features` takes a frame of ``customer_id``, ``ts``, ``text`` (the interactions table's
text column through :func:`crmlab.voice.texts_frame`, a survey's comments, a ticket export ...) and
returns one row per customer with at least one text dated on or before ``as_of`` (the cut-off
convention of :mod:`crmlab.features.build`: ``ts < as_of + 1 day``). Texts after the cut-off are
dropped before anything is scored, so a future text cannot change a feature.

Columns (``{r}``: ``recent_days``):

* ``n_texts`` (int32): texts on or before as_of;
* ``sentiment_mean``: mean sentiment (``[-1, 1]``, :mod:`crmlab.voice.sentiment`) of those texts;
* ``sentiment_mean_{r}d``: mean over the texts of the last ``r`` days (``(as_of - r days, as_of]``),
  NaN when there are none;
* ``sentiment_trend`` = ``sentiment_mean_{r}d`` - mean of the earlier texts; NaN unless both exist
  (negative: the customer's tone is getting worse);
* ``negative_share``: share of the texts scoring at or below ``negative_threshold``.

Customers without a text get ``n_texts`` 0 and NaN elsewhere (:func:`crmlab.features.build_features`
fills them so). Shares, means and trends are float32.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd

from crmlab.features.frames import as_of_date
from crmlab.voice.sentiment import NEGATIVE_THRESHOLD, Language, score_sentiment

__all__ = ["sentiment_columns", "sentiment_features"]


def sentiment_columns(recent_days: int) -> tuple[str, ...]:
    """The feature names, in order, after ``customer_id``."""
    return ("n_texts", "sentiment_mean", f"sentiment_mean_{int(recent_days)}d", "sentiment_trend", "negative_share")


def sentiment_features(
    texts: pd.DataFrame,
    *,
    as_of: date | datetime | str,
    recent_days: int = 90,
    negative_threshold: float = NEGATIVE_THRESHOLD,
    language: Language = "auto",
) -> pd.DataFrame:
    """One row per customer with a text on or before ``as_of`` (module doc), sorted by id; ``texts``
    has ``customer_id``, ``ts`` (datetime64) and non-blank ``text`` and is never modified."""
    if isinstance(recent_days, bool) or int(recent_days) != recent_days or recent_days <= 0:
        raise ValueError(f"recent_days={recent_days!r} should be a positive whole number of days")
    cut = pd.Timestamp(as_of_date(as_of))
    ts = texts["ts"]
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_localize(None)
    end = cut + pd.Timedelta(days=1)
    past = (ts < end).to_numpy(dtype=bool, na_value=False)
    ids = texts["customer_id"].to_numpy()[past].astype(str)
    when = ts.to_numpy()[past]
    scores = score_sentiment(pd.Series(texts["text"].to_numpy()[past], dtype=object), language=language)
    s = scores["sentiment"].to_numpy()
    keep = ~np.isnan(s)  # blank texts (when not already dropped) carry no score
    ids, when, s = ids[keep], when[keep], s[keep]
    recent = when >= (end - pd.Timedelta(days=int(recent_days))).to_datetime64()
    codes, uniq = pd.factorize(ids, sort=True)
    n = len(uniq)

    def mean(mask: np.ndarray) -> np.ndarray:
        cnt = np.bincount(codes[mask], minlength=n)
        tot = np.bincount(codes[mask], weights=s[mask], minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)

    every = np.ones(len(s), dtype=bool)
    count = np.bincount(codes, minlength=n)
    recent_mean = mean(recent)
    earlier_mean = mean(~recent)
    neg = np.bincount(codes, weights=(s <= negative_threshold).astype(float), minlength=n)
    names = sentiment_columns(recent_days)
    with np.errstate(invalid="ignore", divide="ignore"):
        cols = {
            names[0]: count.astype(np.int32),
            names[1]: mean(every).astype(np.float32),
            names[2]: recent_mean.astype(np.float32),
            names[3]: (recent_mean - earlier_mean).astype(np.float32),
            names[4]: (neg / np.maximum(count, 1)).astype(np.float32),
        }
    return pd.DataFrame({"customer_id": pd.Series(uniq, dtype="str"), **cols})
