"""Moving whole sessions between stores, and to/from a hive-partitioned Parquet lake.

``copy_sessions`` copies sessions from one store to another (DuckDB file <-> PostgreSQL server,
either way), keeping ids of everything inside a session, its content hash, tags and import time.

``export_lake`` writes the store's tables as a Parquet dataset that DuckDB, Polars, Spark and
Trino read as-is::

    DIR/_trackstore.json                        what wrote it, schema revision, sessions
    DIR/sessions/part-0.parquet                 one row per session
    DIR/<table>/session_id=<id>/part-0.parquet  frames, positions, tracks, links, metadata

``session_id`` is in the folder name only (hive partitioning), as Spark/Trino expect.
``ingest`` recognises such a folder and reads every session back losslessly.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from . import __version__, db, schema
from .errors import ParseError, WriteError
from .formats._base import prepare_target
from .model import TrackTables
from .store import Store, _Bulk, _bulk_for

LAKE_MARKER = "_trackstore.json"
LAKE_TABLES = ("frames", "positions", "tracks", "links", "metadata")
#: The columns of each lake table: the store's tables, and for metadata the view's (one row per
#: value with its scope, key and type: the lake is read by engines that know nothing of trackstore).
_LAKE_SHAPES = {"frames": schema.frames, "positions": schema.positions, "tracks": schema.tracks,
                "links": schema.links, "metadata": schema.metadata_table}


# ---------------------------------------------------------------------------- store -> store
def copy_sessions(src: Store, dst: Store, sessions: Iterable[int | str] | None = None, *,
                  progress: Callable[[int, int, str], None] | None = None) -> list[tuple[int, int | None, str]]:
    """Copy sessions (all by default) from ``src`` to ``dst``, each in one transaction.

    Returns ``(source id, destination id, status)`` per session; status is ``copied`` or
    ``skipped`` (the destination already has that content).
    """
    rows = {r["session_id"]: r for r in src.list_sessions()}
    ids = list(rows) if sessions is None else [src.resolve_session(s) for s in sessions]
    out = []
    for i, sid in enumerate(ids):
        row = rows[sid]
        tables = src.read_session(sid)
        out.append(_write_row(dst, tables, row))
        if progress:
            progress(i + 1, len(ids), row["name"])
    return out


def _write_row(dst: Store, tables: TrackTables, row: dict) -> tuple[int, int | None, str]:
    tables.session.source_path = row["source_path"]
    with dst.transaction() as conn:
        dst.lock_content(conn, row["content_hash"])
        if dst.find_sessions(conn, content_hash=row["content_hash"]):
            return row["session_id"], None, "skipped"
        new = dst.write_session(conn, tables, content_hash=row["content_hash"], tags=row.get("tags") or {},
                                imported_at=row["imported_at"])
    return row["session_id"], new, "copied"


# ---------------------------------------------------------------------------- store -> lake
def export_lake(store: Store, out: str | os.PathLike, sessions: Iterable[int | str] | None = None, *,
                overwrite: bool = False, progress: Callable[[int, int, str], None] | None = None) -> list[Path]:
    """Write sessions (all by default) as a hive-partitioned Parquet dataset; returns the files written."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise WriteError("already exists and is not empty", path=out, hint="pass --overwrite to replace it")
        import shutil

        shutil.rmtree(out)
    prepare_target(out, overwrite=True, is_dir=True)
    rows = {r["session_id"]: r for r in store.list_sessions()}
    ids = list(rows) if sessions is None else [store.resolve_session(s) for s in sessions]
    written: list[Path] = []
    with store.connect() as conn:
        bulk = _bulk_for(conn)
        sess = bulk.arrow(_select_all(schema.sessions, ids), _arrow_types(schema.sessions))
        (out / "sessions").mkdir()
        import pyarrow.parquet as pq  # here, not at import: ingest looks for lakes on every run

        pq.write_table(sess, out / "sessions" / "part-0.parquet", compression="zstd")
        written.append(out / "sessions" / "part-0.parquet")
        for i, sid in enumerate(ids):
            for name in LAKE_TABLES:
                table = _LAKE_SHAPES[name]
                cols = [c for c in table.columns if c.name != "session_id"]
                sql = (f"SELECT {', '.join(c.name for c in cols)} FROM {name} WHERE session_id = {int(sid)}"
                       + _order_by(name))
                data = bulk.arrow(sql, {c.name: _arrow_type(c) for c in cols})
                data = data.cast(pa.schema([pa.field(c.name, _arrow_type(c)) for c in cols]))
                folder = out / name / f"session_id={sid}"
                folder.mkdir(parents=True)
                pq.write_table(data, folder / "part-0.parquet", compression="zstd")
                written.append(folder / "part-0.parquet")
            if progress:
                progress(i + 1, len(ids), rows[sid]["name"])
    with db.wrap_db_errors("reading the schema revision"), store.engine.connect() as c:
        rev = db.current_revision(c)
    (out / LAKE_MARKER).write_text(json.dumps({
        "written_by": f"trackstore {__version__}", "schema_revision": rev,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "tables": ["sessions", *LAKE_TABLES], "partitioning": "hive: <table>/session_id=<id>/",
        "sessions": ids,
    }, indent=2))
    written.append(out / LAKE_MARKER)
    return written


