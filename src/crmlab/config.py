"""Typed configuration.

Defaults live in the pydantic models below; YAML files in ``configs/`` only override them, and
``--set a.b=c`` on the command line overrides YAML. Every model forbids unknown keys, so a typo
fails with a message that names the file and the key (and suggests the nearest valid one).

Layout of a config directory::

    configs/project.yaml        -> CrmlabConfig.project   (data sources, column mapping, as_of, ...)
    configs/churn.yaml          -> CrmlabConfig.churn
    configs/clv.yaml            -> CrmlabConfig.clv
    configs/segmentation.yaml   -> CrmlabConfig.segmentation
    configs/forecast.yaml       -> CrmlabConfig.forecast
    configs/crosssell.yaml      -> CrmlabConfig.crosssell
    configs/kpis.yaml           -> CrmlabConfig.kpis      (CRM KPIs and the HTML report; not a model)
    configs/lifecycle.yaml      -> CrmlabConfig.lifecycle (lifecycle stage rules; not a model)
"""

from __future__ import annotations

import codecs
import copy
import difflib
import hashlib
import json
import re
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from crmlab.pipelines import customer_models
from crmlab.pipelines import names as pipeline_names

from crmlab.errors import ConfigError

__all__ = [
    "PIPELINES",
    "REPORTING",
    "SECTIONS",
    "ChurnConfig",
    "CleaningConfig",
    "ClvConfig",
    "CrmlabConfig",
    "CrosssellConfig",
    "DataConfig",
    "FeatureConfig",
    "ForecastConfig",
    "KpiConfig",
    "LifecycleConfig",
    "MissingPolicy",
    "OutputConfig",
    "ProjectConfig",
    "SearchParam",
    "SegmentationConfig",
    "SurveySource",
    "TableSource",
    "TrackingConfig",
    "TuningConfig",
    "VoiceConfig",
    "config_hash",
    "load_config",
    "parse_overrides",
]

PIPELINES = pipeline_names()  # from the pipeline records (crmlab.pipelines)
CustomerModel = Literal[customer_models()]  # type: ignore[valid-type]
#: Config sections that are not model pipelines (no ``crmlab train``): the KPIs and the report, and the
#: lifecycle stages.
REPORTING = ("kpis", "lifecycle")
SECTIONS = ("project", *PIPELINES, *REPORTING)


