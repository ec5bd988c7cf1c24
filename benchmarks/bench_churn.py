"""Benchmark: train the churn pipeline on CDNOW and score customers with its bundle.

    .venv/bin/python benchmarks/bench_churn.py [--replicas 10] [--tracking]

Training: :func:`crmlab.churn.pipeline.train_churn` on the embedded CDNOW log with project.as_of
1997-09-30 and a 26-week horizon (the validation snapshot is 1997-09-30, labels to 1998-03-31; the
one usable training snapshot is 1997-04-01), MLflow off unless ``--tracking`` (then a throw-away
SQLite store in a temporary folder). Prints each step's wall time and the leaderboard.

Scoring: :func:`crmlab.churn.bundle.score_churn` from the exported bundle (read from disk) on the
features of every CDNOW customer at 1998-06-30, replicated ``--replicas`` times with distinct ids
(10: 235,700 customers): probability, risk tier, decision and the top three reasons (``churn.reasons``); and, for
comparison, LightGBM's probability alone. Prints customers per second and the peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from crmlab.churn.bundle import _load, _model_input, score_churn  # noqa: E402
from crmlab.churn.pipeline import train_churn  # noqa: E402
from crmlab.config import load_config  # noqa: E402
from crmlab.data.io import load_cdnow  # noqa: E402
from crmlab.export import load_bundle  # noqa: E402
from crmlab.features import build_features  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
GB = 1024**3


@contextlib.contextmanager
def step(text: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    print(f"  {text:<58} {time.perf_counter() - start:7.2f} s", flush=True)


def timed(label: str, fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicas", type=int, default=10)
    ap.add_argument("--tracking", action="store_true", help="Log to a throw-away MLflow store.")
    args, _ = ap.parse_known_args()
    with tempfile.TemporaryDirectory(prefix="bench-churn-") as tmp:
        sets = ["project.as_of=1997-09-30", f"project.output.models_dir={tmp}/models",
                f"project.output.dir={tmp}/outputs"]
        sets += ([f"project.tracking.uri=sqlite:///{tmp}/mlflow.db", f"project.tracking.artifact_dir={tmp}/art"]
                 if args.tracking else ["project.tracking.enabled=false"])
        cfg = load_config(REPO / "configs", sets)
        print("train_churn on CDNOW (as_of 1997-09-30, horizon 182 days):")
        result, seconds = timed("train", lambda: train_churn(cfg, step=step))
        print(f"  {'total':<58} {seconds:7.2f} s")
        for line in result.summary():
            print("  " + line)

        base = build_features(load_cdnow(), as_of="1998-06-30")
        feats = pd.concat([base.assign(customer_id=base["customer_id"] + f"-{r}") for r in range(args.replicas)],
                          ignore_index=True)
        bundle = load_bundle(result.bundle_path, pipeline="churn")
        print(f"scoring {len(feats):,} customers (CDNOW at 1998-06-30 x{args.replicas}) from {result.bundle_path}:")
        scores, seconds = timed("score", lambda: score_churn(feats, bundle))
        print(f"  score_churn (probability, tier, decision, 3 reasons)   {seconds:7.2f} s "
              f"({len(feats) / seconds:,.0f} customers/s)")
        loaded = _load(bundle)
        X = _model_input(feats, loaded.spec, bundle.path)
        _, seconds = timed("proba", lambda: loaded.lightgbm.predict_proba(X))
        print(f"  LightGBM probability only                              {seconds:7.2f} s "
              f"({len(feats) / seconds:,.0f} customers/s)")
        tiers = scores["churn_risk_tier"].value_counts(normalize=True).reindex(["low", "medium", "high"])
        print("  risk tiers: " + ", ".join(f"{k} {v:.1%}" for k, v in tiers.fillna(0).items())
              + f"; flagged {scores['churn_flagged'].mean():.1%}; mean probability "
              f"{np.mean(scores['churn_probability']):.3f}")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB:.2f} GB")


if __name__ == "__main__":
    main()
