"""What cleaning reports: per table the rows in, out and rejected with their reasons, the formats met and the values standardised; the whole run's report; and a table between the cleaning steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from crmlab.data.io import Tables


@dataclass
class TableReport:
    """Counts for one table; no values from the data, so it is safe to log and track.

    ``input_rows = clean_rows + rejected_rows + exact_duplicates + merged_rows`` always holds
    (``merged_rows`` is non-zero for the customers table only).
    """

    table: str
    source: str | None = None
    input_rows: int = 0
    exact_duplicates: int = 0
    identical_rows_kept: int = 0
    merged_rows: int = 0
    clean_rows: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    imputed: dict[str, dict[str, Any]] = field(default_factory=dict)
    standardised: dict[str, int] = field(default_factory=dict)
    date_formats: dict[str, dict[str, int]] = field(default_factory=dict)
    ids_remapped: int = 0
    orphan_rows: int | None = None
    orphan_ids: int | None = None
    dropped_columns: list[str] = field(default_factory=list)
    personal_columns: dict[str, str] = field(default_factory=dict)  # column -> why it is personal (no values)
    notes: list[str] = field(default_factory=list)  # what a user should know: date order chosen, outliers

    @property
    def rejected_rows(self) -> int:
        return int(sum(self.rejected.values()))

    @property
    def invariant_ok(self) -> bool:
        return self.input_rows == self.clean_rows + self.rejected_rows + self.exact_duplicates + self.merged_rows

    def invariant(self) -> str:
        """The invariant, stated with this table's numbers: ``'customers: 105 input = 100 clean + ...: ok'``."""
        merged = f" + {self.merged_rows:,} merged" if self.table == "customers" else ""
        sign = "=" if self.invariant_ok else "!="
        return (
            f"{self.table}: {self.input_rows:,} input {sign} {self.clean_rows:,} clean + {self.rejected_rows:,} rejected"
            f" + {self.exact_duplicates:,} exact duplicates{merged}: {'ok' if self.invariant_ok else 'MISMATCH'}"
        )

    def _add(self, bucket: dict[str, int], key: str, n: int | np.integer) -> None:
        if n:
            bucket[key] = bucket.get(key, 0) + int(n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "source": self.source,
            "input_rows": int(self.input_rows),
            "clean_rows": int(self.clean_rows),
            "rejected_rows": self.rejected_rows,
            "exact_duplicates": int(self.exact_duplicates),
            "identical_rows_kept": int(self.identical_rows_kept),
            "merged_rows": int(self.merged_rows),
            "invariant_ok": self.invariant_ok,
            "rejected": {k: int(v) for k, v in sorted(self.rejected.items())},
            "imputed": {k: dict(v) for k, v in sorted(self.imputed.items())},
            "standardised": {k: int(v) for k, v in sorted(self.standardised.items())},
            "date_formats": {c: {f: int(n) for f, n in d.items()} for c, d in sorted(self.date_formats.items())},
            "ids_remapped": int(self.ids_remapped),
            "orphan_rows": self.orphan_rows,
            "orphan_ids": self.orphan_ids,
            "dropped_columns": list(self.dropped_columns),
            "personal_columns": dict(self.personal_columns),
            "notes": list(self.notes),
        }


