"""The cross-sell pipeline end to end on a synthetic base with planted complements: real files, a real
MLflow store, a real bundle, the command line."""

from __future__ import annotations

import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest

from crmlab.cli import main
from crmlab.config import TrackingConfig, load_config
from crmlab.crosssell.baskets import basket_matrix, join_items
from crmlab.crosssell.bundle import add_purchased_items, evaluate_bundle, output_columns, score_crosssell
from crmlab.crosssell.pipeline import train_crosssell
from crmlab.data.synth import ProductParams, write_synthetic
from crmlab.errors import NotApplicable
from crmlab.export import load_bundle
from crmlab.features import build_features_from_tables
from crmlab.scoring import score_customers
from crmlab.workflow import prepare_data

from ..conftest import empty_config_dir, synthetic_project


def _sets(root, transactions, tracking):
    return [f"project.tracking.uri={tracking.uri}", f"project.tracking.artifact_dir={tracking.artifact_dir}",
            "project.tracking.experiment=test", f"project.output.dir={root / 'outputs'}",
            f"project.output.models_dir={root / 'models'}", f"project.data.transactions.path={transactions}",
            "project.cleaning.max_date=2024-12-31", "crosssell.k=5"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _empty_mlflow_db):
    root = tmp_path_factory.mktemp("crosssell")
    shutil.copy(_empty_mlflow_db, root / "mlflow.db")
    tracking = TrackingConfig(uri=f"sqlite:///{root / 'mlflow.db'}", artifact_dir=root / "mlartifacts",
                              experiment="test")
    paths = write_synthetic(root / "synth", n_customers=8000, seed=7, products=ProductParams())
    sets = _sets(root, paths["transactions"], tracking)
    cfg = load_config(empty_config_dir(root), sets)
    return cfg, sets, paths, train_crosssell(cfg)


def test_the_planted_pairs_are_the_top_lift_pairs(trained):
    _, _, paths, result = trained
    planted = pd.read_csv(paths["planted_pairs"])
    truth = {frozenset(p) for p in zip(planted["product_a"], planted["product_b"], strict=True)}
    rules = result.rules
    top = {frozenset(p) for p in zip(rules["antecedent"], rules["consequent"], strict=True)}
    ranked = list(dict.fromkeys(frozenset(p) for p in zip(rules["antecedent"], rules["consequent"], strict=True)))
    assert set(ranked[:len(truth)]) == truth and truth <= top
    planted_lift = rules[[frozenset(p) in truth for p in zip(rules["antecedent"], rules["consequent"], strict=True)]]
    others = rules[[frozenset(p) not in truth for p in zip(rules["antecedent"], rules["consequent"], strict=True)]]
    assert planted_lift["lift"].min() > 5 > 2 > others["lift"].max()


def test_item_item_beats_popularity_on_hit_rate_at_5_and_ships(trained):
    _, _, _, result = trained
    board = result.leaderboard[result.leaderboard["k"] == 5].set_index("model")
    assert board.loc["itemitem", "hit_rate"] > board.loc["popularity", "hit_rate"] + 0.02
    assert result.comparison["hit_p_value"] < 0.05 and result.comparison["hit_wins"] > result.comparison["hit_losses"]
    assert result.comparison["ap_diff_ci_low"] > 0
    assert result.shipped == "itemitem" and "beats the popularity baseline" in result.shipped_because
    assert result.metrics["hit_rate"] == board.loc["itemitem", "hit_rate"]
    assert result.holdout.n_customers > 500


