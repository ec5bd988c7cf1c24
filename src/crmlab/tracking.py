"""The one MLflow wrapper.

Every training run goes through :class:`Tracker`: it points MLflow at the configured store (a local
SQLite file by default, so ``mlflow ui --backend-store-uri sqlite:///mlflow.db`` works), creates
the experiment with a configured artifact folder, and logs, for each run, the resolved config, a
fingerprint of the input data, the code version, metrics and artifacts. Each table of the fingerprint
is also logged as an MLflow dataset input (:func:`fingerprint_datasets`: its name, source, digest,
schema and row counts, never its rows), so the MLflow UI's Dataset column says what a run was
trained on.

Personal data never reaches a log line, a parameter or an artifact: tables are scrubbed of the
configured PII columns and of any text column that holds e-mail addresses or phone numbers before
they are logged, and the data fingerprint hashes only non-personal columns.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from crmlab import __version__
from crmlab.config import TrackingConfig
from crmlab.errors import CrmlabError

__all__ = [
    "Run",
    "Tracker",
    "code_version",
    "data_fingerprint",
    "fingerprint_datasets",
    "flatten",
    "open_store",
    "quiet_artifact_copies",
    "scrub_pii",
    "store_lock",
]

log = logging.getLogger(__name__)

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_PHONE = re.compile(r"^\s*\+?[\d\s().-]{9,}\d\s*$")
DEFAULT_PII = ("name", "first_name", "last_name", "email", "phone", "address")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``; lists and None become strings."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) else json.dumps(value, default=str)
    return out


def _looks_personal(values: pd.Series) -> bool:
    sample = values.dropna().astype(str).head(200)
    if sample.empty:
        return False
    hits = sample.str.contains(_EMAIL).mean() + sample.str.match(_PHONE).mean()
    return bool(hits > 0.2)


def scrub_pii(df: pd.DataFrame, pii_columns: Sequence[str] = DEFAULT_PII) -> pd.DataFrame:
    """A copy of ``df`` without personal columns: those named in ``pii_columns`` and any text column
    whose values look like e-mail addresses or phone numbers."""
    drop = [c for c in df.columns if str(c).lower() in {p.lower() for p in pii_columns}]
    for col in df.columns:
        if col in drop:
            continue
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]) or isinstance(df[col].dtype, pd.CategoricalDtype):
            if _looks_personal(df[col]):
                drop.append(col)
    return df.drop(columns=drop)


def data_fingerprint(tables: Mapping[str, pd.DataFrame | None], pii_columns: Sequence[str] = DEFAULT_PII) -> dict[str, Any]:
    """Row counts, customers, date range and a content hash per table (personal columns excluded)."""
    out: dict[str, Any] = {}
    for name, df in tables.items():
        if df is None:
            continue
        safe = scrub_pii(df, pii_columns)
        info: dict[str, Any] = {"rows": int(len(df)), "columns": int(df.shape[1])}
        if "customer_id" in df.columns:
            info["customers"] = int(df["customer_id"].nunique())
        for col in ("ts", "signup_date"):
            if col in df.columns and pd.api.types.is_datetime64_any_dtype(df[col]):
                info["date_min"] = str(df[col].min().date()) if df[col].notna().any() else None
                info["date_max"] = str(df[col].max().date()) if df[col].notna().any() else None
                break
        row_hashes = pd.util.hash_pandas_object(safe, index=False).to_numpy()
        info["sha256"] = hashlib.sha256(np.sort(row_hashes).tobytes()).hexdigest()[:16]
        out[name] = info
    return out


def code_version() -> dict[str, str]:
    """crmlab's version and, when run from a git checkout, the commit (with '-dirty' if modified)."""
    info = {"crmlab_version": __version__}
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True,
            timeout=5, check=True,
        ).stdout.strip()
        info["git_commit"] = commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def _mlflow_type(dtype: Any) -> str:
    """The MLflow column type of a pandas dtype (read from the dtype alone: no value is looked at)."""
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "long" if np.dtype(dtype).itemsize > 4 else "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "double" if np.dtype(dtype).itemsize > 4 else "float"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    return "string"


