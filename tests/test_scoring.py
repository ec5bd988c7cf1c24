"""Batch scoring, the registry and the comparison of runs, on real bundles and a real MLflow store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from crmlab.clv.pipeline import train_clv
from crmlab.config import load_config
from crmlab.errors import ModelError
from crmlab.registry import get_champion, promote, recent_runs
from crmlab.scoring import load_models, score_customers, write_scores

from .conftest import synthetic_project


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic CRM, an MLflow store and two trainings of the CLV model (versions 1 and 2)."""
    root = tmp_path_factory.mktemp("scoring")
    sets = [*synthetic_project(root, n_customers=1200, seed=21, tables=("transactions", "customers")),
            "clv.challenger=false"]
    cfg = load_config(root / "no-configs", sets)
    first = train_clv(cfg)
    second = train_clv(load_config(root / "no-configs", [*sets, "clv.penalizer=0.01"]))
    return root, sets, cfg, first, second


def test_scores_are_one_row_per_customer_whatever_the_chunks(trained, tmp_path):
    root, _, cfg, first, second = trained
    whole = score_customers(cfg)
    assert whole["customer_id"].is_unique and whole["customer_id"].is_monotonic_increasing
    assert {"as_of", "p_alive", "expected_purchases", "expected_spend", "clv", "clv_model_version"} <= set(whole.columns)
    # the lifecycle stage of every buyer, with P(alive) of the same CLV model (crmlab.lifecycle)
    from crmlab.lifecycle import STAGES

    assert list(whole.columns[-4:]) == ["lifecycle_stage", "lifecycle_overdue", "lifecycle_spend_trend",
                                        "lifecycle_usual_gap_days"]
    assert set(whole["lifecycle_stage"].dropna()) <= set(STAGES)
    assert whole.loc[whole["p_alive"] < 0.1, "lifecycle_stage"].eq("lapsed").all()
    # every customer of the clean customer table (and every buyer) has a row
    from crmlab.workflow import prepare_data

    tables = prepare_data(cfg.project).tables
    assert set(whole["customer_id"]) >= set(tables.customers["customer_id"])
    assert set(whole["customer_id"]) >= set(tables.transactions["customer_id"])
    # the scores are the champion's (the first training; the second was not promoted): the same
    # numbers as its training-time scores
    assert set(whole["clv_model_version"]) == {"registry:1"}
    merged = whole.merge(first.scores, on="customer_id", suffixes=("", "_train"))
    assert len(merged) == len(first.scores)
    np.testing.assert_allclose(merged["clv"], merged["clv_train"], rtol=1e-12)
    # chunking changes nothing
    write_scores(cfg, tmp_path / "a.parquet", tables=tables)
    write_scores(cfg, tmp_path / "b.parquet", tables=tables, chunk_size=97)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), whole)


def test_plain_scoring_uses_the_champion_not_a_challenger_that_was_not_promoted(trained, caplog):
    """issue 17: after a training that was not promoted, `crmlab score` used models/ (the challenger)."""
    import logging

    from crmlab.export import load_bundle

    root, sets, cfg, first, second = trained
    assert get_champion(cfg.project.tracking, "clv").version == "1"
    latest = load_bundle(cfg.project.output.models_dir / "clv").version  # the second training's bundle
    with caplog.at_level(logging.INFO, logger="crmlab.scoring"):
        auto = score_customers(cfg).set_index("customer_id")
    assert "scoring clv with the registry's champion (project.scoring.source: auto)" in caplog.text
    models = score_customers(cfg, source="models").set_index("customer_id")
    assert set(auto["clv_model_version"]) == {"registry:1"}
    assert set(models["clv_model_version"]) == {latest}
    ids = first.scores["customer_id"]
    np.testing.assert_allclose(auto.loc[ids, "clv"], first.scores["clv"], rtol=1e-12)
    np.testing.assert_allclose(models.loc[ids, "clv"], second.scores.set_index("customer_id").loc[ids, "clv"],
                               rtol=1e-12)
    assert not np.allclose(auto.loc[ids, "clv"], models.loc[ids, "clv"])  # the two trainings differ
    # tracking off: no registry to ask, the bundle in models/ scores
    off = load_config(root / "no-configs", [*sets, "project.tracking.enabled=false"])
    assert set(score_customers(off)["clv_model_version"]) == {latest}