class Frozen(BaseModel):
    """Base for every config model: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- project


class TableSource(Frozen):
    """One input table: where it is and how its columns map to crmlab's canonical names. A bare path
    (``--set project.data.customers=customers.csv``) is the table at that path with default settings."""

    @model_validator(mode="before")
    @classmethod
    def _bare_path(cls, v: Any) -> Any:
        return {"path": v} if isinstance(v, (str, Path)) else v

    path: Path | None = Field(
        None, description="CSV or Parquet file. A transactions source without a path is the embedded CDNOW demo "
        "log, allowed only when no other table is configured."
    )
    format: Literal["auto", "csv", "parquet"] = Field("auto", description="'auto' decides by suffix.")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical name -> column in the file, e.g. {customer_id: CustomerID, ts: InvoiceDate}.",
    )
    sep: str = Field(
        "auto", description="CSV field separator, e.g. ',' ';' or '\\t'. 'auto' detects it from the first lines "
        "among comma, semicolon, tab and pipe (a comma when nothing decides).")
    encoding: str = Field(
        "auto",
        description="Text encoding of a CSV, e.g. utf-8 or gb18030 (GBK/GB2312 exports). 'auto' detects it: "
        "UTF-8 (with or without BOM), then GB18030, then the best guess of charset-normalizer.",
    )

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        if v.strip().lower() == "auto":
            return "auto"
        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(f"unknown encoding {v!r}; use 'auto' (detect) or a name such as utf-8, gb18030, "
                             "gbk, big5, cp1252, latin-1") from None
        return v

    uri: str | None = Field(
        None, description="A PostgreSQL database to read the table from instead of a file: "
        "postgresql://user@host:port/database, with table or query. No password here: libpq takes it from "
        "PGPASSWORD, ~/.pgpass, or the environment variable named by password_env.",
    )
    table: str | None = Field(None, description="With uri: the table (or view) to read, e.g. crm.orders.")
    query: str | None = Field(None, description="With uri: a SELECT giving the table instead (not with table).")
    password_env: str | None = Field(
        None, description="With uri: the environment variable holding the password (else PGPASSWORD or "
        "~/.pgpass). Its value is never logged, tracked or shown.",
    )

    @field_validator("uri")
    @classmethod
    def _database_uri(cls, v: str | None) -> str | None:
        if v is None:
            return v
        scheme, sep, rest = v.partition("://")
        if not sep or scheme not in ("postgresql", "postgres"):
            raise ValueError("uri must be a PostgreSQL URI, postgresql://user@host:port/database")
        auth = rest.split("/", 1)[0].rpartition("@")[0]
        if ":" in auth or "password=" in rest.lower():
            raise ValueError("uri holds a password: a config must never hold one (it would end up in logs, MLflow "
                             "and version control); give it in PGPASSWORD, ~/.pgpass, or the environment variable "
                             "named by password_env")
        return v

    @model_validator(mode="after")
    def _one_place(self) -> TableSource:
        if self.uri is not None:
            if self.path is not None:
                raise ValueError("give either path (a file) or uri (a database), not both")
            if (self.table is None) == (self.query is None):
                raise ValueError("a database source needs exactly one of table or query")
        elif self.table is not None or self.query is not None or self.password_env is not None:
            raise ValueError("table, query and password_env go with uri (a database source)")
        return self


class SurveySource(TableSource):
    """The surveys table (``customer_id``, ``ts``, ``score``, optional ``comment``, ``kind``) and its scale."""

    scale: Literal["auto", "nps", "csat"] = Field(
        "auto",
        description="Scale of the scores. nps: 0-10 (promoters 9-10, detractors 0-6); csat: 1-5 (satisfied 4-5). "
        "auto: a row whose kind names a scale (holds 'nps' or 'csat') takes it; the other rows are decided per "
        "kind (the whole table without a kind column): csat when every score is 1-5, else nps. Cleaning rejects "
        "a score that is not a whole number within its scale (0-10 under auto) and says what auto decided.",
    )


class DataConfig(Frozen):
    transactions: TableSource | None = Field(
        None,
        description="Your transaction log. Empty (null) means no transactions: a contract business with a churn "
        "column in its customer table, or a sales table only. When no table at all is configured, the embedded "
        "CDNOW demo log is used (and the run says so); it is never mixed with tables of your own.",
    )
    customers: TableSource | None = None
    interactions: TableSource | None = None
    marketing_spend: TableSource | None = Field(
        None,
        description="Optional, for CAC: spend by period (and channel): columns period (a date or '1997-01'), "
        "spend, optional channel. Used only by crmlab kpis / report.",
    )
    leads: TableSource | None = Field(
        None,
        description="Optional, for funnel conversion: leads or opportunities with lead_id and stage (one row per "
        "lead, or one per stage reached), optional ts, channel, customer_id. Used only by crmlab kpis / report.",
    )
    surveys: SurveySource | None = Field(
        None,
        description="Optional satisfaction surveys: customer_id, ts, score (0-10 NPS or 1-5 CSAT), optional "
        "comment and kind. Cleaned like the other tables (bad rows to rejects_surveys.csv); gives NPS/CSAT in "
        "crmlab kpis / report and survey features for churn.",
    )
    sales: TableSource | None = Field(
        None,
        description="Optional, for forecast: an already aggregated sales table with period and value (optional "
        "series_id; known-in-advance columns named in forecast.covariates). Rows with a period but no value after "
        "the last observed period carry the covariates of the future.",
    )


class MissingPolicy(Frozen):
    """What to do with a missing value in one column."""

    strategy: Literal["reject", "median", "mode", "constant", "keep"] = "keep"
    value: str | float | int | None = Field(None, description="Fill value for strategy 'constant'.")


def _default_missing() -> dict[str, MissingPolicy]:
    return {
        "transactions.customer_id": MissingPolicy(strategy="reject"),
        "transactions.ts": MissingPolicy(strategy="reject"),
        "transactions.amount": MissingPolicy(strategy="reject"),
        "transactions.quantity": MissingPolicy(strategy="constant", value=1),
        "transactions.category": MissingPolicy(strategy="constant", value="unknown"),
        "transactions.channel": MissingPolicy(strategy="constant", value="unknown"),
        "customers.customer_id": MissingPolicy(strategy="reject"),
        "customers.age": MissingPolicy(strategy="median"),
        "customers.gender": MissingPolicy(strategy="constant", value="unknown"),
        "customers.region": MissingPolicy(strategy="mode"),
        "interactions.customer_id": MissingPolicy(strategy="reject"),
        "interactions.ts": MissingPolicy(strategy="reject"),
        "interactions.kind": MissingPolicy(strategy="constant", value="other"),
        "surveys.customer_id": MissingPolicy(strategy="reject"),
        "surveys.ts": MissingPolicy(strategy="reject"),
        "surveys.score": MissingPolicy(strategy="reject"),
    }


class CleaningConfig(Frozen):
    date_formats: list[str] = Field(
        default_factory=lambda: [
            "%Y-%m-%d",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y/%m/%d",
            "%Y/%m/%d %H:%M:%S",
            "%Y/%m/%d %H:%M",
            "%Y年%m月%d日",
            "%Y年%m月%d日 %H:%M:%S",
            "%Y年%m月%d日 %H:%M",
            "%Y%m%d",
            "%d %b %Y",
            "%b %d, %Y",
            "%d.%m.%Y",
            "%m/%d/%Y",
            "%d/%m/%Y",
        ],
        description="Formats tried for text dates. Month and day may be written without a leading zero "
        "(2024/3/4, 2024年3月4日); full-width digits are read as digits. Where two formats differ only by the order "
        "of day and month (%m/%d/%Y and %d/%m/%Y), one is chosen per column, never per value: the one that reads "
        "the dates only it can read (31/01/2024 is day first); a column with dates of both orders, or with no "
        "date that decides (every day 12 or less), is refused unless day_first says which. The order of the list "
        "does not decide it.",
    )
    day_first: Literal["auto"] | bool = Field(
        "auto", description="For dates such as 03/04/2024: true reads 3 April (day first), false 4 March (month "
        "first), auto decides per column from the dates that only one order can read.",
    )
    max_date: date | None = Field(
        None, description="Dates after this are rejected as 'in the future of the data'. Empty: today."
    )
    min_date: date | None = Field(
        None, description="Dates before this are rejected as implausibly early (1900-01-01 placeholders, the "
        "year 1600). Empty: derived per column from the bulk of its dates: the 10th percentile minus ten times the "
        "span from the 10th to the 90th percentile, and at least five years.",
    )
    max_amount: float = Field(
        1e12, gt=0, description="Amounts larger than this in absolute value (and infinite ones) are rejected as "
        "out of range: one such row would turn revenue, CLV and every sum into nonsense or infinity.",
    )
    merge_similar_ids: bool = Field(
        False, description="Customer ids that differ only by leading zeros, a '.0' suffix, scientific notation "
        "or letter case (00123, 123.0, 1.23E+02, 123; C123, c123) are always reported; true merges each group "
        "into its id with the most rows.",
    )
    missing: dict[str, MissingPolicy] = Field(
        default_factory=_default_missing,
        description="Per 'table.column' policy for missing values; columns not listed are kept as missing.",
    )
    category_aliases: dict[str, str] = Field(
        default_factory=dict, description="Spelling -> canonical value, applied after lower-casing."
    )
    dedupe_customers: bool = Field(True, description="Merge one person under several ids by email/phone.")
    match_on: list[Literal["email", "phone"]] = Field(default_factory=lambda: ["email", "phone"])


class FeatureConfig(Frozen):
    windows: list[int] = Field(default_factory=lambda: [30, 90, 180, 365], description="Trailing windows in days.")
    pii_columns: list[str] = Field(
        default_factory=lambda: ["name", "first_name", "last_name", "email", "phone", "address"],
        description="Personal data: used for de-duplication only, never a feature, log line or artifact.",
    )
    drop_columns: list[str] = Field(default_factory=list, description="Customer columns never used as features.")

    @field_validator("windows")
    @classmethod
    def _positive_sorted(cls, v: list[int]) -> list[int]:
        if not v or any(w <= 0 for w in v):
            raise ValueError(f"windows must be positive day counts, got {v}")
        return sorted(set(v))


class TrackingConfig(Frozen):
    enabled: bool = True
    uri: str = Field("sqlite:///mlflow.db", description="MLflow tracking URI; default a local SQLite file.")
    artifact_dir: Path = Field(Path("mlartifacts"), description="Where run artifacts are stored. With a tracking "
                               "server (an http(s) uri) left unset: the server's own artifact store "
                               "(mlflow server --artifacts-destination).")
    experiment: str = "crmlab"


class OutputConfig(Frozen):
    dir: Path = Field(Path("outputs"), description="Cleaned data, rejects, reports, scores.")
    models_dir: Path = Field(Path("models"), description="Exported model bundles, one folder per pipeline.")


class ScoringConfig(Frozen):
    source: Literal["auto", "models", "registry"] = Field(
        "auto", description="Which model scores, per pipeline. auto: the registry's 'champion' when tracking is on "
        "and the registry has one (a challenger that was not promoted never scores), else the bundle in "
        "output.models_dir; models: always the bundle in output.models_dir; registry: only champions."
    )
    pipelines: list[CustomerModel] = Field(
        default_factory=lambda: list(customer_models()),
        description="Customer models to score with; one that was never trained is skipped with a warning.",
    )
    chunk_size: int = Field(200_000, gt=0, description="Customers per chunk (two chunks are scored at once): bounds "
                            "memory while scoring.")
    spark_master: str = Field("local[*]", description="crmlab score --engine spark: the Spark master, e.g. "
                              "local[*] (this machine) or spark://host:7077.")
    spark_sample_rows: int = Field(200_000, gt=0, description="Cleaning on Spark: rows per table on which the "
                                   "driver fixes what the cleaner decides from a whole table (day/month order, "
                                   "earliest plausible date).")


class RetrainConfig(Frozen):
    margin: float = Field(
        0.0, ge=0, description="Promote a challenger only if its primary metric beats the champion's by more than this."
    )
    trials: int = Field(20, ge=0, description="Optuna trials per retraining (pipelines that tune).")
    timeout: float | None = Field(None, gt=0, description="Seconds of tuning at most per retraining.")
    max_reject_share: float = Field(
        0.05, ge=0, le=1, description="Data check: stop without promoting if cleaning rejects more than this share."
    )
    min_customers: int = Field(100, ge=1, description="Data check: stop without promoting below this many customers.")
    max_staleness_days: int | None = Field(
        None, gt=0, description="Data check: stop if the last transaction is older than this many days before as_of."
    )


class VoiceConfig(Frozen):
    """The customer's voice (crmlab.voice): sentiment and complaint topics of customer texts, English and
    Chinese, computed offline. Texts come from the interactions table's text column (features, KPIs and
    the report) or from any frame of customer_id, ts and text (crmlab.voice.texts_frame)."""

    enabled: bool = Field(True, description="Build the sentiment features and the report's voice section when "
                          "the interactions table has the text column.")
    text_column: str | None = Field(
        None, description="Column of the interactions table holding the texts; empty: 'text' when the table has "
        "it (map yours with project.data.interactions.columns.text). A name given here must exist.",
    )
    language: Literal["auto", "en", "zh"] = Field(
        "auto", description="'auto': Chinese when a text has at least as many CJK ideographs as Latin words, else "
        "English; 'en'/'zh' scores every text in that language.",
    )
    recent_days: int = Field(
        90, gt=0, description="sentiment_trend = mean sentiment of the texts in the last recent_days before the "
        "cut-off minus that of the earlier ones; also the window of sentiment_mean_<recent_days>d.",
    )
    negative_threshold: float = Field(
        -0.05, ge=-1, lt=0, description="A text scoring at or below this is negative (VADER's -0.05; scores are "
        "in [-1, 1]).",
    )
    n_topics: int = Field(5, ge=1, le=50, description="Complaint topics (NMF over the negative texts) in the report.")
    n_terms: int = Field(8, ge=1, le=50, description="Keywords shown per topic and per period.")
    min_texts: int = Field(
        20, ge=1, description="Negative texts needed before topics are fitted; fewer: the report says so.",
    )


class ProjectConfig(Frozen):
    name: str = "crmlab"
    seed: int = 42
    data: DataConfig = Field(default_factory=DataConfig)
    as_of: date | None = Field(None, description="Cut-off date; empty means the last transaction date.")
    time_unit: Literal["D", "W", "M"] = Field(
        "W", description="Unit of frequency/recency/T: days, weeks (7 days) or months (30.4375 days)."
    )
    cleaning: CleaningConfig = Field(default_factory=CleaningConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    voice: VoiceConfig = Field(default_factory=VoiceConfig)


# --------------------------------------------------------------------------- pipelines


class SearchParam(Frozen):
    """One hyper-parameter of a tuning search space; ``name`` is its dotted path in the pipeline's
    config section (``lightgbm.num_leaves`` tunes ``churn.lightgbm.num_leaves``)."""

    name: str = Field(description="Dotted path inside the pipeline's section, e.g. lightgbm.learning_rate.")
    type: Literal["int", "float", "categorical"] = "float"
    low: float | None = None
    high: float | None = None
    log: bool = Field(False, description="Sample on a log scale (learning rates, regularisation).")
    choices: list[Any] | None = Field(None, description="The values of a categorical parameter.")

    @field_validator("name")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not v or any(not part for part in v.split(".")):
            raise ValueError(f"a search parameter needs a dotted name like lightgbm.num_leaves, got {v!r}")
        return v

    @model_validator(mode="after")
    def _bounds(self) -> SearchParam:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError(f"search parameter {self.name!r}: a categorical parameter needs choices")
        elif self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(f"search parameter {self.name!r}: needs low < high, got low={self.low} high={self.high}")
        elif self.log and self.low <= 0:
            raise ValueError(f"search parameter {self.name!r}: a log scale needs low > 0, got {self.low}")
        return self


class TuningConfig(Frozen):
    """Optuna tuning of one pipeline (``crmlab tune <pipeline>``, ``crmlab retrain``)."""

    trials: int = Field(20, ge=1, description="Trials per call; a second call adds as many to the same study.")
    timeout: float | None = Field(None, gt=0, description="Seconds per call at most.")
    pruner: Literal["median", "none"] = Field(
        "median", description="Stop unpromising trials early from their intermediate values (median rule)."
    )
    startup_trials: int = Field(5, ge=0, description="Random trials before TPE and pruning take over.")
    storage: Path | None = Field(
        None, description="SQLite file of the study; empty: <output.dir>/tuning/<pipeline>.db (resumable)."
    )
    study_name: str | None = Field(None, description="Empty: the pipeline's name.")
    search_space: list[SearchParam] = Field(default_factory=list)


class ClvConfig(Frozen):
    model: Literal["bgnbd", "pareto_nbd", "mbgnbd", "nbd"] = Field(
        "bgnbd", description="Purchase model; nbd is the NBD without dropout (BG/NBD's limit a -> 0)."
    )
    penalizer: float = Field(0.0, ge=0)
    spend_model: Literal["gamma_gamma", "mean"] = Field(
        "gamma_gamma", description="Spend per purchase: Gamma-Gamma, or the population mean spend for everyone."
    )
    gg_penalizer: float = Field(0.0, ge=0)
    fallback: bool = Field(
        True,
        description="When a fit fails: search larger penalties, then simpler models (NBD without dropout for "
        "purchases, the population mean for spend) and ship the first that fits, saying which; false: fail.",
    )
    spend_rule: Literal["exclude", "floor"] = Field(
        "exclude",
        description="Repeat customers with zero or negative mean spend: 'exclude' them from the Gamma-Gamma "
        "fit (they get the population mean spend) or 'floor' their spend at 0.01.",
    )
    horizon_months: int = Field(12, gt=0)
    discount_rate_monthly: float = Field(0.01, ge=0)
    margin: float = Field(1.0, gt=0, le=1)
    calibration_start: date | Literal["auto"] | None = Field(
        "auto", description="First purchases from this day on form the cohort; auto (or empty): the first transaction."
    )
    calibration_end: date | Literal["auto"] | None = Field(
        "auto", description="End of calibration; auto (or empty): project.as_of minus the holdout."
    )
    holdout_weeks: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto",
        description="Holdout length; auto: 39 weeks (Fader, Hardie and Lee's split), shortened to a third of the "
        "data's span (first transaction to as_of) when that is shorter, and said so in the run.",
    )
    challenger: bool = Field(
        True, description="Train the LightGBM spend challenger on an earlier window and compare it on the holdout."
    )
    purchase_challenger: bool = Field(
        True,
        description="Train a LightGBM Poisson challenger of the purchase counts on an earlier window (features at "
        "calibration_end minus L, purchases in the L days after) and a blend of it with clv.model, and judge both on "
        "the holdout (clv.ship decides which predicts expected purchases).",
    )
    ship: Literal["auto", "model", "lightgbm", "blend"] = Field(
        "auto",
        description="Which purchase model the bundle scores with: auto (the challenger or the blend only when its "
        "holdout mean squared error is significantly lower than clv.model's, else clv.model), model (clv.model), "
        "lightgbm or blend.",
    )
    blend_weight: Annotated[float, Field(ge=0, le=1)] | Literal["auto"] = Field(
        "auto",
        description="Weight of clv.model in the blend (1 - weight on LightGBM); auto: chosen on the earlier window "
        "(out-of-fold LightGBM predictions, never the holdout).",
    )
    interval: float = Field(
        0.8, gt=0, lt=1,
        description="Level of the per-customer CLV interval (clv_low, clv_high) from the fitted parameters' "
        "uncertainty (delta method).",
    )

    @model_validator(mode="after")
    def _ship_needs_challenger(self) -> ClvConfig:
        if self.ship in ("lightgbm", "blend") and not self.purchase_challenger:
            raise ValueError(f"ship={self.ship!r} needs the purchase challenger: set purchase_challenger to true "
                             "or ship to auto or model")
        return self


def _churn_search_space() -> list[SearchParam]:
    """LightGBM's usual levers; at most 31 leaves, since exact SHAP reasons slow down with leaves."""
    return [
        SearchParam(name="lightgbm.num_leaves", type="int", low=4, high=31),
        SearchParam(name="lightgbm.learning_rate", type="float", low=0.01, high=0.2, log=True),
        SearchParam(name="lightgbm.min_child_samples", type="int", low=5, high=300, log=True),
        SearchParam(name="lightgbm.feature_fraction", type="float", low=0.4, high=1.0),
        SearchParam(name="lightgbm.reg_lambda", type="float", low=1e-3, high=30.0, log=True),
    ]


