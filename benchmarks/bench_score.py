"""Benchmark ``crmlab score`` on the CDNOW log replicated to 10 million transactions (3.4 million customers).

Every customer model is first trained on CDNOW itself (tracking off, bundles in a temporary folder);
then the replicated base is scored chunk by chunk into a Parquet file, exactly as ``crmlab score``
does (features, every model, atomic write). Printed: wall time, peak RSS of the whole process
(data + models + scoring) and rows written. Target on a 2-core machine (issue 20, churn, CLV and
segmentation with three churn reasons): at most 12 s and 2 GB.

    .venv/bin/python benchmarks/bench_score.py [--replicas 144] [--chunk-size N] [--model clv ...]
        [--set churn.reasons=path] [--previous-src OTHER/src] [--work DIR]

``--previous-src`` (a git worktree of the previous commit's ``src``, say) scores the same data with the
same trained models in a child process running that code, right after this one, and prints the
ratios previous / now of wall time and peak RSS. ``--work DIR`` keeps the trained models in DIR and
reuses them when they are there (no training).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crmlab  # noqa: E402,F401 - from PYTHONPATH (the previous code's src in --child), before bench_features adds ours
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
    parser.add_argument("--chunk-size", type=int, default=None,
                        help="customers per chunk (default: project.scoring.chunk_size, as crmlab score)")
    parser.add_argument("--model", action="append", choices=CUSTOMER_MODELS, help="only these models")
    parser.add_argument("--set", action="append", default=[], dest="sets",
                        help="config override, e.g. --set churn.reasons=path (repeatable)")
    parser.add_argument("--previous-src", help="also score with the code of this src folder (child process)")
    parser.add_argument("--work", help="folder for the trained models (reused when present)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args()
    logging.basicConfig(level=logging.WARNING)

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench-score-"))
    sets = ["project.tracking.enabled=false", f"project.output.dir={work / 'outputs'}",
            f"project.output.models_dir={work / 'models'}", "project.as_of=1998-06-30", *args.sets]
    cfg = load_config(REPO / "configs", sets)
    trained = []
    for pipeline in args.model or CUSTOMER_MODELS:
        if (work / "models" / pipeline / "manifest.json").is_file():
            trained.append(pipeline)
            continue
        if args.child:
            continue
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
    if not args.child:
        print(f"data: {len(tx):,} transactions, {tx['customer_id'].nunique():,} customers "
              f"(made in {time.perf_counter() - t0:.1f} s; RSS {rss_bytes() / GB:.2f} GB)")

    exact = reset_peak()
    before = rss_bytes()
    t0, c0 = time.perf_counter(), time.process_time()
    target = work / ("scores_previous.parquet" if args.child else "scores.parquet")
    summary = write_scores(cfg, target, as_of=AS_OF, pipelines=trained, tables=tables, chunk_size=args.chunk_size)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0  # CPU: all threads (a shared machine's steadier measure)
    peak = peak_bytes()
    if args.child:
        print(json.dumps({"wall": wall, "peak": peak, "before": before, "rows": summary["rows"], "cpu": cpu,
                          "src": str(Path(crmlab.__file__).parent)}))
        return
    out = pd.read_parquet(target, columns=["customer_id"])
    print(f"crmlab score ({', '.join(trained)}): {wall:.2f} s ({cpu:.2f} s CPU) | {summary['rows']:,} rows | peak RSS {peak / GB:.2f} GB "
          f"(process, incl. the {before / GB:.2f} GB of data and models before the call"
          f"{'' if exact else '; peak counter not resettable'}) | file {len(out):,} rows, "
          f"{target.stat().st_size / 2**20:.0f} MiB")
    if args.previous_src:
        cmd = [sys.executable, __file__, "--child", "--work", str(work), "--replicas", str(args.replicas),
               *(["--chunk-size", str(args.chunk_size)] if args.chunk_size else []), *[a for p in args.model or () for a in ("--model", p)],
               *[a for v in args.sets for a in ("--set", v)]]
        done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": args.previous_src}, capture_output=True, text=True,
                              check=True)
        prev = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"previous code ({prev['src']}): {prev['wall']:.2f} s ({prev['cpu']:.2f} s CPU) | peak RSS "
              f"{prev['peak'] / GB:.2f} GB (incl. {prev['before'] / GB:.2f} GB before the call) => now x{prev['wall'] / wall:.2f} "
              f"faster in wall time, x{prev['cpu'] / cpu:.2f} in CPU time; peak RSS x{peak / prev['peak']:.2f}")
        new, old = pd.read_parquet(target), pd.read_parquet(work / "scores_previous.parquet")
        versions = [c for c in new.columns if c.endswith("_model_version")]
        same = new.drop(columns=versions).equals(old.drop(columns=versions))
        print(f"same scores as the previous code: {same}")


if __name__ == "__main__":
    main()
