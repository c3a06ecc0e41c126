"""PostgreSQL: a large session's links on a helper connection, committed with two-phase commit.

The helper must commit exactly when the main transaction commits: on success, on a failure of the
main transaction, on a failure of the helper itself, and after a process died between the two
commits (the next writer finishes it).
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import sqlalchemy as sa

import examples
from trackstore import _pgsplit
from trackstore import store as store_mod
from trackstore.model import compare_tables
from trackstore.store import Store


def _session(n_animals: int = 5, n_frames: int = 400, seed: int = 3):
    rng = np.random.default_rng(seed)
    f, a = np.meshgrid(np.arange(n_frames), np.arange(n_animals), indexing="xy")
    f, a = f.ravel(), a.ravel()  # track-major: animal 0's frames, then animal 1's, ...
    from trackstore.model import SessionInfo, TrackTables

    t = TrackTables.from_columns(frame=f, x=rng.normal(size=f.size), y=rng.normal(size=f.size), track_id=a,
                                 session=SessionInfo(name="split", frame_interval=0.5, time_unit="second"))
    same = a[1:] == a[:-1]
    idx = np.arange(f.size)
    t.links = {"source_id": idx[:-1][same], "target_id": idx[1:][same]}
    t.add_meta("position", "score", rng.random(f.size), owners=np.arange(f.size))
    return t


def _prepared(url: str) -> list[str]:
    e = sa.create_engine(url)
    with e.connect() as c:
        gids = list(c.exec_driver_sql(
            "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()").scalars())
    e.dispose()
    return gids


def _wait_for_dead_clients(url: str, timeout: float = 60.0) -> None:
    """Wait until no other client backend is connected to the database: a killed client's backends
    end only when they next read from its socket, after whatever they were running (a COPY, a
    PREPARE TRANSACTION), which on a loaded machine takes longer than any fixed pause."""
    import time

    e = sa.create_engine(url, isolation_level="AUTOCOMMIT")  # a fresh activity snapshot per query
    deadline = time.monotonic() + timeout
    try:
        with e.connect() as c:
            while c.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").scalar():
                assert time.monotonic() < deadline, "the killed writer's backends are still running"
                time.sleep(0.05)
    finally:
        e.dispose()


def _count(s: Store, table: str) -> int:
    with s.connect() as c:
        return int(c.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar())


@pytest.fixture
def split(monkeypatch, pg_url):
    """Every session with at least one link goes through a helper transaction (in a migrated
    store: a helper cannot see tables that the main transaction is still creating)."""
    monkeypatch.setattr(_pgsplit, "MIN_LINKS", 1)
    monkeypatch.setattr(store_mod, "_LINK_CHUNK", 97)  # many ranges, shared by both connections
    with Store(pg_url) as s:
        s.upgrade()


def test_the_test_server_allows_prepared_transactions(pg_url):
    with Store(pg_url) as s, s.transaction() as c:
        assert _pgsplit.available(c)


def test_split_ingest_gives_the_same_session(pg_url, tmp_path, split):
    t = _session()
    before = _pgsplit.committed_helpers
    with Store(pg_url) as s:
        with s.transaction() as c:
            sid = s.write_session(c, t, content_hash="h1")
        assert _pgsplit.committed_helpers == before + 1  # the links did go through the helper
        back = s.read_session(sid)
        assert _count(s, "links") == t.n_links
    with Store(tmp_path / "d.duckdb") as d:  # the one-connection path, for reference
        with d.transaction() as c:
            d.write_session(c, t, content_hash="h1")
        with d.connect() as c:
            ref = c.exec_driver_sql("SELECT link_id, source_id, target_id, frame_gap, time_gap, dx, dy, track_id, "
                                    "frame, step_length FROM links ORDER BY link_id").fetchall()
    with Store(pg_url) as s, s.connect() as c:
        got = c.exec_driver_sql("SELECT link_id, source_id, target_id, frame_gap, time_gap, dx, dy, track_id, "
                                "frame, step_length FROM links ORDER BY link_id").fetchall()
    assert got == ref  # every column of every link, bit for bit
    assert compare_tables(t, back) == []
    assert _prepared(pg_url) == []


def test_split_on_every_example(pg_url, split):
    with Store(pg_url) as s:
        for i, make in enumerate(examples.ALL.values()):
            t = make()
            with s.transaction() as c:
                sid = s.write_session(c, t, content_hash=f"e{i}")
            assert compare_tables(t, s.read_session(sid)) == []
    assert _prepared(pg_url) == []


def test_main_failure_rolls_the_helper_back(pg_url, split, monkeypatch):
    def boom(self, sid, blocks):
        raise RuntimeError("metadata went wrong")

    monkeypatch.setattr(store_mod._PostgresBulk, "insert_metadata", boom)
    with Store(pg_url) as s:
        with pytest.raises(RuntimeError, match="metadata went wrong"):
            with s.transaction() as c:
                s.write_session(c, _session(), content_hash="h1")
        assert _count(s, "sessions") == 0 and _count(s, "links") == 0 and _count(s, "positions") == 0
    assert _prepared(pg_url) == []


def test_a_failed_helper_leaves_the_links_to_the_main_transaction(pg_url, split, monkeypatch):
    real_on = store_mod._PostgresBulk.on

    def failing_on(pg):
        b = real_on(pg)
        real_copy = b._copy_links
        done = []

        def copy_links(sid, cols):  # the helper copies one range, then breaks on the next
            if done:
                raise RuntimeError("helper broke")
            done.append(real_copy(sid, cols))

        b._copy_links = copy_links
        return b

    monkeypatch.setattr(store_mod._PostgresBulk, "on", staticmethod(failing_on))
    t = _session()
    before = _pgsplit.committed_helpers
    with Store(pg_url) as s:
        with s.transaction() as c:
            sid = s.write_session(c, t, content_hash="h1")
        assert _pgsplit.committed_helpers == before
        assert compare_tables(t, s.read_session(sid)) == []
        with s.connect() as c:  # every link exactly once: the helper's ranges were copied again
            ids = c.exec_driver_sql("SELECT link_id FROM links ORDER BY link_id").scalars().all()
        assert ids == list(range(t.n_links))
    assert _prepared(pg_url) == []


def test_both_connections_copy_links(pg_url, split, monkeypatch):
    """The ranges are shared: the helper takes some, the main transaction the rest after its positions."""
    took = {"helper": 0, "main": 0}
    real = store_mod._PostgresBulk._copy_links

    def counting(self, sid, cols):
        took["helper" if threading.current_thread().name == "trackstore-helper" else "main"] += 1
        return real(self, sid, cols)

    monkeypatch.setattr(store_mod._PostgresBulk, "_copy_links", counting)
    t = _session(n_animals=20, n_frames=2000)  # 40 k links in 97-link ranges
    with Store(pg_url) as s:
        with s.transaction() as c:
            s.write_session(c, t, content_hash="h1")
        with s.connect() as c:
            ids = c.exec_driver_sql("SELECT link_id FROM links ORDER BY link_id").scalars().all()
    assert ids == list(range(t.n_links))
    assert took["helper"] > 0 and took["helper"] + took["main"] == -(-t.n_links // 97)


def _orphan_helper(s: Store, *, commit_main: bool, sid: int = 999):
    """What a process killed between the two commits leaves: a prepared helper holding one link."""
    conn = s.engine.connect()
    conn.begin()
    conn.exec_driver_sql("SELECT 1")

    def work(pg):
        pg.execute("INSERT INTO links (session_id, link_id, source_id, target_id, frame_gap) "
                   "VALUES (%s, 0, 0, 1, 1)", (sid,))

    h = _pgsplit.Helper(conn, work)
    assert h.wait()
    conn.exec_driver_sql(f"INSERT INTO frames (session_id, frame) VALUES ({sid}, 0)")
    if commit_main:
        conn.commit()
    else:
        conn.rollback()
    conn.close()
    h._dbapi.close()  # the process is gone: the prepared helper stays on the server
    return h.gid


@pytest.mark.parametrize("commit_main", [True, False])
def test_the_next_writer_finishes_an_interrupted_helper(pg_url, commit_main):
    with Store(pg_url) as s:
        with s.transaction():
            pass  # a migrated store
        gid = _orphan_helper(s, commit_main=commit_main)
    assert _prepared(pg_url) == [gid]
    with Store(pg_url) as s:
        with s.transaction():
            pass
        assert _prepared(pg_url) == []
        # the link is there exactly when its main transaction (the frames row) committed
        assert _count(s, "links") == _count(s, "frames") == (1 if commit_main else 0)


def test_upgrade_also_finishes_it(pg_url):
    with Store(pg_url) as s:
        s.upgrade()
        _orphan_helper(s, commit_main=True)
    with Store(pg_url) as s:
        s.upgrade()
        assert _prepared(pg_url) == []
        assert _count(s, "links") == 1


def test_a_running_main_transaction_is_left_alone(pg_url):
    with Store(pg_url) as s:
        s.upgrade()
        conn = s.engine.connect()
        conn.begin()
        h = _pgsplit.Helper(conn, lambda pg: pg.execute("SELECT 1"))
        assert h.wait()
        try:
            assert _pgsplit.recover(s.engine) == {}  # its main transaction is still open
            assert _prepared(pg_url) == [h.gid]
        finally:
            conn.commit()
            h.finish(True)
            conn.close()
        assert _prepared(pg_url) == []


def test_split_off_without_prepared_transactions(pg_url, split, monkeypatch):
    monkeypatch.setenv("TRACKSTORE_PG_SPLIT", "0")
    before = _pgsplit.committed_helpers
    t = _session()
    with Store(pg_url) as s:
        with s.transaction() as c:
            assert not _pgsplit.available(c)
            sid = s.write_session(c, t, content_hash="h1")
        assert compare_tables(t, s.read_session(sid)) == []
    assert _pgsplit.committed_helpers == before


def test_no_helper_before_postgresql_13(pg_url, monkeypatch):
    """pg_current_xact_id and pg_xact_status came in PostgreSQL 13: older servers use one connection."""
    with Store(pg_url) as s, s.transaction() as c:
        monkeypatch.setattr(c.dialect, "server_version_info", (12, 9))
        assert not _pgsplit.available(c)


KILLED_WRITER = r"""
import sys
import numpy as np
from trackstore.store import Store
from trackstore.model import SessionInfo, TrackTables
from trackstore import _pgsplit
_pgsplit.MIN_LINKS = 1
n_animals, n_frames = 40, 20000
f, a = np.meshgrid(np.arange(n_frames), np.arange(n_animals), indexing="xy")
f, a = f.ravel(), a.ravel()
t = TrackTables.from_columns(frame=f, x=f * 0.5, y=a * 1.0, track_id=a, session=SessionInfo(name="k"))
same = a[1:] == a[:-1]
idx = np.arange(f.size)
t.links = {"source_id": idx[:-1][same], "target_id": idx[1:][same]}
print("writing", flush=True)
with Store(sys.argv[1]) as s, s.transaction() as c:
    s.write_session(c, t, content_hash=sys.argv[2])
print("written", flush=True)
"""


@pytest.mark.parametrize("delay", [0.2, 0.6, 0.9, 1.0, 1.1, 1.3, 2.0])  # the write takes ~1 s
def test_a_kill_at_any_moment_leaves_all_or_nothing(pg_url, delay):
    """A writer using a helper transaction is killed (SIGKILL) at some moment of its write; after
    the next writer's recovery the session is either complete or absent, and nothing stays prepared."""
    import os
    import signal
    import subprocess
    import sys
    import time

    with Store(pg_url) as s:
        s.upgrade()
    p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, pg_url, f"k{delay}"], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "writing"
    time.sleep(delay)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    _wait_for_dead_clients(pg_url)  # the server noticed: what was not prepared is aborted
    with Store(pg_url) as s:
        with s.transaction():
            pass  # recovery
        n_sessions, n_pos, n_links = (_count(s, t) for t in ("sessions", "positions", "links"))
    assert _prepared(pg_url) == []
    assert (n_sessions, n_pos, n_links) in ((0, 0, 0), (1, 800000, 800000 - 40))
