"""Shared fixtures: fresh migrated stores (DuckDB, and PostgreSQL from pgserver), sample data."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from trackstore import pglocal
from trackstore.store import Store

DATA = Path(__file__).parent / "data"
_db_counter = itertools.count()


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


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory):
    """A real PostgreSQL 16 server for the whole test run (pgserver: initdb + start in < 1 s).

    ``TRACKSTORE_TEST_PG_URL`` points the tests at an existing server instead.
    """
    url = os.environ.get("TRACKSTORE_TEST_PG_URL")
    if url:
        yield url
        return
    pytest.importorskip("pgserver", reason="the postgres extra is not installed")
    srv, url = pglocal.start(tmp_path_factory.mktemp("pg"))
    yield url
    srv.cleanup()


@pytest.fixture
def pg_url(pg_server) -> str:
    """A URL to a new, empty database on the test server."""
    import sqlalchemy as sa

    name = f"t{os.getpid()}_{next(_db_counter)}"
    admin = sa.create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    yield pglocal.database_url(pg_server, name)


@pytest.fixture(params=["duckdb", "postgresql"])
def any_store(request, tmp_path):
    """A fresh migrated store on each backend: DuckDB file, then a real PostgreSQL database."""
    url = str(tmp_path / "store.duckdb") if request.param == "duckdb" else request.getfixturevalue("pg_url")
    s = Store(url)
    with s.transaction():
        pass
    yield s
    s.close()


@pytest.fixture
def data_dir() -> Path:
    """tests/data: the small real and synthetic files tests read."""
    return DATA
