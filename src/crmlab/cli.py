"""The ``crmlab`` command line.

Thin: every command resolves the config, calls library functions and prints a short summary.
Errors a user can fix exit with code 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import difflib
import errno
import inspect
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from crmlab import __version__, pipelines
from crmlab import utils as _utils
from crmlab.config import PIPELINES, CrmlabConfig, load_config
from crmlab.errors import CrmlabError

__all__ = ["app", "main"]

console = Console(stderr=True)
out = Console()
log = logging.getLogger("crmlab")

app = typer.Typer(
    name="crmlab",
    help="Customer models from CRM data: churn, CLV, segmentation, sales forecasting and cross-sell, tracked "
         "in MLflow.\n\nA first run: crmlab demo. On your data: crmlab init FILE, crmlab train all, crmlab score, "
         "crmlab report. --quiet and --json may also follow the command (crmlab score --json).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Show the resolved configuration or its JSON schema.", no_args_is_help=True)
data_app = typer.Typer(help="Synthetic data and cleaning.", no_args_is_help=True)
features_app = typer.Typer(help="The shared customer features.", no_args_is_help=True)
train_app = typer.Typer(help="Train a pipeline: evaluate, export to models/, track in MLflow.", no_args_is_help=True)
segments_app = typer.Typer(help="Customer segments of the trained segmentation model.", no_args_is_help=True)
lifecycle_app = typer.Typer(help="Lifecycle stages: new, growing, mature, at_risk, lapsed, reactivated.",
                            no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(train_app, name="train")
app.add_typer(segments_app, name="segments")
app.add_typer(lifecycle_app, name="lifecycle")


SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a config value: --set project.as_of=1997-09-30 (repeatable)."),
]
ConfigDirOpt = Annotated[
    Path | None,
    typer.Option("--config-dir", "-c", help="Folder of YAML config files (default: configs, if it exists).",
                 show_default=False),
]


def _complete(names: Any, incomplete: str) -> list[str]:
    """Shell completion of a pipeline argument."""
    return [name for name in names if name.startswith(incomplete)]


def _parse_date(value: str | None) -> str | None:
    """A date option's value as YYYY-MM-DD, or a usage error naming the option and the value."""
    if value is None:
        return None
    text = value.strip()
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as exc:
        why = f" ({exc})" if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else ""
        raise typer.BadParameter(f"{value!r} is not a date YYYY-MM-DD{why}") from None


def _date_option(flag: str, help: str) -> Any:
    return typer.Option(flag, help=help, callback=_parse_date)


def _positive_seconds(value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value:g} is not a positive number of seconds")
    return value


