"""Hyper-parameter tuning with Optuna, shared by every pipeline that tunes.

A pipeline supplies only what is its own: an objective ``objective(trial, params) -> float`` that
trains on its training window and scores on its validation window, the direction of its metric, and
the search space in its config (``<pipeline>.tuning.search_space``, dotted names inside its section).
Everything else is here, once:

* a **seeded TPE** sampler (``project.seed``), so a study is reproducible; a resumed study is seeded
  with ``seed + trials already done`` so its new trials do not replay the first call's random ones;
* **pruning**: the objective reports intermediate values with :func:`report` (e.g. the validation
  score every few boosting rounds) and the median rule stops trials that trail the others;
* **resumable storage**: the study lives in a SQLite file (``outputs/tuning/<pipeline>.db`` by
  default), so a second ``crmlab tune`` call adds trials to the same study;
* **tracking**: a ``tune-<pipeline>`` MLflow run with one child run per trial (its parameters,
  value, state and duration) and the best trial's parameters and value on the parent;
* **an honest verdict** (optional, ``judge``): the best trial's parameters are judged against the
  defaults on data the tuning never saw (the forecast tuner: origins after the tuning origins), and
  come back as overrides only when they win there; otherwise the result, the file, the terminal and
  the MLflow run say that the defaults were kept and why (:class:`Verdict`);
* **the result as config**: the best parameters become a nested override dict
  (``{"churn": {"lightgbm": {"num_leaves": 63}}}``) written to
  ``outputs/tuning/<pipeline>_best.yaml``, which ``crmlab train <pipeline> --tuned FILE`` and the
  retraining job apply on top of the config.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crmlab.config import CrmlabConfig, ProjectConfig, SearchParam, TuningConfig
from crmlab.errors import ConfigError
from crmlab.tracking import Tracker
from crmlab.utils import Step, no_step, progress

__all__ = [
    "TuningResult",
    "Verdict",
    "load_overrides",
    "nested_overrides",
    "report",
    "run_study",
    "study_storage",
    "suggest",
]

Objective = Callable[[Any, dict[str, Any]], float]


@dataclass(frozen=True)
class Verdict:
    """The tuned parameters against the defaults on data the tuning never saw: both figures of
    ``metric``, which was kept and why (``details``: what the judging data was)."""

    metric: str
    tuned: float
    default: float
    keep_tuned: bool
    because: str
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> str:
        return "tuned" if self.keep_tuned else "defaults"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, f"tuned_{self.metric}": self.tuned, f"default_{self.metric}": self.default,
                "kept": self.kept, "because": self.because, **self.details}


@dataclass
class TuningResult:
    pipeline: str
    metric: str
    direction: str
    best_params: dict[str, Any]
    best_value: float
    overrides: dict[str, Any]
    n_trials: int
    n_complete: int
    n_pruned: int
    best_file: Path
    storage: str
    run_id: str | None = None
    tracking_uri: str | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    verdict: Verdict | None = None

    def summary(self) -> list[str]:
        lines = [
            f"{self.pipeline}: best {self.metric} {self.best_value:.4g} ({self.direction}) after {self.n_trials} trials "
            f"in the study ({self.n_complete} complete, {self.n_pruned} pruned)",
            "best parameters: " + ", ".join(f"{k}={_fmt(v)}" for k, v in self.best_params.items()),
        ]
        if self.verdict is not None:
            v = self.verdict
            lines.append(f"judged on data the tuning never saw: {v.metric} tuned {v.tuned:.4g}, defaults {v.default:.4g}"
                         f" -> kept the {v.kept} ({v.because})")
        if self.overrides:
            lines.append(f"written to {self.best_file}: crmlab train {self.pipeline} --tuned {self.best_file}")
        else:
            lines.append(f"the defaults stay: {self.best_file} holds no parameters (training with it changes nothing)")
        return lines


def _plain(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def suggest(trial: Any, space: list[SearchParam]) -> dict[str, Any]:
    """The trial's values for the search space, keyed by dotted name."""
    params: dict[str, Any] = {}
    for p in space:
        if p.type == "categorical":
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices or []))
        elif p.type == "int":
            params[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), log=p.log)  # type: ignore[arg-type]
        else:
            params[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), log=p.log)  # type: ignore[arg-type]
    return params


def report(trial: Any, value: float, step: int) -> None:
    """Report an intermediate value; raises ``optuna.TrialPruned`` when the pruner stops the trial."""
    import optuna

    trial.report(float(value), step)
    if trial.should_prune():
        raise optuna.TrialPruned(f"pruned at step {step} with value {value:.4g}")


