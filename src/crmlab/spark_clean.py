"""Reading and cleaning the configured sources on Spark (``crmlab data clean --engine spark`` and
``crmlab score --engine spark`` without ``--clean-dir``), for a base beyond one machine.

Spark reads each table where it lives: CSV or Parquet paths (a file, a folder or a glob) with
``spark.read``, a PostgreSQL table or query in slices, each Spark task reading its slice through the
same ADBC driver as the pandas path (``... WHERE mod(abs(hashtext(<customer id>::text)), n) = i``; no
JDBC jar needed). The column mapping is applied as in :func:`crmlab.data.io.read_table`.

The customers are then split into buckets by a hash of their *normalised* id (case, spaces, leading
zeros: the key under which the cleaner merges similar ids, so they meet in one bucket), and every
bucket's transactions and customer rows go to one Python worker, which runs
:func:`crmlab.data.clean.clean_tables`, the very function of the pandas path. What that function
decides from a whole table is fixed on the driver first, from a sample of the rows
(``project.scoring.spark_sample_rows``), and said in the log: the day/month order of the date columns
(``cleaning.day_first``) and the earliest plausible date (``cleaning.min_date``, when not set). What
cannot be split by customer is refused or said: filling missing values with a median or mode (a
statistic of the whole table) is a ConfigError, and persons under several ids are merged by e-mail or
phone only within a bucket (a warning says so when the customer table has those columns).

The workers write their clean rows and rejects as Parquet parts (so the output folder must be on a
file system every worker sees: local disk in local mode, a shared or object store on a cluster); the
driver then moves the complete folder into place and writes ``cleaning_report.json`` with the summed
counts.
"""

from __future__ import annotations

import glob
import json
import logging
import shutil
import tempfile
import zlib
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab.config import CleaningConfig, CrmlabConfig, TableSource
from crmlab.data.io import SCHEMAS, Tables, detect_encoding, detect_sep, source_name
from crmlab.errors import ConfigError, DataError
from crmlab.utils import replace_folder

__all__ = ["clean_on_spark", "fixed_cleaning"]

log = logging.getLogger(__name__)

#: The tables cleaned on Spark, cogrouped by customer bucket.
SPARK_TABLES = ("transactions", "customers")
_ARROW_TO_SPARK = {"bool": "boolean", "int8": "bigint", "int16": "bigint", "int32": "bigint", "int64": "bigint",
                   "uint8": "bigint", "uint16": "bigint", "uint32": "bigint", "uint64": "bigint",
                   "float": "double", "double": "double", "halffloat": "double", "date32[day]": "date"}


# --------------------------------------------------------------------------- reading


def _pandas_na(frame: pd.DataFrame) -> pd.DataFrame:
    """Text cells that ``pandas.read_csv`` reads as missing ("NA", "NULL", "nan", ...) as missing here too,
    so that a CSV cleaned on Spark gives the rows and reasons the pandas path gives."""
    from pandas._libs.parsers import STR_NA_VALUES

    out = frame.copy()
    for col in out.columns:
        s = out[col]
        if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
            out[col] = s.astype(object).where(~s.isin(STR_NA_VALUES) & s.notna(), None)
    return out


def _spark_type(arrow_type: Any) -> str:
    import pyarrow as pa

    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    if pa.types.is_decimal(arrow_type):
        return "double"
    return _ARROW_TO_SPARK.get(str(arrow_type), "string")


def _slice_sql(source: TableSource, id_column: str, slices: int, i: int) -> str:
    base = (f"SELECT * FROM {'.'.join(chr(34) + p + chr(34) for p in str(source.table).split('.'))}"
            if source.table is not None else str(source.query))
    # a row without an id goes to the first slice (NULL would match no slice: the row would be lost)
    return (f'SELECT * FROM ({base}) AS crmlab_q WHERE coalesce(mod(abs(hashtext(crmlab_q."{id_column}"::text)), '
            f"{slices}), 0) = {i}")


def _read_database_slice(source: TableSource, kind: str, sql: str, password: str | None) -> pd.DataFrame:
    """One slice of a database source through the pandas path's reader (same types, same errors)."""
    from crmlab.data.io import read_database_sql

    return read_database_sql(source, kind, sql, allow_empty=True, password=password)


