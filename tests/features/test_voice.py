"""Sentiment features: texts on or before the cut-off only, values worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from crmlab.config import VoiceConfig
from crmlab.errors import DataError
from crmlab.features import build_features
from crmlab.features.voice import sentiment_features
from crmlab.voice import score_sentiment

TX = pd.DataFrame({"customer_id": ["a", "b", "c"], "ts": pd.to_datetime(["2024-01-01", "2024-01-05", "2024-01-07"]),
                   "amount": [10.0, 20.0, 5.0]})
TEXTS = ["great service, thank you", "terrible, the parcel is broken", "服务很差，非常失望", "where is my order?"]


def _interactions(extra: list[tuple[str, str, str]] = ()) -> pd.DataFrame:
    rows = [("a", "2023-09-01", TEXTS[0]), ("a", "2024-02-20", TEXTS[1]), ("b", "2024-02-01", TEXTS[2]),
            ("b", "2024-02-02", ""), *extra]
    return pd.DataFrame({"customer_id": [r[0] for r in rows], "ts": pd.to_datetime([r[1] for r in rows], format="mixed"),
                         "kind": "feedback", "text": [r[2] for r in rows]})


def test_values_by_hand():
    s = score_sentiment(TEXTS)["sentiment"].to_numpy()
    f = build_features(TX, None, _interactions(), as_of="2024-03-01")
    a, b, c = (f.iloc[i] for i in range(3))
    assert (a["n_texts"], b["n_texts"], c["n_texts"]) == (2, 1, 0)  # b's empty text skipped
    assert a["sentiment_mean"] == pytest.approx((s[0] + s[1]) / 2, abs=1e-6)
    assert a["sentiment_mean_90d"] == pytest.approx(s[1], abs=1e-6)  # 2023-09-01 is > 90 days back
    assert a["sentiment_trend"] == pytest.approx(s[1] - s[0], abs=1e-6)
    assert a["negative_share"] == pytest.approx(0.5)
    assert np.isnan(b["sentiment_trend"]) and b["negative_share"] == 1.0
    assert np.isnan(c["sentiment_mean"]) and np.isnan(c["negative_share"])


def test_a_future_text_cannot_change_a_feature():
    as_of = "2024-03-01"
    before = build_features(TX, None, _interactions(), as_of=as_of)
    leaked = _interactions([("a", "2024-03-02", "worst shop ever, I hate it"), ("c", "2024-06-01", "太棒了")])
    after = build_features(TX, None, leaked, as_of=as_of)
    pd.testing.assert_frame_equal(before.drop(columns=["customer_id"]), after.drop(columns=["customer_id"]))


def test_a_text_on_the_cut_off_day_counts():
    f = sentiment_features(_interactions([("c", "2024-03-01 23:59:00", "love it")]), as_of="2024-03-01")
    assert f.set_index("customer_id").loc["c", "n_texts"] == 1


def test_disabled_or_absent_text_builds_no_sentiment_feature():
    off = build_features(TX, None, _interactions(), as_of="2024-03-01", voice=VoiceConfig(enabled=False))
    plain = build_features(TX, None, _interactions().drop(columns="text"), as_of="2024-03-01")
    for f in (off, plain):
        assert not any(c.startswith(("sentiment", "negative_share", "n_texts")) for c in f.columns)


def test_a_configured_text_column_must_be_text():
    it = _interactions().assign(score=1.5)
    it.attrs["source"] = "crm/interactions.csv"
    with pytest.raises(DataError, match=r"crm/interactions.csv: column 'score'"):
        build_features(TX, None, it, as_of="2024-03-01", voice=VoiceConfig(text_column="score"))


def test_recent_days_names_the_column():
    f = sentiment_features(_interactions(), as_of="2024-03-01", recent_days=30)
    assert list(f.columns) == ["customer_id", "n_texts", "sentiment_mean", "sentiment_mean_30d", "sentiment_trend",
                               "negative_share"]
