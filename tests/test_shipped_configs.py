"""The shipped configs hold no date: every window is derived from the user's data (issue 14)."""

from __future__ import annotations

import re

from .conftest import REPO

# ISO, slashed and dotted dates, year-month, and any year of the embedded CDNOW log
_DATE = re.compile(r"\b(1[89]|20)\d\d[-/.](0?[1-9]|1[0-2])([-/.]\d{1,2})?\b|\b(1997|1998)\b")


def test_shipped_configs_hold_no_dates():
    files = sorted((REPO / "configs").glob("*.yaml"))
    assert {f.name for f in files} >= {"clv.yaml", "churn.yaml", "project.yaml"}
    found = [f"{f.name}:{n}: {line.strip()}" for f in files
             for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
             if _DATE.search(line.split("#", 1)[0])]
    assert not found, f"dates in the shipped configs: {found}"


def test_the_date_pattern_finds_what_it_looks_for():
    for line in ("calibration_end: 1997-09-30", "as_of: 2011/12/30", "start: 2024-03", "year: 1998"):
        assert _DATE.search(line), line
    for line in ("horizon_days: auto", "n_snapshots: 3", "seed: 42", "windows: [30, 90, 180, 365]"):
        assert not _DATE.search(line), line
