"""Sentiment by period and the main complaint topics of customer texts.

* :func:`sentiment_by_period`: per period (month, week or quarter) and overall: texts, mean
  sentiment and the shares of negative and positive texts.
* :func:`period_keywords`: the most distinctive terms of each period's negative texts by class-based
  TF-IDF (c-TF-IDF, Grootendorst 2022, "BERTopic", arXiv:2203.05794): the negative texts of a period are
  one class, the non-negative texts of the whole window one more (so that words every text uses rank
  low); ``weight(t, c) = tf(t, c) / words(c) * log(1 + A / tf(t))`` with ``A`` the mean words per class.
* :func:`complaint_topics`: an NMF topic model (scikit-learn, seeded) over the TF-IDF of all negative
  texts: each topic's top terms, its share of the negative texts overall and per period.

Terms: English words (lower case, scikit-learn's English stop words removed), Chinese words by jieba
(crmlab's tokenizer) without one-character words and stop words; anything with a digit or an ``@``
is dropped, so order numbers, phone numbers and e-mail addresses never become a topic.
"""

from __future__ import annotations

import re
from datetime import date

import numpy as np
import pandas as pd

from crmlab.voice.sentiment import NEGATIVE_THRESHOLD, POSITIVE_THRESHOLD, Language, score_sentiment

__all__ = ["complaint_topics", "period_keywords", "scored_texts", "sentiment_by_period", "tokenize"]

_EN_WORD = re.compile(r"[a-z][a-z']+")
_ZH_STOP = frozenset("""的 了 是 我 你 他 她 它 们 我们 你们 他们 在 也 就 都 和 与 及 还 又 很 太 非常 这 那 这个 那个 一个 没 不 吗 呢 吧 啊
呀 哦 把 被 给 让 对 从 到 为 上 下 里 后 前 再 才 已经 一直 结果 现在 什么 怎么 可以 能 会 要 有 没有 一下 一次""".split())
_PUNCT = re.compile(r"^[\W_]+$")


def _english_stop_words() -> frozenset[str]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS) | {"i'm", "it's", "don't", "can't", "won't", "didn't"}


def tokenize(text: str, language: str) -> list[str]:
    """The terms of one text (module doc)."""
    if language == "zh":
        from crmlab.voice.sentiment import chinese_model

        words = chinese_model().tokens(text)
        return [w for w in (w.strip().lower() for w in words)
                if len(w) > 1 and w not in _ZH_STOP and not _PUNCT.match(w) and not re.search(r"[\d@]", w)]
    stop = _english_stop_words()
    kept = " ".join(chunk for chunk in text.lower().split() if not re.search(r"[\d@]", chunk))
    return [w for w in _EN_WORD.findall(kept) if w not in stop and len(w) > 2]


def scored_texts(texts: pd.DataFrame, *, as_of: date | None = None, language: Language = "auto",
                 period: str = "M") -> pd.DataFrame:
    """``texts`` (``customer_id``, ``ts``, ``text``) on or before ``as_of`` with ``language``,
    ``sentiment`` and ``period`` (text such as ``2024-03``)."""
    ts = texts["ts"]
    keep = np.ones(len(texts), dtype=bool) if as_of is None else (
        ts < pd.Timestamp(as_of) + pd.Timedelta(days=1)).to_numpy(dtype=bool, na_value=False)
    out = texts.loc[keep, ["customer_id", "ts", "text"]].reset_index(drop=True)
    scores = score_sentiment(out["text"], language=language)
    out["language"] = scores["language"].to_numpy()
    out["sentiment"] = scores["sentiment"].to_numpy()
    out = out[out["sentiment"].notna()].reset_index(drop=True)
    out["period"] = out["ts"].dt.to_period(period).astype(str).to_numpy()
    return out


def sentiment_by_period(scored: pd.DataFrame, *, negative_threshold: float = NEGATIVE_THRESHOLD) -> pd.DataFrame:
    """Per period: ``texts``, ``customers``, ``sentiment_mean``, ``negative_share``, ``positive_share``."""
    neg = scored["sentiment"] <= negative_threshold
    pos = scored["sentiment"] >= POSITIVE_THRESHOLD
    g = scored.assign(negative=neg, positive=pos).groupby("period", sort=True)
    return pd.DataFrame({
        "texts": g.size(), "customers": g["customer_id"].nunique(), "sentiment_mean": g["sentiment"].mean(),
        "negative_share": g["negative"].mean(), "positive_share": g["positive"].mean(),
    }).reset_index()


