"""Steps every job shares: load -> clean -> fix the cut-off -> features, with the data fingerprint.

The command line and the pipelines call these; none of them loads, cleans or fingerprints data on
its own.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from crmlab.config import ProjectConfig
from crmlab.data.clean import CleanResult, clean_tables, write_clean_result
from crmlab.data.io import Tables, load_tables
from crmlab.errors import DataError
from crmlab.tracking import data_fingerprint

__all__ = ["PreparedData", "prepare_data", "resolve_as_of"]

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Clean tables plus what every run logs about them."""

    tables: Tables
    cleaning: CleanResult
    as_of: date | None
    fingerprint: dict
    written: dict[str, Path]


def resolve_as_of(project: ProjectConfig, tables: Tables) -> date | None:
    """The configured cut-off, or the last transaction date when none is configured."""
    tx = tables.transactions
    if project.as_of is not None:
        last = tx["ts"].max() if tx is not None and not tx.empty else None
        if last is not None and pd.notna(last) and pd.Timestamp(last).date() < project.as_of:
            log.warning("project.as_of=%s is %d days after the last transaction (%s): nothing is known of those days",
                        project.as_of, (project.as_of - pd.Timestamp(last).date()).days, pd.Timestamp(last).date())
        return project.as_of
    if tx is None or tx.empty:
        return None
    last = tx["ts"].max()
    if pd.isna(last):
        raise DataError("no valid transaction date", file=tables.sources.get("transactions"), column="ts")
    return last.date()


#: The last data prepared in this process and what it was prepared from (see :func:`prepare_data`).
_last: tuple[tuple, PreparedData] | None = None


def _file_key(path: Path) -> tuple:
    """What identifies a file's content without reading it: path, inode, size and modification time; a
    file modified in the last two seconds also by its bytes' hash (its time may not have ticked yet)."""
    try:
        st = path.stat()
    except OSError:
        return (str(path), None)
    key: tuple = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if time.time() - st.st_mtime < 2:
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        key += (h.hexdigest(),)
    return key


def _data_key(project: ProjectConfig) -> tuple | None:
    sources = [getattr(project.data, t) for t in ("transactions", "customers", "interactions", "surveys")]
    if any(s is not None and s.uri is not None for s in sources):
        return None  # a database can change under the same query: read it again each time
    files = tuple(None if s is None else ("embedded",) if s.path is None else _file_key(Path(s.path)) for s in sources)
    settings = project.model_dump_json(include={"data", "cleaning", "features", "as_of"})
    return settings, date.today(), files


def prepare_data(project: ProjectConfig, *, out_dir: Path | None = None) -> PreparedData:
    """Load the configured tables, clean them (rejects and report written to ``out_dir``) and fingerprint.

    The data are loaded and cleaned once per process: a later call with the same settings on the same
    files (same path, size, modification time and, for a file just written, the same bytes) gets the
    same clean tables (shallow copies: pandas' copy-on-write keeps each caller's changes its own)
    instead of cleaning them again, so ``crmlab demo``, ``retrain`` and the report clean once."""
    global _last
    key = _data_key(project)
    if key is not None and _last is not None and _last[0] == key:
        done = _last[1]
        log.info("data loaded and cleaned earlier in this run: reused (%s)",
                 ", ".join(f"{n}: {len(df):,} rows" for n, df in done.tables.items()))
        written = write_clean_result(done.cleaning, Path(out_dir)) if out_dir is not None else {}
        return _handed_out(done, written)
    done = _prepare(project, out_dir)
    _last = (key, done)
    return _handed_out(done, done.written)


def _handed_out(done: PreparedData, written: dict[str, Path]) -> PreparedData:
    """``done`` as a caller gets it: shallow copies of its tables, its own fingerprint."""
    tables = Tables(**{n: df.copy(deep=False) for n, df in done.tables.items()}, sources=dict(done.tables.sources))
    return PreparedData(tables=tables, cleaning=done.cleaning, as_of=done.as_of,
                        fingerprint=copy.deepcopy(done.fingerprint), written=written)


def _prepare(project: ProjectConfig, out_dir: Path | None) -> PreparedData:
    raw = load_tables(project.data)
    surveys = project.data.surveys
    result = clean_tables(raw, project.cleaning, pii_columns=project.features.pii_columns,
                          survey_scale=surveys.scale if surveys is not None else "auto")
    written: dict[str, Path] = {}
    if out_dir is not None:
        written = write_clean_result(result, Path(out_dir))
    clean = result.tables
    clean.sources = dict(raw.sources)
    as_of = resolve_as_of(project, clean)
    fp = data_fingerprint(dict(clean.items()), project.features.pii_columns)
    fp["sources"] = dict(raw.sources)
    fp["as_of"] = str(as_of) if as_of else None
    return PreparedData(tables=clean, cleaning=result, as_of=as_of, fingerprint=fp, written=written)
