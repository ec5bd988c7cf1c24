"""The HTML report: sections filled from pipeline outputs, no personal data, MLflow run, and a real
headless Chromium that opens the file without errors and renders every chart."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from crmlab.config import PIPELINES, load_config
from crmlab.export import write_bundle
from crmlab.kpis import compute_kpis, pseudonym
from crmlab.report import build_figures, read_pipeline_outputs, render_html, write_report

from .conftest import reseal_bundle

from . import kpi_data as hand

CHROMIUM = os.environ.get("CRMLAB_CHROMIUM", "/usr/bin/chromium")


def _hand_cfg(tmp_path: Path, *extra: str):
    sets = hand.write_hand_data(tmp_path / "data")
    return load_config(None, [*sets, "project.cleaning.max_date=2030-01-01", "kpis.clv_source=none",
                              f"project.output.dir={tmp_path / 'out'}", f"project.output.models_dir={tmp_path / 'models'}",
                              "project.tracking.enabled=false", *extra])


def _fake_pipeline_outputs(models: Path) -> None:
    """What the churn, segmentation and forecast pipelines export for the report (report.py's contract)."""
    lb = pd.DataFrame({"model": ["lightgbm", "logistic", "p_alive"], "auc": [0.81, 0.77, 0.72],
                       "brier": [0.15, 0.17, 0.2]})
    cal = pd.DataFrame({"model": ["lightgbm"] * 5, "predicted": [0.1, 0.3, 0.5, 0.7, 0.9],
                        "observed": [0.12, 0.28, 0.52, 0.66, 0.93], "count": [40, 30, 20, 30, 40]})
    write_bundle(models / "churn", pipeline="churn", params={},
                 manifest={"metrics": {"auc": 0.81, "note": "x"}, "model": "blend",
                           "shipped_because": "the best mean ROC AUC of the cross-validation; it beat LightGBM 0.80"},
                 texts={"report_leaderboard.csv": lb.to_csv(index=False),
                        "report_calibration.csv": cal.to_csv(index=False)})
    prof = pd.DataFrame({"segment": [0, 1, 2], "name": ["loyal big spenders", "one-off", "lapsing"],
                         "customers": [120, 300, 80], "recency_days": [20.0, 200.0, 90.0]})
    write_bundle(models / "segmentation", pipeline="segmentation", params={}, manifest={"metrics": {"silhouette": 0.41}},
                 texts={"report_profiles.csv": prof.to_csv(index=False)})
    periods = pd.date_range("2024-01-01", periods=12, freq="W-MON")
    fc = pd.DataFrame({"period": periods.strftime("%Y-%m-%d"), "actual": [10, 12, 11, 13, 12, 14, 13, 15] + [None] * 4,
                       "forecast": np.linspace(10, 16, 12), "lower": np.linspace(8, 12, 12),
                       "upper": np.linspace(12, 20, 12)})
    write_bundle(models / "forecast", pipeline="forecast", params={}, manifest={"metrics": {"mase": 0.9}},
                 texts={"report_forecast.csv": fc.to_csv(index=False)})


def _render(cfg) -> tuple[str, list[str]]:
    """The page and chart names without drawing the charts (drawing is what takes time)."""
    from crmlab.kpis import funnel_conversion

    k = compute_kpis(cfg, hand.transactions(), as_of=hand.AS_OF, customers=hand.customers())
    k.funnel = funnel_conversion(pd.DataFrame(hand.LEADS), cfg.kpis.funnel_stages, cfg.kpis.funnel_exit_stages)
    pipelines = {p: read_pipeline_outputs(cfg.project.output.models_dir, p) for p in PIPELINES}
    figures = build_figures(k, pipelines)
    return render_html(k, pipelines, dict.fromkeys(figures, "")), list(figures)


def test_sections_without_models_say_what_to_run(tmp_path):
    text, charts = _render(_hand_cfg(tmp_path))
    for pipeline in ("churn", "segmentation", "forecast", "clv"):
        assert f"not trained yet: run <code>crmlab train {pipeline}</code>" in text
    # the KPI figures of the hand set are in the page
    assert "230.56" in text and "60.0%" in text  # simple CLV and monthly retention
    assert set(charts) == {"kpi_trends.png", "revenue.png", "cohort_retention.png", "revenue_by_segment.png",
                           "cac.png", "funnel.png", "lifecycle.png"}


def test_sections_are_filled_from_pipeline_outputs_and_bad_tables_are_named(tmp_path):
    models = tmp_path / "models"
    _fake_pipeline_outputs(models)
    (models / "churn" / "report_calibration.csv").write_text("p,q\n0.1,0.2\n")
    reseal_bundle(models / "churn")  # checksums that cover the edit: the columns are what is wrong
    outputs = read_pipeline_outputs(models, "churn")
    assert outputs.trained and "leaderboard" in outputs.tables and "calibration" not in outputs.tables
    assert "report_calibration.csv: lacks column(s) ['predicted', 'observed']" in outputs.problems[0]
    assert outputs.metrics() == {"auc": 0.81}
    _fake_pipeline_outputs(models)
    text, charts = _render(_hand_cfg(tmp_path))
    assert "not trained yet" in text and "crmlab train clv" in text  # only CLV (clv_source=none)
    assert "crmlab train churn" not in text and "crmlab train forecast" not in text
    assert "logistic" in text and "loyal big spenders" in text and "silhouette" in text
    # the churn section says first which model shipped, why and what it beat
    assert ('<p class="shipped"><strong>Shipped: blend</strong> &mdash; the best mean ROC AUC of the '
            "cross-validation; it beat LightGBM 0.80</p>") in text
    assert text.index("Shipped: blend") < text.index("churn_calibration.png")
    assert {"churn_calibration.png", "segmentation_profiles.png", "forecast.png"} <= set(charts)


def test_report_is_self_contained():
    import crmlab.report as report

    src = Path(report.__file__).read_text()
    assert "<script" not in src and "<link" not in src


@pytest.mark.slow
def test_report_has_no_personal_data_and_logs_the_same_plots(tmp_path, tracking):
    from crmlab.data.synth import write_synthetic

    paths = write_synthetic(tmp_path / "synth", n_customers=300, seed=5)
    cfg = load_config(None, [
        f"project.data.transactions.path={paths['transactions']}", f"project.data.customers.path={paths['customers']}",
        "project.cleaning.max_date=2030-01-01", "kpis.clv_source=fit", "kpis.top_customers=15",
        f"project.output.dir={tmp_path / 'out'}", f"project.output.models_dir={tmp_path / 'models'}",
        f"project.tracking.uri={tracking.uri}", f"project.tracking.artifact_dir={tracking.artifact_dir}",
        "project.tracking.experiment=test"])
    result = write_report(cfg, out=tmp_path / "r.html")
    text = result.path.read_text()
    customers = pd.read_csv(paths["customers"], dtype=str)
    for col in ("name", "email", "phone"):
        values = customers[col].dropna()
        assert len(values) > 100
        leaked = [v for v in values if len(v) > 4 and v in text]
        assert not leaked, f"{col} in the report: {leaked[:3]}"
    top = result.kpis.clv.scores.sort_values("clv", ascending=False).head(15)["customer_id"]
    for cid in top:
        assert pseudonym(cid) in text
        assert not re.search(rf">{re.escape(str(cid))}<", text)
    # the MLflow run holds the same charts, the HTML file and the KPI tables
    client = mlflow.MlflowClient(tracking_uri=tracking.uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["crmlab.pipeline"] == "report"
    logged = {f.path for f in client.list_artifacts(result.run_id, "plots")}
    assert logged == {f"plots/{name}" for name in result.charts}
    # ... drawn once: MLflow's PNG is the one embedded in the HTML, byte for byte
    png = Path(client.download_artifacts(result.run_id, "plots/revenue.png", str(tmp_path / "logged")))
    assert base64.b64encode(png.read_bytes()).decode("ascii") in text
    assert "clv_distribution.png" in result.charts
    top_level = {f.path for f in client.list_artifacts(result.run_id)}
    assert "r.html" in top_level
    assert {f.path for f in client.list_artifacts(result.run_id, "kpis")} >= {"kpis/kpis_by_period.csv"}
    assert run.data.metrics["kpi_active_customers"] == result.kpis.value("active_customers")


def _browser_or_skip() -> None:
    reasons = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reasons.append("the playwright package is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).is_file():
        reasons.append(f"{CHROMIUM} not found (make test installs Debian's chromium when run as root)")
    if reasons:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but no headless browser: " + "; ".join(reasons))
        pytest.skip("; ".join(reasons))


def test_report_opens_in_headless_chromium_and_every_chart_renders(tmp_path, capsys):
    _browser_or_skip()
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from crmlab.cli import main

    _fake_pipeline_outputs(tmp_path / "models")
    sets = hand.write_hand_data(tmp_path / "data") + [
        "project.cleaning.max_date=2030-01-01", "kpis.clv_source=none", f"project.output.dir={tmp_path / 'out'}",
        f"project.output.models_dir={tmp_path / 'models'}", "project.tracking.enabled=false"]
    code = main([*(a for s in sets for a in ("--set", s)), "report", "--out", str(tmp_path / "report.html")])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "10 charts, self-contained" in printed and "churn yes, clv not trained" in printed
    html_file = tmp_path / "report.html"
    charts = re.findall(r'data-chart="([^"]+)"', html_file.read_text())
    errors: list[str] = []
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(html_file.resolve().as_uri(), wait_until="load")
            images = page.evaluate(
                "Array.from(document.images).map(i => ({chart: i.dataset.chart, complete: i.complete,"
                " w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().height}))")
            title = page.title()
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), [u for u in requests if "://" in u][:3]
    assert sorted(i["chart"] for i in images) == sorted(charts)
    assert len(images) == 10 and {"forecast.png", "churn_calibration.png", "cohort_retention.png",
                                  "lifecycle.png"} <= set(charts)
    for img in images:
        assert img["complete"] and img["w"] > 100 and img["h"] > 100 and img["shown"] > 50, img
    assert "customers at a glance" in title
    with Image.open(shot) as im:
        assert im.width >= 1280 and im.height > 3000
        pixels = np.asarray(im.convert("L"), dtype=float)
    assert pixels.std() > 20  # not a blank page
