"""The store: moves whole sessions (TrackTables) in and out of the database, in bulk.

One session is written in one transaction, one ``INSERT … SELECT`` per table from numpy/Arrow
columns (never row by row), so a failure or a kill leaves no trace of it. Connections are opened
per operation and closed after it: on DuckDB that keeps the file lock short, so another
trackstore process waits seconds, not for a whole multi-session ingest.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import sqlalchemy as sa

from . import _pgsplit, db, schema, values
from ._pages import trim_heap
from .errors import SessionNotFoundError, StoreError, TrackstoreWarning
from .model import ORIGINS, MetaBlock, SessionInfo, TrackTables


class Store:
    """A track store at a SQLAlchemy URL (DuckDB file by default).

    Args:
        url: SQLAlchemy URL or a file path (see :func:`trackstore.db.resolve_url`).
        read_only: Open read-only: writes fail, user SQL cannot change anything.
        on_wait: Called with a message when waiting for another process's lock.
        lock_timeout: Seconds to wait for that lock.
        user_sql: Connections will run SQL a user typed (see :func:`trackstore.db.make_engine`).

    Example:
        >>> with Store("tracks.duckdb") as s:  # doctest: +SKIP
        ...     s.list_sessions()
    """

    def __init__(self, url: str | None = None, *, read_only: bool = False,
                 on_wait: Callable[[str], None] | None = None, lock_timeout: float | None = None,
                 user_sql: bool = False):
        self.url = db.resolve_url(url)
        self.read_only = read_only
        self.engine = db.make_engine(self.url, read_only=read_only, lock_timeout=lock_timeout, on_wait=on_wait,
                                     user_sql=user_sql)
        self.dialect = self.engine.dialect.name
        self._checked = False
        self._recovered = False

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def exists(self) -> bool:
        """False for a DuckDB path that has no file yet."""
        p = db.duckdb_path(self.url)
        return p is None or p.exists() or not db.is_duckdb(self.url)

    @contextmanager
    def connect(self) -> Iterator[sa.Connection]:
        """A connection for reading (no transaction of ours)."""
        if self.read_only and not self.exists:
            raise StoreError("no store here yet", path=db.duckdb_path(self.url),
                             hint="create one with `trackstore ingest PATH`")
        with db.wrap_db_errors("opening the store"):
            conn = self.engine.connect()
        try:
            if not self._checked:
                with db.wrap_db_errors("reading the schema revision"):
                    rev = db.check_revision(conn, for_write=False)
                if rev is None:
                    raise StoreError("this database is not a trackstore (no schema)",
                                     path=db.duckdb_path(self.url) or self.url,
                                     hint="create one with `trackstore ingest PATH` or `trackstore upgrade`")
                self._checked = True
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """A write transaction; creates the schema of a new store, refuses an outdated one.

        On PostgreSQL a large session may be written partly on a helper connection (see
        :mod:`trackstore._pgsplit`); it commits or rolls back with this transaction.
        """
        if not self._recovered:
            self._finish_interrupted()
            self._recovered = True
        with db.wrap_db_errors("opening the store for writing"):
            conn = self.engine.connect()
        after = conn.info[_AFTER_TX] = []
        committed = False
        try:
            with db.wrap_db_errors("writing to the store"):
                with conn.begin():
                    rev = db.check_revision(conn, for_write=True)
                    if rev is None:
                        if conn.dialect.name == "postgresql":  # two first writers on a new server database
                            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(8061967)")
                            rev = db.check_revision(conn, for_write=True)
                        if rev is None:
                            db.upgrade(conn)
                    else:
                        db.ensure_views(conn)
                    yield conn
                committed = True
        finally:
            conn.info.pop(_AFTER_TX, None)
            try:
                for fn in after:  # helper transactions follow this one's outcome
                    try:
                        fn(committed)
                    except Exception as e:  # the next writer's recover() finishes it the same way
                        if committed:
                            warnings.warn(f"the helper transaction of this ingest is still prepared ({e}); "
                                          "the next trackstore write to this store finishes it",
                                          TrackstoreWarning, stacklevel=3)
            finally:
                conn.close()

    def _finish_interrupted(self) -> None:
        """PostgreSQL: commit or roll back helper transactions a dead writer left prepared (_pgsplit)."""
        if self.dialect == "postgresql":
            with db.wrap_db_errors("finishing an interrupted ingest"):
                _pgsplit.recover(self.engine)

    def upgrade(self, revision: str = "head") -> tuple[str | None, str]:
        """Migrate the store to ``revision``; returns (old, new) revision."""
        self._finish_interrupted()
        with db.wrap_db_errors("upgrading the store"):
            with self.engine.connect() as conn:
                old = db.current_revision(conn)
                db.upgrade(conn, revision, per_migration=True)
                new = db.current_revision(conn)
                conn.commit()
        return old, new

    def revision(self) -> str | None:
        with db.wrap_db_errors("reading the schema revision"), self.engine.connect() as conn:
            return db.current_revision(conn)

    # ---------------------------------------------------------------- sessions
    def list_sessions(self, conn: sa.Connection | None = None) -> list[dict[str, Any]]:
        """Every stored session as a dict of its ``sessions`` columns, with its tags."""
        with self._maybe(conn) as c:
            rows = c.execute(sa.select(schema.sessions).order_by(schema.sessions.c.session_id)).mappings().all()
            tags = c.execute(
                sa.select(schema.metadata_table.c.session_id, schema.metadata_table.c.key,
                          schema.metadata_table.c.v_str)
                .where(schema.metadata_table.c.scope == "tag")
                .order_by(schema.metadata_table.c.session_id, schema.metadata_table.c.seq)
            ).all()
        by_sid: dict[int, dict[str, str]] = {}
        for sid, k, v in tags:
            by_sid.setdefault(sid, {})[k] = v
        return [dict(r, tags=by_sid.get(r["session_id"], {})) for r in rows]

    def resolve_session(self, ref: int | str, conn: sa.Connection | None = None) -> int:
        """A session id from an id or a name (the name must be unique)."""
        s = schema.sessions
        with self._maybe(conn) as c:
            if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
                sid = c.execute(sa.select(s.c.session_id).where(s.c.session_id == int(ref))).scalar()
                if sid is not None:
                    return sid
            ids = c.execute(sa.select(s.c.session_id).where(s.c.name == str(ref))).scalars().all()
        if len(ids) == 1:
            return ids[0]
        if not ids:
            raise SessionNotFoundError(f"no session {ref!r} in the store", hint="list them with `trackstore sessions`")
        raise SessionNotFoundError(f"{len(ids)} sessions are named {ref!r} (ids {', '.join(map(str, ids))})",
                                   hint="refer to the session by its id")

    @contextmanager
    def _maybe(self, conn):
        if conn is not None:
            yield conn
        else:
            with self.connect() as c:
                yield c

    def delete_session(self, conn: sa.Connection, session_id: int) -> None:
        """Delete every row of a session (inside the caller's transaction)."""
        for t in (schema.metadata_values, schema.metadata_blocks, schema.links, schema.tracks, schema.positions,
                  schema.frames, schema.sessions):
            conn.execute(sa.delete(t).where(t.c.session_id == session_id))

    def lock_content(self, conn: sa.Connection, content_hash: str) -> None:
        """Serialize writers of the same content (PostgreSQL; DuckDB has one writer anyway).

        Held until the transaction ends, so a concurrent ingest of the same files waits, then
        sees the committed session and skips it: no duplicate, no unique-key failure.
        """
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:h, 0))"), {"h": content_hash})

    def find_sessions(self, conn: sa.Connection, *, content_hash: str | None = None,
                      source_path: str | None = None) -> list[int]:
        s = schema.sessions
        cond = []
        if content_hash is not None:
            cond.append(s.c.content_hash == content_hash)
        if source_path is not None:
            cond.append(s.c.source_path == source_path)
        if not cond:
            return []
        return list(conn.execute(sa.select(s.c.session_id).where(sa.or_(*cond))).scalars())

    # ---------------------------------------------------------------- write
    def write_session(self, conn: sa.Connection, tables: TrackTables, *, content_hash: str,
                      tags: dict[str, str] | None = None, session_id: int | None = None,
                      imported_at: dt.datetime | None = None, consume: bool = False) -> int:
        """Insert one session in bulk (inside the caller's transaction); returns its id.

        ``consume=True`` hands ``tables`` over: its columns are dropped as soon as nothing later
        needs them (quality, origin, native_id and radius once the positions are stored: 85 MB
        of a 9.5 M-position session, freed before the links are written; on DuckDB, every
        position, link and metadata column once the links are stored). ``ingest`` does this,
        and must not use ``tables`` afterwards.
        """
        if session_id is None:
            session_id = int(conn.execute(sa.select(schema.session_id_seq.next_value())).scalar())
        info = tables.session
        frames = tables.frame_numbers()
        conn.execute(sa.insert(schema.sessions).values(
            session_id=session_id,
            name=info.name or f"session {session_id}",
            source_format=info.source_format or "unknown",
            format_version=info.format_version,
            source_path=info.source_path,
            content_hash=content_hash,
            imported_at=imported_at or dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0),
            space_unit=info.space_unit,
            time_unit=info.time_unit,
            physical_unit=info.physical_unit,
            pixel_size_x=_opt_float(info.pixel_size[0]),
            pixel_size_y=_opt_float(info.pixel_size[1]),
            pixel_size_z=_opt_float(info.pixel_size[2]),
            frame_interval=_opt_float(info.frame_interval),
            width=_opt_int(info.image_size[0]),
            height=_opt_int(info.image_size[1]),
            depth=_opt_int(info.image_size[2]),
            n_frames=len(frames),
            first_frame=int(frames.min()) if len(frames) else None,
            last_frame=int(frames.max()) if len(frames) else None,
            n_positions=tables.n_positions,
            n_tracks=tables.n_tracks,
            n_links=tables.n_links,
        ))
        bulk = _bulk_for(conn)
        with bulk.bounded_memory():
            self._write_rows(bulk, session_id, tables, frames, tags, conn, consume)
        return session_id

    @staticmethod
    def _write_rows(bulk, session_id: int, tables: TrackTables, frames: np.ndarray, tags,
                    conn: sa.Connection, consume: bool = False) -> None:
        blocks = list(tables.metadata)
        for k, v in (tags or {}).items():
            blocks.append(MetaBlock.scalar("tag", k, str(v)))
        blocks.extend(_negative_zero_blocks(tables))  # before any column is consumed
        helper = None
        after = conn.info.get(_AFTER_TX)  # set inside Store.transaction only: it finishes helpers
        if isinstance(bulk, _PostgresBulk) and after is not None and tables.n_links >= _pgsplit.MIN_LINKS \
                and _pgsplit.available(conn):
            # links on a second connection while this one copies the positions (see _pgsplit); both
            # take ranges of links from one queue, so whichever is free copies the next range
            parts = _pgsplit.Parts(_link_parts(tables.n_links))
            helper_took: list[slice] = []
            helper = _pgsplit.Helper(conn, lambda pg: _PostgresBulk.on(pg).insert_links(
                session_id, tables, frames, parts.take(helper_took)))
            after.append(helper.finish)
        if consume:
            trim_heap()  # the reader's freed holes (see _pages.trim_heap)
        bulk.insert_frames(session_id, tables, frames)
        if helper is None:
            # one table at a time, each freed once stored (consume): the metadata first; then the
            # links while the positions they measure are here, unless the positions have columns
            # the links do not need (idtracker.ai: 85 MB of 9.5 M positions), which go first
            bulk.insert_metadata(session_id, blocks)
            del blocks
            if consume:
                tables.metadata = []
                trim_heap()
            extra = [name for name in _NOT_FOR_LINKS if name in tables.positions]
            if extra:
                bulk.insert_positions(session_id, tables)
                if consume:
                    for name in extra:
                        del tables.positions[name]
            bulk.insert_links(session_id, tables, frames)
            if consume:
                tables.links.clear()
                trim_heap()
            if not extra:
                bulk.insert_positions(session_id, tables)
            if consume:
                tables.positions.clear()
            bulk.insert_tracks(session_id, tables)
            return
        bulk.insert_positions(session_id, tables)
        if consume:  # the links need frame, x, y, z and track_id only
            for name in _NOT_FOR_LINKS:
                tables.positions.pop(name, None)
        bulk.insert_tracks(session_id, tables)
        bulk.insert_metadata(session_id, blocks)
        bulk.insert_links(session_id, tables, frames, parts.take([]))
        if not helper.wait():  # a failed helper is rolled back: its ranges are copied here
            bulk.insert_links(session_id, tables, frames, iter(helper_took))

    # ---------------------------------------------------------------- read
    def read_session(self, session_ref: int | str, conn: sa.Connection | None = None) -> TrackTables:
        """Load one whole session back into TrackTables (tags excluded)."""
        with self._maybe(conn) as c:
            sid = self.resolve_session(session_ref, c)
            with db.wrap_db_errors(f"reading session {sid}"):
                row = c.execute(sa.select(schema.sessions).where(schema.sessions.c.session_id == sid)).mappings().one()
                return _bulk_for(c).read(sid, dict(row))