def _writable_folder(folder: Path) -> None:
    """Raise a usage error unless files can be created in ``folder`` (made if missing)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise typer.BadParameter(f"{probe} is a file, not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"cannot write in {probe} (permission denied)")


#: What crmlab.utils.write_table_atomic writes: Parquet by suffix, CSV otherwise (so only .csv is honest).
TABLE_SUFFIXES = (".parquet", ".pq", ".csv")


def _out_file(example: str, *suffixes: str) -> Any:
    """An option callback for a file the command writes: not a folder, in a writable place, and
    (when ``suffixes`` are given) of a format the command writes."""

    def check(value: Path | None) -> Path | None:
        if value is None:
            return None
        if value.is_dir():
            raise typer.BadParameter(f"{value} is a folder; give a file name, e.g. {value / example}")
        if suffixes and value.suffix.lower() not in suffixes:
            raise typer.BadParameter(f"{value}: write {' or '.join(suffixes)}")
        _writable_folder(value.parent)
        return value

    return check


def _scores_out(value: str | None) -> str | Path | None:
    """``--out`` of ``crmlab score``: a Parquet or CSV file, or a PostgreSQL table (kept as text: a path
    would fold its '//')."""
    if value is None or value.startswith(("postgresql://", "postgres://")):
        return value
    path = Path(value)
    if not path.suffix and not path.is_file():  # a folder: the Parquet dataset of --engine spark (checked later)
        _writable_folder(path.parent)
        return path
    return _out_file("scores.parquet", ".parquet", ".csv")(path)


def _out_dir(value: Path | None) -> Path | None:
    """An option callback for a folder the command writes into (made if missing)."""
    if value is None:
        return None
    if value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is a file; give a folder")
    _writable_folder(value)
    return value


def _customer_models(value: list[str] | None) -> list[str] | None:
    models = pipelines.customer_models()
    for name in value or []:
        if name not in models:
            near = difflib.get_close_matches(name, list(models), n=1)
            raise typer.BadParameter(f"{name!r} is not a customer model; choose from {', '.join(models)}"
                                     + (f" (did you mean {near[0]!r}?)" if near else ""))
    return value


def _print_version(value: bool) -> None:
    if value:
        out.print(__version__, markup=False, highlight=False)
        raise typer.Exit()


class _State:
    config_dir: Path = Path("configs")
    config_dir_given: bool = False
    sets: list[str] = []
    quiet: bool = False  # --quiet: errors only
    json: bool = False  # --json: one JSON document on stdout at the end
    outputs: dict[str, Any] = {}  # what the command wrote, for --json
    captured: Any = None  # the human summary, captured under --json
    command: list[str] | None = None  # the arguments, for --json
    config_json: bool = False  # --json before `config show`: its JSON
    error: str | None = None  # the one-line error, for --json


state = _State()


@app.callback()
def _root(
    ctx: typer.Context,
    config_dir: ConfigDirOpt = None,
    set_: SetOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Errors only: no progress, notes or summary "
                                        "(commands that exist to print, such as compare, still print).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="For schedulers: print one JSON document on stdout "
                                           "saying what the command wrote (files, MLflow runs, model versions) "
                                           "or why it failed; warnings and errors still go to stderr.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    state.config_dir = config_dir if config_dir is not None else Path("configs")
    state.config_dir_given = config_dir is not None
    state.sets = list(set_ or [])
    command = ctx.invoked_subcommand
    # config prints YAML or JSON by itself: --json there means its JSON, not a summary document
    state.quiet, state.json, state.config_json = quiet, json_out and command != "config", json_out
    _quiet_outputs(command)
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING if json_out else logging.INFO
    logging.basicConfig(
        level=level,
        format="%(message)s",
        # under --quiet or --json the spinner console is silenced; warnings and errors keep their own
        handlers=[RichHandler(console=err_console if quiet or json_out else console, show_path=False,
                              show_time=False)],
        force=True,
    )
    # MLflow configures its own loggers when first imported; this keeps its INFO chatter out unless -v
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "DEBUG" if verbose else "WARNING")
    for noisy in ("mlflow", "alembic", "urllib3", "matplotlib", "numexpr", "lightgbm", "py4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _config(sets: list[str] | None = None) -> CrmlabConfig:
    return load_config(state.config_dir, [*state.sets, *(sets or [])], must_exist=state.config_dir_given)


#: The commands in the order of a user's work, for the help's list (the rest follow in their own order).
_WORKFLOW = ("init", "demo", "data", "features", "train", "tune", "compare", "promote", "score", "forecast",
             "segments", "lifecycle", "kpis", "report", "retrain", "config")

#: Metavariables of options by their name (instead of typer's ``<str>``); flags show none.
_METAVARS = {"config_dir": "DIR", "set_": "KEY=VALUE", "as_of": "DATE", "date_from": "DATE", "date_to": "DATE",
             "out_file": "FILE", "out_dir": "DIR", "clean_dir": "DIR", "trials": "N", "timeout": "SECONDS",
             "last": "N", "metric": "NAME", "model": "PIPELINE", "chunk_size": "N", "customers": "N",
             "seed": "N", "horizon": "N", "dir_": "DIR", "tuned": "FILE", "shell": "SHELL"}


def _first_paragraph(text: str) -> str:
    """A command's line in its group's list: the first paragraph of its help, on one line."""
    return " ".join(inspect.cleandoc(text).split("\n\n")[0].split())


def _polish(command: Any) -> None:
    """Help that reads well: each command's short help on one line (typer keeps the docstring's line
    breaks, so the list broke mid-sentence), options with a metavariable saying what to give (DATE,
    FILE, N) and flags with none (typer shows ``<bool>``), groups listing commands in workflow order."""
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "argument" and hasattr(param, "type_descriptor"):
            param.display_type_rich = lambda ctx: None  # its name says it (typer adds <str>)
        if getattr(param, "param_type_name", "") != "option":
            continue
        if getattr(param, "is_flag", False):
            param.metavar = ""
        elif param.name in _METAVARS and param.metavar is None:
            param.metavar = _METAVARS[param.name]
        elif param.metavar is None and getattr(param, "type_descriptor", None) is not None:
            desc = param.type_descriptor
            param.metavar = "|".join(map(str, desc.choices or ())) if desc.is_choice else param.name.rstrip("_").upper()
    help_option = command.get_help_option

    def get_help_option(ctx: Any) -> Any:  # click makes --help per context: a flag, so no metavariable
        option = help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    command.get_help_option = get_help_option
    subs = getattr(command, "commands", None)
    if subs is None:
        return
    for sub in subs.values():
        if sub.help and not sub.short_help:
            sub.short_help = _first_paragraph(sub.help)
        _polish(sub)
    order = _WORKFLOW if command.name == "crmlab" else ("all", *pipelines.training_order())
    ordered = [n for n in order if n in subs] + [n for n in subs if n not in order]
    command.commands = {name: subs[name] for name in ordered}
    command.list_commands = lambda ctx: list(command.commands)


_COMMAND: list[Any] = []


def _command() -> Any:
    """The click command of :data:`app`, polished (:func:`_polish`) once per process."""
    if not _COMMAND:
        import typer.main

        group = typer.main.get_command(app)
        _polish(group)
        _COMMAND.append(group)
    return _COMMAND[0]


#: Commands whose job is to print (a table, a config): --quiet keeps their stdout.
_PRINTING_COMMANDS = frozenset({"config", "compare", "segments", "lifecycle"})


def _quiet_outputs(command: str | None) -> None:
    """Under --quiet or --json: no spinners, no step lines, no progress bars on stderr; the summary on
    stdout goes nowhere (--quiet, except for the printing commands) or into the JSON's ``summary``."""
    global out
    if not (state.quiet or state.json):
        return
    console.quiet = True  # spinners, step lines, progress bars; errors use their own console
    if state.json:
        import io

        state.captured = io.StringIO()
        out = Console(file=state.captured, width=10_000, no_color=True, highlight=False)
    elif command not in _PRINTING_COMMANDS:
        out = Console(quiet=True)


def _wrote(**fields: Any) -> None:
    """Record what the command wrote, for --json (merged into its ``outputs``)."""
    state.outputs.update(fields)


def _wrote_training(pipeline: str, result: Any) -> None:
    state.outputs.setdefault("pipelines", {})[pipeline] = _training_outputs(result)


def _training_outputs(result: Any) -> dict[str, Any]:
    """What a training wrote: its bundle, MLflow run, logged model and registered version, metrics."""
    fields = {"bundle": getattr(result, "bundle_path", None), "run_id": getattr(result, "run_id", None),
              "tracking_uri": getattr(result, "tracking_uri", None), "model_uri": getattr(result, "model_uri", None),
              "registered_model_version": getattr(result, "registered_model_version", None),
              "metrics": getattr(result, "metrics", None)}
    return {k: v for k, v in fields.items() if v is not None}


def _jsonable(value: Any) -> Any:
    """``value`` with paths, dates, numpy numbers and non-finite floats turned into JSON values
    (tables and other objects are left out)."""
    import math

    if isinstance(value, dict):
        pairs = ((str(k), _jsonable(v)) for k, v in value.items())
        return {k: v for k, v in pairs if v is not _SKIP}
    if isinstance(value, (list, tuple)):
        return [v for v in map(_jsonable, value) if v is not _SKIP]
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (Path, date)):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a numpy scalar
        return _jsonable(value.item())
    return _SKIP


_SKIP = object()


def _print_json(code: int, error: str | None) -> None:
    """The --json document: the command, its exit code, what it wrote, its summary lines, the error."""
    argv = [a for a in sys.argv[1:]] if state.command is None else state.command
    doc = {"command": " ".join(argv), "ok": code == 0, "exit_code": code, "outputs": _jsonable(state.outputs),
           "summary": [line.rstrip() for line in (state.captured.getvalue() if state.captured else "").splitlines()
                       if line.strip()],
           "error": error}
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    sys.stdout.flush()


@contextmanager
def _step(text: str):
    """A spinner on stderr for a long step, and its duration afterwards."""
    start = time.perf_counter()
    with console.status(text) as status, _utils.progress_to(
            lambda detail: status.update(f"{text}: {escape(detail)}")):
        yield
    console.print(f"[green]✓[/green] {text} [dim]({time.perf_counter() - start:.1f}s)[/dim]")


# --------------------------------------------------------------------------- config


