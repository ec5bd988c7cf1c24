"""Loading input tables (CSV, Parquet, the embedded CDNOW log) under crmlab's canonical names.

Loading only reads and renames: it checks that the file exists, is readable, is not empty and has
the required columns, and otherwise leaves values as they are (text stays text). Parsing dates and
amounts, and quarantining rows that cannot be parsed, is the job of :mod:`crmlab.data.clean`.

Encodings: a CSV whose table config says ``encoding: auto`` (the default) is read as UTF-8 when its
bytes are UTF-8 (a byte-order mark is dropped), else as GB18030 (the superset of GBK and GB2312 that
Chinese CRM exports use) when its bytes decode as such into no private-use characters, else with
the best guess of charset-normalizer; the choice is logged. A named encoding that does not decode
the file gives a :class:`~crmlab.errors.DataError` naming the encoding, the file, the config key and
the encoding the file looks like.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import io
import importlib.resources
import importlib.util
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from crmlab.config import DataConfig, TableSource
from crmlab.data.pii import redact_row
from crmlab.errors import ConfigError, DataError

__all__ = [
    "CDNOW_NAME",
    "SCHEMAS",
    "TableSchema",
    "Tables",
    "detect_encoding",
    "load_cdnow",
    "load_cdnow_sample_summary",
    "load_tables",
    "read_table",
    "source_name",
    "uses_demo_data",
]

log = logging.getLogger(__name__)

CDNOW_NAME = "CDNOW_master.txt (embedded, from the lifetimes wheel)"
# Bytes read to detect an encoding (a multi-GB export is not read twice).
_SAMPLE_BYTES = 4 << 20
# Private-use code points: bytes of another encoding (Big5, Shift-JIS...) read as GB18030 land here.
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")


@dataclass(frozen=True)
class TableSchema:
    kind: str
    required: tuple[str, ...]
    optional: tuple[str, ...]


SCHEMAS: dict[str, TableSchema] = {
    "transactions": TableSchema(
        "transactions",
        ("customer_id", "ts", "amount"),
        ("order_id", "quantity", "product_id", "category", "channel", "region"),
    ),
    "customers": TableSchema("customers", ("customer_id",), ("signup_date", "name", "email", "phone")),
    "interactions": TableSchema("interactions", ("customer_id", "ts", "kind"), ("value", "text")),
    "surveys": TableSchema("surveys", ("customer_id", "ts", "score"), ("comment", "kind")),
    # optional inputs of `crmlab kpis` only (not cleaned by crmlab.data.clean; read by crmlab.kpis)
    "marketing_spend": TableSchema("marketing_spend", ("period", "spend"), ("channel",)),
    "leads": TableSchema("leads", ("lead_id", "stage"), ("ts", "channel", "customer_id")),
    # optional input of the forecast pipeline (read and validated by crmlab.forecast.series)
    "sales": TableSchema("sales", ("period", "value"), ("series_id",)),
}


@dataclass
class Tables:
    """The input tables under canonical column names; ``sources`` names each table's file."""

    transactions: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    interactions: pd.DataFrame | None = None
    sources: dict[str, str] = field(default_factory=dict)
    surveys: pd.DataFrame | None = None

    def items(self) -> list[tuple[str, pd.DataFrame]]:
        return [(k, v) for k, v in (("transactions", self.transactions), ("customers", self.customers),
                                    ("interactions", self.interactions), ("surveys", self.surveys)) if v is not None]


def source_name(source: TableSource | None) -> str:
    """How a source is named in messages, logs and the data fingerprint: its file, or its database and
    table (a query by its hash), never a password (a URI cannot hold one, see TableSource)."""
    if source is None or (source.path is None and source.uri is None):
        return CDNOW_NAME
    if source.uri is not None:
        what = f"table {source.table}" if source.table is not None else (
            "query sha256:" + hashlib.sha256(str(source.query).encode()).hexdigest()[:12])
        return f"{source.uri} ({what})"
    return str(source.path)


def _read_database(source: TableSource, kind: str) -> pd.DataFrame:
    """The table or query of a PostgreSQL source (see :func:`read_database_sql`)."""
    name = source_name(source)
    if source.table is not None:
        parts = source.table.split(".")
        if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", p) for p in parts) or len(parts) > 2:
            raise DataError(f"table {source.table!r} is not a plain [schema.]table name", file=name,
                            expected=f"project.data.{kind}.table such as crm.orders, or a query")
        sql = "SELECT * FROM " + ".".join(f'"{p}"' for p in parts)
    else:
        sql = str(source.query)
    return read_database_sql(source, kind, sql)


