"""Benchmark the segmentation pipeline: train on CDNOW, then assign millions of customers.

1. ``train_segmentation`` on the embedded CDNOW log with the shipped configs (tracking off): the
   k sweep on a sample, the final K-means, stability, profiles and export; the chosen k, the
   quality and stability figures and the profiles are printed.
2. The CDNOW features (as_of 1998-06-30, 23,570 customers) are replicated ``--replicas`` times
   (144: about 3.39 million customers) with distinct, sorted ids, and ``score_segmentation`` (what
   batch scoring and the pyfunc call: scale, nearest centre, names, RFM scores) is timed on them.
3. Fitting the final model at that size: MiniBatchKMeans on all the replicated customers (what
   training does above ``segmentation.minibatch_threshold``).

    .venv/bin/python benchmarks/bench_segmentation.py [--replicas 144] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab.config import load_config
from crmlab.data.io import load_cdnow
from crmlab.export import load_bundle
from crmlab.features import build_features
from crmlab.segmentation.models import fit_kmeans
from crmlab.segmentation.bundle import score_segmentation
from crmlab.segmentation.pipeline import train_segmentation

log = logging.getLogger("bench_segmentation")

REPO = Path(__file__).resolve().parents[1]


def timed_runs(fn: Callable[[], Any], repeat: int) -> tuple[Any, float, float]:
    """The last result and the best and median wall time of ``repeat`` runs."""
    times, out = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times), statistics.median(times)


def replicate(features: pd.DataFrame, replicas: int) -> pd.DataFrame:
    """``replicas`` copies of a features frame with ids ``'<copy>-<id>'``, sorted as feature frames are."""
    ids = features["customer_id"].astype(str).to_numpy()
    big = pd.concat([features] * replicas, ignore_index=True)
    big["customer_id"] = np.concatenate([np.char.add(f"{r:04d}-", ids.astype("U")) for r in range(replicas)])
    return big


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=144, help="copies of the CDNOW customer base (144: 3.39M)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scoring timing (best and median shown)")
    args, _ = parser.parse_known_args()  # run_all.py passes every script the same arguments
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("crmlab", "mlflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    log.info("machine: %s, %s, python %s, numpy %s, pandas %s", platform.machine(), platform.processor() or "?",
             platform.python_version(), np.__version__, pd.__version__)

    with tempfile.TemporaryDirectory(prefix="bench-seg-") as tmp:
        cfg = load_config(REPO / "configs", ["project.tracking.enabled=false", f"project.output.dir={tmp}/out",
                                             f"project.output.models_dir={tmp}/models"])
        seg = cfg.segmentation
        start = time.perf_counter()
        result = train_segmentation(cfg)
        t_train = time.perf_counter() - start
        m = result.metrics
        log.info("\n== train_segmentation on CDNOW (%s, transform %s, k_range %s, sample %d): %.1f s",
                 "+".join(seg.features), seg.transform, list(seg.k_range), seg.sample_size, t_train)
        log.info("  k=%d (%s); silhouette %.3f, Calinski-Harabasz %.0f, Davies-Bouldin %.3f",
                 result.k, result.chosen_by, m["silhouette"], m["calinski_harabasz"], m["davies_bouldin"])
        log.info("  stability ARI: seeds %.3f, bootstrap %.3f", m["stability_ari_seeds"], m["stability_ari_bootstrap"])
        if result.sweep is not None:
            log.info("  sweep:\n%s", result.sweep.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        log.info("  profiles:\n%s", result.profiles.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
        bundle = load_bundle(result.bundle_path, pipeline="segmentation")

        features = build_features(load_cdnow(), as_of=result.as_of)
        big = replicate(features, args.replicas)
        log.info("\n== score_segmentation on %d customers (CDNOW features x%d; best / median of %d runs)",
                 len(big), args.replicas, args.repeat)
        scores, best, med = timed_runs(lambda: score_segmentation(big, bundle), args.repeat)
        log.info("  score_segmentation   %6.2f / %6.2f s  (%.1f M customers per second)", best, med,
                 len(big) / best / 1e6)
        _, best, med = timed_runs(lambda: result.model.assign(big), args.repeat)
        log.info("  of which scale + nearest centre %6.2f / %6.2f s", best, med)
        counts = scores["segment_name"].value_counts()
        assert (counts.to_numpy() % args.replicas == 0).all(), "every copy must get the same segments"
        log.info("  segments: %s", ", ".join(f"{k} {v:,}" for k, v in counts.items()))

        z = result.model.scaler.transform_rows(big[seg.features].dropna().to_numpy(dtype=np.float64))
        start = time.perf_counter()
        fit_kmeans(z, result.k, seed=cfg.project.seed, n_init=seg.n_init, minibatch=True)
        log.info("\n== MiniBatchKMeans k=%d on %d customers (n_init %d): %.1f s", result.k, len(z), seg.n_init,
                 time.perf_counter() - start)
    log.info("\nmax RSS of the process: %.0f MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


if __name__ == "__main__":
    main()