def _opt_float(v):
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)


def _opt_int(v):
    return None if v is None else int(v)


def _bulk_for(conn: sa.Connection):
    if conn.dialect.name == "duckdb":
        return _DuckDBBulk(conn)
    if conn.dialect.name == "postgresql":
        return _PostgresBulk(conn)
    raise StoreError(f"bulk loading is not implemented for {conn.dialect.name}")


#: Metadata scope of the store's own bookkeeping (hidden from TrackTables): ``negative_zero.<column>``
#: rows own the positions whose value in that column is -0.0, which DuckDB's storage may turn
#: into 0.0 (constant and run-length segments treat them as equal).
_STORE_SCOPE = "_store"
#: The float position columns whose -0.0 signs are recorded under _STORE_SCOPE.
_FLOAT_POSITION_COLUMNS = ("x", "y", "z", "quality", "radius")

_ORIGIN_CASE = "CASE origin " + " ".join(f"WHEN '{o}' THEN {i}" for i, o in enumerate(ORIGINS)) + " ELSE 0 END"

# What read() selects, with the Arrow type of each column (PostgreSQL's CSV path needs them).
_READ = {
    "frames": ("SELECT frame, time FROM frames WHERE session_id = {sid} ORDER BY frame",
               {"frame": pa.int64(), "time": pa.float64()}),
    "positions": (f"SELECT frame, x, y, z, track_id, {_ORIGIN_CASE} AS origin, native_id, quality, radius "
                  "FROM positions WHERE session_id = {sid} ORDER BY position_id",
                  {"frame": pa.int64(), "x": pa.float64(), "y": pa.float64(), "z": pa.float64(),
                   "track_id": pa.int64(), "origin": pa.int8(), "native_id": pa.int64(), "quality": pa.float64(),
                   "radius": pa.float64()}),
    "tracks": ("SELECT name, identity, lineage_id, visible, native_id FROM tracks WHERE session_id = {sid} "
               "ORDER BY track_id",
               {"name": pa.string(), "identity": pa.int64(), "lineage_id": pa.int64(), "visible": pa.bool_(),
                "native_id": pa.int64()}),
    "links": ("SELECT source_id, target_id FROM links WHERE session_id = {sid} ORDER BY link_id",
              {"source_id": pa.int64(), "target_id": pa.int64()}),
    "negative_zeros": (f"SELECT key, owner_id FROM metadata WHERE session_id = {{sid}} AND scope = '{_STORE_SCOPE}'",
                       {"key": pa.string(), "owner_id": pa.int64()}),
    "metadata": ("SELECT scope, owner_id, key, seq, vtype, v_int, v_float, v_bool, v_str, v_json FROM metadata "
                 f"WHERE session_id = {{sid}} AND scope NOT IN ('tag', '{_STORE_SCOPE}') "
                 "ORDER BY seq, owner_id NULLS FIRST",
                 {"scope": pa.string(), "owner_id": pa.int64(), "key": pa.string(), "seq": pa.int32(),
                  "vtype": pa.string(), "v_int": pa.int64(), "v_float": pa.float64(), "v_bool": pa.bool_(),
                  "v_str": pa.string(), "v_json": pa.string()}),
}


