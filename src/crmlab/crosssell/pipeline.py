"""The cross-sell pipeline: baskets -> time holdout -> item-item against popularity -> paired test ->
ship the better -> refit on every purchase up to as_of -> rules -> export -> track.

Steps are pure functions named with verbs; :func:`train_crosssell` only wires them::

    prepare_data -> check_item_column -> resolve_horizon
      -> make_holdout (baskets up to as_of - horizon; customers' new items in the horizon)
      -> fit_models (item-item, popularity) -> evaluate_models (hit rate, precision, recall, MAP,
         coverage at 1, 3, 5, 10 and k) -> compare_paired (sign test on hits, bootstrap of AP)
      -> choose_shipped -> refit (every basket up to as_of) -> association_rules -> export_bundle
      -> log_training

Without the item column (CDNOW has none) the training stops before anything is tracked, with a
:class:`~crmlab.errors.NotApplicable` naming the table and ``crosssell.item_column``; ``crmlab train
all`` and ``crmlab demo`` then skip the pipeline with a note.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from crmlab.config import CrmlabConfig, CrosssellConfig, config_hash
from crmlab.crosssell.baskets import Baskets, basket_matrix, join_items
from crmlab.crosssell.bundle import export_bundle, score_crosssell
from crmlab.crosssell.evaluate import compare_paired, per_customer_metrics, summarise
from crmlab.crosssell.models import Recommender, association_rules
from crmlab.crosssell.result import CrosssellResult, Holdout
from crmlab.errors import ConfigError, DataError, ModelError, NotApplicable
from crmlab.features.frames import source_name
from crmlab.registry import check_evaluation
from crmlab.tracking import Run, Tracker
from crmlab.training import register_pyfunc, training_run
from crmlab.utils import Step, no_step
from crmlab.workflow import prepare_data

__all__ = ["AUTO_HORIZON_DAYS", "EVAL_KS", "check_item_column", "choose_shipped", "evaluate_models", "fit_models",
           "log_training", "make_holdout", "make_model", "resolve_horizon", "train_crosssell"]

log = logging.getLogger(__name__)

#: The holdout of ``crosssell.horizon_days: auto``, shortened to a quarter of the data's span.
AUTO_HORIZON_DAYS = 90
#: Cut-offs of the leaderboard besides ``crosssell.k``.
EVAL_KS = (1, 3, 5, 10)
MODELS = ("itemitem", "popularity")


def check_item_column(transactions: pd.DataFrame | None, item_column: str) -> None:
    """Stop with :class:`NotApplicable` (one line naming the table and the key) when the transactions
    lack the item column or hold no value in it."""
    if transactions is None:
        raise NotApplicable("cross-sell needs transactions", file="project.data.transactions",
                            expected="a transactions table with a product or category column")
    where = source_name(transactions, "transactions")
    hint = (f"map your product or category column to {item_column!r} in project.data.transactions.columns, "
            "or set crosssell.item_column to a column the table has")
    if item_column not in transactions.columns:
        raise NotApplicable(f"no column {item_column!r} (crosssell.item_column) to recommend", file=where,
                            column=item_column, expected=f"{hint}; found {list(map(str, transactions.columns))}")
    if transactions[item_column].notna().sum() == 0:
        raise NotApplicable(f"column {item_column!r} (crosssell.item_column) holds no value", file=where,
                            column=item_column, expected=hint)


def resolve_horizon(horizon_days: int | str, *, first: date, as_of: date) -> int:
    """``crosssell.horizon_days``; auto: :data:`AUTO_HORIZON_DAYS`, at most a quarter of the span from the
    first transaction to ``as_of``. A DataError when the holdout would leave nothing to learn from."""
    span = (as_of - first).days
    if horizon_days == "auto":
        horizon = min(AUTO_HORIZON_DAYS, span // 4)
    else:
        horizon = int(horizon_days)
    if horizon < 1 or horizon >= span:
        raise DataError(f"the data span {span} days ({first} to {as_of}): too short for a cross-sell holdout of "
                        f"{horizon} days (crosssell.horizon_days={horizon_days}) with purchases before it", column="ts")
    return horizon


def make_holdout(transactions: pd.DataFrame, *, item_column: str, cutoff: date, as_of: date) -> tuple[Baskets, Holdout]:
    """The baskets up to ``cutoff`` and the holdout: the customers with a purchase up to ``cutoff`` who
    first bought at least one catalogue item (one in the training baskets) in ``(cutoff, as_of]``; items
    first sold in the horizon cannot be recommended by either model and are left out."""
    train = basket_matrix(transactions, item_column=item_column, as_of=cutoff)
    later = basket_matrix(transactions, item_column=item_column, as_of=as_of, after=cutoff, items=train.items,
                          customers=train.customers)
    new = later.history - later.history.multiply(train.history)
    new.eliminate_zeros()
    judged = np.flatnonzero(np.diff(new.indptr) > 0)
    holdout = Holdout(cutoff=cutoff, as_of=as_of, items=train.items, customers=train.customers[judged],
                      history=train.history[judged], relevant=new[judged].tocsr(), baskets=train.matrix)
    return train, holdout


def fit_models(baskets: Baskets, cfg: CrosssellConfig) -> dict[str, Recommender]:
    """The item-item model and the popularity baseline, fitted on the same baskets."""
    return {kind: make_model(kind, cfg).fit(baskets.matrix, baskets.items) for kind in MODELS}


def make_model(kind: str, cfg: CrosssellConfig) -> Recommender:
    """An unfitted recommender of ``kind`` with the config's settings."""
    return Recommender(kind, smoothing=cfg.smoothing, min_item_count=cfg.min_item_count,
                       min_pair_count=cfg.min_pair_count, min_lift=cfg.min_lift)


