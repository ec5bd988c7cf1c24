"""What one churn training returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crmlab.churn.data import ChurnDataset
from crmlab.churn.evaluate import gain_verdict
from crmlab.churn.models import inner_lightgbm
from crmlab.training import TrainingResult


@dataclass(kw_only=True)
class ChurnResult(TrainingResult):
    """Everything one training produced (what the CLI prints and the tests check).

    ``metrics`` are the parent run's: the exported (``shipped``) model's under plain names (``roc_auc``, the
    registry's primary metric), every model's as ``<model>_<metric>``, the decision rule's and,
    in contract mode, the cross-validation's. ``predictions``: each model's on the validation rows;
    ``fit_seconds``: each model's fitting time; ``shipped``: the model exported (see
    :func:`~crmlab.churn.evaluate.choose_shipped`) and ``shipped_because`` why.
    """

    mode: str
    dataset: ChurnDataset
    models: dict[str, Any]
    leaderboard: pd.DataFrame
    decision: dict[str, Any]
    importance: pd.DataFrame
    calibration: pd.DataFrame
    predictions: dict[str, np.ndarray]
    fit_seconds: dict[str, float]
    top_k_percent: float = 10.0
    shipped: str = "lightgbm"
    shipped_because: str = ""

    def summary(self) -> list[str]:
        """A few lines for the CLI: the data, the leaderboard, the decision rule, the bundle."""
        ds, info = self.dataset, self.dataset.info
        if self.mode == "transactions":
            lines = [f"transactions: trained on {len(ds.y_train):,} customer-snapshots "
                     f"({', '.join(info['train_snapshots'])}), validated on {len(ds.y_valid):,} customers at "
                     f"{info['valid_snapshot']} (churn = no purchase in {info['horizon_days']} days; "
                     f"rate {ds.y_valid.mean():.1%})"]
            if info.get("window_note"):
                lines.append(f"note: {info['window_note']}")
        else:
            cv = (f"; LightGBM {int(self.metrics['cv_folds'])}-fold CV ROC AUC {self.metrics['cv_roc_auc_mean']:.3f}"
                  f" ± {self.metrics['cv_roc_auc_std']:.3f}") if "cv_roc_auc_mean" in self.metrics else ""
            lines = [f"contract: trained on {len(ds.y_train):,} customers, tested on {len(ds.y_valid):,} "
                     f"(stratified; churn rate {ds.y_valid.mean():.1%}){cv}"]
        k = self.top_k_percent
        lines.append(f"{'model':<10} {'ROC AUC':>7} {'PR AUC':>7} {'logloss':>7} {'Brier':>6} "
                     f"{'lift@10%':>8} {f'recall@{k:g}%':>10}")
        for row in self.leaderboard.itertuples(index=False):
            lines.append(f"{row.model:<10} {row.roc_auc:7.3f} {row.pr_auc:7.3f} {row.log_loss:7.3f} {row.brier:6.3f} "
                         f"{row.lift_top_decile:8.2f} {row.recall_at_k:10.1%}")
        lines.extend(gain_verdict(row) for row in self.leaderboard.to_dict("records") if row["model"] != "lightgbm")
        for name, model in self.models.items():
            note = getattr(inner_lightgbm(model), "note_", "")
            if note:
                lines.append(f"note: {name}: {note}")
        d = self.decision
        rule = (f"threshold {d['threshold']:.3f}" if d.get("threshold") is not None else
                f"expected profit > 0 (offer {d['offer_cost']:g}, save rate {d['save_rate']:g}, "
                f"value {d['value_column']})")
        lines.append(f"decision ({d['rule']}): {rule} flags {d['flagged_share']:.1%} of the validation customers; "
                     f"precision {d['precision']:.1%}, recall {d['recall']:.1%}"
                     + (f", realised profit {d['realised_profit']:,.0f}" if "realised_profit" in d else ""))
        lines.append("top features (mean |SHAP|): " + ", ".join(self.importance["feature"].head(5)))
        lines.append(f"shipped: {self.shipped} ({self.shipped_because})")
        lines.append(f"bundle: {self.bundle_path}")
        return lines