class _Bulk:
    """Shared read path: each table comes back as one Arrow table, then numpy columns."""

    @contextmanager
    def bounded_memory(self):
        """Keep the engine's own memory small while a session is written (no-op by default)."""
        yield

    def arrow(self, sql: str, types: dict[str, pa.DataType]) -> pa.Table:  # pragma: no cover - abstract
        raise NotImplementedError

    def _table(self, name: str, sid: int) -> pa.Table:
        sql, types = _READ[name]
        return self.arrow(sql.format(sid=int(sid)), types)  # sid is an int we own: no injection

    def read(self, sid: int, info_row: dict) -> TrackTables:
        r = info_row
        info = SessionInfo(
            name=r["name"], source_format=r["source_format"], format_version=r["format_version"],
            source_path=r["source_path"], space_unit=r["space_unit"], time_unit=r["time_unit"],
            pixel_size=(r["pixel_size_x"], r["pixel_size_y"], r["pixel_size_z"]),
            physical_unit=r["physical_unit"], frame_interval=r["frame_interval"],
            image_size=(r["width"], r["height"], r["depth"]),
        )
        t = TrackTables(session=info)
        fr = self._table("frames", sid)
        t.frames = {"frame": _np(fr["frame"], 0, np.int64), "time": _np(fr["time"], np.nan, np.float64)}
        p = self._table("positions", sid)
        pos: dict[str, np.ndarray] = {"frame": _np(p["frame"], 0, np.int64), "x": _np(p["x"], np.nan, np.float64),
                                      "y": _np(p["y"], np.nan, np.float64)}
        for name, fill, dtype in (("z", np.nan, np.float64), ("track_id", -1, np.int64), ("origin", 0, np.int8),
                                  ("native_id", -1, np.int64), ("quality", np.nan, np.float64),
                                  ("radius", np.nan, np.float64)):
            col = p[name]
            if len(col) == 0 or col.null_count == len(col):
                continue
            pos[name] = _np(col, fill, dtype)
        t.positions = pos
        tr = self._table("tracks", sid)
        t.tracks = {}
        if tr.num_rows:
            t.tracks = {
                "name": _obj(tr["name"].to_pylist()),
                "identity": _obj(tr["identity"].to_pylist()),
                "lineage_id": _np(tr["lineage_id"], -1, np.int64),
                "visible": np.array(tr["visible"].to_pylist(), dtype=bool),
                "native_id": _obj(tr["native_id"].to_pylist()),
            }
        lk = self._table("links", sid)
        t.links = {"source_id": _np(lk["source_id"], 0, np.int64), "target_id": _np(lk["target_id"], 0, np.int64)}
        t.metadata = blocks_from_arrow(self._table("metadata", sid))
        _restore_zero_signs(t.positions, self._table("negative_zeros", sid))
        return t


