"""How the command line feels: quiet, machine-readable, informative while it works, help that reads
well, shell completion, and no other library's warnings on stderr (issue 20)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from crmlab.cli import _command, _hoist_root_flags, main
from crmlab.tuning import tuning_progress

from .conftest import REPO

CLI = [sys.executable, "-m", "crmlab"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CRMLAB_"))}
    env.update({"COLUMNS": "100", "PYTHONWARNINGS": "", **extra})
    return env


# --------------------------------------------------------------------------- --json and --quiet


@pytest.mark.parametrize(("given", "expected"), [
    (["score", "--json"], ["--json", "score"]),
    (["-c", "cfg", "train", "churn", "-q", "--set", "a=1"], ["-c", "cfg", "-q", "train", "churn", "--set", "a=1"]),
    (["--json", "kpis"], ["--json", "kpis"]),
    # config show has its own --json: left where it is
    (["config", "show", "clv", "--json"], ["config", "show", "clv", "--json"]),
    (["config", "schema", "--json"], ["config", "schema", "--json"]),
    # after --, an argument, not a flag
    (["features", "build", "--", "--json"], ["features", "build", "--", "--json"]),
    # a misspelt command has no options: its flags are the root's, so its error comes as JSON too
    (["nosuch", "--json"], ["--json", "nosuch"]),
    (["--set", "a=1", "nosuch", "-q", "x"], ["--set", "a=1", "-q", "nosuch", "x"]),
])
def test_root_flags_may_follow_the_command(given, expected):
    assert _hoist_root_flags(given) == expected


def test_json_document_on_a_usage_error(capsys):
    code = main(["features", "build", "--as-of", "1998-13-01", "--json"])
    captured = capsys.readouterr()
    doc = json.loads(captured.out)  # stdout is exactly one JSON document
    assert code == 2 and doc["exit_code"] == 2 and doc["ok"] is False
    assert "--as-of" in doc["error"] and "1998-13-01" in doc["error"]
    assert "error:" in captured.err  # the human line still reaches stderr


@pytest.mark.parametrize("args", [["nosuch", "--json"], ["data", "nosuch", "--json"]])
def test_json_document_for_a_misspelt_command(capsys, args):
    code = main(args)
    doc = json.loads(capsys.readouterr().out)
    assert code == 2 and doc["exit_code"] == 2 and "no such command 'nosuch'" in doc["error"]


def test_json_and_quiet_on_a_real_command(tmp_path, capsys, monkeypatch):
    from crmlab.data import io

    monkeypatch.setattr(io, "_demo_announced", False)  # the demo data's warning is said once per process
    sets = ["--set", f"project.output.dir={tmp_path / 'out'}", "--set", "project.tracking.enabled=false"]
    target = tmp_path / "f.parquet"
    code = main(["-c", str(REPO / "configs"), *sets, "features", "build", "--out", str(target), "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    doc = json.loads(captured.out)
    feats = pd.read_parquet(target)
    assert doc["ok"] is True and doc["outputs"]["path"] == str(target)
    assert doc["outputs"]["customers"] == len(feats) == 23_570
    assert doc["outputs"]["as_of"] == "1998-06-30"
    assert any("23,570 customers" in line for line in doc["summary"])
    assert "✓" not in captured.err  # no step lines under --json ...
    assert "no data configured" in captured.err  # ... but warnings still reach stderr

    code = main(["-c", str(REPO / "configs"), *sets, "-q", "features", "build", "--out", str(target)])
    captured = capsys.readouterr()
    assert code == 0 and captured.out == "" and captured.err == ""
    # and the human output comes back on the next call in the same process
    code = main(["-c", str(REPO / "configs"), *sets, "features", "build", "--out", str(target)])
    captured = capsys.readouterr()
    assert code == 0 and "23,570 customers x" in captured.out and "✓ Building features" in captured.err


# --------------------------------------------------------------------------- progress of a study


def test_tuning_progress_line():
    history = [{"trial": 0, "state": "COMPLETE", "auc": 0.80}, {"trial": 1, "state": "PRUNED", "auc": np.nan},
               {"trial": 2, "state": "COMPLETE", "auc": 0.81}]
    assert tuning_progress(0, 40, [], "auc", "maximize", 0.0, None, now=1.0) == "trial 1/40, 1s elapsed"
    # 3 trials in 12 s: 4 s each, 37 to go
    assert tuning_progress(3, 40, history, "auc", "maximize", 0.0, None, now=12.0) == (
        "trial 4/40 (3 done, 1 pruned), best auc 0.81 (trial 2), 12s elapsed, ~148s left")
    # minimising, and a timeout that ends the study before the trials do
    assert tuning_progress(3, 40, history, "auc", "minimize", 0.0, 30.0, now=12.0) == (
        "trial 4/40 (3 done, 1 pruned), best auc 0.8 (trial 0), 12s elapsed, ~18s left")


def test_progress_reaches_the_step_line():
    from crmlab.utils import progress, progress_to

    seen: list[str] = []
    with progress_to(seen.append):
        progress("trial 1/3")
        with progress_to(lambda text: seen.append("inner " + text)):
            progress("k=4")
        progress("trial 2/3")
    progress("nowhere")  # outside a step: a DEBUG log line only
    assert seen == ["trial 1/3", "inner k=4", "trial 2/3"]


# --------------------------------------------------------------------------- help and completion


def _help(*args: str) -> str:
    out = subprocess.run([*CLI, *args, "--help"], capture_output=True, text=True, env=_env(), check=True).stdout
    return out


def _all_commands(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from _all_commands(command, (*prefix, name))


def test_help_reads_well():
    root = _help()
    listed = re.findall(r"^│ (\w+) {2,}", root.split("Commands")[1], flags=re.M)
    # the commands in the order of the work: start, train, compare, score, report, retrain
    assert listed[:5] == ["init", "demo", "data", "features", "train"]
    assert listed.index("train") < listed.index("tune") < listed.index("score") < listed.index("report")
    for args in [(), *_all_commands(_command())]:
        text = _help(*args) if args != () else root
        assert "<bool>" not in text, args  # a flag takes no value
        assert "<str>" not in text and "<list[str]>" not in text, args
    # a command's line in the list is its first paragraph on one line, not cut where the docstring broke
    for name, command in _command().commands.items():
        assert "\n" not in (command.short_help or ""), name
    assert "init       Start on your own data: guess the column mapping, encoding, separator, time unit and" in root
    assert "as_of from your file(s)" in root  # the docstring's line break no longer breaks the list
    score = _help("score")
    assert re.search(r"--as-of\s+DATE", score) and re.search(r"--source\s+auto\|models\|registry", score)


def test_shell_completion():
    def complete(words: str, cword: int) -> list[str]:
        env = _env(_CRMLAB_COMPLETE="complete_bash", COMP_WORDS=words, COMP_CWORD=str(cword))
        return subprocess.run(CLI, capture_output=True, text=True, env=env, check=True).stdout.split()

    assert complete("crmlab tr", 1) == ["train"]
    assert set(complete("crmlab train c", 2)) == {"churn", "clv", "crosssell"}
    assert complete("crmlab tune ", 2) == ["churn", "forecast"]
    assert complete("crmlab score --so", 2) == ["--source"]
    script = subprocess.run([*CLI, "--show-completion", "bash"], capture_output=True, text=True, env=_env(),
                            check=True).stdout
    assert "_CRMLAB_COMPLETE=complete_bash" in script and "complete " in script


# --------------------------------------------------------------------------- signatures without warnings


def test_signature_declares_integers_without_mlflows_hint():
    from crmlab.pyfunc import signature_of

    frame = pd.DataFrame({"customer_id": ["a", "b"], "n": np.array([1, 2], dtype="int64"),
                          "seg": np.array([0, 1], dtype="int32"), "x": [1.0, np.nan],
                          "maybe": pd.array([1, None], dtype="Int64")})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # MLflow's "integer column(s)" hint would fail here
        sig = signature_of(frame, frame[["customer_id", "seg"]])
    types = {spec.name: spec.type.name for spec in sig.inputs.inputs}
    # numpy integers cannot be missing: integers; pandas' nullable Int64 can: a double
    assert types == {"customer_id": "string", "n": "long", "seg": "integer", "x": "double", "maybe": "double"}
    assert [spec.type.name for spec in sig.outputs.inputs] == ["string", "integer"]


# --------------------------------------------------------------------------- the demo, as a newcomer sees it

#: What another library prints on stderr: Python warnings (with their source line), MLflow's messages and
#: its tqdm progress bars, and tracebacks.
_FOREIGN = re.compile(r"Warning\b|warnings\.warn|color_warning|site-packages|Downloading artifacts|"
                      r"Successfully registered|Created version|Traceback|it/s\]")


@pytest.mark.slow
def test_demo_prints_no_third_party_warning(tmp_path):
    """A fresh process runs `crmlab demo` as a newcomer would (no warning filters of the test runner):
    every stderr line is crmlab's own; then `crmlab score --json` tells a scheduler what it wrote."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    run = subprocess.run([*CLI, "-c", str(REPO / "configs"), "demo"], cwd=cwd, capture_output=True, text=True,
                         env=_env(), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    foreign = [line for line in run.stderr.splitlines() if _FOREIGN.search(line)]
    assert not foreign, "\n".join(foreign[:10])
    assert "✓ Drawing the charts and writing the report" in run.stderr  # crmlab's own lines are there
    assert "scores:" in run.stdout and "report:" in run.stdout

    run = subprocess.run([*CLI, "-c", str(REPO / "configs"), "score", "--json"], cwd=cwd, capture_output=True,
                         text=True, env=_env(), timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads(run.stdout)
    assert doc["ok"] is True and doc["outputs"]["rows"] == 23_570
    assert pd.read_parquet(cwd / doc["outputs"]["path"])["customer_id"].is_unique
    assert set(doc["outputs"]["models"]) >= {"clv", "churn", "segmentation"}
    assert not [line for line in run.stderr.splitlines() if _FOREIGN.search(line)]
