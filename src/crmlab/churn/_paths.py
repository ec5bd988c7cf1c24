"""Path attributions (Saabas) straight from LightGBM's trees, compiled with numba.

:func:`flatten` turns ``booster.dump_model()`` into flat node arrays; :func:`path_values` walks
each customer down each tree, applying LightGBM's own decision rules (``tree.h``:
``NumericalDecision`` / ``CategoricalDecision``), and adds each step's change of expected value
(child mean - parent mean, count-weighted means of the leaf values) to the parent's split feature.
No leaf matrix is materialised. :func:`top_path_reasons` (what scoring uses) also adds up the
leaf values, giving LightGBM's probability bit for bit from the same walk, and keeps only each
row's top reasons.

The input matrix must be the one LightGBM itself predicts on (:func:`lgb_matrix`): categorical
columns as the codes of the training categories (``booster.pandas_categorical``), -1 as NaN.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import pandas as pd
from lightgbm.basic import _data_from_pandas

_ZERO = 1e-35  # LightGBM's kZeroThreshold: smaller magnitudes are zero when predicting
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}


class Forest:
    """Flat node arrays of a LightGBM model (see :func:`flatten`)."""

    __slots__ = ("bias", "cat_end", "cat_start", "cats", "children", "default_left", "delta", "depth", "feature",
                 "kind", "leaf", "left", "missing", "nan_right", "right", "roots", "threshold", "value",
                 "zero_right")

    def __init__(self, **arrays: Any) -> None:
        for k, v in arrays.items():
            setattr(self, k, v)


def expected_values(node: dict[str, Any]) -> tuple[float, float]:
    """Annotate a dumped tree in place: each node's ``_mean`` (count-weighted mean of the leaf
    values below it, its expected value) and ``_count``; returns the root's."""
    if "split_feature" not in node:
        count = float(node.get("leaf_count", 0)) or 1e-12
        node["_mean"], node["_count"] = float(node["leaf_value"]), count
    else:
        lm, lc = expected_values(node["left_child"])
        rm, rc = expected_values(node["right_child"])
        node["_count"] = lc + rc
        node["_mean"] = (lm * lc + rm * rc) / (lc + rc)
    return node["_mean"], node["_count"]


