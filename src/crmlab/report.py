"""The HTML report (``crmlab report``): one self-contained file people would rather look at than read.

The file needs nothing but a browser to open: CSS is inline, every chart is an inline base64 PNG
drawn with matplotlib, there is no script and no link to anything outside the file. The same
figures are logged to MLflow in a ``report`` run, with the HTML file and the KPI tables.

Sections: the KPIs (tiles and trend charts, from :mod:`crmlab.kpis`), the acquisition-cohort
heat map, acquisition cost, revenue by segment, the funnel, lifecycle stages, satisfaction (NPS and
CSAT with their intervals, with a surveys table), the CLV distribution and top customers
(pseudonymised ids, nothing personal), then one section per model pipeline, filled from what that
pipeline exported and otherwise showing "not trained yet: run crmlab train <pipeline>".

What the report reads from a pipeline (the input contract; ``<models>`` is ``project.output.models_dir``)
    ``<models>/<pipeline>/manifest.json``
        The bundle manifest (:func:`crmlab.export.write_bundle`). Its presence means "trained"; the
        report shows ``created_at``, ``training_window``, ``shipped`` and ``shipped_because`` when
        present, and every number in ``metrics``.
    ``<models>/<pipeline>/report_<table>.csv`` (optional)
        Tables the pipeline writes into its bundle (``write_bundle(..., texts={"report_x.csv":
        df.to_csv(index=False)})``, so they are covered by the bundle's checksums). Known tables:

        ============  ========================  ===============================================================
        pipeline      file                      columns (others are shown in the table, not plotted)
        ============  ========================  ===============================================================
        churn         report_leaderboard.csv    ``model`` + metric columns (one row per model, best first)
        churn         report_calibration.csv    ``predicted``, ``observed`` (+ ``model``, ``count``): reliability
        segmentation  report_profiles.csv       ``segment`` (+ ``name``), ``customers`` (+ ``share``) + feature medians
        forecast      report_forecast.csv       ``period``, ``forecast``, ``lower``, ``upper`` (+ ``actual``,
                                                ``series_id``; ``actual`` empty in the future)
        forecast      report_leaderboard.csv    ``model``, ``mase`` (+ ``overall_winner`` and other metrics)
        forecast      report_shipped.csv        ``series_id``, ``shipped``, ``because`` (+ ``mase``, ``beat``)
        ============  ========================  ===============================================================

    A table that lacks a required column is named in the report instead of plotted. The CLV section
    uses the KPI module's BG/NBD scores (from ``<models>/clv`` when it exists) and shows the CLV
    bundle's holdout metrics when there is one.
"""

from __future__ import annotations

import base64
import html
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from crmlab import __version__
from crmlab.config import PIPELINES, CrmlabConfig
from crmlab.pipelines import get as pipeline_record
from crmlab.pipelines import records as pipeline_records
from crmlab.errors import ModelError
from crmlab.export import verified_file, verified_manifest
from crmlab.kpis import KpiResult, pseudonym
from crmlab.plotting import Figure
from crmlab.utils import Step, no_step, raise_if_stopped

__all__ = [
    "PipelineOutputs",
    "ReportResult",
    "build_figures",
    "read_pipeline_outputs",
    "render_html",
    "write_report",
]


_TRAIN_HINT = {p: f"crmlab train {p}" for p in PIPELINES}
_UNITS = {"M": "month", "W": "week", "Q": "quarter"}
_BLUE, _ORANGE, _GREY, _GREEN = "#2f6db5", "#e07b28", "#555555", "#3a9a5b"


# --------------------------------------------------------------------------- pipeline outputs


@dataclass
class PipelineOutputs:
    """What one pipeline exported for the report: its manifest and optional tables."""

    pipeline: str
    path: Path
    manifest: dict[str, Any] | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def trained(self) -> bool:
        return self.manifest is not None

    def metrics(self) -> dict[str, float]:
        raw = (self.manifest or {}).get("metrics") or {}
        out = {}
        for k, v in raw.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[str(k)] = float(v)
        return out