@config_app.command("show")
def config_show(
    pipeline: Annotated[str, typer.Argument(help=f"One of: project, {', '.join(PIPELINES)}, kpis.")],
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print the resolved config of a pipeline (defaults <- YAML <- --set)."""
    import yaml

    section = _config(set_).section(pipeline)
    if as_json or state.config_json:
        out.print_json(json.dumps(section))
    else:
        out.print(yaml.safe_dump(section, sort_keys=False), end="", markup=False, highlight=False)


@config_app.command("schema")
def config_schema() -> None:
    """Print the JSON schema of the whole configuration."""
    out.print_json(json.dumps(CrmlabConfig.model_json_schema()))


# --------------------------------------------------------------------------- data


@data_app.command("synth")
def data_synth(
    customers: Annotated[int, typer.Option("--customers", "-n", min=10, help="Number of true customers.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.", callback=_out_dir)] = Path("data/synthetic"),
    surveys: Annotated[bool, typer.Option("--surveys", help="Also write surveys.csv: NPS answers tied to churn "
                                          "(detractors churn more); the other tables stay the same.")] = False,
) -> None:
    """Write a seeded synthetic CRM (customers, transactions, interactions, dirty rows, ground truth)."""
    from crmlab.data.synth import write_synthetic

    with _step(f"Generating {customers:,} synthetic customers (seed {seed})"):
        paths = write_synthetic(out_dir, n_customers=customers, seed=seed)
        if surveys:
            from crmlab.data.synth_surveys import write_synthetic_surveys

            paths["surveys"] = write_synthetic_surveys(out_dir, n_customers=customers, seed=seed)
    for name, path in paths.items():
        out.print(f"{name}: {path}")


def _print_report(report: Any) -> None:
    data = report.to_dict()
    tbl = Table(title="Cleaning report")
    for col in ("table", "input", "clean", "rejected", "exact duplicates", "merged", "check"):
        tbl.add_column(col, justify="right" if col not in ("table", "check") else "left")
    for name, t in data.get("tables", {}).items():
        tbl.add_row(
            name,
            f"{t.get('input_rows', 0):,}",
            f"{t.get('clean_rows', 0):,}",
            f"{t.get('rejected_rows', 0):,}",
            f"{t.get('exact_duplicates', 0):,}",
            f"{t.get('merged_rows', 0):,}",
            "ok" if t.get("invariant_ok", True) else "MISMATCH",
        )
    out.print(tbl)
    for line in report.to_text().splitlines():
        out.print(line, markup=False, highlight=False)


@data_app.command("clean")
def data_clean(
    set_: SetOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (default: <output.dir>/clean).",
                                                 callback=_out_dir)] = None,
    engine: Annotated[Literal["pandas", "spark"], typer.Option(
        help="pandas (this process) or spark (the transactions and customers, read and cleaned by customer "
             "bucket on Spark into Parquet folders).")] = "pandas",
) -> None:
    """Clean the configured tables: clean Parquet files, a rejects file per table and a report."""
    from crmlab.workflow import prepare_data

    cfg = _config(set_)
    target = out_dir or cfg.project.output.dir / "clean"
    if engine == "spark":
        from crmlab.spark_clean import clean_on_spark

        with _step("Reading and cleaning on Spark"):
            summary = clean_on_spark(cfg, target)
        for name, t in summary["tables"].items():
            out.print(f"{name}: {t['input_rows']:,} rows in, {t['clean_rows']:,} clean, {t['rejected_rows']:,} rejected"
                      + (f" ({', '.join(f'{k} {v:,}' for k, v in t['rejected'].items())})" if t["rejected"] else ""),
                      soft_wrap=True)
        for note in summary["decisions"]:
            out.print(f"decided on a sample: {note}", soft_wrap=True)
        _wrote(clean_dir=target, tables=summary["tables"])
        out.print(f"clean tables, rejects and report written to {target}")
        return
    with _step("Loading and cleaning"):
        prepared = prepare_data(cfg.project, out_dir=target)
    _wrote(clean_dir=target, tables=prepared.cleaning.report.to_dict().get("tables", {}))
    _print_report(prepared.cleaning.report)
    out.print(f"clean tables, rejects and report written to {target}")


# --------------------------------------------------------------------------- features


@features_app.command("build")
def features_build(
    set_: SetOpt = None,
    as_of: Annotated[str | None, _date_option("--as-of", "Cut-off date YYYY-MM-DD (default: config).")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="Parquet or CSV file.",
                                                  callback=_out_file("features.parquet", *TABLE_SUFFIXES))] = None,
) -> None:
    """Build one row of features per customer at the cut-off date."""
    from crmlab.features import build_features_from_tables
    from crmlab.workflow import prepare_data

    sets = [*(set_ or []), *([f"project.as_of={as_of}"] if as_of else [])]
    cfg = _config(sets)
    with _step("Loading and cleaning"):
        prepared = prepare_data(cfg.project, out_dir=cfg.project.output.dir / "clean")
    with _step(f"Building features at {prepared.as_of}"):
        feats = build_features_from_tables(prepared.tables, as_of=prepared.as_of, cfg=cfg.project)
    target = out_file or cfg.project.output.dir / f"features_{prepared.as_of}.parquet"
    _write_table(feats, target)
    _wrote(path=target, customers=len(feats), features=feats.shape[1] - 1, as_of=prepared.as_of)
    out.print(f"{len(feats):,} customers x {feats.shape[1] - 1} features -> {target}")


def _write_table(df: Any, path: Path) -> None:
    from crmlab.utils import write_table_atomic

    write_table_atomic(df, path)


# --------------------------------------------------------------------------- train


TunedOpt = Annotated[
    Path | None,
    typer.Option("--tuned", help="Apply a tuned-parameters file (crmlab tune writes outputs/tuning/<pipeline>_best.yaml)."),
]


def _train(pipeline: str, sets: list[str] | None, tuned: Path | None = None) -> Any:
    from crmlab.config import with_overrides

    trainer = pipelines.get(pipeline).load("trainer")
    cfg = _config(sets)
    if tuned is not None:
        from crmlab.tuning import load_overrides

        cfg = with_overrides(cfg, load_overrides(tuned, cfg))
    result = trainer(cfg, step=_step)
    _wrote_training(pipeline, result)
    for line in result.summary():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if getattr(result, "run_id", None):
        out.print(f"MLflow run {result.run_id}: mlflow ui --backend-store-uri {result.tracking_uri}", soft_wrap=True)
    return result


@train_app.command("all", help=f"Train every pipeline in turn ({', '.join(pipelines.training_order())}).")
def train_all(set_: SetOpt = None) -> None:
    from crmlab.errors import NotApplicable

    for pipeline in pipelines.training_order():
        console.rule(f"train {pipeline}")
        try:
            _train(pipeline, set_)
        except NotApplicable as exc:  # the data lack what it needs (cross-sell without a product column)
            state.outputs.setdefault("skipped", {})[pipeline] = str(exc)
            out.print(f"note: {pipeline} skipped: {exc}", markup=False, highlight=False, soft_wrap=True)


def _train_command(record: pipelines.Pipeline) -> None:
    """``crmlab train <pipeline>``, from its record (``--tuned`` where it has a tuner)."""
    if record.tuner is not None:
        def command(set_: SetOpt = None, tuned: TunedOpt = None) -> None:
            _train(record.name, set_, tuned)
    else:
        def command(set_: SetOpt = None) -> None:  # type: ignore[misc]
            _train(record.name, set_)
    command.__name__ = f"train_{record.name}"
    train_app.command(record.name, help=record.summary)(command)


for _record in pipelines.records():
    _train_command(_record)


@segments_app.command("migrate")
def segments_migrate(
    date_from: Annotated[str, _date_option("--from", "Earlier cut-off date YYYY-MM-DD.")],
    date_to: Annotated[str, _date_option("--to", "Later cut-off date YYYY-MM-DD.")],
    set_: SetOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="CSV of the matrix (default: print only).",
                                                  callback=_out_file("migration.csv", *TABLE_SUFFIXES))] = None,
) -> None:
    """How customers moved between segments from one cut-off date to a later one (the model in
    models/segmentation scores both dates)."""
    from crmlab.segmentation.pipeline import migrate_segments

    cfg = _config(set_)
    with _step(f"Scoring segments at {date_from} and {date_to}"):
        result = migrate_segments(cfg, date_from, date_to)
    for line in result.summary():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    out.print(result.matrix.to_string(), markup=False, highlight=False, soft_wrap=True)
    if out_file is not None:
        _write_table(result.matrix.reset_index(), out_file)
        _wrote(path=out_file)
        out.print(f"matrix written to {out_file}")


@lifecycle_app.command("migrate")
def lifecycle_migrate(
    date_from: Annotated[str, _date_option("--from", "Earlier cut-off date YYYY-MM-DD.")],
    date_to: Annotated[str, _date_option("--to", "Later cut-off date YYYY-MM-DD.")],
    set_: SetOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="CSV or Parquet of the transitions, one row per "
                                                  "(from, to): customers, row_share, revenue (default: print only).",
                                                  callback=_out_file("lifecycle_migration.csv", *TABLE_SUFFIXES))
                        ] = None,
) -> None:
    """How customers moved between lifecycle stages from one cut-off date to a later one: counts, row
    shares and the revenue between the dates by stage (rules: lifecycle section, README)."""
    from crmlab.lifecycle import migrate_lifecycle

    cfg = _config(set_)
    with _step(f"Lifecycle stages at {date_from} and {date_to}"):
        result = migrate_lifecycle(cfg, date_from, date_to)
    for line in result.summary():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    for title, frame in (("customers", result.counts()), ("row shares", result.shares().round(3)),
                         ("revenue by stage at --from", result.revenue_by_stage())):
        out.print(f"\n{title}:", markup=False, highlight=False)
        out.print(frame.to_string(), markup=False, highlight=False, soft_wrap=True)
    if out_file is not None:
        _write_table(result.table, out_file)
        _wrote(path=out_file)
        out.print(f"transitions written to {out_file}")


@app.command("forecast")
def forecast(
    set_: SetOpt = None,
    horizon: Annotated[int | None, typer.Option("--horizon", "-h", min=1,
                                                help="Periods ahead (default: forecast.horizon).")] = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="CSV or Parquet (default: <output.dir>/forecast.csv).",
                                                  callback=_out_file("forecast.csv", *TABLE_SUFFIXES))] = None,
) -> None:
    """Forecast the next periods with the exported model (models/forecast): point forecasts and
    80%/95% intervals per series and period, written atomically."""
    from crmlab.forecast.bundle import forecast_bundle

    cfg = _config(set_)
    bundle = cfg.project.output.models_dir / "forecast"
    target = out_file or cfg.project.output.dir / "forecast.csv"
    with _step(f"Forecasting {horizon or cfg.forecast.horizon} periods with {bundle}"):
        table = forecast_bundle(bundle, horizon)
    _write_table(table, target)
    _wrote(path=target, series=int(table["series_id"].nunique()), periods=int(table["step"].max()))
    first, last = table["period"].min(), table["period"].max()
    out.print(f"{table['series_id'].nunique()} series x {table['step'].max()} periods "
              f"({pd_date(first)}..{pd_date(last)}) -> {target}", soft_wrap=True)


def pd_date(value: Any) -> str:
    return str(value)[:10]


@app.command("tune")
def tune(
    pipeline: Annotated[str, typer.Argument(
        help=f"A pipeline that tunes ({', '.join(pipelines.tunable())}).",
        autocompletion=lambda incomplete: _complete(pipelines.tunable(), incomplete))],
    set_: SetOpt = None,
    trials: Annotated[int | None, typer.Option(min=1, help="Trials to add (default: <pipeline>.tuning.trials).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds at most (default: <pipeline>.tuning.timeout).",
                                                  callback=_positive_seconds)] = None,
) -> None:
    """Tune a pipeline with Optuna (seeded TPE, pruning, one MLflow child run per trial). The study is
    stored in SQLite, so a second call resumes it; the best parameters go to a file that
    `crmlab train <pipeline> --tuned FILE` applies."""
    if pipeline not in pipelines.tunable():
        raise CrmlabError(f"pipeline {pipeline!r} has no tuner; tunable: {', '.join(pipelines.tunable()) or 'none yet'}")
    result = pipelines.get(pipeline).load("tuner")(_config(set_), trials=trials, timeout=timeout, step=_step)
    _wrote(**{k: v for k, v in vars(result).items() if not k.startswith("_")})
    for line in result.summary():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.run_id:
        out.print(f"MLflow run {result.run_id}: mlflow ui --backend-store-uri {result.tracking_uri}", soft_wrap=True)


# --------------------------------------------------------------------------- scoring and registry


@app.command("score")
def score(
    set_: SetOpt = None,
    as_of: Annotated[str | None, _date_option("--as-of", "Cut-off date YYYY-MM-DD (default: config).")] = None,
    out_file: Annotated[str | None, typer.Option("--out", help="scores.parquet, scores.csv, or a PostgreSQL table: "
                                                 "'postgresql://user@host:port/db?table=schema.scores'.",
                                                 callback=_scores_out)] = None,
    source: Annotated[Literal["auto", "models", "registry"] | None,
                      typer.Option(help="auto (the registry's champion where there is one, else models/), models "
                                   "(bundles in models/) or registry (champions only); default: config.")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Only these pipelines (repeatable): "
                                                    f"{', '.join(pipelines.customer_models())}.",
                                                    callback=_customer_models)] = None,
    chunk_size: Annotated[int | None, typer.Option(min=1, help="Customers per chunk (default: config).")] = None,
    engine: Annotated[Literal["pandas", "spark"], typer.Option(help="pandas (this process) or spark (scored on "
                                                                    "Spark into a Parquet folder).")] = "pandas",
    clean_dir: Annotated[Path | None, typer.Option("--clean-dir", help="With --engine spark: score the clean tables "
                                                   "of this folder (`crmlab data clean --out`); without it, Spark "
                                                   "reads and cleans the configured sources first (into "
                                                   "<output.dir>/clean_spark).")] = None,
) -> None:
    """Score every customer with every trained customer model: one row per customer, written atomically."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeElapsedColumn

    from crmlab.scoring import write_scores
    from crmlab.workflow import prepare_data

    if engine == "pandas" and isinstance(out_file, Path) and not out_file.suffix:  # a folder is Spark's output
        if out_file.is_dir():
            raise CrmlabError(f"--out {out_file} is a folder; give a file name, e.g. {out_file / 'scores.parquet'} "
                              "(a folder of Parquet files is what --engine spark writes)")
        raise CrmlabError(f"--out {out_file}: write .parquet or .csv (or a folder with --engine spark)")
    cfg = _config(set_)
    if engine == "spark":
        from crmlab.spark import score_on_spark

        target = out_file or cfg.project.output.dir / "scores_spark"
        if clean_dir is None:
            from crmlab.spark_clean import clean_on_spark

            clean_dir = cfg.project.output.dir / "clean_spark"
            with _step("Reading and cleaning on Spark"):
                cleaned = clean_on_spark(cfg, clean_dir)
            for name, t in cleaned["tables"].items():
                if t["rejected_rows"]:
                    out.print(f"{name}: {t['rejected_rows']:,} rows rejected, see {clean_dir / ('rejects_' + name)}",
                              soft_wrap=True)
        database = isinstance(target, str)  # postgresql://...?table=...: Spark writes Parquet, then one COPY
        if database:
            from crmlab.scoring import database_target

            database_target(target)  # a malformed target fails now, not after the Spark job
        folder = cfg.project.output.dir / ".scores_spark_for_database" if database else target
        with _step("Scoring on Spark"):
            summary = score_on_spark(cfg, folder, clean_dir=clean_dir, as_of=as_of, pipelines=model or None,
                                     source=source)
        if database:
            from crmlab.scoring import parquet_frames, write_frames_to_database

            try:
                with _step("Writing the scores into the database"):
                    _, summary["path"] = write_frames_to_database(parquet_frames(folder), target)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        _wrote(**summary)
        models = ", ".join(f"{p} ({m['version']})" for p, m in summary["models"].items())
        out.print(f"{summary['rows']:,} customers scored on Spark at {summary['as_of']} with {models} -> "
                  f"{summary['path']}", soft_wrap=True)
        return
    target = out_file or cfg.project.output.dir / "scores.parquet"
    with _step("Loading and cleaning the data"):
        tables = prepare_data(cfg.project).tables
    with Progress("[progress.description]{task.description}", BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as bar:
        task = bar.add_task("Scoring customers", total=1.0)
        summary = write_scores(cfg, target, as_of=as_of, pipelines=model or None, source=source, tables=tables,
                               chunk_size=chunk_size, progress=lambda done, total: bar.update(task, completed=done,
                                                                                              total=total))
    _wrote(**summary)
    models = ", ".join(f"{p} ({m['version']})" for p, m in summary["models"].items())
    out.print(f"{summary['rows']:,} customers scored at {summary['as_of']} with {models} -> {summary['path']}",
              soft_wrap=True)


@app.command("retrain")
def retrain(
    pipeline: Annotated[str, typer.Argument(help=f"One of: {', '.join(PIPELINES)}.",
                                            autocompletion=lambda incomplete: _complete(PIPELINES, incomplete))],
    set_: SetOpt = None,
    trials: Annotated[int | None, typer.Option(min=0, help="Optuna trials (default: project.retrain.trials).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds of tuning at most.", callback=_positive_seconds)] = None,
) -> None:
    """Check the data, tune, train a challenger, compare it with the champion on the same holdout and
    promote it only if it is better by the configured margin. Exit code 3: the data checks failed."""
    from crmlab.retrain import retrain as run_retrain

    result = run_retrain(_config(set_), pipeline, trials=trials, timeout=timeout, step=_step)
    _wrote(**{k: v for k, v in vars(result).items() if not k.startswith("_")})
    for line in result.summary():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.run_id:
        out.print(f"decision logged in MLflow run {result.run_id}", soft_wrap=True)


@app.command("promote")
def promote(
    pipeline: Annotated[str, typer.Argument(help=f"One of: {', '.join(PIPELINES)}.",
                                            autocompletion=lambda incomplete: _complete(PIPELINES, incomplete))],
    version: Annotated[str, typer.Argument(help="Registered model version to make the champion.")],
    set_: SetOpt = None,
) -> None:
    """Move the registry's 'champion' alias of a pipeline's model to VERSION."""
    from crmlab.registry import promote as do_promote

    cfg = _config(set_)
    info = do_promote(cfg.project.tracking, pipeline, version, reason="promoted by hand (crmlab promote)")
    _wrote(model=info.name, champion_version=str(info.version))
    out.print(f"{info.name} version {info.version} is now the champion")


@app.command("compare")
def compare(
    pipeline: Annotated[str, typer.Argument(help=f"One of: {', '.join(PIPELINES)}.",
                                            autocompletion=lambda incomplete: _complete(PIPELINES, incomplete))],
    set_: SetOpt = None,
    last: Annotated[int, typer.Option(min=1, help="How many recent runs.")] = 10,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="Metrics to show (repeatable).")] = None,
    newest: Annotated[bool, typer.Option("--newest", help="Newest first instead of best first.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Every run, metric and differing parameter as JSON.")
                       ] = False,
) -> None:
    """A leaderboard of the pipeline's recent training runs from MLflow: best first by the primary metric,
    metrics side by side, the parameters that differ between the runs, the champion marked."""
    from crmlab.registry import PARAM_PREFIX, recent_runs

    cfg = _config(set_)
    df = recent_runs(cfg.project.tracking, pipeline, last=last, metrics=metric or None,
                     order="newest" if newest else "metric")  # checks the pipeline's name
    record = pipelines.get(pipeline)
    fixed = ["run_id", "started", "version", "champion"]
    params = [c for c in df.columns if c.startswith(PARAM_PREFIX)]
    metrics = [c for c in df.columns if c not in (*fixed, "status", *params)]
    if as_json:
        def number(v: Any) -> float | None:
            return float(v) if v is not None and v == v else None

        runs = [{"run_id": r["run_id"], "started": r["started"], "status": r["status"], "version": r["version"] or None,
                 "champion": bool(r["champion"]), "metrics": {m: number(r[m]) for m in metrics},
                 "params": {c.removeprefix(PARAM_PREFIX): r[c] if isinstance(r[c], str) else None for c in params}}
                for r in df.to_dict("records")]
        sys.stdout.write(json.dumps({"pipeline": pipeline, "primary_metric": record.primary_metric,
                                     "higher_is_better": record.higher_is_better, "order": "newest" if newest else "metric", "runs": runs}, indent=2) + "\n")
        return
    if df.empty:
        out.print(f"no {pipeline} runs in {cfg.project.tracking.uri} (experiment {cfg.project.tracking.experiment!r})")
        return
    n_metrics, n_params = (len(metric) if metric else 6), 5
    shown = df[fixed + metrics[:n_metrics] + params[:n_params]].copy()
    shown["run_id"] = shown["run_id"].str[:8]
    shown["champion"] = shown["champion"].map({True: "*", False: ""})

    def param(v: Any) -> str:  # numbers as the metrics are shown, long values (lists) cut, missing as -
        if not isinstance(v, str):
            return "-"
        try:
            return f"{float(v):.4g}" if not v.lstrip("-").isdigit() else v
        except ValueError:
            return v if len(v) <= 24 else v[:23] + "…"

    for c in params:
        if c in shown:
            shown[c] = shown[c].map(param)
    shown.columns = [c.removeprefix(PARAM_PREFIX) if c in params and c.removeprefix(PARAM_PREFIX) not in shown.columns
                     else c for c in shown.columns]
    primary, higher = record.primary_metric, record.higher_is_better
    order = "newest first" if newest else f"best {primary} first"
    what = (f"; the parameters that differ: {', '.join(p.removeprefix(PARAM_PREFIX) for p in params[:n_params])}"
            if params else "; no parameter differs" if len(df) > 1 else "")
    out.print(f"{pipeline}: the last {len(df)} runs, {order} ({primary}: {'higher' if higher else 'lower'} is better); "
              f"* = champion{what}", soft_wrap=True, markup=False, highlight=False)
    out.print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"), soft_wrap=True, markup=False,
              highlight=False)
    more = [f"+{len(metrics) - n_metrics} more metrics: --metric NAME to choose"] if len(metrics) > n_metrics else []
    more += [f"+{len(params) - n_params} more differing parameters"] if len(params) > n_params else []
    if more:
        out.print(f"({'; '.join(more)}; --json shows all)", markup=False, highlight=False)


