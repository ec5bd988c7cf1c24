"""Product affinity and recommendations from basket co-occurrence.

Counts, over ``B`` baskets (see :mod:`crmlab.crosssell.baskets`): ``n_i`` baskets hold item ``i``,
``n_ij`` hold both ``i`` and ``j`` (one sparse product ``X^T X`` of the baskets x items matrix).

Association rules ``i -> j`` (Agrawal, Imielinski and Swami 1993; lift of Brin et al. 1997), for pairs
with ``n_ij >= min_pair_count`` and both items in at least ``min_item_count`` baskets:

* support ``= n_ij / B``; confidence ``= n_ij / n_i`` (the share of i's baskets that hold j);
* lift ``= confidence / (n_j / B) = n_ij B / (n_i n_j)``: 1 when the two are bought independently.

:class:`Recommender` ``kind="itemitem"`` scores an item ``j`` for a customer who bought the items ``H``
by its popularity ``p_j = n_j / B`` raised by the excess lift of its pairs with the history::

    score(j | H) = p_j * (1 + sum_{i in H} a_ij),   a_ij = lift~_ij - 1 if lift~_ij >= min_lift else 0,
    lift~_ij = (n_ij + m) / (e_ij + m)

with ``e_ij = n_i n_j / B`` the pair's expected count under independence and ``m`` pseudo-baskets
(``smoothing``) shrinking the lift towards 1, so a pair seen in few baskets counts little. Pairs whose
shrunk lift is below ``min_lift`` (default 1.5) add nothing: with ``m = 10`` a pair bought together by
chance (``n_ij`` within three standard deviations ``3 sqrt(e_ij)`` of ``e_ij``) never reaches it, so
noise neither reorders the popular items nor fills every customer's candidate list. An item with
no affinity to the history (pairs below ``min_pair_count`` count as ``n_ij = 0``) scores its
popularity: the model is the popularity baseline plus what the baskets say about complements, and a
customer without history gets the baseline's list. ``kind="popularity"`` (the baseline) scores
every item ``p_j``. Either recommends the ``k`` best items the customer has not bought, among the
items in at least ``min_item_count`` baskets. Nothing dense is formed: the best items without affinity
are each customer's first ``k`` items not bought in one global ranking, the others come from one
sparse product ``history @ affinity`` per block of customers (:meth:`Recommender.recommend`).
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
#: Customers recommended to at once (bounds the memory of the boosted candidates).
BLOCK_ROWS = 100_000


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
    min_lift: float = 1.5
    items_: np.ndarray | None = None
    co_: CoOccurrence | None = None

    def fit(self, baskets: sp.csr_matrix, items: np.ndarray) -> Recommender:
        if self.kind not in ("itemitem", "popularity"):
            raise ModelError(f"crosssell: kind={self.kind!r} should be 'itemitem' or 'popularity'")
        if not self.smoothing > 0:
            raise ModelError(f"crosssell.smoothing={self.smoothing} should be > 0")
        if not self.min_lift >= 1:
            raise ModelError(f"crosssell.min_lift={self.min_lift} should be >= 1")
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
        """``a_ij = lift~_ij - 1`` on the counted pairs with ``lift~_ij >= min_lift`` (module doc), sparse."""
        co = self._check()
        pairs = co.pairs.tocoo()
        n = co.item_count.astype(np.float64)
        expected = n[pairs.row] * n[pairs.col] / max(co.n_baskets, 1)
        m = self.smoothing
        lift = (pairs.data + m) / (expected + m)
        excess = np.where(lift >= self.min_lift, lift - 1.0, 0.0)
        out = sp.csr_matrix((excess, (pairs.row, pairs.col)), shape=co.pairs.shape)
        out.eliminate_zeros()
        return out

    def recommend(self, history: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items per row of ``history`` (customers x items, 0/1) that the row has not
        bought: item indices (``-1`` when fewer than ``k`` items are left) and their scores (NaN there),
        best first; ties go to the more popular item, then to the earlier name.

        Exact and sparse: an item without affinity to the row's history scores its popularity, so the
        best such items are the row's first ``k`` items not bought in one global ranking; the others
        are the (few) items the history boosts. Only those candidates are scored and sorted."""
        co = self._check()
        history = sp.csr_matrix(history)
        n_items = len(self.items_)
        if history.shape[1] != n_items:
            raise ModelError(f"crosssell: a history of {history.shape[1]} items for a model of {n_items}")
        p = self.popularity_
        allowed = self.candidates_
        tie = np.lexsort((np.arange(n_items), -co.item_count))  # popularity, then name: the order of ties
        rank_of = np.empty(n_items, dtype=np.int64)
        rank_of[tie] = np.arange(n_items)
        order = tie[allowed[tie]]  # the recommendable items, best first when nothing is boosted
        pos = np.full(n_items, -1, dtype=np.int64)
        pos[order] = np.arange(order.size)
        affinity = None
        if self.kind == "itemitem":
            affinity = self.affinity_().multiply(allowed[None, :].astype(np.float64)).tocsr()
            affinity.eliminate_zeros()
        n = history.shape[0]
        idx = np.full((n, k), -1, dtype=np.int64)
        val = np.full((n, k), np.nan)
        step = BLOCK_ROWS
        for lo in range(0, n, step):
            block = history[lo:lo + step]
            rows, items, scores = _first_unbought(block, pos, order, k)
            scores = p[items]
            if affinity is not None and affinity.nnz:
                boost = (block.astype(np.float64) @ affinity).tocsr()
                boost = (boost - boost.multiply(block > 0)).tocoo()
                keep = boost.data > 0
                rows = np.concatenate([rows, boost.row[keep]])
                items = np.concatenate([items, boost.col[keep]])
                scores = np.concatenate([scores, p[boost.col[keep]] * (1.0 + boost.data[keep])])
            # one entry per (row, item), the highest score; then per row by score, then the tie order
            first = np.lexsort((-scores, items, rows))
            rows, items, scores = rows[first], items[first], scores[first]
            new = np.r_[True, (rows[1:] != rows[:-1]) | (items[1:] != items[:-1])]
            rows, items, scores = rows[new], items[new], scores[new]
            best = np.lexsort((rank_of[items], -scores, rows))
            rows, items, scores = rows[best], items[best], scores[best]
            starts = np.searchsorted(rows, rows, side="left")
            place = np.arange(rows.size) - starts
            take = place < k
            idx[lo + rows[take], place[take]] = items[take]
            val[lo + rows[take], place[take]] = scores[take]
        return idx, val

    def to_bundle(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        co = self._check()
        params = {"kind": self.kind, "smoothing": self.smoothing, "min_item_count": self.min_item_count,
                  "min_pair_count": self.min_pair_count, "min_lift": self.min_lift, "n_baskets": co.n_baskets,
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
                        min_item_count=int(params["min_item_count"]), min_pair_count=int(params["min_pair_count"]),
                        min_lift=float(params["min_lift"]))
            item_count = np.asarray(arrays["item_count"], dtype=np.int64)
            if len(item_count) != n:
                raise ValueError(f"{len(item_count)} item counts for {n} items")
            model.items_, model.co_ = items, CoOccurrence(int(params["n_baskets"]), item_count, pairs)
        except (KeyError, ValueError, TypeError) as exc:
            raise ModelError(f"crosssell bundle: parameters or arrays unreadable ({exc}); retrain") from None
        return model


def _first_unbought(history: sp.csr_matrix, pos: np.ndarray, order: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the first ``k`` items of ``order`` it has not bought (``pos``: each item's place in
    ``order``, -1 for none), as (row, item, place) triples. With the row's bought places sorted,
    ``b_0 < b_1 < ...``, the j-th place not bought is ``j + #{i : b_i - i <= j}``: a search per j."""
    coo = history.tocoo()
    b = pos[coo.col]
    keep = b >= 0
    r, b = coo.row[keep].astype(np.int64), b[keep]
    srt = np.lexsort((b, r))
    r, b = r[srt], b[srt]
    within = np.arange(r.size) - np.searchsorted(r, r, side="left")
    span = np.int64(order.size + k + 1)
    key = r * span + (b - within)
    n = history.shape[0]
    all_rows = np.arange(n, dtype=np.int64)
    row_start = np.searchsorted(key, all_rows * span, side="left")
    out_rows, out_places = [], []
    for j in range(k):
        place = j + np.searchsorted(key, all_rows * span + j, side="right") - row_start
        ok = place < order.size
        out_rows.append(all_rows[ok])
        out_places.append(place[ok])
    rows = np.concatenate(out_rows)
    places = np.concatenate(out_places)
    return rows, order[places], places
