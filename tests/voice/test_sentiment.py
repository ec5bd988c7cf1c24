"""Sentiment and language of short customer texts, on comments labelled by hand (labelled_comments.csv).

The ``dev`` rows (75 per language: 25 positive, 25 negative, 25 neutral requests) were written first and
the Chinese lexicon was written with them in view; the ``holdout`` rows (30 per language) were written
after the lexicon was frozen, so their accuracy is the honest figure for new text. Observed: English
(VADER) 0.84 dev / 0.83 holdout (three classes), Chinese (crmlab's lexicon) 0.96 dev / 0.80 holdout.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from crmlab.voice import SentimentScorer, detect_language, score_sentiment, sentiment_label

LABELLED = Path(__file__).with_name("labelled_comments.csv")


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    df = pd.read_csv(LABELLED)
    scored = score_sentiment(df["text"])
    return df.assign(found=scored["language"].to_numpy(), score=scored["sentiment"].to_numpy(),
                     predicted=sentiment_label(scored["sentiment"]))


def test_the_labelled_set_is_balanced_and_large_enough(labelled):
    counts = labelled.groupby(["language", "split", "label"]).size()
    assert (counts.loc[("en", "dev")] == 25).all() and (counts.loc[("zh", "dev")] == 25).all()
    assert (counts.loc[("en", "holdout")] == 10).all() and (counts.loc[("zh", "holdout")] == 10).all()


def test_every_labelled_text_gets_its_language(labelled):
    assert (labelled["found"] == labelled["language"]).all()


@pytest.mark.parametrize(("language", "split", "floor"), [
    ("en", "dev", 0.80), ("en", "holdout", 0.75), ("zh", "dev", 0.90), ("zh", "holdout", 0.75),
])
def test_accuracy_floor_per_language(labelled, language, split, floor):
    part = labelled[(labelled["language"] == language) & (labelled["split"] == split)]
    accuracy = (part["predicted"] == part["label"]).mean()
    assert accuracy >= floor, f"{language} {split}: accuracy {accuracy:.3f} < {floor}"


@pytest.mark.parametrize("language", ["en", "zh"])
def test_positive_and_negative_are_never_swapped_often(labelled, language):
    part = labelled[(labelled["language"] == language) & (labelled["label"] != "neutral")]
    swapped = ((part["label"] == "positive") & (part["predicted"] == "negative")) | (
        (part["label"] == "negative") & (part["predicted"] == "positive"))
    # observed: English 4 of 70 (VADER reads "no hassle" and "closed my ticket without fixing" as positive),
    # Chinese 0 of 70
    assert swapped.mean() <= 0.08


def test_chinese_negation_flips_and_degree_words_scale():
    s = score_sentiment(["满意", "不满意", "很满意", "不太好", "质量不错，但是发货太慢"])["sentiment"].to_numpy()
    assert s[0] > 0.05 and s[1] < -0.05 and s[2] > s[0] and s[3] < 0
    assert s[4] < 0  # after the contrast word the complaint weighs more


def test_language_detection_without_a_model():
    langs = detect_language(["Great service", "服务很好", "APP很好用", "OK 好", "", None, "   ", "123"])
    assert langs.tolist() == ["en", "zh", "zh", "zh", "", "", "", "en"]


def test_empty_texts_get_no_score_and_forced_language():
    out = SentimentScorer(language="zh").score(["", None, "很好"])
    assert out["language"].tolist() == ["", "", "zh"]
    assert np.isnan(out["sentiment"].to_numpy()[:2]).all() and out["sentiment"].iloc[2] > 0


def test_each_distinct_text_is_scored_once():
    scorer = SentimentScorer(cache_size=10)
    calls = []
    scorer.score(["x"])  # load the models
    model = scorer._model("en")
    original = model.score
    model.score = lambda text: calls.append(text) or original(text)
    out = scorer.score(["good", "bad", "good", "good"])
    assert calls == ["good", "bad"] and out["sentiment"].iloc[0] == out["sentiment"].iloc[2]
    scorer.score(["good"])
    assert calls == ["good", "bad"]  # the cache answered


def test_bad_language_names_the_value():
    with pytest.raises(ValueError, match="language='fr'"):
        SentimentScorer(language="fr").score(["bonjour"])
