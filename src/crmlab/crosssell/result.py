"""What one cross-sell training returns, and the holdout it was judged on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import scipy.sparse as sp

from crmlab.crosssell.models import Recommender
from crmlab.training import TrainingResult

__all__ = ["CrosssellResult", "Holdout"]


@dataclass
class Holdout:
    """The time holdout: the judged customers' purchases up to ``cutoff`` (``history``) and the catalogue
    items they first bought in ``(cutoff, as_of]`` (``relevant``), both customers x ``items``; ``baskets``:
    the baskets x ``items`` the models learnt from (every basket up to ``cutoff``)."""

    cutoff: date
    as_of: date
    items: np.ndarray
    customers: np.ndarray
    history: sp.csr_matrix
    relevant: sp.csr_matrix
    baskets: sp.csr_matrix

    @property
    def n_customers(self) -> int:
        return int(self.history.shape[0])


@dataclass(kw_only=True)
class CrosssellResult(TrainingResult):
    """Everything one training produced: ``leaderboard`` (each model at each k on the holdout),
    ``comparison`` (the paired tests at ``k``), ``shipped`` and why, ``rules`` (association rules of
    the refitted model), ``model`` (the shipped kind refitted on every purchase up to ``as_of``) and
    the ``holdout`` (what :func:`crmlab.crosssell.bundle.evaluate_bundle` judges another bundle on)."""

    as_of: date
    item_column: str
    k: int
    horizon_days: int
    leaderboard: pd.DataFrame
    comparison: dict[str, float]
    shipped: str
    shipped_because: str
    rules: pd.DataFrame
    model: Recommender
    holdout: Holdout
    per_customer: dict[str, pd.DataFrame]

    def summary(self) -> list[str]:
        """A few lines for the CLI: the holdout, the two models, the test, what shipped, the top rules."""
        m, c = self.metrics, self.comparison
        board = self.leaderboard[self.leaderboard["k"] == self.k].set_index("model")
        lines = [f"holdout: learnt from purchases up to {self.holdout.cutoff}, judged on the new "
                 f"{self.item_column} values {self.holdout.n_customers:,} customers bought in the "
                 f"{self.horizon_days} days to {self.as_of}"]
        for name, row in board.iterrows():
            lines.append(f"  {name:<11} hit rate@{self.k} {row['hit_rate']:.3f}  precision {row['precision']:.3f}  "
                         f"recall {row['recall']:.3f}  MAP {row['map']:.3f}  coverage {row['coverage']:.1%}")
        lines.append(f"paired: item-item hits where popularity misses {int(c['hit_wins']):,}, the reverse "
                     f"{int(c['hit_losses']):,} (sign test p={c['hit_p_value']:.3g}); MAP difference "
                     f"{c['ap_diff']:+.3f} (95% CI {c['ap_diff_ci_low']:+.3f}..{c['ap_diff_ci_high']:+.3f})")
        lines.append(f"shipped: {self.shipped}: {self.shipped_because}")
        lines.append(f"refitted on {int(m['n_baskets']):,} baskets up to {self.as_of}: {int(m['n_items']):,} items, "
                     f"{int(m['n_rules']):,} rules")
        for row in self.rules.head(5).itertuples():
            lines.append(f"  {row.antecedent} -> {row.consequent}: lift {row.lift:.2f}, confidence "
                         f"{row.confidence:.2f}, support {row.support:.4f}")
        lines.append(f"bundle: {self.bundle_path}")
        return lines
