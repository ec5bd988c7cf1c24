"""What one forecast training returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from crmlab.config import ForecastConfig
from crmlab.forecast.backtest import (
    Backtest,
)
from crmlab.forecast.series import (
    Panel,
)
from crmlab.training import TrainingResult


@dataclass(kw_only=True)
class ForecastResult(TrainingResult):
    """Everything one training produced (what the CLI prints and the tests check)."""

    panel: Panel
    config: ForecastConfig
    season_length: int
    backtest: Backtest
    leaderboard: pd.DataFrame
    leaderboard_by_series: pd.DataFrame
    selected: str
    notes: list[str]
    quantiles: dict[int, np.ndarray]
    forecast: pd.DataFrame
    excluded: dict[str, str] = field(default_factory=dict)
    shipped: str = ""
    shipped_because: str = ""
    shipping: pd.DataFrame = field(default_factory=pd.DataFrame)

    def summary(self) -> list[str]:
        """A few lines for the CLI: the data, the leaderboard, the shipped model and its intervals."""
        p, m = self.panel, self.metrics
        lines = [f"{len(p.series_ids)} series of {p.target} per {p.freq}: {p.n_periods} periods "
                 f"{p.periods[0].date()}..{p.periods[-1].date()}; backtest at {len(self.backtest.origins)} origins, "
                 f"horizon {self.backtest.horizon}"]
        lines += [f"note: {n}" for n in (*p.notes, *self.notes)]
        for r in self.leaderboard.itertuples():
            mark = "*" if r.model == self.selected else " "
            lines.append(f" {mark} {r.model:<15} MASE {r.mase:.3f}  RMSSE {r.rmsse:.3f}  sMAPE {r.smape:.1f}%  "
                         f"WAPE {r.wape:.3f}  bias {r.bias:+.3f}")
        lines.append(f"shipped: {self.shipped or self.selected} (backtest MASE {m['mase']:.3f}); interval coverage "
                     f"(leave-one-origin-out) 80%: {m['coverage_80']:.1%}, 95%: {m['coverage_95']:.1%}")
        if self.shipped_because:
            lines.append(f"because: {self.shipped_because}")
        if len(self.shipping):
            odd = self.shipping[(self.shipping["shipped"] != self.selected)
                                | self.shipping["because"].str.contains("but the fallback rule", regex=False)]
            for r in odd.head(20).itertuples():
                lines.append(f"  {r.series_id}: {r.shipped} ({r.because})")
            if len(odd) > 20:
                lines.append(f"  (+{len(odd) - 20} more series: backtest/shipped_by_series.csv in the run, "
                             "report_shipped.csv in the bundle)")
        lines.append(f"bundle: {self.bundle_path}")
        return lines
