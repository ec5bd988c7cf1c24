"""Batch scoring of the whole customer base: one row per customer, every customer model.

``crmlab score --as-of DATE --out scores.parquet`` and :func:`score_customers` do the same thing:

1. load and clean the configured tables (:func:`crmlab.workflow.prepare_data`);
2. load each customer model's bundle, from the MLflow registry's ``champion`` or from
   ``models/<pipeline>/`` (``project.scoring.source``: ``auto``, the default, takes the champion when
   tracking is on and the registry has one, so that a challenger a retraining job did not promote
   never scores, and says per pipeline which it took); a model that was never trained is left out with a
   warning naming it, unless it was asked for by name; a model that was trained and cannot be loaded
   (a bundle file edited or missing since export) stops the run with an error naming the file, and
   the previous output stays: scoring without it would silently drop its columns;
3. split the customers into chunks of about ``project.scoring.chunk_size`` customers, each a
   contiguous range of sorted ids with all the rows of its customers, and for each chunk build the
   shared features at ``as_of`` and call every model's scoring function (the same functions the
   MLflow pyfuncs call);
4. write the chunks one after another to a temporary file beside the target and move it into place
   when complete: a killed run leaves the previous file intact, never half a file.

The output is sorted by ``customer_id`` and the same for the same inputs and models, whatever the
chunk size (tested), so running it twice gives the same file.

Columns: ``customer_id``, ``as_of``, then each model's columns (churn: ``churn_probability``,
``risk_tier``, ``reason_1..3``; clv: ``p_alive``, ``expected_purchases``, ``expected_spend``, ``clv``,
``clv_low``, ``clv_high``;
segmentation: ``segment_id``, ``segment_name``, ...; crosssell: ``next_product_1..k``,
``next_product_score_1..k``) and ``<pipeline>_model_version`` naming the bundle
(its hash, or ``registry:<version>``); then, with ``lifecycle.in_scores`` and a transaction log, the
lifecycle stage and the inputs that decided it (:mod:`crmlab.lifecycle`): ``lifecycle_stage``,
``lifecycle_overdue``, ``lifecycle_spend_trend``, ``lifecycle_usual_gap_days`` (empty for a customer
without a purchase). The base's typical gap is computed once on the whole log, so the stages do not
depend on the chunks; P(alive) is the CLV model's of the same run when it scores.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from crmlab.config import CrmlabConfig
from crmlab.data.io import Tables
from crmlab.errors import ConfigError, ModelError
from crmlab.export import Bundle, load_bundle
from crmlab.features import build_features_from_tables
from crmlab.features.past import Past, past_transactions
from crmlab.features.frames import day_number
from crmlab.pipelines import customer_models
from crmlab.pipelines import get as pipeline_record
from crmlab.pyfunc import get_scorer
from crmlab.utils import create_new, disk_full, is_disk_full, placed, raise_if_stopped, temp_name_beside

__all__ = ["CUSTOMER_MODELS", "LIFECYCLE_COLUMNS", "LoadedModel", "NotTrained", "iter_score_chunks", "load_models", "open_models",
           "score_customers", "write_scores"]

log = logging.getLogger(__name__)

#: Pipelines with one score per customer (forecast predicts sales per period, not per customer), from
#: the pipeline records.
CUSTOMER_MODELS: tuple[str, ...] = customer_models()

Progress = Callable[[float, float], None]  # (share of the rows done, 1.0)


@dataclass(frozen=True)
class LoadedModel:
    pipeline: str
    bundle: Bundle
    version: str
    source: str


class NotTrained(ModelError):
    """The pipeline was never trained: no bundle in ``models/<pipeline>/``, no champion in the registry."""


def _never_trained(path: Path) -> bool:
    """No bundle folder, or an empty one: nothing was ever exported there. A folder holding anything
    (even without its manifest) is a bundle that was trained and is now broken."""
    return not path.exists() or (path.is_dir() and not any(path.iterdir()))


def _resolve_source(cfg: CrmlabConfig, pipeline: str) -> str:
    """``auto``'s choice for one pipeline: ``registry`` when tracking is on, its store exists and
    holds a champion of the pipeline, else ``models``."""
    from crmlab.registry import get_champion
    from crmlab.tracking import open_store, store_exists

    tracking = cfg.project.tracking
    if not tracking.enabled or not store_exists(tracking.uri):
        return "models"
    open_store(tracking.uri)
    return "registry" if get_champion(tracking, pipeline) is not None else "models"


def _load_one(cfg: CrmlabConfig, pipeline: str, source: str, workdir: Path | None) -> LoadedModel:
    """One model's bundle; :class:`NotTrained` when there is none, :class:`ModelError` when there is
    one and it cannot be loaded. ``source="auto"`` takes the registry's champion when there is one."""
    if source == "auto":
        source = _resolve_source(cfg, pipeline)
        where = ("the registry's champion" if source == "registry"
                 else f"{Path(cfg.project.output.models_dir) / pipeline} (no champion in the registry)"
                 if cfg.project.tracking.enabled else f"{Path(cfg.project.output.models_dir) / pipeline}")
        log.info("scoring %s with %s (project.scoring.source: auto)", pipeline, where)
    if source == "registry":
        from crmlab.registry import champion_bundle, get_champion, model_name

        info = get_champion(cfg.project.tracking, pipeline)
        if info is None:
            raise NotTrained(f"{model_name(pipeline)} has no champion in the registry at {cfg.project.tracking.uri}; "
                             f"run `crmlab train {pipeline}` (or `crmlab promote {pipeline} VERSION`)")
        assert workdir is not None
        path, info = champion_bundle(cfg.project.tracking, pipeline, workdir / pipeline)
        bundle = load_bundle(path, pipeline=pipeline)
        return LoadedModel(pipeline, bundle, f"registry:{info.version}", f"models:/{info.name}@champion")
    path = Path(cfg.project.output.models_dir) / pipeline
    if _never_trained(path):
        raise NotTrained(f"{path}: no model bundle here; run `crmlab train {pipeline}` first")
    bundle = load_bundle(path, pipeline=pipeline)
    return LoadedModel(pipeline, bundle, str(bundle.manifest.get("bundle_hash", "")), str(path))