def _raw_frame(spark: Any, source: TableSource | None, kind: str, slices: int) -> Any:
    """The raw rows of one configured table as a Spark DataFrame with canonical column names."""
    from crmlab.data.io import check_mapping, load_cdnow

    schema = SCHEMAS[kind]
    if source is None or (source.path is None and source.uri is None):
        if kind != "transactions":
            return None
        return spark.createDataFrame(load_cdnow())
    name = source_name(source)
    mapping = dict(source.columns)
    if source.uri is not None:
        from crmlab.data.io import database_password

        id_column = mapping.get("customer_id", "customer_id")
        # the tasks' environment is not the driver's: they get the password here, as a JDBC read would
        password = database_password(source, kind)
        head = _read_database_slice(source, kind, f"SELECT * FROM ({_slice_sql(source, id_column, 1, 0)}) AS h LIMIT 1000",
                                    password)
        if head.empty:
            raise DataError("the database returned no rows", file=name,
                            expected=f"at least one {kind} row from project.data.{kind}."
                            + ("table" if source.table is not None else "query"))
        import pyarrow as pa

        arrow = pa.Schema.from_pandas(head, preserve_index=False)
        ddl = ", ".join(f"`{f.name}` {_spark_type(f.type)}" for f in arrow)
        columns = list(head.columns)

        def read(batches: Any) -> Any:
            for part in batches:
                for i in part["i"].tolist():
                    frame = _read_database_slice(source, kind, _slice_sql(source, id_column, slices, int(i)), password)
                    yield frame.reindex(columns=columns)

        df = spark.createDataFrame(pd.DataFrame({"i": np.arange(slices)})).repartition(slices, "i")
        df = df.mapInPandas(read, schema=ddl)
    else:
        path = str(source.path)
        fmt = source.format
        if fmt == "auto":
            fmt = "parquet" if Path(path).suffix.lower() in (".parquet", ".pq") or Path(path).is_dir() else "csv"
        if fmt == "parquet":
            df = spark.read.parquet(path)
        else:
            first = next((Path(p) for p in sorted(glob.glob(path)) if Path(p).is_file()), None) if any(
                c in path for c in "*?[") else Path(path)
            if first is None or not first.is_file():
                raise DataError("file not found", file=path, expected="an existing CSV file (or a glob of them)")
            encoding = source.encoding
            if encoding.lower() == "auto":
                encoding = detect_encoding(first) or "utf-8"
            sep = detect_sep(first, encoding)[0] if source.sep == "auto" else source.sep
            df = spark.read.csv(path, header=True, sep=sep, encoding=encoding, inferSchema=False, nullValue=None,
                                emptyValue=None, multiLine=True, escape='"')
    check_mapping(mapping, pd.DataFrame(columns=df.columns), kind=kind, file=name)  # names only: no Spark job
    missing = [canonical for canonical, col in mapping.items() if col not in df.columns]
    if missing:
        raise DataError(f"mapped column {mapping[missing[0]]!r} (for {missing[0]!r}) is not in the table", file=name,
                        column=mapping[missing[0]], expected=f"one of its columns {list(df.columns)}")
    for canonical, col in mapping.items():
        df = df.withColumnRenamed(col, canonical)
    for col in schema.required:
        if col not in df.columns:
            raise DataError(f"required column {col!r} is missing", file=name, column=col,
                            expected=f"the {kind} table to have columns {list(schema.required)} (map yours with "
                            f"project.data.{kind}.columns.{col}=<your column>); found {list(df.columns)}")
    return df


# --------------------------------------------------------------------------- decisions


def fixed_cleaning(cfg: CleaningConfig, sample: Tables, *, pii_columns: Any, today: date | None = None
                   ) -> tuple[CleaningConfig, list[str], Any]:
    """The cleaning settings for one bucket: what :func:`clean_tables` decides from a whole table fixed from
    ``sample`` (the day/month order, the earliest plausible date), with a note per decision, and the
    fills by a median or mode (statistics of the whole table) left to :func:`fill_on_spark`; and the
    sample's :class:`~crmlab.data.cleaning_report.CleanResult` (its clean tables give the output types)."""
    from crmlab.data.clean import clean_tables, derived_min_date
    from crmlab.data.parse import day_first_of

    result = clean_tables(sample, cfg, pii_columns=pii_columns, today=today)
    notes: list[str] = []
    updates: dict[str, Any] = {"missing": {k: (p.model_copy(update={"strategy": "keep"})
                                               if p.strategy in ("median", "mode") else p)
                                           for k, p in cfg.missing.items()}}
    if cfg.day_first == "auto":
        orders = {}
        for table, report in result.report.tables.items():
            for col, counts in report.date_formats.items():
                found = {day_first_of(f) for f, n in counts.items() if n} - {None}
                if len(found) == 1:
                    orders[f"{table}.{col}"] = found.pop()
        if len(set(orders.values())) > 1:
            raise ConfigError("the date columns " + ", ".join(f"{c} ({'day' if v else 'month'} first)"
                                                              for c, v in orders.items())
                              + " use different day/month orders, which Spark cannot fix with one "
                              "project.cleaning.day_first; clean on one machine (crmlab data clean)")
        if orders:
            updates["day_first"] = next(iter(orders.values()))
            notes.append(f"day/month order: {'day' if updates['day_first'] else 'month'} first, decided on the sample "
                         f"({', '.join(orders)}); set project.cleaning.day_first to choose")
    if cfg.min_date is None and result.tables.transactions is not None and len(result.tables.transactions):
        ts = result.tables.transactions["ts"]
        lower, _ = derived_min_date(ts, np.ones(len(ts), dtype=bool), None)
        if lower is not None:
            updates["min_date"] = lower
            notes.append(f"earliest plausible date {lower.isoformat()}, derived from the sample's transaction "
                         "dates; set project.cleaning.min_date to choose")
    return cfg.model_copy(update=updates), notes, result


