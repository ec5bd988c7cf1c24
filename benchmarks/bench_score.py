"""Benchmark ``crmlab score`` on the CDNOW log replicated to 10 million transactions (3.4 million customers).

Every customer model is first trained on CDNOW itself (tracking off, bundles in a temporary folder);
then the replicated base is scored chunk by chunk into a Parquet file, exactly as ``crmlab score``
does (features, every model, atomic write). Printed: wall time, peak RSS of the whole process
(data + models + scoring) and rows written. Target on a 2-core machine: at most 30 s and 6 GB.

    .venv/bin/python benchmarks/bench_score.py [--replicas 144] [--chunk-size 500000] [--model clv ...]
        [--set churn.reasons=path]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import GB, make_data, peak_bytes, reset_peak, rss_bytes  # noqa: E402

from crmlab.config import load_config  # noqa: E402
from crmlab.data.io import Tables  # noqa: E402
from crmlab.errors import NotApplicable  # noqa: E402
from crmlab.pipelines import get as pipeline_record  # noqa: E402
from crmlab.scoring import CUSTOMER_MODELS, write_scores  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
AS_OF = "1998-06-30"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=144, help="copies of CDNOW (144: 10.0M transactions)")
    parser.add_argument("--chunk-size", type=int, default=500_000, help="customers per chunk")
    parser.add_argument("--model", action="append", choices=CUSTOMER_MODELS, help="only these models")
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="config override, e.g. --set churn.reasons=path (repeatable)")
    args, _ = parser.parse_known_args()
    logging.basicConfig(level=logging.WARNING)

    work = Path(tempfile.mkdtemp(prefix="bench-score-"))
    sets = ["project.tracking.enabled=false", f"project.output.dir={work / 'outputs'}",
            f"project.output.models_dir={work / 'models'}", "project.as_of=1998-06-30", *args.sets]
    cfg = load_config(REPO / "configs", sets)
    trained = []
    for pipeline in args.model or CUSTOMER_MODELS:
        trainer = pipeline_record(pipeline).load("trainer")
        t0 = time.perf_counter()
        try:
            trainer(cfg)
        except NotApplicable as exc:  # crosssell: CDNOW has no product column
            print(f"skipped {pipeline}: {str(exc).splitlines()[0][:120]}")
            continue
        trained.append(pipeline)
        print(f"trained {pipeline} on CDNOW in {time.perf_counter() - t0:.1f} s")

    t0 = time.perf_counter()
    tx = make_data(args.replicas, extra_columns=False, order="customer")
    tables = Tables(transactions=tx, sources={"transactions": f"CDNOW x{args.replicas}"})
    print(f"data: {len(tx):,} transactions, {tx['customer_id'].nunique():,} customers "
          f"(made in {time.perf_counter() - t0:.1f} s; RSS {rss_bytes() / GB:.2f} GB)")

    exact = reset_peak()
    before = rss_bytes()
    t0 = time.perf_counter()
    summary = write_scores(cfg, work / "scores.parquet", as_of=AS_OF, pipelines=trained, tables=tables,
                           chunk_size=args.chunk_size)
    wall = time.perf_counter() - t0
    peak = peak_bytes()
    out = pd.read_parquet(work / "scores.parquet", columns=["customer_id"])
    print(f"crmlab score ({', '.join(trained)}): {wall:.2f} s | {summary['rows']:,} rows | peak RSS {peak / GB:.2f} GB "
          f"(process, incl. the {before / GB:.2f} GB of data and models before the call"
          f"{'' if exact else '; peak counter not resettable'}) | file {len(out):,} rows, "
          f"{(work / 'scores.parquet').stat().st_size / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
