"""Small shared helpers: atomic file writes, the default progress step."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["Step", "ids_unique", "no_step", "write_json_atomic", "write_table_atomic"]

log = logging.getLogger("crmlab")

#: A context manager factory wrapped around each long step of a job: ``with step("Fitting"): ...``.
#: The CLI passes a spinner that prints the step's duration; the library default is :func:`no_step`.
Step = Callable[[str], AbstractContextManager[Any]]


def no_step(text: str) -> AbstractContextManager[Any]:
    """The default step: log the text, time nothing."""
    log.info("%s", text)
    return contextlib.nullcontext()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_target(path: Path) -> tuple[Path, int]:
    """A temp file beside ``path`` (same file system, so os.replace is atomic) with the permissions a
    plain ``open(path, "w")`` would give, not mkstemp's owner-only 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp), fd


def write_table_atomic(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as Parquet (``.parquet``) or CSV (anything else) so that readers see either the old
    file or the complete new one, never a half-written file."""
    path = Path(path)
    tmp, fd = _atomic_target(path)
    os.close(fd)
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(data: Any, path: str | Path) -> Path:
    path = Path(path)
    tmp, fd = _atomic_target(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def ids_unique(ids: pd.Series) -> bool:
    """Whether a column of ids has no repeats; linear (no hashing) when it is sorted, as feature
    frames are, which matters for millions of text ids."""
    import polars as pl

    s = pl.from_pandas(ids.reset_index(drop=True))
    n = len(s)
    if n < 2:
        return True
    if s.null_count() == 0 and s.is_sorted():
        return bool((s.slice(1) != s.slice(0, n - 1)).all())
    return s.n_unique() == n