def lightgbm_parameter_names() -> tuple[frozenset[str], frozenset[str]] | None:
    """(LightGBM's parameter names, the same with every alias), from LightGBM's own table, or None
    when this LightGBM cannot tell (then keys are not checked)."""
    try:
        from lightgbm.basic import _ConfigAliases

        table = _ConfigAliases._get_all_param_aliases()
    except Exception:  # an older or newer LightGBM without the table: nothing to check against
        return None
    return frozenset(table), frozenset(name for names in table.values() for name in names)


def _check_lightgbm_keys(section: str, params: dict[str, Any], own: Iterable[str] = ()) -> dict[str, Any]:
    """Refuse a key that is neither one of crmlab's own (``own``) nor a LightGBM parameter or alias:
    a misspelt ``num_leafs`` used to be passed on and ignored (31 leaves trained)."""
    names = lightgbm_parameter_names()
    if names is None:
        return params
    canonical, every = names[0] | set(own), names[1] | set(own)
    for key in params:
        if key not in every:
            near = (difflib.get_close_matches(str(key), sorted(canonical), n=1, cutoff=0.6)
                    or difflib.get_close_matches(str(key), sorted(every), n=1, cutoff=0.6))
            hint = f"did you mean {near[0]!r}?" if near else f"see {section}'s description and LightGBM's parameters"
            raise ValueError(f"{key!r} is not a LightGBM parameter ({hint})")
    return params


