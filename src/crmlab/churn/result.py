"""What one churn training returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from crmlab.churn.blend import CrossValidation
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
    shipped_model: Any = None
    cross_validation: CrossValidation | None = None

    @property
    def exported_model(self) -> Any:
        """The model in the bundle: the shipped one, refitted on every labelled row when it was (contract)."""
        return self.shipped_model if self.shipped_model is not None else self.models[self.shipped]

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
            cv = self.cross_validation
            lines = [f"contract: trained on {len(ds.y_train):,} customers, tested on {len(ds.y_valid):,} "
                     f"(stratified; churn rate {ds.y_valid.mean():.1%})"]
            if cv is not None:
                lines.append(f"{cv.folds}-fold cross-validation x {cv.repeats} on the training part, mean ROC AUC: "
                             + ", ".join(f"{m} {cv.mean(m):.4f} ± {cv.sd(m):.4f}" for m in cv.aucs.columns)
                             + (f" (blend weight of LightGBM {cv.weight:g})" if cv.weight is not None else ""))
            if self.shipped_model is not None:
                lines.append(f"refit: {self.shipped} fitted again on all {len(ds.y_train) + len(ds.y_valid):,} "
                             "labelled rows for export (the test figures are those of the training-part fit)")
        k = self.top_k_percent
        lines.append(f"  {'model':<10} {'ROC AUC':>7} {'PR AUC':>7} {'logloss':>7} {'Brier':>6} "
                     f"{'lift@10%':>8} {f'recall@{k:g}%':>10}")
        for row in self.leaderboard.itertuples(index=False):
            mark = "*" if row.model == self.shipped else " "
            lines.append(f"{mark} {row.model:<10} {row.roc_auc:7.3f} {row.pr_auc:7.3f} {row.log_loss:7.3f} {row.brier:6.3f} "
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
