"""Satisfaction from the surveys table: NPS and CSAT with confidence intervals, by period, segment and
lifecycle stage.

The clean surveys table (:mod:`crmlab.data.clean`) has ``customer_id``, ``ts``, ``score`` and a
``scale`` per row (``nps``: 0-10, ``csat``: 1-5; see ``project.data.surveys.scale``). Only answers
dated on or before ``as_of`` count.

NPS (``nps`` rows)
    promoters answer 9-10, passives 7-8, detractors 0-6. NPS = 100 (p_prom - p_det), in points from
    -100 to 100. Its variance (a difference of two shares of one multinomial sample) is
    Var = (p_prom + p_det - (p_prom - p_det)^2) / n, so the interval is NPS +/- z 100 sqrt(Var) at
    ``kpis.satisfaction_level`` (z = 1.96 at 95%), clipped to [-100, 100].
CSAT (``csat`` rows)
    the share of satisfied answers, 4-5 on the 1-5 scale; the interval is Wilson's score interval,
    (p + z^2/2n +/- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), which stays within [0, 1] and behaves
    for small n and shares near 0 or 1.
Groups
    ``period``: the answers dated in each KPI period (``kpis.period``); ``segment`` and
    ``lifecycle_stage``: each customer's latest answer on each scale on or before as_of, grouped by the
    customer's segment or stage at as_of (what the customers now in a group last said; a respondent
    the mapping lacks is ``unassigned``); ``overall``: every answer. A group of fewer than ``kpis.satisfaction_small_n`` answers gets a note with its margin
    of error ("NPS of 40 answers: +/-15 points").
"""

from __future__ import annotations

import math
from datetime import date
from statistics import NormalDist

import numpy as np
import pandas as pd

from crmlab.errors import DataError

__all__ = [
    "SATISFACTION_COLUMNS",
    "csat_figure",
    "nps_figure",
    "satisfaction_table",
    "wilson_interval",
]

SATISFACTION_COLUMNS = ("by", "group", "metric", "answers", "value", "low", "high", "margin", "top_share",
                        "bottom_share", "note")
_PERIOD_FREQ = {"M": "M", "Q": "Q", "W": "W-SUN"}


def _z(level: float) -> float:
    if not 0 < level < 1:
        raise ValueError(f"level={level!r} should be in (0, 1), e.g. 0.95")
    return NormalDist().inv_cdf(0.5 + level / 2)


def nps_figure(scores: np.ndarray | pd.Series, *, level: float = 0.95) -> dict[str, float]:
    """NPS of 0-10 scores with its normal interval (module doc): ``answers``, ``value`` (points),
    ``low``, ``high``, ``margin`` (z x standard error, points), ``top_share`` (promoters),
    ``bottom_share`` (detractors). NaN figures for no answer."""
    s = np.asarray(scores, dtype=np.float64)
    n = int(s.size)
    if n == 0:
        return {"answers": 0, "value": math.nan, "low": math.nan, "high": math.nan, "margin": math.nan,
                "top_share": math.nan, "bottom_share": math.nan}
    prom, det = float((s >= 9).mean()), float((s <= 6).mean())
    diff = prom - det
    margin = 100.0 * _z(level) * math.sqrt(max(prom + det - diff * diff, 0.0) / n)
    value = 100.0 * diff
    return {"answers": n, "value": value, "low": max(value - margin, -100.0), "high": min(value + margin, 100.0),
            "margin": margin, "top_share": prom, "bottom_share": det}


