"""JSON in and out for OrganoidTracker ``.aut`` files: big documents parsed in pieces.

An ``.aut`` file is one JSON document whose bulk is one or two long arrays (v2 ``positions`` and
``tracks``; v1 ``links.nodes`` and ``links.links``). Parsing it whole builds every coordinate as
Python objects at once (7x the file size in memory) and lets the garbage collector crawl over
millions of containers. Instead we cut those arrays into runs of whole elements, parse each run on
its own and hand it to the caller, who turns it into numpy columns before the next run is parsed.

How the cuts stay correct: an element boundary is found by a regular expression (``}``, ``,``,
``{"<first key>":``) only in files without an escaped quote, where no string can contain a quote,
so the ``"`` before the key must open a string and the match lies outside strings. A match nested
deeper than the array's own elements leaves a run with unbalanced brackets, which fails to parse.
The rest of the document (the "skeleton": top-level keys, the final run of each array) is parsed
with a sentinel string in place of each removed run; the sentinel must then sit first in the arrays
we meant to cut. Any doubt (a parse error, a misplaced sentinel, an escaped quote in any piece)
falls back to parsing the whole document at once, so the pieces are an optimisation, never a
different reading.

The file is not read whole for the pieces: the cuts are found by searching small windows of it,
and each run's bytes are read when the run is parsed, into one buffer reused from run to run, so
only one run's bytes are in memory at a time (a 36 MB file held whole was a third of the reader's
peak). Keys are found with ``bytes.find`` before a regular expression is tried, and the search for
an array's cuts ends at the next array's key (see :func:`_plan`). One array's runs may be walked by
a forked child (``_organoidtracker_read``) while the parent walks another's: the child reads them
through a descriptor of its own, as a fork shares the file offset (see :meth:`_File._seek`).

orjson is used when installed; files that only the standard library reads (bare ``NaN`` /
``Infinity`` tokens, written by OrganoidTracker without orjson) are parsed with :mod:`json`.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParseError

try:  # optional: about 5x faster than the standard library on these files
    import orjson
except ImportError:  # pragma: no cover - exercised only where orjson is missing
    orjson = None

SENTINEL = "\x00trackstore:removed-run\x00"
_SENTINEL_JSON = json.dumps(SENTINEL).encode()
#: Bytes of elements per parsed run: small enough for bounded memory, big enough to amortise calls.
CHUNK_BYTES = 512_000
_FIRST_KEY = re.compile(rb'\{\s*"([^"\\]*)"\s*:')


class _Fallback(Exception):
    """The pieces could not be trusted: parse the whole document instead."""


def _loads_std(data) -> Any:
    return json.loads(data if isinstance(data, (bytes, bytearray, str)) else bytes(data))


@contextmanager
def gc_paused():
    """Pause the cyclic garbage collector (JSON trees have no cycles; collecting them is pure cost)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _File:
    """Random access to a file's bytes by offset, with regular-expression search."""

    #: Bytes read per search window at first (doubled while nothing is found, up to 16 MB).
    WINDOW = 1 << 16
    #: A match ending this close to the end of a window may be cut short: the window grows instead.
    EDGE = 4096

    def __init__(self, path: Path):
        self.f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.size = os.fstat(self.f.fileno()).st_size
        self._buf = bytearray()
        self._pid = os.getpid()

    def close(self) -> None:
        self.f.close()

    def _seek(self, pos: int) -> None:
        if self._pid != os.getpid():
            # a forked child (see _organoidtracker_read): parent and child would move one shared
            # file offset, so the child reads through a file of its own, the same file for sure
            self.f = open(f"/proc/self/fd/{self.f.fileno()}", "rb")  # noqa: SIM115 - the child exits
            self._pid = os.getpid()
        self.f.seek(pos)

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` (fewer only if the file shrank)."""
        self._seek(start)
        return self.f.read(max(end - start, 0))

    def run(self, start: int, end: int) -> memoryview | None:
        """Bytes ``[start - 1, end + 1)`` as the JSON array ``[`` ... ``]`` (the outer two bytes
        replaced), in a buffer reused from call to call: the view is valid until the next call.
        None if the file changed (fewer bytes) or the bytes hold an escaped quote."""
        n = end - start + 2
        if len(self._buf) < n:
            self._buf = bytearray(n + (n >> 3))  # room for the next, slightly longer run
        buf = self._buf
        self._seek(start - 1)
        with memoryview(buf) as view:
            got = self.f.readinto(view[:n])
        if got != n or _escaped_quote(buf, n):
            return None
        buf[0], buf[n - 1] = 0x5B, 0x5D
        return memoryview(buf)[:n]

    def search(self, pattern: re.Pattern, pos: int, literal: bytes = b"",
               stop: tuple[re.Pattern, bytes, int] | None = None) -> tuple[re.Match, int] | None:
        """The first match at or after ``pos``: ``(match, offset of the match's buffer)``, or None.

        ``literal``, if given, is how every match begins: candidates are found with ``bytes.find``
        (a fast substring search) and only they are tried with the regular expression.

        ``stop`` is ``(expression, its literal, since)``: None is returned if the expression
        matches before the match, anywhere from ``since`` on. The stretch from ``since`` to ``pos``
        is only searched when no match is in the first window (the match is not close by)."""
        window = self.WINDOW
        gap = stop is not None and stop[2] < pos  # a stretch before pos to look at, if need be
        while pos < self.size:
            end = min(pos + window, self.size)
            buf = self.read(pos, end)
            m = _first(pattern, buf, literal, len(buf))
            if stop is not None and _first(stop[0], buf, stop[1], len(buf) if m is None else m.start()):
                return None
            if m is not None and (end == self.size or m.end() <= len(buf) - self.EDGE):
                return m, pos
            if gap:  # no match close by: is the next key in the stretch skipped?
                gap = False
                skipped = self.read(stop[2], pos + self.EDGE)
                if _first(stop[0], skipped, stop[1], len(skipped)):
                    return None
            if end == self.size:
                return None
            if m is None:  # go on, keeping an overlap for a match across the window's end
                pos = end - self.EDGE
            window = min(window * 2, 1 << 24)
        return None


def _escaped_quote(buf: bytes | bytearray, n: int) -> bool:
    """True if ``buf[:n]`` holds ``\\"`` (a backslash before a quote).

    Each backslash is found with a one-byte search (memchr, many GB/s; backslashes are rare in these
    files) and its next byte looked at; searching for the two bytes at once was 10x slower, as the
    quote is everywhere in JSON."""
    i = buf.find(b"\\", 0, n)
    while i >= 0:
        if i + 1 < n and buf[i + 1] == 0x22:
            return True
        i = buf.find(b"\\", i + 1, n)
    return False


def _first(pattern: re.Pattern, buf: bytes, literal: bytes, before: int) -> re.Match | None:
    """The first match of ``pattern`` in ``buf`` that starts before ``before``."""
    if not literal:
        m = pattern.search(buf)
        return m if m is not None and m.start() < before else None
    i = buf.find(literal, 0, before + len(literal))
    while 0 <= i < before:
        m = pattern.match(buf, i)
        if m is not None:
            return m
        i = buf.find(literal, i + 1, before + len(literal))
    return None


def _parent(doc: Any, path: tuple[str, ...]) -> dict | None:
    """The object holding the last key of ``path`` (None if the path leads elsewhere)."""
    node = doc
    for k in path[:-1]:
        node = node.get(k) if isinstance(node, dict) else None
    return node if isinstance(node, dict) else None


@dataclass
class Document:
    """A parsed ``.aut`` document whose big arrays are handed out in runs.

    Attributes:
        top: The document, with each split array holding :data:`SENTINEL` followed by its last
            elements (use :meth:`elements` to walk a split array whole).
        runs: ``{path: [(start, end), ...]}`` byte ranges of the runs removed from each array.
        source: The open file the runs are read from (closed by :meth:`release`).
        loads: The parser that read the skeleton (the runs use the same).
    """

    top: Any
    runs: dict[tuple[str, ...], list[tuple[int, int]]] = field(default_factory=dict)
    source: _File | None = None
    loads: Callable[[bytes], Any] = _loads_std
    path: str = ""

    def release(self) -> None:
        """Close the file (call once every split array was walked)."""
        if self.source is not None:
            self.source.close()
            self.source = None

    def elements(self, *path: str) -> Iterator[list]:
        """Yield the array at ``path`` as consecutive lists of elements (runs, then the tail)."""
        parent = _parent(self.top, path)
        arr = parent.get(path[-1]) if parent is not None else None
        runs = self.runs.get(path)
        if runs:
            for start, end in runs:
                # the run with the bytes around it (a "," "[" or blank before, a "," or blank after)
                # read as "[" and "]": a JSON array of the run's elements
                view = self.source.run(start, end)
                if view is None:
                    raise RunFailed("the file changed, or a run holds an escaped quote")
                try:
                    part = self.loads(view)
                except ValueError as e:
                    raise RunFailed(str(e)) from e
                finally:
                    view.release()
                yield part
                del part  # freed before the next run is read
            yield arr[1:]
        elif isinstance(arr, list):
            yield arr


def _key_pattern(path: tuple[str, ...]) -> tuple[re.Pattern, bytes]:
    """The expression of ``"<key>": [`` for a split array, and its literal beginning ``"<key>"``."""
    key = b'"' + path[-1].encode() + b'"'
    return re.compile(re.escape(key) + rb'\s*:\s*\[\s*'), key


def _plan(src: _File, paths: list[tuple[str, ...]], chunk_bytes: int) -> list[tuple[tuple[str, ...], list, list]]:
    """Find the runs to cut out of each array: ``(path, starts, ends)`` per split array.

    The search for an array's next cut also stops at the next split array's key, so the end of
    one array does not cost a search through the rest of the file (v1 ``nodes`` end a third of the
    way through it). A key that only looks like the next array's stops the cutting early: the rest
    is parsed with the skeleton, the same reading, just less of it in runs."""
    plans = []
    pos = 0
    for i, path in enumerate(paths):
        expr, key = _key_pattern(path)
        found = src.search(expr, pos, literal=key)
        if found is None:
            continue
        first = found[1] + found[0].end()
        km = _FIRST_KEY.match(src.read(first, first + _File.EDGE))
        if km is None:  # empty array, elements that are not objects, or a key too long: leave it whole
            pos = first
            continue
        boundary = re.compile(rb'\}\s*,\s*(\{\s*"' + re.escape(km.group(1)) + rb'"\s*:)')
        stop = _key_pattern(paths[i + 1]) if i + 1 < len(paths) else None
        starts, ends = [first], []
        p = first
        while True:
            b = src.search(boundary, p + chunk_bytes, stop=stop and (*stop, p))
            if b is None:  # the end of the file, or the next array's key
                break
            m, at = b
            ends.append(at + m.start() + 1)
            starts.append(at + m.start(1))
            p = starts[-1]
        if ends:
            plans.append((path, starts, ends))
            pos = starts[-1]
        else:
            pos = first
    return plans


def _parse_split(src: _File, paths: list[tuple[str, ...]], loads, chunk_bytes: int, name: str) -> Document:
    plans = _plan(src, paths, chunk_bytes)
    if not plans:
        raise _Fallback  # nothing to cut: one parse of the whole document
    pieces, last = [], 0
    runs: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for path, starts, ends in plans:
        pieces += [src.read(last, starts[0]), _SENTINEL_JSON, b","]
        last = starts[-1]
        runs[path] = list(zip(starts[:-1], ends))
    pieces.append(src.read(last, src.size))
    skeleton = b"".join(pieces)
    del pieces
    if _escaped_quote(skeleton, len(skeleton)):
        raise _Fallback  # an escaped quote: a string may hold what looked like a cut
    top = loads(skeleton)
    del skeleton
    # every sentinel must be first in the array we meant to cut, and appear nowhere else
    found = 0
    for path in runs:
        parent = _parent(top, path)
        node = parent.get(path[-1]) if parent is not None else None
        if not (isinstance(node, list) and node and node[0] == SENTINEL):
            raise _Fallback
        found += 1
    if found != len(plans):
        raise _Fallback
    return Document(top=top, runs=runs, source=src, loads=loads, path=name)


class RunFailed(Exception):
    """A run of elements did not parse: the caller starts over with the next strategy."""


def parse(path: Path, split: list[tuple[str, ...]] | None, consume: Callable[[Document], Any], *,
          chunk_bytes: int | None = None) -> Any:
    """Parse an ``.aut``/``.json`` file and pass it to ``consume``; returns what ``consume`` returns.

    The arrays at the key paths ``split`` are handed out in runs (see the module doc). ``consume``
    may be called again with a whole-document parse if a run turns out not to parse.

    Raises:
        ParseError: The file cannot be read or is not valid JSON (the message gives line and column).
    """
    def read() -> bytes:
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ParseError(f"cannot read the file: {e.strerror or e}", path=path) from e

    def split_doc(loads) -> Document:
        try:
            src = _File(path)
        except OSError as e:
            raise ParseError(f"cannot read the file: {e.strerror or e}", path=path) from e
        try:
            return _parse_split(src, split, loads, chunk_bytes, str(path))
        except BaseException:
            src.close()
            raise

    chunk_bytes = chunk_bytes or CHUNK_BYTES
    parsers = [orjson.loads, _loads_std] if orjson is not None else [_loads_std]
    strategies = [(loads, s) for loads in parsers for s in ((True, False) if split else (False,))]
    for loads, do_split in strategies:
        try:
            doc = split_doc(loads) if do_split else Document(top=loads(read()), loads=loads, path=str(path))
        except (_Fallback, ValueError, RecursionError):
            continue
        try:
            return consume(doc)
        except RunFailed:
            continue
        finally:
            doc.release()
    raw = read()
    try:
        json.loads(raw)
    except UnicodeDecodeError as e:
        raise ParseError(f"not UTF-8 text (byte {e.start})", path=path) from e
    except json.JSONDecodeError as e:
        raise ParseError(f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}", path=path) from e
    except RecursionError as e:
        raise ParseError("JSON nested too deeply", path=path) from e
    raise ParseError("not valid JSON", path=path)  # pragma: no cover - json accepted what the others refused


# ---------------------------------------------------------------------------- writing
def _nan_to_none(v: Any) -> Any:
    """A copy of a JSON tree with NaN/inf floats as None and numpy values as Python ones (stdlib path)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, np.ndarray):
        return _nan_to_none(v.tolist())
    if isinstance(v, np.generic):
        return _nan_to_none(v.item())
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_nan_to_none(x) for x in v]
    return v


def dumps(obj: Any) -> bytes:
    """Compact JSON (orjson's spelling): NaN and infinities become ``null``, never bare tokens."""
    if orjson is not None:
        return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(_nan_to_none(obj), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


#: Bytes of JSON per piece written while the next is dumped.
PIECE_BYTES = 1 << 20


class _Writer:
    """Writes pieces to a file on a second thread (a write releases the GIL), at most two waiting."""

    def __init__(self, f):
        from concurrent.futures import ThreadPoolExecutor

        self.f = f
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="trackstore-write")
        self.pending: list = []

    def write(self, piece) -> None:
        while len(self.pending) >= 2:
            self.pending.pop(0).result()  # raises the write's OSError here
        self.pending.append(self.pool.submit(self.f.write, piece))

    def close(self) -> None:
        """Wait for the pieces still being written; raises the first failed write's error."""
        pending, self.pending = self.pending, []
        try:
            for fut in pending:
                fut.result()
        finally:
            self.pool.shutdown(wait=True)


def write_file(path: Path, doc: Any, arrays: list[tuple[str, ...]]) -> None:
    """Write ``doc`` to ``path`` as :func:`dumps` would, the arrays at the key paths ``arrays``
    dumped a piece at a time, each piece written while the next is dumped.

    The bytes are the same as ``dumps(doc)``: ``[a,b,c]`` is ``[`` + the elements' own JSON joined
    by ``,`` + ``]`` in the compact spelling. What is gained: the file is written during the dump
    instead of after it (a 36 MB file: 0.1 s of writing hidden), and the whole text is never in
    memory at once.
    """
    slots = []  # (the object holding the array, its key, the array, the mark's JSON in its place)
    for i, key_path in enumerate(arrays):
        parent = _parent(doc, key_path)
        if parent is not None and isinstance(parent.get(key_path[-1]), list):
            mark = f"{SENTINEL}{i}"
            slots.append((parent, key_path[-1], parent[key_path[-1]], dumps(mark)))
            parent[key_path[-1]] = mark
    try:
        skeleton = dumps(doc)
    finally:
        for parent, key, arr, _ in slots:
            parent[key] = arr
    at = sorted((skeleton.find(m), m, arr) for _, _, arr, m in slots)
    if any(i < 0 or skeleton.count(m) != 1 for i, m, _ in at):  # pragma: no cover - a value held the mark
        at, skeleton = [], dumps(doc)
    with open(path, "wb") as f:
        w = _Writer(f)
        try:
            pos = 0
            for i, m, arr in at:
                w.write(skeleton[pos:i] + b"[")
                _write_array(w, arr)
                w.write(b"]")
                pos = i + len(m)
            w.write(skeleton[pos:])
        finally:
            w.close()


def _write_array(w: _Writer, arr: list) -> None:
    """The elements of ``arr`` as JSON joined by ``,`` (no brackets), in pieces of ~PIECE_BYTES."""
    k, i, first = 16, 0, True
    while i < len(arr):
        piece = dumps(arr[i:i + k])  # "[...]": the elements are in between
        i += k
        if len(piece) > 2:
            if not first:
                w.write(b",")
            w.write(memoryview(piece)[1:-1])
            first = False
        k = max(1, int(k * PIECE_BYTES / max(len(piece), 1)))


def check_serializable(v: Any) -> bool:
    """True if ``v`` can be written as JSON by :func:`dumps`."""
    try:
        dumps(v)
    except (TypeError, ValueError):
        return False
    return True
