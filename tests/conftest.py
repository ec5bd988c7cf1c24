"""Shared fixtures. Tests are small, offline and write only under tmp_path."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_stray_outputs(monkeypatch, tmp_path):
    """Run every test from its own tmp dir, so relative default paths (mlflow.db, outputs/) land there."""
    monkeypatch.chdir(tmp_path)