#: crmlab.churn.LightGBMChurn's own arguments, accepted in churn.lightgbm besides LightGBM's parameters.
CHURN_LIGHTGBM_ARGS = ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "feature_fraction",
                       "reg_lambda", "early_stopping_rounds", "validation_fraction", "num_threads")


class ChurnConfig(Frozen):
    """Churn: LightGBM against a logistic-regression and a BG/NBD baseline (see crmlab.churn.pipeline)."""

    mode: Literal["auto", "transactions", "contract"] = Field(
        "auto",
        description="'transactions': label = no purchase in the next horizon_days, snapshots stepping back; "
        "'contract': the customer table's own churn column, stratified split; 'auto': contract when the "
        "customer table has label_column, else transactions.",
    )
    horizon_days: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto",
        description="Transactions: churned = no purchase in this many days. auto: the longest of 182, 91, 60, 30 "
        "days for which the validation snapshot and two training snapshots (else one) fit in the data's span.",
    )
    label_column: str = Field("churn", description="Contract: the churn column of the customer table (Yes/No, 1/0...).")
    n_snapshots: Annotated[int, Field(ge=2)] | Literal["auto"] = Field(
        "auto", description="Transactions: snapshots in all, the latest (validation) one included; auto: up to 3, "
        "as many as fit in the data's span.",
    )
    snapshot_step_days: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="Transactions: days between training snapshots; auto: the horizon, at most 91."
    )
    validation_as_of: date | None = Field(
        None,
        description="Transactions: cut-off of the validation snapshot. Empty: project.as_of when the data cover "
        "the horizon after it, else the last transaction date minus horizon_days.",
    )
    test_size: float = Field(0.25, gt=0, lt=1, description="Contract: share of customers held out for testing.")
    cv_folds: int = Field(
        5, ge=2, description="Contract: stratified folds of the cross-validation on the training part, which "
        "chooses the shipped model (churn.ship auto) and the blend's weight."
    )
    cv_repeats: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="Contract: times the cross-validation is repeated with another shuffle, so that the "
        "choice between models is above the noise of one split; auto: 3 up to 20,000 training rows, else 1.")
    blend: bool = Field(
        True, description="Put the blend of LightGBM and the logistic regression on the leaderboard: its churn "
        "log-odds are w x LightGBM's + (1 - w) x the logistic regression's. Contract: w is chosen on out-of-fold "
        "predictions (each fold judged with a w chosen on the other folds); transactions: w = 0.5.")
    voice_ablation: bool = Field(
        True, description="When the features include the customer's voice (sentiment of texts, survey answers), "
        "the leaderboard adds LightGBM without them (lightgbm_without_voice, never shipped): DeLong against "
        "LightGBM says whether they help.")
    refit: bool = Field(
        True, description="Contract: after the choice, fit the shipped model again on every labelled row "
        "(training and test part) before export; its metrics are those of the same model fitted on the training "
        "part, measured on the test part. false: export the model that was measured.")
    top_k_percent: float = Field(
        10.0, gt=0, le=100, description="k of recall at the top k%, and the share contacted by threshold 'capacity'."
    )
    class_weight: Literal["balanced"] | None = Field(
        None, description="'balanced' weighs both classes alike (imbalance); calibrate the probabilities then."
    )
    ship: Literal["auto", "lightgbm", "logistic", "blend"] = Field(
        "auto", description="Which model is exported and scores. 'auto', contract: the best mean ROC AUC of the "
        "repeated cross-validation; transactions: LightGBM unless the logistic regression or the blend ranks "
        "significantly better on the validation snapshot (DeLong's 95% interval of the ROC AUC difference above 0), "
        "then the best of those. Or name one.")
    calibration: Literal["none", "isotonic", "sigmoid"] = Field(
        "none", description="Map LightGBM's scores to probabilities on a separate fold of the training rows."
    )
    calibration_fraction: float = Field(
        0.2, gt=0, lt=1, description="Share of training rows the calibration map is fitted on."
    )
    threshold: Literal["best_f1", "capacity", "profit"] = Field(
        "best_f1",
        description="Who is flagged: 'best_f1' the probability threshold of best F1 on the validation rows; "
        "'capacity' the top top_k_percent; 'profit' each customer with p * save_rate * value > offer_cost.",
    )
    offer_cost: float = Field(10.0, ge=0, description="Threshold 'profit': cost of one retention offer.")
    save_rate: float = Field(0.3, gt=0, le=1, description="Threshold 'profit': share of contacted churners kept.")
    value_column: str = Field(
        "amount_sum_365d", description="Threshold 'profit': the feature holding each customer's value."
    )
    risk_tier_edges: list[float] = Field(
        default_factory=lambda: [0.3, 0.6],
        description="Probability edges of the risk tiers low / medium / high (a probability on an edge goes up).",
    )
    p_alive_score: Literal["no_purchase", "p_alive"] = Field(
        "no_purchase",
        description="The BG/NBD baseline's score: P(no purchase in the horizon) or 1 - P(alive) (which ties "
        "every one-time buyer at 0).",
    )
    reasons: Literal["path", "shap", "none"] = Field(
        "path",
        description="How scoring explains each customer: 'path' = path attributions (Saabas) by a compiled walk "
        "of the trees that also gives the probability (3.4 million customers' reasons add ~8 s to scoring on 2 "
        "cores; on CDNOW the top reason is SHAP's for 79-96% of customers, within SHAP's top three for ~99%), "
        "'shap' = exact TreeSHAP from LightGBM (~10,000 customers/s on 2 cores: notebooks, small bases), "
        "'none' = reason columns left empty.",
    )
    lightgbm: dict[str, Any] = Field(
        default_factory=lambda: {"num_leaves": 7, "learning_rate": 0.1, "min_child_samples": 100},
        description="LightGBM settings: crmlab.churn.LightGBMChurn arguments (n_estimators, learning_rate, "
        "num_leaves, min_child_samples, feature_fraction, reg_lambda, early_stopping_rounds) or raw LightGBM "
        "parameters. Small trees by default (7 leaves, at least 100 rows per leaf, learning rate 0.1): on CDNOW "
        "(validation 1997-12-30) their ROC AUC moves 0.802-0.805 across seeds where 15 leaves of 20 rows moved "
        "0.784-0.802, with 47 trees; scoring and reasons cost grows with trees and leaves (31 leaves make exact "
        "SHAP reasons ~7x slower for no better AUC).",
    )

    tuning: TuningConfig = Field(
        default_factory=lambda: TuningConfig(search_space=_churn_search_space()),
        description="crmlab tune churn: trials, timeout, pruner and the LightGBM search space.",
    )

    @field_validator("risk_tier_edges")
    @classmethod
    def _edges(cls, v: list[float]) -> list[float]:
        if len(v) != 2 or not 0 < v[0] < v[1] < 1:
            raise ValueError(f"risk_tier_edges needs two ascending probabilities in (0, 1), got {v}")
        return v

    @field_validator("lightgbm")
    @classmethod
    def _lightgbm_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_lightgbm_keys("churn.lightgbm", v, CHURN_LIGHTGBM_ARGS)