# --------------------------------------------------------------------------- kpis and report


@app.command("kpis")
def kpis(
    set_: SetOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output folder (default: <output.dir>/kpis).",
                                                 callback=_out_dir)] = None,
    period: Annotated[Literal["M", "W", "Q"] | None,
                      typer.Option("--period", help="M (month), W (week) or Q (quarter).")] = None,
    fmt: Annotated[Literal["csv", "parquet"] | None, typer.Option("--format", help="csv or parquet.")] = None,
) -> None:
    """CRM KPIs by period and overall, cohorts, CAC, revenue by segment, funnel; simple vs BG/NBD CLV."""
    from crmlab.kpis import run_kpis

    sets = [*(set_ or []), *([f"kpis.period={period}"] if period else []), *([f"kpis.format={fmt}"] if fmt else [])]
    result = run_kpis(_config(sets), out_dir=out_dir, step=_step)
    _wrote(tables=result.written, run_id=result.run_id, tracking_uri=result.tracking_uri)
    for line in result.summary():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.run_id:
        out.print(f"MLflow run {result.run_id}: mlflow ui --backend-store-uri {result.tracking_uri}", soft_wrap=True)


@app.command("report")
def report(
    set_: SetOpt = None,
    out_file: Annotated[Path | None, typer.Option("--out", help="HTML file (default: <output.dir>/report.html).",
                                                  callback=_out_file("report.html", ".html", ".htm"))] = None,
    period: Annotated[Literal["M", "W", "Q"] | None,
                      typer.Option("--period", help="M (month), W (week) or Q (quarter).")] = None,
) -> None:
    """One self-contained HTML report: KPIs, cohorts, segments, CLV, churn and forecast (when trained)."""
    from crmlab.report import write_report

    sets = [*(set_ or []), *([f"kpis.period={period}"] if period else [])]
    result = write_report(_config(sets), out=out_file, step=_step)
    _wrote(path=result.path, size_bytes=result.size_bytes, charts=len(result.charts), run_id=result.run_id,
           kpi_tables=result.kpis.written)
    for line in [*result.kpis.summary(), *result.summary()]:
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.run_id:
        out.print(f"MLflow run {result.run_id}: mlflow ui --backend-store-uri {result.tracking_uri}", soft_wrap=True)


