from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from crmlab.errors import ModelError
from crmlab.export import load_bundle, write_bundle

from .conftest import reseal_bundle


def _write(path, **kw):
    args = dict(
        pipeline="clv",
        params={"r": 0.243, "alpha": 4.414},
        manifest={"features": ["frequency", "recency", "T"], "time_unit": "W", "metrics": {"mae": 1.0}},
        arrays={"centres": np.arange(6.0).reshape(2, 3)},
        texts={"model.txt": "tree\n"},
    )
    args.update(kw)
    return write_bundle(path, **args)


def test_roundtrip(tmp_path):
    path = _write(tmp_path / "clv")
    b = load_bundle(path, pipeline="clv")
    assert b.params == {"r": 0.243, "alpha": 4.414}
    assert b.features == ["frequency", "recency", "T"]
    np.testing.assert_array_equal(b.arrays["centres"], np.arange(6.0).reshape(2, 3))
    assert b.read_text("model.txt") == "tree\n"
    assert b.manifest["time_unit"] == "W" and len(b.version) == 12
    assert set(b.manifest["files"]) == {"params.json", "arrays.npz", "model.txt"}


def test_overwrite_replaces_whole_folder_and_leaves_no_temp(tmp_path):
    _write(tmp_path / "clv")
    _write(tmp_path / "clv", params={"r": 1.0}, texts={}, arrays=None)
    b = load_bundle(tmp_path / "clv")
    assert b.params == {"r": 1.0}
    assert sorted(p.name for p in (tmp_path / "clv").iterdir()) == ["checksums.sha256", "manifest.json", "params.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["clv"]


def test_tampered_file_is_refused(tmp_path):
    path = _write(tmp_path / "clv")
    (path / "params.json").write_text(json.dumps({"r": 99}))
    with pytest.raises(ModelError, match="params.json: missing or modified"):
        load_bundle(path)


def test_wrong_pipeline_and_missing_bundle(tmp_path):
    path = _write(tmp_path / "clv")
    with pytest.raises(ModelError, match="holds a 'clv' model, expected 'churn'"):
        load_bundle(path, pipeline="churn")
    with pytest.raises(ModelError, match="train the pipeline first"):
        load_bundle(tmp_path / "nothing")


def test_object_arrays_are_refused_and_pickles_never_loaded(tmp_path):
    with pytest.raises(ModelError, match="dtype object"):
        _write(tmp_path / "a", arrays={"x": np.array([{"a": 1}], dtype=object)})
    # a rogue arrays.npz holding a pickled object, even with a matching checksum, is not unpickled
    path = _write(tmp_path / "b")
    np.savez(path / "arrays.npz", x=np.array([{"a": 1}], dtype=object))
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"]["arrays.npz"] = hashlib.sha256((path / "arrays.npz").read_bytes()).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))
    reseal_bundle(path)
    with pytest.raises(ModelError, match="refused, it holds pickled objects"):
        load_bundle(path)


def _edit(path, name, content: bytes):
    """Replace a bundle file and update its checksums, as a careful hand edit would."""
    (path / name).write_bytes(content)
    reseal_bundle(path)


@pytest.mark.parametrize(("name", "content", "expected"), [
    ("params.json", b'{"r": 0.2,', r"params\.json: not valid JSON \(.* line 1, column 11\)"),
    ("params.json", b"[0.2]", r"params\.json: expected a JSON object, got list"),
    ("params.json", '{"r": "caf\u00e9"}'.encode("latin-1"), r"params\.json: not UTF-8"),
    ("model.txt", b"tree\xff\n", r"model\.txt: not UTF-8"),
])
def test_hand_edited_file_with_its_checksum_updated_is_refused_by_name(tmp_path, name, content, expected):
    path = _write(tmp_path / "clv")
    _edit(path, name, content)
    with pytest.raises(ModelError, match=expected):
        load_bundle(path)


def test_a_second_json_file_is_checked_on_load(tmp_path):
    path = _write(tmp_path / "clv", texts={"spec.json": '{"features": []}'})
    assert load_bundle(path).read_text("spec.json") == '{"features": []}'
    _edit(path, "spec.json", b'{"features": [}')
    with pytest.raises(ModelError, match=r"spec\.json: not valid JSON"):
        load_bundle(path)


@pytest.mark.parametrize(("manifest", "expected"), [
    ("{not json", r"manifest\.json: not valid JSON"),
    ("[1, 2]", r"manifest\.json: expected a JSON object, got list"),
    ('{"format_version": 2, "files": ["params.json"]}', r"'files' must map file names to checksums"),
    ('{"format_version": 2, "files": {"../../etc/passwd": "x", "params.json": "y"}}', r"not a file of this bundle"),
    ('{"format_version": 2, "files": {}}', r"does not list params\.json"),
])
def test_broken_manifest_is_refused_by_name(tmp_path, manifest, expected):
    path = _write(tmp_path / "clv")
    (path / "manifest.json").write_text(manifest)
    reseal_bundle(path)
    with pytest.raises(ModelError, match=expected):
        load_bundle(path)


# --- issue 15 item 2: the manifest is covered too -------------------------------------------------------------


def test_a_forged_manifest_field_is_refused(tmp_path):
    """A forged bundle_hash became the *_model_version column, a forged metric reached the report."""
    path = _write(tmp_path / "clv")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["bundle_hash"], manifest["metrics"]["mae"] = "0" * 12, 0.001
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    with pytest.raises(ModelError, match=r"manifest\.json: modified since export \(checksum mismatch"):
        load_bundle(path)


def test_every_file_is_in_a_sha256sum_file(tmp_path):
    import shutil
    import subprocess

    path = _write(tmp_path / "clv")
    lines = (path / "checksums.sha256").read_text().splitlines()
    assert [line[66:] for line in lines] == ["arrays.npz", "manifest.json", "model.txt", "params.json"]
    if shutil.which("sha256sum"):
        assert subprocess.run(["sha256sum", "--quiet", "-c", "checksums.sha256"], cwd=path).returncode == 0
    (path / "checksums.sha256").unlink()
    with pytest.raises(ModelError, match=r"checksums\.sha256: missing"):
        load_bundle(path)


def test_a_bundle_of_the_older_format_says_retrain(tmp_path):
    path = _write(tmp_path / "clv")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 1
    (path / "manifest.json").write_text(json.dumps(manifest))
    (path / "checksums.sha256").unlink()
    with pytest.raises(ModelError, match=r"bundle format 1 from an older crmlab.*retrain"):
        load_bundle(path)


def test_a_file_only_the_checksums_list_is_refused(tmp_path):
    path = _write(tmp_path / "clv")
    (path / "extra.txt").write_text("x")
    with open(path / "checksums.sha256", "a") as fh:
        fh.write(hashlib.sha256(b"x").hexdigest() + "  extra.txt\n")
    with pytest.raises(ModelError, match=r"lists 'extra\.txt', which manifest\.json does not"):
        load_bundle(path)


# --- issue 15 item 11: LightGBM texts are checked whole -----------------------------------------------------


def test_lightgbm_text_is_checked_whole_before_lightgbm_parses_it():
    import lightgbm as lgb

    from crmlab.export import check_lightgbm_text

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 5}, lgb.Dataset(x, x[:, 0] > 0),
                        num_boost_round=8)
    text = booster.model_to_string()
    check_lightgbm_text(text, "m.txt")
    refused = 0
    for cut in range(0, len(text) - 1, 53):
        with pytest.raises(ModelError, match=r"m\.txt: not a whole LightGBM model"):
            check_lightgbm_text(text[:cut], "m.txt")
        refused += 1
    assert refused > 50
    # a tree whose leaf count and values disagree, and a split on a feature the model lacks
    with pytest.raises(ModelError, match="leaf values for"):
        check_lightgbm_text(text.replace("num_leaves=5", "num_leaves=6", 1), "m.txt")
    split = next(line for line in text.splitlines() if line.startswith("split_feature="))
    features = split.partition("=")[2].split()
    forged = "split_feature=" + " ".join(["9", *features[1:]])
    with pytest.raises(ModelError, match="splits on a feature the model does not have"):
        check_lightgbm_text(text.replace(split, forged, 1), "m.txt")