@functools.cache
def _dataset_classes() -> tuple[type, type]:
    """The dataset source and dataset classes of :func:`fingerprint_datasets` (made on first use: MLflow
    is imported only when something is tracked)."""
    from mlflow.data.dataset_source import DatasetSource
    from mlflow.data.meta_dataset import MetaDataset

    class CrmlabTableSource(DatasetSource):
        """Where a table came from: a file (``local``), a database (``postgresql``) or the embedded demo."""

        def __init__(self, uri: str) -> None:
            self.uri = uri

        def _get_source_type(self) -> str:  # type: ignore[override]
            if self.uri.startswith(("postgresql://", "postgres://")):
                return "postgresql"
            return "local" if Path(self.uri).is_absolute() else "crmlab"

        def load(self, **kwargs: Any) -> Any:
            raise NotImplementedError("crmlab reads its tables through its config (project.data)")

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> CrmlabTableSource:
            return cls(str(raw_source))

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.uri}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> CrmlabTableSource:
            return cls(str(source_dict["uri"]))

    class FingerprintDataset(MetaDataset):
        def __init__(self, source: DatasetSource, name: str, digest: str, schema: Any, profile: dict[str, Any]):
            self._profile = profile
            super().__init__(source, name=name, digest=digest, schema=schema)

        @property
        def profile(self) -> dict[str, Any]:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    return CrmlabTableSource, FingerprintDataset


def fingerprint_datasets(fingerprint: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None] | None = None
                         ) -> list[Any]:
    """One MLflow dataset (metadata only) per table of a :func:`data_fingerprint`: named after the table,
    its digest the fingerprint's ``sha256`` (the hash of every row, personal columns excluded), its
    source the file or database the table was read from (``fingerprint["sources"]``), its profile the
    fingerprint's counts and date range, and, when ``tables`` holds the table, its schema (column names
    and types, from the dtypes). Nothing here reads the rows again: logging them costs nothing on big data."""
    from mlflow.types import ColSpec, Schema

    CrmlabTableSource, FingerprintDataset = _dataset_classes()
    sources = fingerprint.get("sources") or {}
    out = []
    for name, info in fingerprint.items():
        if not isinstance(info, Mapping) or "sha256" not in info:
            continue
        source = str(sources.get(name, name))
        if "://" not in source and Path(source).expanduser().is_file():  # a file: its absolute path
            source = str(Path(source).expanduser().resolve())
        df = (tables or {}).get(name)
        schema = (Schema([ColSpec(_mlflow_type(t), str(c)) for c, t in df.dtypes.items()])
                  if df is not None and len(df.columns) else None)
        profile = {"num_rows": info.get("rows"), "num_columns": info.get("columns"),
                   **{k: info[k] for k in ("customers", "date_min", "date_max") if k in info}}
        out.append(FingerprintDataset(CrmlabTableSource(source), str(name), str(info["sha256"]), schema, profile))
    return out


