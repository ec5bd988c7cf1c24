"""Benchmark ``crmlab demo``: where a newcomer's first run spends its time.

1. Imports: a fresh interpreter importing the CLI (what every ``crmlab`` command pays), then the
   libraries the demo loads on the way (MLflow, LightGBM, scikit-learn, matplotlib, statsforecast...).
2. The demo in this process (``run_demo`` on the embedded CDNOW log, MLflow in a temporary folder),
   every step timed and grouped by phase: data and features, each pipeline, scoring, the report.
3. ``--threads``: the settings this benchmark was written for, against the previous ones on the same
   data in the same process: the CLV challengers' LightGBM fits on one thread against two, and the
   k sweep's K-means on one thread against scikit-learn's default (every core); the outputs are
   compared for equality (predictions bit for bit; the sweep's table to 1e-12).
4. ``--cli``: the whole ``python -m crmlab demo`` in a subprocess (imports, the demo and the report,
   as a newcomer runs it), and with ``--before-src DIR`` the same with another checkout's ``src`` (the
   code before a change): the ratio of the two wall times.

    .venv/bin/python benchmarks/bench_demo.py [--threads] [--cli [--repeat 2]] [--before-src /path/to/old/src]

e.g. against the commit before this work: ``git archive 50d97ee src | tar -x -C /tmp/base`` then
``--cli --repeat 2 --before-src /tmp/base/src``.

The machine's load matters more than anything here (timings on a shared 2-core machine vary 2-3x
from one minute to the next): compare ratios measured in one run, not figures across runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HEAVY = ("mlflow", "lightgbm", "sklearn.cluster", "matplotlib.pyplot", "statsforecast", "lifetimes", "shap")


def time_imports() -> dict[str, float]:
    """Seconds to import the CLI in a fresh interpreter, then each heavy library after it."""
    code = ("import time, importlib, json; t = time.perf_counter(); import crmlab.cli; out = {'crmlab.cli': "
            "time.perf_counter() - t}\n"
            f"for m in {HEAVY!r}:\n"
            "    t = time.perf_counter()\n"
            "    try: importlib.import_module(m)\n"
            "    except ImportError: continue\n"
            "    out[m] = time.perf_counter() - t\n"
            "print(json.dumps(out))")
    import json

    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    return json.loads(res.stdout.strip().splitlines()[-1])


class _Out:
    """The demo's ``out``: remembers the current section (``out.rule(pipeline)``), prints nothing."""

    def __init__(self) -> None:
        self.section = "data and features"

    def rule(self, text: str) -> None:
        self.section = text

    def print(self, *args: Any, **kwargs: Any) -> None:
        pass


def time_demo() -> tuple[dict[str, float], list[tuple[str, str, float]], float]:
    """Run the demo in this process: (seconds per section, (section, step, seconds) per step, total)."""
    from crmlab.config import load_config
    from crmlab.demo import run_demo

    out = _Out()
    steps: list[tuple[str, str, float]] = []

    @contextlib.contextmanager
    def step(text: str):
        section = "report" if text.startswith(("Computing KPIs", "Drawing", "Logging the report")) else (
            "scoring" if text.startswith("Scoring") else out.section)
        start = time.perf_counter()
        yield
        steps.append((section, text, time.perf_counter() - start))

    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            cfg = load_config(None, [])
            start = time.perf_counter()
            run_demo(cfg, step=step, out=out)
            total = time.perf_counter() - start
        finally:
            os.chdir(cwd)
    sections: dict[str, float] = defaultdict(float)
    for section, _, seconds in steps:
        sections[section] += seconds
    sections["(between steps: MLflow runs, summaries)"] = total - sum(s for _, _, s in steps)
    return dict(sections), steps, total