# --- the three gaps the bundle review found after issue 15 ---------------------------------------------------


def test_an_array_header_claiming_more_data_than_the_file_holds_is_refused(tmp_path):
    """A crafted .npy header (10^12 rows) used to reach NumPy, which failed with an out-of-memory error."""
    import io
    import zipfile

    path = _write(tmp_path / "clv")
    buf = io.BytesIO()
    with zipfile.ZipFile(path / "arrays.npz") as src, zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            header = b"{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"
            assert header in data
            crafted = header.replace(b"(2, 3)", b"(1000000000000, 3)")
            dst.writestr(info, data.replace(header, crafted[: len(header)] if len(crafted) <= len(header) else crafted))
    (path / "arrays.npz").write_bytes(buf.getvalue())
    reseal_bundle(path)
    with pytest.raises(ModelError, match=r"arrays\.npz: member 'centres\.npy' claims shape \(1000000000000, 3\)"):
        load_bundle(path)


def test_only_the_files_the_manifest_lists_are_read(tmp_path):
    path = _write(tmp_path / "clv")
    (path / "notes.txt").write_text("not part of the bundle")
    b = load_bundle(path)
    assert b.read_text("model.txt") == "tree\n"
    with pytest.raises(ModelError, match=r"notes\.txt: not a file of this bundle"):
        b.read_text("notes.txt")


def test_the_report_reads_a_manifest_only_when_its_checksum_matches(tmp_path):
    """A forged metric in manifest.json reached the HTML report (scoring refused it already)."""
    from crmlab.report import read_pipeline_outputs

    path = write_bundle(tmp_path / "segmentation", pipeline="segmentation", params={"k": 2},
                        manifest={"metrics": {"silhouette": 0.41}},
                        texts={"report_profiles.csv": "segment,customers\n0,10\n1,5\n"})
    good = read_pipeline_outputs(tmp_path, "segmentation")
    assert good.problems == [] and good.metrics()["silhouette"] == 0.41 and len(good.tables["profiles"]) == 2
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["metrics"]["silhouette"] = 0.99
    (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    forged = read_pipeline_outputs(tmp_path, "segmentation")
    assert forged.manifest is None and not forged.trained
    assert "manifest.json: modified since export" in forged.problems[0]
    (path / "manifest.json").write_text(json.dumps({**manifest, "metrics": {"silhouette": 0.41}}, indent=2,
                                                   sort_keys=True))
    reseal_bundle(path)
    (path / "report_profiles.csv").write_text("segment,customers\n0,999\n")
    table = read_pipeline_outputs(tmp_path, "segmentation")
    assert "profiles" not in table.tables and "report_profiles.csv: missing or modified" in table.problems[0]