class Run:
    """A handle on one active MLflow run (or a no-op when tracking is disabled)."""

    def __init__(self, mlflow_run: Any | None, pii_columns: Sequence[str]) -> None:
        self._run = mlflow_run
        self._pii = tuple(pii_columns)

    @property
    def run_id(self) -> str | None:
        return self._run.info.run_id if self._run is not None else None

    @property
    def active(self) -> bool:
        return self._run is not None

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self._run is None:
            return
        import mlflow

        flat = flatten(params)
        items = list(flat.items())
        for i in range(0, len(items), 100):
            mlflow.log_params({k: str(v)[:6000] for k, v in items[i : i + 100]})

    def log_inputs(self, fingerprint: Mapping[str, Any], tables: Mapping[str, pd.DataFrame | None] | None = None,
                   *, context: str = "training") -> None:
        """Log each table of ``fingerprint`` as a dataset input of the run (see :func:`fingerprint_datasets`)."""
        if self._run is None:
            return
        import mlflow

        datasets = fingerprint_datasets(fingerprint, tables)
        if datasets:
            mlflow.log_inputs(datasets=datasets, contexts=[context] * len(datasets), tags_list=[None] * len(datasets))

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._run is None:
            return
        import mlflow

        clean = {k: float(v) for k, v in flatten(metrics).items() if isinstance(v, (int, float, np.number)) and np.isfinite(v)}
        if clean:
            mlflow.log_metrics(clean, step=step)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self._run is None:
            return
        import mlflow

        mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_dict(self, data: Mapping[str, Any] | list[Any], artifact_file: str) -> None:
        if self._run is None:
            return
        import mlflow

        mlflow.log_text(json.dumps(data, indent=2, sort_keys=True, default=str), artifact_file)

    def log_table(self, df: pd.DataFrame, artifact_file: str) -> None:
        """Log a table as CSV (or Parquet by suffix), with personal columns removed."""
        if self._run is None:
            return
        import mlflow

        safe = scrub_pii(df, self._pii)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(artifact_file).name
            if path.suffix == ".parquet":
                safe.to_parquet(path, index=False)
            else:
                safe.to_csv(path, index=False)
            folder = str(Path(artifact_file).parent)
            mlflow.log_artifact(str(path), artifact_path=None if folder == "." else folder)

    def log_figure(self, fig: Any, artifact_file: str) -> None:
        if self._run is None:
            return
        import mlflow

        mlflow.log_figure(fig, artifact_file)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self._run is None:
            return
        import mlflow

        p = Path(path)
        if p.is_dir():
            mlflow.log_artifacts(str(p), artifact_path=artifact_path)
        else:
            mlflow.log_artifact(str(p), artifact_path=artifact_path)


class Tracker:
    """Runs in one MLflow experiment of one tracking store."""

    def __init__(self, cfg: TrackingConfig | None = None, *, pii_columns: Sequence[str] = DEFAULT_PII) -> None:
        self.cfg = cfg or TrackingConfig()
        self.pii_columns = tuple(pii_columns)
        self._experiment_id: str | None = None

    @property
    def uri(self) -> str:
        return absolute_uri(self.cfg.uri)

    def _setup(self) -> str:
        import mlflow

        if self._experiment_id is not None:
            mlflow.set_tracking_uri(self.uri)
            return self._experiment_id
        try:
            with store_lock(self.uri):
                open_store(self.cfg.uri)
                mlflow.set_tracking_uri(self.uri)
                exp = mlflow.get_experiment_by_name(self.cfg.experiment)
                if exp is None and _is_server(self.cfg.uri) and "artifact_dir" not in self.cfg.model_fields_set:
                    # a tracking server keeps the artifacts where it was told to (--artifacts-destination):
                    # a folder of this machine would be missing on the others of the team
                    self._experiment_id = mlflow.create_experiment(self.cfg.experiment)
                elif exp is None:
                    art = Path(self.cfg.artifact_dir).expanduser().resolve()
                    art.mkdir(parents=True, exist_ok=True)
                    self._experiment_id = mlflow.create_experiment(self.cfg.experiment, artifact_location=art.as_uri())
                else:
                    self._experiment_id = exp.experiment_id
        except CrmlabError:
            raise
        except Exception as exc:  # MLflow raises many kinds; the user needs the URI and the reason
            raise CrmlabError(
                f"cannot open the MLflow tracking store {self.cfg.uri!r}: {str(exc).splitlines()[0]} "
                "(set project.tracking.uri, or project.tracking.enabled=false)"
            ) from None
        return self._experiment_id

    @contextmanager
    def start_run(
        self,
        run_name: str,
        *,
        pipeline: str,
        config: Mapping[str, Any] | None = None,
        fingerprint: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        nested: bool = False,
        tables: Mapping[str, pd.DataFrame | None] | None = None,
    ) -> Iterator[Run]:
        """Start a run that logs the resolved config, the data fingerprint (as parameters, an artifact and
        the run's dataset inputs; ``tables``, when given, adds their schemas to the datasets) and the code
        version.

        Nested runs (``nested=True`` inside another run) become child runs, e.g. one per model of a
        comparison or one per tuning trial. A failing block marks the run FAILED and re-raises.
        """
        if not self.cfg.enabled:
            yield Run(None, self.pii_columns)
            return
        import mlflow

        exp_id = self._setup()
        all_tags = {"crmlab.pipeline": pipeline, **code_version(), **(tags or {})}
        with mlflow.start_run(run_name=run_name, experiment_id=exp_id, nested=nested, tags={k: str(v) for k, v in all_tags.items()}) as active:
            run = Run(active, self.pii_columns)
            if config is not None:
                run.log_params(config)
                run.log_dict(dict(config), "config.json")
            if fingerprint is not None:
                run.log_dict(dict(fingerprint), "data_fingerprint.json")
                run.log_params({"data": fingerprint})
                run.log_inputs(fingerprint, tables)
            try:
                yield run
            except BaseException:
                mlflow.end_run(status="FAILED")
                raise