def fill_on_spark(spark: Any, folder: Path, table: str, cfg: CleaningConfig) -> dict[str, dict[str, Any]]:
    """Fill the missing values of ``folder/table`` (a clean Parquet dataset) whose policy is a median or a
    mode, computed on the whole column by Spark as pandas computes it (the median of an even count is the
    mean of the middle two; the mode's ties go to the smallest value); returns what was filled."""
    from pyspark.sql import functions as F

    todo = {k.split(".", 1)[1]: p for k, p in cfg.missing.items()
            if k.startswith(f"{table}.") and p.strategy in ("median", "mode")}
    df = spark.read.parquet(str(folder / table))
    done: dict[str, dict[str, Any]] = {}
    fills = {}
    for col, policy in todo.items():
        if col not in df.columns:
            continue
        missing = df.where(F.col(col).isNull()).count()
        if not missing:
            continue
        present = df.where(F.col(col).isNotNull())
        if policy.strategy == "median":
            kind = dict(df.dtypes)[col]
            if kind not in ("double", "float", "int", "bigint", "smallint", "tinyint") and not kind.startswith("decimal"):
                raise ConfigError(f"project.cleaning.missing.{table}.{col}: strategy 'median' needs a numeric column, "
                                  f"but it holds {kind} values; use 'mode' or 'constant'")
            value = present.select(F.percentile(F.col(col).cast("double"), F.lit(0.5))).first()[0]
        else:
            row = present.groupBy(col).count().orderBy(F.desc("count"), F.asc(col)).first()
            value = None if row is None else row[0]
        if value is None:
            log.warning("%s: no values to compute the %s of %s from; left missing", table, policy.strategy, col)
            continue
        fills[col] = value
        done[col] = {"strategy": policy.strategy, "count": int(missing),
                     "value": float(value) if isinstance(value, (int, float)) else str(value)}
    if fills:
        filled = df.select(*[F.coalesce(F.col(c), F.lit(fills[c])).alias(c) if c in fills else F.col(c)
                             for c in df.columns])
        filled.write.parquet(str(folder / f"{table}.filled"))
        replace_folder(folder / f"{table}.filled", folder / table)
    return done


# --------------------------------------------------------------------------- cleaning


def bucket_of(ids: pd.Series, n: int) -> np.ndarray:
    """The bucket of each customer id: a stable hash of its normalised key (see :mod:`crmlab.data.persons`),
    so that ids the cleaner treats as one customer land in one bucket."""
    from crmlab.data.parse import as_text, nfkc
    from crmlab.data.persons import id_key

    keys = id_key(nfkc(as_text(ids.astype("string").fillna(""))).str.strip())
    return np.array([zlib.crc32(str(k).encode("utf-8")) % n for k in keys.tolist()], dtype=np.int64)


