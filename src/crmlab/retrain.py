"""The retraining job: check the data, tune, train a challenger, compare it with the champion, promote.

``crmlab retrain <pipeline> [--trials N] [--timeout S]`` is meant for a scheduler (cron, Airflow):

1. **Data checks** on the freshly loaded and cleaned data (``project.retrain``): the cleaning
   invariant holds, no table rejects more than ``max_reject_share`` of its rows, there are at least
   ``min_customers`` customers, and (optionally) the last transaction is at most
   ``max_staleness_days`` old at the cut-off. A failed check records the decision in MLflow and
   exits with code 3, promoting nothing.
2. **Tuning** with Optuna (pipelines that have a tuner, ``--trials`` > 0); the best parameters
   feed the training.
3. **Challenger**: the pipeline's normal training on the latest window; its bundle goes to a
   candidate folder, its model is registered as a new version (not the champion).
4. **Comparison on the same holdout**: the champion's bundle (the registry's ``champion`` alias) is
   evaluated on the challenger's holdout by the pipeline's own evaluation code (its record's ``evaluator``),
   and the two values of the pipeline's primary metric are compared
   (its record's ``primary_metric``, :mod:`crmlab.pipelines`). Where the champion's exported model was refitted on
   data that overlaps the new holdout, the evaluator refits the champion's *specification* (model
   kind and hyper-parameters from its bundle) on the challenger's training window, so neither model
   has seen the holdout: CLV does this, and forecast backtests the champion's model kind and
   parameters at the challenger's origins.
5. **Promotion** only when the challenger is better by more than ``project.retrain.margin``: the
   alias moves and the bundle replaces ``models/<pipeline>/``. Either way a ``retrain`` run in
   MLflow holds the decision, its reason and both sets of metrics.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from crmlab.config import CrmlabConfig
from crmlab.errors import ConfigError, DataCheckError, NoFairComparison
from crmlab import pipelines
from crmlab.registry import champion_bundle, get_champion, promote
from crmlab.tracking import Tracker
from crmlab.workflow import PreparedData, prepare_data
from crmlab.utils import Step, no_step, replace_folder
from crmlab.config import with_overrides

__all__ = ["RetrainResult", "check_data", "retrain", "with_overrides"]


def _sales_source(cfg: CrmlabConfig, pipeline: str | None) -> bool:
    """Does this retraining forecast an aggregated sales table (no customers to count)?"""
    if pipeline != "forecast":
        return False
    source = cfg.forecast.source
    return source == "sales" or (source == "auto" and cfg.project.data.sales is not None)


def _check_sales(cfg: CrmlabConfig) -> list[str]:
    """The sales table's own checks: its reject share and, optionally, the age of its last period."""
    from crmlab.forecast.series import read_sales

    rules, project = cfg.project.retrain, cfg.project
    sales = read_sales(project.data.sales, freq=cfg.forecast.freq, covariates=cfg.forecast.covariates,
                       as_of=project.as_of)
    problems = []
    n_in, rejected = sales.counts["input_rows"], sales.counts["rejected_rows"]
    if n_in and rejected / n_in > rules.max_reject_share:
        reasons = ", ".join(sales.rejects["reason"].value_counts().head(3).index)
        problems.append(f"sales: {rejected / n_in:.1%} of {n_in:,} rows rejected (> project.retrain.max_reject_share="
                        f"{rules.max_reject_share:.1%}; {reasons})")
    observed = sales.panel.periods  # the history; future covariate rows are not periods here
    if rules.max_staleness_days is not None and project.as_of is not None and len(observed):
        last = observed[-1].date()
        age = (project.as_of - last).days
        if age > rules.max_staleness_days:
            problems.append(f"the last sales period ({last}) starts {age} days before the cut-off {project.as_of} "
                            f"(> project.retrain.max_staleness_days={rules.max_staleness_days}): stale data?")
    return problems


