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
