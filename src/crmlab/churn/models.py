"""Churn classifiers on the feature frame of :func:`~crmlab.features.build_features`.

* :class:`LightGBMChurn`: the main model; LightGBM with native categoricals (pandas ``category``
  columns), optional class weighting, early stopping on a validation fold; seeded and deterministic.
* :class:`LogisticChurn`: baseline; median-impute and scale numbers, one-hot categories.
* :class:`PAliveChurn`: baseline for transaction data; BG/NBD (crmlab's
  :class:`~crmlab.clv.models.TransactionModel`) on ``frequency``, ``recency``, ``T``; the churn
  score is ``1 - P(alive)`` or, with ``score="no_purchase"``, the BG/NBD probability of no
  purchase over the horizon.
* :class:`CalibratedChurn`: wraps any of them; fits the model on one part of the rows and an
  isotonic or sigmoid (Platt) map from score to probability on a separate fold.

All take ``X`` as a DataFrame (a ``customer_id`` column, if present, is ignored) and follow
scikit-learn's conventions: ``fit`` returns self, ``predict_proba`` returns two columns. Every
``fit`` takes ``groups`` (each row's customer): the models with an inner fold keep a customer's
rows on one side of it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from crmlab.churn import _paths
from crmlab.clv.models import TransactionModel
from crmlab.errors import ModelError

log = logging.getLogger(__name__)

__all__ = ["CalibratedChurn", "LightGBMChurn", "LogisticChurn", "PAliveChurn", "feature_frame", "holdout_split"]

_ID = "customer_id"
_UNIT_DAYS = {"D": 1.0, "W": 7.0, "M": 30.4375}


def feature_frame(X: pd.DataFrame) -> pd.DataFrame:
    """``X`` without ``customer_id``; raises ModelError for anything but a non-empty DataFrame."""
    if not isinstance(X, pd.DataFrame):
        raise ModelError(f"churn models take the feature DataFrame, got {type(X).__name__}")
    return X.drop(columns=_ID) if _ID in X.columns else X


def _labels(y: Any) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or not np.isin(arr, (0, 1)).all():
        raise ModelError(f"churn labels must be 0/1, got values {sorted(set(np.unique(arr).tolist()))[:5]}")
    if np.unique(arr).size < 2:
        raise ModelError(f"all {arr.size} labels are {arr[0]}; a classifier needs both classes")
    return arr.astype(np.int8)


def category_codes(values: pd.Series, levels: list[str], *, missing: str | None = None) -> np.ndarray:
    """Each value's position in ``levels``, the values compared as text (``str(value)``); -1 for a
    value not among them. A missing value counts as the text ``missing`` (None: it is -1). A
    categorical column's categories are turned into text once, not each of its values (scoring
    codes millions of customers)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        index = pd.Index(levels, dtype=object)
        at = index.get_indexer(np.array([str(c) for c in values.cat.categories], dtype=object))
        codes = values.cat.codes.to_numpy()
        out = np.where(codes >= 0, at[np.maximum(codes, 0)] if len(at) else -1, -1)
        if missing is not None:
            out[codes < 0] = index.get_loc(missing) if missing in index else -1
        return out.astype(np.int64)
    filled = values.astype(object).where(values.notna(), missing)
    return pd.Categorical([None if v is None else str(v) for v in filled], categories=levels).codes.astype(np.int64)


def _check_columns(model: Any, X: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in model.feature_names_in_ if c not in X.columns]
    if missing:
        raise ModelError(f"{len(missing)} feature(s) seen in fit are missing: {missing[:5]}")
    return X[list(model.feature_names_in_)]


