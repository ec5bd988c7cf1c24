from __future__ import annotations

import os
import stat

import pandas as pd

from crmlab.utils import write_json_atomic, write_table_atomic


def test_atomic_writes_roundtrip_and_normal_permissions(tmp_path):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    old = os.umask(0o022)
    try:
        p = write_table_atomic(df, tmp_path / "sub" / "t.parquet")
        c = write_table_atomic(df, tmp_path / "t.csv")
        j = write_json_atomic({"k": 1}, tmp_path / "r.json")
    finally:
        os.umask(old)
    pd.testing.assert_frame_equal(pd.read_parquet(p), df)
    assert pd.read_csv(c)["a"].tolist() == [1, 2]
    for f in (p, c, j):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.json", "sub", "t.csv"]  # no temp files left


def test_data_are_cleaned_once_per_process_until_a_file_changes(tmp_path, monkeypatch):
    """prepare_data reuses the clean tables of the same settings and files (issue 16: one `crmlab demo`
    cleaned the same data 6 times), and cleans again when a file changed, even to one of the same size
    within the same clock tick."""
    from crmlab import workflow
    from crmlab.config import load_config
    from crmlab.data import clean as cleaning

    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return cleaning.clean_tables(*args, **kwargs)

    monkeypatch.setattr(workflow, "clean_tables", counting)
    monkeypatch.setattr(workflow, "_last", None)
    data = tmp_path / "tx.csv"
    data.write_text("customer_id,ts,amount\nc1,2024-01-01,5\nc2,2024-01-02,7\n")
    cfg = load_config(None, [f"project.data.transactions.path={data}", "project.cleaning.max_date=2025-01-01"])
    first = workflow.prepare_data(cfg.project)
    first.tables.transactions.loc[0, "amount"] = 999.0  # a caller's change stays its own
    second = workflow.prepare_data(cfg.project, out_dir=tmp_path / "out")
    assert len(calls) == 1
    assert second.tables.transactions["amount"].tolist() == [5.0, 7.0]
    assert (tmp_path / "out" / "cleaning_report.json").exists()  # what out_dir asks for is still written
    data.write_text("customer_id,ts,amount\nc1,2024-01-01,6\nc2,2024-01-02,7\n")  # same size, same tick
    assert workflow.prepare_data(cfg.project).tables.transactions["amount"].tolist() == [6.0, 7.0]
    other = load_config(None, [f"project.data.transactions.path={data}", "project.cleaning.max_date=2024-01-01"])
    assert workflow.prepare_data(other.project).tables.transactions["amount"].tolist() == [6.0]
    assert len(calls) == 3



def test_a_signal_swallowed_by_a_finaliser_still_stops_the_next_output(tmp_path):
    """CI saw `crmlab score` exit 0 after SIGTERM: the handler's KeyboardInterrupt landed in a weakref
    callback, where Python prints "Exception ignored" and goes on, and the run replaced the file. The
    recorded signal stops the next atomic write, which keeps the previous file and leaves no temp file."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, signal, sys, time
        from pathlib import Path
        from crmlab import cli, utils

        stopped = utils.STOP_SIGNALS
        cli._on_stop_signals(stopped)

        class Finalised:
            def __del__(self):
                os.kill(os.getpid(), signal.SIGTERM)
                for _ in range(10_000):  # the handler runs here, inside the finaliser, and is swallowed
                    time.sleep(0)

        Finalised()
        assert stopped == [signal.SIGTERM], stopped
        out = Path(sys.argv[1])
        try:
            utils.write_json_atomic({"new": 1}, out)
        except KeyboardInterrupt:
            print("stopped before replacing")
    """)
    out = tmp_path / "r.json"
    out.write_text("previous")
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" in done.stderr  # the interrupt was indeed swallowed ...
    assert done.stdout.strip() == "stopped before replacing"  # ... and the write still stopped
    assert out.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_temporary_files_not_put_in_place_are_removed_when_the_command_ends(tmp_path):
    """CI saw an interrupted `crmlab score` leave an empty .partial after its writer's own cleanup; the
    command line now removes, when a command ends, every temporary file it created and did not place."""
    from crmlab import utils

    left, kept = tmp_path / ".a.partial", tmp_path / ".b.partial"
    for tmp in (left, kept):
        os.close(utils.create_new(tmp))
    os.replace(kept, tmp_path / "b")
    utils.placed(kept)
    left.unlink()
    left.write_text("")  # re-created by someone after the writer's cleanup
    utils.remove_leftover_temps()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
