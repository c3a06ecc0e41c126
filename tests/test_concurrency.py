"""Several processes on one DuckDB file: writers and readers wait for the lock; a kill leaves no trace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from trackstore.store import Store

TESTS = Path(__file__).parent

WRITER = r"""
import sys, time
sys.path.insert(0, sys.argv[4])
import examples
from trackstore.store import Store
path, name, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
s = Store(path, on_wait=lambda m: print("WAIT " + m, file=sys.stderr, flush=True))
with s.transaction() as c:
    s.write_session(c, examples.linear(), content_hash=name)
    print("WROTE", flush=True)
    time.sleep(hold)
s.close()
print("COMMITTED", flush=True)
"""

READER = r"""
import sys
from trackstore.store import Store
s = Store(sys.argv[1], read_only=True, on_wait=lambda m: print("WAIT " + m, file=sys.stderr, flush=True))
print(len(s.list_sessions()), flush=True)
"""


def _start(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *args, str(TESTS)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_line(proc: subprocess.Popen, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if text in line:
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {text!r}: {proc.stderr.read()}")
    raise AssertionError(f"timed out waiting for {text!r}")


def test_concurrency_second_writer_waits_then_succeeds(store_path):
    a = _start(WRITER, str(store_path), "a", "6.0")
    _wait_for_line(a, "WROTE")  # a holds the lock inside its transaction
    b = _start(WRITER, str(store_path), "b", "0")
    out_b, err_b = b.communicate(timeout=120)
    a.communicate(timeout=60)
    assert a.returncode == 0 and b.returncode == 0, err_b
    assert "WAIT Waiting for" in err_b and "in use by process" in err_b
    with Store(store_path) as s:
        assert sorted(r["content_hash"] for r in s.list_sessions()) == ["a", "b"]


def test_concurrency_reader_waits_for_writer(store_path):
    a = _start(WRITER, str(store_path), "a", "6.0")
    _wait_for_line(a, "WROTE")
    r = _start(READER, str(store_path))
    out_r, err_r = r.communicate(timeout=120)
    a.communicate(timeout=60)
    assert r.returncode == 0, err_r
    assert "WAIT Waiting for" in err_r
    assert out_r.strip() == "1"  # it saw the committed session, after the writer finished


def test_concurrency_kill_during_write_leaves_no_trace(store_path):
    first = _start(WRITER, str(store_path), "kept", "0")
    first.communicate(timeout=120)
    assert first.returncode == 0
    victim = _start(WRITER, str(store_path), "killed", "60")
    _wait_for_line(victim, "WROTE")  # rows written, not committed
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    with Store(store_path) as s:
        sessions = s.list_sessions()
        assert [r["content_hash"] for r in sessions] == ["kept"]
        kept = sessions[0]["session_id"]
        with s.connect() as c:
            for table in ("positions", "links", "frames", "tracks", "metadata"):
                n = c.exec_driver_sql(f"SELECT count(*) FROM {table} WHERE session_id <> ?", (kept,)).scalar()
                assert n == 0, table
        # and the store is still writable
        with s.transaction() as c:
            import examples

            s.write_session(c, examples.gap(), content_hash="after")
        assert len(s.list_sessions()) == 2


SAMPLE = TESTS / "data" / "idtrackerai" / "MoveR_SampleData" / "2602_ISA3080_Low_5.npy"


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "trackstore", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_concurrency_cli_ingest_waits_for_a_writer_then_succeeds(store_path):
    holder = _start(WRITER, str(store_path), "held", "6.0")
    _wait_for_line(holder, "WROTE")
    ing = _cli("ingest", str(SAMPLE), "--db", str(store_path))
    out, err = ing.communicate(timeout=180)
    holder.communicate(timeout=60)
    assert ing.returncode == 0, err
    assert f"Waiting for {store_path}: it is in use by process {holder.pid}" in err
    assert "1 ingested" in out
    with Store(store_path) as s:
        assert sorted(r["name"] for r in s.list_sessions()) == ["2602_ISA3080_Low_5", "linear"]


def test_concurrency_cli_query_waits_for_a_writer(store_path):
    holder = _start(WRITER, str(store_path), "held", "6.0")
    _wait_for_line(holder, "WROTE")
    q = _cli("query", "SELECT count(*) AS n FROM sessions", "--db", str(store_path), "--output", "csv")
    out, err = q.communicate(timeout=180)
    holder.communicate(timeout=60)
    assert q.returncode == 0, err
    assert "Waiting for" in err
    assert out.split() == ["n", "1"]  # it read after the writer committed
