"""Migrations: empty -> head, head -> base -> head, and the schema matches schema.py exactly."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from trackstore import db, schema
from trackstore.errors import SchemaVersionError
from trackstore.store import Store


def _tables(conn) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def test_migrations_upgrade_from_empty_creates_every_table(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        old, new = s.upgrade()
        assert old is None and new == db.head_revision()
        with s.engine.connect() as c:
            assert {"sessions", "frames", "positions", "tracks", "links", "metadata"} <= _tables(c)


def test_migrations_downgrade_to_base_and_back(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        s.upgrade()
        with s.engine.connect() as c, c.begin():
            db.downgrade(c, "base")
        with s.engine.connect() as c:
            assert _tables(c) & {"sessions", "positions"} == set()
            assert db.current_revision(c) is None
        s.upgrade()
        assert s.revision() == db.head_revision()


def test_migrations_autogenerate_diff_against_schema_is_empty(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        s.upgrade()
        with s.engine.connect() as c:
            import duckdb_sqlalchemy.alembic_impl  # noqa: F401

            ctx = MigrationContext.configure(c, opts={"compare_type": True})
            diff = [d for d in compare_metadata(ctx, schema.metadata)
                    if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]
        assert diff == []


def test_migrations_views_are_applied_after_upgrade(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        s.upgrade()
        with s.engine.connect() as c:
            views = set(sa.inspect(c).get_view_names())
    assert set(db.view_files("duckdb")) <= views


def test_migrations_outdated_store_refuses_to_write(tmp_path):
    with Store(tmp_path / "s.duckdb") as s:
        s.upgrade()
        with s.engine.connect() as c, c.begin():
            c.exec_driver_sql("UPDATE alembic_version SET version_num = '0000_older'")
    # an unknown revision: newer than us
    with Store(tmp_path / "s.duckdb") as s:
        try:
            with s.transaction():
                pass
        except SchemaVersionError as e:
            assert "newer than this trackstore" in str(e)
        else:
            raise AssertionError("expected SchemaVersionError")


def test_migrations_older_store_refuses_write_but_reads(tmp_path, monkeypatch):
    with Store(tmp_path / "s.duckdb") as s:
        s.upgrade()
    # this trackstore pretends to know a newer head: the store at 0001 is now "older"
    monkeypatch.setattr(db, "head_revision", lambda: "0099")
    with Store(tmp_path / "s.duckdb") as s:
        try:
            with s.transaction():
                pass
        except SchemaVersionError as e:
            assert "needs 0099 to write" in str(e)
            assert e.hint and "trackstore upgrade" in e.hint
        else:
            raise AssertionError("expected SchemaVersionError")
        assert s.list_sessions() == []  # reading still works