def database_password(source: TableSource, kind: str) -> str | None:
    """The password a source's reads use: the variable named by ``password_env``, else PGPASSWORD, else
    None (libpq then looks in ``~/.pgpass``). Never logged; a Spark task gets it from the driver, as a
    JDBC read gets its password option, because a worker's environment is not the driver's."""
    if source.password_env is not None:
        if source.password_env not in os.environ:
            raise DataError(f"the environment variable {source.password_env} (project.data.{kind}.password_env) "
                            "is not set", file=source_name(source), expected="the database password in it")
        return os.environ[source.password_env]
    return os.environ.get("PGPASSWORD")


def read_database_sql(source: TableSource, kind: str, sql: str, *, allow_empty: bool = False,
                      password: str | None = None) -> pd.DataFrame:
    """The rows of ``sql`` on a PostgreSQL source, read through ADBC into Arrow and then pandas.

    Integers and floats stay numbers, ``numeric`` arrives as its text (the ADBC driver gives it an opaque
    text type) and is parsed by the cleaner as a CSV amount is, dates and timestamps become datetime64 (with a time
    zone: converted to UTC and made naive), everything else text; the cleaner treats these typed
    columns as it treats a Parquet file's. A password comes from PGPASSWORD, ``~/.pgpass`` or the
    variable named by ``password_env``; errors name the database and table, never the password. The
    Arrow batches become one table without a copy, and pandas frees each Arrow column as it converts it
    (``self_destruct``): the peak is about one copy of the table, not two."""

    import pyarrow as pa

    name = source_name(source)
    try:
        import adbc_driver_postgresql.dbapi as pg
    except ImportError:  # pragma: no cover - a dependency of crmlab
        raise DataError("reading from PostgreSQL needs the adbc-driver-postgresql package", file=name) from None
    env = dict(os.environ)
    secret = password if password is not None else database_password(source, kind)
    if secret is not None:
        env["PGPASSWORD"] = secret
    saved = os.environ.get("PGPASSWORD")
    try:
        if "PGPASSWORD" in env:
            os.environ["PGPASSWORD"] = env["PGPASSWORD"]
        with pg.connect(str(source.uri)) as conn, conn.cursor() as cur:
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            table = pa.Table.from_batches(list(reader), schema=reader.schema)
            del reader
    except Exception as exc:  # the driver's errors: OperationalError, ProgrammingError, ...
        raise database_error(exc, name, kind, source) from None
    finally:
        if saved is None:
            os.environ.pop("PGPASSWORD", None)
        else:
            os.environ["PGPASSWORD"] = saved
    if table.num_rows == 0 and not allow_empty:
        raise DataError("the database returned no rows", file=name,
                        expected=f"at least one {kind} row from project.data.{kind}."
                        + ("table" if source.table is not None else "query"))
    columns = []
    for field_, col in zip(table.schema, table.columns, strict=True):
        if isinstance(field_.type, pa.BaseExtensionType):  # numeric comes as an opaque text type: its text
            col = pa.chunked_array([chunk.storage for chunk in col.chunks], type=field_.type.storage_type)
        elif pa.types.is_decimal(field_.type):
            col = col.cast(pa.float64())
        elif pa.types.is_timestamp(field_.type) and field_.type.tz is not None:
            col = col.cast(pa.timestamp(field_.type.unit, tz="UTC")).cast(pa.timestamp(field_.type.unit))
        columns.append(col)
    names = table.column_names
    del table
    typed = pa.Table.from_arrays(columns, names=names)
    del columns
    df = typed.to_pandas(date_as_object=False, self_destruct=True, split_blocks=True)
    del typed
    log.info("%s: %s rows read from the database", name, f"{len(df):,}")
    return df