def holdout_split(n: int, y: np.ndarray, fraction: float, seed: int, groups: Any = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Rows to fit on and rows held out (``fraction`` of them, stratified by ``y``). With ``groups``
    (the customer of each row, when rows come from several snapshots) a customer's rows all go to
    the same side: a held-out row whose customer is also in the fitted part would be a near copy of
    a training row, and early stopping or calibration judged on it would be judged on leaked data."""
    if groups is None:
        a, b = train_test_split(np.arange(n), test_size=fraction, random_state=seed, stratify=y)
        return np.sort(a), np.sort(b)
    codes = pd.factorize(np.asarray(groups))[0]
    if codes.size != n:
        raise ModelError(f"groups has {codes.size} values for {n} rows")
    # stratify customers by their share of churned rows (0, some, all), then hold out whole customers
    n_groups = int(codes.max()) + 1
    share = np.bincount(codes, weights=y, minlength=n_groups) / np.bincount(codes, minlength=n_groups)
    strata = np.digitize(share, [1e-9, 1 - 1e-9])
    if np.unique(strata, return_counts=True)[1].min() < 2:  # a stratum too small to split
        strata = None
    _, held = train_test_split(np.arange(n_groups), test_size=fraction, random_state=seed, stratify=strata)
    out = np.isin(codes, held)
    if np.unique(y[out]).size < 2 or np.unique(y[~out]).size < 2:
        raise ModelError(f"holding out {fraction:.0%} of the customers leaves a single class on one side; "
                         "use more rows or a larger fraction")
    return np.flatnonzero(~out), np.flatnonzero(out)


# --------------------------------------------------------------------------- LightGBM


class LightGBMChurn(ClassifierMixin, BaseEstimator):
    """LightGBM binary classifier on the feature frame.

    Parameters
    ----------
    n_estimators : maximum boosting rounds; early stopping picks the best round on the
        validation fold (``eval_set`` given to :meth:`fit`, else ``validation_fraction`` of the
        training rows, stratified). ``early_stopping_rounds=0`` turns early stopping off.
    class_weight : None or ``"balanced"`` (weights rows so both classes weigh the same), the
        class-imbalance option. Balanced weights distort probabilities: calibrate afterwards.
    num_threads : LightGBM's threads; 1 by default: on tens of thousands of rows a second thread saves
        little, and on a machine whose cores are busy the threads wait for each other at every
        barrier (5-10x slower); set ``churn.lightgbm.num_threads`` for millions of rows.
    params : extra LightGBM parameters (``config.churn.lightgbm``); they override the above.

    Attributes: ``booster_`` (lightgbm.Booster), ``best_iteration_``, ``feature_names_in_``,
    ``categorical_features_``, ``feature_medians_`` (numeric training medians, for reasons).
    """

    def __init__(self, *, n_estimators: int = 1000, learning_rate: float = 0.05, num_leaves: int = 31,
                 min_child_samples: int = 20, feature_fraction: float = 0.9, reg_lambda: float = 0.0,
                 class_weight: str | None = None, early_stopping_rounds: int = 50,
                 validation_fraction: float = 0.2, seed: int = 42, num_threads: int = 1,
                 params: dict[str, Any] | None = None) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.feature_fraction = feature_fraction
        self.reg_lambda = reg_lambda
        self.class_weight = class_weight
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.num_threads = num_threads
        self.params = params

    def lgb_params(self) -> dict[str, Any]:
        """The LightGBM parameters used by :meth:`fit`."""
        out = {
            "objective": "binary", "learning_rate": self.learning_rate, "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples, "feature_fraction": self.feature_fraction,
            "lambda_l2": self.reg_lambda, "seed": self.seed, "num_threads": self.num_threads,
            "deterministic": True, "force_row_wise": True, "verbose": -1,
        }
        out.update(self.params or {})
        return out

    def _weights(self, y: np.ndarray) -> np.ndarray | None:
        if self.class_weight is None:
            return None
        if self.class_weight != "balanced":
            raise ModelError(f"class_weight={self.class_weight!r}: choose None or 'balanced'")
        pos = y.mean()
        return np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos))

    @classmethod
    def from_booster(cls, booster: lgb.Booster, *, features: list[str], categorical_features: list[str],
                     feature_medians: dict[str, float], **init: Any) -> LightGBMChurn:
        """A fitted model around a booster read from LightGBM's text format (an exported bundle), so
        that scoring and reasons run the same code as training without unpickling anything."""
        model = cls(**init)
        model.booster_ = booster
        model.best_iteration_ = int(booster.current_iteration())
        model.feature_names_in_ = np.array(list(features), dtype=object)
        model.n_features_in_ = len(features)
        model.categorical_features_ = list(categorical_features)
        model.feature_medians_ = {str(k): float(v) for k, v in feature_medians.items()}
        model.classes_ = np.array([0, 1])
        return model

    def fit(self, X: pd.DataFrame, y: Any, *, groups: Any = None, eval_set: tuple[pd.DataFrame, Any] | None = None,
            callbacks: list[Any] | None = None) -> LightGBMChurn:
        """Fit; ``groups`` (each row's customer, when rows come from several snapshots) keeps a
        customer's rows on one side of the early-stopping fold; ``callbacks`` are extra LightGBM
        callbacks (tuning prunes trials with one)."""
        X = feature_frame(X)
        y = _labels(y)
        self.feature_names_in_ = np.array([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = X.shape[1]
        self.categorical_features_ = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
        num = X.drop(columns=self.categorical_features_)
        self.feature_medians_ = {str(c): float(v) for c, v in num.astype(float).median().items()}
        stop = int(self.early_stopping_rounds) > 0
        if stop and eval_set is None:
            tr, va = holdout_split(len(y), y, self.validation_fraction, self.seed, groups)
            X_fit, y_fit, X_val, y_val = X.iloc[tr], y[tr], X.iloc[va], y[va]
        elif stop:
            X_fit, y_fit = X, y
            X_val, y_val = feature_frame(eval_set[0])[list(X.columns)], _labels(eval_set[1])
        else:
            X_fit, y_fit, X_val, y_val = X, y, None, None
        self.classes_ = np.array([0, 1])
        params = self.lgb_params()
        # leaves of min_child_samples rows each: on a small table (a few hundred rows) a setting made for
        # tens of thousands allows no split at all and the model is a constant; shrink it and say so
        cap = max(5, len(y_fit) // 20)
        notes = []
        if int(params["min_child_samples"]) > cap:
            notes.append(f"min_child_samples {int(params['min_child_samples'])} -> {cap}: only {len(y_fit):,} rows "
                         "to fit on (at most a twentieth of them per leaf)")
            params["min_child_samples"] = cap
        self.min_child_samples_ = int(params["min_child_samples"])
        # the same for a category's rows (LightGBM's min_data_per_group, 100 by default): on a few hundred
        # rows a level of a plan or region column could never be split off on its own
        if self.categorical_features_ and int(params.get("min_data_per_group", 100)) > cap:
            notes.append(f"min_data_per_group {int(params.get('min_data_per_group', 100))} -> {cap}: categories "
                         f"on {len(y_fit):,} rows")
            params["min_data_per_group"] = cap
        train = lgb.Dataset(X_fit, label=y_fit, weight=self._weights(y_fit), categorical_feature="auto",
                            free_raw_data=False)
        valid_sets, stopping = [], []
        if X_val is not None:
            valid_sets = [lgb.Dataset(X_val, label=y_val, weight=self._weights(y_val), reference=train)]
            stopping = [lgb.early_stopping(int(self.early_stopping_rounds), verbose=False)]
        self.booster_ = lgb.train(params, train, num_boost_round=int(self.n_estimators),
                                  valid_sets=valid_sets, callbacks=[*stopping, *(callbacks or [])])
        self.best_iteration_ = int(self.booster_.best_iteration or self.booster_.current_iteration())
        trees = self.booster_.dump_model(num_iteration=self.best_iteration_)["tree_info"]
        if not any("split_index" in t["tree_structure"] for t in trees):
            notes.append(f"LightGBM found no split in {len(y_fit):,} rows: it scores every customer alike")
        self.note_ = "; ".join(notes)
        if self.note_:
            log.warning("churn LightGBM: %s", self.note_)
        return self

    def _prepare(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "booster_")
        return _check_columns(self, feature_frame(X))

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Raw score (log-odds of churn)."""
        return self.booster_.predict(self._prepare(X), num_iteration=self.best_iteration_, raw_score=True)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = self.booster_.predict(self._prepare(X), num_iteration=self.best_iteration_)
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int8)

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """SHAP values on the log-odds scale (LightGBM's ``pred_contrib=True``): one column per
        feature plus ``bias``; each row sums to :meth:`decision_function`."""
        X = self._prepare(X)
        values = self.booster_.predict(X, num_iteration=self.best_iteration_, pred_contrib=True)
        return pd.DataFrame(values, columns=[*map(str, X.columns), "bias"], index=X.index)

    def path_contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Path attributions on the log-odds scale, same layout as :meth:`contributions` (each row
        sums to :meth:`decision_function`), at a fraction of the cost: each tree's step-by-step
        change of expected value along the customer's decision path goes to the split's feature
        (Saabas; what ``treeinterpreter`` computes). Linear in the depth instead of quadratic;
        unlike SHAP it can over-credit features split on near the root. For scoring large bases
        (``churn.reasons: path``): a compiled walk of the trees (``crmlab.churn._paths``, numba) with
        LightGBM's own decision rules, about 1 million customers/s per core on a 266-tree model."""
        X = self._prepare(X)
        values = _paths.path_values(self._forest()[0], _paths.lgb_matrix(self.booster_, X))
        return pd.DataFrame(values, columns=[*map(str, X.columns), "bias"], index=X.index)

    def _forest(self) -> tuple[_paths.Forest, float | None]:
        """The trees as flat arrays, and the sigmoid parameter of a ``binary`` objective (else None)."""
        cached = getattr(self, "_forest_cache", None)
        if cached is None:
            dump = self.booster_.dump_model(num_iteration=self.best_iteration_)
            objective = str(dump.get("objective", "")).split()
            sigmoid = None
            if objective[:1] == ["binary"]:
                found = [float(p.split(":", 1)[1]) for p in objective[1:] if p.startswith("sigmoid:")]
                sigmoid = found[0] if found else None
            cached = self._forest_cache = (_paths.flatten(dump["tree_info"]), sigmoid)
        return cached

    def top_path_reasons(self, X: pd.DataFrame, n: int, *, risk_only: bool = False, scale: float = 1.0,
                         extra: np.ndarray | None = None, extra_raw: np.ndarray | None = None,
                         linear: LinearChurn | None = None) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
        """What scoring needs from :meth:`path_contributions`, in one walk of the trees per customer:
        the churn probability (bit for bit :meth:`predict_proba`'s, the raw score being added up tree
        by tree as LightGBM does; None unless the objective is LightGBM's ``binary``), and per row
        the columns of the ``n`` largest attributions (by size; only positive ones with
        ``risk_only``; -1 for none) and their values (NaN for none). A blend gives ``scale`` (its weight of
        the trees) and another model's log-odds contributions ``extra`` (rows x features, in
        ``feature_names_in_`` order) and log-odds ``extra_raw``: the attributions and the probability
        are then the blend's (:func:`crmlab.churn._paths.top_path_reasons`). Instead of ``extra``, a
        blend with a regression on the same numbers passes it as ``linear`` (weight ``1 - scale``): its
        terms are computed in the walk (:meth:`LinearChurn.fused_terms`; None: not possible here)."""
        X = self._prepare(X)
        forest, sigmoid = self._forest()
        matrix, n_features = _paths.lgb_input(self.booster_, X)
        fused = None
        if linear is not None:
            fused = linear.fused_terms([str(c) for c in X.columns], 1 - scale)
            if fused is None:
                raise ModelError("the logistic regression's terms cannot be computed in the walk of the trees here "
                                 "(categories, other features or too many): pass its contributions as extra")
        prob, cols, values = _paths.top_path_reasons(forest, matrix, n, risk_only=risk_only, sigmoid=sigmoid or 1.0,
                                                     scale=scale, extra=extra, extra_raw=extra_raw,
                                                     n_features=n_features, linear=fused)
        fixed = sigmoid is not None or extra is not None or linear is not None
        return (prob if fixed else None), cols, values


# --------------------------------------------------------------------------- logistic regression


class LogisticChurn(ClassifierMixin, BaseEstimator):
    """Logistic regression baseline: numbers median-imputed and standardised, categories one-hot
    (missing as their own level, unseen levels ignored)."""

    def __init__(self, *, C: float = 1.0, class_weight: str | None = None, max_iter: int = 2000,
                 seed: int = 42) -> None:
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.seed = seed

    @staticmethod
    def _clean(X: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
        out = X.copy()
        for c in out.columns:
            if c in categorical:
                out[c] = out[c].astype(object).where(out[c].notna(), "__missing__").astype(str)
            else:
                out[c] = out[c].astype(float).replace([np.inf, -np.inf], np.nan)
        return out

    def fit(self, X: pd.DataFrame, y: Any, *, groups: Any = None) -> LogisticChurn:
        """Fit on all rows (no inner fold, so ``groups`` is accepted for a common signature and unused)."""
        X = feature_frame(X)
        y = _labels(y)
        self.feature_names_in_ = np.array([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = X.shape[1]
        self.categorical_features_ = [c for c in X.columns
                                      if isinstance(X[c].dtype, pd.CategoricalDtype) or X[c].dtype == object
                                      or pd.api.types.is_string_dtype(X[c].dtype)]
        numeric = [c for c in X.columns if c not in self.categorical_features_]
        pre = ColumnTransformer([
            ("num", make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()),
             numeric),
            ("cat", OneHotEncoder(handle_unknown="ignore"), self.categorical_features_),
        ])
        pipeline = Pipeline([
            ("prepare", pre),
            ("model", LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter,
                                         random_state=self.seed)),
        ])
        # one BLAS thread: L-BFGS on tens of columns does matrix-vector products too small to share out,
        # and two threads on a busy machine wait for each other (4x slower on 47,140 x 50). It also makes
        # the fit independent of the machine's core count: OpenBLAS sums in another order on another
        # number of threads, and L-BFGS stops at a point within its tolerance that differs by ~1e-9
        # (CDNOW's churn log loss moved by 1e-10, the probabilities by up to 2e-8 against two threads)
        with threadpool_limits(limits=1):
            self.pipeline_ = pipeline.fit(self._clean(X, self.categorical_features_), y)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        X = _check_columns(self, feature_frame(X))
        return self.pipeline_.predict_proba(self._clean(X, self.categorical_features_))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int8)


class LinearChurn:
    """A fitted :class:`LogisticChurn` as plain numbers (JSON in a bundle, no pickle) and its exact scorer:
    the numbers median-imputed and standardised, each category its one-hot coefficient (an unseen one
    none), the churn log-odds the intercept plus one contribution per feature. The contributions are
    the customer's reasons: a number's is measured from the training mean, a category's from no level."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = dict(spec)
        self.features: list[str] = list(spec["features"])
        self.numeric: list[str] = list(spec["numeric"])
        self.categorical: dict[str, list[str]] = {k: list(v) for k, v in spec["categorical"].items()}
        self.medians = dict(zip(self.numeric, spec["medians"], strict=True))
        self._num = (np.asarray(spec["medians"], dtype=np.float64), np.asarray(spec["means"], dtype=np.float64),
                     np.asarray(spec["scales"], dtype=np.float64), np.asarray(spec["coef_numeric"], dtype=np.float64))
        self._cat = {k: np.asarray(v, dtype=np.float64) for k, v in spec["coef_categorical"].items()}
        self.intercept = float(spec["intercept"])

    @classmethod
    def from_model(cls, model: LogisticChurn) -> LinearChurn:
        check_is_fitted(model, "pipeline_")
        pre, lr = model.pipeline_.named_steps["prepare"], model.pipeline_.named_steps["model"]
        names = [str(c) for c in model.feature_names_in_]
        categorical = [str(c) for c in model.categorical_features_]
        numeric = [c for c in names if c not in categorical]
        num_pipe = pre.named_transformers_["num"] if numeric else None
        coef = lr.coef_[0].astype(np.float64)
        spec: dict[str, Any] = {"features": names, "numeric": numeric, "categorical": {}, "coef_categorical": {},
                                "intercept": float(lr.intercept_[0])}
        if numeric:
            imputer, scaler = num_pipe.named_steps["simpleimputer"], num_pipe.named_steps["standardscaler"]
            spec.update(medians=imputer.statistics_.astype(np.float64).tolist(), means=scaler.mean_.tolist(),
                        scales=scaler.scale_.tolist(), coef_numeric=coef[:len(numeric)].tolist())
        else:
            spec.update(medians=[], means=[], scales=[], coef_numeric=[])
        at = len(numeric)
        if categorical:
            encoder = pre.named_transformers_["cat"]
            for col, cats in zip(categorical, encoder.categories_, strict=True):
                spec["categorical"][col] = [str(c) for c in cats]
                spec["coef_categorical"][col] = coef[at:at + len(cats)].tolist()
                at += len(cats)
        if at != coef.size:  # pragma: no cover - a change in sklearn's column order would show here
            raise ModelError(f"logistic export: {coef.size} coefficients for {at} encoded columns")
        return cls(spec)

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """One log-odds contribution per row and feature (columns in ``features`` order)."""
        out = np.zeros((len(X), len(self.features)), dtype=np.float64)
        medians, means, scales, coef = self._num
        if self.numeric:  # the numbers as one block: a chunk of a large base is scored here
            block = X[self.numeric]
            if all(dtype == np.float64 for dtype in block.dtypes):  # no missing-value markers to convert
                # one copy, in the row-major layout the rest (and the row sums) work on
                x = np.array(block.to_numpy(dtype=np.float64, copy=False), dtype=np.float64, order="C", copy=True)
            else:
                x = np.asarray(block.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
            np.copyto(x, medians, where=~np.isfinite(x))  # in place: the same numbers as np.where
            x -= means
            x *= coef / scales
            at = [self.features.index(c) for c in self.numeric]
            if at == list(range(len(self.features))):  # every feature a number, in order: x is the result
                return x
            if at == list(range(len(at))):
                out[:, :len(at)] = x
            else:
                out[:, at] = x
        for j, col in enumerate(self.features):
            if col in self._cat:
                codes = category_codes(X[col], self.categorical[col], missing="__missing__")
                weights = self._cat[col]
                out[:, j] = np.where(codes >= 0, weights[np.maximum(codes, 0)], 0.0) if weights.size else 0.0
        return out

    def fused_terms(self, columns: list[str], weight: float
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float] | None:
        """What a compiled walk needs to compute :meth:`contributions` x ``weight`` and the log-odds
        itself, row by row (:func:`crmlab.churn._paths.top_path_reasons`): medians, means and
        ``coef / scale`` in ``columns``' order, the intercept and the weight; None unless this model
        has exactly those features, all numbers, and at most ``MAX_FUSED_FEATURES`` of them."""
        if self.features != list(columns) or self.categorical or self.numeric != self.features or (
                len(columns) > _paths.MAX_FUSED_FEATURES):
            return None
        medians, means, scales, coef = self._num
        return medians, means, coef / scales, self.intercept, float(weight)

    def log_odds(self, contributions: np.ndarray) -> np.ndarray:
        """The churn log-odds: the intercept plus the row's :meth:`contributions` (sklearn's decision function)."""
        return self.intercept + contributions.sum(axis=1)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.log_odds(self.contributions(X))))
        return np.column_stack([1.0 - p, p])


# --------------------------------------------------------------------------- BG/NBD P(alive)


class PAliveChurn(ClassifierMixin, BaseEstimator):
    """BG/NBD baseline: fitted on ``frequency``, ``recency``, ``T`` (labels are not used).

    ``score="p_alive"``: churn score ``1 - P(alive)`` (Fader, Hardie and Lee 2008, note 021). Note
    that BG/NBD holds every one-time buyer alive (P = 1), so they all tie at 0.
    ``score="no_purchase"``: probability of no purchase in the next ``horizon_days``,
    ``1 - P(alive) * (1 - ((alpha + T) / (alpha + T + h)) ** (r + x))`` (given alive, the purchase
    rate is Gamma(r + x, alpha + T) and no dropout happens without a purchase).
    Customers without a purchase (NaN frequency) get the training mean score.
    When BG/NBD does not fit the histories (a few accounts: the optimum lies on a -> 0), the baseline
    is what :func:`crmlab.clv.fallback.fit_purchase_model` ships (a penalised BG/NBD or NBD, whose
    P(alive) is 1), and ``note_`` says so.
    """

    def __init__(self, *, score: str = "p_alive", horizon_days: float = 182, time_unit: str = "W",
                 penalizer: float = 0.0) -> None:
        self.score = score
        self.horizon_days = horizon_days
        self.time_unit = time_unit
        self.penalizer = penalizer

    @staticmethod
    def _rfm(X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        missing = [c for c in ("frequency", "recency", "T") if c not in X.columns]
        if missing:
            raise ModelError(f"the P(alive) baseline needs transaction features; missing {missing}")
        x, tx, T = (X[c].to_numpy(float) for c in ("frequency", "recency", "T"))
        ok = np.isfinite(x) & np.isfinite(tx) & np.isfinite(T)
        return x, tx, T, ok

    def _raw(self, X: pd.DataFrame) -> np.ndarray:
        x, tx, T, ok = self._rfm(feature_frame(X))
        out = np.full(len(x), np.nan)
        if ok.any():
            alive = self.model_.probability_alive(x[ok], tx[ok], T[ok])
            if self.score == "p_alive":
                out[ok] = 1 - alive
            else:
                p = self.model_.params_
                h = self.horizon_days / _UNIT_DAYS[self.time_unit]
                quiet = ((p["alpha"] + T[ok]) / (p["alpha"] + T[ok] + h)) ** (p["r"] + x[ok])
                out[ok] = 1 - alive * (1 - quiet)
        return out

    def fit(self, X: pd.DataFrame, y: Any = None, *, groups: Any = None) -> PAliveChurn:
        """Fit BG/NBD on the rows' histories (labels and ``groups`` unused)."""
        if self.score not in ("p_alive", "no_purchase"):
            raise ModelError(f"score={self.score!r}: choose 'p_alive' or 'no_purchase'")
        if self.time_unit not in _UNIT_DAYS:
            raise ModelError(f"time_unit={self.time_unit!r}: choose one of {', '.join(_UNIT_DAYS)}")
        x, tx, T, ok = self._rfm(feature_frame(X))
        try:
            self.model_ = TransactionModel("bgnbd", penalizer=self.penalizer).fit(x[ok], tx[ok], T[ok])
            self.note_ = ""
        except ModelError:
            # a small log leaves BG/NBD on its boundary (no dropout): the CLV pipeline's fallback, said in a note
            from crmlab.clv.fallback import fit_purchase_model
            from crmlab.config import ClvConfig

            self.model_, notes = fit_purchase_model(x[ok], tx[ok], T[ok],
                                                    ClvConfig(model="bgnbd", penalizer=self.penalizer))
            self.note_ = "; ".join(notes)
        self.classes_ = np.array([0, 1])
        raw = self._raw(X)
        self.fill_ = float(np.nanmean(raw)) if np.isfinite(raw).any() else 0.5
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "model_")
        s = self._raw(X)
        s = np.clip(np.where(np.isnan(s), self.fill_, s), 0.0, 1.0)
        return np.column_stack([1 - s, s])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int8)