def test_scoring_twice_gives_the_same_file(trained, tmp_path):
    _, _, cfg, _, _ = trained
    for name in ("one", "two"):
        write_scores(cfg, tmp_path / f"{name}.parquet", chunk_size=300)
        write_scores(cfg, tmp_path / f"{name}.csv", chunk_size=300)
    assert (tmp_path / "one.parquet").read_bytes() == (tmp_path / "two.parquet").read_bytes()
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    csv = pd.read_csv(tmp_path / "one.csv", dtype={"customer_id": str})
    assert len(csv) == len(pd.read_parquet(tmp_path / "one.parquet"))


def test_a_killed_run_leaves_the_previous_file_intact(trained, tmp_path):
    root, sets, _, _, _ = trained
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"previous scores")
    (root / "no-configs").mkdir(exist_ok=True)  # an explicit --config-dir must exist; empty means defaults
    args = [sys.executable, "-m", "crmlab", "-c", str(root / "no-configs"), *[a for s in sets for a in ("--set", s)],
            "score", "--out", str(out), "--chunk-size", "5"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".scores.parquet.*.partial")):
        assert proc.poll() is None, "the scoring run ended before it started writing"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert out.read_bytes() == b"previous scores"
    # the next run clears the leftover and replaces the file whole
    subprocess.run(args[:-1] + ["500"], check=True, capture_output=True, cwd=tmp_path)
    assert not list(tmp_path.glob(".scores.parquet.*.partial"))
    assert len(pd.read_parquet(out)) > 1000


def test_registry_champion_promotion_and_scoring_from_it(trained, tmp_path):
    root, _, cfg, first, second = trained
    tracking = cfg.project.tracking
    # the first registered version became the champion by itself; the second did not
    assert get_champion(tracking, "clv").version == "1"
    from_registry = score_customers(cfg, source="registry")
    assert set(from_registry["clv_model_version"]) == {"registry:1"}
    np.testing.assert_allclose(
        from_registry.set_index("customer_id").loc[first.scores["customer_id"], "clv"], first.scores["clv"], rtol=1e-12)
    promote(tracking, "clv", 2, reason="test")
    assert get_champion(tracking, "clv").version == "2"
    assert set(score_customers(cfg, source="registry")["clv_model_version"]) == {"registry:2"}
    with pytest.raises(ModelError, match=r"no version 9 \(versions: 1, 2\)"):
        promote(tracking, "clv", 9)
    board = recent_runs(tracking, "clv", order="newest")
    assert list(board["version"]) == ["2", "1"] and list(board["champion"]) == [True, False]
    assert board.columns[5] == "purchases_mae"
    assert board["purchases_mae"].notna().all()
    best = recent_runs(tracking, "clv")  # best first: the lower purchases_mae
    assert list(best["version"]) == list(board.sort_values("purchases_mae")["version"])
    assert list(best["params.clv.penalizer"]) == ["0.0" if v == "1" else "0.01" for v in best["version"]]


def test_missing_models_are_named(trained, tmp_path):
    _, sets, _, _, _ = trained
    cfg = load_config(tmp_path / "no-configs", [*sets, f"project.output.models_dir={tmp_path / 'none'}",
                                                 "project.scoring.source=models"])
    with pytest.raises(ModelError, match="no trained customer model"):
        load_models(cfg)
    # by default the registry's champion still scores when models/ is gone
    auto = load_config(tmp_path / "no-configs", [*sets, f"project.output.models_dir={tmp_path / 'none'}"])
    assert load_models(auto)["clv"].version.startswith("registry:")
    with pytest.raises(ModelError, match="churn"):
        load_models(load_config(tmp_path / "no-configs", sets), pipelines=["churn"])


def test_cli_score_compare_promote(trained, tmp_path, capsys):
    from crmlab.cli import main

    root, sets, _, _, _ = trained
    (root / "no-configs").mkdir(exist_ok=True)  # an explicit --config-dir must exist; empty means defaults
    flags = ["-c", str(root / "no-configs"), *[a for s in sets for a in ("--set", s)]]
    assert main([*flags, "score", "--out", str(tmp_path / "s.csv"), "--model", "clv"]) == 0
    assert "customers scored" in capsys.readouterr().out
    assert main([*flags, "compare", "clv"]) == 0
    assert "purchases_mae" in capsys.readouterr().out
    assert main([*flags, "promote", "clv", "42"]) == 2
    assert "no version 42" in capsys.readouterr().err


def test_top_level_api():
    import crmlab

    assert crmlab.score_customers is score_customers
    assert callable(crmlab.score_clv)