def database_error(exc: Exception, name: str, kind: str, source: TableSource) -> DataError:
    from crmlab.config import redact

    full = redact(" ".join(str(exc).split())) or type(exc).__name__
    # the server's or libpq's own words, without the driver's wrapping and the echoed query
    said = re.search(r"(?:ERROR|FATAL):\s*(.*?)(?:\s+LINE \d+:|\s+Query was:|\.?\s*SQLSTATE|$)", full)
    text = said.group(1) if said else re.sub(r"^[A-Z_]+: (\[libpq\] )?", "", full)
    low = full.lower()
    if kind == "scores":  # writing scores: not a configured source
        return DataError(f"cannot write the scores ({text[:300]})", file=name,
                         expected="a database the uri's user may create tables in (--out ...?table=schema.name)")
    if "password authentication failed" in low or "no password supplied" in low or "authentication" in low:
        return DataError("the database refused the login (password authentication failed)", file=name,
                         expected="the right user in the uri and its password in PGPASSWORD, ~/.pgpass or "
                         f"project.data.{kind}.password_env")
    if "does not exist" in low and ("relation" in low or "table" in low):
        return DataError(f"the table does not exist ({text[:200]})", file=name,
                         expected=f"project.data.{kind}.table naming an existing table or view")
    if "connection" in low or "could not connect" in low or "timeout" in low or "refused" in low:
        return DataError(f"cannot reach the database ({text[:300]})", file=name,
                         expected="a running PostgreSQL server at the uri's host and port")
    return DataError(f"the database refused the {'query' if source.query else 'read'} ({text[:300]})", file=name,
                     expected=f"project.data.{kind}." + ("query: a valid SELECT" if source.query else "table"))


