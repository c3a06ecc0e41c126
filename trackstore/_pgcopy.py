"""PostgreSQL ``COPY … FROM STDIN (FORMAT BINARY)`` payloads built with numpy, not row by row.

The binary COPY format is a header, then per row: int16 field count, and per field an int32
byte length (-1 for NULL) followed by the big-endian value, then an int16 -1 trailer. Every
column we load is fixed width (ints, floats, booleans, a few short category strings), so all
rows sharing one NULL pattern (and one category value) have the same layout: we build each such
group as one numpy structured array and emit its bytes. COPY accepts rows in any order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)

_KINDS = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "float8": ">f8", "bool": "?"}


@dataclass
class Column:
    """One column: ``values`` (numpy), its PostgreSQL ``kind``, and an optional NULL mask.

    For ``kind == "text"`` the values are small int codes into ``categories`` (a short list of
    strings, e.g. position origins).
    """

    values: np.ndarray
    kind: str
    null: np.ndarray | None = None
    categories: tuple[str, ...] = ()


#: Rows per piece of a streamed payload: ~25 MB for a 10-column table, small enough that the
#: server parses one piece while the next is built, large enough that numpy dominates.
CHUNK_ROWS = 1 << 18


def payload(columns: list[Column]) -> bytes:
    """The whole binary COPY stream for these columns (all the same length)."""
    return b"".join([HEADER, *_rows(columns), TRAILER])


def payload_chunks(columns: list[Column], rows: int | None = None) -> Iterator[bytes | memoryview]:
    """The binary COPY stream in pieces: the header, the rows in groups of at most ``rows``
    (default CHUNK_ROWS), the trailer. Row pieces are views of numpy buffers, not copies:
    ``tobytes()`` and joining cost ~0.7 s per 1.8 GB stream."""
    rows = rows or CHUNK_ROWS
    n = len(columns[0].values) if columns else 0
    yield HEADER
    for a in range(0, n, rows):
        part = columns if n <= rows else [
            Column(c.values[a:a + rows], c.kind, None if c.null is None else c.null[a:a + rows], c.categories)
            for c in columns]
        yield from _rows(part)
    yield TRAILER


def _rows(columns: list[Column]) -> list[memoryview]:
    """The rows of a binary COPY stream (no header, no trailer), as byte views of numpy buffers."""
    n = len(columns[0].values) if columns else 0
    ncol = len(columns)
    # one group key per row: NULL bits, then category codes
    key = np.zeros(n, dtype=np.int64)
    shift = 0
    for c in columns:
        if c.null is not None and c.null.any():  # a mask with no NULL (the usual case) adds nothing
            key |= c.null.astype(np.int64) << shift
        shift += 1
    for c in columns:
        if c.kind == "text":
            width = max(1, int(len(c.categories) - 1).bit_length())
            if c.values.any():
                key |= c.values.astype(np.int64) << shift
            shift += width
    if shift > 62:
        raise ValueError("too many nullable/text columns for one COPY group key")
    parts = []
    if n and key.min() == key.max():  # one layout for all rows (the usual case): no sort, no gathers
        groups = [slice(0, n)]
    else:
        order = np.argsort(key, kind="stable")
        bounds = np.flatnonzero(np.diff(key[order])) + 1
        starts = np.concatenate([[0], bounds]).astype(np.int64).tolist()
        ends = np.concatenate([bounds, [n]]).astype(np.int64).tolist()
        groups = [order[a:b] for a, b in zip(starts, ends) if a < b]
    for idx in groups:
        first = idx.start if isinstance(idx, slice) else idx[0]
        count = (idx.stop - idx.start) if isinstance(idx, slice) else len(idx)
        fields = [("n", ">i2")]
        fill = []
        for i, c in enumerate(columns):
            is_null = c.null is not None and bool(c.null[first])
            if is_null:
                fields.append((f"l{i}", ">i4"))
                fill.append((i, -1, None))
                continue
            if c.kind == "text":
                text = c.categories[int(c.values[first])].encode()
                fields.append((f"l{i}", ">i4"))
                if text:
                    fields.append((f"v{i}", f"S{len(text)}"))
                fill.append((i, len(text), text or None))
            else:
                dt = np.dtype(_KINDS[c.kind])
                fields += [(f"l{i}", ">i4"), (f"v{i}", dt)]
                fill.append((i, dt.itemsize, "values"))
        dtype = np.dtype(fields)
        # every constant byte (field count, lengths, category text) comes from one template row,
        # repeated as bytes; then only the value fields are written, one vectorized copy each
        template = np.zeros(1, dtype=dtype)
        template["n"] = ncol
        for i, length, what in fill:
            template[f"l{i}"] = length
            if what is not None and not isinstance(what, str):
                template[f"v{i}"] = what
        rec = np.empty(count, dtype=dtype)
        # repeated as raw bytes: a structured-scalar assignment walks the fields row by row (10x slower,
        # 0.7 s of the client's CPU per 9.4 M links, taken from the server on a 2-core machine)
        rec.view(np.uint8).reshape(count, dtype.itemsize)[:] = template.view(np.uint8)
        for i, _length, what in fill:
            if isinstance(what, str):  # "values"
                v = columns[i].values
                rec[f"v{i}"] = v[idx] if not isinstance(idx, slice) or idx != slice(0, len(v)) else v
        parts.append(memoryview(rec.view(np.uint8)))
    return parts
