"""Segmentation on a user's own small data (issue 14, item 4): an unstable K-means is never shipped.

With too few customers, or no stable k, the RFM segments ship instead, with a note in the log, the
MLflow run, the manifest and the printed summary, and ``crmlab score`` reads them from the bundle;
well-separated behavioural groups still ship K-means with the right k."""

from __future__ import annotations

import json
from datetime import date

import mlflow
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from crmlab.cli import main
from crmlab.config import load_config
from crmlab.segmentation.pipeline import train_segmentation
from ..conftest import empty_config_dir


def _b2b_orders(path, n_accounts=30, seed=1):
    """A B2B order log: a few dozen accounts over one year (2011), Poisson order counts, lognormal values."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_accounts):
        for day in np.sort(rng.integers(0, 365, rng.poisson(6) + 1)):
            rows.append({"account": f"ACC{i:03d}", "order_date": str(date(2011, 1, 3) + pd.Timedelta(days=int(day))),
                         "value": round(float(rng.lognormal(7, 0.8)), 2)})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _sets(tmp_path, path, tracking=None):
    sets = [f"project.data.transactions.path={path}",
            "project.data.transactions.columns={customer_id: account, ts: order_date, amount: value}",
            f"project.output.dir={tmp_path / 'o'}", f"project.output.models_dir={tmp_path / 'm'}"]
    if tracking is None:
        return [*sets, "project.tracking.enabled=false"]
    return [*sets, f"project.tracking.uri={tracking.uri}", f"project.tracking.artifact_dir={tracking.artifact_dir}",
            "project.tracking.experiment=test"]


def test_thirty_accounts_ship_the_rfm_segments_and_score_them_through_the_cli(tmp_path, tracking, capsys):
    path = _b2b_orders(tmp_path / "orders.csv")
    args = [a for s in _sets(tmp_path, path, tracking) for a in ("--set", s)]
    assert main(["-c", str(empty_config_dir(tmp_path)), *args, "train", "segmentation"]) == 0
    out = capsys.readouterr().out
    assert "no K-means shipped: 30 customers" in out and "segmentation.min_customers=50" in out
    manifest = json.loads((tmp_path / "m" / "segmentation" / "manifest.json").read_text())
    assert manifest["kind"] == "rfm" and manifest["algorithm"] == "RFM segments" and "30 customers" in manifest["fallback"]
    assert manifest["model"] == "rfm" and manifest["shipped_because"] == manifest["fallback"]
    assert not any(p.suffix in {".pkl", ".pickle", ".joblib"} for p in (tmp_path / "m" / "segmentation").iterdir())
    run = mlflow.MlflowClient(tracking.uri).search_runs(
        [mlflow.MlflowClient(tracking.uri).get_experiment_by_name("test").experiment_id])[0]
    assert run.data.tags["crmlab.model"] == "rfm" and "30 customers" in run.data.tags["crmlab.fallback"]
    assert run.data.metrics["kmeans_shipped"] == 0 and run.data.metrics["n_customers"] == 30

    target = tmp_path / "scores.csv"
    assert main(["-c", str(empty_config_dir(tmp_path)), *args, "score", "--model", "segmentation", "--out", str(target)]) == 0
    scores = pd.read_csv(target)
    assert len(scores) == 30 and (scores["segment_id"] >= 0).all()
    # the shipped segments are the RFM segments, each customer's own
    assert (scores["segment_name"] == scores["segment_rfm"]).all()
    assert set(scores["segment_name"]) == set(manifest["segment_names"])
    assert scores["segment_name"].nunique() >= 3  # not everyone in one needs_attention


def test_no_stable_k_ships_the_fallback_never_the_unstable_kmeans(tmp_path):
    path = _b2b_orders(tmp_path / "orders.csv")
    cfg = load_config(empty_config_dir(tmp_path), [*_sets(tmp_path, path), "segmentation.min_customers=10"])
    result = train_segmentation(cfg)
    assert result.sweep is not None and result.sweep["unstable"].all()  # K-means was tried: every k unstable
    assert result.model.kind == "rfm" and result.fallback.startswith("no k in 2..10 is stable")
    assert result.metrics["kmeans_best_stability_ari"] == pytest.approx(result.sweep["stability_ari"].max())
    assert result.metrics["kmeans_shipped"] == 0 and np.isfinite(result.metrics["silhouette"])
    single = train_segmentation(load_config(empty_config_dir(tmp_path), [*_sets(tmp_path, path),
                                                                      "segmentation.fallback=single"]))
    assert single.model.kind == "single" and single.k == 1
    assert set(single.scores["segment_name"]) == {"all_customers"}


def _blob_orders(path, per_group=100, seed=0):
    """Three well-separated behaviours: one small order a year ago; six medium orders, last two
    months ago; thirty large orders, last in the past week."""
    rng = np.random.default_rng(seed)
    end = pd.Timestamp("2023-12-31")
    rows, truth = [], {}
    groups = [(1, 330, 20.0), (6, 60, 120.0), (30, 3, 1500.0)]
    for g, (orders, last_days_ago, amount) in enumerate(groups):
        for i in range(per_group):
            cid = f"C{g}{i:03d}"
            truth[cid] = g
            last = end - pd.Timedelta(days=int(last_days_ago + rng.integers(0, 5)))
            for j in range(orders):
                rows.append({"account": cid, "order_date": str((last - pd.Timedelta(days=9 * j)).date()),
                             "value": round(amount * float(rng.lognormal(0, 0.1)), 2)})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, truth


def test_well_separated_groups_still_ship_kmeans_with_the_right_k(tmp_path):
    path, truth = _blob_orders(tmp_path / "orders.csv")
    cfg = load_config(empty_config_dir(tmp_path), [*_sets(tmp_path, path), "segmentation.k_range=[2,6]",
                                                "segmentation.stability_runs=2"])
    result = train_segmentation(cfg)
    assert result.fallback is None and result.model.kind == "kmeans" and result.k == 3
    assert result.metrics["stable"] == 1 and result.metrics["kmeans_shipped"] == 1
    scores = result.scores.set_index("customer_id")["segment_id"]
    assert adjusted_rand_score([truth[c] for c in scores.index], scores.to_numpy()) == pytest.approx(1.0)


def test_segmentation_as_of_follows_the_data_or_project_as_of(tmp_path):
    path = _b2b_orders(tmp_path / "orders.csv")
    result = train_segmentation(load_config(empty_config_dir(tmp_path), _sets(tmp_path, path)))
    last = pd.read_csv(path)["order_date"].max()
    assert str(result.as_of) == last  # the log's own last date, no demo date
    pinned = train_segmentation(load_config(empty_config_dir(tmp_path), [*_sets(tmp_path, path),
                                                                      "project.as_of=2011-01-20"]))
    assert pinned.as_of == date(2011, 1, 20) and pinned.metrics["n_customers"] < 30


def test_a_fixed_k_that_is_unstable_is_not_shipped_either(tmp_path):
    path = _b2b_orders(tmp_path / "orders.csv")
    result = train_segmentation(load_config(empty_config_dir(tmp_path), [*_sets(tmp_path, path), "segmentation.k=6",
                                                                      "segmentation.min_customers=10"]))
    assert result.model.kind == "rfm" and result.fallback.startswith("k=6 (fixed) is unstable: stability ARI")
    assert result.metrics["kmeans_best_stability_ari"] < 0.8
