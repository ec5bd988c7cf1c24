from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
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
    assert shown["clv"]["calibration_end"] == "auto"  # from configs/clv.yaml
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


def test_data_synth_clean_and_features_build(tmp_path, capsys):
    code, out, _ = run(["data", "synth", "--customers", "200", "--seed", "4", "--out", str(tmp_path / "s")], capsys)
    assert code == 0 and (tmp_path / "s" / "transactions.csv").exists()
    sets = [
        "--set", f"project.data.transactions.path={tmp_path / 's' / 'transactions.csv'}",
        "--set", f"project.data.customers.path={tmp_path / 's' / 'customers.csv'}",
        "--set", f"project.data.interactions.path={tmp_path / 's' / 'interactions.csv'}",
        "--set", f"project.output.dir={tmp_path / 'out'}",
    ]
    (tmp_path / "none").mkdir()  # an explicit --config-dir must exist; an empty one means defaults
    code, out, err = run(["-c", str(tmp_path / "none"), *sets, "data", "clean"], capsys)
    assert code == 0, err
    assert "Cleaning report" in out and "MISMATCH" not in out
    clean_dir = tmp_path / "out" / "clean"
    raw_rows = len(pd.read_csv(tmp_path / "s" / "transactions.csv", dtype=str))
    report = json.loads((clean_dir / "cleaning_report.json").read_text())
    t = report["tables"]["transactions"]
    kept = len(pd.read_parquet(clean_dir / "transactions.parquet"))
    rejected = len(pd.read_csv(clean_dir / "rejects_transactions.csv", dtype=str))
    assert raw_rows == kept + rejected + t["exact_duplicates"] == t["input_rows"]
    assert rejected > 0  # the generator injects unrepairable rows

    code, out, err = run(["-c", str(tmp_path / "none"), *sets, "features", "build", "--as-of", "2024-06-30",
                          "--out", str(tmp_path / "f.csv")], capsys)
    assert code == 0, err
    feats = pd.read_csv(tmp_path / "f.csv")
    assert feats["customer_id"].is_unique and "amount_sum_90d" in feats.columns
    assert not {"email", "phone", "name"} & set(feats.columns)


def test_bad_data_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "orders.csv"
    bad.write_text("CustomerID,InvoiceDate\n1,2024-01-01\n")
    code, _, err = run(["--set", f"project.data.transactions.path={bad}", "data", "clean"], capsys)
    assert code == 2
    assert str(bad) in err and "'customer_id'" in err and "Traceback" not in err