class SegmentationConfig(Frozen):
    """Behavioural segments (``crmlab train segmentation``): K-means on scaled customer features,
    with k chosen by a sweep, profiles, names and stability; formulas in crmlab.segmentation."""

    features: list[str] = Field(
        default_factory=lambda: ["recency_days", "frequency", "monetary_value"], min_length=1,
        description="Numeric columns of the shared features (crmlab features build) to cluster on.",
    )
    transform: Literal["log", "standard", "quantile"] = Field(
        "log", description="log: log1p then z-score (skewed money and counts); standard: z-score; "
        "quantile: each feature's empirical CDF, then z-score.",
    )
    k: int | None = Field(None, ge=2, description="Fixed k; empty means choose by a sweep over k_range.")
    k_range: tuple[int, int] = Field((2, 10), description="Smallest and largest k of the sweep (inclusive).")
    k_selection: Literal["silhouette", "calinski_harabasz", "davies_bouldin", "elbow"] = Field(
        "silhouette", description="The sweep picks the best k by this criterion among the stable ones.",
    )
    n_init: int = Field(4, ge=1, description="K-means restarts per fit (the best inertia is kept).")
    minibatch_threshold: int = Field(
        200_000, ge=1, description="Customers above which the final model is MiniBatchKMeans instead of KMeans.",
    )
    sample_size: int = Field(
        10_000, ge=100, description="Customers (a seeded sample) the k sweep and the stability runs fit on.",
    )
    silhouette_sample: int = Field(
        5_000, ge=100, description="Customers (a seeded sample) the silhouette is computed on (it is quadratic).",
    )
    stability_runs: int = Field(
        3, ge=1, description="Bootstrap refits per k in the sweep, and seeds plus bootstraps for the chosen k.",
    )
    stability_threshold: float = Field(
        0.8, gt=0, le=1, description="Mean adjusted Rand index below which a k is flagged unstable.",
    )
    min_customers: int = Field(
        50, ge=2, description="Customers with a purchase below which K-means is not tried: the fallback ships.",
    )
    fallback: Literal["rfm", "single"] = Field(
        "rfm", description="What ships when K-means cannot (too few customers, no stable k): the RFM segments "
        "or one segment of all purchasers. An unstable K-means is never shipped.",
    )

    @model_validator(mode="after")
    def _check_k_range(self) -> SegmentationConfig:
        lo, hi = self.k_range
        if lo < 2 or hi < lo:
            raise ValueError(f"segmentation.k_range={list(self.k_range)}: need 2 <= smallest <= largest")
        return self


ForecastModel = Literal["seasonal_naive", "naive", "ets", "arima", "lightgbm", "combination"]


def _forecast_tuning() -> TuningConfig:
    """LightGBM parameters and lag sets; a lag set is a comma-separated string (Optuna's categorical
    values must be scalars), turned into ``forecast.lags`` by crmlab.forecast.tune."""
    return TuningConfig(search_space=[
        SearchParam(name="lightgbm.learning_rate", type="float", low=0.01, high=0.3, log=True),
        SearchParam(name="lightgbm.num_leaves", type="int", low=4, high=63, log=True),
        SearchParam(name="lightgbm.min_data_in_leaf", type="int", low=2, high=30, log=True),
        SearchParam(name="lightgbm.num_boost_round", type="int", low=50, high=600, log=True),
        SearchParam(name="lags", type="categorical",
                    choices=["1,2,3", "1,2,3,4,6,12", "1,2,3,4,8,13", "1,2,3,4,8,13,26,52"]),
    ])