# --------------------------------------------------------------------------- init


@app.command("init")
def init(
    files: Annotated[list[Path] | None, typer.Argument(
        help="Your transaction log (or an aggregated sales table, or a customer table with a churn label).")] = None,
    customers: Annotated[Path | None, typer.Option("--customers", help="Your customer table (CSV or Parquet).")] = None,
    dir_: Annotated[Path | None, typer.Option("--dir", help="Where to write the configs (default: --config-dir).")
                    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Accept every guess without asking.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite the YAML files of an existing config folder.")
                     ] = False,
) -> None:
    """Start on your own data: guess the column mapping, encoding, separator, time unit and as_of
    from your file(s), derive each pipeline's windows from the data's span, write configs/ (every
    guess with a comment saying why) and print what each pipeline can do with the data."""
    from crmlab.init import PLACEHOLDER, SYNONYMS, guess_table, run_init

    if not files and customers is None:
        raise CrmlabError("crmlab init needs your file(s): crmlab init data/orders.csv [--customers data/customers.csv]")
    target = dir_ or state.config_dir
    overrides: dict[str, dict[str, str]] = {}
    if not yes and sys.stdin.isatty():
        guesses = [guess_table(f) for f in files or []]
        guesses += [guess_table(customers, "customers")] if customers is not None else []
        _print_mapping(guesses)
        if not typer.confirm("Use this mapping?", default=True):
            for g in guesses:
                for canonical in SYNONYMS[g.kind]:
                    current = g.columns.get(canonical, "")
                    answer = typer.prompt(f"{g.kind}.{canonical} (a column of {g.path.name}; Enter keeps it, "
                                          "- leaves it out)", default=current, show_default=True)
                    if answer and answer != current:
                        overrides.setdefault(g.kind, {})[canonical] = answer
    result = run_init(files or [], customers=customers, config_dir=target, force=force, overrides=overrides)
    _print_mapping(result.tables)
    _plain("What your data can support:")
    for v in result.plan.verdicts:
        _plain(f"  {v.pipeline:<13} {v.status:<8} {v.reason}")
    _wrote(config_dir=target, written=list(result.written),
           plan={v.pipeline: {"status": v.status, "reason": v.reason} for v in result.plan.verdicts})
    for path in result.written:
        out.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
    if result.missing:
        raise CrmlabError(f"could not guess {', '.join(result.missing)}: fill the {PLACEHOLDER} placeholder(s) "
                          f"in {target / 'project.yaml'} with your column names, then run `crmlab train all`")
    cdir = "" if target == Path("configs") else f" -c {target}"
    ready = [v.pipeline for v in result.plan.verdicts if v.status != "no"]
    out.print(f"next: crmlab{cdir} train {'all' if len(ready) == 4 else ' / '.join(ready)}, then crmlab{cdir} score",
              markup=False, highlight=False, soft_wrap=True)


