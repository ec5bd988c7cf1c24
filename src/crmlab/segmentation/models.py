"""The segmentation model core: feature scaling, K-means, the k sweep, stability and assignment.

Everything a scoring job needs is plain arrays, so an exported model is JSON and ``.npz`` only:

* :class:`FeatureScaler` turns raw behavioural features into the space K-means works in:
  missing values take the training median, then ``log`` (``sign(x) * log1p(|x|)``, for skewed
  money and counts), ``standard`` (nothing) or ``quantile`` (the empirical CDF on 101 training
  quantiles, ties averaged as in scikit-learn's ``QuantileTransformer``), then a z-score, so no
  feature outweighs another because of its unit.
* :func:`fit_kmeans` fits scikit-learn's ``KMeans`` (``MiniBatchKMeans`` above a size threshold)
  and returns only its centres; :func:`nearest_centre` assigns rows to them with numpy in chunks,
  which is all scoring millions of customers needs.
* :func:`sweep_k` fits each k of a range and reports inertia (elbow), silhouette (on a sample: it
  is quadratic), Calinski-Harabasz, Davies-Bouldin and bootstrap stability; :func:`choose_k`
  picks one by the configured criterion among the stable k.
* :func:`stability` measures how much a k-means partition depends on luck: the adjusted Rand
  index (ARI) between the reference partition and refits with other seeds and on bootstrap
  samples, each refit assigning the same rows (Hennig 2007, "Cluster-wise assessment of cluster
  stability", uses the bootstrap in the same way).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from crmlab.errors import ModelError
from crmlab.export import Bundle
from crmlab.segmentation.rfm import NO_PURCHASE, RfmScorer, rfm_segment_names, segment_codes
from crmlab.utils import progress

__all__ = [
    "CRITERIA",
    "FeatureScaler",
    "choose_k",
    "elbow_k",
    "fit_kmeans",
    "nearest_centre",
    "sample_rows",
    "stability",
    "sweep_k",
]

log = logging.getLogger(__name__)

Transform = Literal["log", "standard", "quantile"]
#: criterion -> whether higher is better
CRITERIA: dict[str, bool] = {"silhouette": True, "calinski_harabasz": True, "davies_bouldin": False}
_N_QUANTILES = 101
_CHUNK = 1 << 18


@dataclass
class FeatureScaler:
    """Median imputation, an optional log or quantile transform, and a z-score, per feature.

    Fitted attributes end in ``_``; :meth:`to_arrays` / :meth:`from_arrays` round-trip them
    through a bundle without pickles.
    """

    transform: Transform = "log"
    medians_: np.ndarray | None = None
    quantiles_: np.ndarray | None = None
    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> FeatureScaler:
        if self.transform not in ("log", "standard", "quantile"):
            raise ModelError(f"transform={self.transform!r} should be one of log, standard, quantile")
        x = _as_matrix(x)
        if x.shape[0] < 2:
            raise ModelError(f"n_samples={x.shape[0]} should be >= 2 to fit a scaler")
        finite = np.where(np.isfinite(x), x, np.nan)
        with np.errstate(all="ignore"):
            medians = np.nanmedian(finite, axis=0) if np.isfinite(finite).any() else np.zeros(x.shape[1])
        self.medians_ = np.where(np.isfinite(medians), medians, 0.0)
        filled = self._impute(x)
        if self.transform == "quantile":
            self.quantiles_ = np.quantile(filled, np.linspace(0, 1, _N_QUANTILES), axis=0)
        y = self._shape(filled)
        self.mean_ = y.mean(axis=0)
        scale = y.std(axis=0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        return self

    def transform_rows(self, x: np.ndarray) -> np.ndarray:
        """Raw features (n x p, NaN allowed) -> the scaled space the centres live in."""
        if self.mean_ is None or self.scale_ is None:
            raise ModelError("FeatureScaler is not fitted: call fit first")
        x = _as_matrix(x)
        if x.shape[1] != len(self.mean_):
            raise ModelError(f"got {x.shape[1]} features, the scaler was fitted on {len(self.mean_)}")
        y = self._shape(self._impute(x))
        y -= self.mean_  # in place: scoring millions of rows should not allocate a matrix per step
        y /= self.scale_
        return y

    def _impute(self, x: np.ndarray) -> np.ndarray:
        """A copy of ``x`` with its missing and infinite values replaced by the training medians."""
        return np.where(np.isfinite(x), x, self.medians_)

    def _shape(self, x: np.ndarray) -> np.ndarray:
        """The log or quantile transform of an imputed copy, in place where possible."""
        if self.transform == "log":
            magnitude = np.log1p(np.abs(x))
            return np.copysign(magnitude, x, out=magnitude)
        if self.transform == "quantile":
            ref = np.linspace(0, 1, _N_QUANTILES)
            out = np.empty_like(x)
            for j in range(x.shape[1]):
                q = self.quantiles_[:, j]
                # averaging the forward and backward interpolation gives tied quantiles their middle
                out[:, j] = 0.5 * (np.interp(x[:, j], q, ref) - np.interp(-x[:, j], -q[::-1], -ref[::-1]))
            return out
        return x

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"scaler_medians": self.medians_, "scaler_mean": self.mean_, "scaler_scale": self.scale_}
        if self.quantiles_ is not None:
            arrays["scaler_quantiles"] = self.quantiles_
        return arrays

    @classmethod
    def from_arrays(cls, transform: Transform, arrays: dict[str, np.ndarray]) -> FeatureScaler:
        try:
            return cls(transform, arrays["scaler_medians"], arrays.get("scaler_quantiles"), arrays["scaler_mean"],
                       arrays["scaler_scale"])
        except KeyError as exc:
            raise ModelError(f"segmentation bundle: scaler array {exc} missing; retrain") from None


def _as_matrix(x: Any) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    return arr.reshape(-1, 1) if arr.ndim == 1 else arr


def nearest_centre(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) of each row, in chunks so memory stays flat.

    ``argmin ||z - c||^2 = argmin (||c||^2 - 2 z.c)``: one matrix product per chunk."""
    centres = np.asarray(centres, dtype=np.float64)
    c2 = (centres**2).sum(axis=1)
    out = np.empty(len(z), dtype=np.int32)
    for start in range(0, len(z), _CHUNK):
        block = z[start:start + _CHUNK]
        out[start:start + _CHUNK] = np.argmin(c2 - 2.0 * block @ centres.T, axis=1)
    return out