def _order_by(name: str) -> str:
    return {"frames": " ORDER BY frame", "positions": " ORDER BY position_id", "tracks": " ORDER BY track_id",
            "links": " ORDER BY link_id", "metadata": " ORDER BY seq, owner_id NULLS FIRST"}[name]


def _select_all(table: sa.Table, ids: list[int]) -> str:
    where = f" WHERE session_id IN ({', '.join(str(int(i)) for i in ids)})" if ids else " WHERE false"
    return f"SELECT {', '.join(c.name for c in table.columns)} FROM {table.name}{where} ORDER BY session_id"


def _arrow_type(col: sa.Column) -> pa.DataType:
    t = col.type
    if isinstance(t, sa.BigInteger):
        return pa.int64()
    if isinstance(t, sa.Integer):
        return pa.int32()
    if isinstance(t, sa.Float):
        return pa.float64()
    if isinstance(t, sa.Boolean):
        return pa.bool_()
    if isinstance(t, sa.DateTime):
        return pa.timestamp("us")
    return pa.string()


def _arrow_types(table: sa.Table) -> dict[str, pa.DataType]:
    return {c.name: _arrow_type(c) for c in table.columns}


# ---------------------------------------------------------------------------- lake -> store
def is_lake(path: Path) -> bool:
    """True for a folder written by :func:`export_lake`."""
    return path.is_dir() and (path / LAKE_MARKER).is_file() and (path / "sessions").is_dir()


class _LakeBulk(_Bulk):
    """Reads a lake with the store's own read SQL, through DuckDB views over the Parquet files."""

    def __init__(self, path: Path):
        import duckdb

        self.raw = duckdb.connect()
        p = str(path).replace("'", "''")
        self.raw.execute(f"CREATE VIEW sessions AS SELECT * FROM read_parquet('{p}/sessions/*.parquet')")
        for name in LAKE_TABLES:
            files = list((path / name).glob("session_id=*/*.parquet"))
            if files:
                self.raw.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{p}/{name}/*/*.parquet', "
                                 "hive_partitioning = true, hive_types = {'session_id': INTEGER})")
            else:
                self.raw.execute(f"CREATE VIEW {name} AS SELECT * FROM (SELECT NULL::INTEGER AS session_id) "
                                 "WHERE false")

    def arrow(self, sql, types):
        return self.raw.execute(sql).to_arrow_table()


def read_lake(path: str | os.PathLike):
    """Yield ``(session row, tags, TrackTables)`` for every session in a lake."""
    path = Path(path)
    if not is_lake(path):
        raise ParseError(f"not a trackstore Parquet lake (no {LAKE_MARKER} and sessions/)", path=path)
    bulk = _LakeBulk(path)
    try:
        rows = bulk.raw.execute("SELECT * FROM sessions ORDER BY session_id").to_arrow_table().to_pylist()
        for row in rows:
            sid = row["session_id"]
            tags = {k: v for k, v in bulk.raw.execute(
                "SELECT key, v_str FROM metadata WHERE session_id = ? AND scope = 'tag' ORDER BY seq", [sid]
            ).fetchall()} if _has(path, "metadata") else {}
            yield row, tags, bulk.read(sid, row)
    except Exception as e:
        if type(e).__module__.startswith(("duckdb", "_duckdb")):
            raise ParseError(f"unreadable Parquet lake: {e}", path=path) from e
        raise
    finally:
        bulk.raw.close()


def _has(path: Path, name: str) -> bool:
    return any((path / name).glob("session_id=*/*.parquet"))


def ingest_lake(store: Store, path: str | os.PathLike, *, replace: bool = False) -> list[tuple[int, int | None, str]]:
    """Ingest every session of a lake (same content hashes, tags and import times)."""
    out = []
    for row, tags, tables in read_lake(path):
        row = dict(row, tags=tags)
        if replace:
            with store.transaction() as conn:
                for sid in store.find_sessions(conn, content_hash=row["content_hash"]):
                    store.delete_session(conn, sid)
        out.append(_write_row(store, tables, row))
    return out


def n_positions_per_session(path: Path) -> dict[int, int]:
    """Rows per session in a lake's positions (from Parquet footers; for checks)."""
    import pyarrow.parquet as pq

    out = {}
    for folder in sorted((path / "positions").glob("session_id=*")):
        out[int(folder.name.split("=", 1)[1])] = int(np.sum([pq.ParquetFile(f).metadata.num_rows
                                                             for f in folder.glob("*.parquet")]))
    return out