def _plain(line: str) -> None:
    out.print(line, markup=False, highlight=False, soft_wrap=True)


def _print_mapping(guesses: list[Any]) -> None:
    _plain("Column mapping (guessed; written to the configs with these reasons):")
    for g in guesses:
        read = g.read
        how = f"{read.get('encoding')}, sep {read.get('sep')!r}" if read.get("format") == "csv" else "parquet"
        _plain(f"  {g.kind}: {g.path} ({how}): {g.kind_reason}")
        for canonical, guess in g.mapping.items():
            column = repr(guess.column) if guess.column else "?"
            _plain(f"    {canonical:<12} <- {column:<16} {guess.reason}")


# --------------------------------------------------------------------------- demo


@app.command("demo")
def demo(set_: SetOpt = None) -> None:
    """The main job on the embedded CDNOW data (or the configured data): clean, build features, track."""
    from crmlab.demo import run_demo

    cfg = _config(set_)
    written = run_demo(cfg, step=_step, out=out)
    for pipeline, result in written.get("results", {}).items():
        _wrote_training(pipeline, result)
    _wrote(features=written.get("features"), run_id=written.get("run_id"), as_of=written.get("as_of"),
           skipped=written.get("skipped"), scores=written.get("scores"),
           report=getattr(written.get("report"), "path", None))