#: Up to this many rows K-means runs on one thread. scikit-learn's OpenMP threads synchronise after
#: every chunk of 256 rows; on a few thousand rows that costs more than it saves, and on a machine
#: whose cores are busy with other work each wait can last a scheduler slice: the demo's sweep (k=2..10
#: on 10,000 customers) took 27-31 s on two threads and 3-7 s on one on a loaded 2-core machine, with
#: the same labels, silhouettes and stability (inertia within 1e-16 relative: sums in another order).
ONE_THREAD_ROWS = 200_000


def fit_kmeans(z: np.ndarray, k: int, *, seed: int, n_init: int = 10, minibatch: bool = False) -> np.ndarray:
    """K-means centres (k x p) of the rows of ``z``; ``minibatch`` uses MiniBatchKMeans (millions of rows)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    if len(z) < k:
        raise ModelError(f"n_samples={len(z)} should be >= n_clusters={k}")
    if minibatch:
        model = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=n_init, batch_size=4096)
    else:
        model = KMeans(n_clusters=k, random_state=seed, n_init=n_init)
    with threadpool_limits(limits=1) if len(z) <= ONE_THREAD_ROWS else contextlib.nullcontext():
        return model.fit(z).cluster_centers_


def sample_rows(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded sample of ``size`` rows (all rows when there are fewer)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def stability(z: np.ndarray, k: int, *, seed: int, runs: int, reference: np.ndarray | None = None,
              seeds: bool = True, note: str | None = None) -> dict[str, float]:
    """Mean ARI between the partition ``reference`` of the rows of ``z`` (default: K-means with
    ``seed``) and ``runs`` refits on bootstrap samples (and, with ``seeds``, ``runs`` refits
    with other seeds), each assigning every row of ``z``; ``stability_ari`` is the lower of the
    two. 1 = the same partition every time.

    Each refit is a single k-means++ start, as a user with another seed or another month's
    customers would get: a partition that only the best of many starts finds is not stable.
    Each refit reports :func:`crmlab.utils.progress` (after ``note``, else after ``k=<k>``)."""
    from sklearn.metrics import adjusted_rand_score

    if reference is None:
        reference = nearest_centre(z, fit_kmeans(z, k, seed=seed))
    rng = np.random.default_rng(seed)
    boot = []
    for i in range(runs):
        progress(f"{note or f'k={k}'}, bootstrap refit {i + 1}/{runs}")
        idx = rng.integers(0, len(z), len(z))
        boot.append(adjusted_rand_score(reference, nearest_centre(z, fit_kmeans(z[idx], k, seed=seed + 1 + i,
                                                                                  n_init=1))))
    out = {"stability_ari_bootstrap": float(np.mean(boot))}
    if seeds:
        other = []
        for i in range(runs):
            progress(f"{note or f'k={k}'}, refit with another seed {i + 1}/{runs}")
            other.append(adjusted_rand_score(reference, nearest_centre(z, fit_kmeans(z, k, seed=seed + 1000 + i,
                                                                                     n_init=1))))
        out["stability_ari_seeds"] = float(np.mean(other))
    out["stability_ari"] = min(out.values())
    return out


def sweep_k(z: np.ndarray, k_values: Sequence[int], *, seed: int, n_init: int = 10, silhouette_sample: int = 5_000,
            stability_runs: int = 3, stability_threshold: float = 0.8) -> pd.DataFrame:
    """One row per k: ``inertia``, ``silhouette`` (on a seeded sample of ``silhouette_sample`` rows),
    ``calinski_harabasz``, ``davies_bouldin``, ``stability_ari`` (bootstrap) and ``unstable``
    (ARI below the threshold)."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    sil_rows = sample_rows(len(z), silhouette_sample, seed)
    rows = []
    k_values = list(k_values)
    start = time.perf_counter()
    for i, k in enumerate(k_values):
        best = max((r["silhouette"] for r in rows if np.isfinite(r["silhouette"])), default=None)
        note = f"k={k} ({i + 1}/{len(k_values)})"  # short: the step's own text comes first on the line
        progress(note + (f", best silhouette {best:.3f}" if best is not None else "")
                 + f", {time.perf_counter() - start:.0f}s elapsed")
        centres = fit_kmeans(z, k, seed=seed, n_init=n_init)
        labels = nearest_centre(z, centres)
        if len(np.unique(labels)) < 2:
            raise ModelError(f"k={k}: K-means put every customer in one cluster; the features hardly vary")
        inertia = float(((z - centres[labels]) ** 2).sum())
        ari = stability(z, k, seed=seed, runs=stability_runs, reference=labels, seeds=False, note=note)
        rows.append({
            "k": int(k),
            "inertia": inertia,
            "silhouette": float(silhouette_score(z[sil_rows], labels[sil_rows])) if len(np.unique(labels[sil_rows])) > 1
            else float("nan"),
            "calinski_harabasz": float(calinski_harabasz_score(z, labels)),
            "davies_bouldin": float(davies_bouldin_score(z, labels)),
            "stability_ari": ari["stability_ari"],
        })
        log.debug("k=%d: %s", k, rows[-1])
    table = pd.DataFrame(rows)
    table["unstable"] = table["stability_ari"] < stability_threshold
    return table


