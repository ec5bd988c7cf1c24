"""Product affinity and recommendations from basket co-occurrence.

Counts, over ``B`` baskets (see :mod:`crmlab.crosssell.baskets`): ``n_i`` baskets hold item ``i``,
``n_ij`` hold both ``i`` and ``j`` (one sparse product ``X^T X`` of the baskets x items matrix).

Association rules ``i -> j`` (Agrawal, Imielinski and Swami 1993; lift of Brin et al. 1997), for pairs
with ``n_ij >= min_pair_count`` and both items in at least ``min_item_count`` baskets:

* support ``= n_ij / B``; confidence ``= n_ij / n_i`` (the share of i's baskets that hold j);
* lift ``= confidence / (n_j / B) = n_ij B / (n_i n_j)``: 1 when the two are bought independently.

:class:`Recommender` ``kind="itemitem"`` scores an item ``j`` for a customer who bought the items ``H``
by its popularity ``p_j = n_j / B`` raised by the excess lift of its pairs with the history::

    score(j | H) = p_j * (1 + sum_{i in H} max(0, lift~_ij - 1)),   lift~_ij = (n_ij + m) / (e_ij + m)

with ``e_ij = n_i n_j / B`` the pair's expected count under independence and ``m`` pseudo-baskets
(``smoothing``) shrinking the lift towards 1, so a pair seen in few baskets counts little. An item with
no positive affinity to the history (pairs below ``min_pair_count`` count as ``n_ij = 0``) scores its
popularity: the model is the popularity baseline plus what the baskets say about complements, and a
customer without history gets the baseline's list. ``kind="popularity"`` (the baseline) scores
every item ``p_j``. Either recommends the ``k`` best items the customer has not bought, among the
items in at least ``min_item_count`` baskets. Scores are one sparse product per
block of customers, so a base of millions is scored block by block in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crmlab.errors import ModelError

__all__ = ["CoOccurrence", "Recommender", "association_rules", "count_cooccurrence"]

Kind = Literal["itemitem", "popularity"]
#: Scores of at most this many (customer, item) cells are held at once.
BLOCK_CELLS = 4_000_000


@dataclass
class CoOccurrence:
    """``n_baskets`` (B), ``item_count`` (n_i) and ``pairs`` (n_ij, items x items, symmetric, no diagonal,
    only pairs with ``n_ij >= min_pair_count``)."""

    n_baskets: int
    item_count: np.ndarray
    pairs: sp.csr_matrix


def count_cooccurrence(baskets: sp.csr_matrix, *, min_pair_count: int = 1) -> CoOccurrence:
    """The counts of a 0/1 baskets x items matrix (module doc)."""
    x = sp.csr_matrix(baskets, dtype=np.float32)
    item_count = np.asarray(x.sum(axis=0)).ravel().astype(np.int64)
    pairs = (x.T @ x).tocsr()
    pairs.setdiag(0)
    pairs.data[pairs.data < min_pair_count] = 0
    pairs.eliminate_zeros()
    pairs.sort_indices()
    return CoOccurrence(int(x.shape[0]), item_count, pairs.astype(np.float64))


def association_rules(co: CoOccurrence, items: np.ndarray, *, min_item_count: int = 1,
                      min_pair_count: int = 1, max_rules: int | None = None) -> pd.DataFrame:
    """Every rule ``antecedent -> consequent`` passing the minimum counts (module doc), by lift, then
    pair count, then names: ``antecedent``, ``consequent``, ``pair_count``, ``antecedent_count``,
    ``consequent_count``, ``support``, ``confidence``, ``lift``."""
    coo = co.pairs.tocoo()
    i, j, n_ij = coo.row, coo.col, coo.data
    n = co.item_count
    keep = (n_ij >= min_pair_count) & (n[i] >= min_item_count) & (n[j] >= min_item_count)
    i, j, n_ij = i[keep], j[keep], n_ij[keep]
    b = float(co.n_baskets)
    names = np.asarray(items, dtype=object)
    rules = pd.DataFrame({
        "antecedent": names[i], "consequent": names[j], "pair_count": n_ij.astype(np.int64),
        "antecedent_count": n[i], "consequent_count": n[j], "support": n_ij / b,
        "confidence": n_ij / n[i], "lift": n_ij * b / (n[i].astype(np.float64) * n[j]),
    })
    rules = rules.sort_values(["lift", "pair_count", "antecedent", "consequent"],
                              ascending=[False, False, True, True], kind="stable", ignore_index=True)
    return rules.head(max_rules) if max_rules is not None else rules


@dataclass
class Recommender:
    """Top-k recommendations of items not yet bought (module doc); ``fit`` on a baskets x items matrix."""

    kind: Kind = "itemitem"
    smoothing: float = 10.0
    min_item_count: int = 5
    min_pair_count: int = 3
    items_: np.ndarray | None = None
    co_: CoOccurrence | None = None

    def fit(self, baskets: sp.csr_matrix, items: np.ndarray) -> Recommender:
        if self.kind not in ("itemitem", "popularity"):
            raise ModelError(f"crosssell: kind={self.kind!r} should be 'itemitem' or 'popularity'")
        if not self.smoothing > 0:
            raise ModelError(f"crosssell.smoothing={self.smoothing} should be > 0")
        if baskets.shape[1] != len(items):
            raise ModelError(f"crosssell: {baskets.shape[1]} item columns for {len(items)} item names")
        if baskets.shape[0] == 0:
            raise ModelError("crosssell: no basket to learn from (no purchase with an item before the cut-off)")
        self.items_ = np.asarray(items, dtype=object)
        if self.kind == "itemitem":
            self.co_ = count_cooccurrence(baskets, min_pair_count=self.min_pair_count)
        else:  # the baseline needs the item counts only
            counts = np.asarray(sp.csr_matrix(baskets).sum(axis=0)).ravel().astype(np.int64)
            self.co_ = CoOccurrence(int(baskets.shape[0]), counts, sp.csr_matrix((len(items), len(items))))
        return self

    def _check(self) -> CoOccurrence:
        if self.co_ is None or self.items_ is None:
            raise ModelError("Recommender is not fitted: call fit first")
        return self.co_

    @property
    def popularity_(self) -> np.ndarray:
        co = self._check()
        return co.item_count / max(co.n_baskets, 1)

    @property
    def candidates_(self) -> np.ndarray:
        """The items that may be recommended (in at least ``min_item_count`` baskets)."""
        return self._check().item_count >= self.min_item_count

    def affinity_(self) -> sp.csr_matrix:
        """``max(0, lift~_ij - 1)`` on the counted pairs (module doc), items x items, sparse."""
        co = self._check()
        pairs = co.pairs.tocoo()
        n = co.item_count.astype(np.float64)
        expected = n[pairs.row] * n[pairs.col] / max(co.n_baskets, 1)
        m = self.smoothing
        excess = np.maximum((pairs.data + m) / (expected + m) - 1.0, 0.0)
        out = sp.csr_matrix((excess, (pairs.row, pairs.col)), shape=co.pairs.shape)
        out.eliminate_zeros()
        return out

    def score_block(self, history: sp.csr_matrix, affinity: sp.csr_matrix | None = None) -> np.ndarray:
        """Dense scores (rows of ``history`` x items) before masking (module doc)."""
        p = self.popularity_
        n_rows = history.shape[0]
        if self.kind == "popularity":
            return np.broadcast_to(p, (n_rows, len(p))).astype(np.float64)
        boost = (sp.csr_matrix(history, dtype=np.float64) @ (affinity if affinity is not None else self.affinity_()))
        return (np.asarray(boost.todense()) + 1.0) * p

    def recommend(self, history: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items per row of ``history`` (customers x items, 0/1) that the row has not
        bought: item indices (``-1`` when fewer than ``k`` items are left) and their scores (NaN there),
        best first; ties go to the more popular item, then to the earlier name."""
        self._check()
        history = sp.csr_matrix(history)
        n_items = len(self.items_)
        if history.shape[1] != n_items:
            raise ModelError(f"crosssell: a history of {history.shape[1]} items for a model of {n_items}")
        n = history.shape[0]
        k_eff = min(k, n_items)
        idx = np.full((n, k), -1, dtype=np.int64)
        val = np.full((n, k), np.nan)
        # a fixed order of the items for ties: popularity, then name (their index)
        tie = np.lexsort((np.arange(n_items), -self._check().item_count))
        rank_of = np.empty(n_items, dtype=np.int64)
        rank_of[tie] = np.arange(n_items)
        blocked = ~self.candidates_
        if self.kind == "popularity":
            return self._recommend_popular(history, k, tie, blocked)
        step = max(1, BLOCK_CELLS // max(n_items, 1))
        affinity = self.affinity_()
        for lo in range(0, n, step):
            block = history[lo:lo + step]
            s = np.array(self.score_block(block, affinity), dtype=np.float64)
            s[:, blocked] = -np.inf
            rows, cols = block.nonzero()
            s[rows, cols] = -np.inf
            s = s[:, tie]  # columns in tie order: a stable sort then breaks ties by it
            if k_eff < n_items:
                part = np.argpartition(-s, k_eff - 1, axis=1)[:, :k_eff]
                # the k-th score's ties beyond the partition: take every column scoring at least it
                kth = np.take_along_axis(s, part, axis=1).min(axis=1)
                for r in np.flatnonzero((s >= kth[:, None]).sum(axis=1) > k_eff):
                    cand = np.flatnonzero(s[r] >= kth[r])
                    part[r] = cand[np.lexsort((cand, -s[r, cand]))][:k_eff]
            else:
                part = np.broadcast_to(np.arange(n_items), (s.shape[0], n_items)).copy()
            top = np.take_along_axis(s, part, axis=1)
            order = np.lexsort((part, -top), axis=1)
            part, top = np.take_along_axis(part, order, axis=1), np.take_along_axis(top, order, axis=1)
            ok = np.isfinite(top)
            idx[lo:lo + step, :k_eff] = np.where(ok, tie[part], -1)
            val[lo:lo + step, :k_eff] = np.where(ok, top, np.nan)
        return idx, val

    def _recommend_popular(self, history: sp.csr_matrix, k: int, tie: np.ndarray,
                           blocked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The baseline: one ranking for everyone (``tie`` order); each row takes its first ``k`` items
        not bought, looking only as far down the ranking as the row's purchases can push it."""
        order = tie[~blocked[tie]]
        p = self.popularity_
        n = history.shape[0]
        idx = np.full((n, k), -1, dtype=np.int64)
        val = np.full((n, k), np.nan)
        nnz = np.diff(history.indptr)
        step = max(1, BLOCK_CELLS // max(k + int(nnz.max(initial=0)), 1))
        for lo in range(0, n, step):
            block = history[lo:lo + step]
            depth = min(len(order), k + int(np.diff(block.indptr).max(initial=0)))
            head = order[:depth]
            bought = np.asarray(block[:, head].todense()) > 0
            pos = np.cumsum(~bought, axis=1)  # rank among the items not bought
            for j in range(k):
                take = (~bought) & (pos == j + 1)
                has = take.any(axis=1)
                col = take.argmax(axis=1)
                idx[lo:lo + step, j] = np.where(has, head[col], -1)
                val[lo:lo + step, j] = np.where(has, p[head[col]], np.nan)
        return idx, val

    def to_bundle(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        co = self._check()
        params = {"kind": self.kind, "smoothing": self.smoothing, "min_item_count": self.min_item_count,
                  "min_pair_count": self.min_pair_count, "n_baskets": co.n_baskets,
                  "items": [str(x) for x in self.items_]}
        pairs = co.pairs.tocsr()
        arrays = {"item_count": co.item_count.astype(np.int64), "pairs_indptr": pairs.indptr.astype(np.int64),
                  "pairs_indices": pairs.indices.astype(np.int64), "pairs_data": pairs.data.astype(np.float64)}
        return params, arrays

    @classmethod
    def from_bundle(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Recommender:
        try:
            items = np.asarray(params["items"], dtype=object)
            n = len(items)
            pairs = sp.csr_matrix((arrays["pairs_data"], arrays["pairs_indices"], arrays["pairs_indptr"]),
                                  shape=(n, n))
            model = cls(kind=params["kind"], smoothing=float(params["smoothing"]),
                        min_item_count=int(params["min_item_count"]), min_pair_count=int(params["min_pair_count"]))
            item_count = np.asarray(arrays["item_count"], dtype=np.int64)
            if len(item_count) != n:
                raise ValueError(f"{len(item_count)} item counts for {n} items")
            model.items_, model.co_ = items, CoOccurrence(int(params["n_baskets"]), item_count, pairs)
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"crosssell bundle: parameters or arrays unreadable ({exc}); retrain") from None
        return model