def _datasets_dir():
    """The lifetimes wheel's datasets folder, found without importing lifetimes (whose fitters pull in
    autograd and scipy.stats: about a second of a newcomer's first ``crmlab demo``)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "datasets"
        if folder.is_dir():
            return folder
    return importlib.resources.files("lifetimes") / "datasets"


def load_cdnow() -> pd.DataFrame:
    """The full CDNOW transaction log shipped inside the lifetimes wheel (69,659 rows, 23,570 customers).

    Returns canonical, already typed columns: ``customer_id`` (text, as in the file), ``ts``
    (datetime64), ``quantity`` (number of CDs) and ``amount`` (dollars).
    """
    with (_datasets_dir() / "CDNOW_master.txt").open("rb") as fh:
        raw = pd.read_csv(
            fh,
            sep=r"\s+",
            header=0,
            names=["customer_id", "date", "quantity", "amount"],
            dtype={"customer_id": str, "date": str, "quantity": np.int64, "amount": np.float64},
            engine="c",
        )
    return pd.DataFrame(
        {
            "customer_id": raw["customer_id"],
            "ts": pd.to_datetime(raw["date"], format="%Y%m%d"),
            "amount": raw["amount"],
            "quantity": raw["quantity"],
        }
    )


def load_cdnow_sample_summary() -> pd.DataFrame:
    """The 2,357-customer CDNOW sample of Fader, Hardie and Lee (2005), as a summary per customer.

    Columns: ``customer_id``, ``frequency`` (x), ``recency`` (t_x, weeks), ``T`` (weeks),
    ``monetary_value`` (zbar, mean repeat spend). Calibration period: 39 weeks of 1997.
    """
    with (_datasets_dir() / "cdnow_customers_summary_with_transactions.csv").open("rb") as fh:
        raw = pd.read_csv(fh)
    return pd.DataFrame(
        {
            "customer_id": raw["ID"].astype(str),
            "frequency": raw["x"].astype(np.int64),
            "recency": raw["t_x"].astype(np.float64),
            "T": raw["T"].astype(np.float64),
            "monetary_value": raw["zbar"].astype(np.float64),
        }
    )


def _decodes(sample: bytes, encoding: str, *, final: bool) -> str | None:
    """The sample decoded strictly, or None; ``final=False`` tolerates a character cut at the end."""
    try:
        return codecs.getincrementaldecoder(encoding)(errors="strict").decode(sample, final=final)
    except UnicodeDecodeError:
        return None


def detect_encoding(path: str | Path) -> str | None:
    """The encoding of a text file: ``utf-8-sig``/``utf-16`` by byte-order mark, ``utf-8`` when the bytes
    are UTF-8, ``gb18030`` when they decode as GB18030 into no private-use character, else the best
    guess of charset-normalizer (None when it has none). Reads at most the first 4 MB."""
    with open(path, "rb") as fh:
        sample = fh.read(_SAMPLE_BYTES)
        whole = not fh.read(1)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if _decodes(sample, "utf-8", final=whole) is not None:
        return "utf-8"
    text = _decodes(sample, "gb18030", final=whole)
    if text is not None and not _PRIVATE_USE.search(text):
        return "gb18030"
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - a dependency of crmlab
        return None
    best = from_bytes(sample).best()
    return None if best is None else str(best.encoding)


def _decode_error(path: Path, kind: str, encoding: str, exc: UnicodeDecodeError, *, detected: bool) -> DataError:
    name = str(path)
    where = f"byte 0x{exc.object[exc.start]:02x} at position {exc.start}" if exc.object else exc.reason
    key = f"project.data.{kind}.encoding"
    likely = detect_encoding(path)
    if detected:
        problem = f"cannot decode the file as {encoding!r}, the encoding detected from its start ({where})"
        hint = f"{key} set to the file's encoding (e.g. gb18030, gbk, big5, cp1252)"
    else:
        problem = f"cannot decode the file with encoding {encoding!r} from {key} ({where})"
        hint = (f"{key}: {likely} (the file looks like {likely}), or {key}: auto to detect it"
                if likely and codecs.lookup(likely).name != codecs.lookup(encoding).name
                else f"{key} set to the file's encoding, or auto to detect it")
    return DataError(problem, file=name, expected=hint)


#: Separators :func:`detect_sep` chooses among, with the names it gives them.
SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}


def detect_sep(path: str | Path, encoding: str) -> tuple[str, str]:
    """(separator, reason) of a CSV from its first 64 KB: among ``, ; tab |`` the one that splits the
    header into the most fields (at least two) with at least 90% of the next lines (up to 50) split
    into as many, quotes respected; a comma when none does (a one-column file, say)."""
    with open(path, "rb") as fh:
        sample = fh.read(1 << 16)
        whole = not fh.read(1)
    lines = sample.decode(encoding, errors="ignore").lstrip("\ufeff").splitlines()
    if not whole and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut by the 64 KB window
    head = "\n".join(lines[:51])
    best, width = ",", 1
    for sep in SEPARATORS:
        widths = [len(row) for row in csv.reader(io.StringIO(head), delimiter=sep) if row]
        if not widths or widths[0] <= width:
            continue
        rest = widths[1:]
        if not rest or sum(w == widths[0] for w in rest) >= 0.9 * len(rest):
            best, width = sep, widths[0]
    if width == 1:
        return ",", "no separator found in the header; read as comma-separated"
    return best, f"{SEPARATORS[best]}-separated header of {width} columns"


def looks_separated(columns: list[str], sep: str) -> str | None:
    """A separator the header seems to use instead of ``sep``: a single column whose name holds it."""
    if len(columns) != 1:
        return None
    return next((c for c in SEPARATORS if c != sep and c in str(columns[0])), None)


def _read_file(path: Path, source: TableSource, kind: str = "table") -> pd.DataFrame:
    if not path.exists():
        raise DataError("file not found", file=str(path), expected="an existing CSV or Parquet file")
    if path.is_dir():
        raise DataError("is a directory", file=str(path), expected="a CSV or Parquet file")
    if not path.is_file():
        # /dev/zero, a named pipe or a socket: endless or unrepeatable, never a table to clean
        raise DataError("is not a regular file (a device, pipe or socket)", file=str(path),
                        expected="a CSV or Parquet file on disk; copy a stream to a file first")
    fmt = source.format
    if fmt == "auto":
        fmt = "parquet" if path.suffix.lower() in (".parquet", ".pq") else "csv"
    encoding = source.encoding
    detected = fmt == "csv" and encoding.lower() == "auto"
    if detected:
        encoding = detect_encoding(path) or "utf-8"
        if encoding not in ("utf-8", "utf-8-sig"):
            log.info("%s: read as %s (detected; set project.data.%s.encoding to choose)", path, encoding, kind)
    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        sep = source.sep
        if sep == "auto":
            sep, why = detect_sep(path, encoding)
            if sep != ",":
                log.info("%s: read as %s (set project.data.%s.sep to choose)", path, why, kind)
        # Text columns stay text: cleaning parses them and quarantines what does not parse.
        df = pd.read_csv(path, sep=sep, encoding=encoding, dtype=str, keep_default_na=True)
        df.attrs["sep"] = sep
        if not isinstance(df.index, pd.RangeIndex):
            # pandas takes the leading fields as an index when every row has more fields than the header
            other = looks_separated([str(c) for c in df.columns], sep)
            if other:
                raise DataError(f"the header looks {SEPARATORS[other]}-separated, not {sep!r}", file=str(path),
                                expected=f"project.data.{kind}.sep: {other!r} (or auto to detect it)")
            raise DataError(f"the rows have more fields than the header ({df.shape[1]} names)", file=str(path),
                            expected=f"one field per header name; quote values holding the separator {sep!r} "
                            f"(e.g. \"1,234.50\") or set project.data.{kind}.sep")
        df.attrs["encoding"] = encoding
        return df
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", file=str(path), expected="a header row and at least one data row") from None
    except UnicodeDecodeError as exc:
        raise _decode_error(path, kind, encoding, exc, detected=detected) from None
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r}", file=str(path),
                        expected=f"project.data.{kind}.encoding to name a text encoding such as utf-8 or gb18030, "
                        "or auto") from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        expected = f"a readable {fmt} file"
        if "fields in line" in msg:
            expected += (f" with values holding the separator {source.sep!r} quoted (e.g. \"1,234.50\"), or "
                         f"project.data.{kind}.sep set to the file's separator")
        raise DataError(f"cannot read the file ({msg})", file=str(path), expected=expected) from None


def check_mapping(mapping: dict[str, str], df: pd.DataFrame, *, kind: str, file: str) -> None:
    """Refuse a mapping that would leave two columns with one name (a table cannot tell them apart)."""
    key = f"project.data.{kind}.columns"
    by_file: dict[str, list[str]] = {}
    for canonical, col in mapping.items():
        by_file.setdefault(col, []).append(canonical)
    twice = {col: names for col, names in by_file.items() if len(names) > 1}
    if twice:
        col, names = next(iter(twice.items()))
        raise DataError(f"the column mapping {key} maps {', '.join(map(repr, names))} to the same file column {col!r}",
                        file=file, column=col, expected="each file column mapped to at most one canonical name")
    renamed = set(mapping.values())
    for canonical, col in mapping.items():
        if canonical != col and canonical in df.columns and canonical not in renamed:
            raise DataError(
                f"the column mapping {key}.{canonical}={col!r} collides with the file's own column {canonical!r}",
                file=file, column=canonical,
                expected=f"one column named {canonical!r}: rename or drop the file's {canonical!r} column, or map "
                f"{canonical} to {canonical!r} instead of {col!r}",
            )
    dup = [str(c) for c in df.columns[df.columns.duplicated()]]
    if dup:
        raise DataError(f"the file has several columns named {dup[0]!r}", file=file, column=dup[0],
                        expected="unique column names")


def read_table(source: TableSource, kind: str) -> pd.DataFrame:
    """Read one table and rename its columns to canonical names.

    A transactions source without a path gives the embedded CDNOW log.
    Raises :class:`DataError` naming the file and column when the file is missing, unreadable,
    empty, or lacks a required column.
    """
    schema = SCHEMAS[kind]
    if source.path is None and source.uri is None:
        if kind != "transactions":
            raise DataError(f"no file configured for the {kind} table", expected="project.data.<table>.path")
        df = load_cdnow()
        df.attrs["source"] = CDNOW_NAME
        return df

    if source.uri is not None:
        name = source_name(source)
        df = _read_database(source, kind)
    else:
        path = Path(source.path)
        name = str(path)
        df = _read_file(path, source, kind)
    # mapping: canonical -> file column. Refuse a mapping whose file column does not exist.
    mapping = dict(source.columns)
    unknown = [c for c in mapping if c not in schema.required + schema.optional and kind != "customers"]
    if unknown:
        raise DataError(
            f"unknown canonical column(s) {unknown} in the column mapping",
            file=name,
            expected=f"keys among {list(schema.required + schema.optional)}",
        )
    personal = ["name", "email", "phone", *(mapping[k] for k in ("name", "email", "phone") if k in mapping)]
    first = redact_row(df.iloc[0].to_dict(), personal) if len(df) else None
    for canonical, col in mapping.items():
        if col not in df.columns:
            raise DataError(
                f"mapped column {col!r} (for {canonical!r}) is not in the file",
                file=name,
                column=col,
                expected=f"one of the file's columns {list(df.columns)}",
                example=first,
            )
    check_mapping(mapping, df, kind=kind, file=name)
    rename = {col: canonical for canonical, col in mapping.items()}
    df = df.rename(columns=rename)
    dup = [str(c) for c in df.columns[df.columns.duplicated()]]
    if dup:
        raise DataError(f"two columns are named {dup[0]!r} after the column mapping project.data.{kind}.columns",
                        file=name, column=dup[0], expected="unique column names after mapping")
    for col in schema.required:
        if col not in df.columns:
            other = looks_separated(list(df.columns), df.attrs.get("sep", source.sep))
            hint = (f"the header looks {SEPARATORS[other]}-separated: set project.data.{kind}.sep: {other!r} "
                    "(or auto to detect it); " if other else "")
            raise DataError(
                f"required column {col!r} is missing",
                file=name,
                column=col,
                expected=f"{hint}the {kind} table to have columns {list(schema.required)} "
                f"(map yours with project.data.{kind}.columns.{col}=<your column>); found {list(df.columns)}",
                example=first,
            )
    if len(df) == 0:
        raise DataError("the table has a header but no rows", file=name, expected=f"at least one {kind} row")
    df.attrs["source"] = name
    return df


_demo_announced = False

#: Tables of a project's own (besides transactions); naming any of them means the demo data is off.
_OWN_TABLES = ("customers", "interactions", "sales", "marketing_spend", "leads", "surveys")


def uses_demo_data(data: DataConfig) -> bool:
    """True when the embedded CDNOW demo log is the data: no table of the user's own is configured.

    Raises :class:`ConfigError` when a transactions source without a path (the demo log) is configured
    next to a table of the user's own: the demo data is never mixed with theirs."""
    own = {name: getattr(data, name) for name in _OWN_TABLES if getattr(data, name) is not None}
    tx = data.transactions
    if tx is not None and (tx.path is not None or tx.uri is not None):
        return False
    if tx is None:
        # unset: the demo when nothing else is configured; an explicit null: no transactions
        return not own and "transactions" not in data.model_fields_set
    if not own:
        return True
    first, src = next(iter(own.items()))
    raise ConfigError(
        f"project.data.transactions has no path, which means the embedded CDNOW demo log, but your own "
        f"project.data.{first} ({src.path}) is configured: the demo data is never mixed with yours; set "
        "project.data.transactions.path to your transaction file, or project.data.transactions: null if you "
        "have none (e.g. a contract table with a churn label)"
    )


