"""trackstore.pglocal: the private PostgreSQL server of tests and benchmarks starts configured and stops cleanly."""

from __future__ import annotations

import os

import pytest


def _postmaster_pid(pgdata) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a stopped child of ours that nobody reaped yet is not a server
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_cleanup_stops_the_restarted_server(tmp_path):
    """start() restarts a fresh server to enable prepared transactions; the handle must then name
    the new postmaster. It used to keep naming the stopped one, and cleanup() stopped the new one
    only while the old process was not yet reaped (zombie); otherwise the server stayed running
    and its folder was deleted under it."""
    pytest.importorskip("pgserver", reason="the postgres extra is not installed")
    import sqlalchemy as sa

    from trackstore import pglocal

    srv, url = pglocal.start(tmp_path / "pg")
    pgdata = tmp_path / "pg"
    pid = _postmaster_pid(pgdata)
    try:
        assert srv.get_pid() == pid
        engine = sa.create_engine(url)
        with engine.connect() as c:
            shown = {k: c.exec_driver_sql(f"SHOW {k}").scalar() for k in pglocal.SETTINGS}
        assert shown["max_prepared_transactions"] == str(pglocal.MAX_PREPARED_TRANSACTIONS)
        assert shown == pglocal.SETTINGS
        engine.dispose()
        assert _running(pid)
    finally:
        srv.cleanup()
    assert not _running(pid)
    assert not pgdata.exists()


def test_settings_can_be_left_at_the_defaults_and_are_applied_on_reuse(tmp_path):
    """settings={} keeps PostgreSQL's defaults; a later start() on the same folder applies SETTINGS."""
    pytest.importorskip("pgserver", reason="the postgres extra is not installed")
    from trackstore import pglocal

    pgdata = tmp_path / "pg"
    srv, _ = pglocal.start(pgdata, settings={}, cleanup_mode="stop")
    try:
        assert srv.psql("SHOW max_prepared_transactions;").split()[2] == "0"
        assert srv.psql("SHOW max_wal_size;").split()[2] == "1GB"
    finally:
        srv.cleanup()
    srv, _ = pglocal.start(pgdata)
    try:
        assert {k: srv.psql(f"SHOW {k};").split()[2] for k in pglocal.SETTINGS} == pglocal.SETTINGS
    finally:
        srv.cleanup()
    assert not pgdata.exists()
