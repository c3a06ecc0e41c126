"""trackstore._forked: a function run in a forked child, its result (or error) brought back."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from trackstore import _forked
from trackstore._forked import Forked
from trackstore.errors import ParseError, UnsafeInputError

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork is used on Linux only")

PARENT = os.getpid()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _reaped(pid: int) -> bool:
    """True if the child ``pid`` is gone and was waited for (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def _values(n: int) -> dict:
    return {
        "pid": os.getpid(),
        "floats": np.linspace(-1.0, 1.0, n),
        "ints": np.arange(n, dtype=np.int64) * 3,
        "strided": np.arange(2 * n, dtype=np.float64)[::2],  # not contiguous: crosses inside the pickle
        "objects": np.array(["a", 1, None, 2.5, True, [1, {"k": "v"}], 2**70], dtype=object),
        "nan": float("nan"),
        "plain": [1, 2.5, None, "s", True, {"k": [1, (2, 3)]}],
    }


def test_the_result_crosses_whole_and_the_arrays_are_writable():
    fds = _open_fds()
    job = Forked(_values, 100_000)
    assert job.forked
    pid = job.pid
    got = job.result()
    want = _values(100_000)
    assert got["pid"] != PARENT  # computed in the child
    for k in ("floats", "ints", "strided"):
        assert got[k].dtype == want[k].dtype and np.array_equal(got[k], want[k])
        got[k][0] = 7  # a private copy: writable, and nobody else sees the write
    assert got["objects"].tolist() == want["objects"].tolist()
    assert [type(v) for v in got["objects"]] == [type(v) for v in want["objects"]]
    assert np.isnan(got["nan"]) and got["plain"] == want["plain"]
    assert _reaped(pid)
    del got  # the arrays were views of the mapped result: with them goes the mapping (and its descriptor)
    assert _open_fds() == fds
    assert _forked.peak_growth_mb > 0  # the child measured what it added (at least its result)


def _fail(kind: str):
    if kind == "parse":
        raise ParseError("tracks[3] is not an object", path="/data/x.aut", hint="fix it")
    if kind == "value":
        raise ValueError(f"plain error in {os.getpid()}")
    if kind == "die" and os.getpid() != PARENT:
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


def test_a_trackstore_error_in_the_child_is_raised_here_alike():
    job = Forked(_fail, "parse")
    assert job.forked
    pid = job.pid
    with pytest.raises(ParseError) as e:
        job.result()
    assert (e.value.msg, e.value.path, e.value.hint) == ("tracks[3] is not an object", "/data/x.aut", "fix it")
    assert str(e.value) == "/data/x.aut: tracks[3] is not an object"
    assert _reaped(pid)


def test_any_other_failure_is_repeated_here():
    """Another exception, or a child that dies, makes the parent run the function itself: the
    error the user sees is the one a serial run gives."""
    with pytest.raises(ValueError, match=f"plain error in {PARENT}$"):
        Forked(_fail, "value").result()
    job = Forked(_fail, "die")
    assert job.forked
    pid = job.pid
    assert job.result() == PARENT  # the child was killed; the parent computed it
    assert _reaped(pid)


def _sleep(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_cancel_stops_the_child_at_once():
    fds = _open_fds()
    job = Forked(_sleep, 30)
    pid = job.pid
    t0 = time.perf_counter()
    job.cancel()
    job.cancel()  # twice is harmless
    assert time.perf_counter() - t0 < 5
    assert not Path(f"/proc/{pid}").exists() and _reaped(pid)
    with Forked(_sleep, 30) as job:  # leaving the block stops it too
        pid = job.pid
    assert not Path(f"/proc/{pid}").exists() and _reaped(pid)
    assert _open_fds() == fds


def test_without_fork_the_function_runs_here(monkeypatch):
    monkeypatch.setenv("TRACKSTORE_FORK", "0")
    job = Forked(_sleep, 0)
    assert not job.forked and job.pid is None
    assert job.result() == PARENT
    monkeypatch.delenv("TRACKSTORE_FORK")
    assert not Forked(_sleep, 0, fork=False).forked


def _a_path() -> Path:
    return Path("/tmp")


def test_the_result_is_read_by_the_restricted_unpickler():
    """Only numpy arrays and plain containers are built from what a child sent."""
    job = Forked(_a_path)
    pid = job.pid
    with pytest.raises(UnsafeInputError, match="pathlib"):
        job.result()
    assert _reaped(pid)
