"""Model bundles: what training exports to ``models/<pipeline>/`` and scoring loads.

A bundle is a folder of safe formats only: ``manifest.json`` (pipeline, feature list, time unit,
training window, metrics, config hash, checksums), ``params.json``, optional ``arrays.npz`` (read
with ``allow_pickle=False``) and text files such as LightGBM models. Loading a bundle never
unpickles anything, and a file whose checksum does not match the manifest is refused.

Bundles are written atomically: the new folder is complete before it replaces the old one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from crmlab import __version__
from crmlab.errors import ModelError

__all__ = ["FORMAT_VERSION", "Bundle", "as_bundle", "load_bundle", "write_bundle"]

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class Bundle:
    """An exported model, loaded: manifest, JSON parameters, arrays and text files."""

    path: Path
    manifest: dict[str, Any]
    params: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def pipeline(self) -> str:
        return str(self.manifest["pipeline"])

    @property
    def features(self) -> list[str]:
        return list(self.manifest.get("features", []))

    @property
    def version(self) -> str:
        """A short identifier of this exact bundle (the hash of its files)."""
        return str(self.manifest.get("bundle_hash", ""))

    def read_text(self, name: str) -> str:
        return (self.path / name).read_text(encoding="utf-8")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_bundle(
    path: str | Path,
    *,
    pipeline: str,
    params: dict[str, Any],
    manifest: dict[str, Any],
    arrays: dict[str, np.ndarray] | None = None,
    texts: dict[str, str] | None = None,
) -> Path:
    """Write a bundle folder atomically and return its path.

    ``manifest`` holds what the pipeline knows (features, time_unit, training_window, metrics,
    config_hash, ...); format version, crmlab version, creation time and file checksums are added.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        (tmp / "params.json").write_text(json.dumps(params, indent=2, sort_keys=True, default=_json_default))
        if arrays:
            for name, arr in arrays.items():
                if np.asarray(arr).dtype == object:
                    raise ModelError(f"array {name!r} has dtype object, which cannot be stored without pickle")
            np.savez(tmp / "arrays.npz", **{k: np.asarray(v) for k, v in arrays.items()})
        for name, text in (texts or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
        files = {p.name: _sha256(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        full = {
            **manifest,
            "pipeline": pipeline,
            "format_version": FORMAT_VERSION,
            "crmlab_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "files": files,
            "bundle_hash": hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:12],
        }
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True, default=_json_default))
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / "bundle")
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _read_json(path: Path, what: str) -> Any:
    """The JSON document in ``path``; a file that is not UTF-8 or not JSON is a ModelError naming it."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ModelError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text (byte at offset {exc.start}); retrain or restore the bundle") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); retrain or restore the bundle"
        ) from None


def _check_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """The manifest's list of files: names of files in this folder, each with a checksum."""
    mpath = path / MANIFEST
    files = manifest.get("files")
    if not isinstance(files, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in files.items()):
        raise ModelError(f"{mpath}: 'files' must map file names to checksums; retrain or restore it")
    for name in files:
        if not name or Path(name).name != name or name in (".", "..", MANIFEST):
            raise ModelError(f"{mpath}: 'files' lists {name!r}, which is not a file of this bundle folder")
    if "params.json" not in files:
        raise ModelError(f"{mpath}: 'files' does not list params.json; retrain or restore the bundle")


def load_bundle(path: str | Path, *, pipeline: str | None = None) -> Bundle:
    """Load a bundle written by :func:`write_bundle`, checking format, pipeline and checksums.

    Every JSON file of the bundle is parsed here and every text file decoded, so a file edited by
    hand (its checksum updated to match) is refused with a ModelError naming the file, not a
    traceback later."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ModelError(f"{path}: no model bundle here (missing {MANIFEST}); train the pipeline first")
    manifest = _read_json(mpath, "the bundle manifest")
    if not isinstance(manifest, dict):
        raise ModelError(f"{mpath}: expected a JSON object, got {type(manifest).__name__}; retrain or restore it")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{path}: bundle format {manifest.get('format_version')!r}, this crmlab reads {FORMAT_VERSION}; retrain"
        )
    _check_manifest(path, manifest)
    if pipeline is not None and manifest.get("pipeline") != pipeline:
        raise ModelError(f"{path}: holds a {manifest.get('pipeline')!r} model, expected {pipeline!r}")
    for name, digest in manifest["files"].items():
        f = path / name
        if not f.is_file() or _sha256(f) != digest:
            raise ModelError(f"{f}: missing or modified since export (checksum mismatch); retrain or restore it")
    for name in manifest["files"]:
        f = path / name
        if f.suffix == ".json" and name != "params.json":
            _read_json(f, "a bundle file")
        elif f.suffix != ".npz":
            try:
                f.read_bytes().decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ModelError(f"{f}: not UTF-8 text (byte at offset {exc.start}); retrain or restore it") from None
    params = _read_json(path / "params.json", "the bundle parameters")
    if not isinstance(params, dict):
        raise ModelError(f"{path / 'params.json'}: expected a JSON object, got {type(params).__name__}; retrain or restore it")
    arrays: dict[str, np.ndarray] = {}
    if (path / "arrays.npz").is_file():
        try:
            with np.load(path / "arrays.npz", allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except ValueError as exc:
            raise ModelError(f"{path / 'arrays.npz'}: refused, it holds pickled objects ({exc})") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{path / 'arrays.npz'}: not a readable array file ({exc}); retrain or restore it") from None
    return Bundle(path=path, manifest=manifest, params=params, arrays=arrays)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def as_bundle(bundle: Bundle | str | Path, pipeline: str) -> Bundle:
    """``bundle`` as a loaded bundle of ``pipeline``: a path is loaded (and checked), a loaded one
    is checked; every scoring and evaluation function takes either."""
    if not isinstance(bundle, Bundle):
        return load_bundle(bundle, pipeline=pipeline)
    if bundle.pipeline != pipeline:
        raise ModelError(f"{bundle.path}: holds a {bundle.pipeline!r} model, expected {pipeline!r}")
    return bundle