@dataclass
class CleanReport:
    """What cleaning did, per table: counts and reasons only, never personal data."""

    tables: dict[str, TableReport] = field(default_factory=dict)
    max_date: date | None = None
    ids_merged: int = 0
    persons_merged: int = 0
    similar_id_groups: int = 0  # groups of ids that differ only by leading zeros, '.0', notation or case
    similar_ids: int = 0
    similar_ids_merged: int = 0
    seconds: float = 0.0

    @property
    def invariant_ok(self) -> bool:
        return all(t.invariant_ok for t in self.tables.values())

    def check_invariant(self, *, strict: bool = True) -> list[str]:
        """State the invariant for every table (one line each); with ``strict``, raise when a count is off.

        input rows = clean rows + rejected rows + dropped exact duplicates (+ merged rows, customers).
        """
        lines = [t.invariant() for t in self.tables.values()]
        if strict and not self.invariant_ok:
            # The cleaner lost or invented rows: a bug in crmlab, not in the data.
            raise RuntimeError("cleaning counts do not add up: " + "; ".join(lines))
        return lines

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per table, for a rich/console table."""
        return [
            {
                "table": name,
                "input": t.input_rows,
                "clean": t.clean_rows,
                "rejected": t.rejected_rows,
                "exact duplicates": t.exact_duplicates,
                "merged": t.merged_rows,
                "imputed": int(sum(v["count"] for v in t.imputed.values())),
                "standardised": int(sum(t.standardised.values())),
                "ids remapped": t.ids_remapped,
                "check": "ok" if t.invariant_ok else "MISMATCH",
            }
            for name, t in self.tables.items()
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (only ints, floats, strings, lists and dicts)."""
        return {
            "max_date": self.max_date.isoformat() if self.max_date else None,
            "ids_merged": int(self.ids_merged),
            "persons_merged": int(self.persons_merged),
            "similar_id_groups": int(self.similar_id_groups),
            "similar_ids": int(self.similar_ids),
            "similar_ids_merged": int(self.similar_ids_merged),
            "invariant_ok": self.invariant_ok,
            "seconds": round(float(self.seconds), 3),
            "tables": {name: t.to_dict() for name, t in self.tables.items()},
        }

    def to_text(self) -> str:
        """A short human-readable summary, one fact per line."""
        lines = self.check_invariant(strict=False)
        for name, t in self.tables.items():
            for reason, n in sorted(t.rejected.items()):
                lines.append(f"{name}: rejected {n:,} row(s): {reason}")
            if t.identical_rows_kept:
                lines.append(f"{name}: kept {t.identical_rows_kept:,} identical row(s) (no order_id to tell "
                             "repeat purchases from repeated rows)")
            for col, imp in sorted(t.imputed.items()):
                value = f" ({imp['value']!r})" if "value" in imp else ""
                lines.append(f"{name}: filled {imp['count']:,} missing {col} by {imp['strategy']}{value}")
            for rule, n in sorted(t.standardised.items()):
                lines.append(f"{name}: standardised {n:,} value(s): {rule}")
            if t.ids_remapped:
                lines.append(f"{name}: {t.ids_remapped:,} row(s) moved from a duplicate customer id to its person")
            if t.orphan_rows:
                lines.append(f"{name}: {t.orphan_rows:,} row(s) of {t.orphan_ids:,} customer id(s) "
                             "not in the customers table (kept)")
            if t.dropped_columns:
                lines.append(f"{name}: personal data columns not kept in the clean table: {', '.join(t.dropped_columns)}")
            lines.extend(f"{name}: note: {n}" for n in t.notes)
        if self.persons_merged:
            lines.append(f"customers: {self.ids_merged:,} duplicate id(s) merged into {self.persons_merged:,} person(s)")
        if self.similar_id_groups:
            done = (f"{self.similar_ids_merged:,} merged" if self.similar_ids_merged
                    else "kept apart (project.cleaning.merge_similar_ids: true merges them)")
            lines.append(f"customer ids: {self.similar_ids:,} ids in {self.similar_id_groups:,} group(s) differ only by "
                         f"leading zeros, a '.0' suffix, scientific notation or case: {done}")
        return "\n".join(lines)


@dataclass
class CleanResult:
    """Clean typed tables, rejected rows (raw cells + ``_row`` + ``_reason``), the id map and the report."""

    tables: Tables
    rejects: dict[str, pd.DataFrame]
    id_map: pd.DataFrame
    report: CleanReport


@dataclass
class Stage:
    """A table between the steps: typed columns of the surviving rows (index = input row number)."""

    name: str
    raw: pd.DataFrame
    work: pd.DataFrame
    rejects: pd.DataFrame
    report: TableReport
    pii: frozenset[str] = frozenset()  # lower-cased names of this table's personal columns
    match: dict[str, list[str]] = field(default_factory=dict)  # 'email'/'phone' -> columns to match persons on