def wilson_interval(successes: int, n: int, *, level: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a share ``successes / n``."""
    if n <= 0:
        return math.nan, math.nan
    z = _z(level)
    p = successes / n
    den = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(centre - half, 0.0), min(centre + half, 1.0)


def csat_figure(scores: np.ndarray | pd.Series, *, level: float = 0.95) -> dict[str, float]:
    """CSAT of 1-5 scores (share of 4-5) with Wilson's interval: ``answers``, ``value``, ``low``,
    ``high``, ``margin`` (half the interval's width), ``top_share`` (4-5), ``bottom_share`` (1-2)."""
    s = np.asarray(scores, dtype=np.float64)
    n = int(s.size)
    if n == 0:
        return {"answers": 0, "value": math.nan, "low": math.nan, "high": math.nan, "margin": math.nan,
                "top_share": math.nan, "bottom_share": math.nan}
    k = int((s >= 4).sum())
    low, high = wilson_interval(k, n, level=level)
    return {"answers": n, "value": k / n, "low": low, "high": high, "margin": (high - low) / 2,
            "top_share": k / n, "bottom_share": float((s <= 2).mean())}


_FIGURES = {"nps": nps_figure, "csat": csat_figure}


def _note(metric: str, fig: dict[str, float], small_n: int) -> str:
    n = int(fig["answers"])
    if n >= small_n or n == 0:
        return ""
    margin = fig["margin"] * (1.0 if metric == "nps" else 100.0)
    return f"{metric.upper()} of {n} answers: ±{margin:.0f} points"


def _rows(by: str, groups: pd.Series, frame: pd.DataFrame, *, level: float, small_n: int,
          order: list[str] | None = None) -> list[dict]:
    out = []
    keys = order if order is not None else sorted(pd.unique(groups.dropna()).tolist(), key=str)
    for metric in ("nps", "csat"):
        is_metric = (frame["scale"] == metric).to_numpy()
        if not is_metric.any():
            continue
        for key in keys:
            rows = is_metric & (groups == key).to_numpy(dtype=bool)
            if not rows.any():
                continue
            fig = _FIGURES[metric](frame["score"].to_numpy(dtype=np.float64)[rows], level=level)
            out.append({"by": by, "group": str(key), "metric": metric, **fig, "note": _note(metric, fig, small_n)})
    return out


def satisfaction_table(surveys: pd.DataFrame, *, as_of: date, period: str = "M", level: float = 0.95,
                       small_n: int = 100, segments: pd.Series | None = None, stages: pd.Series | None = None,
                       stage_order: list[str] | None = None) -> pd.DataFrame:
    """NPS and CSAT overall, by period, by segment and by lifecycle stage (module doc), one row per
    (by, group, metric): :data:`SATISFACTION_COLUMNS`. ``segments`` and ``stages`` map customer id to
    the group at as_of (None: that grouping is left out)."""
    for col in ("customer_id", "ts", "score", "scale"):
        if col not in surveys.columns:
            raise DataError(f"the surveys table lacks column {col!r}", file=surveys.attrs.get("source"), column=col,
                            expected="clean surveys (crmlab.data.clean adds scale)")
    ts = pd.to_datetime(surveys["ts"])
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_localize(None)
    keep = (ts.dt.normalize() <= pd.Timestamp(as_of)).to_numpy()
    frame = pd.DataFrame({"customer_id": surveys["customer_id"].astype(str).to_numpy()[keep],
                          "ts": ts.to_numpy()[keep], "score": surveys["score"].to_numpy(dtype=np.float64)[keep],
                          "scale": surveys["scale"].astype(str).to_numpy()[keep]})
    rows = _rows("overall", pd.Series(["all"] * len(frame)), frame, level=level, small_n=small_n, order=["all"])
    periods = pd.Series(pd.PeriodIndex(frame["ts"], freq=_PERIOD_FREQ[period]).astype(str))
    rows += _rows("period", periods, frame, level=level, small_n=small_n)
    latest = frame.sort_values(["customer_id", "ts"], kind="stable").drop_duplicates(
        ["customer_id", "scale"], keep="last").reset_index(drop=True)
    for by, mapping, order in (("segment", segments, None), ("lifecycle_stage", stages, stage_order)):
        if mapping is None:
            continue
        m = mapping[~mapping.index.duplicated()]
        groups = pd.Series(pd.Series(m.astype("string").to_numpy(), index=m.index.astype(str))
                           .reindex(latest["customer_id"].to_numpy()).fillna("unassigned").to_numpy())
        present = pd.unique(groups).tolist()
        keys = [k for k in (order or []) if k in present] + sorted(k for k in present if k not in (order or []))
        rows += _rows(by, groups, latest, level=level, small_n=small_n, order=keys)
    out = pd.DataFrame(rows, columns=list(SATISFACTION_COLUMNS))
    out["answers"] = out["answers"].astype(np.int64)
    return out