class ForecastConfig(Frozen):
    source: Literal["auto", "transactions", "sales"] = Field(
        "auto", description="Where the series come from; 'auto' = project.data.sales when configured, else transactions."
    )
    target: Literal["revenue", "orders", "active_customers"] = Field(
        "revenue", description="From transactions: net amount, orders (distinct order_id, else rows with amount > 0) "
        "or distinct customers per period."
    )
    freq: Literal["D", "W", "M"] = Field("W", description="Day, week (Monday-Sunday) or calendar month.")
    target_name: str | None = Field(
        None, description="Name of the forecast quantity in outputs; empty: the target (transactions) or the sales "
        "table's value column (its mapped name).",
    )
    group_by: str | None = Field(None, description="Transactions column (category, region, ...): one series per value.")
    horizon: int = Field(13, gt=0, description="Periods to forecast (shrunk, with a note, when the history is short).")
    stale_series: Literal["exclude", "forecast_from_own_end", "error"] = Field(
        "exclude", description="Series of a sales table whose last period is more than stale_after periods before "
        "the latest series' last period: 'exclude' them (named in a note), forecast each from its own end (the "
        "forecast dated from there), or stop with an error naming them.",
    )
    stale_after: int | None = Field(
        None, gt=0, description="Periods behind the latest series' end from which a series is stale; empty: horizon "
        "(its whole forecast would lie in the others' observed past).",
    )
    season_length: int | None = Field(None, gt=0, description="Periods per season; empty: 7 (D), 52 (W), 12 (M).")
    partial_period: Literal["drop", "keep"] = Field(
        "drop", description="A last period that ends after the cut-off: 'drop' it, or 'keep' it (flagged in the run)."
    )
    models: list[ForecastModel] = Field(
        default_factory=lambda: ["seasonal_naive", "naive", "ets", "arima", "lightgbm", "combination"],
        description="Models compared on the backtest; seasonal_naive is always added as the accuracy gate. "
        "'combination' is the mean of the configured ets, arima and lightgbm (two or more needed).",
    )
    selection: Literal["fallback", "overall", "per_series"] = Field(
        "fallback", description="Ship the model with the lowest backtest MASE over all series ('overall'); "
        "'fallback': the same, except that a series where a baseline (seasonal_naive, naive) had a lower "
        "backtest MASE and less error at more than half of its origins ships that baseline; 'per_series': each "
        "series its own lowest backtest MASE.",
    )
    combination_weights: Literal["equal", "inverse_mase"] = Field(
        "inverse_mase", description="The combination's weights: equal, or 1 / backtest MASE of each member (in the "
        "backtest from earlier origins only, so its figures stay honest).",
    )
    origins: int = Field(8, ge=1, description="Rolling-origin backtest: number of forecast origins.")
    origin_step: int | None = Field(
        None, gt=0, description="Periods between origins; empty: max(1, horizon // 4)."
    )
    lags: list[int] | None = Field(None, description="LightGBM lags; empty: by freq (lags beyond the history are dropped).")
    lightgbm: dict[str, Any] = Field(default_factory=dict, description="LightGBM parameters over crmlab's defaults "
                                     "(LightGBM's names or aliases, e.g. num_leaves, learning_rate, num_boost_round).")
    covariates: list[str] = Field(
        default_factory=list, description="Known-in-advance numeric columns of the sales table (LightGBM features)."
    )
    tuning: TuningConfig = Field(
        default_factory=_forecast_tuning, description="crmlab tune forecast: LightGBM parameters and lags by backtest MASE on "
        "origins before the training backtest's; the tuned values are kept only when they beat the defaults on "
        "the training backtest's origins."
    )

    @field_validator("lags")
    @classmethod
    def _positive_lags(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(lag <= 0 for lag in v)):
            raise ValueError(f"lags must be positive period counts, got {v}")
        return None if v is None else sorted(set(v))

    @field_validator("lightgbm")
    @classmethod
    def _lightgbm_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        return _check_lightgbm_keys("forecast.lightgbm", v)

    @field_validator("models")
    @classmethod
    def _combination_members(cls, v: list[str]) -> list[str]:
        members = [m for m in ("ets", "arima", "lightgbm") if m in v]
        if "combination" in v and len(members) < 2:
            raise ValueError(f"models={v}: combination is the mean of two or more of ets, arima, lightgbm; "
                             f"found {members or 'none'}")
        return v