@contextmanager
def quiet_artifact_copies() -> Iterator[None]:
    """No "Downloading artifacts" progress bar while a block runs: MLflow draws one (on stderr, through the
    CLI's spinner) even for a copy between two folders of this machine, as when a logged model copies
    the bundle it holds. Set back as it was afterwards."""
    import os

    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


#: Stores this process has already created or checked (see :func:`open_store`).
_OPENED: set[str] = set()
#: SQLite stores whose lock this process holds now (flock is per open file: a second one would wait).
_LOCKED: set[Path] = set()


def _sqlite_path(uri: str) -> Path | None:
    uri = absolute_uri(uri)
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def _is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def store_exists(uri: str) -> bool:
    """False for a SQLite store whose file is not there (asking it anything would create it); True for
    an existing file and for any other store (a server, a folder), which is asked in earnest."""
    db = _sqlite_path(uri)
    return db is None or db.exists()


@contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite store while a block runs, so that processes starting at
    the same moment do not create its tables (or the same experiment) twice: MLflow's schema
    creation is not safe to race (``duplicate column name: step``). The lock is a ``flock`` on a
    ``<db>.lock`` file beside the database (SQLite's own locks on the database file must not be
    mixed with ours); it is released when the block ends or the process dies. Other stores (a
    tracking server) serialise themselves: no lock."""
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no flock; stores are then created without a lock
        fcntl = None  # type: ignore[assignment]
    if db is None or fcntl is None or db in _LOCKED:  # held already by this process: re-entrant
        yield
        return
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        _LOCKED.add(db)
        try:
            yield
        finally:
            _LOCKED.discard(db)
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def open_store(uri: str) -> None:
    """Create the MLflow store at ``uri`` if it is new (its tracking and registry tables), or check
    its schema, once per process and under :func:`store_lock`. Call it before anything else talks
    to the store; later calls return at once."""
    given, uri = uri, absolute_uri(uri)
    if uri in _OPENED:
        return
    import mlflow

    try:
        with store_lock(uri):
            client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
            client.search_experiments(max_results=1)  # creates the tracking tables of a new store
            client.search_registered_models(max_results=1)  # and checks the registry's
    except Exception as exc:  # MLflow raises many kinds; the user needs the URI and the reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CrmlabError(f"cannot open the MLflow tracking store {given!r}: {reason} "
                          "(set project.tracking.uri, or project.tracking.enabled=false)") from None
    _OPENED.add(uri)


def absolute_uri(uri: str) -> str:
    """Make a relative ``sqlite:///file.db`` absolute, so runs from other folders find the same store."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri[len(prefix):]).expanduser().resolve())
    if "://" not in uri:  # a bare path: treat as a SQLite file
        return prefix + str(Path(uri).expanduser().resolve())
    return uri