def check_data(prepared: PreparedData | None, cfg: CrmlabConfig, pipeline: str | None = None) -> list[str]:
    """The retraining data checks; returns the problems found (empty: all passed). A forecast of an
    aggregated sales table checks that table instead (it has no customers to count)."""
    if _sales_source(cfg, pipeline):
        return _check_sales(cfg)
    assert prepared is not None
    rules = cfg.project.retrain
    report = prepared.cleaning.report.to_dict()
    problems = []
    if not report.get("invariant_ok", True):
        problems.append("cleaning lost rows: input != clean + rejected + duplicates (see the cleaning report)")
    for name, t in report.get("tables", {}).items():
        n_in = t.get("input_rows", 0)
        share = t.get("rejected_rows", 0) / n_in if n_in else 0.0
        if share > rules.max_reject_share:
            reasons = ", ".join(f"{k}: {v}" for k, v in list(t.get("rejected", {}).items())[:3])
            problems.append(f"{name}: {share:.1%} of {n_in:,} rows rejected (> project.retrain.max_reject_share="
                            f"{rules.max_reject_share:.1%}; {reasons})")
    ids = set()
    for _, df in prepared.tables.items():
        ids.update(df["customer_id"].dropna().unique().tolist())
    if len(ids) < rules.min_customers:
        problems.append(f"{len(ids):,} customers (< project.retrain.min_customers={rules.min_customers})")
    tx = prepared.tables.transactions
    if rules.max_staleness_days is not None and tx is not None and len(tx) and prepared.as_of is not None:
        last = pd.Timestamp(tx["ts"].max()).date()
        age = (prepared.as_of - last).days
        if age > rules.max_staleness_days:
            problems.append(f"the last transaction ({last}) is {age} days before the cut-off {prepared.as_of} "
                            f"(> project.retrain.max_staleness_days={rules.max_staleness_days}): stale data?")
    return problems


@dataclass
class RetrainResult:
    pipeline: str
    promoted: bool
    reason: str
    metric: str
    challenger_value: float | None = None
    champion_value: float | None = None
    challenger_version: str | None = None
    champion_version: str | None = None
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    tracking_uri: str | None = None

    def summary(self) -> list[str]:
        fmt = (lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}")
        lines = [f"{self.pipeline}: {self.metric} challenger (v{self.challenger_version}) "
                 f"{fmt(self.challenger_value)} vs champion (v{self.champion_version or '-'}) {fmt(self.champion_value)}",
                 ("PROMOTED: " if self.promoted else "kept the champion: ") + self.reason]
        return lines


def _better(challenger: float, champion: float, higher: bool, margin: float) -> bool:
    if not math.isfinite(challenger):
        return False
    if not math.isfinite(champion):
        return True
    return (challenger - champion > margin) if higher else (champion - challenger > margin)


