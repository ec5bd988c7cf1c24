"""Training sets for churn: snapshots of a transaction history, or a contract table with its own label.

Transaction-based business (``make_snapshot_dataset``)
    The validation snapshot is ``as_of``: features from :func:`~crmlab.features.build_features` at
    ``as_of`` and labels from :func:`~crmlab.features.churn_label` over ``(as_of, as_of + horizon]``.
    Training snapshots end ``horizon_days`` earlier, at ``as_of - horizon_days``, and step back
    ``step_days`` at a time, so the label window of every training row closes on or before the
    validation cut-off: nothing the model is trained on comes from the period it is judged on.
    Never a random split of one period. The population of a snapshot: customers with a purchase on
    or before its cut-off.

Contract business (``make_contract_dataset``)
    A customer table with its own churn column and no transactions: labels are parsed into 0/1
    (:func:`parse_churn_labels`) and the rows split at random, stratified by the label.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from crmlab.config import VoiceConfig
from crmlab.errors import DataError
from crmlab.features import DEFAULT_PII_COLUMNS, DEFAULT_WINDOWS, as_of_date, build_features, churn_label

__all__ = [
    "HORIZON_LADDER",
    "MIN_ROWS",
    "NEGATIVE_LABELS",
    "POSITIVE_LABELS",
    "ChurnDataset",
    "ChurnWindows",
    "make_contract_dataset",
    "make_snapshot_dataset",
    "parse_churn_labels",
    "resolve_windows",
    "training_snapshot_dates",
]

log = logging.getLogger(__name__)

POSITIVE_LABELS = frozenset({"yes", "y", "1", "1.0", "true", "t", "churned", "churn", "是", "流失", "已流失"})
NEGATIVE_LABELS = frozenset({"no", "n", "0", "0.0", "false", "f", "active", "retained", "否", "未流失", "正常"})
MIN_ROWS = 20
"""Fewest labelled rows a churn model is trained on (and at least 2 of each class)."""
_MIN_PER_CLASS = 2


@dataclass
class ChurnDataset:
    """Features and 0/1 labels, split into a training and a validation (or test) part.

    ``X_*`` are feature frames without ``customer_id`` (ids are in ``ids_*``, labels in ``y_*``,
    all aligned by position). ``snapshot_train`` gives each training row's cut-off date
    (transaction mode); ``as_of`` is the validation cut-off.
    """

    X_train: pd.DataFrame
    y_train: pd.Series
    X_valid: pd.DataFrame
    y_valid: pd.Series
    ids_train: pd.Series
    ids_valid: pd.Series
    mode: str
    as_of: date | None = None
    snapshot_train: pd.Series | None = None
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- labels


def _label_key(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    return str(value).strip().lower()


def parse_churn_labels(values: pd.Series, *, column: str = "churn", frame: pd.DataFrame | None = None,
                       file: str | None = None) -> pd.Series:
    """Labels as int8 0/1: Yes/No, 1/0, True/False, y/n, churned/active, 是/否, 流失/未流失 (any case,
    spaces ignored).

    Raises :class:`~crmlab.errors.DataError` naming the column, the unexpected values (missing ones
    included) and an example row of ``frame`` (or of the values) when anything else appears.
    """
    keys = pd.Series([_label_key(v) for v in values.tolist()], index=values.index, dtype=object)
    pos = keys.isin(POSITIVE_LABELS).to_numpy()
    neg = keys.isin(NEGATIVE_LABELS).to_numpy()
    bad = ~(pos | neg)
    if bad.any():
        raw = values[bad]
        shown = sorted({repr(v) if _label_key(v) is not None else "(missing)" for v in raw.tolist()})[:10]
        first = int(np.flatnonzero(bad)[0])
        example = (frame.iloc[first].to_dict() if frame is not None else {column: values.iloc[first]})
        raise DataError(
            f"{int(bad.sum())} label value(s) other than the two expected: {', '.join(shown)}",
            file=file, column=column,
            expected="churned/active as Yes/No, 1/0, True/False, y/n, churned/active or 是/否 (any case)",
            example=example,
        )
    return pd.Series(pos.astype(np.int8), index=values.index, name=column)


def _check_labels(y: pd.Series, *, what: str, column: str, file: str | None) -> None:
    n = len(y)
    if n < MIN_ROWS:
        raise DataError(f"{what} has only {n} labelled row(s); at least {MIN_ROWS} are needed to train a churn "
                        "model", file=file, column=column)
    counts = y.value_counts()
    if len(counts) < 2:
        only = int(counts.index[0]) if len(counts) else None
        raise DataError(f"{what}: every one of the {n} rows has the same label {only} "
                        f"({'churned' if only == 1 else 'active'}); a classifier needs both classes",
                        file=file, column=column)
    if counts.min() < _MIN_PER_CLASS:
        rare = int(counts.idxmin())
        raise DataError(f"{what}: only {int(counts.min())} row(s) with label {rare}; at least {_MIN_PER_CLASS} "
                        "of each class are needed", file=file, column=column)


# --------------------------------------------------------------------------- contract business


def make_contract_dataset(
    customers: pd.DataFrame,
    interactions: pd.DataFrame | None = None,
    *,
    label_column: str = "churn",
    as_of: date | datetime | str | None = None,
    test_size: float = 0.25,
    seed: int = 42,
    pii_columns: Iterable[str] = DEFAULT_PII_COLUMNS,
    drop_columns: Iterable[str] = (),
    windows: Sequence[int] = DEFAULT_WINDOWS,
    voice: VoiceConfig | None = None,
    surveys: pd.DataFrame | None = None,
) -> ChurnDataset:
    """Features of a customer table with its own churn column; stratified train/test split. With
    ``surveys``, the survey features of the answers dated on or before ``as_of``.

    ``as_of`` (for ``tenure_days`` and interaction windows) defaults to the latest ``signup_date``,
    else to 2000-01-01 (then tenure is unknown anyway). The label column never becomes a feature.
    """
    file = customers.attrs.get("source")
    if label_column not in customers.columns:
        raise DataError(f"no churn label column {label_column!r}", file=file,
                        expected=f"one of the columns {list(map(str, customers.columns))[:12]} "
                        "(set churn.label_column)")
    if as_of is None:
        signup = customers["signup_date"] if "signup_date" in customers.columns else None
        as_of = (pd.Timestamp(signup.max()).date() if signup is not None and signup.notna().any()
                 else date(2000, 1, 1))
    y_all = parse_churn_labels(customers[label_column], column=label_column, frame=customers, file=file)
    _check_labels(y_all, what="the customer table", column=label_column, file=file)
    feats = build_features(None, customers, interactions, as_of=as_of, pii_columns=pii_columns,
                           drop_columns=drop_columns, windows=windows, label_column=label_column, voice=voice,
                           surveys=surveys)
    labels = pd.Series(y_all.to_numpy(), index=customers["customer_id"].astype("str").to_numpy())
    labels = labels[~labels.index.duplicated()]
    y = labels.reindex(feats["customer_id"].to_numpy())
    if y.isna().any():
        raise DataError(f"{int(y.isna().sum())} customer(s) without a label after building features",
                        file=file, column=label_column)
    y = pd.Series(y.to_numpy(np.int8), name="churn")
    _check_labels(y, what="the customers in the population", column=label_column, file=file)
    n_test = int(round(len(y) * test_size))
    if n_test < _MIN_PER_CLASS or len(y) - n_test < _MIN_PER_CLASS:
        raise DataError(f"test_size={test_size} leaves {n_test} of {len(y)} rows for testing", file=file)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=test_size, random_state=seed,
                                           stratify=y.to_numpy())
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    X = feats.drop(columns="customer_id")
    ids = feats["customer_id"]
    return ChurnDataset(
        X_train=X.iloc[idx_train].reset_index(drop=True), y_train=y.iloc[idx_train].reset_index(drop=True),
        X_valid=X.iloc[idx_test].reset_index(drop=True), y_valid=y.iloc[idx_test].reset_index(drop=True),
        ids_train=ids.iloc[idx_train].reset_index(drop=True), ids_valid=ids.iloc[idx_test].reset_index(drop=True),
        mode="contract", as_of=as_of_date(as_of),
        info={"n_rows": len(y), "churn_rate": float(y.mean()), "test_size": test_size, "seed": seed},
    )


# --------------------------------------------------------------------------- transaction business


#: Horizons ``churn.horizon_days: auto`` tries, longest first.
HORIZON_LADDER: tuple[int, ...] = (182, 91, 60, 30)
#: Snapshots in all (validation included) that auto aims for, and the longest auto step between them.
AUTO_SNAPSHOTS = 3
AUTO_MAX_STEP_DAYS = 91
#: Days of history a snapshot needs before its cut-off (its customers' features look back over them).
MIN_HISTORY_DAYS = 30


@dataclass(frozen=True)
class ChurnWindows:
    """The resolved dates of a transaction-mode churn dataset: the horizon, the validation cut-off,
    the number of snapshots and their step, and a note saying how auto values were chosen."""

    horizon_days: int
    validation_as_of: date
    n_snapshots: int
    step_days: int
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"horizon_days": self.horizon_days, "validation_as_of": str(self.validation_as_of),
                "n_snapshots": self.n_snapshots, "step_days": self.step_days, "note": self.note}


def _validation_cut(horizon: int, first: date, last: date, as_of: date, fixed: date | None) -> date:
    if fixed is not None:
        return fixed
    h = timedelta(days=horizon)
    return as_of if as_of + h <= last else as_of - h


def _training_that_fit(cut: date, horizon: int, step: int, first: date, at_most: int) -> int:
    """How many training snapshots (at most ``at_most``) have MIN_HISTORY_DAYS of data before them."""
    dates = training_snapshot_dates(cut, horizon_days=horizon, n_train=at_most, step_days=step)
    return sum(d >= first + timedelta(days=MIN_HISTORY_DAYS) for d in dates)


def _days_needed(horizon: int, step: int, n_train: int) -> int:
    """Span (first transaction to the last) the snapshots need when as_of is the last date."""
    return MIN_HISTORY_DAYS + (n_train - 1) * step + 2 * horizon


def resolve_windows(horizon_days: int | str, n_snapshots: int | str, step_days: int | str, *,
                    first: date, last: date, as_of: date, validation_as_of: date | None = None) -> ChurnWindows:
    """The churn windows from the config and the data's span (``first`` to ``last`` transaction).

    ``horizon_days`` auto: the longest of :data:`HORIZON_LADDER` for which the validation snapshot
    (with its labels inside the data) and two training snapshots, each with MIN_HISTORY_DAYS of
    history before it, fit; else the longest for which one does. ``snapshot_step_days`` auto: the
    horizon, at most 91 days; ``n_snapshots`` auto: up to 3, as many as fit. Explicit values win;
    a DataError names the span and what is needed when nothing fits, or when explicit values leave
    no training snapshot (or fewer than ``n_snapshots - 1``) inside the data."""
    auto_h, auto_n, auto_step = horizon_days == "auto", n_snapshots == "auto", step_days == "auto"
    span = (last - first).days
    where = f"the data span {span} days ({first} to {last})"
    if validation_as_of is None and as_of > last:
        raise DataError(f"project.as_of={as_of} is after the last transaction ({last}): its validation "
                        "labels would count the days with no data as days without a purchase (an empty holdout); "
                        f"set project.as_of on or before {last} (or leave it auto); a cut-off after it is taken "
                        "as silence only within the longest gap the base has had between two purchase days",
                        column="ts")

    def step_for(h: int) -> int:
        return min(h, AUTO_MAX_STEP_DAYS) if auto_step else int(step_days)

    candidates = HORIZON_LADDER if auto_h else (int(horizon_days),)
    wanted = AUTO_SNAPSHOTS - 1 if auto_n else int(n_snapshots) - 1
    chosen: tuple[int, int] | None = None
    for need in ((wanted, 1) if auto_n else (wanted,)):
        for h in candidates:
            cut = _validation_cut(h, first, last, as_of, validation_as_of)
            if cut + timedelta(days=h) > last or cut < first + timedelta(days=MIN_HISTORY_DAYS):
                continue
            if _training_that_fit(cut, h, step_for(h), first, wanted) >= need:
                chosen = (h, need)
                break
        if chosen:
            break
    if chosen is None:
        h = candidates[-1]
        if auto_h:
            raise DataError(f"{where}: too short for a churn model; the shortest horizon, {h} days, needs "
                            f"{_days_needed(h, step_for(h), 1)} days ({MIN_HISTORY_DAYS} days of history, a "
                            f"training snapshot, its {h}-day label window, then the validation snapshot's)",
                            expected="a longer transaction history, or churn labels in the customer table")
        n_text = "one training snapshot" if auto_n else f"{wanted} training snapshot(s) (churn.n_snapshots={n_snapshots})"
        raise DataError(f"{where}: churn.horizon_days={h} with {n_text} every {step_for(h)} days needs "
                        f"{_days_needed(h, step_for(h), 1 if auto_n else wanted)} days"
                        + (f" with the validation snapshot at churn.validation_as_of={validation_as_of}"
                           if validation_as_of else "")
                        + "; set a shorter churn.horizon_days (or auto)"
                        + ("" if auto_n else ", fewer churn.n_snapshots (or auto)"),
                        expected="snapshots that fit in the data's span")
    h, need = chosen
    cut = _validation_cut(h, first, last, as_of, validation_as_of)
    n_train = _training_that_fit(cut, h, step_for(h), first, wanted) if auto_n else wanted
    windows = ChurnWindows(h, cut, n_train + 1, step_for(h))
    notes = []
    if auto_h and h != HORIZON_LADDER[0]:
        longer = HORIZON_LADDER[HORIZON_LADDER.index(h) - 1]
        notes.append(f"churn horizon {h} days (auto): {where}; a {longer}-day horizon needs "
                     f"{_days_needed(longer, step_for(longer), need)} days for {need} training snapshot(s)")
    elif auto_h:
        notes.append(f"churn horizon {h} days (auto): {where}")
    if auto_n and n_train < wanted:
        notes.append(f"{n_train} training snapshot(s) instead of {wanted}: the older ones would have less than "
                     f"{MIN_HISTORY_DAYS} days of history")
    note = "; ".join(notes)
    if note:
        log.info("%s", note)
    return ChurnWindows(windows.horizon_days, windows.validation_as_of, windows.n_snapshots, windows.step_days, note)



def training_snapshot_dates(as_of: date | datetime | str, *, horizon_days: int, n_train: int,
                            step_days: int) -> list[date]:
    """Cut-offs of the training snapshots, oldest first: the last is ``as_of - horizon_days``, so
    its label window ends on the validation cut-off; the others step back ``step_days`` each."""
    last = as_of_date(as_of) - timedelta(days=int(horizon_days))
    return [last - timedelta(days=int(step_days) * k) for k in range(int(n_train) - 1, -1, -1)]


def _snapshot(transactions, customers, interactions, *, cut: date, horizon_days: int,
              feature_kwargs: dict[str, Any]) -> tuple[pd.DataFrame, pd.Series]:
    feats = build_features(transactions, customers, interactions, as_of=cut, **feature_kwargs)
    feats = feats[feats["frequency"].notna().to_numpy()].reset_index(drop=True)  # bought on or before cut
    y = churn_label(transactions, feats["customer_id"], as_of=cut, horizon_days=horizon_days)
    return feats, pd.Series(y.to_numpy(np.int8), name="churn")


def make_snapshot_dataset(
    transactions: pd.DataFrame,
    customers: pd.DataFrame | None = None,
    interactions: pd.DataFrame | None = None,
    *,
    as_of: date | datetime | str,
    horizon_days: int = 182,
    n_snapshots: int = 3,
    step_days: int = 91,
    time_unit: str = "W",
    windows: Sequence[int] = DEFAULT_WINDOWS,
    pii_columns: Iterable[str] = DEFAULT_PII_COLUMNS,
    drop_columns: Iterable[str] = (),
    voice: VoiceConfig | None = None,
    surveys: pd.DataFrame | None = None,
) -> ChurnDataset:
    """Training rows from ``n_snapshots - 1`` earlier snapshots, validation rows at ``as_of``.

    See the module doc for the dates. ``surveys`` adds the survey features (answers up to each
    snapshot's cut-off only). Snapshots without any customer are skipped (logged).
    Raises :class:`~crmlab.errors.DataError` when the training or validation part is too small or
    has a single class.
    """
    if int(n_snapshots) < 2:
        raise ValueError(f"n_snapshots={n_snapshots!r} should be >= 2 (training snapshots + the validation one)")
    cut = as_of_date(as_of)
    kwargs = {"time_unit": time_unit, "windows": windows, "pii_columns": pii_columns, "drop_columns": drop_columns,
              "voice": voice, "surveys": surveys}
    train_dates = training_snapshot_dates(cut, horizon_days=horizon_days, n_train=int(n_snapshots) - 1,
                                          step_days=step_days)
    parts, labels, dates = [], [], []
    for d in train_dates:
        feats, y = _snapshot(transactions, customers, interactions, cut=d, horizon_days=horizon_days,
                             feature_kwargs=kwargs)
        if len(feats) == 0:
            log.info("churn snapshot %s has no customer with a purchase on or before it: skipped", d)
            continue
        parts.append(feats)
        labels.append(y)
        dates.append(pd.Series([d] * len(feats)))
    file = transactions.attrs.get("source")
    if not parts:
        raise DataError(f"no customer has a purchase on or before the training snapshot(s) "
                        f"{', '.join(map(str, train_dates))} (as_of {cut} minus horizon {horizon_days} days)",
                        file=file, expected="an earlier history, a later as_of or a shorter churn.horizon_days")
    train = pd.concat(parts, ignore_index=True)
    # categories differ between snapshots: union them so every part shares one dtype
    for col in parts[0].columns:
        if isinstance(parts[0][col].dtype, pd.CategoricalDtype):
            cats = sorted(set().union(*(p[col].cat.categories for p in parts)))
            train[col] = pd.Categorical(train[col].astype(object), categories=cats)
    y_train = pd.concat(labels, ignore_index=True)
    valid, y_valid = _snapshot(transactions, customers, interactions, cut=cut, horizon_days=horizon_days,
                               feature_kwargs=kwargs)
    _check_labels(y_train, what=f"the training snapshots {', '.join(map(str, _dates_unique(dates)))}",
                  column="churn", file=file)
    _check_labels(y_valid, what=f"the validation snapshot {cut}", column="churn", file=file)
    return ChurnDataset(
        X_train=train.drop(columns="customer_id"), y_train=y_train,
        X_valid=valid.drop(columns="customer_id"), y_valid=y_valid,
        ids_train=train["customer_id"], ids_valid=valid["customer_id"],
        mode="transactions", as_of=cut, snapshot_train=pd.concat(dates, ignore_index=True),
        info={"train_snapshots": [str(d) for d in _dates_unique(dates)], "valid_snapshot": str(cut),
              "horizon_days": int(horizon_days), "n_train": len(train), "n_valid": len(valid),
              "churn_rate_train": float(y_train.mean()), "churn_rate_valid": float(y_valid.mean())},
    )


def _dates_unique(dates: list[pd.Series]) -> list[date]:
    return [s.iloc[0] for s in dates if len(s)]
