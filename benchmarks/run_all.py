"""Run every benchmark script in this folder, one after the other, each in its own process
(so peak-memory figures do not mix). Usage: python benchmarks/run_all.py [extra args for each]."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
failed = []
for script in sorted(here.glob("bench_*.py")):
    print(f"\n=== {script.name} ===", flush=True)
    if subprocess.run([sys.executable, str(script), *sys.argv[1:]]).returncode != 0:
        failed.append(script.name)
if failed:
    sys.exit(f"failed: {', '.join(failed)}")