class CrosssellConfig(Frozen):
    """Cross-sell (``crmlab train crosssell``): product affinity (association rules) and item-item
    recommendations of items not yet bought, judged against the popularity baseline on a time holdout;
    formulas in crmlab.crosssell."""

    item_column: str = Field(
        "product_id", min_length=1, description="Transactions column whose values are recommended: product_id or "
        "category (canonical names; map your own in project.data.transactions.columns).",
    )
    k: int = Field(3, ge=1, le=50, description="Recommendations per customer (crmlab score: next_product_1..k); "
                   "the holdout judges the models at this k.")
    horizon_days: Annotated[int, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="Holdout: the models learn from purchases up to as_of minus this and are judged on the "
        "items customers first buy in it. auto: 90 days, at most a quarter of the data's span.",
    )
    min_item_count: int = Field(5, ge=1, description="Baskets an item must be in to be recommended or ruled on.")
    min_pair_count: int = Field(3, ge=1, description="Baskets a pair must share to count (rules and item-item "
                                "scores); rarer pairs count as never bought together.")
    smoothing: float = Field(10.0, gt=0, description="Pseudo-baskets that shrink a pair's lift towards 1 in the "
                             "item-item score.")
    min_lift: float = Field(1.5, ge=1, description="Shrunk lift below which a pair adds nothing to the item-item "
                            "score (keeps chance co-occurrences out).")
    max_rules: int = Field(200, ge=1, description="Rules (by lift) kept in the bundle's report table.")
    ship: Literal["auto", "itemitem", "popularity"] = Field(
        "auto", description="What the bundle recommends with: auto ships item-item only when it beats the "
        "popularity baseline on hit rate@k with the sign test's p below alpha; else popularity.",
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the paired sign test (ship: auto).")
    bootstrap: int = Field(2000, ge=100, description="Resamples of the paired bootstrap of MAP@k.")


class KpiConfig(Frozen):
    """CRM KPIs (``crmlab kpis``) and the HTML report (``crmlab report``); formulas in crmlab.kpis."""

    period: Literal["M", "W", "Q"] = Field("M", description="KPI period: month, week (Monday-Sunday) or quarter.")
    cohort_period: Literal["M", "W", "Q"] = Field("M", description="Period of the acquisition-cohort matrix.")
    cac_source: Literal["auto", "customers", "marketing_spend", "none"] = Field(
        "auto",
        description="Where acquisition cost comes from: 'auto' = the marketing_spend table when configured, else "
        "the customers table's acquisition_cost_column when present, else no CAC.",
    )
    acquisition_cost_column: str = Field("acquisition_cost", description="Customers column: cost to acquire one.")
    acquisition_channel_column: str = Field(
        "acquisition_channel", description="Customers column: acquisition channel (CAC by channel with spend)."
    )
    segment_column: str | None = Field(
        None, description="Customers column to group revenue by (e.g. plan); empty: segment_table or RFM segments."
    )
    segment_table: Path | None = Field(
        None,
        description="CSV/Parquet with customer_id and segment_name or segment (e.g. segmentation scores); "
        "empty: segment_column or the built-in RFM segments.",
    )
    funnel_stages: list[str] = Field(
        default_factory=lambda: ["lead", "qualified", "opportunity", "won"],
        description="Funnel stages of the leads table, in order (compared case-insensitively).",
    )
    funnel_exit_stages: list[str] = Field(
        default_factory=lambda: ["lost", "closed_lost", "disqualified"],
        description="Stages that end a lead without advancing it (a lead only with these reached the first stage).",
    )
    clv_source: Literal["auto", "bundle", "fit", "none"] = Field(
        "auto",
        description="BG/NBD CLV next to the simple formula: 'bundle' scores with models/clv, 'fit' fits the clv "
        "section's models on the data, 'auto' = bundle if one exists else fit, 'none' skips it.",
    )
    top_customers: int = Field(10, ge=0, description="Rows of the report's top-customers table.")
    show_customer_ids: bool = Field(
        False, description="Report: show customer ids in the top-customers table instead of short pseudonyms."
    )
    format: Literal["csv", "parquet"] = Field("csv", description="File format of the KPI tables.")
    satisfaction_level: float = Field(
        0.95, gt=0, lt=1, description="Confidence level of the NPS and CSAT intervals (normal for NPS, Wilson for "
        "CSAT).")
    satisfaction_small_n: int = Field(
        100, ge=1, description="NPS/CSAT of fewer answers than this get a note with their margin of error "
        "('NPS of 40 answers: +/-15 points').")

    @field_validator("funnel_stages")
    @classmethod
    def _stages(cls, v: list[str]) -> list[str]:
        low = [s.strip().lower() for s in v]
        if len(low) < 2 or len(set(low)) != len(low) or not all(low):
            raise ValueError(f"funnel_stages needs at least two distinct non-empty stages, got {v}")
        return v


class LifecycleConfig(Frozen):
    """Lifecycle stages (``crmlab lifecycle``, columns of ``crmlab score``, ``crmlab kpis``); the rules are
    evaluated in a fixed order, the first that holds gives the stage (README "Lifecycle stages",
    crmlab.lifecycle)."""

    typical_gap_days: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="The base's typical gap between purchase days, which one-time buyers are judged by "
        "and every customer's own gap is shrunk towards; auto: the median over the repeat customers of their "
        "mean gap at the cut-off.")
    prior_gaps: float = Field(
        1.0, ge=0, description="Shrinkage of a customer's usual gap: its gaps are averaged with this many gaps of "
        "the typical length (0: the customer's own mean gap; one-time buyers then use the typical gap).")
    lapsed_gaps: float = Field(
        3.0, gt=0, description="lapsed: no purchase for at least this many usual gaps (recency / usual gap); "
        "reactivated: the last purchase ended a silence of at least this many earlier usual gaps.")
    at_risk_gaps: float = Field(
        1.5, gt=0, description="at_risk: no purchase for at least this many usual gaps.")
    lapsed_p_alive: float = Field(
        0.1, ge=0, le=1, description="lapsed also when P(alive) of the CLV model is below this.")
    at_risk_p_alive: float = Field(
        0.5, ge=0, le=1, description="at_risk also when P(alive) of the CLV model is below this.")
    use_p_alive: Literal["auto"] | bool = Field(
        "auto", description="Use the CLV bundle's P(alive): auto when a CLV model is there (models/clv, or the "
        "one crmlab score scores with), true (an error without one), false.")
    trend_gaps: float = Field(
        3.0, gt=0, description="Spend trend: spend in the last W days over spend in the W days before, with W = "
        "this many usual gaps of the customer (about this many purchases per window).")
    growth_ratio: float = Field(1.25, gt=1, description="growing: spend trend at least this.")
    decline_ratio: float = Field(0.5, gt=0, lt=1, description="at_risk: spend trend at most this.")
    new_days: Annotated[float, Field(gt=0)] | Literal["auto"] = Field(
        "auto", description="new: first purchase at most this many days before the cut-off; auto: the typical gap.")
    in_scores: bool = Field(True, description="Add lifecycle_stage and its inputs to crmlab score's table.")

    @model_validator(mode="after")
    def _ordered(self) -> LifecycleConfig:
        if self.at_risk_gaps >= self.lapsed_gaps:
            raise ValueError(f"at_risk_gaps={self.at_risk_gaps} should be below lapsed_gaps={self.lapsed_gaps}")
        if self.lapsed_p_alive > self.at_risk_p_alive:
            raise ValueError(f"lapsed_p_alive={self.lapsed_p_alive} should be at most "
                             f"at_risk_p_alive={self.at_risk_p_alive}")
        return self


class CrmlabConfig(Frozen):
    project: ProjectConfig = Field(default_factory=ProjectConfig)
    churn: ChurnConfig = Field(default_factory=ChurnConfig)
    clv: ClvConfig = Field(default_factory=ClvConfig)
    segmentation: SegmentationConfig = Field(default_factory=SegmentationConfig)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    crosssell: CrosssellConfig = Field(default_factory=CrosssellConfig)
    kpis: KpiConfig = Field(default_factory=KpiConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)

    def section(self, name: str) -> dict[str, Any]:
        """The resolved config of one pipeline (or of ``kpis``): the project section plus that one's."""
        if name not in SECTIONS:
            raise ConfigError(f"unknown pipeline {name!r}; choose one of {', '.join(SECTIONS[1:])}")
        out = {"project": self.project.model_dump(mode="json")}
        if name != "project":
            out[name] = getattr(self, name).model_dump(mode="json")
        return out


# --------------------------------------------------------------------------- loading


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a scalar that looks like a date but is not one
    (``2024-13-01``) stays text, so the field's validation names the key and the value instead of
    the YAML reader stopping with ``ValueError: month must be in 1..12``."""


def _timestamp_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_yaml_timestamp(node)
    except (ValueError, OverflowError):
        return loader.construct_scalar(node)


_YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    """A YAML mapping; a key given twice is an error (PyYAML would keep the last one silently)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"the key {key!r} is given twice (lines {seen[key]} and {key_node.start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


_YamlLoader.add_constructor("tag:yaml.org,2002:map", _mapping_without_duplicates)


def _yaml_problem(exc: Exception) -> str:
    """One line describing a YAML error: what and where (line and column, 1-based)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        what = " ".join(str(p) for p in (exc.context, exc.problem) if p) or type(exc).__name__
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{what}{where}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _load_yaml_text(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_file(path: str | Path, what: str = "config file") -> Any:
    """The YAML document in ``path``; every way it can be unreadable is a one-line ConfigError
    naming the file (missing, a folder, not UTF-8, binary, not YAML)."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, expected a YAML {what}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            f"save the {what} as UTF-8"
        ) from None
    if "\x00" in text:
        raise ConfigError(f"{path}: a binary file (it holds NUL bytes), expected a YAML {what}")
    try:
        return _load_yaml_text(text)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml_file(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values at the top level, got {type(data).__name__}")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path}: top-level key {bad[0]!r} is not a name; keys are names like as_of or horizon_days")
    return data


