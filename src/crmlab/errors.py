"""User-facing errors.

Every problem a user can fix (a bad file, a missing column, a misspelt config key) is raised as a
:class:`CrmlabError`. The command line prints its message on one line and exits non-zero, without a
traceback. Messages name the file, the column and an example row wherever those exist.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["CrmlabError", "ConfigError", "DataCheckError", "DataError", "DiskFullError", "ModelError", "NotApplicable",
           "format_row"]


class CrmlabError(Exception):
    """A problem the user can fix; its message is meant to be read on its own."""

    exit_code = 2


class ConfigError(CrmlabError):
    """An invalid configuration file, key or value."""


class ModelError(CrmlabError):
    """A model that cannot be fitted, loaded or used on the data given."""


class DiskFullError(CrmlabError):
    """An output could not be written: the device (or the user's quota, or the file size limit) is full.
    The previous output is kept; nothing half-written is left behind."""

    exit_code = 1


class NoFairComparison(CrmlabError):
    """The registry's champion cannot be judged fairly on a challenger's rows (it was fitted on them);
    a retraining then keeps the champion and says why."""


class DataCheckError(CrmlabError):
    """The data a scheduled job was given failed its checks (exit code 3, so schedulers can tell)."""

    exit_code = 3


def format_row(row: Mapping[str, Any] | None, limit: int = 8) -> str:
    """Render one example row compactly: ``{CustomerID: '12', Revenue: 'abc'}``."""
    if row is None:
        return "{}"
    items = list(row.items())
    shown = ", ".join(f"{k}: {v!r}" for k, v in items[:limit])
    more = f", ... (+{len(items) - limit} columns)" if len(items) > limit else ""
    return "{" + shown + more + "}"


class DataError(CrmlabError):
    """Bad input data: names the file, the column, what was expected and an example row."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        column: str | None = None,
        expected: str | None = None,
        example: Mapping[str, Any] | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.column = column
        self.expected = expected
        self.example = example
        parts = []
        if file is not None:
            parts.append(f"{file}:")
        if column is not None:
            parts.append(f"column {column!r}:")
        parts.append(problem)
        msg = " ".join(parts)
        if expected:
            msg += f"; expected {expected}"
        if example is not None:
            msg += f"; example row {format_row(example)}"
        super().__init__(msg)


class NotApplicable(DataError):
    """The data lack what a pipeline needs (cross-sell without a product or category column): ``crmlab
    train <pipeline>`` stops with it; ``crmlab train all`` and ``crmlab demo`` skip that pipeline with a note."""
