"""Model bundles: what training exports to ``models/<pipeline>/`` and scoring loads.

A bundle is a folder of safe formats only: ``manifest.json`` (pipeline, feature list, time unit,
training window, metrics, config hash, checksums), ``params.json``, optional ``arrays.npz`` (read
with ``allow_pickle=False``), text files such as LightGBM models, and ``checksums.sha256``, the
SHA-256 of every other file, the manifest included (``sha256sum -c checksums.sha256`` checks it by
hand). Loading a bundle never unpickles anything; a file whose checksum does not match is refused,
and LightGBM model texts are checked whole before LightGBM parses them (it aborts the process on a
cut file). Checksums catch accidental edits, truncation, partial copies and a hand-edited manifest
field; they are not signatures: whoever can write the folder can recompute them. The registry keeps
the manifest's checksum apart from the artifacts (see :mod:`crmlab.registry`).

Bundles are written atomically: the new folder is complete before it replaces the old one.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from crmlab import __version__
from crmlab.errors import ModelError
from crmlab.utils import replace_folder

__all__ = ["FORMAT_VERSION", "Bundle", "as_bundle", "check_lightgbm_text", "load_bundle", "manifest_sha256",
           "write_bundle"]

FORMAT_VERSION = 2  # 2: checksums.sha256 covers every file, manifest.json included
MANIFEST = "manifest.json"
CHECKSUMS = "checksums.sha256"


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
        """A text file of the bundle; only a file its manifest lists (and the checksums covered when
        the bundle was loaded) is read."""
        if name not in self.manifest.get("files", {}):
            raise ModelError(f"{self.path / name}: not a file of this bundle (its {MANIFEST} does not list it)")
        return (self.path / name).read_text(encoding="utf-8")

    def lightgbm_text(self, name: str) -> str:
        """A LightGBM model file of the bundle, checked whole before LightGBM sees it (see
        :func:`check_lightgbm_text`)."""
        text = self.read_text(name)
        check_lightgbm_text(text, self.path / name)
        return text


_LGB_HEADER = ("version", "num_class", "num_tree_per_iteration", "max_feature_idx", "feature_names", "tree_sizes")


def check_lightgbm_text(text: str, where: str | Path) -> None:
    """Refuse a LightGBM model text that is not whole, with a ModelError naming ``where``.

    LightGBM aborts the process (``terminate called without an active exception``, or a segmentation
    fault) on a model cut anywhere, even after its trees. So the structure is checked here first: the
    header, every tree at the byte offset ``tree_sizes`` gives it with its leaf and split arrays of
    consistent lengths, then ``end of trees``, the parameters and the closing ``pandas_categorical`` line.
    """
    def bad(why: str) -> ModelError:
        return ModelError(f"{where}: not a whole LightGBM model ({why}); retrain or restore the bundle")

    head, sep, _ = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != "tree":
        raise bad("it does not start with a LightGBM header")
    header = dict(line.partition("=")[::2] for line in lines[1:])
    missing = [k for k in _LGB_HEADER if k not in header]
    if missing:
        raise bad(f"the header lacks {', '.join(missing)}")
    try:
        sizes = [int(x) for x in header["tree_sizes"].split()]
        n_features = int(header["max_feature_idx"]) + 1
    except ValueError:
        raise bad("tree_sizes or max_feature_idx is not a number") from None
    if len(header["feature_names"].split()) != n_features:
        raise bad(f"{len(header['feature_names'].split())} feature names for {n_features} features")
    pos = len(head) + len(sep)
    for i, size in enumerate(sizes):
        block = text[pos:pos + size]
        if len(block) < size or not block.startswith(f"Tree={i}\n"):
            raise bad(f"tree {i} of {len(sizes)} is missing or cut")
        _check_tree(block, i, n_features, bad)
        pos += size
    rest = text[pos:]
    if not rest.startswith("end of trees"):
        raise bad("no 'end of trees' after the last tree")
    last = rest.rstrip("\n").rsplit("\n", 1)[-1]
    if "\nend of parameters\n" not in rest or not last.startswith("pandas_categorical:"):
        raise bad("the file ends before its parameters and closing line")
    try:
        json.loads(last.partition(":")[2])
    except json.JSONDecodeError:
        raise bad("its closing pandas_categorical line is cut") from None


def _check_tree(block: str, i: int, n_features: int, bad: Any) -> None:
    fields = dict(line.partition("=")[::2] for line in block.strip("\n").split("\n")[1:] if "=" in line)
    try:
        leaves = int(fields["num_leaves"])
        values = fields["leaf_value"].split()
        if leaves > 1:
            splits = [int(x) for x in fields["split_feature"].split()]
            nodes = [fields[k].split() for k in ("threshold", "left_child", "right_child", "decision_type")]
    except (KeyError, ValueError):
        raise bad(f"tree {i} lacks num_leaves, leaf_value or its split arrays") from None
    if leaves < 1 or len(values) != leaves:
        raise bad(f"tree {i} has {len(values)} leaf values for {leaves} leaves")
    if leaves > 1:
        if any(len(n) != leaves - 1 for n in (splits, *nodes)):
            raise bad(f"tree {i}: its split arrays do not have {leaves - 1} nodes")
        if any(f < 0 or f >= n_features for f in splits):
            raise bad(f"tree {i} splits on a feature the model does not have")


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
    from crmlab.utils import temp_name_beside

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name_beside(path, "")  # the name is held before the folder exists (see temp_name_beside)
    try:
        tmp.mkdir()
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
        sums = {**files, MANIFEST: _sha256(tmp / MANIFEST)}
        (tmp / CHECKSUMS).write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())), encoding="utf-8")
        replace_folder(tmp, path)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        from crmlab.utils import disk_full, is_disk_full

        if is_disk_full(exc):
            needed = (len(json.dumps(params, default=_json_default)) + sum(len(t.encode()) for t in (texts or {}).values())
                      + sum(np.asarray(a).nbytes for a in (arrays or {}).values()))
            raise disk_full(exc, path, needed=needed) from None
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


def _read_checksums(path: Path) -> dict[str, str]:
    """``checksums.sha256`` (``sha256sum`` format: ``<hex>  <name>`` per line), after checking the
    manifest's own line: the manifest is trusted only once its checksum matches."""
    cpath = path / CHECKSUMS
    if not cpath.is_file():
        try:
            old = json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("format_version")
        except (OSError, ValueError, AttributeError):
            old = None
        if isinstance(old, int) and old < FORMAT_VERSION:
            raise ModelError(f"{path}: bundle format {old} from an older crmlab, whose {MANIFEST} no checksum "
                             f"covers; this crmlab reads format {FORMAT_VERSION}: retrain")
        raise ModelError(f"{cpath}: missing; the bundle cannot be checked: retrain or restore it")
    sums: dict[str, str] = {}
    try:
        lines = cpath.read_bytes().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{cpath}: unreadable ({exc}); retrain or restore it") from None
    for n, line in enumerate(lines, 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or not name or Path(name).name != name:
            raise ModelError(f"{cpath}: line {n} is not '<sha256>  <file name>'; retrain or restore it")
        sums[name] = digest
    mpath = path / MANIFEST
    if MANIFEST not in sums or _sha256(mpath) != sums[MANIFEST]:
        raise ModelError(f"{mpath}: modified since export (checksum mismatch with {CHECKSUMS}); retrain or restore it")
    return sums


def verified_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of the bundle in ``path`` once its checksum matches ``checksums.sha256`` (what the
    report reads: a manifest edited by hand is refused with a ModelError, as scoring refuses it)."""
    path = Path(path)
    _read_checksums(path)
    manifest = _read_json(path / MANIFEST, "the bundle manifest")
    if not isinstance(manifest, dict):
        raise ModelError(f"{path / MANIFEST}: expected a JSON object, got {type(manifest).__name__}; retrain or restore it")
    _check_manifest(path, manifest)
    return manifest


def verified_file(path: str | Path, manifest: dict[str, Any], name: str) -> Path:
    """``path/name`` after checking that the (verified) manifest lists it and its checksum matches."""
    f = Path(path) / name
    digest = manifest.get("files", {}).get(name)
    if digest is None:
        raise ModelError(f"{f}: not a file of this bundle (its {MANIFEST} does not list it)")
    if not f.is_file() or _sha256(f) != digest:
        raise ModelError(f"{f}: missing or modified since export (checksum mismatch); retrain or restore it")
    return f


def _check_array_sizes(npz_path: Path) -> None:
    """Refuse an array file whose ``.npy`` headers claim more data than the file holds (a crafted header
    would otherwise make NumPy try to allocate it: an out-of-memory error instead of a ModelError).
    ``np.savez`` stores each array uncompressed, so each member is its header plus exactly its data."""
    with zipfile.ZipFile(npz_path) as zf:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise ModelError(f"{npz_path}: member {info.filename!r} is compressed, which crmlab never writes; "
                                 "retrain or restore the bundle")
            with zf.open(info) as fh:
                try:
                    version = np.lib.format.read_magic(fh)
                    read = {(1, 0): np.lib.format.read_array_header_1_0,
                            (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                    if read is None:
                        raise ValueError(f"format version {version}, which np.savez does not write for crmlab's arrays")
                    shape, _, dtype = read(fh)
                except ValueError as exc:
                    raise ModelError(f"{npz_path}: member {info.filename!r} is not a NumPy array ({exc}); retrain or "
                                     "restore the bundle") from None
                header = fh.tell()
            if dtype.hasobject:
                raise ModelError(f"{npz_path}: refused, it holds pickled objects (member {info.filename!r} of "
                                 f"{dtype}); retrain or restore the bundle")
            n = math.prod(shape) * dtype.itemsize
            if header + n != info.file_size:
                raise ModelError(f"{npz_path}: member {info.filename!r} claims shape {tuple(shape)} of {dtype} "
                                 f"({n:,} bytes) but holds {info.file_size - header:,}; retrain or restore the bundle")


def manifest_sha256(path: str | Path) -> str:
    """The checksum of a bundle's manifest: recorded in the registry at registration, checked when the
    champion is downloaded (an artifact store edited with fresh checksums still differs from it)."""
    return _sha256(Path(path) / MANIFEST)


def load_bundle(path: str | Path, *, pipeline: str | None = None) -> Bundle:
    """Load a bundle written by :func:`write_bundle`, checking format, pipeline and checksums.

    Every JSON file of the bundle is parsed here and every text file decoded, so a file edited by
    hand (its checksum updated to match) is refused with a ModelError naming the file, not a
    traceback later."""
    path = Path(path)
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise ModelError(f"{path}: no model bundle here (missing {MANIFEST}); train the pipeline first")
    sums = _read_checksums(path)
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
        if sums.get(name) != digest:
            raise ModelError(f"{path / CHECKSUMS}: does not agree with {MANIFEST} on {name}; retrain or restore the "
                             "bundle")
        if not f.is_file() or _sha256(f) != digest:
            raise ModelError(f"{f}: missing or modified since export (checksum mismatch); retrain or restore it")
    extra = sorted(set(sums) - set(manifest["files"]) - {MANIFEST})
    if extra:
        raise ModelError(f"{path / CHECKSUMS}: lists {extra[0]!r}, which {MANIFEST} does not; retrain or restore it")
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
            _check_array_sizes(path / "arrays.npz")
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise ModelError(f"{path / 'arrays.npz'}: not a readable array file ({exc}); retrain or restore it") from None
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
