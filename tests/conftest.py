"""Shared fixtures. Tests are small, offline and write only under tmp_path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from crmlab.config import TrackingConfig

REPO = Path(__file__).resolve().parents[1]


def load_benchmark(name: str, module: str):
    """benchmarks/<name>.py imported as ``module`` (benchmarks/ is no package): the reference
    implementations and checks kept there."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(module, REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _no_stray_outputs(monkeypatch, tmp_path):
    """Run every test from its own tmp dir, so relative default paths (mlflow.db, outputs/) land there."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def _empty_mlflow_db(tmp_path_factory) -> Path:
    """An initialised, empty MLflow SQLite store, made once (creating one takes seconds)."""
    import mlflow

    folder = tmp_path_factory.mktemp("mlflow_template")
    db = folder / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def tracking(tmp_path, _empty_mlflow_db) -> TrackingConfig:
    """A TrackingConfig pointing at a fresh SQLite store and artifact folder under tmp_path."""
    db = tmp_path / "mlflow.db"
    shutil.copy(_empty_mlflow_db, db)
    return TrackingConfig(uri=f"sqlite:///{db}", artifact_dir=tmp_path / "mlartifacts", experiment="test")


def synthetic_project(root: Path, *, n_customers: int, seed: int, tables=("transactions",),
                      clv_holdout_weeks: int = 26) -> list[str]:
    """Write a synthetic CRM under ``root`` and return the ``--set`` overrides of a project on it:
    its own MLflow store, outputs and models folder under ``root``, and a CLV holdout of
    ``clv_holdout_weeks`` (the window is otherwise derived from the data)."""
    from crmlab.data.synth import write_synthetic

    paths = write_synthetic(root / "synth", n_customers=n_customers, seed=seed)
    return [
        f"project.tracking.uri=sqlite:///{root / 'mlflow.db'}",
        f"project.tracking.artifact_dir={root / 'mlartifacts'}",
        f"project.output.dir={root / 'outputs'}",
        f"project.output.models_dir={root / 'models'}",
        *(f"project.data.{t}.path={paths[t]}" for t in tables),
        "project.cleaning.max_date=2024-12-31",
        f"clv.holdout_weeks={clv_holdout_weeks}",
    ]


def empty_config_dir(root: Path) -> Path:
    """An existing, empty config folder under ``root``: every setting at its default. (A folder that
    does not exist is an error on the command line, so that a typo'd --config-dir never trains.)"""
    folder = root / "no-configs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def reseal_bundle(path: Path) -> None:
    """Recompute a bundle's checksums after a test edited its files, as a careful hand edit (or a forger)
    would: the manifest's ``files`` for the files it lists, then ``checksums.sha256`` over them and the
    manifest. A manifest that is not a JSON object with ``files`` is sealed as it is."""
    import hashlib
    import json

    def sha(p: Path) -> str:
        return hashlib.sha256(p.read_bytes()).hexdigest()

    path = Path(path)
    sums: dict[str, str] = {}
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        files = manifest["files"]
        for name in list(files):
            if (path / name).is_file():
                files[name] = sha(path / name)
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        sums.update({n: d for n, d in files.items() if isinstance(d, str) and Path(n).name == n})
    except (ValueError, KeyError, TypeError, AttributeError):
        old = (path / "checksums.sha256").read_text().splitlines() if (path / "checksums.sha256").exists() else []
        sums.update({line[66:]: line[:64] for line in old if line[66:] != "manifest.json"})
    sums["manifest.json"] = sha(path / "manifest.json")
    (path / "checksums.sha256").write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
