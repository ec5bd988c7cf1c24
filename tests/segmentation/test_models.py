"""The model core on simulated data with known groups: recovery, the k sweep, scaling, stability."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from crmlab.errors import ModelError
from crmlab.features import build_features
from crmlab.segmentation import FeatureScaler, choose_k, nearest_centre, stability, sweep_k
from crmlab.segmentation.models import elbow_k, fit_kmeans
from crmlab.segmentation.pipeline import fit_segments, purchasers

AS_OF = date(2024, 6, 30)
FEATURES = ["recency_days", "frequency", "monetary_value"]


def simulate_groups(sizes: tuple[int, int, int] = (300, 300, 300), seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Transactions of three well-separated behaviours, and each customer's true group:

    0 "champions": 40-80 purchases 4-6 days apart, ~200 each, the last a few days ago;
    1 "hibernating": a single purchase 600-900 days ago, ~5;
    2 "new": a single purchase in the last 10 days, ~40.
    """
    rng = np.random.default_rng(seed)
    rows, truth = [], {}
    for group, size in enumerate(sizes):
        for i in range(size):
            cid = f"g{group}-{i:04d}"
            truth[cid] = group
            if group == 0:
                ages = np.cumsum(rng.integers(4, 7, size=rng.integers(40, 81))) - rng.integers(0, 4)
                amounts = rng.lognormal(np.log(200), 0.2, size=len(ages))
            elif group == 1:
                ages = 600 + rng.integers(0, 300, size=1)
                amounts = rng.lognormal(np.log(5), 0.2, size=1)
            else:
                ages = rng.integers(0, 10, size=1)
                amounts = rng.lognormal(np.log(40), 0.2, size=1)
            for age, amount in zip(ages, amounts):
                rows.append((cid, pd.Timestamp(AS_OF - timedelta(days=int(age))), float(amount)))
    tx = pd.DataFrame(rows, columns=["customer_id", "ts", "amount"])
    return tx, pd.Series(truth, name="group")


@pytest.fixture(scope="module")
def groups():
    tx, truth = simulate_groups()
    base = purchasers(build_features(tx, as_of=AS_OF))
    x = base[FEATURES].to_numpy(dtype=np.float64)
    return base, truth.reindex(base["customer_id"]).to_numpy(), x


@pytest.mark.parametrize("transform", ["log", "standard"])
def test_known_groups_are_recovered(groups, transform):
    base, truth, x = groups
    z = FeatureScaler(transform).fit(x).transform_rows(x)
    labels = nearest_centre(z, fit_segments(z, 3, seed=1, n_init=4, minibatch=False))
    assert adjusted_rand_score(truth, labels) > 0.9


def test_minibatch_recovers_the_groups_too(groups):
    base, truth, x = groups
    z = FeatureScaler("log").fit(x).transform_rows(x)
    labels = nearest_centre(z, fit_segments(z, 3, seed=1, n_init=3, minibatch=True))
    assert adjusted_rand_score(truth, labels) > 0.9


def test_segments_are_numbered_by_size():
    rng = np.random.default_rng(3)
    z = np.r_[rng.normal(0, 0.1, (50, 2)), rng.normal(5, 0.1, (200, 2)), rng.normal(-5, 0.1, (100, 2))]
    sizes = np.bincount(nearest_centre(z, fit_segments(z, 3, seed=0, n_init=2, minibatch=False)))
    assert sizes.tolist() == [200, 100, 50]


def test_sweep_picks_the_true_k_on_separated_data(groups):
    base, truth, x = groups
    z = FeatureScaler("log").fit(x).transform_rows(x)
    table = sweep_k(z, range(2, 7), seed=0, n_init=3, silhouette_sample=500, stability_runs=2)
    assert table["k"].tolist() == [2, 3, 4, 5, 6]
    assert list(table.columns) == ["k", "inertia", "silhouette", "calinski_harabasz", "davies_bouldin",
                                   "stability_ari", "unstable"]
    assert table["inertia"].is_monotonic_decreasing
    for criterion in ("silhouette", "davies_bouldin", "elbow"):
        assert choose_k(table, criterion) == 3, criterion
    assert not table.loc[table["k"] == 3, "unstable"].item()


