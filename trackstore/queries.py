"""Named queries (``queries/*.sql``) and user SQL, run read-only with typed parameters.

A named query is one SQL file whose stem is its name, starting with a header (STYLE §3.5)::

    -- name: track_lengths
    -- description: Positions, first and last frame of every track.
    -- params: session_id int (optional), tag_key str (optional)
    -- returns: session_id, track_id, n_positions, first_frame, last_frame

then exactly one statement using ``:param`` binds (``CAST(:p AS INTEGER)`` rather than ``::``).
Parameter types are ``int``, ``float``, ``str`` and ``bool``; an ``(optional)`` parameter that is
not given is NULL. ``queries/<dialect>/<name>.sql`` (``duckdb``, ``postgresql``) replaces
``queries/<name>.sql`` on that database.

Safety: user SQL must run on a store opened read-only, ``Store(url, read_only=True)``: DuckDB then
refuses every write. As a second guard, :func:`run_query` runs each statement in a transaction it
always rolls back (and declares ``READ ONLY`` on PostgreSQL), so even on a writable store nothing a
query does is kept.

Example:
    >>> from trackstore.store import Store
    >>> with Store("tracks.duckdb", read_only=True) as s:  # doctest: +SKIP
    ...     res = run_query(s, "track_lengths", {"session_id": 1})
    ...     res.columns, res.rows[:2]
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

from .db import data_dir
from .errors import QueryError, QueryParamError, TrackstoreError, UnknownQueryError

__all__ = [
    "QueryParam",
    "QueryInfo",
    "QueryResult",
    "bind_params",
    "list_queries",
    "get_query",
    "parse_query",
    "find_params",
    "run_query",
]

PARAM_TYPES = ("int", "float", "str", "bool")
HEADER_KEYS = ("name", "description", "params", "returns")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HEADER_LINE = re.compile(r"^--\s*(\w+)\s*:\s*(.*)$")
_PARAM_SPEC = re.compile(r"^([A-Za-z_]\w*)\s+(\w+)(?:\s*\(\s*(optional)\s*\))?$", re.IGNORECASE)
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_TRUE = {"true", "t", "yes", "y", "on", "1"}
_FALSE = {"false", "f", "no", "n", "off", "0"}


# ---------------------------------------------------------------------------- data classes
@dataclass(frozen=True)
class QueryParam:
    """One declared parameter: ``name type (optional)``."""

    name: str
    type: str
    optional: bool = False

    def __str__(self) -> str:
        return f"{self.name} {self.type}" + (" (optional)" if self.optional else "")


@dataclass(frozen=True)
class QueryInfo:
    """A parsed query: header fields, the SQL text and where it came from.

    Attributes:
        name: The query's name (the file stem for a named query; ``"sql"`` for user SQL).
        description: What it computes.
        params: Declared parameters, in header order.
        returns: Declared result columns.
        sql: The whole text (header included).
        path: The file, or None for user SQL.
        dialect: The dialect folder it came from, or None for the portable file.
        binds: ``:param`` names found in the SQL, in order of first use.
    """

    name: str
    description: str
    params: tuple[QueryParam, ...]
    returns: tuple[str, ...]
    sql: str
    path: Path | None = None
    dialect: str | None = None
    binds: tuple[str, ...] = field(default=())

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]


@dataclass
class QueryResult:
    """Columns and rows of a query (rows as tuples, or an Arrow table with ``arrow=True``)."""

    columns: list[str]
    _rows: list[tuple] | None = None
    table: Any = None  # pyarrow.Table when fetched as Arrow

    @property
    def rows(self) -> list[tuple]:
        if self._rows is None:
            self._rows = list(zip(*(c.to_pylist() for c in self.table.columns))) if self.table is not None else []
        return self._rows

    def to_arrow(self):
        """The result as a ``pyarrow.Table``."""
        import pyarrow as pa

        if self.table is None:
            cols = list(zip(*self.rows)) if self.rows else [()] * len(self.columns)
            self.table = pa.table({c: pa.array(list(v)) for c, v in zip(self.columns, cols)})
        return self.table

    def to_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def __len__(self) -> int:
        return self.table.num_rows if self._rows is None and self.table is not None else len(self.rows)

    def __iter__(self) -> Iterator[tuple]:
        return iter(self.rows)


# ---------------------------------------------------------------------------- parsing
@dataclass
class _Scan:
    binds: list[tuple[int, int, str]]  # (start, end, name) of each :name bind
    colons: list[int]  # every other ':' (casts, slices, strings, comments)
    extra_statement: bool  # text after a top-level ';'


def _scan(sql: str) -> _Scan:
    """Find ``:name`` binds, skipping strings, quoted names, comments and ``::`` casts."""
    binds: list[tuple[int, int, str]] = []
    colons: list[int] = []
    extra = False
    after_semicolon = False
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            colons.extend(k for k in range(i, j) if sql[k] == ":")
            i = j
            continue
        if c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            colons.extend(k for k in range(i, j) if sql[k] == ":")
            i = j
            continue
        if after_semicolon and not c.isspace():
            extra = True
        if c in "'\"":
            backslash = c == "'" and i > 0 and sql[i - 1] in "eE" and (i < 2 or not _word(sql[i - 2]))
            j = i + 1
            while j < n:
                if backslash and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            j = min(j + 1, n)
            colons.extend(k for k in range(i, j) if sql[k] == ":")
            i = j
            continue
        if c == "$" and (i == 0 or not _word(sql[i - 1])):
            m = _DOLLAR_TAG.match(sql, i)
            if m:
                j = sql.find(m.group(0), m.end())
                j = n if j < 0 else j + len(m.group(0))
                colons.extend(k for k in range(i, j) if sql[k] == ":")
                i = j
                continue
        if c == ";":
            after_semicolon = True
        elif c == ":":
            if i + 1 < n and sql[i + 1] == ":":
                colons.extend((i, i + 1))
                i += 2
                continue
            prev_ok = i == 0 or not (_word(sql[i - 1]) or sql[i - 1] in ":\\")
            if prev_ok and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_"):
                j = i + 1
                while j < n and _word(sql[j]):
                    j += 1
                binds.append((i, j, sql[i + 1:j]))
                i = j
                continue
            colons.append(i)
        i += 1
    return _Scan(binds, colons, extra)


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def find_params(sql: str) -> list[str]:
    """The ``:name`` binds of ``sql`` in order of first use (not ``::`` casts, strings or comments)."""
    seen: dict[str, None] = {}
    for _, _, name in _scan(sql).binds:
        seen.setdefault(name, None)
    return list(seen)


def _parse_header(sql: str, where: str) -> dict[str, str]:
    """The ``-- key: value`` fields of the leading comment block (continuation lines appended)."""
    fields: dict[str, str] = {}
    last: str | None = None
    for raw in sql.splitlines():
        line = raw.strip()
        if not line:
            last = None
            continue
        if not line.startswith("--"):
            break
        m = _HEADER_LINE.match(line)
        if m and m.group(1).lower() in HEADER_KEYS:
            last = m.group(1).lower()
            sep = ", " if last in ("params", "returns") and fields.get(last) else " "
            fields[last] = (fields.get(last, "") + sep + m.group(2).strip()).strip()
        elif last is not None and line[2:].strip():
            sep = ", " if last in ("params", "returns") else " "
            fields[last] = (fields[last] + sep + line[2:].strip()).strip(" ,")
        else:
            last = None
    return fields


def _parse_params(text: str, where: str) -> tuple[QueryParam, ...]:
    out: list[QueryParam] = []
    for part in (p.strip() for p in text.split(",")):
        if not part or part.lower() == "none":
            continue
        m = _PARAM_SPEC.match(part)
        if not m:
            raise QueryError(f"{where}: cannot read parameter {part!r} in the header",
                             hint="write `-- params: name type (optional), ...` with type int, float, str or bool")
        name, typ, opt = m.group(1), m.group(2).lower(), m.group(3)
        if typ not in PARAM_TYPES:
            raise QueryError(f"{where}: parameter {name!r} has unknown type {typ!r}",
                             hint=f"use one of {', '.join(PARAM_TYPES)}")
        if any(p.name == name for p in out):
            raise QueryError(f"{where}: parameter {name!r} is declared twice")
        out.append(QueryParam(name, typ, bool(opt)))
    return tuple(out)


def parse_query(sql: str, *, name: str | None = None, path: Path | None = None,
                dialect: str | None = None) -> QueryInfo:
    """Parse a query's header and find its binds.

    Args:
        sql: The whole text of the query.
        name: Its name (a file stem); the header's ``-- name:`` is used when None.
        path: The file it was read from, for messages.
        dialect: The dialect folder it came from.

    Raises:
        QueryError: The header cannot be read.
    """
    where = str(path) if path else (name or "query")
    h = _parse_header(sql, where)
    return QueryInfo(
        name=name or h.get("name") or "sql",
        description=h.get("description", ""),
        params=_parse_params(h.get("params", ""), where),
        returns=tuple(c.strip() for c in h.get("returns", "").split(",") if c.strip()),
        sql=sql,
        path=path,
        dialect=dialect,
        binds=tuple(find_params(sql)),
    )


# ---------------------------------------------------------------------------- discovery
def _query_files(dialect: str | None) -> dict[str, tuple[Path, str | None]]:
    folder = data_dir("queries")
    files: dict[str, tuple[Path, str | None]] = {f.stem: (f, None) for f in sorted(folder.glob("*.sql"))}
    if dialect:
        for f in sorted((folder / dialect).glob("*.sql")):
            files[f.stem] = (f, dialect)
    return files


def list_queries(dialect: str | None = None) -> list[QueryInfo]:
    """Every named query, sorted by name; with ``dialect``, that dialect's variants replace the portable files."""
    return [_load(name, f, d) for name, (f, d) in sorted(_query_files(dialect).items())]