# --------------------------------------------------------------------------- calibration


class CalibratedChurn(ClassifierMixin, BaseEstimator):
    """A churn model whose scores are mapped to probabilities fitted on a separate fold.

    ``fit`` holds out ``calibration_fraction`` of the rows (stratified, seeded), fits ``estimator``
    on the rest and the map on the held-out scores; or uses ``calibration_set=(X, y)`` when given.
    ``method="isotonic"``: monotone step map (needs a few hundred rows); ``"sigmoid"``: Platt's
    ``1 / (1 + exp(-(a * logit(s) + b)))``. The fitted map is plain arrays/numbers
    (``isotonic_.X_thresholds_``/``y_thresholds_`` or ``sigmoid_``) for export.
    """

    def __init__(self, estimator: Any, *, method: str = "isotonic", calibration_fraction: float = 0.2,
                 seed: int = 42) -> None:
        self.estimator = estimator
        self.method = method
        self.calibration_fraction = calibration_fraction
        self.seed = seed

    @staticmethod
    def _logit(s: np.ndarray) -> np.ndarray:
        s = np.clip(s, 1e-6, 1 - 1e-6)
        return np.log(s / (1 - s))

    def fit(self, X: pd.DataFrame, y: Any, *, groups: Any = None,
            calibration_set: tuple[pd.DataFrame, Any] | None = None) -> CalibratedChurn:
        """Fit; ``groups`` (each row's customer) keeps a customer's rows on one side of the
        calibration fold, and is passed on to the estimator (every churn model's ``fit`` takes it)."""
        if self.method not in ("isotonic", "sigmoid"):
            raise ModelError(f"method={self.method!r}: choose 'isotonic' or 'sigmoid'")
        y = _labels(y)
        if calibration_set is None:
            tr, ca = holdout_split(len(y), y, self.calibration_fraction, self.seed, groups)
            X_fit, y_fit, X_cal, y_cal = X.iloc[tr], y[tr], X.iloc[ca], y[ca]
            g_fit = None if groups is None else np.asarray(groups)[tr]
        else:
            X_fit, y_fit, (X_cal, y_cal) = X, y, calibration_set
            y_cal = _labels(y_cal)
            g_fit = groups
        self.estimator_ = clone(self.estimator).fit(X_fit, y_fit, groups=g_fit)
        s = self.estimator_.predict_proba(X_cal)[:, 1]
        if self.method == "isotonic":
            self.isotonic_ = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(s, y_cal)
        else:
            lr = LogisticRegression(C=1e6, max_iter=1000).fit(self._logit(s)[:, None], y_cal)
            self.sigmoid_ = {"a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        s = self.estimator_.predict_proba(X)[:, 1]
        if self.method == "isotonic":
            p = self.isotonic_.predict(s)
        else:
            p = 1 / (1 + np.exp(-(self.sigmoid_["a"] * self._logit(s) + self.sigmoid_["b"])))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int8)


