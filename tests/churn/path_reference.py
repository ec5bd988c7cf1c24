"""The former implementation of path attributions, kept as the reference the compiled walk of
``crmlab.churn._paths`` is tested against: LightGBM's own ``pred_leaf`` indices (so LightGBM decides
every split) and, per leaf, the sum of the expected-value changes along its path."""

from __future__ import annotations

import numpy as np
import pandas as pd

from crmlab.churn import _paths
from crmlab.churn.models import LightGBMChurn


def _leaf_tables(model: LightGBMChurn) -> tuple[np.ndarray, float, list[tuple[int, np.ndarray, np.ndarray]]]:
    """Per tree its leaf-id offset; the sum of the roots' expected values; per feature used, the
    trees that split on it and its contribution in every leaf."""
    trees = model.booster_.dump_model(num_iteration=model.best_iteration_)["tree_info"]
    n_features = len(model.feature_names_in_)
    offsets = np.zeros(len(trees), dtype=np.int64)
    per_leaf: list[dict[int, float]] = []  # global leaf id -> {feature: contribution}
    users: list[set[int]] = [set() for _ in range(n_features)]
    bias, total = 0.0, 0
    for t, info in enumerate(trees):
        root = info["tree_structure"]
        _paths.expected_values(root)
        offsets[t] = total
        bias += root["_mean"]
        stack = [(root, {})]
        while stack:
            node, path = stack.pop()
            if "split_feature" not in node:
                leaf = total + int(node.get("leaf_index", 0))
                while len(per_leaf) <= leaf:
                    per_leaf.append({})
                per_leaf[leaf] = path
                continue
            f = int(node["split_feature"])
            users[f].add(t)
            for child in (node["left_child"], node["right_child"]):
                step = dict(path)
                step[f] = step.get(f, 0.0) + child["_mean"] - node["_mean"]
                stack.append((child, step))
        total += int(info["num_leaves"])
    tables = []
    for f in range(n_features):
        if users[f]:
            table = np.array([leaf.get(f, 0.0) for leaf in per_leaf] + [0.0] * (total - len(per_leaf)))
            tables.append((f, np.array(sorted(users[f]), dtype=np.int64), table))
    return offsets, bias, tables


def leaf_path_contributions(model: LightGBMChurn, X: pd.DataFrame) -> pd.DataFrame:
    """What ``model.path_contributions(X)`` must return, from ``pred_leaf`` and the leaf tables."""
    X = model._prepare(X)
    offsets, bias, tables = _leaf_tables(model)
    leaves = model.booster_.predict(X, num_iteration=model.best_iteration_, pred_leaf=True)
    leaves = np.asarray(leaves).reshape(len(X), -1) + offsets[None, :]
    values = np.zeros((len(X), len(model.feature_names_in_) + 1))
    for f, trees, table in tables:
        values[:, f] = table[leaves[:, trees]].sum(axis=1)
    values[:, -1] = bias
    return pd.DataFrame(values, columns=[*map(str, X.columns), "bias"], index=X.index)
