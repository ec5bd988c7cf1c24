"""Steps every job shares: load -> clean -> fix the cut-off -> features, with the data fingerprint.

The command line and the pipelines call these; none of them loads, cleans or fingerprints data on
its own.
"""

from __future__ import annotations

import logging
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


def prepare_data(project: ProjectConfig, *, out_dir: Path | None = None) -> PreparedData:
    """Load the configured tables, clean them (rejects and report written to ``out_dir``) and fingerprint."""
    raw = load_tables(project.data)
    result = clean_tables(raw, project.cleaning, pii_columns=project.features.pii_columns)
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