def nested_overrides(pipeline: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """``{"lightgbm.num_leaves": 63}`` -> ``{pipeline: {"lightgbm": {"num_leaves": 63}}}``."""
    tree: dict[str, Any] = {}
    for name, value in params.items():
        node = tree.setdefault(pipeline, {})
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value.item() if hasattr(value, "item") else value
    return tree


def load_overrides(path: str | Path, cfg: CrmlabConfig | None = None) -> dict[str, Any]:
    """Read a ``*_best.yaml`` (or any nested override file); with ``cfg``, check that it applies."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: no such tuned-parameters file (crmlab tune <pipeline> writes one)")
    from crmlab.config import read_yaml_file

    data = read_yaml_file(p, "tuned-parameters file") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping like {{churn: {{lightgbm: {{...}}}}}}, got {type(data).__name__}")
    data = {k: v for k, v in data.items() if not str(k).startswith("_")}  # _study etc. are notes, not config
    if cfg is not None:
        from pydantic import ValidationError

        from crmlab.config import explain_validation_error
        from crmlab.config import with_overrides

        try:
            with_overrides(cfg, data)
        except ValidationError as exc:
            raise ConfigError(explain_validation_error(exc, {str(k): str(p) for k in data})) from None
    return data


def study_storage(pipeline: str, tuning: TuningConfig, project: ProjectConfig) -> tuple[str, Path]:
    path = tuning.storage or Path(project.output.dir) / "tuning" / f"{pipeline}.db"
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}", path


def tuning_progress(done: int, trials: int, history: list[dict[str, Any]], metric: str, direction: str,
                    started: float, timeout: float | None, now: float | None = None) -> str:
    """The spinner's line while a study runs: ``trial 8/40 (7 done, 2 pruned), best roc_auc 0.8123
    (trial 5), 12s elapsed, ~55s left``. The time left is the mean trial's time over the trials to
    go, no more than the timeout's remainder."""
    now = time.perf_counter() if now is None else now
    elapsed = now - started
    pruned = sum(h["state"] == "PRUNED" for h in history)
    values = [h[metric] for h in history if h["state"] == "COMPLETE" and math.isfinite(h[metric])]
    parts = [f"trial {done + 1}/{trials}" + (f" ({done} done, {pruned} pruned)" if pruned else "")]
    if values:
        best = max(values) if direction == "maximize" else min(values)
        trial = next(h["trial"] for h in history if h["state"] == "COMPLETE" and h[metric] == best)
        parts.append(f"best {metric} {best:.4g} (trial {trial})")
    parts.append(f"{elapsed:.0f}s elapsed")
    if done:
        left = elapsed / done * (trials - done)
        if timeout is not None:
            left = min(left, max(timeout - elapsed, 0.0))
        parts.append(f"~{left:.0f}s left")
    elif timeout is not None:
        parts.append(f"at most {timeout:.0f}s")
    return ", ".join(parts)


def run_study(
    pipeline: str,
    objective: Objective,
    tuning: TuningConfig,
    *,
    project: ProjectConfig,
    direction: str,
    metric: str,
    trials: int | None = None,
    timeout: float | None = None,
    tracker: Tracker | None = None,
    step: Step | None = None,
    to_overrides: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    config: Mapping[str, Any] | None = None,
    fingerprint: Mapping[str, Any] | None = None,
    judge: Callable[[dict[str, Any]], Verdict] | None = None,
) -> TuningResult:
    """Run (or resume) the pipeline's study and write its best parameters as a config file; with
    ``judge``, only when the verdict keeps them (module doc)."""
    import optuna

    if direction not in ("maximize", "minimize"):
        raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
    if not tuning.search_space:
        raise ConfigError(f"{pipeline}.tuning.search_space is empty: nothing to tune")
    step = step or no_step
    trials = trials if trials is not None else tuning.trials
    timeout = timeout if timeout is not None else tuning.timeout
    to_overrides = to_overrides or (lambda params: nested_overrides(pipeline, params))
    storage, db = study_storage(pipeline, tuning, project)
    study_name = tuning.study_name or pipeline
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    # the number of trials already stored decides the seed, so a resumed study explores new points
    try:
        done = len(optuna.load_study(study_name=study_name, storage=storage).trials)
    except KeyError:
        done = 0
    sampler = optuna.samplers.TPESampler(seed=project.seed + done, n_startup_trials=tuning.startup_trials)
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=tuning.startup_trials, n_warmup_steps=1)
              if tuning.pruner == "median" else optuna.pruners.NopPruner())
    study = optuna.create_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner,
                                direction=direction, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise ConfigError(f"{db}: study {study_name!r} was created to {study.direction.name.lower()}, "
                          f"not to {direction}; set {pipeline}.tuning.study_name or remove the file")
    tracker = tracker or Tracker(project.tracking, pii_columns=project.features.pii_columns)
    history: list[dict[str, Any]] = []

    with tracker.start_run(f"tune-{pipeline}", pipeline=pipeline, config=config, fingerprint=fingerprint,
                           tags={"crmlab.job": "tune", "crmlab.study": study_name}) as parent:
        parent.log_params({"tuning": {"trials": trials, "timeout": timeout, "storage": str(db),
                                      "resumed_from_trials": done, "metric": metric, "direction": direction}})

        started = time.perf_counter()

        def wrapped(trial: optuna.Trial) -> float:
            progress(tuning_progress(len(history), trials, history, metric, direction, started, timeout))
            params = suggest(trial, tuning.search_space)
            start = time.perf_counter()
            state, value = "COMPLETE", math.nan
            with tracker.start_run(f"trial-{trial.number}", pipeline=pipeline, nested=True,
                                   tags={"crmlab.job": "tune-trial", "optuna.trial": trial.number}) as child:
                child.log_params({"trial": params})
                try:
                    value = float(objective(trial, params))
                except optuna.TrialPruned:
                    state = "PRUNED"
                finally:
                    child.set_tags({"optuna.state": state})
                    child.log_metrics({"seconds": time.perf_counter() - start})
                if state == "COMPLETE":
                    child.log_metrics({metric: value})
            history.append({"trial": trial.number, "state": state, metric: value, **params})
            if state == "PRUNED":
                raise optuna.TrialPruned()
            if not math.isfinite(value):
                raise optuna.TrialPruned(f"non-finite {metric}")
            return value

        with step(f"Tuning {pipeline}: {trials} trials" + (f", at most {timeout:.0f}s" if timeout else "")
                  + (f" (resuming a study of {done})" if done else "")):
            study.optimize(wrapped, n_trials=trials, timeout=timeout)
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            raise ConfigError(f"tuning {pipeline}: no trial completed ({len(study.trials)} tried); "
                              "loosen the search space or give it more time")
        best = study.best_trial
        best_params = {p.name: best.params[p.name] for p in tuning.search_space if p.name in best.params}
        overrides = to_overrides(best_params)
        verdict = None
        if judge is not None:
            with step(f"Judging the tuned {pipeline} parameters against the defaults on data the tuning never saw"):
                verdict = judge(best_params)
            if not verdict.keep_tuned:
                overrides = {}
            parent.set_tags({"crmlab.tuning_kept": verdict.kept, "crmlab.tuning_kept_because": verdict.because[:4000]})
            parent.log_metrics({f"judged_tuned_{metric}": verdict.tuned, f"judged_default_{metric}": verdict.default})
            parent.log_dict(verdict.to_dict(), "tuning_verdict.json")
            study.set_user_attr(f"verdict_trial_{best.number}", {k: _plain(v) for k, v in verdict.to_dict().items()})
        best_file = Path(project.output.dir) / "tuning" / f"{pipeline}_best.yaml"
        best_file.parent.mkdir(parents=True, exist_ok=True)
        note: dict[str, Any] = {"_study": {"name": study_name, "storage": str(db), "best_trial": best.number,
                                           metric: float(best.value), "direction": direction,
                                           "trials": len(study.trials)}}
        if verdict is not None:
            note["_verdict"] = {**verdict.to_dict(), "best_params": {k: _plain(v) for k, v in best_params.items()}}
        best_file.write_text(yaml.safe_dump({**note, **overrides}, sort_keys=False), encoding="utf-8")
        parent.log_params({"best": best_params})
        parent.log_metrics({f"best_{metric}": float(best.value), "trials": float(len(study.trials)),
                            "pruned": float(sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials))})
        parent.log_artifact(best_file)
    return TuningResult(
        pipeline=pipeline, metric=metric, direction=direction, best_params=best_params, best_value=float(best.value),
        overrides=overrides, n_trials=len(study.trials), n_complete=len(complete),
        n_pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials), best_file=best_file,
        storage=storage, run_id=parent.run_id, tracking_uri=tracker.uri if parent.active else None, history=history,
        verdict=verdict,
    )