# --- issue 15: nothing lost, nothing silently wrong ---------------------------------------------------------------


@pytest.fixture(scope="module")
def one_clv(tmp_path_factory):
    """A project whose CLV model was trained through the command line (churn and segmentation never were)."""
    from crmlab.cli import main

    root = tmp_path_factory.mktemp("scorerel")
    sets = [*synthetic_project(root, n_customers=400, seed=5, tables=("transactions", "customers")),
            "clv.challenger=false"]
    (root / "no-configs").mkdir()
    flags = ["-c", str(root / "no-configs"), *[a for s in sets for a in ("--set", s)]]
    assert main([*flags, "train", "clv"]) == 0
    return root, sets, flags


def _copy_project(root, tmp_path, sets):
    """The trained project copied under tmp_path (models, store, artifacts), so a test may break it."""
    import shutil

    for name in ("models", "mlartifacts"):
        shutil.copytree(root / name, tmp_path / name)
    shutil.copy(root / "mlflow.db", tmp_path / "mlflow.db")
    # the store records absolute artifact locations: point the copy's at the copied artifacts
    import sqlite3

    with sqlite3.connect(tmp_path / "mlflow.db") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            for col in db.execute(f"PRAGMA table_info('{table}')").fetchall():
                if col[2].upper().startswith(("VARCHAR", "TEXT")):
                    db.execute(f'UPDATE "{table}" SET "{col[1]}" = replace("{col[1]}", ?, ?)',
                               (str(root / "mlartifacts"), str(tmp_path / "mlartifacts")))
    moved = [s.replace(str(root / "models"), str(tmp_path / "models"))
             .replace(str(root / "mlflow.db"), str(tmp_path / "mlflow.db"))
             .replace(str(root / "mlartifacts"), str(tmp_path / "mlartifacts")) for s in sets]
    (tmp_path / "no-configs").mkdir(exist_ok=True)
    return ["-c", str(tmp_path / "no-configs"), *[a for s in moved for a in ("--set", s)]]