def flatten(trees: list[dict[str, Any]]) -> Forest:
    """``dump_model()["tree_info"]`` as flat arrays; ``delta`` of a node is its expected value minus
    its parent's (0 at the roots), ``bias`` the sum of the roots' expected values."""
    feature, threshold, kind, default_left, missing, left, right = [], [], [], [], [], [], []
    delta, leaf, cat_start, cat_end, cats, roots, value = [], [], [], [], [], [], []
    bias = 0.0

    def add(node: dict[str, Any], parent_mean: float | None) -> int:
        i = len(feature)
        feature.append(-1)
        threshold.append(0.0)
        kind.append(0)
        default_left.append(0)
        missing.append(0)
        left.append(-1)
        right.append(-1)
        delta.append(0.0 if parent_mean is None else node["_mean"] - parent_mean)
        leaf.append(int(node.get("leaf_index", 0)) if "split_feature" not in node else -1)
        value.append(float(node["leaf_value"]) if "split_feature" not in node else 0.0)
        cat_start.append(len(cats))
        cat_end.append(len(cats))
        if "split_feature" in node:
            feature[i] = int(node["split_feature"])
            default_left[i] = int(bool(node.get("default_left", False)))
            missing[i] = _MISSING[str(node.get("missing_type", "None"))]
            if node["decision_type"] == "==":
                kind[i] = 1
                cats.extend(int(c) for c in str(node["threshold"]).split("||") if c != "")
                cat_end[i] = len(cats)
            elif node["decision_type"] == "<=":
                threshold[i] = float(node["threshold"])
            else:  # pragma: no cover - LightGBM only writes these two
                raise ValueError(f"unknown LightGBM decision type {node['decision_type']!r}")
            left[i] = add(node["left_child"], node["_mean"])
            right[i] = add(node["right_child"], node["_mean"])
        return i

    def height(node: dict[str, Any]) -> int:
        if "split_feature" not in node:
            return 0
        return 1 + max(height(node["left_child"]), height(node["right_child"]))

    depth = []
    for info in trees:
        root = info["tree_structure"]
        expected_values(root)
        bias += root["_mean"]
        roots.append(add(root, None))
        depth.append(height(root))
    forest = Forest(
        bias=bias, feature=np.array(feature, dtype=np.int32), threshold=np.array(threshold, dtype=np.float64),
        kind=np.array(kind, dtype=np.int8), default_left=np.array(default_left, dtype=np.int8),
        missing=np.array(missing, dtype=np.int8), left=np.array(left, dtype=np.int32),
        right=np.array(right, dtype=np.int32), delta=np.array(delta, dtype=np.float64),
        leaf=np.array(leaf, dtype=np.int32), cat_start=np.array(cat_start, dtype=np.int32),
        cat_end=np.array(cat_end, dtype=np.int32), cats=np.array(cats, dtype=np.int64),
        value=np.array(value, dtype=np.float64), roots=np.array(roots, dtype=np.int32), depth=np.array(depth, dtype=np.int32),
    )
    # what the kernels read: both children of node i at 2i, 2i+1; where a NaN and a zero go (1 = right)
    f = forest
    is_leaf = f.feature < 0
    f.children = np.empty(2 * len(f.feature), dtype=np.int32)
    f.children[0::2] = np.where(is_leaf, np.arange(len(f.feature)), f.left)
    f.children[1::2] = np.where(is_leaf, np.arange(len(f.feature)), f.right)
    zero_left = np.where(f.missing == 1, f.default_left == 1, 0.0 <= f.threshold)
    nan_left = np.where(f.missing == 2, f.default_left == 1, zero_left)
    f.zero_right = np.where(is_leaf | (f.kind == 1), 0, ~zero_left).astype(np.int8)
    f.nan_right = np.where(is_leaf, 0, np.where(f.kind == 1, 1, ~nan_left)).astype(np.int8)
    f.threshold = np.where(is_leaf, np.inf, f.threshold)
    f.nan_right, f.zero_right = f.nan_right.astype(np.int32), f.zero_right.astype(np.int32)
    return forest


def lgb_matrix(booster: Any, X: pd.DataFrame) -> np.ndarray:
    """The float64 matrix (rows x features, C order) LightGBM predicts ``X`` from: categorical
    columns recoded to the training categories, exactly as ``Booster.predict`` does; plus one
    spare column of zeros at the end (where :func:`path_values` puts the bias)."""
    out = np.zeros((len(X), X.shape[1] + 1))
    if len(X):
        out[:, :-1] = _data_from_pandas(X, feature_name="auto", categorical_feature="auto",
                                        pandas_categorical=booster.pandas_categorical)[0]
    return out


@numba.njit(inline="always")
def _go(node, v, threshold, kind, nan_right, zero_right, cat_start, cat_end, cats):
    """0 (left) or 1 (right): LightGBM's ``CategoricalDecision`` / ``NumericalDecision`` for value ``v``."""
    if kind[node] == 1:  # NaN and negative codes go right, listed categories left
        go = 1
        if not np.isnan(v) and v >= 0:
            code = int(v)
            for k in range(cat_start[node], cat_end[node]):
                if cats[k] == code:
                    go = 0
        return go
    # branch-free: NaN, (near) zero (where the missing type sends them), else the threshold
    isn = np.int32(np.isnan(v))
    isz = np.int32(abs(v) <= _ZERO)
    gt = np.int32(v > threshold[node])
    return isn * nan_right[node] + (1 - isn) * (isz * zero_right[node] + (1 - isz) * gt)