def test_every_criterion_finds_the_blobs():
    from sklearn.datasets import make_blobs

    z, _ = make_blobs(n_samples=800, centers=4, n_features=3, cluster_std=0.5, random_state=3)
    table = sweep_k(z, range(2, 8), seed=0, n_init=3, silhouette_sample=400, stability_runs=2)
    for criterion in ("silhouette", "calinski_harabasz", "davies_bouldin", "elbow"):
        assert choose_k(table, criterion) == 4, criterion


def test_elbow_is_the_knee_of_a_hand_made_curve():
    table = pd.DataFrame({"k": [2, 3, 4, 5, 6], "inertia": [100.0, 40.0, 30.0, 25.0, 22.0]})
    assert elbow_k(table) == 3


def test_choose_k_skips_unstable_k():
    table = pd.DataFrame({"k": [2, 3, 4], "silhouette": [0.5, 0.9, 0.6], "unstable": [False, True, False]})
    assert choose_k(table, "silhouette") == 4


def test_stability_is_one_on_separated_blobs_and_low_on_noise():
    rng = np.random.default_rng(0)
    blobs = np.r_[rng.normal(0, 0.2, (150, 2)), rng.normal(4, 0.2, (150, 2)), rng.normal((0, 4), 0.2, (150, 2))]
    assert stability(blobs, 3, seed=0, runs=3)["stability_ari"] > 0.99
    noise = rng.uniform(size=(300, 2))
    assert stability(noise, 6, seed=0, runs=2)["stability_ari"] < 0.9


def test_nearest_centre_matches_sklearn_predict():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(5000, 4))
    km = KMeans(n_clusters=6, random_state=0, n_init=2).fit(z)
    np.testing.assert_array_equal(nearest_centre(z, km.cluster_centers_), km.predict(z))


def test_scaler_round_trips_and_imputes_medians():
    x = np.array([[1.0, 10.0], [3.0, np.nan], [2.0, 30.0], [100.0, 20.0]])
    for transform in ("log", "standard", "quantile"):
        scaler = FeatureScaler(transform).fit(x)
        again = FeatureScaler.from_arrays(transform, scaler.to_arrays())
        np.testing.assert_allclose(again.transform_rows(x), scaler.transform_rows(x))
        z = scaler.transform_rows(x)
        assert np.isfinite(z).all()
        assert z[1, 1] == pytest.approx(scaler.transform_rows(np.array([[3.0, 20.0]]))[0, 1])  # median 20
    z = FeatureScaler("standard").fit(x).transform_rows(x)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-12)


def test_too_few_rows_is_a_clear_error():
    with pytest.raises(ModelError, match="n_samples=2 should be >= n_clusters=3"):
        fit_kmeans(np.zeros((2, 2)), 3, seed=0)


def test_the_sweep_reports_each_k_and_one_thread_gives_the_sweep_of_every_core(monkeypatch):
    """The sweep says which k it is fitting (and the best silhouette so far) on the step's spinner
    line; running small fits on one thread (the default below ONE_THREAD_ROWS) leaves its table as
    scikit-learn's default threads give it."""
    from crmlab.segmentation import models
    from crmlab.utils import progress_to

    rng = np.random.default_rng(3)
    z = np.vstack([rng.normal(c, 0.3, size=(200, 2)) for c in ((0, 0), (3, 0), (0, 3))])
    said: list[str] = []
    with progress_to(said.append):
        one = sweep_k(z, range(2, 5), seed=0, n_init=2, stability_runs=2)
    sweep_said = [s for s in said if "bootstrap" not in s]
    assert [s.split(" (")[0] for s in sweep_said] == ["k=2", "k=3", "k=4"]
    assert sweep_said[0].startswith("k=2 (1/3), ") and "best silhouette" not in sweep_said[0]
    best = float(one["silhouette"].iloc[:2].max())
    assert sweep_said[2].startswith(f"k=4 (3/3), best silhouette {best:.3f}, ")
    assert said[4] == "k=3 (2/3), bootstrap refit 1/2"
    monkeypatch.setattr(models, "ONE_THREAD_ROWS", 0)
    every = sweep_k(z, range(2, 5), seed=0, n_init=2, stability_runs=2)
    pd.testing.assert_frame_equal(one, every, check_exact=False, rtol=1e-12)