def read_pipeline_outputs(models_dir: str | Path, pipeline: str) -> PipelineOutputs:
    """Read ``<models_dir>/<pipeline>/manifest.json`` and the known ``report_<table>.csv`` files; a
    missing or unreadable file never fails the report, it is noted in ``problems``."""
    path = Path(models_dir) / pipeline
    out = PipelineOutputs(pipeline, path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        return out
    try:  # the manifest and the tables only when the checksums cover them, as scoring reads them
        manifest = verified_manifest(path)
    except ModelError as exc:
        out.problems.append(str(exc))
        return out
    out.manifest = manifest
    for name, required in pipeline_record(pipeline).report_tables.items():
        if f"report_{name}.csv" not in manifest["files"]:
            continue
        try:
            f = verified_file(path, manifest, f"report_{name}.csv")
        except ModelError as exc:
            out.problems.append(str(exc))
            continue
        try:
            df = pd.read_csv(f)
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            out.problems.append(f"{f.name}: unreadable ({str(exc).splitlines()[0]})")
            continue
        missing = [c for c in required if c not in df.columns]
        if missing:
            out.problems.append(f"{f.name}: lacks column(s) {missing}; found {list(df.columns)[:10]}")
            continue
        out.tables[name] = df
    return out


# --------------------------------------------------------------------------- figures


def _figure(width: float = 7.5, height: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained", dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _style(ax: Any) -> None:
    ax.grid(True, alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)


def plot_kpi_trends(k: KpiResult) -> Figure:
    """Active and new customers, retention/churn, AOV and revenue per customer, repeat purchase rate."""
    bp = k.by_period
    x = pd.to_datetime(bp["start"])
    unit = _UNITS[k.period]
    fig = _figure(11, 6.5)
    axes = fig.subplots(2, 2, sharex=True)
    a = axes[0, 0]
    a.plot(x, bp["active_customers"], marker="o", ms=3, color=_BLUE, label="active")
    a.bar(x, bp["new_customers"], width=20 if k.period == "M" else 5 if k.period == "W" else 60,
          color=_ORANGE, alpha=0.6, label="new")
    a.set_title(f"Customers per {unit}")
    a.legend()
    a = axes[0, 1]
    a.plot(x, bp["retention_rate"] * 100, marker="o", ms=3, color=_GREEN, label="retention")
    a.plot(x, bp["churn_rate"] * 100, marker="o", ms=3, color=_ORANGE, label="churn")
    a.set_title(f"Retention and churn, {unit} over {unit} (%)")
    a.set_ylim(0, 100)
    a.legend()
    a = axes[1, 0]
    a.plot(x, bp["aov"], marker="o", ms=3, color=_BLUE, label="average order value")
    a.plot(x, bp["revenue_per_customer"], marker="o", ms=3, color=_GREY, label="revenue per active customer")
    a.set_title("Order value and revenue per customer")
    a.legend()
    a = axes[1, 1]
    a.plot(x, bp["repeat_purchase_rate"] * 100, marker="o", ms=3, color=_BLUE, label="repeat purchase rate")
    a.plot(x, _share(bp["new_customers"], bp["active_customers"]) * 100, marker="o", ms=3, ls="--", color=_ORANGE,
           label="new customers among the active")
    a.set_ylim(0, 105)
    a.set_title("Repeat buyers and new buyers (% of the active)")
    a.legend()
    for ax in axes.flat:
        _style(ax)
        for label in ax.get_xticklabels():
            label.set_rotation(30)
    return fig


def _share(num: pd.Series, den: pd.Series) -> np.ndarray:
    d = den.to_numpy(dtype=np.float64)
    return np.where(d > 0, num.to_numpy(dtype=np.float64) / np.where(d > 0, d, 1.0), np.nan)


def plot_revenue(k: KpiResult) -> Figure:
    bp = k.by_period
    fig = _figure(11, 3.2)
    ax = fig.add_subplot()
    start = pd.to_datetime(bp["start"])
    width = (pd.to_datetime(bp["end"]) - start).dt.days.to_numpy() * 0.8 + 0.8
    ax.bar(start, bp["revenue"], width=width, align="edge", color=_BLUE, alpha=0.8, label="revenue (net)")
    ax.set_title(f"Revenue (net) per {_UNITS[k.period]}")
    _style(ax)
    return fig


def plot_cohort_heatmap(cohorts: pd.DataFrame, period: str) -> Figure:
    """Share of each acquisition cohort active k periods after its first purchase."""
    ages = [c for c in cohorts.columns if c not in ("cohort", "customers")]
    data = cohorts[ages].to_numpy(dtype=np.float64) * 100
    n_rows, n_cols = data.shape
    fig = _figure(min(13.0, 3 + 0.55 * n_cols), min(12.0, 1.6 + 0.38 * n_rows))
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(data)
    im = ax.imshow(masked, aspect="auto", cmap="Blues", vmin=0, vmax=max(5.0, float(np.nanmax(data[:, 1:]))
                                                                        if n_cols > 1 and np.isfinite(data[:, 1:]).any()
                                                                        else 100.0))
    ax.set_xticks(range(n_cols), ages)
    ax.set_yticks(range(n_rows), [f"{c} (n={s:,})" for c, s in zip(cohorts["cohort"], cohorts["customers"], strict=True)])
    ax.set_xlabel(f"{_UNITS[period]}s since the first purchase")
    ax.set_title("Acquisition-cohort retention (% of the cohort active)")
    if n_rows * n_cols <= 400:
        for i in range(n_rows):
            for j in range(n_cols):
                v = data[i, j]
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if v > 0.6 * im.get_clim()[1] else "black")
    fig.colorbar(im, ax=ax, shrink=0.8, label="%")
    return fig


def plot_clv_distribution(k: KpiResult) -> Figure:
    """Histogram of the BG/NBD CLV with the mean, the new-customer value and the simple CLV."""
    clv = k.clv.scores["clv"].dropna().to_numpy()
    fig = _figure(9, 3.8)
    ax = fig.add_subplot()
    top = float(np.quantile(clv, 0.99)) if clv.size else 1.0
    ax.hist(np.clip(clv, 0, top), bins=60, color=_BLUE, alpha=0.8)
    ax.set_yscale("log")
    for value, label, color, ls in (
        (k.value("bgnbd_clv_mean"), "BG/NBD mean", _GREY, "-"),
        (k.value("bgnbd_clv_new_customer"), "BG/NBD new customer", _GREEN, "--"),
        (k.value("simple_clv"), "simple CLV", _ORANGE, ":"),
    ):
        if np.isfinite(value):
            ax.axvline(min(value, top), color=color, ls=ls, lw=2, label=f"{label}: {value:,.2f}")
    ax.set_xlabel(f"CLV over {k.clv.horizon_months} months (clipped at the 99th percentile, {top:,.0f})")
    ax.set_ylabel("customers (log scale)")
    ax.set_title("Customer lifetime value, BG/NBD + Gamma-Gamma")
    ax.legend()
    _style(ax)
    return fig


def _share_bars(frame: pd.DataFrame, label: str, title: str) -> Figure:
    """Share of revenue and share of customers side by side, one pair of bars per row of ``frame``
    (first row on top): the segments' chart and the lifecycle stages'."""
    rows = frame.iloc[::-1]
    fig = _figure(9, 1.2 + 0.38 * len(rows))
    ax = fig.add_subplot()
    pos = np.arange(len(rows))
    ax.barh(pos + 0.2, rows["revenue_share"] * 100, height=0.4, color=_BLUE, label="share of revenue")
    ax.barh(pos - 0.2, rows["customer_share"] * 100, height=0.4, color=_ORANGE, label="share of customers")
    ax.set_yticks(pos, rows[label].astype(str))
    ax.set_xlabel("%")
    ax.set_title(title)
    ax.legend()
    _style(ax)
    return fig


def plot_segments(segments: pd.DataFrame, source: str) -> Figure:
    return _share_bars(segments, "segment", f"Revenue by segment ({source})")


def plot_cac(k: KpiResult) -> Figure:
    bp = k.by_period[k.by_period["cac"].notna()]
    fig = _figure(11, 3.4)
    ax = fig.add_subplot()
    x = pd.to_datetime(bp["start"])
    ax.plot(x, bp["cac"], marker="o", color=_ORANGE, label="CAC")
    ax.set_ylabel("CAC")
    ax2 = ax.twinx()
    ax2.plot(x, bp["cac_payback_months"], marker="s", ms=3, color=_GREY, ls="--", label="payback (months)")
    ax2.set_ylabel("payback months")
    ax.set_title(f"Customer acquisition cost ({k.cac_source}) and payback")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2)
    _style(ax)
    return fig


