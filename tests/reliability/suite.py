"""The reliability suite's machinery: a :class:`Case` is one bad input or fault and the outcome crmlab
promises for it; :func:`run_case` builds its workspace, runs the command line in-process and checks.

A case names its input in one of three ways: ``rows`` appended to a small valid transaction log
(:data:`BASE`, 30 rows of 10 customers in 2024), a whole transactions ``file`` (text or bytes, any
name: ``tx.csv``, ``tx.parquet``), or a ``project`` that was trained once per session ("trained":
the CLV model of a 400-customer synthetic CRM, and its scores in ``scores.parquet``). ``config``
is merged into that project's ``configs/project.yaml``; ``argv`` is the command (default
``crmlab data clean --out out``); ``before`` edits the workspace first (breaks a bundle, ...).

The outcome is one of:

* :class:`Clean`: exit 0; the cleaning report's counts (``kept`` clean transaction rows, by default the
  input rows less the rejected ones; ``rejected`` maps a reason's beginning to its row count, and
  every rejects row has one); ``says``: fragments of what the run printed.
* :class:`Fails`: that exit code and exactly one ``error:`` line holding every fragment; no traceback.
* :class:`Runs`: exit 0 and every fragment in the output.

Every case also checks that nothing printed a traceback, with ``keeps`` that a file is
byte-identical after the run, and with ``absent`` that a file was not created.
"""

from __future__ import annotations

import io
import shutil
import sqlite3
from collections.abc import Callable, Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

#: The valid log each ``rows`` case is appended to: 10 customers, 3 purchases each, all in 2024.
BASE = "customer_id,ts,amount\n" + "".join(
    f"c{c:02d},2024-{m:02d}-{10 + c:02d},{10 + c}.50\n" for c in range(10) for m in (2, 5, 9)
)
BASE_ROWS = 30


@dataclass(frozen=True)
class Clean:
    """``crmlab data clean`` succeeded with these counts."""

    rejected: Mapping[str, int] = field(default_factory=dict)
    kept: int | None = None
    says: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fails:
    """The command failed with ``exit`` and one ``error:`` line holding every fragment of ``says``."""

    exit: int
    says: tuple[str, ...]

    def __init__(self, exit: int, *says: str) -> None:  # noqa: A002 - the name users know
        object.__setattr__(self, "exit", exit)
        object.__setattr__(self, "says", says)


@dataclass(frozen=True)
class Runs:
    """The command succeeded and printed every fragment of ``says``."""

    says: tuple[str, ...]

    def __init__(self, *says: str) -> None:
        object.__setattr__(self, "says", says)


@dataclass(frozen=True)
class Case:
    name: str
    expect: Clean | Fails | Runs
    rows: str = ""
    file: tuple[str, str | bytes | pd.DataFrame] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    argv: tuple[str, ...] = ("data", "clean", "--out", "out")
    project: str = "data"
    before: Callable[[Path], None] | None = None
    keeps: str | None = None
    absent: str | None = None  # a file that must not exist after the run

    def __str__(self) -> str:
        return self.name


def _merge(base: dict, extra: Mapping) -> dict:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _write_data(case: Case, root: Path) -> str:
    name, content = case.file or ("tx.csv", BASE + case.rows)
    target = root / name
    if isinstance(content, pd.DataFrame):
        content.to_parquet(target, index=False)
    elif isinstance(content, bytes):
        target.write_bytes(content)
    else:
        target.write_text(content, encoding="utf-8")
    return name


def data_project(case: Case, root: Path) -> None:
    """``configs/project.yaml`` on the case's transactions, its store and outputs under ``root``."""
    path = _write_data(case, root)
    project = {
        "data": {"transactions": {"path": path}},
        "cleaning": {"max_date": "2025-12-31"},
        "tracking": {"uri": "sqlite:///mlflow.db", "artifact_dir": "mlartifacts"},
    }
    _write_project(root, _merge(project, case.config))


def _write_project(root: Path, project: dict) -> None:
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "project.yaml").write_text(yaml.safe_dump(project, allow_unicode=True), encoding="utf-8")


def copy_trained(template: Path, root: Path, config: Mapping[str, Any]) -> None:
    """The session's trained project copied to ``root`` (MLflow records absolute artifact paths: they
    are pointed at the copy)."""
    shutil.copytree(template, root, dirs_exist_ok=True)
    with sqlite3.connect(root / "mlflow.db") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for col in db.execute(f"PRAGMA table_info('{table}')").fetchall():
                if col[2].upper().startswith(("VARCHAR", "TEXT")):
                    db.execute(f'UPDATE "{table}" SET "{col[1]}" = replace("{col[1]}", ?, ?)',
                               (str(template), str(root)))
    if config:
        project = yaml.safe_load((root / "configs" / "project.yaml").read_text(encoding="utf-8"))
        _write_project(root, _merge(project, config))


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """``crmlab <argv>`` in-process: exit code, stdout, stderr (log lines included)."""
    import logging

    from crmlab.cli import main

    stdout, stderr = io.StringIO(), io.StringIO()
    root_logger = logging.getLogger()
    handlers = root_logger.handlers[:]
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            code = main(argv)
    finally:
        for h in root_logger.handlers[:]:
            if h not in handlers:
                root_logger.removeHandler(h)
    return code, stdout.getvalue(), stderr.getvalue()


def _reason_counts(rejects: pd.DataFrame) -> dict[str, int]:
    return rejects["_reason"].astype(str).value_counts().to_dict() if len(rejects) else {}


def check(case: Case, root: Path) -> None:
    """Run ``case`` in ``root`` (the current directory) and check its promised outcome."""
    if case.before is not None:
        case.before(root)
    kept_before = (root / case.keeps).read_bytes() if case.keeps else None
    code, stdout, stderr = run_cli(["-c", "configs", *case.argv])
    said = " ".join((stdout + "\n" + stderr).split())
    assert "Traceback" not in stdout + stderr, stderr[-3000:]
    expect = case.expect
    if isinstance(expect, Fails):
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert code == expect.exit, f"exit {code}, expected {expect.exit}: {said[-1500:]}"
        assert len(errors) == 1, f"expected one error line, got {errors}: {said[-1500:]}"
        missing = [s for s in expect.says if s not in errors[0]]
        assert not missing, f"{missing} not in {errors[0]!r}"
    else:
        assert code == 0, f"exit {code}: {said[-1500:]}"
        missing = [s for s in expect.says if s not in said]
        assert not missing, f"{missing} not in the output: {said[-2000:]}"
    if isinstance(expect, Clean):
        report = pd.read_json(root / "out" / "cleaning_report.json", typ="series")
        table = report["tables"]["transactions"]
        assert report["invariant_ok"] and table["invariant_ok"], table
        counts = _reason_counts(pd.read_csv(root / "out" / "rejects_transactions.csv", dtype=str,
                                            keep_default_na=False))
        got = {want: sum(n for reason, n in counts.items() if reason.startswith(want)) for want in expect.rejected}
        assert got == dict(expect.rejected), f"rejects {counts}, expected {dict(expect.rejected)}"
        assert sum(counts.values()) == sum(expect.rejected.values()), f"unexpected rejects {counts}"
        kept = expect.kept
        if kept is None:
            added = case.rows.count("\n")
            kept = BASE_ROWS + added - sum(expect.rejected.values())
        assert table["clean_rows"] == kept, f"{table['clean_rows']} clean rows, expected {kept}"
    if kept_before is not None:
        assert (root / case.keeps).read_bytes() == kept_before, f"{case.keeps} changed"
    if case.absent is not None:
        assert not (root / case.absent).exists(), f"{case.absent} was created"