def test_score_refuses_a_trained_model_it_cannot_load_and_keeps_the_previous_file(one_clv, tmp_path, capsys):
    """issue 15 item 1: a params.json edited after export used to drop the CLV columns with a warning,
    exit 0 and replace the complete file with a smaller one."""
    from crmlab.cli import main

    root, sets, _ = one_clv
    flags = _copy_project(root, tmp_path, sets)
    # the bundles in models/ are what this test breaks (by default the registry's champion scores)
    flags += ["--set", "project.scoring.source=models"]
    out = tmp_path / "scores.parquet"
    assert main([*flags, "score", "--out", str(out)]) == 0
    first = out.read_bytes()
    assert {"clv", "clv_model_version"} <= set(pd.read_parquet(out).columns)
    # the never-trained pipelines are skipped, and the run says which
    said = " ".join(capsys.readouterr().err.split())
    assert "not scoring churn: never trained" in said and "not scoring segmentation: never trained" in said

    params = tmp_path / "models" / "clv" / "params.json"
    params.write_text(params.read_text().replace("{", "{\n ", 1))  # a harmless-looking edit after export
    assert main([*flags, "score", "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(params) in errors[0] and "checksum mismatch" in errors[0], errors
    assert out.read_bytes() == first  # byte-identical: the complete previous file is kept

    # a bundle folder with its manifest gone is broken, not "never trained"
    (tmp_path / "models" / "clv" / "manifest.json").unlink()
    assert main([*flags, "score", "--out", str(out)]) == 2
    assert "cannot score with the clv model" in capsys.readouterr().err
    assert out.read_bytes() == first


def _temp_dirs(folder):
    return sorted(p.name for p in folder.iterdir())


def test_scoring_from_the_registry_leaves_no_temporary_folder(one_clv, tmp_path, monkeypatch, capsys):
    """issue 15 item 9: every `score --source registry` left a crmlab-champions-* folder behind."""
    import tempfile

    from crmlab.cli import main

    root, sets, _ = one_clv
    flags = _copy_project(root, tmp_path, sets)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    out = tmp_path / "scores.csv"
    assert main([*flags, "score", "--source", "registry", "--out", str(out)]) == 0
    assert "registry:1" in out.read_text()
    assert _temp_dirs(tmpdir) == []
    # failure: the champion's files in the artifact store were modified
    edited = sorted((tmp_path / "mlartifacts").rglob("params.json"))
    assert edited
    for p in edited:
        p.write_text(p.read_text() + " ")
    previous = out.read_bytes()
    assert main([*flags, "score", "--source", "registry", "--out", str(out)]) == 2
    assert "checksum" in capsys.readouterr().err
    assert _temp_dirs(tmpdir) == []
    assert out.read_bytes() == previous
    # the library call without a folder of its own cleans up when loading fails too
    with pytest.raises(ModelError):
        load_models(load_config(tmp_path / "no-configs", [f for f in flags[3::2]]), source="registry")
    assert _temp_dirs(tmpdir) == []


def test_a_champion_resealed_in_the_artifact_store_is_refused(one_clv, tmp_path, capsys):
    """issue 15 item 2: checksums are not signatures; the registry keeps the manifest's checksum apart
    from the artifacts, so a forged manifest with fresh checksums in the artifact store is still caught."""
    import json

    from crmlab.cli import main

    from .conftest import reseal_bundle

    root, sets, _ = one_clv
    flags = _copy_project(root, tmp_path, sets)
    manifests = sorted((tmp_path / "mlartifacts").rglob("manifest.json"))
    assert manifests
    for m in manifests:
        doc = json.loads(m.read_text())
        doc["bundle_hash"] = "forged000000"
        m.write_text(json.dumps(doc))
        reseal_bundle(m.parent)
    out = tmp_path / "scores.csv"
    assert main([*flags, "score", "--source", "registry", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "differs from the manifest crmlab-clv version 1 was registered with" in err
    assert "forged000000" not in err and not out.exists()


# --- issue 15 items 8 and 10: interrupted and disk-full runs ----------------------------------------------------


@pytest.mark.parametrize(("sig", "code", "says"), [(signal.SIGINT, 130, "interrupted (Ctrl-C)"),
                                                   (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_an_interrupted_score_says_so_and_keeps_the_previous_file(trained, tmp_path, sig, code, says):
    """Ctrl-C during `crmlab score` used to exit 0 with no output and no file update."""
    root, sets, _, _, _ = trained
    (root / "no-configs").mkdir(exist_ok=True)
    out = tmp_path / "scores.parquet"
    out.write_bytes(b"previous scores")
    args = [sys.executable, "-m", "crmlab", "-c", str(root / "no-configs"), *[a for s in sets for a in ("--set", s)],
            "score", "--out", str(out), "--chunk-size", "5"]
    # a shell that runs a job in the background ignores SIGINT for it; a terminal's Ctrl-C does not
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".scores.parquet.*.partial")):
        assert proc.poll() is None, "the scoring run ended before it started writing"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    errors = [line for line in err.decode().splitlines() if line.startswith("error:")]
    assert proc.returncode == code, err.decode()[-2000:]
    assert len(errors) == 1 and says in errors[0], errors
    assert "Traceback" not in err.decode()
    assert out.read_bytes() == b"previous scores"
    left = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    assert sorted(left) == ["scores.parquet"], (left, err.decode()[-300:])  # no temporary file left


@pytest.fixture
def small_disk(tmp_path):
    """An 8 KB tmpfs: a real full device. Needs root and a mount(8) that may mount (skipped otherwise)."""
    import shutil

    disk = tmp_path / "disk"
    disk.mkdir()
    ok = os.geteuid() == 0 and shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(disk)], capture_output=True).returncode == 0
    if not ok:  # a container may forbid mounts even to root
        pytest.skip("needs root and a permitted mount -t tmpfs to make a full device")
    try:
        yield disk
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_is_one_line_naming_the_path_and_the_space(trained, small_disk, capsys):
    from crmlab.cli import main

    root, sets, _, _, _ = trained
    (root / "no-configs").mkdir(exist_ok=True)
    flags = ["-c", str(root / "no-configs"), *[a for s in sets for a in ("--set", s)]]
    out = small_disk / "scores.parquet"
    out.write_bytes(b"previous scores")
    for argv, target in ((["score", "--out", str(out)], out),
                         (["data", "clean", "--out", str(small_disk / "clean")], small_disk / "clean"),
                         (["--set", f"project.output.models_dir={small_disk / 'models'}", "train", "clv"],
                          small_disk / "models" / "clv")):
        assert main([*flags, *argv]) == 1
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, errors
        assert "no space left on the device writing" in errors[0] and str(target) in errors[0], errors
        assert "free in" in errors[0]
    assert out.read_bytes() == b"previous scores"
    assert not [p for p in small_disk.rglob("*") if p.name.startswith(".")]  # no temporary file left