def get_query(name: str, dialect: str | None = None) -> QueryInfo:
    """The named query ``name`` (its ``dialect`` variant if there is one).

    Raises:
        UnknownQueryError: No such query.
    """
    files = _query_files(dialect)
    if name not in files:
        known = ", ".join(sorted(files)) or "none"
        raise UnknownQueryError(f"no query named {name!r} (known: {known})",
                                hint="list them with `trackstore queries`")
    f, d = files[name]
    return _load(name, f, d)


def _load(name: str, f: Path, dialect: str | None) -> QueryInfo:
    return parse_query(f.read_text(encoding="utf-8"), name=name, path=f, dialect=dialect)


# ---------------------------------------------------------------------------- parameters
def _convert(value: Any, typ: str) -> Any:
    """``value`` as a Python ``typ``; raises ValueError/TypeError when it is not one."""
    if typ == "int":
        if isinstance(value, (bool, np.bool_)):
            raise TypeError("a bool is not an int")
        if isinstance(value, (int, np.integer)):
            return int(value)
        if isinstance(value, str):
            return int(value.strip())
        raise TypeError(type(value).__name__)
    if typ == "float":
        if isinstance(value, (bool, np.bool_)):
            raise TypeError("a bool is not a float")
        if isinstance(value, (int, float, np.integer, np.floating)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
        raise TypeError(type(value).__name__)
    if typ == "bool":
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(repr(value))
    if isinstance(value, str):
        return value
    raise TypeError(type(value).__name__)


def bind_params(info: QueryInfo, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Check and convert ``params`` for ``info``: the values to bind, one per ``:name`` in its SQL.

    Declared parameters are converted to their type (strings such as ``"3"`` or ``"true"`` from
    the command line are accepted); an optional one that is missing or None is NULL. User SQL
    without a ``-- params:`` header takes its values as they are.

    Raises:
        QueryParamError: A parameter is unknown, missing, or not of its type (the message names
            the parameter, the type expected and the query).
    """
    params = dict(params or {})
    declared = {p.name: p for p in info.params}
    known = list(declared) + [b for b in info.binds if b not in declared]
    usage = ", ".join(str(declared[k]) if k in declared else k for k in known) or "none"
    for k in params:
        if k not in declared and k not in info.binds:
            raise QueryParamError(f"query {info.name!r} has no parameter {k!r}",
                                  hint=f"its parameters: {usage}")
    out: dict[str, Any] = {}
    for name in info.binds:
        p = declared.get(name)
        value = params.get(name)
        if value is None:
            if p is not None and p.optional:
                out[name] = None
                continue
            raise QueryParamError(
                f"query {info.name!r} needs parameter {name!r}"
                + (f" ({p.type})" if p is not None else ""),
                hint=f"its parameters: {usage}")
        if p is None:
            out[name] = value
            continue
        try:
            out[name] = _convert(value, p.type)
        except (TypeError, ValueError) as e:
            raise QueryParamError(
                f"query {info.name!r}: parameter {name!r} expects {p.type}, got {value!r}",
                hint=f"its parameters: {usage}") from e
    return out


# ---------------------------------------------------------------------------- running
def _text_clause(sql: str, scan: _Scan) -> sa.TextClause:
    """A ``text()`` whose only binds are ours: every other ':' is escaped as '\\:'."""
    out = []
    last = 0
    for i in scan.colons:
        out.append(sql[last:i])
        out.append("\\:")
        last = i + 1
    out.append(sql[last:])
    return sa.text("".join(out))


def run_query(store, name_or_sql: str, params: Mapping[str, Any] | None = None, *,
              arrow: bool = False) -> QueryResult:
    """Run a named query, or one SQL statement, on ``store`` and return all its rows.

    User SQL must run on a store opened with ``read_only=True``; in any case the statement runs
    in a transaction that is rolled back afterwards, so nothing it changes is kept.

    Args:
        store: A :class:`trackstore.store.Store` (open it read-only for user SQL).
        name_or_sql: A query name from :func:`list_queries` (a bare identifier), or SQL text
            (which may carry its own ``-- params:`` header to type its parameters).
        params: Values for the ``:name`` binds; strings are converted to the declared type.
        arrow: Fetch the rows as a ``pyarrow.Table`` (``QueryResult.table``).

    Returns:
        A :class:`QueryResult` with the column names and the rows.

    Raises:
        UnknownQueryError: No query of that name.
        QueryParamError: A parameter is unknown, missing or of the wrong type.
        QueryError: The database refused or failed the statement (its message is included).
        StoreError: The store cannot be opened.

    Example:
        >>> run_query(store, "track_lengths", {"session_id": "2"}).columns  # doctest: +SKIP
        ['session_id', 'track_id', 'name', ...]
    """
    text = name_or_sql.strip()
    if _NAME.match(text):
        info = get_query(text, store.dialect)
    else:
        info = parse_query(name_or_sql, name="sql")
    scan = _scan(info.sql)
    if scan.extra_statement:
        raise QueryError(f"query {info.name!r} has more than one statement",
                         hint="run one statement at a time")
    if not _strip_comments(info.sql):
        raise QueryError(f"query {info.name!r} is empty")
    values = bind_params(info, params)
    clause = _text_clause(info.sql, scan)
    try:
        with store.connect() as conn:
            try:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                result = conn.execute(clause, values)
                if not result.returns_rows:
                    return QueryResult(columns=[], _rows=[])
                columns = list(result.keys())
                table = _fetch_arrow(result) if arrow else None
                if table is not None:
                    return QueryResult(columns=columns, table=table)
                res = QueryResult(columns=columns, _rows=[tuple(r) for r in result.fetchall()])
                if arrow:
                    res.to_arrow()
                return res
            finally:
                conn.rollback()
    except TrackstoreError:
        raise
    except sa.exc.DBAPIError as e:
        raise QueryError(f"query {info.name!r} failed: {_db_message(e.orig)}") from e
    except sa.exc.SQLAlchemyError as e:
        raise QueryError(f"query {info.name!r} failed: {e}") from e
    except Exception as e:
        if type(e).__module__.startswith(("duckdb", "_duckdb", "psycopg")):
            raise QueryError(f"query {info.name!r} failed: {_db_message(e)}") from e
        raise


def _strip_comments(sql: str) -> str:
    no_line = re.sub(r"--[^\n]*", " ", sql)
    return re.sub(r"/\*.*?\*/", " ", no_line, flags=re.DOTALL).strip(" \t\r\n;")


def _db_message(e: BaseException) -> str:
    return str(e).strip()


def _fetch_arrow(result: sa.CursorResult):
    """The rest of a DuckDB result as an Arrow table, straight from the driver (None elsewhere)."""
    if result.dialect.name != "duckdb":
        return None
    cursor = result.cursor
    try:  # duckdb >= 1.4 names it to_arrow_table (fetch_arrow_table is deprecated)
        fetch = cursor.to_arrow_table
    except AttributeError:
        fetch = getattr(cursor, "fetch_arrow_table", None)
    if fetch is None:
        return None
    try:
        return fetch()
    except NotImplementedError:  # rows were already buffered as tuples
        return None

