from __future__ import annotations

import json
import subprocess
import sys

import yaml

from crmlab.cli import main

from .conftest import REPO


def run(args, capsys):
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_the_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for cmd in ("demo", "config", "data", "features"):
        assert cmd in out


def test_config_show_resolves_yaml_and_set(capsys):
    code, out, _ = run(["-c", str(REPO / "configs"), "config", "show", "clv", "--set", "clv.penalizer=0.25"], capsys)
    assert code == 0
    shown = yaml.safe_load(out)
    assert shown["clv"]["penalizer"] == 0.25
    assert str(shown["clv"]["calibration_end"]) == "1997-09-30"  # from configs/clv.yaml
    assert shown["project"]["time_unit"] == "W"


def test_config_schema_is_json(capsys):
    code, out, _ = run(["config", "schema"], capsys)
    assert code == 0
    assert "project" in json.loads(out)["properties"]


def test_user_error_is_one_line_exit_2_no_traceback(capsys, tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "churn.yaml").write_text("horizon_dayz: 3\n")
    code, out, err = run(["-c", str(tmp_path / "configs"), "config", "show", "churn"], capsys)
    assert code == 2
    assert "churn.yaml" in err and "horizon_dayz" in err and "did you mean 'horizon_days'" in err
    assert "Traceback" not in err


def test_unknown_pipeline(capsys):
    code, _, err = run(["config", "show", "nope"], capsys)
    assert code == 2 and "unknown pipeline 'nope'" in err


def test_console_script_entry_point_and_exit_code(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "crmlab", "--set", "clv.bogus=1", "config", "show", "clv"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "unknown key 'clv.bogus'" in proc.stderr and "Traceback" not in proc.stderr
