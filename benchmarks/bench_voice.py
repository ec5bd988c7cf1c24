"""Texts per second of crmlab.voice sentiment, per language: distinct texts (cold: every text scored)
and the same texts again (warm: the cache answers). Run: python benchmarks/bench_voice.py [n]."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from crmlab.voice import SentimentScorer

LABELLED = Path(__file__).resolve().parents[1] / "tests" / "voice" / "labelled_comments.csv"


def main(n: int = 20_000) -> None:
    df = pd.read_csv(LABELLED)
    for language in ("en", "zh"):
        base = df.loc[df["language"] == language, "text"].tolist()
        texts = [f"{base[i % len(base)]} #{i}" for i in range(n)]  # distinct texts: no cache hit
        scorer = SentimentScorer(language="auto", cache_size=n)
        scorer.score(base[:2])  # load the model (jieba's dictionary: about a second)
        start = time.perf_counter()
        scorer.score(texts)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        scorer.score(texts)
        warm = time.perf_counter() - start
        print(f"{language}: {n / cold:,.0f} distinct texts/s, {n / warm:,.0f} texts/s from the cache")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