def load_models(cfg: CrmlabConfig, *, pipelines: Sequence[str] | None = None, source: str | None = None,
                workdir: str | Path | None = None) -> dict[str, LoadedModel]:
    """The bundles to score with. ``pipelines=None``: every customer model that has been trained;
    one that was never trained (no bundle, no champion) is skipped with a warning naming it, but a
    bundle that exists and cannot be loaded (a file edited or missing since export, a failed
    download) is a :class:`~crmlab.errors.ModelError`: scoring without it would silently drop its
    columns. Named pipelines must all be there.

    ``workdir``: where champions from the registry are downloaded (the caller removes it; prefer
    :func:`open_models`, which does). Without one, a temporary folder is made and removed when
    loading fails or when the process exits."""
    source = source or cfg.project.scoring.source
    if source in ("registry", "auto") and workdir is None:
        tmp = Path(tempfile.mkdtemp(prefix="crmlab-champions-"))
        try:
            models = load_models(cfg, pipelines=pipelines, source=source, workdir=tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        atexit.register(shutil.rmtree, tmp, True)
        return models
    scoring = cfg.project.scoring
    asked = list(pipelines) if pipelines else list(scoring.pipelines)
    unknown = [p for p in asked if p not in CUSTOMER_MODELS]
    if unknown:
        raise ConfigError(f"cannot score customers with {unknown}: choose from {list(CUSTOMER_MODELS)}")
    strict = pipelines is not None
    models: dict[str, LoadedModel] = {}
    for pipeline in asked:
        try:
            models[pipeline] = _load_one(cfg, pipeline, source, Path(workdir) if workdir is not None else None)
        except NotTrained as exc:
            if strict:
                raise ModelError(str(exc)) from None
            log.warning("not scoring %s: never trained (%s)", pipeline, exc)
        except ModelError as exc:
            raise ModelError(f"cannot score with the {pipeline} model: {exc}") from None
    if not models:
        raise ModelError(
            f"no trained customer model to score with (looked in {source}: "
            + {"models": f"{cfg.project.output.models_dir}/<pipeline>", "registry": "the registry's champions"}.get(
                source, f"the registry's champions and {cfg.project.output.models_dir}/<pipeline>")
            + "); run `crmlab train all` first"
        )
    return models


@contextmanager
def open_models(cfg: CrmlabConfig, *, pipelines: Sequence[str] | None = None,
                source: str | None = None) -> Iterator[dict[str, LoadedModel]]:
    """:func:`load_models` for the length of a ``with`` block: champions downloaded from the
    registry go to a temporary folder that is removed when the block ends, however it ends."""
    source = source or cfg.project.scoring.source
    if source == "models":
        yield load_models(cfg, pipelines=pipelines, source=source)
        return
    with tempfile.TemporaryDirectory(prefix="crmlab-champions-") as tmp:
        yield load_models(cfg, pipelines=pipelines, source=source, workdir=tmp)


#: Customers whose id hashes to 0 modulo this are the sample that places the chunk boundaries.
_SAMPLE_EVERY = 32


def _chunk_bounds(ids: pl.Series, chunk_size: int) -> pl.Series:
    """Ids that cut the sorted id space into ranges of about ``chunk_size`` customers each, placed
    from a sample of customers (ids hashing to 0 modulo :data:`_SAMPLE_EVERY`) so that no sort
    of every id is needed. Each chunk is a contiguous range of ids and is scored sorted, so the
    output is sorted by id whatever the boundaries are."""
    sample = ids.filter(ids.hash(seed=0) % _SAMPLE_EVERY == 0).unique().sort()
    step = max(1, chunk_size // _SAMPLE_EVERY)
    return sample.gather(list(range(step, len(sample), step)))


def _chunks(tables: Tables, chunk_size: int) -> Iterator[tuple[Tables, int]]:
    """Split the tables into chunks of about ``chunk_size`` customers, each a contiguous range of
    sorted ids with every row of its customers; yields the chunk's tables and its share of the
    rows (for the progress bar). Small bases are one chunk."""
    frames = {name: df for name, df in tables.items()}
    if sum(len(df) for df in frames.values()) <= chunk_size:
        yield tables, 1.0
        return
    ids = {name: pl.from_pandas(df["customer_id"].astype("string").reset_index(drop=True))
           for name, df in frames.items()}
    bounds = _chunk_bounds(pl.concat(list(ids.values())).drop_nulls(), chunk_size)
    n_chunks = len(bounds) + 1
    orders: dict[str, np.ndarray | None] = {}
    cuts = {}
    for name, s in ids.items():
        # chunk of each row: how many boundaries are <= its id (rows without an id: no chunk)
        bucket = bounds.search_sorted(s.fill_null(""), side="right").to_numpy().astype(np.int64)
        bucket[s.is_null().to_numpy()] = n_chunks
        if np.all(bucket[1:] >= bucket[:-1]):  # rows already in chunk order (a log grouped by sorted id): slices
            orders[name] = None
            cuts[name] = np.searchsorted(bucket, np.arange(n_chunks + 1))
        else:
            order = np.argsort(bucket, kind="stable")
            orders[name] = order
            cuts[name] = np.searchsorted(bucket[order], np.arange(n_chunks + 1))
    total = sum(len(df) for df in frames.values())
    for i in range(n_chunks):
        parts = {name: frames[name].iloc[cuts[name][i]:cuts[name][i + 1]] if orders[name] is None
                 else frames[name].iloc[orders[name][cuts[name][i]:cuts[name][i + 1]]] for name in frames}
        share = sum(len(df) for df in parts.values()) / total
        yield (Tables(transactions=parts.get("transactions"), customers=parts.get("customers"),
                      interactions=parts.get("interactions"), surveys=parts.get("surveys"),
                      sources=dict(tables.sources)), share)


def _category_levels(tables: Tables) -> dict[str, list[str]]:
    """Text attributes become categoricals whose levels would differ from chunk to chunk; fix them
    from the whole customer table so every chunk (and every run) encodes them alike."""
    if tables.customers is None:
        return {}
    levels = {}
    for col in tables.customers.columns:
        s = tables.customers[col]
        if col != "customer_id" and (isinstance(s.dtype, (pd.CategoricalDtype, pd.StringDtype)) or s.dtype == object):
            levels[col] = sorted(map(str, s.dropna().unique()))
    return levels


def iter_score_chunks(tables: Tables, cfg: CrmlabConfig, models: dict[str, LoadedModel], *, as_of: date,
                      chunk_size: int | None = None, progress: Progress | None = None,
                      levels: dict[str, list[str]] | None = None,
                      typical_gap: float | None = None) -> Iterator[pd.DataFrame]:
    """Score the customers chunk by chunk (see the module doc); yields one frame per chunk. ``levels``
    and ``typical_gap`` (the lifecycle stages' typical gap between purchases): those of the whole base,
    when ``tables`` holds only part of it (Spark)."""
    chunk_size = chunk_size or cfg.project.scoring.chunk_size
    levels = _category_levels(tables) if levels is None else levels
    lifecycle = _lifecycle_settings(cfg, tables, models, as_of, typical_gap)

    def score(part: Tables) -> pd.DataFrame:
        return _score_part(part, cfg, models, as_of=as_of, levels=levels, lifecycle=lifecycle)

    # two chunks at a time: NumPy, polars, LightGBM, the compiled reason walk and the Parquet writer
    # release the GIL, so one chunk's Python-bound steps run while the other computes (results and their
    # order unchanged; imports and the compiled code's cache load are thread-safe)
    pending: deque[tuple[Any, float]] = deque()
    done = 0.0

    def finished(keep: int) -> Iterator[pd.DataFrame]:
        """The oldest chunks' scores, in order, until ``keep`` chunks are left in flight."""
        nonlocal done
        while len(pending) > keep:
            future, share = pending.popleft()
            out = future.result()
            done += share
            if progress is not None:
                progress(done, 1.0)
            if not out.empty:
                yield out

    pool = ThreadPoolExecutor(max_workers=_IN_FLIGHT, thread_name_prefix="crmlab-score")
    try:
        for part, share in _chunks(tables, chunk_size):
            pending.append((pool.submit(score, part), share))
            yield from finished(_IN_FLIGHT - 1)
        yield from finished(0)
    finally:  # stopped (Ctrl-C, an error, the consumer closed us): the queued chunk is dropped, the running one ends
        pool.shutdown(wait=True, cancel_futures=True)


#: Chunks scored at once (module doc): two, for the two cores crmlab is sized for; each holds a chunk's
#: features and scores in memory.
_IN_FLIGHT = 2


def _score_part(part: Tables, cfg: CrmlabConfig, models: dict[str, LoadedModel], *, as_of: date,
                levels: dict[str, list[str]], lifecycle: float | None) -> pd.DataFrame:
    """One chunk's scores: its features, every model's columns, the lifecycle columns."""
    # the chunk's past rows in (customer, day) order, made once for the features and the lifecycle stages
    tx = part.transactions
    past = past_transactions(tx, day_number(as_of)) if tx is not None and lifecycle is not None else None
    feats = build_features_from_tables(part, as_of=as_of, cfg=cfg.project, past=past)
    for col, cats in levels.items():
        if col in feats.columns and isinstance(feats[col].dtype, pd.CategoricalDtype):
            feats[col] = pd.Categorical(feats[col].astype("string"), categories=cats)
    ids = feats["customer_id"].reset_index(drop=True)
    out = pd.DataFrame({"customer_id": ids,
                        "as_of": np.full(len(feats), np.datetime64(pd.Timestamp(as_of).date(), "ms"))})
    for pipeline, model in models.items():
        if feats.empty:
            break
        record = pipeline_record(pipeline)
        inputs = feats if record.score_inputs is None else record.load("score_inputs")(
            feats, part, model.bundle, as_of=as_of)
        scores = get_scorer(pipeline)(inputs, model.bundle)
        if not scores["customer_id"].reset_index(drop=True).equals(ids):  # scorers keep the row order
            scores = out[["customer_id"]].merge(scores, on="customer_id", how="left", validate="1:1")
        for col in scores.columns:
            if col != "customer_id":
                out[col] = _column_values(scores[col])
        out[f"{pipeline}_model_version"] = model.version
    if lifecycle is not None and not out.empty:
        _add_lifecycle(out, part, cfg, as_of=as_of, typical_gap=lifecycle, past=past)
    return out


def _column_values(s: pd.Series) -> Any:
    """A score column's values to put into the output frame, as ``s.to_numpy()`` would give them once
    the frame has inferred their type: text columns keep their string array (no round trip through
    Python objects, which pandas would convert back), numbers their NumPy array."""
    if isinstance(s.dtype, pd.StringDtype):
        return s.array
    return s.to_numpy()


#: Columns of the lifecycle stage table that go into the scores, and their names there.
LIFECYCLE_COLUMNS = {"lifecycle_stage": "lifecycle_stage", "overdue": "lifecycle_overdue",
                     "spend_trend": "lifecycle_spend_trend", "usual_gap_days": "lifecycle_usual_gap_days"}


def _lifecycle_settings(cfg: CrmlabConfig, tables: Tables, models: dict[str, LoadedModel], as_of: date,
                        given: float | None = None) -> float | None:
    """The base's typical gap for the lifecycle columns (computed once, on every chunk's rows, unless
    ``given``), or None when no lifecycle columns are wanted or possible (no transactions)."""
    lc = cfg.lifecycle
    tx = tables.transactions
    if not lc.in_scores or tx is None:
        return None
    if given is not None:
        return given
    if tx.empty:
        return None
    if lc.use_p_alive is True and "clv" not in models:
        raise ConfigError("lifecycle.use_p_alive=true needs the CLV model among the scored models (P(alive)); "
                          "train it or set lifecycle.use_p_alive to auto or false")
    if lc.typical_gap_days != "auto":
        return float(lc.typical_gap_days)
    from crmlab.lifecycle import typical_gap_days

    gap = typical_gap_days(tx, as_of=as_of)
    if not np.isfinite(gap) or gap <= 0:
        log.warning("no lifecycle columns: no repeat customer on or before %s to derive the typical gap from "
                    "(set lifecycle.typical_gap_days)", as_of)
        return None
    return gap


def _add_lifecycle(out: pd.DataFrame, part: Tables, cfg: CrmlabConfig, *, as_of: date, typical_gap: float,
                   past: Past | None = None) -> None:
    """The lifecycle columns of one chunk's customers, in ``out``'s row order. ``past``: the chunk's
    past rows when the features already put them in order (not done twice)."""
    from crmlab.lifecycle import lifecycle_stages

    tx = part.transactions
    ids = out["customer_id"].astype(str).reset_index(drop=True)
    p_alive = None
    if "p_alive" in out.columns and cfg.lifecycle.use_p_alive is not False:
        p_alive = pd.Series(out["p_alive"].to_numpy(dtype=np.float64), index=pd.Index(ids))
    if tx is None or tx.empty:
        stages = pd.DataFrame(columns=["customer_id", *LIFECYCLE_COLUMNS])
    else:
        stages = lifecycle_stages(tx, as_of=as_of, cfg=cfg.lifecycle, p_alive=p_alive, typical_gap=typical_gap,
                                  past=past)
    stage_ids = stages["customer_id"].astype(str).reset_index(drop=True)
    if stage_ids.equals(ids):  # the usual case: both in the chunk's customer order, no lookup
        for col, name in LIFECYCLE_COLUMNS.items():
            values = stages[col]
            out[name] = (values.astype("string").array if col == "lifecycle_stage"
                         else values.to_numpy(dtype=np.float64, na_value=np.nan))
        return
    pos = pd.Index(stage_ids).get_indexer(ids)
    found = pos >= 0
    for col, name in LIFECYCLE_COLUMNS.items():
        values = stages[col].to_numpy()
        if col == "lifecycle_stage":
            taken = pd.array(np.where(found, values[np.maximum(pos, 0)] if len(values) else None, None),
                             dtype="string")
        else:
            taken = np.where(found, values.astype(np.float64)[np.maximum(pos, 0)] if len(values) else np.nan, np.nan)
        out[name] = taken


def score_customers(cfg: CrmlabConfig, *, as_of: date | str | None = None, pipelines: Sequence[str] | None = None,
                    source: str | None = None, tables: Tables | None = None) -> pd.DataFrame:
    """Score every customer in memory and return the table (see the module doc for the columns).

    ``tables``: already clean tables; default: the configured data, loaded and cleaned."""
    tables, as_of_d = _tables_and_as_of(cfg, tables, as_of)
    with open_models(cfg, pipelines=pipelines, source=source) as models:
        parts = list(iter_score_chunks(tables, cfg, models, as_of=as_of_d))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["customer_id", "as_of"])


def _tables_and_as_of(cfg: CrmlabConfig, tables: Tables | None, as_of: date | str | None) -> tuple[Tables, date]:
    from crmlab.workflow import prepare_data, resolve_as_of

    if tables is None:
        tables = prepare_data(cfg.project).tables
    as_of_d = pd.Timestamp(as_of).date() if as_of is not None else resolve_as_of(cfg.project, tables)
    if as_of_d is None:
        as_of_d = contract_as_of(tables)
    return tables, as_of_d


def contract_as_of(tables: Tables, *, today: date | None = None) -> date:
    """The cut-off of a customer table without transactions (a contract business) when none is set:
    the latest ``signup_date``, as the churn pipeline trains a contract table, else today. Logged,
    so the output says which date the scores are at and why."""
    customers = tables.customers
    if customers is None:
        raise ConfigError("no cut-off date: set --as-of (or project.as_of); there are no transactions to take it from")
    signup = customers["signup_date"] if "signup_date" in customers.columns else None
    signup = pd.to_datetime(signup, errors="coerce") if signup is not None else None
    if signup is not None and signup.notna().any():
        as_of_d = pd.Timestamp(signup.max()).date()
        log.info("as_of = the latest signup_date (%s), as churn training takes it", as_of_d)
    else:
        as_of_d = today or date.today()
        log.info("as_of = today (%s): no transactions, no signup_date", as_of_d)
    return as_of_d


def write_scores(cfg: CrmlabConfig, out: str | Path, *, as_of: date | str | None = None,
                 pipelines: Sequence[str] | None = None, source: str | None = None, tables: Tables | None = None,
                 chunk_size: int | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Score every customer into ``out`` (``.parquet`` or ``.csv``), chunk by chunk, atomically.

    ``out`` may also be a PostgreSQL table, ``postgresql://user@host:port/db?table=schema.scores``: the
    scores go to a staging table in one transaction that then replaces the table (see
    :func:`_write_database`). Returns a summary: path, rows, as_of, the models and their versions."""
    if isinstance(out, str) and out.startswith(("postgresql://", "postgres://")):
        tables, as_of_d = _tables_and_as_of(cfg, tables, as_of)
        with open_models(cfg, pipelines=pipelines, source=source) as models:
            rows, where = _write_database(tables, cfg, models, out, as_of_d=as_of_d, chunk_size=chunk_size,
                                          progress=progress)
        return {"path": where, "rows": rows, "as_of": as_of_d,
                "models": {p: {"version": m.version, "source": m.source} for p, m in models.items()}}
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise ConfigError(f"--out {out}: write .parquet or .csv")
    tables, as_of_d = _tables_and_as_of(cfg, tables, as_of)
    with open_models(cfg, pipelines=pipelines, source=source) as models:
        rows = _write_chunks(tables, cfg, models, out, as_of_d=as_of_d, chunk_size=chunk_size,
                            progress=progress)
    return {"path": out, "rows": rows, "as_of": as_of_d,
            "models": {p: {"version": m.version, "source": m.source} for p, m in models.items()}}


def database_target(out: str) -> tuple[str, str, str]:
    """(uri, schema, table) of ``postgresql://...?table=[schema.]name``; ConfigError when malformed."""
    import re
    from urllib.parse import parse_qs

    from crmlab.config import TableSource, redact

    uri, _, query = out.partition("?")
    params = parse_qs(query)
    target = (params.get("table") or [""])[0]
    schema, _, name = target.rpartition(".")
    schema = schema or "public"
    if not all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", p) for p in (schema, name)):
        raise ConfigError(f"--out {redact(out)}: name the table as ?table=schema.name (letters, digits, _)")
    try:
        TableSource(uri=uri, table=f"{schema}.{name}")  # the same rules as a source: no password in the uri
    except Exception as exc:
        reason = str(exc).splitlines()[2].strip() if len(str(exc).splitlines()) > 2 else str(exc)
        raise ConfigError(f"--out: {redact(reason).split(' [type=')[0]}") from None
    return uri, schema, name


def _write_database(tables: Tables, cfg: CrmlabConfig, models: dict[str, LoadedModel], out: str, *, as_of_d: date,
                    chunk_size: int | None, progress: Progress | None) -> tuple[int, str]:
    """Score chunk by chunk into the database table ``out`` (see :func:`write_frames_to_database`)."""
    # closed as soon as the writer stops (an error, Ctrl-C), not when collected: the scoring threads end first
    with contextlib.closing(iter_score_chunks(tables, cfg, models, as_of=as_of_d, chunk_size=chunk_size,
                                              progress=progress)) as chunks:
        return write_frames_to_database(chunks, out)


def parquet_frames(folder: str | Path, rows: int = 500_000) -> Iterator[pd.DataFrame]:
    """The score frames of a Parquet folder (what ``--engine spark`` writes), ``rows`` at a time, typed as
    the pandas path's (``as_of`` a timestamp)."""
    import pyarrow.dataset as ds

    for batch in ds.dataset(str(folder), format="parquet").to_batches(batch_size=rows):
        frame = batch.to_pandas()
        if "as_of" in frame.columns:
            frame["as_of"] = pd.to_datetime(frame["as_of"]).astype("datetime64[ms]")
        yield frame


def write_frames_to_database(frames: Iterable[pd.DataFrame], out: str) -> tuple[int, str]:
    """Write score frames into a staging table and swap it in, all in one transaction: readers see the
    old table until the commit, a killed run (its connection gone) is rolled back by the server and
    leaves the old table as it was. Returns the rows and the target's name."""
    import adbc_driver_postgresql.dbapi as pg
    import pyarrow as pa

    from crmlab.data.io import database_error

    uri, schema, name = database_target(out)
    staging = f"{name}__crmlab_staging"
    where = f"{uri} (table {schema}.{name})"
    rows = 0
    try:
        with pg.connect(uri) as conn, conn.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')  # as a file's folder is made for it
            cur.execute(f'DROP TABLE IF EXISTS "{schema}"."{staging}"')
            arrow_schema = None
            for chunk in frames:
                table = pa.Table.from_pandas(chunk, preserve_index=False)
                if arrow_schema is None:
                    arrow_schema = table.schema
                else:
                    table = table.cast(arrow_schema)
                cur.adbc_ingest(staging, table, mode="create" if rows == 0 else "append", db_schema_name=schema)
                rows += len(chunk)
            if rows == 0:
                cur.execute(f'CREATE TABLE "{schema}"."{staging}" (customer_id text, as_of date)')
            cur.execute(f'DROP TABLE IF EXISTS "{schema}"."{name}"')
            cur.execute(f'ALTER TABLE "{schema}"."{staging}" RENAME TO "{name}"')
            raise_if_stopped()
            conn.commit()
    except (ConfigError, ModelError):
        raise
    except Exception as exc:
        if type(exc).__module__.startswith("adbc_driver"):
            from crmlab.config import TableSource

            raise database_error(exc, where, "scores", TableSource(uri=uri, table=f"{schema}.{name}")) from None
        raise
    log.info("%s rows written to %s", f"{rows:,}", where)
    return rows, where


def _write_chunks(tables: Tables, cfg: CrmlabConfig, models: dict[str, LoadedModel], out: Path, *, as_of_d: date,
                  chunk_size: int | None, progress: Progress | None) -> int:
    """Score chunk by chunk into a temporary file beside ``out``, then move it into place; returns the rows."""
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.*.partial"):  # left by a killed run
        stale.unlink(missing_ok=True)
    tmp = temp_name_beside(out, ".partial")  # the name is held before the file exists (see temp_name_beside)
    writer = None
    rows = 0
    done = [0.0]  # share of the rows scored: what the disk-full message extrapolates from

    def track(share: float, total: float) -> None:
        done[0] = share / total if total else 0.0
        if progress is not None:
            progress(share, total)

    try:
        os.close(create_new(tmp))
        schema = None
        # closed as soon as this loop stops (an error, Ctrl-C), not when collected: the scoring threads end first
        with contextlib.closing(iter_score_chunks(tables, cfg, models, as_of=as_of_d, chunk_size=chunk_size,
                                                  progress=track)) as chunks:
            for chunk in chunks:
                rows += len(chunk)
                if suffix == ".csv":
                    chunk.to_csv(tmp, mode="a" if rows > len(chunk) else "w", header=rows == len(chunk), index=False)
                    continue
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(chunk, preserve_index=False)
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(tmp, schema)
                else:
                    table = table.cast(schema)
                writer.write_table(table)
        if writer is not None:
            writer.close()
        elif suffix == ".parquet":
            pd.DataFrame(columns=["customer_id", "as_of"]).to_parquet(tmp, index=False)
        os.chmod(tmp, 0o644)
        raise_if_stopped()
        os.replace(tmp, out)
        placed(tmp)
    except BaseException as exc:
        if writer is not None:  # closed now: a writer closed later (at exit) would write the file again
            with contextlib.suppress(Exception):
                writer.close()
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        # an interrupted writer can still create its file while the process winds down: look again at exit
        atexit.register(tmp.unlink, missing_ok=True)
        if is_disk_full(exc):
            if done[0] > 0 and written:  # the file so far (cut where the device filled), scaled to all the rows
                raise disk_full(exc, out, needed=written / done[0], at_least=True) from None
            if out.exists():  # the previous scores: about as large
                raise disk_full(exc, out, needed=out.stat().st_size) from None
            raise disk_full(exc, out, needed=written or None, at_least=True) from None
        raise
    return rows