def _knee_distance(table: pd.DataFrame) -> np.ndarray:
    """How far each point of the inertia curve lies below the straight line from the first to the
    last point, both axes scaled to [0, 1] (the "kneedle" rule of Satopaa et al. 2011)."""
    k = table["k"].to_numpy(dtype=float)
    inertia = table["inertia"].to_numpy(dtype=float)
    if len(k) < 3:
        return np.zeros(len(k))
    x = (k - k[0]) / (k[-1] - k[0])
    span = inertia[0] - inertia[-1]
    y = (inertia - inertia[-1]) / span if span > 0 else np.zeros_like(inertia)
    return 1.0 - x - y


def elbow_k(table: pd.DataFrame) -> int:
    """The knee of the inertia curve (:func:`_knee_distance`)."""
    return int(table["k"].iloc[int(np.argmax(_knee_distance(table)))])


def choose_k(table: pd.DataFrame, criterion: str) -> int:
    """The best k of a sweep by ``criterion`` among the stable k (all k when none is stable). The
    elbow is found on the whole curve, then the stable k farthest below the line is taken."""
    stable = ~table["unstable"].to_numpy(dtype=bool)
    if not stable.any():
        stable[:] = True
    if criterion == "elbow":
        distance = np.where(stable, _knee_distance(table), -np.inf)
        return int(table["k"].iloc[int(np.argmax(distance))])
    if criterion not in CRITERIA:
        raise ModelError(f"k_selection={criterion!r} should be one of elbow, {', '.join(CRITERIA)}")
    values = table[criterion].to_numpy(dtype=float)
    values = np.where(stable & np.isfinite(values), values if CRITERIA[criterion] else -values, -np.inf)
    return int(table["k"].iloc[int(np.argmax(values))])