@numba.njit(parallel=True, cache=True, nogil=True)
def _path_kernel(X, roots, feature, threshold, kind, nan_right, zero_right, children, delta,
                 cat_start, cat_end, cats, out):
    for i in numba.prange(X.shape[0]):
        x = X[i]
        o = out[i]
        for t in range(roots.shape[0]):
            node = roots[t]
            f = feature[node]
            while f >= 0:
                child = children[2 * node + _go(node, x[f], threshold, kind, nan_right, zero_right,
                                                cat_start, cat_end, cats)]
                o[f] += delta[child]
                node = child
                f = feature[node]


@numba.njit(parallel=True, cache=True, nogil=True)
def _leaf_kernel(X, roots, feature, threshold, kind, nan_right, zero_right, children, leaf,
                 cat_start, cat_end, cats, out):
    for i in numba.prange(X.shape[0]):
        x = X[i]
        for t in range(roots.shape[0]):
            node = roots[t]
            f = feature[node]
            while f >= 0:
                node = children[2 * node + _go(node, x[f], threshold, kind, nan_right, zero_right,
                                               cat_start, cat_end, cats)]
                f = feature[node]
            out[i, t] = leaf[node]


def path_values(forest: Forest, X: np.ndarray) -> np.ndarray:
    """Rows x (features + 1): each feature's summed path attribution, then the bias. ``X`` as made
    by :func:`lgb_matrix` (its spare last column becomes the bias)."""
    out = np.zeros(X.shape)
    if X.shape[0]:
        f = forest
        _path_kernel(X, f.roots, f.feature, f.threshold, f.kind, f.nan_right, f.zero_right, f.children,
                     f.delta, f.cat_start, f.cat_end, f.cats, out)
    out[:, -1] = forest.bias
    return out


def leaf_indices(forest: Forest, X: np.ndarray) -> np.ndarray:
    """Rows x trees: the leaf each row reaches (what LightGBM's ``pred_leaf=True`` returns)."""
    out = np.zeros((X.shape[0], forest.roots.shape[0]), dtype=np.int32)
    if X.shape[0]:
        f = forest
        _leaf_kernel(X, f.roots, f.feature, f.threshold, f.kind, f.nan_right, f.zero_right, f.children,
                     f.leaf, f.cat_start, f.cat_end, f.cats, out)
    return out


@numba.njit(parallel=True, cache=True, nogil=True)
def _top_kernel(values, risk_only, cols, keys):
    n_top = cols.shape[1]
    for i in numba.prange(values.shape[0]):
        for j in range(n_top):
            cols[i, j] = -1
            keys[i, j] = 0.0
        filled = 0
        for c in range(values.shape[1]):
            v = values[i, c]
            k = v if risk_only else abs(v)
            if not (k > 0.0) or not np.isfinite(k):  # NaN, zero, negative (risk only), infinite
                continue
            if filled == n_top and not (k > keys[i, n_top - 1]):  # ties: the earlier column wins
                continue
            p = filled if filled < n_top else n_top - 1
            while p > 0 and k > keys[i, p - 1]:
                keys[i, p] = keys[i, p - 1]
                cols[i, p] = cols[i, p - 1]
                p -= 1
            keys[i, p] = k
            cols[i, p] = c
            if filled < n_top:
                filled += 1


def top_columns(values: np.ndarray, n: int, *, risk_only: bool) -> np.ndarray:
    """Per row, the columns of the ``n`` largest keys (``|value|``, or the value itself and only
    positive ones with ``risk_only``), largest first, ties to the earlier column; -1 where fewer
    than ``n`` are non-zero and finite. What a stable argsort of ``-key`` picks, without sorting."""
    values = np.ascontiguousarray(values, dtype=np.float64)
    cols = np.empty((values.shape[0], n), dtype=np.int64)
    keys = np.empty((values.shape[0], n))
    if values.shape[0] and n:
        _top_kernel(values, bool(risk_only), cols, keys)
    return cols