def _np(col, fill, dtype) -> np.ndarray:
    import pyarrow.compute as pc

    if col.null_count:
        col = pc.fill_null(col, fill)
    return np.asarray(col.to_numpy(), dtype=dtype) if len(col) else np.empty(0, dtype)


class _DuckDBBulk(_Bulk):
    """Bulk paths for DuckDB: register numpy dicts / Arrow tables, one INSERT … SELECT each."""

    def __init__(self, conn: sa.Connection):
        self.raw = conn.connection.driver_connection

    def arrow(self, sql: str, types: dict[str, pa.DataType]) -> pa.Table:
        return self.raw.execute(sql).to_arrow_table()

    @contextmanager
    def bounded_memory(self):
        """DuckDB keeps every block an uncommitted insert wrote in memory up to its limit (80 % of
        RAM by default); a small limit makes it write them to the file instead, at no cost in
        speed (measured: 20 M rows, RSS 617 MB at 200 MB vs 866 MB at 500 MB, same time)."""
        old = self.raw.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        self.raw.execute(f"SET memory_limit = '{_INGEST_MEMORY}'")
        # run-length segments merge -0.0 into 0.0; the signs are also recorded (_STORE_SCOPE),
        # but fewer segments need the repair without RLE
        self.raw.execute("SET disabled_compression_methods = 'rle'")
        try:
            yield
        finally:
            self.raw.execute(f"SET memory_limit = '{old}'")

    def _insert(self, table: str, src: Any, sid: int, select: str) -> None:
        """``INSERT INTO table SELECT sid, <select> FROM src`` through a relation, not a registered view.

        A registered view is a catalog entry: dropping it inside the open transaction keeps it (and
        the Arrow/numpy buffers it holds) alive until commit, so every source of a session stayed in
        memory at once (measured: +87 MB per million links). A relation holds its source only while
        it runs.
        """
        if isinstance(src, dict):
            src = _arrow_batches(src)
        self.raw.from_arrow(src).project(f"{int(sid)} AS session_id, {select}").insert_into(table)

    def insert_frames(self, sid: int, t: TrackTables, frames: np.ndarray) -> None:
        if not len(frames):
            return
        self._insert("frames", {"frame": frames.astype(np.int64), "time": _frame_times(t, frames)},
                     sid, "frame, time")

    def insert_positions(self, sid: int, t: TrackTables) -> None:
        n = t.n_positions
        if not n:
            return
        p = t.positions
        ids = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)  # BIGINT column; int32 halves the array
        src = {"position_id": ids, "frame": p["frame"], "x": p["x"], "y": p["y"]}
        cols = ["position_id", "frame", "x", "y"]
        for name, null_when in (("z", None), ("track_id", -1), ("origin", None), ("native_id", None),
                                ("quality", None), ("radius", None)):
            if name not in p:
                cols.append(f"'{ORIGINS[0]}'" if name == "origin" else "NULL")
                continue
            col = p[name]
            if name == "origin":
                lo, hi = (int(col.min()), int(col.max())) if n else (0, 0)
                if lo == hi:  # one origin for all (the usual case): a constant, not a per-row lookup
                    cols.append(f"'{ORIGINS[lo]}'")
                    continue
                # an Arrow dictionary over the labels arrives in DuckDB as an ENUM: 0.20 s for
                # 9.5 M rows, where indexing a list of labels took 0.30 s
                src[name] = pa.DictionaryArray.from_arrays(pa.array(col.astype(np.int8, copy=False)),
                                                           pa.array(ORIGINS))
                cols.append("origin")
                continue
            src[name] = col
            if null_when is not None and (col == null_when).any():
                cols.append(f"CASE WHEN {name} = {null_when} THEN NULL ELSE {name} END")
            else:
                cols.append(name)  # NaN -> NULL is done by DuckDB's numpy scan
        self._insert("positions", src, sid, ", ".join(cols))

    def insert_tracks(self, sid: int, t: TrackTables) -> None:
        if t.n_tracks:
            self._insert("tracks", _tracks_arrow(t), sid, "track_id, name, identity, lineage_id, visible, native_id")

    def insert_links(self, sid: int, t: TrackTables, frames: np.ndarray) -> None:
        # chunks bound the temporary geometry arrays; the next one is computed while DuckDB inserts
        # a session of up to _LINK_CHUNK links goes a row group at a time: what DuckDB then keeps
        # in memory until the commit is bounded by the session, and the geometry and DuckDB's
        # working set are a row group's (36 MB AUT file: 20 MB less at the peak, 0.025 s slower)
        size = _BATCH_ROWS if t.n_links <= _LINK_CHUNK else _LINK_CHUNK
        chunks = _link_chunks(t, frames, size)
        # the next chunk is computed while DuckDB inserts this one, except for small sessions: a
        # prefetched row group's geometry is memory for no speed (3 chunks, 0.01 s)
        for cols in (chunks if size == _BATCH_ROWS else _prefetch(chunks, depth=1)):
            src = {k: v for k, v in cols.items() if v is not None}
            between = bool((src["track_id"] < 0).any())
            sel = ["link_id", "source_id", "target_id", "frame_gap",
                   "time_gap" if "time_gap" in src else "NULL", "dx", "dy", "dz" if "dz" in src else "NULL",
                   "CASE WHEN track_id < 0 THEN NULL ELSE track_id END" if between else "track_id", "frame",
                   "step_length"]
            self._insert("links", src, sid, ", ".join(sel))

    def insert_metadata(self, sid: int, blocks: list[MetaBlock]) -> None:
        if not blocks:
            return
        rows = MetadataRows(blocks)
        self._insert("metadata_blocks", rows.heads, sid, "seq, scope, key, vtype")
        # whole row groups, two per INSERT (one per thread): one chunk per block would leave
        # part-filled row groups that DuckDB rewrites at the next checkpoint (615 k values: 0.14 s
        # -> 0.085 s). Not one stream: DuckDB reads up to 16 batches of a stream ahead, and not one
        # table of all the values: either holds every value's Arrow copy in memory at once.
        select = ", ".join(name if name in rows.schema.names else "NULL" for name in _VALUES_SCHEMA.names)
        batches = rows.batches()
        while group := list(itertools.islice(batches, 2)):
            self._insert("metadata_values", pa.Table.from_batches(group, schema=rows.schema), sid, select)


