"""Sentiment of short customer texts, English and Chinese, offline: every model ships in a wheel.

One scale for both languages: a score in ``[-1, 1]`` (VADER's *compound* normalisation
``x / sqrt(x^2 + 15)`` of the summed word valences), negative below ``-0.05``, positive above
``0.05`` and neutral in between (VADER's own published thresholds; Hutto and Gilbert 2014,
"VADER: a parsimonious rule-based model for sentiment analysis of social media text", ICWSM).

* English: VADER (``vaderSentiment``, MIT; its lexicon is inside the wheel).
* Chinese: crmlab's lexicon (:mod:`crmlab.voice.lexicon_zh`) over jieba's segmentation (``jieba``,
  MIT; its dictionary is inside the package), with VADER's rules carried over: a negator up to
  three words before a sentiment word, or at the start of a word jieba keeps whole (``不好``,
  ``不太好``), flips it (times -0.74), degree words scale it, and after a
  contrast word (``但是``, ``不过`` ...) words count 1.5 times, before it 0.5 times.
* Language per text (:func:`detect_language`): Chinese when CJK ideographs are at least as many as
  the Latin words, else English; ``language="en"``/``"zh"`` forces one.

Nothing is downloaded at run time. Each distinct text is scored once: a batch is reduced to its
unique texts first, and a bounded cache keeps the scores of earlier batches (the features score
the same interactions again at every snapshot). Empty or blank texts get no score (NaN) and the
language ``""``; callers skip and count them.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd

from crmlab.voice.lexicon_zh import BOOSTERS, NEGATORS, VALENCE

__all__ = [
    "LANGUAGES",
    "NEGATIVE_THRESHOLD",
    "POSITIVE_THRESHOLD",
    "SentimentScorer",
    "detect_language",
    "score_sentiment",
    "sentiment_label",
]

log = logging.getLogger(__name__)

Language = Literal["auto", "en", "zh"]
LANGUAGES: tuple[str, ...] = ("auto", "en", "zh")
NEGATIVE_THRESHOLD = -0.05
POSITIVE_THRESHOLD = 0.05

_CJK = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"
_LATIN_WORD = r"[A-Za-z]+"
_ALPHA = 15.0  # VADER's normalisation constant
_NEGATION_SCALE = -0.74  # VADER's N_SCALAR
_CONTRAST = frozenset({"但是", "但", "可是", "不过", "然而", "只是"})
_STOP_SCOPE = frozenset("，。！？；,.!?;~～…、 \n\t")
_ZH_EXTRA_WORDS = ("没退款", "未退款", "没解决", "未解决", "没处理", "未收到", "还没到")
VALENCE_EXTRA = {"没退款": -2.0, "未退款": -2.0, "没解决": -2.0, "未解决": -2.0, "没处理": -1.8, "未收到": -2.0,
                 "还没到": -1.5}


def _text_values(texts: Iterable[Any] | pd.Series) -> pd.Series:
    s = texts if isinstance(texts, pd.Series) else pd.Series(list(texts), dtype=object)
    return s.reset_index(drop=True)


def detect_language(texts: Iterable[Any] | pd.Series) -> np.ndarray:
    """``'zh'`` where CJK ideographs are at least as many as the Latin words, ``'en'`` for other
    text, ``''`` for a missing or blank one. Vectorised (two regex counts over the column)."""
    s = _text_values(texts)
    text = s.astype("str") if len(s) else pd.Series([], dtype="str")
    present = s.notna().to_numpy() & (text.str.strip().str.len() > 0).to_numpy()
    cjk = text.str.count(_CJK).fillna(0).to_numpy()
    latin = text.str.count(_LATIN_WORD).fillna(0).to_numpy()
    out = np.where((cjk > 0) & (cjk >= latin), "zh", "en").astype(object)
    out[~present] = ""
    return out


def sentiment_label(score: Any, *, negative: float = NEGATIVE_THRESHOLD,
                    positive: float = POSITIVE_THRESHOLD) -> np.ndarray:
    """``'negative'`` / ``'neutral'`` / ``'positive'`` for scores (``''`` for NaN: no text)."""
    s = np.asarray(score, dtype=float)
    out = np.where(s <= negative, "negative", np.where(s >= positive, "positive", "neutral")).astype(object)
    out[np.isnan(s)] = ""
    return out


_default_lock = threading.Lock()


class _Chinese:
    """The lexicon scorer over crmlab's own jieba tokenizer (jieba's global one is left alone)."""

    def __init__(self) -> None:
        import jieba

        logging.getLogger("jieba").setLevel(logging.WARNING)  # "Building prefix dict..." on every start
        jieba.default_logger.setLevel(logging.WARNING)
        self.tokenizer = jieba.Tokenizer()
        self.valence = {**VALENCE, **VALENCE_EXTRA}
        for word in (*self.valence, *NEGATORS, *BOOSTERS, *_ZH_EXTRA_WORDS):
            self.tokenizer.add_word(word, freq=None)
        self._lock = threading.Lock()
        self._negator_prefixes = sorted(NEGATORS, key=len, reverse=True)

    def tokens(self, text: str) -> list[str]:
        with self._lock:  # jieba's lazy initialisation is not thread-safe
            return self.tokenizer.lcut(text)

    def _negated_word(self, tok: str) -> float | None:
        """jieba keeps words such as 不好, 不太好, 没用过 whole: a negator prefix of a sentiment word."""
        for neg in self._negator_prefixes:
            if len(tok) > len(neg) and tok.startswith(neg):
                rest = tok[len(neg):]
                v = self.valence.get(rest)
                if v is not None:
                    return v * _NEGATION_SCALE
        return None

    def score(self, text: str) -> float:
        tokens = self.tokens(text)
        contrast = max((i for i, t in enumerate(tokens) if t in _CONTRAST), default=-1)
        total = 0.0
        for i, tok in enumerate(tokens):
            v = self.valence.get(tok)
            if v is None:
                v = self._negated_word(tok)
            if v is None:
                continue
            if tok in BOOSTERS and i + 1 < len(tokens) and tokens[i + 1] in self.valence:
                continue  # "好" in "好快" is a degree word, not praise
            factor, negated = 1.0, False
            for j in range(i - 1, max(i - 4, -1), -1):  # up to three words back, within the clause
                prev = tokens[j]
                if prev in _STOP_SCOPE:
                    break
                if prev in NEGATORS:
                    negated = not negated
                elif prev in BOOSTERS:
                    factor *= BOOSTERS[prev]
            v *= factor
            if negated:
                v *= _NEGATION_SCALE
            if contrast >= 0:
                v *= 1.5 if i > contrast else 0.5
            total += v
        return total / math.sqrt(total * total + _ALPHA)


class _English:
    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self.analyzer = SentimentIntensityAnalyzer()

    def score(self, text: str) -> float:
        return float(self.analyzer.polarity_scores(text)["compound"])


class SentimentScorer:
    """Scores texts on ``[-1, 1]`` (module doc); each distinct text once, with a bounded cache.

    ``language``: ``'auto'`` detects it per text, ``'en'``/``'zh'`` forces one. ``cache_size``:
    distinct texts remembered between calls (0: none). The models load on first use.
    """

    def __init__(self, *, language: Language = "auto", cache_size: int = 200_000) -> None:
        self.language = language
        self.cache_size = cache_size

    def _check(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"language={self.language!r} should be one of {list(LANGUAGES)}")
        if isinstance(self.cache_size, bool) or not isinstance(self.cache_size, int) or self.cache_size < 0:
            raise ValueError(f"cache_size={self.cache_size!r} should be a whole number >= 0")

    def _model(self, lang: str) -> Any:
        models = self.__dict__.setdefault("_models", {})
        if lang not in models:
            models[lang] = chinese_model() if lang == "zh" else _English()
        return models[lang]

    def score(self, texts: Iterable[Any] | pd.Series) -> pd.DataFrame:
        """``language`` (``en``/``zh``, ``''`` for no text) and ``sentiment`` (NaN for no text), one
        row per input text in its order."""
        self._check()
        s = _text_values(texts)
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        uniq = pd.Series(uniques, dtype=object)
        lang = detect_language(uniq)
        if self.language != "auto":
            lang = np.where(lang == "", "", self.language).astype(object)
        score = np.full(len(uniq), np.nan)
        caches: dict[str, dict[str, float]] = self.__dict__.setdefault("_cache", {})
        for lg in ("en", "zh"):
            rows = np.flatnonzero(lang == lg)
            if not len(rows):
                continue
            cache = caches.setdefault(lg, {})
            texts_lg = uniq.iloc[rows].map(lambda v: v if isinstance(v, str) else str(v))
            found = np.array(texts_lg.map(cache).to_numpy(dtype=float, na_value=np.nan))  # vectorised look-up
            missing = np.flatnonzero(np.isnan(found))
            if len(missing):
                model = self._model(lg)
                new = [model.score(t) for t in texts_lg.iloc[missing].tolist()]
                found[missing] = new
                if self.cache_size:
                    if len(cache) + len(new) > self.cache_size:
                        cache.clear()
                    if len(new) <= self.cache_size:
                        cache.update(zip(texts_lg.iloc[missing].tolist(), new, strict=True))
            score[rows] = found
        present = codes >= 0
        out_lang = np.full(len(s), "", dtype=object)
        out_score = np.full(len(s), np.nan)
        out_lang[present] = lang[codes[present]]
        out_score[present] = score[codes[present]]
        return pd.DataFrame({"language": out_lang, "sentiment": out_score})


_zh: list[_Chinese] = []


def chinese_model() -> _Chinese:
    """crmlab's jieba tokenizer with the lexicon's words (one per process; topics reuse it)."""
    with _default_lock:
        if not _zh:
            _zh.append(_Chinese())
    return _zh[0]


_default: dict[str, SentimentScorer] = {}


def score_sentiment(texts: Iterable[Any] | pd.Series, *, language: Language = "auto") -> pd.DataFrame:
    """:meth:`SentimentScorer.score` with one shared scorer per ``language`` (its cache is reused
    across calls, e.g. by the features at every snapshot)."""
    if language not in LANGUAGES:
        raise ValueError(f"language={language!r} should be one of {list(LANGUAGES)}")
    with _default_lock:
        scorer = _default.setdefault(language, SentimentScorer(language=language))
    return scorer.score(texts)
