"""The customer's voice: sentiment and complaint topics of customer texts, English and Chinese, offline.

* :mod:`crmlab.voice.texts`: a frame of ``customer_id``, ``ts``, ``text`` from any table, empty
  texts counted, a non-text column refused;
* :mod:`crmlab.voice.sentiment`: language per text and a sentiment score in ``[-1, 1]`` (VADER for
  English, crmlab's lexicon over jieba for Chinese), each distinct text scored once;
* :mod:`crmlab.voice.topics`: sentiment by period and the main complaint topics (c-TF-IDF keywords
  of the negative texts per period, and an NMF topic model over them).

The per-customer sentiment features live in the shared feature module (:mod:`crmlab.features.voice`).
"""

from crmlab.voice.sentiment import SentimentScorer, detect_language, score_sentiment, sentiment_label
from crmlab.voice.texts import Texts, texts_frame

__all__ = ["SentimentScorer", "Texts", "detect_language", "score_sentiment", "sentiment_label", "texts_frame"]
