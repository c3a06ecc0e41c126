"""Run one CPU-bound Python function in a forked child while the caller goes on (Linux only).

Parsing holds the GIL, so a thread cannot parse beside the main thread; a forked child can, on
the second core. The child inherits everything (the open document, the parsed skeleton) without
a copy, computes ``fn(*args)``, writes the result to an anonymous in-memory file and exits;
:meth:`Forked.result` waits for it and maps the file.

The result crosses as a protocol-5 pickle whose array data lies outside the pickle
("out-of-band"): the child writes each array's bytes once, and the parent's arrays are views of
the mapped file, not copies (36 MB AUT file: 17 MB in 0.01 s, where a pipe took 0.06 s and the
child waited for the parent to read). The pickle is read with
:class:`~trackstore.safe_pickle.RestrictedUnpickler`: numpy arrays and plain containers only.

Everything degrades to calling ``fn`` in this process: where ``fork`` is missing or unsafe
(Windows, macOS), when ``TRACKSTORE_FORK=0``, when the child cannot be started, and when it dies
or fails with anything but a :class:`~trackstore.errors.TrackstoreError` (the call is then
repeated here, so the error the user sees is the one a serial run gives).

The child must not touch what the parent's other threads own (a database connection, a
thread pool): it runs ``fn`` and leaves with ``os._exit``, running no ``atexit`` hook and no
destructor. ``peak_growth_mb`` records how much memory the last child added to what it
inherited, for benchmarks to count with the parent's own.
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
import signal
import sys
import tempfile
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import errors
from .safe_pickle import RestrictedUnpickler

__all__ = ["Forked", "enabled", "peak_growth_mb"]

#: Memory (MB) the last forked child added over what it shared with its parent at the fork
#: (its peak resident set minus its resident set when it started); 0 before any child.
peak_growth_mb = 0.0

_OK, _ERROR = 0, 1
_ALIGN = 64  # every array's bytes start on a cache line


def enabled() -> bool:
    """True where the work may go to a forked child: Linux, unless ``TRACKSTORE_FORK=0``."""
    return sys.platform.startswith("linux") and hasattr(os, "fork") and os.environ.get("TRACKSTORE_FORK") != "0"


def _status_mb(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - /proc is always there on Linux
        pass
    return 0.0


def _memory_file() -> int:
    """A new anonymous file (memfd; an unlinked temporary file where there is none)."""
    if hasattr(os, "memfd_create"):
        try:
            return os.memfd_create("trackstore-forked", os.MFD_CLOEXEC)
        except OSError:  # pragma: no cover - a kernel without memfd
            pass
    fd, name = tempfile.mkstemp(prefix="trackstore-forked-")  # pragma: no cover
    os.unlink(name)  # pragma: no cover
    return fd  # pragma: no cover


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _send(fd: int, obj: Any) -> None:
    """``obj`` as ``[count][offset, length]*[pickle][buffers]`` (little-endian int64 header)."""
    raws: list[memoryview] = []
    head = pickle.dumps(obj, protocol=5, buffer_callback=lambda b: raws.append(b.raw()))
    pieces = [head, *raws]
    table = np.zeros(1 + 2 * len(pieces), dtype="<i8")
    table[0] = len(pieces)
    at = -(-table.nbytes // _ALIGN) * _ALIGN
    for i, piece in enumerate(pieces):
        table[1 + 2 * i], table[2 + 2 * i] = at, piece.nbytes if isinstance(piece, memoryview) else len(piece)
        at = -(-(at + int(table[2 + 2 * i])) // _ALIGN) * _ALIGN
    _write_all(fd, table.tobytes())
    for i, piece in enumerate(pieces):
        os.lseek(fd, int(table[1 + 2 * i]), os.SEEK_SET)
        _write_all(fd, piece)


def _receive(fd: int) -> Any:
    """What :func:`_send` wrote; arrays are views of the mapped file (private, writable). The
    mapping, and the descriptor ``mmap`` keeps, live as long as any of them."""
    size = os.fstat(fd).st_size
    if size < 8:
        raise EOFError("nothing was sent")
    mm = mmap.mmap(fd, size, access=mmap.ACCESS_COPY)
    view = memoryview(mm)
    count = int.from_bytes(view[:8], "little")
    table = np.frombuffer(view, dtype="<i8", count=2 * count, offset=8).reshape(count, 2)
    if count < 1 or (table < 0).any() or int((table[:, 0] + table[:, 1]).max()) > size:
        raise EOFError("a damaged result")
    pieces = [view[int(a):int(a) + int(n)] for a, n in table.tolist()]
    return RestrictedUnpickler(io.BytesIO(pieces[0]), path="<forked result>", buffers=pieces[1:]).load()


def _child(fd: int, fn: Callable[..., Any], args: tuple) -> None:
    """The child's whole life: compute, send, leave (never returns)."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)  # Ctrl-C: the parent cleans up
        start = _status_mb("VmRSS:")
        try:
            payload: tuple = (_OK, fn(*args))
        except errors.TrackstoreError as e:
            payload = (_ERROR, type(e).__name__, e.msg, e.path, e.hint)
        _send(fd, (_status_mb("VmHWM:") - start, payload))
        code = 0
    except BaseException:  # anything else: the parent runs fn itself
        pass
    finally:
        os._exit(code)