def plot_funnel(funnel: pd.DataFrame) -> Figure:
    f = funnel.iloc[::-1]
    fig = _figure(8, 1.2 + 0.5 * len(f))
    ax = fig.add_subplot()
    pos = np.arange(len(f))
    ax.barh(pos, f["leads"], color=_BLUE)
    ax.set_yticks(pos, f["stage"])
    for p, (n, conv) in enumerate(zip(f["leads"], f["conversion_from_first"], strict=True)):
        ax.text(n, p, f"  {n:,} ({conv:.0%})", va="center")
    ax.set_xlim(0, float(f["leads"].max()) * 1.3 or 1)
    ax.set_title("Funnel: leads reaching each stage (% of the first)")
    _style(ax)
    return fig


def plot_lifecycle(lifecycle: pd.DataFrame) -> Figure:
    return _share_bars(lifecycle, "stage", "Customers and revenue by lifecycle stage")


def plot_satisfaction(satisfaction: pd.DataFrame) -> Figure:
    """NPS (points) and CSAT (%) by period with their intervals."""
    per = satisfaction[satisfaction["by"] == "period"]
    metrics = [m for m in ("nps", "csat") if (per["metric"] == m).any()]
    fig = _figure(11, 3.2 * max(len(metrics), 1))
    for i, metric in enumerate(metrics, start=1):
        ax = fig.add_subplot(len(metrics), 1, i)
        d = per[per["metric"] == metric]
        scale = 1.0 if metric == "nps" else 100.0
        x = np.arange(len(d))
        v = d["value"].to_numpy() * scale
        err = np.vstack([v - d["low"].to_numpy() * scale, d["high"].to_numpy() * scale - v])
        ax.errorbar(x, v, yerr=err, fmt="o-", color=_BLUE if metric == "nps" else _GREEN, capsize=3)
        ax.set_xticks(x, d["group"].astype(str), rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("points" if metric == "nps" else "% satisfied (4-5)")
        ax.set_title(f"{metric.upper()} by period with its interval")
        _style(ax)
    return fig


def plot_calibration(cal: pd.DataFrame) -> Figure:
    fig = _figure(5.5, 4.5)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color=_GREY, ls=":", label="perfect")
    groups = cal.groupby("model", sort=False) if "model" in cal.columns else [("model", cal)]
    for name, g in groups:
        ax.plot(g["predicted"], g["observed"], marker="o", label=str(name))
    ax.set_xlabel("predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.set_title("Churn calibration")
    ax.legend()
    _style(ax)
    return fig


def plot_segment_profiles(profiles: pd.DataFrame) -> Figure:
    p = profiles.iloc[::-1]
    names = p["name"].astype(str) if "name" in p.columns else p["segment"].astype(str)
    fig = _figure(8, 1.2 + 0.45 * len(p))
    ax = fig.add_subplot()
    ax.barh(np.arange(len(p)), p["customers"], color=_GREEN)
    ax.set_yticks(np.arange(len(p)), names)
    ax.set_xlabel("customers")
    ax.set_title("Segment sizes (segmentation model)")
    _style(ax)
    return fig


def plot_forecast(fc: pd.DataFrame) -> Figure:
    fig = _figure(11, 3.8)
    ax = fig.add_subplot()
    groups = fc.groupby("series_id", sort=False) if "series_id" in fc.columns else [(None, fc)]
    for i, (name, g) in enumerate(groups):
        if i >= 4:
            break
        x = pd.to_datetime(g["period"].astype(str), errors="coerce", format="mixed")
        if x.isna().any():  # periods that are not dates ('2024-W05', 't+1'): plot in row order
            x = pd.Series(g["period"].astype(str).to_numpy())
        suffix = f" {name}" if name is not None else ""
        if "actual" in g.columns:
            ax.plot(x, g["actual"], color="black", lw=1.2, label=f"actual{suffix}")
        ax.plot(x, g["forecast"], color=_BLUE, lw=1.5, label=f"forecast{suffix}")
        ax.fill_between(x, g["lower"], g["upper"], color=_BLUE, alpha=0.2, label=f"interval{suffix}")
    ax.set_title("Sales forecast with prediction intervals")
    ax.legend()
    _style(ax)
    return fig


def plot_voice(by_period: pd.DataFrame) -> Figure:
    fig = _figure(8, 3.2)
    ax = fig.add_subplot()
    x = np.arange(len(by_period))
    ax.plot(x, by_period["sentiment_mean"], color=_BLUE, marker="o", label="mean sentiment [-1, 1]")
    ax.plot(x, by_period["negative_share"], color="#c0392b", marker="s", label="share negative")
    step = max(1, len(x) // 12)
    ax.set_xticks(x[::step], by_period["period"].iloc[::step])
    ax.axhline(0, color="#888", lw=0.6)
    ax.set_title("Customer voice: sentiment of the customers' texts by period")
    ax.legend(loc="best", fontsize=8)
    _style(ax)
    return fig


def build_figures(k: KpiResult, pipelines: dict[str, PipelineOutputs]) -> dict[str, Figure]:
    """Every chart of the report, by artifact name (the MLflow run logs the same objects)."""
    figs: dict[str, Figure] = {
        "kpi_trends.png": plot_kpi_trends(k),
        "revenue.png": plot_revenue(k),
        "cohort_retention.png": plot_cohort_heatmap(k.cohorts, k.period if k.period else "M"),
        "revenue_by_segment.png": plot_segments(k.segments, k.segment_source),
    }
    if k.by_period["cac"].notna().any():
        figs["cac.png"] = plot_cac(k)
    if k.funnel is not None:
        figs["funnel.png"] = plot_funnel(k.funnel)
    if k.voice is not None and len(k.voice.by_period):
        figs["voice.png"] = plot_voice(k.voice.by_period)
    if k.lifecycle is not None:
        figs["lifecycle.png"] = plot_lifecycle(k.lifecycle)
    if k.satisfaction is not None and (k.satisfaction["by"] == "period").any():
        figs["satisfaction.png"] = plot_satisfaction(k.satisfaction)
    if k.clv is not None and k.clv.customers:
        figs["clv_distribution.png"] = plot_clv_distribution(k)
    for po in pipelines.values():  # a chart for each report table that has one (_TABLE_CHARTS)
        for table, df in po.tables.items():
            if table in _TABLE_CHARTS:
                figs[_chart_name(po.pipeline, table)] = _TABLE_CHARTS[table].plot(df)
    return figs


@dataclass(frozen=True)
class _TableChart:
    """How the report shows a pipeline's report table (``report_<table>.csv``): a chart drawn from it and
    whether the table is shown too."""

    plot: Any
    alt: str
    show_table: bool = True


#: Charts by report-table name (see each pipeline record's ``report_tables``); a table without one is
#: shown as a table only.
_TABLE_CHARTS: dict[str, _TableChart] = {
    "calibration": _TableChart(plot_calibration, "churn calibration", show_table=False),
    "profiles": _TableChart(plot_segment_profiles, "segment sizes"),
    "forecast": _TableChart(plot_forecast, "forecast"),
}


def _chart_name(pipeline: str, table: str) -> str:
    """The chart's artifact name: ``<pipeline>_<table>.png``, or ``<pipeline>.png`` for a table named
    like its pipeline."""
    return f"{pipeline}.png" if table == pipeline else f"{pipeline}_{table}.png"


def _png_base64(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- HTML


_CSS = """
*{box-sizing:border-box}body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;
color:#1d2430;background:#f5f6f8}header{background:#1d3557;color:#fff;padding:22px 32px}
header h1{margin:0 0 4px;font-size:24px}header p{margin:0;opacity:.85}nav{padding:8px 32px;background:#e9edf3;
font-size:14px}nav a{margin-right:14px;color:#1d3557}main{padding:8px 32px 40px;max-width:1280px}
section{background:#fff;border-radius:8px;padding:16px 22px;margin:18px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
h2{margin:4px 0 12px;font-size:19px;color:#1d3557}h3{font-size:16px;margin:14px 0 6px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px}
.tile{border:1px solid #dde3ea;border-radius:6px;padding:10px 12px}.tile .v{font-size:22px;font-weight:600}
.tile .l{font-size:12px;color:#5a6573}img{max-width:100%;height:auto;display:block;margin:8px 0}
.scroll{overflow-x:auto}table{border-collapse:collapse;font-size:13px;margin:8px 0}td{white-space:nowrap}
td.text{text-align:left;white-space:normal}th,td{padding:4px 9px;border-bottom:1px solid #e3e7ec;
text-align:right}th{background:#f0f3f7}td:first-child,th:first-child{text-align:left}
.note{color:#6b7480;font-size:13px}.todo{background:#fff7e6;border-left:4px solid #e0a028;padding:10px 14px}
.shipped{background:#eef6ee;border-left:4px solid #3a8a3a;padding:8px 14px}
code{background:#eef1f5;padding:1px 4px;border-radius:3px}dl{display:grid;grid-template-columns:max-content 1fr;
gap:3px 14px;font-size:13px}dt{font-weight:600}dd{margin:0}
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any, kind: str = "num") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "&ndash;"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if kind == "pct":
            return f"{v:.1%}"
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if float(v).is_integer():
            return f"{v:,.0f}"
        return f"{v:,.3g}" if abs(v) < 1 else f"{v:,.2f}"
    if isinstance(value, pd.Timestamp):
        return _esc(value.date())
    return _esc(value)


def _table(df: pd.DataFrame, pct: Sequence[str] = (), max_rows: int = 60, text: Sequence[str] = ()) -> str:
    cols = list(df.columns)
    head = "".join(f"<th>{_esc(str(c).replace('_', ' '))}</th>" for c in cols)
    body = []
    for row in df.head(max_rows).itertuples(index=False):
        cells = "".join(
            f'<td class="text">{_esc(v)}</td>' if c in text else f"<td>{_fmt(v, 'pct' if c in pct else 'num')}</td>"
            for c, v in zip(cols, row, strict=True))
        body.append(f"<tr>{cells}</tr>")
    more = f'<p class="note">{len(df) - max_rows:,} more rows in the table files.</p>' if len(df) > max_rows else ""
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>{more}'


def _img(figs: dict[str, str], name: str, alt: str) -> str:
    if name not in figs:
        return ""
    return f'<img src="data:image/png;base64,{figs[name]}" alt="{_esc(alt)}" data-chart="{_esc(name)}">'


def _tiles(items: list[tuple[str, str]]) -> str:
    cells = "".join(f'<div class="tile"><div class="v">{v}</div><div class="l">{_esc(label)}</div></div>'
                    for label, v in items)
    return f'<div class="tiles">{cells}</div>'


def _todo(pipeline: str, problems: Sequence[str] = ()) -> str:
    extra = "".join(f"<br><span class='note'>{_esc(p)}</span>" for p in problems)
    return (f'<div class="todo">not trained yet: run <code>{_esc(_TRAIN_HINT.get(pipeline, pipeline))}</code>'
            f"{extra}</div>")


def _shipped_note(po: PipelineOutputs) -> str:
    """Which model the bundle holds, why, and what it beat, as the training wrote it in the manifest."""
    m = po.manifest or {}
    because = m.get("shipped_because")
    model = m.get("shipped") or m.get("model")
    if not isinstance(model, str) or not because:
        return ""
    return (f'<p class="shipped"><strong>Shipped: {_esc(model or "?")}</strong>'
            + (f" &mdash; {_esc(because)}" if because else "") + "</p>")


def _manifest_block(po: PipelineOutputs) -> str:
    m = po.manifest or {}
    meta = [("bundle", str(po.path)), ("created", m.get("created_at", "?")),
            ("crmlab", m.get("crmlab_version", "?"))]
    window = m.get("training_window") or m.get("window")
    if isinstance(window, dict):
        meta += [(k, v) for k, v in window.items() if v is not None][:6]
    dl = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in meta)
    metrics = po.metrics()
    tbl = _table(pd.DataFrame({"metric": list(metrics), "value": list(metrics.values())}), max_rows=40) \
        if metrics else '<p class="note">the manifest has no metrics</p>'
    probs = "".join(f"<p class='note'>{_esc(p)}</p>" for p in po.problems)
    return f"<dl>{dl}</dl><h3>Metrics</h3>{tbl}{probs}"


def render_html(
    k: KpiResult,
    pipelines: dict[str, PipelineOutputs],
    figures: dict[str, str],
    *,
    title: str = "crmlab report",
    show_customer_ids: bool = False,
    top_customers: int = 10,
    generated: str | None = None,
) -> str:
    """The report as one HTML string (``figures``: artifact name -> base64 PNG): the KPI sections, the
    CLV section, then one section per pipeline record (its report tables and their charts)."""
    unit = _UNITS[k.period]
    bp = k.by_period
    generated = generated or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    sections = _kpi_sections(k, figures)
    sections.append(("clv", "Customer lifetime value",
                     _clv_section(k, pipelines.get("clv"), figures, show_customer_ids=show_customer_ids,
                                  top_customers=top_customers)))
    for record in pipeline_records():
        if record.name == "clv":  # its section is above, with the KPIs' CLV figures
            continue
        sections.append((record.name, record.report_heading or record.title,
                         _pipeline_section(record, pipelines.get(record.name), figures)))
    sections.append(("definitions", "Definitions", _definitions(unit)))
    nav = "".join(f'<a href="#{a}">{_esc(h)}</a>' for a, h, _ in sections)
    main = "".join(f'<section id="{a}"><h2>{_esc(h)}</h2>{b}</section>' for a, h, b in sections)
    first = pd.Timestamp(bp["start"].iloc[0]).date()
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_esc(title)}</h1><p>{_esc(bp['period'].iloc[0])} ({first}) to {k.as_of} &middot; "
        f"{_fmt(k.value('active_customers'))} "
        f"customers &middot; KPIs by {unit} &middot; generated {_esc(generated)} by crmlab {_esc(__version__)}"
        f"</p></header><nav>{nav}</nav><main>{main}</main></body></html>\n"
    )


def _kpi_sections(k: KpiResult, figures: dict[str, str]) -> list[tuple[str, str, str]]:
    """(anchor, heading, body) of the KPI sections: key figures, cohorts, acquisition cost, revenue by
    segment and the funnel."""
    v = k.value
    unit = _UNITS[k.period]
    bp = k.by_period
    sections: list[tuple[str, str, str]] = []
    tiles = [
        ("customers (with a purchase)", _fmt(v("active_customers"))),
        (f"active in the last {unit} ({bp['period'].iloc[-1]}"
         + (", partial" if not bool(bp["complete"].iloc[-1]) else "") + ")", _fmt(v("active_customers_last_period"))),
        ("revenue (net)", _fmt(v("revenue"))),
        (f"retention, {unit} over {unit}", _fmt(v("retention_rate"), "pct")),
        ("repeat purchase rate", _fmt(v("repeat_purchase_rate"), "pct")),
        ("average order value", _fmt(v("aov"))),
        (f"orders per active customer per {unit}", _fmt(v("purchase_frequency"))),
        (f"revenue per active customer per {unit}", _fmt(v("revenue_per_customer"))),
        ("simple CLV", _fmt(v("simple_clv"))),
    ]
    if k.clv is not None:
        tiles.append((f"BG/NBD CLV, new customer, {k.clv.horizon_months} months", _fmt(v("bgnbd_clv_new_customer"))))
    if k.cac_source != "none":
        tiles += [("CAC", _fmt(v("cac"))), ("LTV:CAC (simple)", _fmt(v("ltv_cac_simple"))),
                  ("CAC payback (months)", _fmt(v("cac_payback_months")))]
    period_cols = ["period", "active_customers", "new_customers", "orders", "revenue", "retention_rate",
                   "churn_rate", "repeat_purchase_rate", "aov", "purchase_frequency", "revenue_per_customer",
                   "simple_clv"]
    data_notes = "".join(f"<p class='todo'>{_esc(n)}</p>" for n in k.data_notes)
    sections.append(("kpis", "Key figures", data_notes + _tiles(tiles)
                     + _img(figures, "kpi_trends.png", "KPI trends") + _img(figures, "revenue.png", "revenue")
                     + f"<h3>By {unit}</h3>"
                     + _table(bp[period_cols], pct=("retention_rate", "churn_rate", "repeat_purchase_rate"))
                     + "<h3>Overall</h3>" + _overall_table(k.overall)))

    cohorts = k.cohorts
    sections.append(("cohorts", "Acquisition cohorts",
                     _img(figures, "cohort_retention.png", "cohort retention heat map")
                     + '<p class="note">Row: the period of the first purchase; column k: share of the cohort that '
                       "bought again k periods later.</p>"
                     + _table(cohorts, pct=[c for c in cohorts.columns if c not in ("cohort", "customers")],
                              max_rows=40)))

    if k.cac_source != "none":
        body = _img(figures, "cac.png", "CAC") + _table(
            bp.loc[bp["cac"].notna(), ["period", "new_customers", "acquisition_spend", "cac", "ltv_cac",
                                       "cac_payback_months"]])
        if k.cac_by_channel is not None:
            body += "<h3>By channel</h3>" + _table(k.cac_by_channel)
        sections.append(("cac", "Acquisition cost", body))

    sections.append(("segments", "Revenue by segment", _img(figures, "revenue_by_segment.png", "revenue by segment")
                     + f'<p class="note">Segments from {_esc(k.segment_source)}.</p>'
                     + _table(k.segments, pct=("customer_share", "revenue_share"))))

    if k.funnel is not None:
        sections.append(("funnel", "Funnel", _img(figures, "funnel.png", "funnel")
                         + _table(k.funnel, pct=("conversion_from_previous", "conversion_from_first"))))
    if k.voice is not None:
        sections.append(("voice", "Customer voice", _voice_section(k, figures)))

    if k.lifecycle is not None:
        sections.append(("lifecycle", "Lifecycle stages", _img(figures, "lifecycle.png", "lifecycle stages")
                         + f'<p class="note">Stages at {_esc(k.as_of)} by the rules of the lifecycle section, tried '
                           "in the order lapsed, at_risk, new, reactivated, growing, mature (the first that holds); "
                           "revenue is net, up to the cut-off and in its period. Moves between two dates: "
                           "<code>crmlab lifecycle migrate --from D1 --to D2</code>.</p>"
                         + _table(k.lifecycle, pct=("customer_share", "revenue_share"))))
    if k.satisfaction is not None:
        sections.append(("satisfaction", "Satisfaction (NPS and CSAT)", _satisfaction_block(k.satisfaction, figures)))
    return sections


def _voice_section(k: KpiResult, figures: dict[str, str]) -> str:
    """Sentiment by period, the distinctive terms of each period's negative texts and the complaint topics."""
    v = k.voice
    assert v is not None
    kw = (v.keywords.groupby("period", sort=True)
          .agg(negative_texts=("negative_texts", "first"), top_terms=("term", ", ".join)).reset_index())
    by = v.by_period.merge(kw, on="period", how="left")
    note = (f'<p class="note">{v.n_texts:,} texts from {_esc(v.source)} ({v.n_empty:,} empty skipped), scored offline '
            "(English: VADER; Chinese: crmlab's lexicon over jieba); negative at or below the configured threshold. "
            "Top terms: c-TF-IDF of each period's negative texts against all other texts."
            + (f" {_esc(v.note)}." if v.note else "") + "</p>")
    topics = (_table(v.topics, pct=("share",), text=("terms",)) if len(v.topics) else "")
    return (note + _img(figures, "voice.png", "customer voice")
            + _table(by, pct=("negative_share", "positive_share"), text=("top_terms",))
            + ("<h3>Complaint topics (NMF over the negative texts)</h3>" + topics if topics else ""))


def _satisfaction_block(sat: pd.DataFrame, figures: dict[str, str]) -> str:
    """NPS (points, normal interval) and CSAT (share of 4-5, Wilson interval) tables by grouping."""
    body = (_img(figures, "satisfaction.png", "NPS and CSAT by period")
            + '<p class="note">NPS = % promoters (9-10) - % detractors (0-6), in points, interval NPS ± z·100·'
              "sqrt((p<sub>prom</sub> + p<sub>det</sub> - (p<sub>prom</sub> - p<sub>det</sub>)²)/n); CSAT = share of "
              "4-5 on 1-5, Wilson interval. By segment and stage: each customer's latest answer.</p>")
    shown = sat.copy()
    notes = [n for n in shown["note"] if n]
    for by, title in (("overall", "Overall"), ("period", "By period"), ("segment", "By segment"),
                      ("lifecycle_stage", "By lifecycle stage")):
        part = shown[shown["by"] == by]
        if part.empty:
            continue
        part = part.drop(columns=["by", "note"])
        is_csat = part["metric"] == "csat"
        for col in ("value", "low", "high", "margin"):  # CSAT in % points like NPS, so one format serves
            part[col] = np.where(is_csat, part[col] * 100, part[col])
        body += f"<h3>{title}</h3>" + _table(part, pct=("top_share", "bottom_share"))
    if notes:
        body += "".join(f"<p class='note'>{_esc(n)}</p>" for n in notes[:20])
    return body


def _clv_section(k: KpiResult, clv_po: PipelineOutputs | None, figures: dict[str, str], *,
                 show_customer_ids: bool, top_customers: int) -> str:
    """The CLV section: the KPIs' CLV figures and top customers, and the CLV model's holdout evaluation."""
    if k.clv is None:
        return _todo("clv", [*(clv_po.problems if clv_po else []), *k.notes,
                             "or set kpis.clv_source=fit to fit BG/NBD + Gamma-Gamma for the report"])
    s = k.clv.scores.dropna(subset=["clv"]).sort_values("clv", ascending=False, kind="stable").head(top_customers)
    ids = s["customer_id"].astype(str) if show_customer_ids else s["customer_id"].map(pseudonym)
    top = pd.DataFrame({"rank": np.arange(1, len(s) + 1), "customer": ids.to_numpy()})
    for col in ("frequency", "recency", "T", "monetary_value", "p_alive", "expected_purchases", "clv"):
        top[col] = s[col].to_numpy()
    body = (_img(figures, "clv_distribution.png", "CLV distribution")
            + f'<p class="note">{_esc(k.clv.source)}; frequency, recency and T in '
              f"{_esc({'D': 'days', 'W': 'weeks', 'M': 'months'}[k.clv.time_unit])}. Customer ids are "
            + ("shown as they are" if show_customer_ids else "short SHA-256 pseudonyms")
            + "; no personal data.</p>"
            + f"<h3>Top {len(top)} customers by CLV</h3>" + _table(top, pct=("p_alive",)))
    if clv_po is not None and clv_po.trained:
        body += "<h3>CLV model (holdout evaluation)</h3>" + _purchase_models_block(clv_po) + _manifest_block(clv_po)
    return body


def _purchase_models_block(po: PipelineOutputs) -> str:
    """Which purchase model predicts expected purchases and why, the holdout leaderboard of the purchase
    models, and the conditional expectations (mean holdout purchases by calibration frequency, actual
    and each model's) from the CLV bundle."""
    m = po.manifest or {}
    out = ""
    if m.get("shipped_purchases"):
        out += (f"<p><b>Expected purchases shipped: {_esc(m['shipped_purchases'])}</b>. "
                f"{_esc(m.get('shipped_because', ''))}</p>")
    board = po.tables.get("purchase_leaderboard")
    if board is not None:
        cols = [c for c in ("model", "shipped", "total_predicted", "total_actual", "total_pct_error", "mae", "rmse",
                            "spearman", "mse_change", "mse_change_low", "mse_change_high") if c in board.columns]
        out += "<h3>Purchase models on the holdout</h3>" + _table(board[cols], text=("model", "shipped"))
    ce = po.tables.get("conditional_expectations")
    if ce is not None:
        out += ("<h3>Conditional expectations: mean holdout purchases by calibration frequency</h3>"
                + _table(ce.drop(columns=[c for c in ("frequency_cal",) if c in ce.columns]), text=("label",)))
    return out


def _pipeline_section(record: Any, po: PipelineOutputs | None, figures: dict[str, str]) -> str:
    """A pipeline's section: each of its report tables (in the record's order) with its chart, then its
    manifest; what to run when it was never trained."""
    if po is None or not po.trained:
        return _todo(record.name, po.problems if po else [])
    body = _shipped_note(po)
    several = len(record.report_tables) > 1
    for table in record.report_tables:
        if table not in po.tables:
            continue
        chart = _TABLE_CHARTS.get(table)
        if chart is not None:
            body += _img(figures, _chart_name(record.name, table), chart.alt)
        if chart is None or chart.show_table:
            body += (f"<h3>{_esc(table.replace('_', ' ').capitalize())}</h3>" if several else "") + _table(
                po.tables[table], max_rows=30)
    return body + _manifest_block(po)


_RATES = {"retention_rate", "churn_rate", "repeat_purchase_rate"}


def _overall_table(overall: pd.DataFrame) -> str:
    shown = pd.DataFrame({
        "metric": overall["metric"],
        "value": [_fmt(v, "pct" if m in _RATES else "num") for m, v in zip(overall["metric"], overall["value"],
                                                                             strict=True)],
        "definition": overall["definition"],
    })
    head = "<th>metric</th><th>value</th><th>definition</th>"
    rows = "".join(f'<tr><td>{_esc(m)}</td><td>{v}</td><td class="text">{_esc(d)}</td></tr>'
                   for m, v, d in shown.itertuples(index=False))
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'


def _definitions(unit: str) -> str:
    items = [
        ("active customers", f"customers with at least one purchase (amount >= 0) in the {unit}"),
        ("new customers", f"customers whose first purchase is in the {unit}"),
        ("retention rate", f"share of last {unit}'s active customers who buy again this {unit}; churn = 1 - retention"),
        ("repeat purchase rate", "share of the active customers with two or more orders in total so far"),
        ("AOV", "gross sales / orders (an order: an order_id, else a purchase row)"),
        ("purchase frequency", f"orders / active customers, per {unit}"),
        ("revenue per customer", f"net revenue (returns subtracted) / active customers, per {unit}"),
        ("simple CLV", f"AOV x purchase frequency x expected lifespan x margin; lifespan = 1 / churn rate {unit}s"),
        ("BG/NBD CLV", "discounted expected spend over the CLV horizon (BG/NBD purchases x Gamma-Gamma spend); "
                       "for a new customer: one order at the AOV plus the expected repeat spend"),
        ("CAC", "acquisition spend / new customers (spend table), or the mean acquisition cost of the new customers"),
        ("LTV:CAC", "CLV / CAC"),
        ("CAC payback", "CAC / (revenue per active customer per month x margin), in months"),
        ("cohort retention", "share of the customers first buying in a period who buy k periods later"),
        ("funnel", "leads whose furthest stage is this one or later; conversion vs the previous and first stage"),
        ("lifecycle stage", "the first rule that holds of: lapsed (silent >= 3 usual gaps or P(alive) < 0.1), at_risk "
                            "(>= 1.5 gaps, P(alive) < 0.5 or spend halved), new (first purchase within the typical "
                            "gap), reactivated (last purchase ended a lapse), growing (spend up or too young for a "
                            "trend), mature (defaults: lifecycle section)"),
        ("NPS", "% promoters (9-10) - % detractors (0-6) of 0-10 answers, in points"),
        ("CSAT", "share of satisfied answers (4-5) on a 1-5 scale"),
    ]
    return "<dl>" + "".join(f"<dt>{_esc(a)}</dt><dd>{_esc(b)}</dd>" for a, b in items) + "</dl>"


# --------------------------------------------------------------------------- wiring


@dataclass
class ReportResult:
    path: Path
    size_bytes: int
    charts: list[str]
    pipelines: dict[str, bool]
    kpis: KpiResult
    run_id: str | None = None
    tracking_uri: str | None = None

    def summary(self) -> list[str]:
        trained = ", ".join(f"{p} {'yes' if ok else 'not trained'}" for p, ok in self.pipelines.items())
        return [
            f"report: {self.path} ({self.size_bytes / 1024:,.0f} KiB, {len(self.charts)} charts, self-contained)",
            f"model sections: {trained}",
        ]


def _write_text_atomic(text: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        raise_if_stopped()
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_report(
    cfg: CrmlabConfig,
    *,
    out: str | Path | None = None,
    kpis: KpiResult | None = None,
    tracker: Any = None,
    step: Step | None = None,
    log_run: bool = True,
) -> ReportResult:
    """Compute the KPIs (unless given), read what the pipelines exported, draw the charts, write the
    HTML file (default ``<output.dir>/report.html``) and log a ``report`` MLflow run with the same
    figures, the HTML file and the KPI tables."""
    from crmlab.kpis import log_kpis, run_kpis
    from crmlab.tracking import Tracker

    step = step or no_step
    project = cfg.project
    if kpis is None:
        kpis = run_kpis(cfg, step=step, log_run=False)
    pipelines = {p: read_pipeline_outputs(project.output.models_dir, p) for p in PIPELINES}
    with step("Drawing the charts and writing the report"):
        figures = build_figures(kpis, pipelines)
        encoded = {name: _png_base64(fig) for name, fig in figures.items()}
        text = render_html(kpis, pipelines, encoded, title=f"{project.name}: customers at a glance",
                           show_customer_ids=cfg.kpis.show_customer_ids, top_customers=cfg.kpis.top_customers)
        path = _write_text_atomic(text, Path(out) if out is not None else Path(project.output.dir) / "report.html")
    result = ReportResult(path, path.stat().st_size, list(figures), {p: po.trained for p, po in pipelines.items()},
                          kpis)
    if log_run:
        tracker = tracker or Tracker(project.tracking, pii_columns=project.features.pii_columns)
        with step("Logging the report run to MLflow"), tracker.start_run(
                "report", pipeline="report", config=cfg.section("kpis"), fingerprint=kpis.fingerprint or None) as run:
            if run.active:  # the report's own PNGs (drawn once, above), not a second rendering of each figure
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    for name, data in encoded.items():
                        (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                        (Path(tmp) / name).write_bytes(base64.b64decode(data))
                    run.log_artifact(tmp, artifact_path="plots")
                run.log_artifact(path)
                log_kpis(run, kpis)
                run.log_dict({p: {"trained": po.trained, "tables": sorted(po.tables), "problems": po.problems}
                              for p, po in pipelines.items()}, "report_inputs.json")
            result.run_id = run.run_id
            result.tracking_uri = tracker.uri if run.active else None
    return result
