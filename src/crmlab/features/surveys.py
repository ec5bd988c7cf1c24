"""Survey features per customer at a cut-off date (part of :func:`crmlab.features.build_features`).

Only answers dated on or before ``as_of`` are read: the rows after it are dropped first, so a
later answer can never change a feature. Scores are put on one 0-10 scale first: an NPS answer
(``scale`` ``nps``, 0-10) as it is, a CSAT answer (``csat``, 1-5) as (score - 1) x 2.5. A
*detractor* answer is 0-6 on the NPS scale or 1-2 on the CSAT scale.

* ``survey_count``: answers on or before as_of (0 without any);
* ``survey_last_score``: the latest answer (by ``ts``, ties by row order), 0-10 scale;
* ``survey_score_trend``: the latest answer minus the mean of the customer's earlier answers
  (empty with one answer);
* ``survey_detractor``: 1 when the latest answer is a detractor's, else 0 (empty without answers);
* ``days_since_last_survey``: days from the latest answer to as_of.

A surveys table without a ``scale`` column (not through :mod:`crmlab.data.clean`) is read by
:func:`crmlab.data.clean.survey_scales` with scale ``auto``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl

from crmlab.data.clean import survey_scales
from crmlab.features.frames import check_no_nulls, day_expr, require_columns, to_polars

__all__ = ["SURVEY_FEATURES", "survey_columns"]

SURVEY_FEATURES = ("survey_count", "survey_last_score", "survey_score_trend", "survey_detractor",
                   "days_since_last_survey")


def survey_columns(surveys: pd.DataFrame, as_of_day: int, population: pl.Series) -> dict[str, np.ndarray]:
    """The survey features (module doc) of each customer of ``population`` (ids, in output order)."""
    table = "surveys"
    require_columns(surveys, ("customer_id", "ts", "score"), table)
    if "scale" not in surveys.columns:
        surveys = surveys.assign(scale=survey_scales(surveys, "auto")[0])
    plf = to_polars(surveys, ["customer_id", "ts", "score", "scale"], table)
    check_no_nulls(surveys, plf, ("customer_id", "ts", "score"), table)
    day = day_expr(plf, "ts", surveys, table)
    csat = pl.col("scale").cast(pl.String) == "csat"
    score = pl.col("score").cast(pl.Float64)
    per = (
        plf.lazy()
        .with_columns(_day=day, _row=pl.int_range(pl.len(), dtype=pl.Int64))
        .filter(pl.col("_day") <= as_of_day)  # nothing after the cut-off goes any further
        .with_columns(_s10=pl.when(csat).then((score - 1.0) * 2.5).otherwise(score),
                      _det=pl.when(csat).then(score <= 2).otherwise(score <= 6))
        .join(pl.DataFrame({"customer_id": population, "_pos": np.arange(len(population), dtype=np.int64)}).lazy(),
              on="customer_id", how="inner")
        .sort(["_pos", "ts", "_row"])
        .group_by("_pos")
        .agg(n=pl.len(), last=pl.col("_s10").last(), total=pl.col("_s10").sum(), det=pl.col("_det").last(),
             last_day=pl.col("_day").max())
        .collect()
    )
    n = len(population)
    out = {"survey_count": np.zeros(n, dtype=np.int32)}
    for name in SURVEY_FEATURES[1:]:
        out[name] = np.full(n, np.nan)
    pos = per["_pos"].to_numpy()
    count = per["n"].to_numpy().astype(np.float64)
    last = per["last"].to_numpy()
    out["survey_count"][pos] = count.astype(np.int32)
    out["survey_last_score"][pos] = last
    with np.errstate(invalid="ignore", divide="ignore"):
        out["survey_score_trend"][pos] = np.where(count > 1, last - (per["total"].to_numpy() - last) / (count - 1),
                                                  np.nan)
    out["survey_detractor"][pos] = per["det"].to_numpy().astype(np.float64)
    out["days_since_last_survey"][pos] = as_of_day - per["last_day"].to_numpy().astype(np.float64)
    for name in ("survey_score_trend", "survey_detractor"):
        out[name] = out[name].astype(np.float32)
    return out
