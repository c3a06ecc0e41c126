"""Migrations: empty -> head, head -> base -> head, and the schema matches schema.py exactly."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from trackstore import db, schema
from trackstore.errors import SchemaVersionError
from trackstore.store import Store


@pytest.fixture(params=["duckdb", "postgresql"])
def empty_url(request, tmp_path):
    """An empty database on each backend."""
    return str(tmp_path / "s.duckdb") if request.param == "duckdb" else request.getfixturevalue("pg_url")


def _tables(conn) -> set[str]:
    return set(sa.inspect(conn).get_table_names())


def test_migrations_upgrade_from_empty_creates_every_table(empty_url):
    with Store(empty_url) as s:
        old, new = s.upgrade()
        assert old is None and new == db.head_revision()
        with s.engine.connect() as c:
            assert {"sessions", "frames", "positions", "tracks", "links", "metadata_blocks",
                    "metadata_values"} <= _tables(c)
            assert "metadata" in sa.inspect(c).get_view_names()  # the values with their keys


def test_migrations_downgrade_to_base_and_back(empty_url):
    with Store(empty_url) as s:
        s.upgrade()
        with s.engine.connect() as c, c.begin():
            db.downgrade(c, "base")
        with s.engine.connect() as c:
            assert _tables(c) & {"sessions", "positions"} == set()
            assert db.current_revision(c) is None
        s.upgrade()
        assert s.revision() == db.head_revision()


def test_revisions_read_without_alembic_agree_with_alembic(empty_url, tmp_path, monkeypatch):
    """The head and a store's revision, read from the files and the version table, are Alembic's
    answers: at an empty store, at the first revision and at head; and a history that is not one
    line is left to Alembic."""
    import duckdb_sqlalchemy.alembic_impl  # noqa: F401

    assert db.head_revision() == db._alembic_head()
    with Store(empty_url) as s:
        for target in (None, "0001", "head"):
            if target is not None:
                with s.engine.connect() as c, c.begin():
                    db.upgrade(c, target)
            with s.engine.connect() as c:
                assert db.current_revision(c) == MigrationContext.configure(c).get_current_revision(), target
                assert db.current_revision(c) == {None: None, "0001": "0001", "head": db.head_revision()}[target]
    # two heads in the files: not guessed
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    for name, rev, down in (("a.py", "a", None), ("b.py", "b", "a"), ("c.py", "c", "a")):
        (versions / name).write_text(f'revision = "{rev}"\ndown_revision = {down and repr(down)}\n')
    monkeypatch.setattr(db, "data_dir", lambda name: tmp_path / name)
    monkeypatch.setattr(db, "_alembic_head", lambda: "alembic decides")
    db.head_revision.cache_clear()
    try:
        assert db.head_revision() == "alembic decides"
    finally:
        db.head_revision.cache_clear()


def test_migrations_autogenerate_diff_against_schema_is_empty(empty_url):
    with Store(empty_url) as s:
        s.upgrade()
        with s.engine.connect() as c:
            import duckdb_sqlalchemy.alembic_impl  # noqa: F401

            ctx = MigrationContext.configure(c, opts={"compare_type": True})
            diff = [d for d in compare_metadata(ctx, schema.metadata)
                    if not (isinstance(d, tuple) and d[0] == "remove_table" and d[1].name == "alembic_version")]
        assert diff == []


def test_migrations_views_are_applied_after_upgrade(empty_url):
    with Store(empty_url) as s:
        s.upgrade()
        with s.engine.connect() as c:
            views = set(sa.inspect(c).get_view_names())
            dialect = c.dialect.name
    assert set(db.view_files(dialect)) <= views


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


def test_migrations_0001_store_upgrades_and_backfills_links(tmp_path):
    """A store made by the first release refuses writes, then `trackstore upgrade` fills the new columns."""
    from typer.testing import CliRunner

    import examples
    from trackstore.cli import app

    path = tmp_path / "old.duckdb"
    t = examples.division()
    with Store(path) as s:
        with s.engine.connect() as c, c.begin():
            db.upgrade(c, "0001")
            c.exec_driver_sql("INSERT INTO positions (session_id, position_id, frame, x, y, track_id, origin) "
                              "SELECT 1, i, f, x, y, tr, 'observed' FROM (SELECT unnest(?) AS i, unnest(?) AS f, "
                              "unnest(?) AS x, unnest(?) AS y, unnest(?) AS tr)",
                              (list(range(t.n_positions)), t.positions["frame"].tolist(), t.positions["x"].tolist(),
                               t.positions["y"].tolist(), t.positions["track_id"].tolist()))
            c.exec_driver_sql("INSERT INTO links (session_id, link_id, source_id, target_id, frame_gap) "
                              "SELECT 1, i, s, t, 1 FROM (SELECT unnest(?) AS i, unnest(?) AS s, unnest(?) AS t)",
                              (list(range(t.n_links)), t.links["source_id"].tolist(), t.links["target_id"].tolist()))
        needs = f"revision 0001; this trackstore needs {db.head_revision()} to write"
        with pytest.raises(SchemaVersionError, match=needs):
            with s.transaction():
                pass
    r = CliRunner().invoke(app, ["upgrade", "--db", str(path)])
    assert r.exit_code == 0, r.stderr
    assert f"from revision 0001 to {db.head_revision()}" in r.stdout
    with Store(path) as s, s.connect() as c:
        rows = c.exec_driver_sql("SELECT source_id, target_id, track_id, frame FROM links ORDER BY link_id").fetchall()
    tid, fr = t.positions["track_id"], t.positions["frame"]
    expected = [(a, b, int(tid[a]) if tid[a] == tid[b] else None, int(fr[a]))
                for a, b in zip(t.links["source_id"].tolist(), t.links["target_id"].tolist())]
    assert rows == expected
    assert any(r[2] is None for r in rows)  # the division links are between tracks


def test_migrations_0003_backfills_step_length(tmp_path):
    import examples

    path = tmp_path / "old.duckdb"
    t = examples.three_d()
    with Store(path) as s:
        with s.transaction() as c:
            s.write_session(c, t, content_hash="x")
        with s.engine.connect() as c, c.begin():
            db.downgrade(c, "0002")
        assert s.revision() == "0002"
        s.upgrade()
        with s.connect() as c:
            got = [r[0] for r in c.exec_driver_sql("SELECT step_length FROM links ORDER BY link_id").fetchall()]
    src, dst = t.links["source_id"], t.links["target_id"]
    d = np.stack([t.positions[k][dst] - t.positions[k][src] for k in ("x", "y", "z")])
    np.testing.assert_allclose(got, np.sqrt((d * d).sum(axis=0)), rtol=1e-15)


def test_migrations_0004_origin_enum_keeps_every_origin(empty_url):
    """0003 stored origin as text; 0004 turns it into the position_origin ENUM, values unchanged, and back."""
    import examples
    from trackstore.model import ORIGINS, compare_tables

    t = examples.gap()
    t.positions["origin"] = (np.arange(t.n_positions) % 3).astype(np.int8)  # observed, gap_closed, validated
    with Store(empty_url) as s:
        with s.transaction() as c:
            s.write_session(c, t, content_hash="x")
        with s.engine.connect() as c, c.begin():
            db.downgrade(c, "0003")
        with s.connect() as c:
            assert c.exec_driver_sql("SELECT count(DISTINCT origin) FROM positions").scalar() == 3
        s.upgrade()
        with s.connect() as c:
            got = [r[0] for r in c.exec_driver_sql("SELECT origin FROM positions ORDER BY position_id")]
            assert c.exec_driver_sql("SELECT count(*) FROM positions WHERE origin = 'gap_closed'").scalar() == \
                int((t.positions["origin"] == 1).sum())
        assert got == [ORIGINS[o] for o in t.positions["origin"]]
        assert compare_tables(t, s.read_session(1)) == []


def test_migrations_0005_origin_default(empty_url):
    """0005 gives positions.origin the default 'observed' (PostgreSQL COPYs may leave it out); 0004 has none."""
    insert = "INSERT INTO positions (session_id, position_id, frame) VALUES (1, {}, 0)"
    with Store(empty_url) as s:
        s.upgrade()
        with s.engine.connect() as c, c.begin():
            db.downgrade(c, "0004")
        with s.engine.connect() as c, pytest.raises(sa.exc.DBAPIError):  # NOT NULL, no default
            with c.begin():
                c.exec_driver_sql(insert.format(0))
        s.upgrade()
        with s.engine.connect() as c, c.begin():
            c.exec_driver_sql(insert.format(1))
            assert c.exec_driver_sql("SELECT origin FROM positions").scalars().all() == ["observed"]


def test_migrations_0006_metadata_blocks_keep_every_value(empty_url):
    """0006 moves metadata into metadata_blocks + metadata_values behind a 'metadata' view: every
    value, type, owner and order comes through the upgrade, and back through a downgrade."""
    import examples
    from trackstore.model import compare_tables

    t = examples.division()
    n = t.n_positions
    t.add_meta("position", "intensity", np.where(np.arange(n) % 3 == 0, np.nan, np.arange(n) * -0.5),
               owners=np.arange(n))
    mixed = np.empty(4, dtype=object)
    mixed[:] = [1, "a", None, [2.5, True]]  # one block, four value types
    t.add_meta("track", "label", mixed, owners=np.arange(4) % t.n_tracks)
    t.add_meta("session", "fps", 30.0)
    cols = "session_id, scope, owner_id, key, seq, vtype, v_int, v_float, v_bool, v_str, v_json"
    order = " ORDER BY session_id, seq, owner_id NULLS FIRST, vtype"
    with Store(empty_url) as s:
        with s.engine.connect() as c, c.begin():
            db.upgrade(c, "0005")
        with s.engine.connect() as c:
            assert "metadata" in _tables(c)  # still a table
        s.upgrade()
        with s.transaction() as c:
            s.write_session(c, t, content_hash="x", tags={"group": "a"})
        with s.connect() as c:
            before = c.exec_driver_sql(f"SELECT {cols} FROM metadata{order}").fetchall()
            assert {r[5] for r in before} >= {"int", "str", "null", "json", "float"}
        with s.engine.connect() as c, c.begin():
            db.downgrade(c, "0005")
        with s.engine.connect() as c:
            assert "metadata" in _tables(c) and "metadata_values" not in _tables(c)
            down = c.exec_driver_sql(f"SELECT {cols} FROM metadata{order}").fetchall()
        s.upgrade()
        with s.connect() as c:
            up = c.exec_driver_sql(f"SELECT {cols} FROM metadata{order}").fetchall()
        assert _same_rows(down, before) and _same_rows(up, before)
        assert compare_tables(t, s.read_session(1)) == []


def _same_rows(a, b) -> bool:
    """Rows equal, NaN equal to NaN."""
    def norm(r):
        return tuple("NaN" if isinstance(v, float) and v != v else v for v in r)
    return [norm(r) for r in a] == [norm(r) for r in b]


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


def test_migrations_missing_views_are_created_on_the_next_write(store_path):
    with Store(store_path) as s:
        with s.engine.connect() as c, c.begin():
            c.exec_driver_sql("DROP VIEW track_accelerations")
        with s.transaction():
            pass
        with s.engine.connect() as c:
            assert "track_accelerations" in sa.inspect(c).get_view_names()