class Forked:
    """``fn(*args)`` computed in a forked child; :meth:`result` returns it (or computes it here).

    Only :class:`~trackstore.errors.TrackstoreError` subclasses defined in
    :mod:`trackstore.errors` cross back as errors; ``fn`` must return numpy arrays and plain
    Python values (lists, dicts, tuples, numbers, strings, None). As a context manager, the child
    is stopped on leaving the block (:meth:`cancel`) if it still runs.

    Example:
        >>> job = Forked(sum, [1, 2, 3])  # doctest: +SKIP
        >>> job.result()  # doctest: +SKIP
        6
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, fork: bool = True):
        self.fn, self.args = fn, args
        self.pid: int | None = None
        self.fd: int | None = None
        self.forked = False
        if not (fork and enabled()):
            return
        try:
            fd = _memory_file()
        except OSError:  # pragma: no cover - no file descriptor left
            return
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns that a child of a threaded process may deadlock if it uses
                # what another thread held at the fork; this child only runs fn (see the module doc)
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError:
            os.close(fd)
            return
        if pid == 0:  # pragma: no cover - the child (its coverage is never collected)
            _child(fd, fn, args)
        self.pid, self.fd, self.forked = pid, fd, True

    def result(self) -> Any:
        """The result of ``fn(*args)``; raises what it raised (a TrackstoreError from the child)."""
        global peak_growth_mb
        if self.pid is None:
            return self.fn(*self.args)
        got = None
        try:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:  # pragma: no cover - reaped by someone else (SIGCHLD ignored)
                status = -1
            self.pid = None
            if status == 0:  # exited with code 0: it sent a whole result
                try:
                    got = _receive(self.fd)
                except (EOFError, ValueError, OSError, pickle.UnpicklingError):  # pragma: no cover
                    got = None
        finally:
            self.cancel()
        if got is None:  # the child died or failed unexpectedly: the same work, here
            return self.fn(*self.args)
        growth, payload = got
        peak_growth_mb = float(growth)
        if payload[0] == _OK:
            return payload[1]
        _, name, msg, path, hint = payload
        cls = getattr(errors, name, None)
        if not (isinstance(cls, type) and issubclass(cls, errors.TrackstoreError)):  # pragma: no cover
            return self.fn(*self.args)
        raise cls(msg, path=path, hint=hint)

    def __enter__(self) -> Forked:
        return self

    def __exit__(self, *exc) -> None:
        self.cancel()

    def cancel(self) -> None:
        """Stop the child if it still runs and free what it used; safe to call more than once."""
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (OSError, ChildProcessError):  # pragma: no cover - already gone
                pass
            self.pid = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
