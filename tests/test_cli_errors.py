"""Command-line mistakes: each is one line on stderr that names the option, key or file (and the bad
value), exit code 2, never a traceback. ``crmlab`` alone prints the help and ``--version`` the
version, both exit code 0.

The table runs through :func:`crmlab.cli.main` (the console entry's function) in-process, which is
fast; the cases of issue 14 run again through ``python -m crmlab`` in a subprocess to prove the real
entry point.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crmlab import __version__
from crmlab.cli import main
from crmlab.export import write_bundle

from .conftest import reseal_bundle

#: Files every case can refer to (paths relative to the test's working directory, a tmp dir).
WORKSPACE: dict[str, bytes | None] = {
    "configs/": None,  # an (empty) config folder, so that 'confgs' has a near existing folder
    "adir/": None,
    "afile.txt": b"not a folder\n",
    "c_latin1/project.yaml": "name: caf\u00e9\n".encode("latin-1"),
    "c_utf16/project.yaml": "as_of: 2024-01-01\n".encode("utf-16"),
    "c_binary/project.yaml": b"as_of: 2024-01-01\n\x00\x01\x02\x03",
    "c_unclosed/churn.yaml": b"horizon_days: [1, 2\n",
    "c_tabs/project.yaml": b"tracking:\n\turi: x\n",
    "c_list/project.yaml": b"- as_of\n- 2024-01-01\n",
    "c_scalar/clv.yaml": b"just some text\n",
    "c_baddate/project.yaml": b"as_of: 2024-13-01\n",
    "c_feb30/clv.yaml": b"calibration_end: 2023-02-30\n",
    "c_dupkey/clv.yaml": b"penalizer: 0.1\nhorizon_months: 6\npenalizer: 0.2\n",
    "c_pyobj/churn.yaml": b"horizon_days: !!python/object/apply:os.system ['true']\n",
    "c_badint/kpis.yaml": b"top_customers: !!int ten\n",
    "c_intkey/clv.yaml": b"1: 2\n",
    "c_typo_key/churn.yaml": b"horizon_dayz: 30\n",
    "c_bad_value/project.yaml": b"time_unit: Y\n",
    "c_nested_typo/project.yaml": b"tracking:\n  urii: sqlite:///x.db\n",
    "c_section_folder/project.yaml/": None,
    "c_misnamed/chrun.yaml": b"horizon_days: 30\n",
    "c_both/clv.yaml": b"penalizer: 0.1\n",
    "c_both/clv.yml": b"penalizer: 0.2\n",
    "tuned_latin1.yaml": "churn: {lightgbm: {num_leaves: 7}}  # caf\u00e9\n".encode("latin-1"),
    "tuned_bad.yaml": b"churn: {lightgbm: {num_leaves: 7}\n",
    "tuned_typo.yaml": b"churn: {lightgbm_: {num_leaves: 7}}\n",
}


def _forecast_bundle(root: Path, name: str, *, params_text: str | None = None, manifest_text: str | None = None
                     ) -> None:
    """A bundle in ``root/<name>/forecast`` edited by hand: ``params.json`` or ``manifest.json`` replaced,
    its checksums updated to match, so only the content can give it away."""
    path = write_bundle(root / name / "forecast", pipeline="forecast", params={"season_length": 52},
                        manifest={"features": []}, arrays={"x": np.zeros(2)})
    if params_text is not None:
        (path / "params.json").write_text(params_text, encoding="utf-8")
    if manifest_text is not None:
        (path / "manifest.json").write_text(manifest_text, encoding="utf-8")
    reseal_bundle(path)  # checksums updated to match: only the content can give the edit away


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The test's working directory (see conftest: every test runs in its tmp dir), with WORKSPACE."""
    for rel, content in WORKSPACE.items():
        target = tmp_path / rel
        if content is None:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
    _forecast_bundle(tmp_path, "m_params", params_text='{"season_length": 52,')
    _forecast_bundle(tmp_path, "m_list", params_text="[52]")
    _forecast_bundle(tmp_path, "m_manifest", manifest_text="{not json")
    return tmp_path