@numba.njit(inline="always")
def _numpy_sum(buf, n):
    """The sum of ``buf[:n]`` (n <= 128) in the order NumPy adds a contiguous row up (``np.add.reduce``:
    eight running sums, then the rest one by one), so a row's total is NumPy's to the last bit."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += buf[i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7]
    i = 8
    stop = n - n % 8
    while i < stop:
        r0 += buf[i]
        r1 += buf[i + 1]
        r2 += buf[i + 2]
        r3 += buf[i + 3]
        r4 += buf[i + 4]
        r5 += buf[i + 5]
        r6 += buf[i + 6]
        r7 += buf[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += buf[i]
        i += 1
    return 0.0 + res  # NumPy starts the reduction from its identity, 0.0


#: The most features the fused logistic term adds up NumPy's way (:func:`_numpy_sum`; NumPy splits
#: longer rows in halves).
MAX_FUSED_FEATURES = 128


@numba.njit(parallel=True, cache=True, nogil=True)
def _reason_kernel(X, n_feat, roots, feature, threshold, kind, nan_right, zero_right, children, delta, value,
                   cat_start, cat_end, cats, risk_only, sigmoid, prob, cols, contrib, block, scale, extra, extra_raw,
                   lin_median, lin_mean, lin_coef, lin_intercept, lin_scale):
    n, n_top = X.shape[0], cols.shape[1]
    mixed = extra.shape[0] > 0
    fused = lin_median.shape[0] > 0
    for b in numba.prange((n + block - 1) // block):
        attribution = np.zeros(n_feat + 1)
        terms = np.zeros(n_feat + 1)
        keys = np.zeros(n_top)
        for i in range(b * block, min(b * block + block, n)):
            attribution[:] = 0.0
            raw = 0.0
            for t in range(roots.shape[0]):
                node = roots[t]
                f = feature[node]
                while f >= 0:
                    node = children[2 * node + _go(node, X[i, f], threshold, kind, nan_right, zero_right,
                                                   cat_start, cat_end, cats)]
                    attribution[f] += delta[node]
                    f = feature[node]
                raw += value[node]  # tree by tree from 0, as LightGBM adds up its prediction
            if fused:  # a blend with a logistic regression on the same numbers: its terms computed here
                for c in range(n_feat):
                    v = X[i, c]
                    if not np.isfinite(v):
                        v = lin_median[c]
                    term = (v - lin_mean[c]) * lin_coef[c]
                    terms[c] = term
                    attribution[c] = scale * attribution[c] + term * lin_scale
                linear = lin_scale * (lin_intercept + _numpy_sum(terms, n_feat))
                prob[i] = 1.0 / (1.0 + math.exp(-(scale * raw + linear)))
            elif mixed:  # a blend: scale x the trees' log-odds + another model's, feature by feature
                for c in range(n_feat):
                    attribution[c] = scale * attribution[c] + extra[i, c]
                prob[i] = 1.0 / (1.0 + math.exp(-(scale * raw + extra_raw[i])))
            else:
                prob[i] = 1.0 / (1.0 + math.exp(-sigmoid * raw))
            filled = 0
            for j in range(n_top):
                cols[i, j] = -1
                contrib[i, j] = np.nan
            for c in range(n_feat):
                v = attribution[c]
                k = v if risk_only else abs(v)
                if not (k > 0.0) or not np.isfinite(k):
                    continue
                if filled == n_top and not (k > keys[n_top - 1]):
                    continue
                p = filled if filled < n_top else n_top - 1
                while p > 0 and k > keys[p - 1]:
                    keys[p] = keys[p - 1]
                    cols[i, p] = cols[i, p - 1]
                    contrib[i, p] = contrib[i, p - 1]
                    p -= 1
                keys[p] = k
                cols[i, p] = c
                contrib[i, p] = v
                if filled < n_top:
                    filled += 1


def top_path_reasons(forest: Forest, X: np.ndarray, n: int, *, risk_only: bool, sigmoid: float,
                     scale: float = 1.0, extra: np.ndarray | None = None, extra_raw: np.ndarray | None = None,
                     n_features: int | None = None, linear: tuple[np.ndarray, np.ndarray, np.ndarray, float, float]
                     | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One walk for both the probability and the reasons, no (rows x features) attributions kept:
    LightGBM's binary probability (``1 / (1 + exp(-sigmoid * raw score))``, the raw score added up
    tree by tree as LightGBM does), and per row the columns of the ``n`` largest path attributions
    (as :func:`top_columns`; -1 for none) and their values (NaN for none). ``X`` from :func:`lgb_matrix`
    (its last column spare), or any float matrix of the features alone with ``n_features=X.shape[1]``
    (:func:`lgb_input` gives one or the other).

    A blend passes ``extra`` (rows x features: another model's log-odds contributions, in ``X``'s
    column order) and ``extra_raw`` (its log-odds per row): each attribution becomes ``scale`` x the
    trees' + ``extra``, and the probability ``1 / (1 + exp(-(scale x raw score + extra_raw)))``. Or,
    for a logistic regression on the very same numbers, ``linear=(medians, means, coef / scale,
    intercept, weight)``: its terms (a non-finite value imputed by the median) are computed in the walk,
    with NumPy's rounding, instead of as a matrix: the same result as ``extra`` from
    :meth:`~crmlab.churn.models.LinearChurn.contributions` x ``weight``, bit for bit."""
    n_feat = X.shape[1] - 1 if n_features is None else int(n_features)
    if extra is None:
        extra, extra_raw = np.zeros((0, 0)), np.zeros(0)
    else:
        extra = np.ascontiguousarray(extra, dtype=np.float64)
        extra_raw = np.ascontiguousarray(extra_raw, dtype=np.float64)
    lin: tuple[np.ndarray, np.ndarray, np.ndarray, float, float] = (np.zeros(0), np.zeros(0), np.zeros(0), 0.0, 0.0)
    if linear is not None:
        if n_feat > MAX_FUSED_FEATURES:
            raise ValueError(f"a fused logistic term adds up at most {MAX_FUSED_FEATURES} features, got {n_feat}")
        median, mean, coef, intercept, weight = linear
        lin = tuple(np.ascontiguousarray(a, dtype=np.float64) for a in (median, mean, coef)) + (
            float(intercept), float(weight))
        if any(a.shape != (n_feat,) for a in lin[:3]):
            raise ValueError(f"the fused logistic term needs {n_feat} medians, means and coefficients")
    prob = np.zeros(X.shape[0])
    cols = np.full((X.shape[0], n), -1, dtype=np.int64)
    contrib = np.full((X.shape[0], n), np.nan)
    if X.shape[0] and n:
        f = forest
        _reason_kernel(X, n_feat, f.roots, f.feature, f.threshold, f.kind, f.nan_right, f.zero_right, f.children,
                       f.delta, f.value, f.cat_start, f.cat_end, f.cats, bool(risk_only), float(sigmoid), prob, cols,
                       contrib, 1024, float(scale), extra, extra_raw, *lin)
    return prob, cols, contrib


def float_block(X: pd.DataFrame) -> np.ndarray | None:
    """``X``'s numbers as one float64 matrix when every column is float64 (a view, no copy, when they
    are one block, as scoring builds them), else None (a category or another dtype among them)."""
    if X.shape[1] and all(dtype == np.float64 for dtype in X.dtypes):
        return X.to_numpy(dtype=np.float64, copy=False)
    return None


def lgb_input(booster: Any, X: pd.DataFrame) -> tuple[np.ndarray, int]:
    """The matrix LightGBM predicts ``X`` from and its number of features: :func:`float_block` when
    every column is a float64, else :func:`lgb_matrix` (categories recoded; one spare column)."""
    block = float_block(X)
    return (lgb_matrix(booster, X) if block is None else block), X.shape[1]
