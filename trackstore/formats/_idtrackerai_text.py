"""CSV and JSON text of idtracker.ai files: parse them, and print them exactly as idtracker.ai does.

idtracker.ai writes CSVs with ``numpy.savetxt`` (Python ``%`` formatting, one format per column,
``nan`` for NaN, ``-0.000`` kept) and JSON with ``json.dump`` (no trailing newline). Printing here
uses the same Python formatting, a block of rows per ``%`` call, so the bytes match.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ParseError

_CHUNK_ROWS = 4096


def format_rows(arr: np.ndarray, fmts: list[str], delimiter: str, newline: str) -> str:
    """Rows of a 2-D array printed like ``np.savetxt(fmt=fmts, delimiter=..., newline=...)``."""
    arr = np.asarray(arr)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.shape[0] == 0:
        return ""
    row = delimiter.join(fmts) + newline
    parts = []
    for start in range(0, arr.shape[0], _CHUNK_ROWS):
        block = arr[start:start + _CHUNK_ROWS]
        parts.append((row * block.shape[0]) % tuple(block.ravel().tolist()))
    return "".join(parts)


def detect_fmt(token: str) -> str | None:
    """The ``%`` format that prints a number like ``token`` (``"%.3f"``, ``"%.18e"``), or None."""
    m = re.fullmatch(r"-?\d+(?:\.(\d+))?([eE][+-]\d+)?", token.strip())
    if not m:
        return None
    decimals = len(m.group(1) or "")
    return f"%.{decimals}{'e' if m.group(2) else 'f'}"


def first_fmt(lines: list[str], delimiter: str, column: int | slice) -> str | None:
    """The format of the first finite value in ``column`` of the given data lines."""
    for line in lines:
        cells = line.split(delimiter)
        picked = cells[column] if isinstance(column, slice) else [cells[column]] if column < len(cells) else []
        for c in picked:
            f = detect_fmt(c)
            if f is not None:
                return f
    return None


def read_text(path: Path) -> str:
    """A text file's exact content (newlines kept as they are)."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return f.read()
    except OSError as e:
        raise ParseError(f"cannot read: {e.strerror or e}", path=path) from e
    except UnicodeDecodeError as e:
        raise ParseError(f"not UTF-8 text (byte {e.start})", path=path) from None


def write_text(path: Path, text: str) -> None:
    """Write text exactly (no newline translation)."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def parse_numeric(path: Path, text: str, *, header_lines: int, delimiter: str = ",",
                  n_cols: int | None = None) -> np.ndarray:
    """The numbers of a numeric CSV as a float64 (rows, cols) array.

    Raises:
        ParseError: A malformed row (the message gives the line number and the column).
    """
    lines = text.splitlines()
    body = lines[header_lines:]
    while body and body[-1] == "":
        body.pop()
    if not body:
        return np.empty((0, n_cols or 0))
    try:
        arr = np.loadtxt(body, delimiter=delimiter.strip() or delimiter, dtype=np.float64, ndmin=2,
                         comments=None)
    except ValueError as e:
        msg = str(e)
        m = re.search(r"row (\d+)", msg)
        # numpy counts rows 0-based for a bad value, 1-based for a changed column count
        where = f"line {int(m.group(1)) + header_lines + (0 if 'changed' in msg else 1)}" if m else "a row"
        raise ParseError(f"malformed row at {where}: {msg}", path=path) from None
    if n_cols is not None and arr.shape[1] != n_cols:
        raise ParseError(f"line {header_lines + 1}: {arr.shape[1]} columns, the header names {n_cols}",
                         path=path)
    return arr


# ------------------------------------------------------------------ JSON
def json_default_v6(o: Any) -> Any:
    """idtracker.ai 6's ``json_default``: numpy values become plain JSON."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (set, frozenset)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, bytes):
        return o.decode("latin1")
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def json_default_v5(o: Any) -> Any:
    """idtracker.ai 5.2's ``json_default``: arrays become ``{"py/object": "np.ndarray", ...}``."""
    if isinstance(o, np.ndarray):
        return {"py/object": "np.ndarray", "values": o.tolist()}
    return json_default_v6(o)


JSON_STYLES = {"v6": json_default_v6, "v5": json_default_v5}


def json_text(d: dict, *, indent: int | None = 4, style: str = "v6") -> str:
    """``json.dump(d, indent=indent, default=...)`` as idtracker.ai writes it (no final newline)."""
    return json.dumps(d, indent=indent, default=JSON_STYLES[style])


def parse_json(path: Path, text: str) -> Any:
    """Parse JSON (NaN allowed, key order kept), raising ParseError with line and column."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ParseError(f"invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}", path=path) from None