def parse_overrides(items: list[str] | tuple[str, ...]) -> list[tuple[list[str], Any]]:
    """Parse ``a.b=c`` strings; values are read as YAML (numbers, lists, dates, null); a value that
    is not valid YAML is taken as text."""
    out = []
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set clv.penalizer=0.01")
        path = [p for p in key.strip().split(".") if p]
        if path[0] not in SECTIONS:
            hint = difflib.get_close_matches(path[0], SECTIONS, n=1)
            raise ConfigError(
                f"--set {item!r}: the key must start with one of {', '.join(SECTIONS)}"
                + (f" (did you mean {hint[0]!r}?)" if hint else ", e.g. project.as_of=2024-06-30")
            )
        try:
            value = _load_yaml_text(raw) if raw.strip() else None
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            value = raw
        out.append((path, value))
    return out


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[path[-1]] = value


def _valid_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names valid at the parent of ``loc`` (for 'did you mean')."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            ann = current.model_fields[part].annotation
            args = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                current = ann
            elif args:
                current = args[0]
            else:
                return []
        else:
            return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


#: Location parts that pydantic adds for the members of a union (``date | Literal['auto']``): not keys.
_UNION_TAGS = {"date", "datetime", "int", "float", "str", "bool", "none", "dict", "list"}


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part in _UNION_TAGS or part.startswith("constrained-"))


def explain_validation_error(exc: ValidationError, sources: dict[str, str]) -> str:
    """One clause per offending key: the file it came from, the key, what was expected and the value.
    The members of a union (a date or 'auto') are said in one clause, not one per member."""
    lines: dict[str, str] = {}
    union: dict[str, tuple[str, list[str], Any]] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        while loc and _is_union_tag(loc[-1]):
            loc = loc[:-1]
        key = ".".join(str(p) for p in loc)
        where = sources.get(str(loc[0]), "defaults") if loc else "defaults"
        if err["type"] == "extra_forbidden":
            valid = _valid_keys(CrmlabConfig, loc)
            hint = difflib.get_close_matches(str(loc[-1]), valid, n=1)
            msg = f"{where}: unknown key {key!r}"
            msg += f" (did you mean {hint[0]!r}?)" if hint else f" (valid keys: {', '.join(valid)})" if valid else ""
            lines[key + "!extra"] = msg
        elif len(loc) < len(err["loc"]):
            _, msgs, value = union.setdefault(key, (where, [], err.get("input")))
            msgs.append(err["msg"])
            lines[key] = ""
        else:
            lines[key] = f"{where}: {key}: {err['msg']} (got {_shown(err.get('input'))})"
    for key, (where, msgs, value) in union.items():
        lines[key] = f"{where}: {key}: {' or '.join(msgs)} (got {_shown(value)})"
    return "; ".join(lines.values())


_SECRET = re.compile(r"(://[^/@:\s]*:)[^@/\s]*@|(password=)[^&\s'\"]*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with the password of any database URI in it replaced by ``***``."""
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "***" + ("@" if m.group(1) else ""), text)


def _shown(value: Any) -> str:
    """A value as an error message shows it: its repr, without any password it holds."""
    return redact(repr(value))


def _missing_dir_message(cdir: Path) -> str:
    """'configs/x does not exist', with the nearest existing folder beside it when one is close."""
    parent = cdir.parent
    near: list[str] = []
    if parent.is_dir():
        try:
            folders = [p.name for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except OSError:
            folders = []
        near = difflib.get_close_matches(cdir.name, folders, n=1, cutoff=0.6)
    msg = f"config folder {str(cdir)!r} does not exist"
    if near:
        return msg + f" (did you mean {str(parent / near[0])!r}?)"
    return msg + "; give a folder of YAML config files (crmlab init writes one)"


def _section_files(cdir: Path) -> dict[str, Path]:
    """The section files of a config folder; ``<section>.yml`` is read like ``<section>.yaml``, and a
    file whose name is a near miss of a section (``chrun.yaml``) is an error, not silently ignored."""
    found: dict[str, Path] = {}
    for section in SECTIONS:
        paths = [p for p in (cdir / f"{section}.yaml", cdir / f"{section}.yml") if p.exists()]
        if len(paths) == 2:
            raise ConfigError(f"{paths[0]} and {paths[1]}: two files for section {section!r}; keep one")
        if paths:
            found[section] = paths[0]
    for p in sorted(cdir.glob("*.y*ml")):
        if p.suffix in (".yaml", ".yml") and p.stem not in SECTIONS:
            near = difflib.get_close_matches(p.stem, SECTIONS, n=1, cutoff=0.75)
            if near:
                raise ConfigError(
                    f"{p}: not a config section, so it would be ignored (did you mean {near[0]}{p.suffix}?); "
                    f"sections: {', '.join(SECTIONS)}"
                )
    return found


def load_config(
    config_dir: str | Path | None = "configs",
    overrides: list[str] | tuple[str, ...] = (),
    *,
    must_exist: bool = False,
) -> CrmlabConfig:
    """Resolve the configuration: model defaults <- ``config_dir/*.yaml`` <- ``overrides``.

    A missing file just means that section's defaults. A missing ``config_dir`` means defaults too,
    unless ``must_exist`` (the command line's explicit ``--config-dir``): then it is an error naming
    the folder and the nearest existing one. ``overrides`` are ``section.key=value`` strings, as
    given to ``--set``.
    """
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_dir is not None:
        cdir = Path(config_dir)
        if cdir.exists() and not cdir.is_dir():
            raise ConfigError(f"{cdir}: expected a folder of YAML config files, this is a file")
        if must_exist and not cdir.is_dir():
            raise ConfigError(_missing_dir_message(cdir))
        if cdir.is_dir():
            for section, path in _section_files(cdir).items():
                raw[section] = _read_yaml(path)
                sources[section] = str(path)
    for path, value in parse_overrides(overrides):
        raw = copy.deepcopy(raw)
        _set_path(raw, path, value)
        sources[path[0]] = f"{sources.get(path[0], 'defaults')} + --set"
    try:
        return CrmlabConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(explain_validation_error(exc, sources)) from None


def config_hash(cfg: BaseModel | dict[str, Any]) -> str:
    """Stable short hash of a (resolved) config, for manifests and run tags."""
    data = cfg.model_dump(mode="json") if isinstance(cfg, BaseModel) else cfg
    blob = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def with_overrides(cfg: CrmlabConfig, overrides: dict[str, Any]) -> CrmlabConfig:
    """A copy of ``cfg`` with a nested dict of values merged in (validated again)."""

    def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        out = dict(base)
        for k, v in extra.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    return CrmlabConfig.model_validate(merge(cfg.model_dump(), overrides))