class _PostgresBulk(_Bulk):
    """Bulk paths for PostgreSQL: binary COPY built with numpy; Arrow CSV for text-heavy tables."""

    def __init__(self, conn: sa.Connection):
        self.raw = conn.connection.driver_connection  # a psycopg connection, inside our transaction

    @classmethod
    def on(cls, pg) -> _PostgresBulk:
        """Bulk paths on a bare psycopg connection (a helper transaction's)."""
        b = cls.__new__(cls)
        b.raw = pg
        return b

    def arrow(self, sql: str, types: dict[str, pa.DataType]) -> pa.Table:
        import io

        import pyarrow.csv as pcsv

        buf = io.BytesIO()
        with self.raw.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT csv, HEADER)") as cp:
            for chunk in cp:
                buf.write(chunk)
        buf.seek(0)
        opts = pcsv.ConvertOptions(column_types=types, null_values=[""], strings_can_be_null=True,
                                   quoted_strings_can_be_null=False, true_values=["t"], false_values=["f"])
        return pcsv.read_csv(buf, read_options=pcsv.ReadOptions(block_size=1 << 26), convert_options=opts)

    def _copy(self, table: str, names: list[str], columns: list) -> None:
        from . import _pgcopy

        # a column that is NULL in every row is left out: its default is NULL, and it costs bytes
        keep = [i for i, c in enumerate(columns) if c.null is None or not c.null.all()]
        names, columns = [names[i] for i in keep], [columns[i] for i in keep]
        with self.raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)") as cp:
            # pieces are built on a second thread while the server parses the previous one (numpy
            # and the socket both release the GIL), and only a few pieces exist at a time
            for piece in _prefetch(_pgcopy.payload_chunks(columns)):
                cp.write(piece)

    def insert_frames(self, sid: int, t: TrackTables, frames: np.ndarray) -> None:
        from ._pgcopy import Column

        if not len(frames):
            return
        n = len(frames)
        time_ = _frame_times(t, frames)
        self._copy("frames", ["session_id", "frame", "time"], [
            Column(np.full(n, sid, np.int32), "int4"), Column(frames.astype(np.int32), "int4"),
            Column(time_, "float8", np.isnan(time_))])

    def insert_positions(self, sid: int, t: TrackTables) -> None:
        from ._pgcopy import Column

        n = t.n_positions
        if not n:
            return
        p = t.positions
        cols = [Column(np.full(n, sid, np.int32), "int4"), Column(np.arange(n, dtype=np.int64), "int8"),
                Column(p["frame"].astype(np.int32, copy=False), "int4")]
        names = ["session_id", "position_id", "frame"]
        # a column the session does not have is left out of the COPY (NULL), not sent as n NULLs
        for name, kind in (("x", "float8"), ("y", "float8"), ("z", "float8"), ("track_id", "int4"),
                           ("origin", "text"), ("native_id", "int8"), ("quality", "float8"), ("radius", "float8")):
            v = p.get(name)
            if v is None or (name == "origin" and not v.any()):
                continue  # origin: the column's default is ORIGINS[0] (parsing ENUMs costs the server)
            names.append(name)
            if name == "origin":
                cols.append(Column(v.astype(np.int64), "text", None, ORIGINS))
            elif name == "track_id":
                cols.append(Column(v.astype(np.int32, copy=False), "int4", v < 0))
            elif kind == "float8":
                cols.append(Column(v, kind, np.isnan(v)))
            else:
                cols.append(Column(v, kind))
        self._copy("positions", names, cols)

    def insert_tracks(self, sid: int, t: TrackTables) -> None:
        if not t.n_tracks:
            return
        tbl = _tracks_arrow(t)
        with self.raw.cursor() as cur, cur.copy(
                "COPY tracks (session_id, track_id, name, identity, lineage_id, visible, native_id) FROM STDIN") as cp:
            for row in zip(*[tbl[c].to_pylist() for c in tbl.column_names]):
                cp.write_row((sid, *row))  # tracks are few (one per animal/tracklet)

    def insert_links(self, sid: int, t: TrackTables, frames: np.ndarray, parts: Iterator[slice] | None = None) -> None:
        """Copy the links, or the ranges of links ``parts`` yields (one COPY per range)."""
        for part in (_link_parts(t.n_links) if parts is None else parts):
            self._copy_links(sid, _link_columns(t, frames, part))

    def _copy_links(self, sid: int, c: dict) -> None:
        from ._pgcopy import Column

        n = len(c["link_id"])
        names = ["session_id", "link_id", "source_id", "target_id", "frame_gap"]
        cols = [Column(np.full(n, sid, np.int32), "int4"), Column(c["link_id"], "int8"), Column(c["source_id"], "int8"),
                Column(c["target_id"], "int8"), Column(c["frame_gap"].astype(np.int32, copy=False), "int4")]
        for k in ("time_gap", "dx", "dy", "dz"):
            if c[k] is not None:  # an absent one (dz in 2D, time_gap without times) is left NULL
                names.append(k)
                cols.append(Column(c[k], "float8", np.isnan(c[k])))
        names += ["track_id", "frame", "step_length"]
        cols += [Column(c["track_id"].astype(np.int32, copy=False), "int4", c["track_id"] < 0),
                 Column(c["frame"].astype(np.int32, copy=False), "int4"),
                 Column(c["step_length"], "float8", np.isnan(c["step_length"]))]
        self._copy("links", names, cols)

    def insert_metadata(self, sid: int, blocks: list[MetaBlock]) -> None:
        if not blocks:
            return
        import io

        import pyarrow.compute as pc
        import pyarrow.csv as pcsv

        rows = MetadataRows(blocks)

        def csv_pieces(tables: Iterator[pa.Table | pa.RecordBatch]) -> Iterator[memoryview]:
            for tbl in tables:
                tbl = pa.Table.from_batches([tbl]) if isinstance(tbl, pa.RecordBatch) else tbl
                if "v_float" in tbl.schema.names:  # CSV cannot tell NaN from NULL unless NaN is spelled out
                    i = tbl.schema.get_field_index("v_float")
                    tbl = tbl.set_column(i, "v_float", pc.cast(tbl.column(i), pa.string()))
                tbl = tbl.add_column(0, "session_id", pa.repeat(pa.scalar(sid, pa.int32()), tbl.num_rows))
                buf = io.BytesIO()  # NULL is an empty field, "" a quoted one
                pcsv.write_csv(tbl, buf, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
                yield buf.getbuffer()

        with self.raw.cursor() as cur:
            for table, names, tables in (("metadata_blocks", rows.heads.schema.names, [rows.heads]),
                                         ("metadata_values", rows.schema.names, rows.batches())):
                with cur.copy(f"COPY {table} (session_id, {', '.join(names)}) FROM STDIN (FORMAT csv)") as cp:
                    for piece in csv_pieces(tables):
                        cp.write(piece)


def _prefetch(pieces: Iterator[_T], depth: int = 2) -> Iterator[_T]:
    """Iterate ``pieces``, producing up to ``depth`` ahead on a background thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(item) -> bool:
        """Hand ``item`` over unless the consumer has stopped; False when it has."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for p in pieces:
                if not put(p):
                    return
            put(done)
        except BaseException as e:  # handed to the consumer
            put(e)

    t = threading.Thread(target=produce, name="trackstore-copy", daemon=True)
    t.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def _restore_zero_signs(positions: dict[str, np.ndarray], records: pa.Table) -> None:
    """Give every zero in the float position columns its stored sign back.

    A constant or run-length segment keeps one zero's sign for all of them (either sign), so
    every zero is first made +0.0, then the recorded -0.0 positions are set.
    """
    owners: dict[str, list[int]] = {}
    for key, owner in zip(records["key"].to_pylist(), records["owner_id"].to_pylist()):
        owners.setdefault(key.removeprefix("negative_zero."), []).append(owner)
    for col in _FLOAT_POSITION_COLUMNS:
        v = positions.get(col)
        if v is None:
            continue
        zero = v == 0
        wrong = zero & np.signbit(v)
        if col not in owners and not wrong.any():
            continue
        v = np.array(v, copy=True)  # the fetched column may be a read-only or stride-0 view
        v[zero] = 0.0
        if col in owners:
            v[np.asarray(owners[col], dtype=np.int64)] = -0.0
        positions[col] = v


def _negative_zero_blocks(t: TrackTables) -> list[MetaBlock]:
    """One hidden block per float position column holding -0.0: the ids of those positions."""
    out = []
    for col in _FLOAT_POSITION_COLUMNS:
        v = t.positions.get(col)
        if v is None:
            continue
        ids = np.flatnonzero((v == 0) & np.signbit(v))
        if len(ids):
            out.append(MetaBlock(_STORE_SCOPE, f"negative_zero.{col}", np.ones(len(ids), dtype=bool), ids))
    return out


def _frame_times(t: TrackTables, frames: np.ndarray) -> np.ndarray:
    time_ = t.frames.get("time")
    if time_ is not None:
        return np.asarray(time_, np.float64)
    fi = t.session.frame_interval
    return frames * float(fi) if fi else np.full(len(frames), np.nan)


def _tracks_arrow(t: TrackTables) -> pa.Table:
    n = t.n_tracks
    lin = t.track_col("lineage_id").astype(np.int64)
    return pa.table({
        "track_id": pa.array(np.arange(n, dtype=np.int32)),
        "name": pa.array([None if v is None else str(v) for v in t.track_col("name")], pa.string()),
        "identity": pa.array([None if v is None else int(v) for v in t.track_col("identity")], pa.int64()),
        "lineage_id": pa.array(lin, pa.int64(), mask=lin < 0),
        "visible": pa.array(t.track_col("visible").astype(bool)),
        "native_id": pa.array([None if v is None else int(v) for v in t.track_col("native_id")], pa.int64()),
    })


_T = TypeVar("_T")

#: ``Connection.info`` key of the callbacks run with the outcome of :meth:`Store.transaction`.
_AFTER_TX = "trackstore_after_transaction"
#: Position columns the links' geometry does not use.
_NOT_FOR_LINKS = ("quality", "origin", "native_id", "radius")

_INGEST_MEMORY = os.environ.get("TRACKSTORE_INGEST_MEMORY", "256MB")
#: Arrow buffers built for a write (metadata batches, null masks) come from the C heap, not
#: Arrow's default mimalloc pool: they live for one INSERT, and mimalloc kept their pages
#: resident for the rest of the ingest (about 20 MB more at the peak of a 36 MB AUT file).
_POOL = pa.system_memory_pool()
_BATCH_ROWS = 122_880  # DuckDB's row group size


def _arrow_batches(columns: dict[str, np.ndarray]) -> pa.Table:
    """numpy columns as an Arrow table of row-group-sized batches, zero-copy where possible.

    DuckDB scans the batches of one table on all its threads, where a registered numpy dict is
    scanned as one stream: 1.8 s instead of 2.8 s for 9.5 M positions on 2 cores. Float NaN
    becomes NULL (as DuckDB's numpy scan would do; Arrow itself keeps NaN).
    """
    arrays = {}
    for k, v in columns.items():
        if isinstance(v, pa.Array):
            arrays[k] = v
            continue
        v = np.ascontiguousarray(v)
        if v.dtype.kind == "f":
            nan = np.isnan(v)
            arrays[k] = pa.array(v, mask=nan, memory_pool=_POOL) if nan.any() else pa.array(v)
        else:
            arrays[k] = pa.array(v, memory_pool=_POOL)
    return pa.Table.from_batches(pa.table(arrays).to_batches(max_chunksize=_BATCH_ROWS))
#: Links per insert: each range's geometry is built in numpy then inserted. ~500 k keeps the
#: temporaries at ~60 MB (1 M: ~130 MB) at the same speed; much smaller ranges are slower and
#: use more memory on DuckDB (an insert under ~2 row groups is not written to the file early).
_LINK_CHUNK = 4 * _BATCH_ROWS  # whole row groups: a part-filled one is rewritten at the checkpoint


def _link_parts(n: int, size: int | None = None) -> list[slice]:
    """Ranges of at most ``size`` (default ``_LINK_CHUNK``) links covering ``n`` links."""
    size = size or _LINK_CHUNK
    return [slice(a, min(a + size, n)) for a in range(0, n, size)]


def _link_chunks(t: TrackTables, frames: np.ndarray, size: int | None = None):
    """Link columns in chunks of at most ``size`` links (see :func:`_link_columns`)."""
    for part in _link_parts(t.n_links, size):
        yield _link_columns(t, frames, part)


def _link_columns(t: TrackTables, frames: np.ndarray, part: slice | None = None) -> dict[str, np.ndarray | None]:
    """Each link's geometry, vectorized: gathers from the position columns, no per-link Python.

    ``dz`` is None for 2D sessions (stored as NULL without building an all-NaN column), and the
    time gap indexes the frame times directly when frames are contiguous (the usual case).
    ``part`` selects a range of links (ids stay global).
    """
    part = part or slice(0, t.n_links)
    s, d = t.links["source_id"][part], t.links["target_id"][part]
    f = t.positions["frame"]
    fs, fd = f[s], f[d]
    x, y = t.positions["x"], t.positions["y"]
    tid = t.pos("track_id")
    ts = tid[s]
    gap = fd - fs
    out: dict[str, np.ndarray | None] = {
        "link_id": np.arange(part.start, part.stop, dtype=np.int64), "source_id": s, "target_id": d,
        "frame_gap": gap.astype(np.int32), "time_gap": None, "dx": x[d] - x[s], "dy": y[d] - y[s],
        "dz": (t.positions["z"][d] - t.positions["z"][s]) if t.is_3d else None,
        "track_id": np.where(ts == tid[d], ts, -1).astype(np.int32), "frame": fs.astype(np.int32),
    }
    time_ = t.frames.get("time")
    if time_ is not None and len(frames):
        tm = np.asarray(time_, np.float64)
        f0 = int(frames[0])
        if len(frames) == int(frames[-1]) - f0 + 1 and np.all(np.diff(frames) == 1):
            out["time_gap"] = tm[fd - f0] - tm[fs - f0]
        else:
            order = np.argsort(frames, kind="stable")
            fr, tm = frames[order], tm[order]
            out["time_gap"] = tm[np.searchsorted(fr, fd)] - tm[np.searchsorted(fr, fs)]
    elif t.session.frame_interval:
        out["time_gap"] = gap * float(t.session.frame_interval)
    sq = out["dx"] * out["dx"]
    sq += out["dy"] * out["dy"]
    if out["dz"] is not None:
        sq += np.nan_to_num(out["dz"] * out["dz"])  # like the SQL: a missing dz counts as 0
    out["step_length"] = np.sqrt(sq, out=sq)
    return out


def _obj(lst: list) -> np.ndarray:
    a = np.empty(len(lst), dtype=object)
    a[:] = lst
    return a


_BLOCKS_SCHEMA = pa.schema([("seq", pa.int32()), ("scope", pa.string()), ("key", pa.string()),
                            ("vtype", pa.string())])
_VALUES_SCHEMA = pa.schema([
    ("seq", pa.int32()), ("owner_id", pa.int64()), ("vtype", pa.string()), ("v_int", pa.int64()),
    ("v_float", pa.float64()), ("v_bool", pa.bool_()), ("v_str", pa.string()), ("v_json", pa.string()),
])


class MetadataRows:
    """Metadata blocks as the rows of ``metadata_blocks`` (:attr:`heads`) and of ``metadata_values``
    (:meth:`batches`, built a row group at a time).

    A block whose values share one type (nearly all) stores it once, in ``metadata_blocks``;
    its values' own ``vtype`` is NULL. NaN is kept in v_float. The values have only the columns
    that hold a value somewhere (:attr:`schema`; ``seq`` always): a column that is NULL in every
    row is left for the INSERT to fill. Each block is encoded once (numeric columns without a
    copy); a batch gathers slices of the blocks it spans, so only a row group of rows is ever
    built (615 k values: 23 MB of Arrow at once before, ~4 MB now).
    """

    def __init__(self, blocks: list[MetaBlock]):
        heads: dict[str, list] = {"seq": [], "scope": [], "key": [], "vtype": []}
        self._blocks: list[tuple[int, int, dict[str, pa.Array]]] = []  # (seq, n, {column: values})
        present = {"seq"}
        for seq, b in enumerate(blocks):
            enc = values.encode_column(b.values)
            vt = enc["vtype"]
            uniform = isinstance(vt, str) or len(set(vt)) == 1
            heads["seq"].append(seq)
            heads["scope"].append(b.scope)
            heads["key"].append(b.key)
            heads["vtype"].append((vt if isinstance(vt, str) else vt[0]) if uniform else None)
            cols = {"owner_id": b.owners, "vtype": None if uniform else list(vt)}
            cols.update((name, enc.get(name)) for name in ("v_int", "v_float", "v_bool", "v_str", "v_json"))
            arrays = {name: pa.array(v, _VALUES_SCHEMA.field(name).type, memory_pool=_POOL)
                      for name, v in cols.items() if v is not None}
            present.update(arrays)
            self._blocks.append((seq, len(b), arrays))
        self.heads = pa.table(heads, schema=_BLOCKS_SCHEMA)
        self.schema = pa.schema([f for f in _VALUES_SCHEMA if f.name in present])
        self.num_rows = sum(n for _, n, _ in self._blocks)

    def batches(self, size: int = _BATCH_ROWS) -> Iterator[pa.RecordBatch]:
        """The values in order of (seq, position in block), as batches of ``size`` rows."""
        names = self.schema.names
        pending: list[tuple[int, dict[str, pa.Array], int, int]] = []  # (seq, arrays, start, length)
        filled = 0
        for seq, n, arrays in self._blocks:
            at = 0
            while at < n:
                take = min(n - at, size - filled)
                pending.append((seq, arrays, at, take))
                filled += take
                at += take
                if filled == size:
                    yield self._batch(names, pending)
                    pending, filled = [], 0
        if pending:
            yield self._batch(names, pending)

    def _batch(self, names: list[str], pending: list) -> pa.RecordBatch:
        columns = []
        for name in names:
            typ = _VALUES_SCHEMA.field(name).type
            parts = []
            for seq, arrays, start, length in pending:
                if name == "seq":
                    parts.append(pa.array(np.full(length, seq, np.int32)))
                elif name in arrays:
                    parts.append(arrays[name].slice(start, length))
                else:
                    parts.append(pa.nulls(length, typ, memory_pool=_POOL))
            columns.append(parts[0] if len(parts) == 1 else pa.concat_arrays(parts, memory_pool=_POOL))
        return pa.record_batch(columns, schema=self.schema)


def blocks_from_arrow(md: pa.Table) -> list[MetaBlock]:
    """Rebuild metadata blocks from rows ordered by (seq, owner_id)."""
    if md.num_rows == 0:
        return []
    seq = md["seq"].to_numpy()
    cuts = np.flatnonzero(np.diff(seq)) + 1
    starts = np.concatenate([[0], cuts])
    ends = np.concatenate([cuts, [len(seq)]])
    # scope, key and vtype as Python strings per block, not per row (615 k rows: 0.12 s -> 0.01 s)
    import pyarrow.compute as pc

    at = pa.array(starts)
    scope = md["scope"].take(at).to_pylist()
    key = md["key"].take(at).to_pylist()
    coded = pc.dictionary_encode(md["vtype"].combine_chunks())
    labels = np.asarray(coded.dictionary.to_pylist(), dtype=object)
    codes = coded.indices.to_numpy(zero_copy_only=False)
    owner = md["owner_id"]
    cols = {c: md[c] for c in ("v_int", "v_float", "v_bool", "v_str", "v_json")}
    out = []
    for k, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
        block_codes = codes[a:b]
        lo, hi = int(block_codes.min()), int(block_codes.max())
        own = owner.slice(a, b - a)
        owners = None if own.null_count == len(own) else own.to_numpy(zero_copy_only=False).astype(np.int64)
        kinds = {labels[lo]} if lo == hi else set(labels[np.unique(block_codes)].tolist())
        if kinds == {"float"}:
            vals = cols["v_float"].slice(a, b - a).to_numpy(zero_copy_only=False).astype(np.float64)
            vals[vals == 0] = 0.0  # the stored sign of a zero is not reliable (see values.NEGATIVE_ZERO)
            marks = cols["v_json"].slice(a, b - a)
            if marks.null_count < len(marks):
                vals[np.asarray(marks.to_pylist(), dtype=object) == values.NEGATIVE_ZERO] = -0.0
        elif kinds == {"int"} and owners is not None:
            vals = cols["v_int"].slice(a, b - a).to_numpy(zero_copy_only=False).astype(np.int64)
        elif kinds == {"bool"} and owners is not None:
            vals = np.asarray(cols["v_bool"].slice(a, b - a).to_pylist(), dtype=bool)
        elif kinds == {"str"}:
            vals = _obj(cols["v_str"].slice(a, b - a).to_pylist())
        else:
            py = {c: cols[c].slice(a, b - a).to_pylist() for c in cols}
            vt = labels[block_codes].tolist()
            vals = np.empty(b - a, dtype=object)
            for i in range(b - a):
                vals[i] = values.decode(vt[i], py["v_int"][i], py["v_float"][i], py["v_bool"][i],
                                        py["v_str"][i], py["v_json"][i])
        if owners is None and len(vals) == 1 and vals.dtype != object:
            o = np.empty(1, dtype=object)
            o[0] = vals.tolist()[0]
            vals = o
        out.append(MetaBlock(str(scope[k]), str(key[k]), vals, owners))
    return out