def evaluate_models(models: Mapping[str, Recommender], holdout: Holdout, k: int,
                    ks: tuple[int, ...] = EVAL_KS) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The leaderboard (``model``, ``k``, ``hit_rate``, ``precision``, ``recall``, ``map``, ``coverage``,
    ``customers``) at every k of ``ks`` and ``k``, and each model's per-customer metrics at ``k``."""
    cuts = sorted({*ks, k})
    rows, per = [], {}
    for name, model in models.items():
        idx, _ = model.recommend(holdout.history, max(cuts))
        n_candidates = int(model.candidates_.sum())
        for cut in cuts:
            pc = per_customer_metrics(idx, holdout.relevant, cut)
            rows.append({"model": name, "k": cut, **summarise(pc, idx, cut, n_candidates),
                         "customers": holdout.n_customers})
            if cut == k:
                per[name] = pc
    return pd.DataFrame(rows), per


def choose_shipped(board: pd.DataFrame, comparison: Mapping[str, float], cfg: CrosssellConfig) -> tuple[str, str]:
    """Which model ships and why: item-item only when its hit rate@k beats the baseline's with the sign
    test's p below ``crosssell.alpha`` (``ship: auto``), else the simpler popularity; or the configured one."""
    at = board[board["k"] == cfg.k].set_index("model")["hit_rate"]
    mine, base = float(at["itemitem"]), float(at["popularity"])
    p = float(comparison["hit_p_value"])
    figures = (f"hit rate@{cfg.k} item-item {mine:.3f} vs popularity {base:.3f}, sign test p={p:.3g} "
               f"(wins {int(comparison['hit_wins'])}, losses {int(comparison['hit_losses'])})")
    if cfg.ship != "auto":
        return cfg.ship, f"crosssell.ship={cfg.ship}; {figures}"
    if mine > base and p < cfg.alpha:
        return "itemitem", f"it beats the popularity baseline: {figures} < crosssell.alpha={cfg.alpha:g}"
    why = "no better" if mine <= base else f"not significantly better (p >= crosssell.alpha={cfg.alpha:g})"
    return "popularity", f"item-item is {why} than the popularity baseline: {figures}"