def load_tables(data: DataConfig) -> Tables:
    """Read every configured table.

    With no table configured at all, the transactions are the embedded CDNOW demo log, and a
    warning says so on every run; once any table of the user's own is configured, the demo data
    is never loaded (a transactions source without a path next to it is a :class:`ConfigError`)."""
    tables = Tables()
    if uses_demo_data(data):
        global _demo_announced
        # once per process (a job such as `crmlab demo` loads the data once per step)
        log.log(logging.DEBUG if _demo_announced else logging.WARNING,
                "no data configured: using the CDNOW demo log; see crmlab init")
        _demo_announced = True
        df = load_cdnow()
        df.attrs["source"] = CDNOW_NAME
        tables.transactions = df
        tables.sources["transactions"] = CDNOW_NAME
        return tables
    if data.transactions is not None:
        tables.transactions = read_table(data.transactions, "transactions")
        tables.sources["transactions"] = tables.transactions.attrs["source"]
    elif data.customers is None:
        configured = [name for name in _OWN_TABLES if getattr(data, name) is not None]
        raise DataError(
            "no input tables configured: no transactions or customers table"
            + (f" (only {', '.join(configured)})" if configured else ""),
            expected="project.data.transactions.path or project.data.customers.path",
        )
    if data.customers is not None:
        tables.customers = read_table(data.customers, "customers")
        tables.sources["customers"] = source_name(data.customers)
    if data.interactions is not None:
        tables.interactions = read_table(data.interactions, "interactions")
        tables.sources["interactions"] = source_name(data.interactions)
    if data.surveys is not None:
        tables.surveys = read_table(data.surveys, "surveys")
        tables.sources["surveys"] = source_name(data.surveys)
    return tables
