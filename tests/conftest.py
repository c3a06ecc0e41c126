"""Shared fixtures: a fresh migrated store per test, the repo's sample data."""

from __future__ import annotations

from pathlib import Path

import pytest

from trackstore.store import Store

DATA = Path(__file__).parent / "data"


@pytest.fixture
def store_path(tmp_path) -> Path:
    """Path of a new, migrated DuckDB store in tmp_path."""
    path = tmp_path / "store.duckdb"
    with Store(path) as s, s.transaction():
        pass  # creating the schema
    return path


@pytest.fixture
def store(store_path):
    """A fresh DuckDB store, migrated to head (closed after the test)."""
    s = Store(store_path)
    yield s
    s.close()


@pytest.fixture
def data_dir() -> Path:
    """tests/data: the small real and synthetic files tests read."""
    return DATA
