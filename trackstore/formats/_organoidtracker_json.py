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
we meant to cut. Any doubt (a parse error, a misplaced sentinel) falls back to parsing the whole
document at once, so the pieces are an optimisation, never a different reading.

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


@dataclass
class Document:
    """A parsed ``.aut`` document whose big arrays are handed out in runs.

    Attributes:
        top: The document, with each split array holding :data:`SENTINEL` followed by its last
            elements (use :meth:`elements` to walk a split array whole).
        runs: ``{path: [(start, end), ...]}`` byte ranges of the runs removed from each array.
        raw: The file's bytes (kept until every run was parsed).
        loads: The parser that read the skeleton (the runs use the same).
    """

    top: Any
    runs: dict[tuple[str, ...], list[tuple[int, int]]] = field(default_factory=dict)
    raw: bytearray = field(default_factory=bytearray)
    loads: Callable[[bytes], Any] = _loads_std
    path: str = ""

    def release(self) -> None:
        """Drop the file's bytes (call once every split array was walked)."""
        self.raw = bytearray()

    def elements(self, *path: str) -> Iterator[list]:
        """Yield the array at ``path`` as consecutive lists of elements (runs, then the tail)."""
        node = self.top
        for p in path[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
        arr = node.get(path[-1]) if isinstance(node, dict) else None
        runs = self.runs.get(path)
        if runs:
            raw = self.raw
            view = memoryview(raw)
            for start, end in runs:
                # parse the run in place: the bytes around it (a "," "[" or blank before, a "," or blank
                # after) become "[" and "]" for the call, then get their old values back
                before, after = raw[start - 1], raw[end]
                raw[start - 1], raw[end] = 0x5B, 0x5D
                try:
                    part = self.loads(view[start - 1:end + 1])
                except ValueError as e:
                    raise RunFailed(str(e)) from e
                finally:
                    raw[start - 1], raw[end] = before, after
                yield part
            del view
            yield arr[1:]
        elif isinstance(arr, list):
            yield arr


def _find_value(raw: bytearray, key: str, start: int) -> re.Match | None:
    pat = re.compile(rb'"' + re.escape(key.encode()) + rb'"\s*:\s*\[\s*')
    return pat.search(raw, start)


def _plan(raw: bytearray, paths: list[tuple[str, ...]], chunk_bytes: int) -> list[tuple[tuple[str, ...], list, list]]:
    """Find the runs to cut out of each array: ``(path, starts, ends)`` per split array."""
    plans = []
    pos = 0
    for path in paths:
        m = _find_value(raw, path[-1], pos)
        if m is None:
            continue
        first = m.end()
        km = _FIRST_KEY.match(raw, first)
        if km is None:  # empty array, or elements that are not objects: leave it whole
            pos = first
            continue
        boundary = re.compile(rb'\}\s*,\s*(\{\s*"' + re.escape(km.group(1)) + rb'"\s*:)')
        starts, ends = [first], []
        p = first
        while True:
            b = boundary.search(raw, p + chunk_bytes)
            if b is None:
                break
            ends.append(b.start() + 1)
            starts.append(b.start(1))
            p = b.start(1)
        if ends:
            plans.append((path, starts, ends))
            pos = starts[-1]
        else:
            pos = first
    return plans


def _parse_split(raw: bytearray, paths: list[tuple[str, ...]], loads, chunk_bytes: int, name: str) -> Document:
    plans = _plan(raw, paths, chunk_bytes)
    if not plans:
        return Document(top=loads(raw), loads=loads, path=name)
    pieces, last = [], 0
    runs: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for path, starts, ends in plans:
        pieces += [bytes(raw[last:starts[0]]), _SENTINEL_JSON, b","]
        last = starts[-1]
        runs[path] = list(zip(starts[:-1], ends))
    pieces.append(bytes(raw[last:]))
    top = loads(b"".join(pieces))
    # every sentinel must be first in the array we meant to cut, and appear nowhere else
    found = 0
    for path in runs:
        node = top
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        if not (isinstance(node, list) and node and node[0] == SENTINEL):
            raise _Fallback
        found += 1
    if found != len(plans):
        raise _Fallback
    doc = Document(top=top, runs=runs, raw=raw, loads=loads, path=name)
    return doc


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
    def read() -> bytearray:
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                buf = bytearray(size)
                n = f.readinto(buf)
                if n != size:
                    del buf[n:]
                    buf += f.read()
                return buf
        except OSError as e:
            raise ParseError(f"cannot read the file: {e.strerror or e}", path=path) from e

    raw: bytearray | None = read()
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    parsers = [orjson.loads, _loads_std] if orjson is not None else [_loads_std]
    can_split = bool(split) and b'\\"' not in raw
    strategies = [(loads, s) for loads in parsers for s in ((True, False) if can_split else (False,))]
    for loads, do_split in strategies:
        if raw is None:  # an earlier strategy gave the bytes to its document
            raw = read()
        try:
            doc = (_parse_split(raw, split, loads, chunk_bytes, str(path)) if do_split
                   else Document(top=loads(raw), loads=loads, path=str(path)))
        except (_Fallback, ValueError, RecursionError):
            continue
        raw = None  # from here the document owns the bytes and drops them when its runs are read
        try:
            return consume(doc)
        except RunFailed:
            continue
    if raw is None:
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


def check_serializable(v: Any) -> bool:
    """True if ``v`` can be written as JSON by :func:`dumps`."""
    try:
        dumps(v)
    except (TypeError, ValueError):
        return False
    return True