#: Features made from what customers said: the sentiment of their texts (:mod:`crmlab.features.voice`)
#: and their survey answers (:mod:`crmlab.features.surveys`).
_VOICE_NAMES = frozenset({"n_texts", "negative_share", "survey_count", "survey_last_score", "survey_score_trend",
                          "survey_detractor", "days_since_last_survey"})


def voice_columns(columns: Any) -> list[str]:
    """The customer's-voice features among ``columns`` (sentiment of texts, survey answers)."""
    return [str(c) for c in columns if str(c) in _VOICE_NAMES or str(c).startswith("sentiment_")]


class WithoutColumns(ClassifierMixin, BaseEstimator):
    """``estimator`` fitted and applied without ``columns``: an ablation on the leaderboard (LightGBM
    without the customer's-voice features says, by DeLong against LightGBM, whether they help)."""

    def __init__(self, estimator: Any, columns: tuple[str, ...] = ()) -> None:
        self.estimator = estimator
        self.columns = columns

    def fit(self, X: pd.DataFrame, y: Any, *, groups: Any = None) -> WithoutColumns:
        self.dropped_ = [c for c in self.columns if c in X.columns]
        self.estimator_ = clone(self.estimator).fit(X.drop(columns=self.dropped_), y, groups=groups)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(X.drop(columns=self.dropped_))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(np.int8)


def inner_lightgbm(model: Any) -> LightGBMChurn:
    """The LightGBM inside a possibly calibrated model (its contributions explain the scores)."""
    return model.estimator_ if isinstance(model, CalibratedChurn) else model