def _install_bundle(src: Path, dst: Path) -> None:
    """Copy a bundle folder over ``dst`` atomically (the old one stays until the new one is complete)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", dir=dst.parent))
    shutil.copytree(src, tmp / "b")
    replace_folder(tmp / "b", dst)
    shutil.rmtree(tmp, ignore_errors=True)


def retrain(cfg: CrmlabConfig, pipeline: str, *, trials: int | None = None, timeout: float | None = None,
            tracker: Tracker | None = None, step: Step | None = None) -> RetrainResult:
    """Run the retraining job for one pipeline (see the module doc) and return the decision."""
    if pipeline not in pipelines.names():
        raise ConfigError(f"unknown pipeline {pipeline!r}; choose one of {', '.join(pipelines.names())}")
    record = pipelines.get(pipeline)
    step = step or no_step
    project = cfg.project
    rules = project.retrain
    trials = rules.trials if trials is None else trials
    timeout = rules.timeout if timeout is None else timeout
    tracker = tracker or Tracker(project.tracking, pii_columns=project.features.pii_columns)
    metric, higher = record.primary_metric, record.higher_is_better

    with step("Loading, cleaning and checking the data"):
        prepared = None if _sales_source(cfg, pipeline) else prepare_data(project)
        problems = check_data(prepared, cfg, pipeline)
    if problems:
        with tracker.start_run(f"retrain-{pipeline}", pipeline="retrain", config=cfg.section(pipeline),
                               fingerprint=prepared.fingerprint if prepared is not None else None,
                               tags={"crmlab.retrain_of": pipeline, "crmlab.decision": "data_checks_failed"}) as run:
            run.log_dict({"decision": "data_checks_failed", "problems": problems}, "retrain_decision.json")
        raise DataCheckError(f"retrain {pipeline}: data checks failed, nothing trained or promoted: "
                             + "; ".join(problems))

    if trials and record.tuner is not None:
        tuned = record.load("tuner")(cfg, trials=trials, timeout=timeout, tracker=tracker, step=step)
        overrides = tuned.overrides
        cfg = with_overrides(cfg, overrides)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    candidates = Path(project.output.dir) / "candidates" / f"{pipeline}-{stamp}"
    try:  # the candidate's folder goes, whatever happens (a failed evaluation of the champion, say)
        cfg_c = with_overrides(cfg, {"project": {"output": {"models_dir": str(candidates)}}})
        result = record.load("trainer")(cfg_c, tracker=tracker, step=step)
        bundle_path = Path(result.bundle_path)
        challenger_version = result.registered_model_version
        challenger_version = None if challenger_version is None else str(challenger_version)
        challenger_metrics = {k: float(v) for k, v in result.metrics.items()}
        out = RetrainResult(pipeline, False, "", metric, challenger_metrics.get(metric), None, challenger_version)
        out.challenger_metrics = challenger_metrics

        champion = get_champion(project.tracking, pipeline)
        if champion is None or champion.version == challenger_version:
            out.promoted, out.reason = True, "there was no champion: the new model is the first"
        else:
            out.champion_version = champion.version
            unfair = None
            with step(f"Evaluating the champion (version {champion.version}) on the same holdout"):
                with tempfile.TemporaryDirectory(prefix="crmlab-champion-") as tmp:
                    champ_path, _ = champion_bundle(project.tracking, pipeline, tmp)
                    evaluate = record.load("evaluator")
                    try:
                        evaluated = {k: float(v) for k, v in evaluate(champ_path, result).items()}
                    except NoFairComparison as exc:
                        unfair = str(exc)
            if unfair is not None:
                out.promoted, out.reason = False, f"no fair comparison: {unfair}"
            else:
                # an evaluator that had to leave rows out (the champion was fitted on them) gives the
                # challenger's figures on the rows it kept: the two are compared on the same rows
                same_rows = {k.removeprefix("challenger_"): v for k, v in evaluated.items() if k.startswith("challenger_")}
                out.champion_metrics = {k: v for k, v in evaluated.items() if not k.startswith("challenger_")}
                where = ""
                if metric in same_rows:
                    out.challenger_value = same_rows[metric]
                    where = f" on the {int(out.champion_metrics.get('unseen_rows', 0)):,} test rows the champion was not fitted on"
                out.champion_value = out.champion_metrics.get(metric)
                if out.challenger_value is None or out.champion_value is None:
                    raise ConfigError(f"retrain {pipeline}: metric {metric!r} missing from the evaluation")
                better = _better(out.challenger_value, out.champion_value, higher, rules.margin)
                direction = "higher" if higher else "lower"
                out.promoted = better
                out.reason = (f"{metric} {out.challenger_value:.4g} vs {out.champion_value:.4g}{where} ({direction} is "
                              f"better, margin {rules.margin:g}): " + ("the challenger is better" if better else
                                                                      "the challenger is not better by the margin"))
        if out.promoted and challenger_version is not None:
            promote(project.tracking, pipeline, challenger_version, reason=out.reason)
            _install_bundle(bundle_path, Path(project.output.models_dir) / pipeline)
    finally:
        shutil.rmtree(candidates, ignore_errors=True)

    with tracker.start_run(f"retrain-{pipeline}", pipeline="retrain", config=cfg.section(pipeline),
                           fingerprint=(prepared.fingerprint if prepared is not None
                                        else getattr(result, "fingerprint", None)),
                           tags={"crmlab.retrain_of": pipeline,
                                 "crmlab.decision": "promoted" if out.promoted else "kept_champion"}) as run:
        run.log_metrics({f"challenger_{k}": v for k, v in out.challenger_metrics.items()})
        run.log_metrics({f"champion_{k}": v for k, v in out.champion_metrics.items()})
        run.log_metrics({"promoted": float(out.promoted)})
        run.log_params({"margin": rules.margin, "metric": metric, "challenger_version": challenger_version,
                        "champion_version": out.champion_version, "challenger_run_id": getattr(result, "run_id", None),
                        "trials": trials})
        run.log_dict({"decision": "promoted" if out.promoted else "kept_champion", "reason": out.reason,
                      "metric": metric, "higher_is_better": higher,
                      "challenger": {"version": challenger_version, "metrics": out.challenger_metrics},
                      "champion": {"version": out.champion_version, "metrics": out.champion_metrics}},
                     "retrain_decision.json")
        out.run_id = run.run_id
        out.tracking_uri = tracker.uri if run.active else None
    return out