def clean_on_spark(cfg: CrmlabConfig, out_dir: str | Path, *, spark: Any | None = None, buckets: int | None = None,
                   today: date | None = None) -> dict[str, Any]:
    """Clean the configured transactions and customers on Spark into ``out_dir`` (Parquet datasets
    ``transactions/`` and ``customers/``, ``rejects_<table>/``, ``cleaning_report.json``); returns a
    summary (rows per table, rejects, the decisions taken on the driver)."""
    from crmlab.data.clean import clean_tables
    from crmlab.spark import session

    project = cfg.project
    spark = spark or session(project.scoring.spark_master)
    n = buckets or max(2, spark.sparkContext.defaultParallelism * 2)
    frames = {kind: _raw_frame(spark, getattr(project.data, kind), kind, n) for kind in SPARK_TABLES}
    frames = {k: v for k, v in frames.items() if v is not None}
    if "transactions" not in frames and "customers" not in frames:  # pragma: no cover - the demo log is the default
        raise DataError("no transactions or customers table configured", expected="project.data.transactions")
    size = project.scoring.spark_sample_rows
    sample = Tables(**{k: _pandas_na(v.limit(size).toPandas()) for k, v in frames.items()})
    pii = tuple(project.features.pii_columns)
    fixed, notes, sample_clean = fixed_cleaning(project.cleaning, sample, pii_columns=pii, today=today)
    for note in notes:
        log.info("spark cleaning: %s", note)
    cust = frames.get("customers")
    if fixed.dedupe_customers and cust is not None and any(c.lower() in fixed.match_on for c in cust.columns):
        log.warning("spark cleaning: persons under several customer ids are merged by %s only within a bucket; "
                    "clean on one machine (crmlab data clean) to merge them across the whole base",
                    " or ".join(fixed.match_on))
    schemas = {k: list(v.columns) for k, v in frames.items()}
    import pyarrow as pa

    arrow = {k: pa.Schema.from_pandas(getattr(sample_clean.tables, k), preserve_index=False) for k in frames}

    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    for k in frames:
        (tmp / k).mkdir()
        (tmp / f"rejects_{k}").mkdir()
    names = list(frames)

    def clean_bucket(*parts: pd.DataFrame) -> pd.DataFrame:
        import pyarrow.parquet as pq

        present = {k: p for k, p in zip(names, parts, strict=True)}
        b = next((int(p["_bucket"].iloc[0]) for p in present.values() if len(p)), None)
        if b is None:
            return pd.DataFrame({"report": pd.Series([], dtype="str")})
        raw = Tables(**{k: _pandas_na(p.drop(columns="_bucket")).reindex(columns=schemas[k]) if len(p) else None
                        for k, p in present.items()})
        result = clean_tables(raw, fixed, pii_columns=pii, today=today)
        for k in names:
            table = getattr(result.tables, k)
            if table is not None and len(table):
                pq.write_table(pa.Table.from_pandas(table, schema=arrow[k], preserve_index=False),
                               tmp / k / f"part-{b:05d}.parquet")
            rejects = result.rejects.get(k)
            if rejects is not None and len(rejects):
                rej = rejects.drop(columns="_row").astype({c: "string" for c in rejects.columns if c != "_row"})
                pq.write_table(pa.Table.from_pandas(rej, preserve_index=False), tmp / f"rejects_{k}" / f"part-{b:05d}.parquet")
        return pd.DataFrame({"report": [json.dumps(result.report.to_dict(), default=str)]})

    def with_bucket(frame: Any) -> Any:
        def add(batches: Any) -> Any:
            for part in batches:
                yield part.assign(_bucket=bucket_of(part["customer_id"], n))
        from pyspark.sql.types import LongType, StructField, StructType

        return frame.mapInPandas(add, schema=StructType([*frame.schema.fields, StructField("_bucket", LongType())]))

    try:
        bucketed = [with_bucket(frames[k]).groupBy("_bucket") for k in names]
        if len(bucketed) == 2:
            def both(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
                return clean_bucket(left, right)

            reports = bucketed[0].cogroup(bucketed[1]).applyInPandas(both, schema="report string").collect()
        else:
            def one(frame: pd.DataFrame) -> pd.DataFrame:
                return clean_bucket(frame)

            reports = bucketed[0].applyInPandas(one, schema="report string").collect()
        summary = _sum_reports([json.loads(r["report"]) for r in reports], names)
        for k in names:
            if any(True for _ in (tmp / k).glob("*.parquet")):
                summary["tables"][k]["imputed"] = fill_on_spark(spark, tmp, k, project.cleaning)
        summary["decisions"] = notes
        summary["buckets"] = n
        (tmp / "cleaning_report.json").write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
        replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("cleaned on Spark (%d buckets): %s", n, "; ".join(
        f"{k} {v['input_rows']:,} in, {v['clean_rows']:,} clean, {v['rejected_rows']:,} rejected"
        for k, v in summary["tables"].items()))
    return {**summary, "path": out}


def _sum_reports(reports: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """The buckets' cleaning reports added up per table (rows in, clean, rejected by reason, duplicates)."""
    tables: dict[str, dict[str, Any]] = {}
    for report in reports:
        for name, t in report.get("tables", {}).items():
            acc = tables.setdefault(name, {"input_rows": 0, "clean_rows": 0, "rejected_rows": 0,
                                           "exact_duplicates": 0, "rejected": {}})
            for key in ("input_rows", "clean_rows", "rejected_rows", "exact_duplicates"):
                acc[key] += int(t.get(key) or 0)
            for reason, count in (t.get("rejected") or {}).items():
                acc["rejected"][reason] = acc["rejected"].get(reason, 0) + int(count)
    return {"tables": {k: tables[k] for k in names if k in tables}}