MIGRATE = ["segments", "migrate", "--from", "2024-01-01", "--to", "2024-06-30"]
SHOW = ["config", "show", "project"]

#: (case id, arguments, fragments the one line on stderr must hold). Every case exits with code 2.
CASES: list[tuple[str, list[str], list[str]]] = [
    # commands and options that do not exist
    ("misspelt command", ["trian"], ["no such command 'trian'", "did you mean 'train'?", "crmlab --help"]),
    ("misspelt subcommand data", ["data", "clena"], ["crmlab data", "no such command 'clena'", "'clean'"]),
    ("misspelt subcommand train", ["train", "chrun"], ["crmlab train", "did you mean 'churn'?"]),
    ("misspelt subcommand features", ["features", "biuld"], ["did you mean 'build'?"]),
    ("misspelt subcommand segments", ["segments", "migrat"], ["did you mean 'migrate'?"]),
    ("misspelt subcommand config", ["config", "shwo"], ["did you mean 'show'?"]),
    ("far-off command lists them", ["zzz"], ["no such command 'zzz'", "commands:", "train"]),
    ("unknown option", ["score", "--bogus"], ["crmlab score", "no such option --bogus"]),
    ("misspelt option", ["score", "--as_of", "2024-01-01"], ["no such option --as_of", "did you mean --as-of?"]),
    ("unknown option of demo", ["demo", "--bogus"], ["crmlab demo", "--bogus"]),
    ("unknown option of config schema", ["config", "schema", "--json"], ["no such option --json"]),
    ("unknown root option", ["--bogus", "demo"], ["no such option --bogus"]),
    ("options but no command", ["-v"], ["missing a command", "train"]),
    ("option without its value", ["score", "--as-of"], ["--as-of", "requires an argument"]),
    ("--set without its value", ["--set"], ["--set", "requires an argument"]),
    ("--tuned without its value", ["train", "churn", "--tuned"], ["--tuned", "requires an argument"]),
    # missing or extra arguments, every command that takes one
    ("config show without pipeline", ["config", "show"], ["crmlab config show", "missing argument", "pipeline"]),
    ("config show extra argument", ["config", "show", "clv", "extra"], ["unexpected extra argument", "extra"]),
    ("tune without pipeline", ["tune"], ["crmlab tune", "missing argument", "pipeline"]),
    ("retrain without pipeline", ["retrain"], ["crmlab retrain", "missing argument", "pipeline"]),
    ("promote without pipeline", ["promote"], ["crmlab promote", "missing argument", "pipeline"]),
    ("promote without version", ["promote", "clv"], ["crmlab promote", "missing argument", "version"]),
    ("compare without pipeline", ["compare"], ["crmlab compare", "missing argument", "pipeline"]),
    ("migrate without --from", ["segments", "migrate", "--to", "2024-06-30"], ["missing option", "--from"]),
    ("migrate without --to", ["segments", "migrate", "--from", "2024-01-01"], ["missing option", "--to"]),
    ("unknown pipeline: config show", ["config", "show", "nope"], ["unknown pipeline 'nope'", "clv"]),
    ("unknown pipeline: tune", ["tune", "nope"], ["'nope'", "tunable: churn, forecast"]),
    ("unknown pipeline: retrain", ["retrain", "nope"], ["unknown pipeline 'nope'"]),
    ("unknown pipeline: compare", ["compare", "nope"], ["unknown pipeline 'nope'"]),
    ("unknown pipeline: promote", ["promote", "nope", "1"], ["unknown pipeline 'nope'"]),
    # dates: every date option, named with its bad value
    ("impossible --as-of", ["score", "--as-of", "1998-13-45"], ["--as-of", "'1998-13-45'", "month must be in 1..12"]),
    ("--as-of not a date", ["score", "--as-of", "tomorrow"], ["--as-of", "'tomorrow'", "YYYY-MM-DD"]),
    ("--as-of of features build", ["features", "build", "--as-of", "2024-02-30"], ["--as-of", "'2024-02-30'"]),
    ("--as-of day first", ["features", "build", "--as-of", "31/12/2024"], ["--as-of", "'31/12/2024'"]),
    ("--from not a date", ["segments", "migrate", "--from", "2024-1-1", "--to", "2024-06-30"], ["--from", "'2024-1-1'"]),
    ("--to not a date", ["segments", "migrate", "--from", "2024-01-01", "--to", "June"], ["--to", "'June'"]),
    ("lifecycle --from impossible", ["lifecycle", "migrate", "--from", "2024-02-30", "--to", "2024-06-30"],
     ["crmlab lifecycle migrate", "--from", "'2024-02-30'", "day is out of range"]),
    ("lifecycle --to not a date", ["lifecycle", "migrate", "--from", "2024-01-01", "--to", "June"], ["--to", "'June'"]),
    ("lifecycle migrate without --to", ["lifecycle", "migrate", "--from", "2024-01-01"], ["missing option", "--to"]),
    ("misspelt subcommand lifecycle", ["lifecycle", "migrat"], ["did you mean 'migrate'?"]),
    ("lifecycle migrate --out Excel", ["lifecycle", "migrate", "--from", "2024-01-01", "--to", "2024-06-30", "--out",
                                      "m.xlsx"], ["--out", "m.xlsx", ".csv"]),
    # numbers and choices
    ("too few synthetic customers", ["data", "synth", "--customers", "5"], ["--customers", "'5'", "10"]),
    ("customers not a number", ["data", "synth", "--customers", "many"], ["--customers", "'many'", "integer"]),
    ("seed not an integer", ["data", "synth", "--seed", "1.5"], ["--seed", "'1.5'"]),
    ("unknown --source", ["score", "--source", "foo"], ["--source", "'foo'", "'auto', 'models', 'registry'"]),
    ("unknown --model", ["score", "--model", "chrun"], ["--model", "'chrun'", "did you mean 'churn'?"]),
    ("--chunk-size zero", ["score", "--chunk-size", "0"], ["--chunk-size", "'0'"]),
    ("--horizon zero", ["forecast", "--horizon", "0"], ["--horizon", "'0'"]),
    ("--horizon not a number", ["forecast", "--horizon", "soon"], ["--horizon", "'soon'"]),
    ("--trials zero for tune", ["tune", "churn", "--trials", "0"], ["--trials", "'0'"]),
    ("--timeout negative for tune", ["tune", "churn", "--timeout", "-5"], ["--timeout", "-5", "positive"]),
    ("--trials negative for retrain", ["retrain", "clv", "--trials", "-1"], ["--trials", "'-1'"]),
    ("--timeout zero for retrain", ["retrain", "clv", "--timeout", "0"], ["--timeout", "positive"]),
    ("--last zero", ["compare", "clv", "--last", "0"], ["--last", "'0'"]),
    ("unknown --period of kpis", ["kpis", "--period", "Y"], ["--period", "'Y'", "'M', 'W', 'Q'"]),
    ("unknown --period of report", ["report", "--period", "day"], ["--period", "'day'"]),
    ("unknown --format of kpis", ["kpis", "--format", "xlsx"], ["--format", "'xlsx'", "csv"]),
    # output paths: a folder where a file is expected, a file where a folder is, a wrong format
    ("score --out a folder", ["score", "--out", "adir"], ["--out", "adir is a folder", "scores.parquet"]),
    ("score --out wrong format", ["score", "--out", "scores.txt"], ["--out", "scores.txt", ".parquet or .csv"]),
    ("score --out under a file", ["score", "--out", "afile.txt/s.csv"], ["--out", "afile.txt is a file"]),
    ("features --out Excel", ["features", "build", "--out", "f.xlsx"], ["--out", "f.xlsx", ".parquet or .pq or .csv"]),
    ("forecast --out text", ["forecast", "--out", "f.txt"], ["--out", "f.txt", ".csv"]),
    ("migrate --out Excel", [*MIGRATE, "--out", "m.xlsx"], ["--out", "m.xlsx", ".csv"]),
    ("report --out PDF", ["report", "--out", "r.pdf"], ["--out", "r.pdf", ".html"]),
    ("features --out a folder", ["features", "build", "--out", "adir"], ["--out", "adir is a folder"]),
    ("forecast --out a folder", ["forecast", "--out", "adir"], ["--out", "adir is a folder"]),
    ("report --out a folder", ["report", "--out", "adir"], ["--out", "adir is a folder"]),
    ("migrate --out a folder", [*MIGRATE, "--out", "adir"], ["--out", "adir is a folder"]),
    ("data clean --out a file", ["data", "clean", "--out", "afile.txt"], ["--out", "afile.txt is a file"]),
    ("data synth --out a file", ["data", "synth", "--out", "afile.txt"], ["--out", "afile.txt is a file"]),
    ("kpis --out under a file", ["kpis", "--out", "afile.txt/k"], ["--out", "afile.txt is a file"]),
    # --set: keys and values
    ("impossible date in --set", ["--set", "project.as_of=2024-13-01", *SHOW], ["project.as_of", "'2024-13-01'"]),
    ("Feb 30 in --set", ["--set", "clv.calibration_end=2023-02-30", *SHOW], ["clv.calibration_end", "2023-02-30"]),
    ("--set of a misspelt section", ["--set", "projct.as_of=2024-01-01", *SHOW], ["projct", "did you mean 'project'"]),
    ("--set of a misspelt key", ["--set", "clv.penaliser=0.1", *SHOW], ["clv.penaliser", "did you mean 'penalizer'"]),
    ("--set of a nested misspelt key", ["--set", "project.tracking.urii=x", *SHOW], ["project.tracking.urii", "'uri'"]),
    ("--set without =", ["--set", "clv.penalizer", *SHOW], ["--set", "'clv.penalizer'", "KEY=VALUE"]),
    ("--set with an empty key", ["--set", "=3", *SHOW], ["--set", "KEY=VALUE"]),
    ("--set of text for a number", ["--set", "clv.penalizer=abc", *SHOW], ["clv.penalizer", "'abc'"]),
    ("--set of broken YAML", ["--set", "project.features.windows=[1,", *SHOW], ["project.features.windows", "[1,"]),
    ("--set of a negative horizon", ["--set", "churn.horizon_days=-3", *SHOW], ["churn.horizon_days", "-3"]),
    ("--set of a bad choice", ["--set", "project.time_unit=Y", *SHOW], ["project.time_unit", "'Y'"]),
    ("--set of a section to a number", ["--set", "clv=3", *SHOW], ["clv", "3"]),
    ("--set after the command", ["config", "show", "clv", "--set", "clv.margin=2"], ["clv.margin", "2"]),
    # config folders
    ("misspelt --config-dir", ["--config-dir", "confgs", *SHOW], ["'confgs' does not exist", "did you mean 'configs'"]),
    ("missing --config-dir", ["-c", "nowhere", *SHOW], ["'nowhere' does not exist"]),
    ("--config-dir is a file", ["-c", "afile.txt", *SHOW], ["afile.txt", "expected a folder"]),
    # config files that cannot be read
    ("latin-1 project.yaml", ["-c", "c_latin1", *SHOW], ["c_latin1/project.yaml", "not UTF-8", "0xe9"]),
    ("UTF-16 project.yaml", ["-c", "c_utf16", *SHOW], ["c_utf16/project.yaml", "not UTF-8"]),
    ("binary project.yaml", ["-c", "c_binary", *SHOW], ["c_binary/project.yaml", "binary"]),
    ("unclosed list in YAML", ["-c", "c_unclosed", *SHOW], ["c_unclosed/churn.yaml", "not valid YAML", "line 2"]),
    ("tab-indented YAML", ["-c", "c_tabs", *SHOW], ["c_tabs/project.yaml", "not valid YAML", "line 2"]),
    ("YAML list at the top", ["-c", "c_list", *SHOW], ["c_list/project.yaml", "expected a mapping", "list"]),
    ("YAML text at the top", ["-c", "c_scalar", *SHOW], ["c_scalar/clv.yaml", "expected a mapping", "str"]),
    ("impossible date in YAML", ["-c", "c_baddate", *SHOW], ["c_baddate/project.yaml", "project.as_of", "2024-13-01"]),
    ("Feb 30 in YAML", ["-c", "c_feb30", *SHOW], ["c_feb30/clv.yaml", "clv.calibration_end", "2023-02-30"]),
    ("key given twice in YAML", ["-c", "c_dupkey", *SHOW], ["c_dupkey/clv.yaml", "'penalizer' is given twice"]),
    ("python object tag in YAML", ["-c", "c_pyobj", *SHOW], ["c_pyobj/churn.yaml", "not valid YAML"]),
    ("bad int tag in YAML", ["-c", "c_badint", *SHOW], ["c_badint/kpis.yaml", "not valid YAML"]),
    ("number as a key", ["-c", "c_intkey", *SHOW], ["c_intkey/clv.yaml", "key 1"]),
    ("misspelt key in YAML", ["-c", "c_typo_key", *SHOW], ["c_typo_key/churn.yaml", "horizon_dayz", "'horizon_days'"]),
    ("bad value in YAML", ["-c", "c_bad_value", *SHOW], ["c_bad_value/project.yaml", "project.time_unit", "'Y'"]),
    ("nested misspelt key in YAML", ["-c", "c_nested_typo", *SHOW], ["project.yaml", "project.tracking.urii"]),
    ("section file is a folder", ["-c", "c_section_folder", *SHOW], ["c_section_folder/project.yaml", "folder"]),
    ("misnamed section file", ["-c", "c_misnamed", *SHOW], ["c_misnamed/chrun.yaml", "did you mean churn.yaml"]),
    ("both clv.yaml and clv.yml", ["-c", "c_both", *SHOW], ["clv.yaml", "clv.yml", "keep one"]),
    # tuned-parameters files
    ("--tuned missing", ["train", "churn", "--tuned", "nofile.yaml"], ["nofile.yaml", "tuned-parameters file"]),
    ("--tuned a folder", ["train", "churn", "--tuned", "adir"], ["adir", "is a folder", "tuned-parameters file"]),
    ("--tuned latin-1", ["train", "churn", "--tuned", "tuned_latin1.yaml"], ["tuned_latin1.yaml", "not UTF-8"]),
    ("--tuned broken YAML", ["train", "churn", "--tuned", "tuned_bad.yaml"], ["tuned_bad.yaml", "not valid YAML"]),
    ("--tuned misspelt key", ["train", "forecast", "--tuned", "tuned_typo.yaml"], ["tuned_typo.yaml", "lightgbm_"]),
    # model bundles edited by hand, checksums updated
    ("bundle params.json not JSON", ["--set", "project.output.models_dir=m_params", "forecast"],
     ["m_params/forecast/params.json", "not valid JSON"]),
    ("bundle params.json a list", ["--set", "project.output.models_dir=m_list", "forecast"],
     ["m_list/forecast/params.json", "expected a JSON object"]),
    ("bundle manifest not JSON", ["--set", "project.output.models_dir=m_manifest", "forecast"],
     ["m_manifest/forecast/manifest.json", "not valid JSON"]),
    # the MLflow store (project.tracking.uri) of the registry commands
    ("unknown tracking URI scheme", ["--set", "project.tracking.uri=bogus://x", "compare", "clv"],
     ["cannot open the MLflow tracking store 'bogus://x'"]),
    ("tracking store not a database", ["--set", "project.tracking.uri=sqlite:///afile.txt", "promote", "clv", "1"],
     ["'sqlite:///afile.txt'", "not a database"]),
    ("no bundle at all", ["--set", "project.output.models_dir=adir", "forecast"], ["adir/forecast", "train"]),
]