def compare_threads() -> None:
    """The CLV challengers' LightGBM and the k sweep's K-means: one thread against the previous settings."""
    import numpy as np
    from lightgbm import LGBMRegressor

    from crmlab.clv import counts
    from crmlab.clv.challenger import earlier_window
    from crmlab.clv.shared import feature_matrix
    from crmlab.clv.window import resolve_window
    from crmlab.config import load_config
    from crmlab.demo import demo_config
    from crmlab.features import build_features_from_tables
    from crmlab.segmentation import models as seg_models
    from crmlab.workflow import prepare_data

    with tempfile.TemporaryDirectory() as tmp:
        cfg = demo_config(load_config(None, ["project.tracking.enabled=false", f"project.output.dir={tmp}/out"]))
        prepared = prepare_data(cfg.project)
    window = resolve_window(cfg.clv, prepared.tables.transactions, prepared.as_of, cfg.project.time_unit)
    ew = earlier_window(window.first_date, window.calibration_end, window.holdout_days)
    target, feats = counts._training_set(prepared.tables, cfg.project, ew, window.calibration_start)
    X, y = feature_matrix(feats), target["frequency_holdout"].to_numpy(dtype=np.float64)

    def lgbm(threads: int) -> tuple[float, np.ndarray]:
        start = time.perf_counter()
        booster = LGBMRegressor(**{**counts.COUNT_PARAMS, "num_threads": threads}, random_state=cfg.project.seed
                                ).fit(X, y).booster_
        return time.perf_counter() - start, booster.predict(X)

    print(f"\nCLV purchase challenger, LightGBM Poisson on {len(y):,} customers x {X.shape[1]} features "
          "(the demo fits 8 such models):")
    for rep in range(2):
        t2, p2 = lgbm(2)
        t1, p1 = lgbm(1)
        print(f"  two threads {t2:6.2f}s   one thread {t1:6.2f}s   ratio {t2 / t1:5.2f}x   "
              f"predictions identical: {np.array_equal(p1, p2)}")

    feats = build_features_from_tables(prepared.tables, as_of=prepared.as_of, cfg=cfg.project)
    x = feats[["recency_days", "frequency", "monetary_value"]].dropna().to_numpy(dtype=np.float64)
    z = np.sign(x) * np.log1p(np.abs(x))
    z = (z - z.mean(axis=0)) / z.std(axis=0)
    z = z[seg_models.sample_rows(len(z), 10_000, 0)]
    print(f"\nk sweep 2..10 on {len(z):,} customers (n_init 10, 3 bootstrap refits per k):")
    saved = seg_models.ONE_THREAD_ROWS
    try:
        for rep in range(2):
            seg_models.ONE_THREAD_ROWS = 0  # the previous behaviour: scikit-learn's default threads
            start = time.perf_counter()
            before = seg_models.sweep_k(z, range(2, 11), seed=cfg.project.seed)
            t_all = time.perf_counter() - start
            seg_models.ONE_THREAD_ROWS = saved
            start = time.perf_counter()
            after = seg_models.sweep_k(z, range(2, 11), seed=cfg.project.seed)
            t_one = time.perf_counter() - start
            num = before.drop(columns="unstable").to_numpy(dtype=float)
            same = np.allclose(num, after.drop(columns="unstable").to_numpy(dtype=float), rtol=1e-12, atol=0)
            print(f"  default threads {t_all:6.2f}s   one thread {t_one:6.2f}s   ratio {t_all / t_one:5.2f}x   "
                  f"same table (rtol 1e-12): {same}")
    finally:
        seg_models.ONE_THREAD_ROWS = saved


def time_cli(src: str) -> tuple[float, list[tuple[str, float]]]:
    """Wall seconds of ``python -m crmlab demo`` with ``src`` on PYTHONPATH, and its steps."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "crmlab", "demo"], cwd=tmp, capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": src, "COLUMNS": "200"})
        wall = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"crmlab demo failed with {src}:\n{res.stderr[-2000:]}")
    steps = [(m.group(1), float(m.group(2))) for m in re.finditer(r"✓ (.+?) \((\d+\.\d)s\)", res.stderr)]
    return wall, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", action="store_true", help="compare one thread with the previous settings")
    ap.add_argument("--cli", action="store_true", help="time the whole CLI demo in a subprocess")
    ap.add_argument("--before-src", help="with --cli: also time the CLI with this src folder (the old code)")
    ap.add_argument("--repeat", type=int, default=1, help="with --cli: runs of each, alternating")
    ap.add_argument("--no-demo", action="store_true", help="skip the in-process demo")
    args = ap.parse_args()
    here_src = str(Path(__file__).resolve().parents[1] / "src")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")

    imports = time_imports()
    print("\nimports in a fresh interpreter (each after the ones above it):")
    for name, seconds in imports.items():
        print(f"  {name:20s} {seconds:6.2f}s")

    if not args.no_demo:
        sections, steps, total = time_demo()
        print(f"\ncrmlab demo in this process: {total:.1f}s (imports above not included)")
        for name, seconds in sections.items():
            print(f"  {name:40s} {seconds:6.1f}s")
        print("slowest steps:")
        for section, text, seconds in sorted(steps, key=lambda s: -s[2])[:8]:
            print(f"  {seconds:6.1f}s  {section}: {text}")

    if args.threads:
        compare_threads()

    if args.cli:
        runs = [("this checkout", here_src)] + ([("before", args.before_src)] if args.before_src else [])
        walls: dict[str, list[float]] = defaultdict(list)
        for rep in range(args.repeat):  # alternating, so a change in the machine's load hits both
            for label, src in runs if rep % 2 == 0 else runs[::-1]:
                wall, steps = time_cli(src)
                walls[label].append(wall)
                print(f"\npython -m crmlab demo ({label}: {src}): {wall:.1f}s wall, load average "
                      f"{os.getloadavg()[0]:.1f}")
                for text, seconds in sorted(steps, key=lambda s: -s[1])[:5]:
                    print(f"  {seconds:6.1f}s  {text}")
        if len(walls) == 2:
            ratios = [b / a for a, b in zip(walls["this checkout"], walls["before"])]
            print(f"\nbefore / this checkout, run by run: {', '.join(f'{r:.2f}x' for r in ratios)}; "
                  f"best of each: {min(walls['before']):.1f}s / {min(walls['this checkout']):.1f}s = "
                  f"{min(walls['before']) / min(walls['this checkout']):.2f}x")
    print(f"\nload average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