def period_keywords(scored: pd.DataFrame, *, n_terms: int = 8,
                    negative_threshold: float = NEGATIVE_THRESHOLD) -> pd.DataFrame:
    """The ``n_terms`` most distinctive terms of each period's negative texts by c-TF-IDF (module doc):
    ``period``, ``rank``, ``term``, ``weight``, ``negative_texts``."""
    neg = scored["sentiment"].to_numpy() <= negative_threshold
    cls = np.where(neg, scored["period"].to_numpy(dtype=object), "\x00rest")
    terms = [tokenize(t, lg) for t, lg in zip(scored["text"], scored["language"], strict=True)]
    long = pd.DataFrame({"cls": np.repeat(cls, [len(t) for t in terms]),
                         "term": [w for ts in terms for w in ts]})
    cols = ["period", "rank", "term", "weight", "negative_texts"]
    if long.empty or not neg.any():
        return pd.DataFrame(columns=cols)
    tf = long.value_counts(["cls", "term"]).rename("n").reset_index()
    words = tf.groupby("cls")["n"].transform("sum")
    total = tf.groupby("term")["n"].transform("sum")
    avg = tf.groupby("cls")["n"].sum().mean()
    tf["weight"] = tf["n"] / words * np.log1p(avg / total)
    tf = tf[tf["cls"] != "\x00rest"].sort_values(["cls", "weight", "term"], ascending=[True, False, True])
    tf["rank"] = tf.groupby("cls").cumcount() + 1
    top = tf[tf["rank"] <= n_terms].rename(columns={"cls": "period"})
    counts = pd.Series(cls[neg]).value_counts()
    top["negative_texts"] = top["period"].map(counts).astype(int)
    return top[cols].reset_index(drop=True)


def complaint_topics(scored: pd.DataFrame, *, n_topics: int = 5, n_terms: int = 8, seed: int = 0,
                     negative_threshold: float = NEGATIVE_THRESHOLD, min_texts: int = 20
                     ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """NMF topics of the negative texts: (``topics``: ``topic``, ``terms``, ``share``, ``texts``;
    ``by_period``: ``period`` and one share column per topic). Empty frames below ``min_texts``."""
    from sklearn.decomposition import NMF
    from sklearn.feature_extraction.text import TfidfVectorizer

    neg = scored[scored["sentiment"] <= negative_threshold].reset_index(drop=True)
    docs = [tokenize(t, lg) for t, lg in zip(neg["text"], neg["language"], strict=True)]
    usable = np.array([len(d) > 0 for d in docs], dtype=bool)
    if usable.sum() < max(min_texts, n_topics):
        return pd.DataFrame(columns=["topic", "terms", "share", "texts"]), pd.DataFrame(columns=["period"])
    vec = TfidfVectorizer(analyzer=lambda d: d, min_df=2 if usable.sum() >= 50 else 1)
    X = vec.fit_transform([d for d, u in zip(docs, usable, strict=True) if u])
    k = min(n_topics, X.shape[1], X.shape[0])
    nmf = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=400)
    W = nmf.fit_transform(X)
    vocab = np.array(vec.get_feature_names_out(), dtype=object)
    top = np.argsort(-nmf.components_, axis=1)[:, :n_terms]
    which = W.argmax(axis=1)
    which[W.max(axis=1) == 0] = -1
    names = [f"topic_{i + 1}" for i in range(k)]
    topics = pd.DataFrame({
        "topic": names,
        "terms": [", ".join(vocab[row]) for row in top],
        "texts": np.bincount(which[which >= 0], minlength=k),
    })
    topics["share"] = topics["texts"] / max(len(which), 1)
    periods = neg.loc[usable, "period"].to_numpy()
    by = pd.crosstab(periods, np.array(names, dtype=object)[np.maximum(which, 0)], normalize="index")
    by = by.reindex(columns=names, fill_value=0.0).rename_axis(index="period", columns=None).reset_index()
    return topics[["topic", "terms", "share", "texts"]], by
