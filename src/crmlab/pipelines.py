"""The pipelines, recorded once: what each one trains, tunes, evaluates, scores and reports.

Every part of crmlab that needs to know the pipelines (the command line, the demo, batch scoring,
retraining, the registry, the MLflow pyfuncs, the report, the config's sections) reads these
records; none keeps a list of its own, and neither does this module: each pipeline package declares
its record in ``crmlab/<package>/record.py`` (``RECORD = Pipeline(...)``), found here by looking at the
packages. Adding a pipeline is a package with its trainer, evaluator, scorer and record, and its config
section in :mod:`crmlab.config`.

The records hold ``"module:function"`` references, not functions, so that reading them imports
nothing heavy (``crmlab --help`` and config loading stay fast); :meth:`Pipeline.load` imports one
when it is needed. This module imports nothing of crmlab's at import time, so every other module may
import it; the packages' ``__init__`` modules are light (their names load on first use) so that finding
the records stays fast.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Pipeline", "customer_models", "get", "lazy_exports", "names", "records", "training_order", "tunable"]

Role = Literal["trainer", "evaluator", "scorer", "tuner", "score_inputs"]


@dataclass(frozen=True)
class Pipeline:
    """One pipeline's record.

    ``title``: its heading (configs written by ``crmlab init``); ``summary``: one line of help;
    ``trainer``: ``(cfg, *, tracker=None, step=None) -> result`` (a result has ``summary()``, ``run_id``);
    ``evaluator``: ``(bundle, result) -> metrics``, another bundle judged on a result's holdout (retraining);
    ``scorer``: ``(input DataFrame, bundle) -> DataFrame``, the function batch scoring and the pyfunc call;
    ``tuner``: ``(cfg, *, trials, timeout, tracker, step) -> TuningResult``, or None;
    ``primary_metric``: what runs are ranked and promoted by (logged on the parent run, measured on data the
    model did not see) and whether higher is better; ``key_metrics``: what ``crmlab compare`` shows next;
    ``scores_customers``: one row per customer in ``crmlab score``; ``report_tables``: optional
    ``report_<name>.csv`` files of the bundle and the columns each must have; ``train_first``: trained
    before the others by ``crmlab demo`` and ``crmlab train all`` (the KPIs and the report use its bundle);
    ``position``: the order of the score columns, of the config sections and of the report's sections;
    ``report_heading``: the heading of its report section (default: ``title``);
    ``score_inputs``: ``(features, tables, bundle, *, as_of) -> DataFrame``, the scorer's input when it needs
    more than the shared features (cross-sell: each customer's items bought), built by ``crmlab score`` from
    the clean tables of the customers it scores; None: the features are the input.
    """

    name: str
    title: str
    summary: str
    trainer: str
    evaluator: str
    scorer: str
    primary_metric: str
    higher_is_better: bool
    key_metrics: tuple[str, ...]
    scores_customers: bool
    tuner: str | None = None
    report_tables: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    train_first: bool = False
    position: int = 100
    report_heading: str | None = None
    score_inputs: str | None = None

    def load(self, role: Role) -> Callable[..., Any]:
        """The function behind one of the record's references, imported now."""
        ref = getattr(self, role)
        if ref is None:
            raise LookupError(f"the {self.name} pipeline has no {role}")
        module, _, name = ref.partition(":")
        return getattr(importlib.import_module(module), name)


def _discover() -> tuple[Pipeline, ...]:
    """Every ``crmlab.<package>.record.RECORD``, in the order of their ``position``."""
    found = []
    package = sys.modules[__name__.rpartition(".")[0]]  # crmlab, whose __init__ imports this module
    for info in pkgutil.iter_modules(package.__path__):
        # look for the file, not the module: finding a module imports its package, and only the
        # pipeline packages are light
        if info.ispkg and (Path(info.module_finder.path) / info.name / "record.py").is_file():
            record = importlib.import_module(f"crmlab.{info.name}.record").RECORD
            if record.name != info.name:
                raise RuntimeError(f"crmlab/{info.name}/record.py names the pipeline {record.name!r}")
            found.append(record)
    return tuple(sorted(found, key=lambda p: (p.position, p.name)))


@functools.cache
def _by_name() -> dict[str, Pipeline]:
    return {p.name: p for p in _discover()}


def records() -> tuple[Pipeline, ...]:
    """Every pipeline's record."""
    return tuple(_by_name().values())


def names() -> tuple[str, ...]:
    """The pipelines' names (the order of the config sections and of the score columns)."""
    return tuple(_by_name())


def training_order() -> tuple[str, ...]:
    """The names in the order ``crmlab demo`` and ``crmlab train all`` train them."""
    return tuple(p.name for p in sorted(records(), key=lambda p: not p.train_first))


def customer_models() -> tuple[str, ...]:
    """The pipelines with one score per customer (``crmlab score``)."""
    return tuple(p.name for p in records() if p.scores_customers)


def tunable() -> tuple[str, ...]:
    """The pipelines with a tuner (``crmlab tune``, ``crmlab retrain --trials``)."""
    return tuple(p.name for p in records() if p.tuner is not None)


def get(name: str) -> Pipeline:
    """One pipeline's record; a KeyError names the known pipelines."""
    try:
        return _by_name()[name]
    except KeyError:
        raise KeyError(f"unknown pipeline {name!r}; choose one of {', '.join(_by_name())}") from None


def lazy_exports(module: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose names (``name -> module``) load on first use,
    so that importing the package (as finding its record does) imports nothing heavy."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
