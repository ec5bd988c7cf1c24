from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from crmlab.errors import ModelError
from crmlab.export import load_bundle, write_bundle


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
    assert sorted(p.name for p in (tmp_path / "clv").iterdir()) == ["manifest.json", "params.json"]
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
    with pytest.raises(ModelError, match="refused, it holds pickled objects"):
        load_bundle(path)


def _edit(path, name, content: bytes):
    """Replace a bundle file and update its checksum in the manifest, as a careful hand edit would."""
    (path / name).write_bytes(content)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256(content).hexdigest()
    (path / "manifest.json").write_text(json.dumps(manifest))


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
    ('{"format_version": 1, "files": ["params.json"]}', r"'files' must map file names to checksums"),
    ('{"format_version": 1, "files": {"../../etc/passwd": "x", "params.json": "y"}}', r"not a file of this bundle"),
    ('{"format_version": 1, "files": {}}', r"does not list params\.json"),
])
def test_broken_manifest_is_refused_by_name(tmp_path, manifest, expected):
    path = _write(tmp_path / "clv")
    (path / "manifest.json").write_text(manifest)
    with pytest.raises(ModelError, match=expected):
        load_bundle(path)