def _text(codes: np.ndarray, names: list[str]) -> pd.Series:
    """``names[codes]`` as a text column, built in Arrow: three times faster than from Python
    strings, which matters for millions of customers."""
    import pyarrow as pa

    return pd.Series(pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(names, pa.string()))
                     .dictionary_decode(), dtype="str")


@dataclass
class SegmentationModel:
    """A fitted segmentation: scaler, centres (in the scaled space), names and the RFM baseline.

    ``kind`` is what assigns the segments: ``kmeans`` (the nearest centre), ``rfm`` (the RFM
    segment, a fallback: ids are positions in :data:`RFM_NAMES`) or ``single`` (one segment)."""

    features: list[str]
    scaler: FeatureScaler
    centres: np.ndarray
    names: list[str]
    rfm: RfmScorer
    kind: str = "kmeans"

    @property
    def input_columns(self) -> list[str]:
        """``customer_id`` then every features column scoring reads, each once."""
        return list(dict.fromkeys(["customer_id", *self.features, "recency_days", "frequency", self.rfm.monetary]))

    def assign(self, features: pd.DataFrame) -> np.ndarray:
        """Segment id of each row (-1 for a customer without a purchase)."""
        if self.kind == "kmeans":
            x = features[self.features].to_numpy(dtype=np.float64, na_value=np.nan)
            seg = nearest_centre(self.scaler.transform_rows(x), self.centres)
        elif self.kind == "rfm":
            by_code = np.array([*(self.names.index(str(n)) for n in rfm_segment_names()), -1], dtype=np.int32)
            seg = by_code[segment_codes(self.rfm.score_arrays(features))]
        else:
            seg = np.zeros(len(features), dtype=np.int32)
        seg[~np.isfinite(features["recency_days"].to_numpy(dtype=np.float64, na_value=np.nan))] = -1
        return seg

    def score(self, features: pd.DataFrame) -> pd.DataFrame:
        """The scoring table of a checked features frame (:func:`score_segmentation`)."""
        seg = self.assign(features)
        rfm = self.rfm.score_arrays(features)
        rfm_score = (rfm["r_score"].astype(np.int16) * 100 + rfm["f_score"].astype(np.int16) * 10
                     + rfm["m_score"].astype(np.int16))
        return pd.DataFrame({
            "customer_id": features["customer_id"].reset_index(drop=True),
            "segment_id": seg,
            "segment_name": _text(np.where(seg >= 0, seg, len(self.names)), [*self.names, NO_PURCHASE]),
            "segment_rfm": _text(segment_codes(rfm), [*rfm_segment_names(), NO_PURCHASE]),
            "segment_rfm_score": rfm_score,
        })

    def to_bundle(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        params = {"features": self.features, "transform": self.scaler.transform, "names": self.names,
                  "rfm_monetary": self.rfm.monetary, "kind": self.kind}
        return params, {"centres": self.centres, **self.scaler.to_arrays(), **self.rfm.to_arrays()}

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> SegmentationModel:
        p = bundle.params
        missing = [k for k in ("features", "transform", "names", "rfm_monetary") if k not in p]
        if missing or "centres" not in bundle.arrays:
            raise ModelError(f"{bundle.path}: lacks {missing or ['centres']}; not a segmentation bundle of this "
                             "crmlab, retrain")
        kind = str(p.get("kind", "kmeans"))
        if kind not in ("kmeans", "rfm", "single"):
            raise ModelError(f"{bundle.path}: unknown segmentation kind {kind!r}; retrain")
        return cls(list(p["features"]), FeatureScaler.from_arrays(p["transform"], bundle.arrays),
                   bundle.arrays["centres"], list(p["names"]), RfmScorer.from_arrays(p["rfm_monetary"], bundle.arrays),
                   kind)