def _click_exception_types() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(ClickException, Exit, Abort, NoArgsIsHelpError) classes of the click that typer runs on:
    typer >= 0.20 bundles its own copy (typer._click), older ones use click itself."""
    import importlib

    exc_types: list[type] = []
    exits: list[type] = [typer.Exit]
    aborts: list[type] = [typer.Abort]
    no_args: list[type] = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        exc_types.append(mod.ClickException)
        if hasattr(mod, "Exit"):
            exits.append(mod.Exit)
        if hasattr(mod, "Abort"):
            aborts.append(mod.Abort)
        if hasattr(mod, "NoArgsIsHelpError"):
            no_args.append(mod.NoArgsIsHelpError)
    return tuple(exc_types), tuple(exits), tuple(aborts), tuple(no_args)


def _option_name(param: Any) -> str:
    """``--customers`` for an option (its longest flag), ``PIPELINE`` for an argument."""
    opts = [o for o in getattr(param, "opts", []) if o.startswith("-")]
    if opts:
        return max(opts, key=len)
    return str(getattr(param, "human_readable_name", None) or getattr(param, "name", "") or "value")


def _first_lower(text: str) -> str:
    return text[:1].lower() + text[1:] if text[:2] != text[:2].upper() else text


def _usage_message(exc: Any) -> str:
    """The one-line text of a usage error: what is wrong, which option or argument, the value."""
    ctx = getattr(exc, "ctx", None)
    param = getattr(exc, "param", None)
    name = type(exc).__name__
    message = " ".join(str(getattr(exc, "message", "") or exc).split())
    if name == "MissingParameter" or (name == "BadParameter" and param is None):
        return _first_lower(" ".join(exc.format_message().split()).rstrip("."))
    if name == "BadParameter":
        text = re.sub(r"^(Value error|Assertion failed), ", "", message).rstrip(".")
        cause = exc.__cause__
        value = None
        if cause is not None and hasattr(cause, "errors"):
            try:
                value = cause.errors()[0].get("input")
            except Exception:  # noqa: BLE001 - the value is a nicety
                value = None
        shown = f" {value!r}" if value is not None and repr(value) not in text and str(value) not in text else ""
        return f"invalid value for {_option_name(param)}{shown}: {_first_lower(text)}"
    if name == "NoSuchOption":
        possible = difflib.get_close_matches(exc.option_name, getattr(exc, "possibilities", None) or [], n=1,
                                             cutoff=0.7)
        hint = f" (did you mean {possible[0]}?)" if possible else ""
        return f"no such option {exc.option_name}{hint}"
    match = re.match(r"No such command '(.*?)'", message)
    if match and ctx is not None:
        typo = match.group(1)
        commands = list(ctx.command.list_commands(ctx))
        near = difflib.get_close_matches(typo, commands, n=1, cutoff=0.6)
        return f"no such command {typo!r}" + (f" (did you mean {near[0]!r}?)" if near else
                                             f"; commands: {', '.join(commands)}")
    if message == "Missing command." and ctx is not None:
        return f"missing a command; one of: {', '.join(ctx.command.list_commands(ctx))}"
    return _first_lower(message.rstrip("."))


def _usage_line(exc: Any) -> str:
    ctx = getattr(exc, "ctx", None)
    command = ctx.command_path if ctx is not None else "crmlab"
    return f"{command}: {_usage_message(exc)}; see '{command} --help'"


#: errors and the interruption line: never quietened by --quiet or --json
err_console = Console(stderr=True)


def _error(text: str) -> None:
    state.error = text
    err_console.print(f"[bold red]error:[/bold red] {escape(text)}", highlight=False, soft_wrap=True)


#: The root's flags that may also be written after the command (``crmlab score --json``).
_HOISTED = ("--json", "--quiet", "-q")
#: The root's options that take a value (skipped when looking for the command's name).
_ROOT_VALUES = frozenset({"--config-dir", "-c", "--set"})


def _root_tokens(args: list[str]) -> list[str]:
    """The arguments before the command's name (the root's own options)."""
    skip = False
    for i, token in enumerate(args):
        if skip:
            skip = False
        elif token.startswith("-"):
            skip = token in _ROOT_VALUES
        else:
            return args[:i]
    return args


def _hoist_root_flags(args: list[str]) -> list[str]:
    """Move ``--json``/``--quiet`` given after the command name in front of it, where the root reads
    them, unless that command has an option of the same name (``config show --json``)."""
    group: Any = _command()
    names: list[str] = []
    skip = False
    end = args.index("--") if "--" in args else len(args)
    for token in args[:end]:
        if skip:
            skip = False
            continue
        if token.startswith("-"):
            skip = not names and token in _ROOT_VALUES
            continue
        commands = getattr(group, "commands", None)
        if not commands or token not in commands:
            if not names:  # a misspelt command: no option of its own, so its --json is the root's
                names.append(token)
                group = None
            break
        group = commands[token]
        names.append(token)
    if not names or names[0] == "config":  # config show has its own --json; the root's means the same there
        return args
    own = {opt for param in getattr(group, "params", []) for opt in getattr(param, "opts", [])}
    first = args.index(names[0])
    moved = [a for i, a in enumerate(args[:end]) if i > first and a in _HOISTED and a not in own]
    if not moved:
        return args
    rest = [a for i, a in enumerate(args) if not (first < i < end and a in _HOISTED and a not in own)]
    return [*rest[:first], *moved, *rest[first:]]


#: OSErrors without a file name that are the machine's state, not a bug: said in one line too.
_ENVIRONMENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS})


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush into a closed pipe is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Console entry point. A user's mistake (a bad option, a misspelt command, a bad config or
    file) is one line on stderr and exit code 2; ``crmlab`` alone prints the help, exit code 0.
    Under ``--json`` stdout holds one JSON document whatever happened (:func:`_print_json`)."""
    global out
    given = list(sys.argv[1:] if argv is None else argv)
    args = _hoist_root_flags(given)
    state.quiet = False
    # set before parsing, so that a usage error the root never sees still gets its JSON document
    state.json = "--json" in _root_tokens(args) and "config" not in args
    state.config_json = False
    state.outputs, state.captured, state.error, state.command = {}, None, None, given
    human, quiet_console = out, console.quiet
    code = 1
    try:
        code = _main(args)
    finally:
        json_mode = state.json
        out, console.quiet = human, quiet_console
        if json_mode:
            _print_json(code, state.error)
    return code