def _metrics(board: pd.DataFrame, comparison: Mapping[str, float], shipped: str, k: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for row in board.itertuples(index=False):
        for key in ("hit_rate", "precision", "recall", "map", "coverage"):
            value = float(getattr(row, key))
            if row.k == k:
                out[f"{row.model}_{key}"] = value
                if row.model == shipped:
                    out[key] = value
            else:
                out[f"{row.model}_{key}_at_{row.k}"] = value
    out.update({key: float(v) for key, v in comparison.items()})
    out["k"] = float(k)
    out["eval_customers"] = float(board["customers"].iloc[0]) if len(board) else 0.0
    return out


# --------------------------------------------------------------------------- tracking


def log_training(run: Run, result: CrosssellResult, *, registered_model_name: str | None = None) -> None:
    """Log one training to its MLflow run: what shipped and why (tags), parameters, metrics, the
    leaderboard and rules (tables and a chart) and the model (a pyfunc over the bundle, registered)."""
    if not run.active:
        return
    from crmlab.crosssell import plots
    from crmlab.registry import model_name

    run.log_params({"item_column": result.item_column, "k": result.k, "horizon_days": result.horizon_days,
                    "holdout_start": result.holdout.cutoff.isoformat(), "shipped": result.shipped})
    run.set_tags({"crmlab.model": result.shipped, "crmlab.shipped": result.shipped,
                  "crmlab.shipped_because": result.shipped_because[:4000]})
    run.log_metrics(result.metrics)
    run.log_table(result.leaderboard, "crosssell/leaderboard.csv")
    run.log_table(result.rules, "crosssell/rules.csv")
    run.log_figure(plots.plot_leaderboard(result.leaderboard), "plots/leaderboard.png")
    run.log_dict({"as_of": result.as_of.isoformat(), "holdout_start": result.holdout.cutoff.isoformat(),
                  "shipped": result.shipped, "shipped_because": result.shipped_because, "metrics": result.metrics,
                  "bundle": str(result.bundle_path)}, "crosssell_report.json")
    h = result.holdout
    n = min(20, h.n_customers)
    example = pd.DataFrame({"customer_id": pd.Series(h.customers[:n], dtype="string"),
                            "items_bought": pd.Series(join_items(h.history[:n], h.items), dtype="string")})
    register_pyfunc(result, input_example=example, output_example=score_crosssell(example, result.bundle_path),
                    registered_model_name=registered_model_name or model_name("crosssell"))


# --------------------------------------------------------------------------- wiring


def train_crosssell(cfg: CrmlabConfig, *, tracker: Tracker | None = None, step: Step | None = None) -> CrosssellResult:
    """Train the cross-sell pipeline end to end (see the module doc) and return what it produced."""
    step = step or no_step
    project, cs = cfg.project, cfg.crosssell
    with step("Loading and cleaning the data"):
        prepared = prepare_data(project)
    tx = prepared.tables.transactions
    check_item_column(tx, cs.item_column)
    if prepared.as_of is None:
        raise ConfigError("the cross-sell pipeline needs transactions: project.data.transactions is empty")
    as_of = prepared.as_of
    first = pd.Timestamp(tx["ts"].min()).date()
    horizon = resolve_horizon(cs.horizon_days, first=first, as_of=as_of)
    cutoff = as_of - timedelta(days=horizon)

    with training_run(cfg, "crosssell", tracker=tracker, fingerprint=prepared.fingerprint,
                      cleaning=prepared.cleaning, tags={"crmlab.item_column": cs.item_column}) as tr:
        with step(f"Baskets up to {cutoff}; holdout {cutoff} to {as_of}"):
            train, holdout = make_holdout(tx, item_column=cs.item_column, cutoff=cutoff, as_of=as_of)
        if holdout.n_customers == 0:
            raise ModelError(f"crosssell: no customer bought a new catalogue {cs.item_column} in the holdout "
                             f"{cutoff} to {as_of}; nothing to judge the models on (lengthen crosssell.horizon_days)")
        with step(f"Fitting item-item and popularity on {train.n_baskets:,} baskets; judging on "
                  f"{holdout.n_customers:,} customers"):
            models = fit_models(train, cs)
            board, per = evaluate_models(models, holdout, cs.k)
            comparison = compare_paired(per["itemitem"], per["popularity"], n_boot=cs.bootstrap, seed=project.seed)
            shipped, because = choose_shipped(board, comparison, cs)
            board["shipped"] = board["model"] == shipped
            metrics = _metrics(board, comparison, shipped, cs.k)
        log.info("crosssell: shipped %s: %s", shipped, because)
        check_evaluation("crosssell", metrics, what=f"({shipped}, k={cs.k})")
        with step(f"Refitting {shipped} on every purchase up to {as_of}; association rules"):
            full = basket_matrix(tx, item_column=cs.item_column, as_of=as_of)
            model = make_model(shipped, cs).fit(full.matrix, full.items)
            rules_model = model if shipped == "itemitem" else make_model("itemitem", cs).fit(full.matrix, full.items)
            all_rules = association_rules(rules_model.co_, full.items, min_item_count=cs.min_item_count,
                                          min_pair_count=cs.min_pair_count)
            rules = all_rules.head(cs.max_rules)
            metrics.update({"n_baskets": float(full.n_baskets), "n_items": float(len(full.items)),
                            "n_rules": float(len(all_rules)), "horizon_days": float(horizon)})
        with step("Exporting the model bundle"):
            bundle_path = export_bundle(Path(project.output.models_dir) / "crosssell", model, as_of=as_of,
                                        cutoff=cutoff, horizon_days=horizon, item_column=cs.item_column, k=cs.k,
                                        metrics=metrics, leaderboard=board, rules=rules, shipped_because=because,
                                        config_digest=config_hash(cfg.section("crosssell")))
        result = CrosssellResult(
            as_of=as_of, item_column=cs.item_column, k=cs.k, horizon_days=horizon, leaderboard=board,
            comparison=comparison, shipped=shipped, shipped_because=because, rules=rules, model=model,
            holdout=holdout, per_customer=per, metrics=metrics, bundle_path=bundle_path,
            fingerprint=prepared.fingerprint, **tr.ids(),
        )
        if tr.active:
            with step("Logging the run, tables and model to MLflow"):
                log_training(tr.run, result)
    return result
