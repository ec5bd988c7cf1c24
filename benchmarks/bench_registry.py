"""Benchmark what tracking adds around a training and a scoring (issue 20): the run's dataset inputs and
reading the registry's champion.

1. Dataset inputs: each table of the data fingerprint is logged as an MLflow dataset (digest, source,
   schema, counts) built from the fingerprint and the dtypes (:func:`crmlab.tracking.fingerprint_datasets`),
   against the naive ``mlflow.data.from_pandas(df)`` + ``mlflow.log_input``, which looks at every cell
   (its digest maps ``type`` over the whole frame). The CDNOW log replicated ``--replicas`` times (144:
   10 M rows) for crmlab's; the naive one on ``--naive-replicas`` copies only (it takes minutes on 10 M).
   Target: crmlab's well under a second at 10 M rows.
2. The champion's bundle: read in place from the local artifact store (:func:`crmlab.registry.champion_bundle`)
   against downloading the whole registered model (``models:/crmlab-clv@champion``, the former way:
   about 130 files, crmlab's code included), the same process, ``--repeat`` times each.

    .venv/bin/python benchmarks/bench_registry.py [--replicas 144] [--naive-replicas 15] [--repeat 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import make_data  # noqa: E402

from crmlab.config import TrackingConfig, load_config  # noqa: E402
from crmlab.tracking import Tracker, data_fingerprint  # noqa: E402


def _datasets(replicas: int, naive_replicas: int, work: Path) -> None:
    import mlflow

    tracker = Tracker(TrackingConfig(uri=f"sqlite:///{work / 'inputs.db'}", artifact_dir=work / "inputs-art",
                                     experiment="bench"))
    for n, naive in ((naive_replicas, True), (replicas, False)):
        tx = make_data(n, extra_columns=False, order="time")
        t0 = time.perf_counter()
        fp = data_fingerprint({"transactions": tx})
        t_fp = time.perf_counter() - t0
        with tracker.start_run("bench", pipeline="bench") as run:
            t0 = time.perf_counter()
            run.log_inputs(fp, {"transactions": tx})
            ours = time.perf_counter() - t0
            line = (f"{len(tx):>11,} rows: crmlab dataset input {ours:.3f} s (the fingerprint it reuses, computed "
                    f"by every training anyway: {t_fp:.2f} s)")
            if naive:
                t0 = time.perf_counter()
                mlflow.log_input(mlflow.data.from_pandas(tx, name="transactions"), context="training")
                theirs = time.perf_counter() - t0
                line += f"; mlflow.data.from_pandas + log_input {theirs:.2f} s ({theirs / ours:.0f}x)"
        print(line, flush=True)
        del tx


def _champion(repeat: int, work: Path) -> None:
    import mlflow

    from crmlab.clv.pipeline import train_clv
    from crmlab.registry import champion_bundle

    sets = [f"project.tracking.uri=sqlite:///{work / 'mlflow.db'}", f"project.tracking.artifact_dir={work / 'art'}",
            f"project.output.dir={work / 'out'}", f"project.output.models_dir={work / 'models'}",
            "project.as_of=1998-06-30", "clv.challenger=false"]
    cfg = load_config(None, sets)
    train_clv(cfg)
    tracking = cfg.project.tracking
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    in_place, download = [], []
    for i in range(repeat):
        t0 = time.perf_counter()
        champion_bundle(tracking, "clv", work / f"dst{i}")
        in_place.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        local = mlflow.artifacts.download_artifacts(artifact_uri="models:/crmlab-clv@champion",
                                                    dst_path=str(work / f"dl{i}"))
        download.append(time.perf_counter() - t0)
    files = sum(1 for p in Path(local).rglob("*") if p.is_file())
    a, b = statistics.median(in_place), statistics.median(download)
    print(f"champion bundle: read in place {a:.3f} s, downloading the registered model ({files} files) {b:.3f} s: "
          f"{b / a:.1f}x (medians of {repeat})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=144, help="copies of CDNOW for crmlab's datasets (144: 10 M)")
    parser.add_argument("--naive-replicas", type=int, default=15, help="copies for the naive from_pandas (15: 1 M)")
    parser.add_argument("--repeat", type=int, default=5)
    args, _ = parser.parse_known_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp:
        _champion(args.repeat, Path(tmp))
        _datasets(args.replicas, args.naive_replicas, Path(tmp))


if __name__ == "__main__":
    main()