def _check_one_line(code: int, out: str, err: str, fragments: list[str], expected_code: int = 2) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected_code, err
    assert "Traceback" not in err and "Traceback" not in out
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


@pytest.mark.parametrize(("argv", "fragments"), [pytest.param(a, f, id=i) for i, a, f in CASES])
def test_mistake_is_one_line_exit_2(workspace, capsys, argv, fragments):
    code = main(argv)
    captured = capsys.readouterr()
    _check_one_line(code, captured.out, captured.err, fragments)


def test_case_ids_are_unique():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids))


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crmlab", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


#: The mistakes named in issue 14 (items 6 and 9) and issue 15 (item 5), through the real entry point.
ISSUE_CASES = [case for case in CASES if case[0] in {
    "misspelt command", "unknown option", "impossible --as-of", "impossible date in --set", "latin-1 project.yaml",
    "binary project.yaml", "unclosed list in YAML", "bundle params.json not JSON", "too few synthetic customers",
    "unknown --source", "misspelt --config-dir",
}]


@pytest.mark.parametrize(("argv", "fragments"), [pytest.param(a, f, id=i) for i, a, f in ISSUE_CASES])
def test_mistake_through_the_console_entry(workspace, argv, fragments):
    proc = _run(argv, workspace)
    _check_one_line(proc.returncode, proc.stdout, proc.stderr, fragments)


