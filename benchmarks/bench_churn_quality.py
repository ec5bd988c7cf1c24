"""Benchmark: churn model quality on a contract table, judged on customers crmlab never sees.

    .venv/bin/python benchmarks/bench_churn_quality.py [--rows 7000] [--folds 5] [--src OTHER/src]

Protocol (the one a user would run to decide whether to keep crmlab): a seeded telecom-like
customer table (:func:`crmlab.data.synth_contract.contract_customers`, 7,000 rows, 26% churn) is
cut into ``--folds`` stratified folds. For each fold, the other folds are written to a CSV and
``crmlab train churn`` runs on it as a user would run it (default config, MLflow off); the
withheld fold, without its churn column, is scored by ``crmlab score --model churn --source
models``, and the scores are judged by ROC AUC against the withheld labels. crmlab never sees the
withheld rows, and nothing in the run is tuned to them.

Printed per fold and on average: the shipped model and its withheld ROC AUC, the best ROC AUC any
model could reach on the same rows (the true churn probabilities of the generator), and, as peers
fitted on the same training rows, scikit-learn's logistic regression on one-hot columns and
LightGBM with its defaults.

``--set churn.refit=false`` (repeatable) passes a config override to the training: ablations.
``--src`` runs the crmlab of another checkout (``git worktree add /tmp/before <commit>``, then
``--src /tmp/before/src``) for a before/after table; the data and the peers stay the same.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from crmlab.data.synth_contract import contract_customers  # noqa: E402


def crmlab(src: Path, cwd: Path, *args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(src), "CRMLAB_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-m", "crmlab", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"crmlab {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def peers(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, np.ndarray]:
    """Peers on the same rows: one-hot logistic regression (scaled numbers) and default LightGBM."""
    import lightgbm as lgb
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X_tr, X_te = train.drop(columns=["customer_id", "churn"]), test.drop(columns=["customer_id", "churn"])
    y_tr = (train["churn"] == "Yes").to_numpy(int)
    cats = [c for c in X_tr.columns if not pd.api.types.is_numeric_dtype(X_tr[c])]
    nums = [c for c in X_tr.columns if c not in cats]
    logistic = make_pipeline(ColumnTransformer([("n", StandardScaler(), nums),
                                                ("c", OneHotEncoder(handle_unknown="ignore"), cats)]),
                             LogisticRegression(max_iter=2000)).fit(X_tr, y_tr)
    as_cat = lambda X: X.astype({c: "category" for c in cats})  # noqa: E731
    gbm = lgb.LGBMClassifier(verbose=-1, n_jobs=2).fit(as_cat(X_tr), y_tr)
    return {"peer logistic": logistic.predict_proba(X_te)[:, 1], "peer LightGBM default": gbm.predict_proba(
        as_cat(X_te).astype({c: pd.CategoricalDtype(as_cat(X_tr)[c].cat.categories) for c in cats}))[:, 1]}


def main() -> None:
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=7000)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--src", type=Path, default=REPO / "src", help="The crmlab checkout's src folder to run.")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="A config override for crmlab's training, e.g. churn.refit=false (repeatable): ablations.")
    args = ap.parse_args()

    table = contract_customers(args.rows, seed=args.seed, with_truth=True)
    truth = table.pop("true_probability").to_numpy()
    y = (table["churn"] == "Yes").to_numpy(int)
    print(f"{len(table):,} customers, churn rate {y.mean():.1%}; crmlab from {args.src}")
    rows = []
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=args.seed).split(table, y)
    for k, (tr, te) in enumerate(folds, 1):
        with tempfile.TemporaryDirectory(prefix="crmlab-bench-churn-") as tmp:
            work = Path(tmp)
            train, test = table.iloc[tr], table.iloc[te]
            train.to_csv(work / "train.csv", index=False)
            test.drop(columns="churn").to_csv(work / "withheld.csv", index=False)
            common = ["--set", "project.tracking.enabled=false", "--set", f"project.output.dir={work / 'out'}",
                      "--set", f"project.output.models_dir={work / 'models'}"]
            start = time.perf_counter()
            crmlab(args.src, work, "train", "churn", *common, "--set", f"project.data.customers={work / 'train.csv'}",
                   *[a for s in args.sets for a in ("--set", s)])
            seconds = time.perf_counter() - start
            crmlab(args.src, work, "score", "--model", "churn", "--source", "models", "--out",
                   str(work / "scores.csv"), *common, "--set", f"project.data.customers={work / 'withheld.csv'}")
            scores = pd.read_csv(work / "scores.csv", dtype={"customer_id": str})
            manifest = (work / "models" / "churn" / "manifest.json").read_text()
            import json
            shipped = json.loads(manifest).get("model", "lightgbm")
        prob = pd.Series(scores["churn_probability"].to_numpy(), index=scores["customer_id"]).reindex(
            test["customer_id"]).to_numpy()
        row = {"fold": k, "shipped": shipped, "crmlab": roc_auc_score(y[te], prob),
               "truth (ceiling)": roc_auc_score(y[te], truth[te]), "train s": seconds}
        row.update({name: roc_auc_score(y[te], p) for name, p in peers(train, test).items()})
        rows.append(row)
        print("  " + "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
              flush=True)
    board = pd.DataFrame(rows)
    print("\nmean withheld ROC AUC over the folds:")
    for col in ["crmlab", "peer logistic", "peer LightGBM default", "truth (ceiling)"]:
        print(f"  {col:<24} {board[col].mean():.4f}  (fold sd {board[col].std():.4f})")
    print(f"  shipped: {', '.join(board['shipped'])}; training {board['train s'].mean():.1f} s per fold")


if __name__ == "__main__":
    main()