def test_the_run_the_manifest_and_the_registry_say_what_shipped_and_why(trained):
    cfg, _, _, result = trained
    client = mlflow.MlflowClient(cfg.project.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["crmlab.shipped"] == "itemitem"
    assert run.data.tags["crmlab.shipped_because"] == result.shipped_because
    for key in ("hit_rate", "map", "recall", "precision", "coverage", "popularity_hit_rate", "hit_p_value"):
        assert np.isfinite(run.data.metrics[key]), key
    assert client.get_model_version("crmlab-crosssell", "1").run_id == result.run_id
    bundle = load_bundle(result.bundle_path, pipeline="crosssell")
    assert bundle.manifest["model"] == "itemitem" and bundle.manifest["shipped_because"] == result.shipped_because
    assert bundle.manifest["training_window"]["as_of"] == result.as_of.isoformat()
    assert not any(p.suffix in (".pkl", ".pickle", ".joblib") for p in result.bundle_path.iterdir())
    # the exported model was refitted on every basket up to as_of, not only those before the holdout
    tx = prepare_data(cfg.project).tables.transactions
    before = basket_matrix(tx, item_column="product_id", as_of=result.holdout.cutoff).n_baskets
    assert bundle.manifest["n_baskets"] == result.model.co_.n_baskets == result.metrics["n_baskets"] > before * 1.05


def test_the_bundle_scores_as_the_model_in_memory_and_as_the_pyfunc(trained):
    _, _, _, result = trained
    h = result.holdout
    frame = pd.DataFrame({"customer_id": pd.Series(h.customers, dtype="string"),
                          "items_bought": pd.Series(join_items(h.history, h.items), dtype="string")})
    scored = score_crosssell(frame, result.bundle_path)
    assert list(scored.columns) == output_columns(5)
    idx, val = result.model.recommend(h.history, 5)
    names = np.append(result.model.items_, None)[idx]
    for i in range(5):
        assert scored[f"next_product_{i + 1}"].astype(object).where(scored[f"next_product_{i + 1}"].notna(),
                                                                    None).tolist() == names[:, i].tolist()
        np.testing.assert_allclose(scored[f"next_product_score_{i + 1}"].to_numpy(), val[:, i])
    pyfunc = mlflow.pyfunc.load_model(result.model_uri).predict(frame.head(50))
    pd.testing.assert_frame_equal(pyfunc.reset_index(drop=True), scored.head(50), check_dtype=False)


def test_crmlab_score_adds_the_next_products_never_already_bought(trained):
    cfg, _, _, result = trained
    tables = prepare_data(cfg.project).tables
    scores = score_customers(cfg, pipelines=["crosssell"], tables=tables, as_of=result.as_of)
    assert {"next_product_1", "next_product_5", "next_product_score_1"} <= set(scores.columns)
    assert scores["customer_id"].is_unique and scores["next_product_1"].notna().all()
    feats = build_features_from_tables(tables, as_of=result.as_of, cfg=cfg.project)
    bought = add_purchased_items(feats, tables, load_bundle(result.bundle_path), as_of=result.as_of)
    merged = scores.merge(bought, on="customer_id")
    for row in merged.head(300).itertuples():
        mine = set(str(row.items_bought).split("|"))
        assert not mine & {getattr(row, f"next_product_{i}") for i in range(1, 6)}


def test_another_bundle_is_judged_on_the_holdout_refitted_when_it_has_seen_it(trained, tmp_path):
    cfg, sets, _, result = trained
    # the shipped bundle was refitted up to as_of: it saw the holdout, so its specification is refitted on
    # the challenger's baskets, which gives back the challenger's own figures
    same = evaluate_bundle(result.bundle_path, result)
    assert same["refitted"] == 1.0
    board = result.leaderboard[result.leaderboard["k"] == result.k].set_index("model").loc["itemitem"]
    for key in ("hit_rate", "precision", "recall", "map", "coverage"):
        assert same[key] == pytest.approx(board[key]), key
    # a model trained at the holdout's start has not seen it: judged as it is
    early = load_config(empty_config_dir(tmp_path), [*sets, f"project.as_of={result.holdout.cutoff}",
                                                     f"project.output.models_dir={tmp_path / 'models'}",
                                                     "project.tracking.enabled=false"])
    older = evaluate_bundle(train_crosssell(early).bundle_path, result)
    assert older["refitted"] == 0.0 and 0 < older["hit_rate"] <= 1


def test_without_a_product_column_train_stops_with_one_line_and_train_all_skips(tmp_path, capsys, monkeypatch):
    sets = synthetic_project(tmp_path, n_customers=200, seed=3)  # transactions with category, no product_id
    cfg = load_config(empty_config_dir(tmp_path), sets)
    with pytest.raises(NotApplicable, match=r"transactions\.csv: column 'product_id': no column 'product_id' "
                                            r"\(crosssell\.item_column\)"):
        train_crosssell(cfg)
    args = ["-c", str(empty_config_dir(tmp_path))] + [a for s in sets for a in ("--set", s)]
    assert main([*args, "train", "crosssell"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "transactions.csv" in errors[0] and "crosssell.item_column" in errors[0]
    # train all: skipped with a note (the other pipelines are not what this test is about)
    from crmlab import pipelines

    monkeypatch.setattr(pipelines, "training_order", lambda: ("crosssell",))
    assert main([*args, "train", "all"]) == 0
    assert "note: crosssell skipped:" in capsys.readouterr().out
    assert not (tmp_path / "models" / "crosssell").exists()
    # with the category column it trains
    result = train_crosssell(load_config(empty_config_dir(tmp_path), [*sets, "crosssell.item_column=category",
                                                                      "project.tracking.enabled=false"]))
    # (the cleaner fills a missing category with "unknown": project.cleaning.missing)
    assert set(result.model.items_) <= {"books", "music", "electronics", "home", "toys", "unknown"}


def test_score_skips_crosssell_when_it_was_never_trained(tmp_path, caplog):
    sets = synthetic_project(tmp_path, n_customers=200, seed=3)
    cfg = load_config(empty_config_dir(tmp_path), [*sets, "project.tracking.enabled=false"])
    from crmlab.scoring import load_models

    (tmp_path / "models" / "segmentation").mkdir(parents=True)
    with pytest.raises(Exception, match="no trained customer model"):
        load_models(cfg, source="models")
    assert "not scoring crosssell: never trained" in caplog.text


def test_scores_do_not_depend_on_the_chunks_and_the_report_reads_the_tables(trained, tmp_path):
    cfg, _, _, result = trained
    from crmlab.report import read_pipeline_outputs
    from crmlab.scoring import write_scores

    tables = prepare_data(cfg.project).tables
    whole = write_scores(cfg, tmp_path / "a.parquet", pipelines=["crosssell"], tables=tables, source="models")
    parts = write_scores(cfg, tmp_path / "b.parquet", pipelines=["crosssell"], tables=tables, source="models",
                         chunk_size=2_000)
    assert whole["rows"] == parts["rows"] > 7_000
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))
    outputs = read_pipeline_outputs(cfg.project.output.models_dir, "crosssell")
    assert outputs.problems == [] and set(outputs.tables) == {"leaderboard", "rules"}
    assert outputs.manifest["model"] == "itemitem" and len(outputs.tables["rules"]) == 200