def test_issue_cases_are_all_in_the_table():
    assert len(ISSUE_CASES) == 11


def test_bare_crmlab_prints_help_and_exits_0(tmp_path):
    proc = _run([], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: crmlab" in proc.stdout and "train" in proc.stdout and "score" in proc.stdout
    assert proc.stderr == ""


@pytest.mark.parametrize("group", ["train", "data", "config", "features", "segments"])
def test_a_group_alone_prints_its_help_and_exits_0(capsys, group):
    code = main([group])
    captured = capsys.readouterr()
    assert code == 0 and f"Usage: crmlab {group}" in captured.out and captured.err == ""


def test_version_prints_the_version_and_exits_0(tmp_path):
    proc = _run(["--version"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == __version__ and proc.stderr == ""


def test_version_wins_over_a_command_and_a_bad_config_dir(capsys):
    assert main(["-c", "nowhere", "--version", "demo"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_misspelt_config_dir_trains_nothing(tmp_path):
    """Issue 15: ``--config-dir confgs`` used to train on the embedded CDNOW data and register it as
    the champion; now it stops before anything is loaded, written or registered."""
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "project.yaml").write_text("name: mine\n")
    proc = _run(["--config-dir", "confgs", "train", "clv"], tmp_path)
    _check_one_line(proc.returncode, proc.stdout, proc.stderr, ["'confgs' does not exist", "did you mean 'configs'"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["configs"]  # no mlflow.db, models/, outputs/


def test_default_config_dir_may_be_missing(capsys):
    """Without --config-dir, a missing ./configs means the defaults (the demo works anywhere)."""
    assert not Path("configs").exists()
    assert main(["config", "show", "project"]) == 0
    assert "time_unit: W" in capsys.readouterr().out


def test_explicit_empty_config_dir_means_defaults(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["-c", str(tmp_path / "empty"), "config", "show", "clv"]) == 0
    assert "penalizer: 0.0" in capsys.readouterr().out


def test_valid_dates_are_passed_on_as_iso_dates(capsys):
    code = main(["--set", "project.as_of=2024-02-29", "config", "show", "project"])
    assert code == 0 and "as_of: '2024-02-29'" in capsys.readouterr().out


def test_a_file_error_after_the_work_is_one_line(workspace, capsys):
    """A path in the config (not an option) that cannot be written: one line naming it, exit 2."""
    code = main(["--set", "project.output.dir=afile.txt", "data", "clean"])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in err
    assert lines[-1].startswith("error: ") and "afile.txt" in lines[-1]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_output_to_a_full_disk_is_one_line(tmp_path):
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "crmlab", "config", "schema"], stdout=full, stderr=subprocess.PIPE,
                              text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: cannot write the output: No space left on device"


def test_a_reader_that_leaves_early_is_no_traceback(tmp_path):
    """`crmlab config schema | head -1`: the pipe closes under crmlab's output; it stops quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "crmlab", "config", "schema"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()  # before crmlab has written anything (it takes a while to start)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 1
    assert err == ""