def _main(argv: list[str]) -> int:
    click_errors, exits, aborts, no_args = _click_exception_types()
    stopped = _utils.STOP_SIGNALS
    stopped.clear()
    previous = _on_stop_signals(stopped)
    try:
        code = _command().main(args=argv, prog_name="crmlab", standalone_mode=False)
        # typer turns Ctrl-C (and our SIGTERM) into Exit(130) and returns its code; a signal whose
        # KeyboardInterrupt was swallowed (raised inside a finaliser) still ends the run as interrupted
        if code == 130 or stopped:
            return _interrupted(stopped)
    except CrmlabError as exc:
        _error(" ".join(str(exc).split()))
        return exc.exit_code
    except exits as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except aborts:
        err_console.print("aborted")
        return 130
    except KeyboardInterrupt:
        return _interrupted(stopped)
    except OSError as exc:  # a path the user gave (or its folder) cannot be read or written
        if exc.errno == errno.EPIPE:  # `crmlab ... | head`: the reader left, nothing to say
            _silence_stdout()
            return 1
        if exc.filename is None and exc.errno not in _ENVIRONMENT_ERRNOS:
            raise
        log.debug("the error in full", exc_info=True)
        if exc.filename is None:
            _error(f"cannot write the output: {exc.strerror or exc}")
            return 1
        target = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        _error(f"{target}: {exc.strerror or exc}")
        return 2
    except click_errors as exc:
        if no_args and isinstance(exc, no_args):  # a group without its command: its help, not an error
            text = exc.format_message()
            if text.strip():
                out.print(text, markup=False, highlight=False)
            return 0
        if not hasattr(exc, "ctx"):  # a click exception that is not a usage error (e.g. FileError)
            _error(" ".join(exc.format_message().split()))
            return 2
        _error(_usage_line(exc))
        return 2
    finally:
        _utils.remove_leftover_temps()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _on_stop_signals(stopped: list[int]) -> dict[int, Any]:
    """Make Ctrl-C and SIGTERM (a scheduler stopping the job, ``kill``) stop the command so that files
    being written are removed and the previous ones kept. Each signal is recorded in ``stopped`` as well
    as raised: a KeyboardInterrupt raised inside a finaliser is swallowed by Python, and the record
    stops the run at its next output instead (:func:`crmlab.utils.raise_if_stopped`). A second signal
    within a second of the first is ignored, so that the first one's cleanup (removing a half-written
    file) is not itself interrupted. Returns the handlers to restore (none off the main thread, where
    handlers cannot be set; SIGINT is left alone when the process was started ignoring it, as a shell
    does for a background job)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    first: list[float] = []

    def handler(signum: int, frame: Any) -> None:
        stopped.append(signum)
        now = time.monotonic()
        if first and now - first[0] < 1.0:
            return
        first[:] = [now]
        raise KeyboardInterrupt

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is signal.SIG_IGN:
            continue
        previous[signum] = signal.signal(signum, handler)
    return previous


def _interrupted(stopped: list[int]) -> int:
    """One line for an interrupted command; 130 for Ctrl-C, 143 for SIGTERM (the shells' convention)."""
    term = signal.SIGTERM in stopped
    how = "terminated (SIGTERM)" if term else "interrupted (Ctrl-C)"
    _error(f"{how}: the command stopped; outputs are written whole or not at all, so the previous files are kept")
    return 143 if term else 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
