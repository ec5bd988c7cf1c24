"""Small shared helpers: atomic file writes, the default progress step."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["Step", "disk_full", "ids_unique", "is_disk_full", "no_step", "progress", "write_json_atomic",
           "write_table_atomic"]

log = logging.getLogger("crmlab")

#: A context manager factory wrapped around each long step of a job: ``with step("Fitting"): ...``.
#: The CLI passes a spinner that prints the step's duration; the library default is :func:`no_step`.
Step = Callable[[str], AbstractContextManager[Any]]


def no_step(text: str) -> AbstractContextManager[Any]:
    """The default step: log the text, time nothing."""
    log.info("%s", text)
    return contextlib.nullcontext()


#: Where :func:`progress` sends its text: the CLI points it at the current step's spinner while a step
#: runs; outside a step (library use, notebooks) progress is only logged at DEBUG.
_PROGRESS_SINK: list[Callable[[str], None]] = []


def progress(text: str) -> None:
    """Report progress inside a long step (``"trial 7/40, best 0.8123, 12s elapsed, ~55s left"``).

    The CLI shows it on the step's spinner line; elsewhere it is a DEBUG log line. Cheap enough to
    call once per trial, fit or chunk, not once per row."""
    if _PROGRESS_SINK:
        _PROGRESS_SINK[-1](text)
    else:
        log.debug("%s", text)


@contextlib.contextmanager
def progress_to(sink: Callable[[str], None]):
    """Send :func:`progress` to ``sink`` inside the block (nested blocks stack)."""
    _PROGRESS_SINK.append(sink)
    try:
        yield
    finally:
        _PROGRESS_SINK.pop()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: the signals received by this process (see :func:`crmlab.cli.main`), in order.
STOP_SIGNALS: list[int] = []


def raise_if_stopped() -> None:
    """Raise KeyboardInterrupt when Ctrl-C or SIGTERM has arrived: called just before an output is
    put in place. A signal handler's KeyboardInterrupt is lost when it lands in a finaliser or a weakref
    callback (Python prints "Exception ignored" and goes on); the recorded signal is not."""
    if STOP_SIGNALS:
        raise KeyboardInterrupt


def replace_folder(new: Path, dst: Path) -> None:
    """Put the complete folder ``new`` in the place of ``dst`` (on the same file system): an existing
    ``dst`` is moved aside first and removed after, so a reader finds the old folder or the new one,
    never a mix; a stop already recorded (:func:`raise_if_stopped`) keeps the old one."""
    import tempfile

    raise_if_stopped()
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old.", dir=dst.parent))
        os.replace(dst, old / dst.name)
    os.replace(new, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def temp_name_beside(path: Path, suffix: str = ".tmp") -> Path:
    """A new, unused name for a temporary file beside ``path`` (same file system, so os.replace is
    atomic). The caller holds the name *before* creating the file (:func:`create_new`) inside the ``try``
    that removes it: a Ctrl-C between creating a file and learning its name (as with mkstemp) would
    leave the file behind, and blocking signals cannot close that gap (any thread may take them)."""
    import secrets

    return path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}"


#: Temporary files this process created and has not put in place yet (see :func:`remove_leftover_temps`).
_OPEN_TEMPS: set[Path] = set()


def create_new(tmp: Path) -> int:
    """Create ``tmp`` (which must not exist) with the permissions a plain ``open(path, "w")`` would give
    and return its descriptor. The name is remembered until :func:`placed` says it was moved into place."""
    _OPEN_TEMPS.add(Path(tmp))
    return os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_umask())


def placed(tmp: Path) -> None:
    """``tmp`` was moved into place (os.replace): no longer a leftover."""
    _OPEN_TEMPS.discard(Path(tmp))


def remove_leftover_temps() -> None:
    """Remove the temporary files this process created and did not put in place. The command line calls it
    when a command ends, however it ends: an interrupted writer may leave (or re-create) its file after the
    writer's own cleanup ran, which once left an empty ``.partial`` beside the scores."""
    for tmp in list(_OPEN_TEMPS):
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        _OPEN_TEMPS.discard(tmp)


#: errno values of a full device, an exhausted quota and a file over the size limit.
_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# pyarrow raises a plain OSError whose text carries the errno: "... Detail: [errno 28] No space left on device"
_FULL_TEXT = re.compile(r"\[errno (%s)\]" % "|".join(str(e) for e in sorted(_FULL)), re.IGNORECASE)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the device, the quota or the file size limit is full."""
    return isinstance(exc, OSError) and (exc.errno in _FULL or bool(_FULL_TEXT.search(str(exc))))


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:,.0f} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"  # pragma: no cover


def disk_full(exc: OSError, path: str | Path, *, needed: float | None = None, at_least: bool = False) -> Exception:
    """The one-line error for ``exc`` (see :func:`is_disk_full`) while writing ``path``: the path, about
    how much it needed (when known) and how much is free there. The caller keeps the previous file."""
    from crmlab.errors import DiskFullError

    path = Path(path)
    folder = next((p for p in (path.parent, *path.parents) if p.exists()), Path("."))
    free = shutil.disk_usage(folder).free
    what = {errno.EDQUOT: "the disk quota is exhausted", errno.EFBIG: "the file is larger than the system allows"}.get(
        exc.errno or 0, "no space left on the device")
    need = f"needs {'more than' if at_least else 'about'} {_size(needed)}, " if needed else ""
    return DiskFullError(f"{what} writing {path} ({need}{_size(free)} free in {folder}); the previous file is "
                         "kept: free some space or write elsewhere")


def write_table_atomic(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as Parquet (``.parquet``) or CSV (anything else) so that readers see either the old
    file or the complete new one, never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name_beside(path)
    try:
        os.close(create_new(tmp))
        if path.suffix.lower() in (".parquet", ".pq"):
            df.to_parquet(tmp, index=False)
        else:
            df.to_csv(tmp, index=False)
        raise_if_stopped()
        os.replace(tmp, path)
        placed(tmp)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(exc, path, needed=float(df.memory_usage(index=False).sum())) from None
        raise
    return path


def write_json_atomic(data: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name_beside(path)
    try:
        with os.fdopen(create_new(tmp), "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
        raise_if_stopped()
        os.replace(tmp, path)
        placed(tmp)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(exc, path, needed=len(json.dumps(data, indent=2, default=str)) + 1) from None
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


def text_column(texts: list[str], pick: Any) -> pd.api.extensions.ExtensionArray:
    """``texts[pick]`` per row (None where ``pick < 0``) as the pandas ``str`` array a DataFrame would
    infer from those strings, built in one Arrow ``take`` from the few distinct ``texts``: no Python
    object per row (scoring labels millions of customers with a handful of tiers and reasons)."""
    import numpy as np
    import pyarrow as pa

    pick = np.asarray(pick, dtype=np.int64)
    taken = pa.array(texts, type=pa.large_string()).take(pa.array(pick, mask=pick < 0))
    return pd.arrays.ArrowStringArray(taken, dtype=pd.StringDtype("pyarrow", na_value=np.nan))
